"""A tiny AWS Secrets Manager on 127.0.0.1 speaking its real JSON API, for the tests.

botocore talks to it with ``endpoint_url=http://127.0.0.1:PORT`` (SigV4-signed with fixed
credentials, which it checks are present). It implements what a rotation touches:
GetSecretValue, PutSecretValue and UpdateSecretVersionStage, with version stages as
AWS keeps them, and counts every GetSecretValue by stage.
"""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeSecretsManager:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: secret name -> {version id: {"SecretString": ..., "VersionStages": [...], "CreatedDate": ...}}
        self.secrets: dict[str, dict[str, dict[str, Any]]] = {}
        self.reads: collections.Counter[tuple[str, str]] = collections.Counter()
        self.authorizations: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def start(self) -> FakeSecretsManager:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def create(self, name: str, value: dict[str, Any]) -> str:
        version = str(uuid.uuid4())
        with self.lock:
            self.secrets[name] = {version: _version(value, ["AWSCURRENT"])}
        return version

    # ----- the API -----------------------------------------------------------------

    def call(self, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = body.get("SecretId")
        with self.lock:
            versions = self.secrets.get(name)
            if versions is None:
                return _error("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
            if target == "GetSecretValue":
                return self._get(name, versions, body)
            if target == "PutSecretValue":
                version = body.get("ClientRequestToken") or str(uuid.uuid4())
                stages = body.get("VersionStages") or ["AWSCURRENT"]
                for other in versions.values():
                    other["VersionStages"] = [s for s in other["VersionStages"] if s not in stages]
                versions[version] = _version(json.loads(body["SecretString"]), stages)
                return 200, {"ARN": _arn(name), "Name": name, "VersionId": version, "VersionStages": stages}
            if target == "UpdateSecretVersionStage":
                stage = body["VersionStage"]
                if body.get("RemoveFromVersionId"):
                    removed = versions[body["RemoveFromVersionId"]]["VersionStages"]
                    removed[:] = [s for s in removed if s != stage]
                if body.get("MoveToVersionId"):
                    versions[body["MoveToVersionId"]]["VersionStages"].append(stage)
                return 200, {"ARN": _arn(name), "Name": name}
        return _error("InvalidRequestException", "unsupported operation %s" % target)

    def _get(self, name: str, versions: dict[str, dict[str, Any]], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        stage = body.get("VersionStage") or "AWSCURRENT"
        self.reads[(name, stage)] += 1
        for version, data in versions.items():
            if stage in data["VersionStages"]:
                return 200, {
                    "ARN": _arn(name),
                    "Name": name,
                    "VersionId": version,
                    "SecretString": data["SecretString"],
                    "VersionStages": list(data["VersionStages"]),
                    "CreatedDate": data["CreatedDate"],
                }
        return _error(
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret value for staging label: %s" % stage,
        )


def _version(value: dict[str, Any], stages: list[str]) -> dict[str, Any]:
    return {"SecretString": json.dumps(value), "VersionStages": list(stages), "CreatedDate": time.time()}


def _arn(name: str) -> str:
    return "arn:aws:secretsmanager:eu-west-1:123456789012:secret:%s-AbCdEf" % name


def _error(kind: str, message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"__type": kind, "Message": message}


def _handler(fake: FakeSecretsManager) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            target = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
            auth: str | None = self.headers.get("Authorization")
            if not auth or "AWS4-HMAC-SHA256" not in auth:
                status, reply = _error("UnrecognizedClientException", "missing SigV4 Authorization")
            else:
                fake.authorizations.append(auth.split(",")[0])
                status, reply = fake.call(target, body)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return Handler
