"""``python -m aurora_backend.simulator cluster --readers 2``: a local Aurora cluster until stopped.

Prints one JSON line (the endpoints, instances, port and control address) once the
cluster serves, then takes commands, one per line, on stdin and on the loopback control
endpoint, answering one JSON line each (see :data:`HELP`). SIGTERM, SIGINT or ``stop``
tear everything down; a SIGKILL is cleaned up by the reaper (testing/reaper.py).

Other processes resolve the cluster's names through the control endpoint:
``OPTIONS["aurora"]["resolver"] = "aurora_backend.simulator.cluster_cli.env_resolver"``
with ``AURORA_CLUSTER_CONTROL=127.0.0.1:PORT`` in their environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

from aurora_backend.simulator.arguments import address, count, port, seconds
from aurora_backend.simulator.control import Address, parse_address, require_loopback

HELP = (
    "status | failover [INSTANCE] [reader|down] | restore INSTANCE | pause_replay INSTANCE | "
    "resume_replay INSTANCE | resolve NAME | flush_dns | stop"
)

Handler = Callable[..., Any]


def _commands(cluster: Any, stop: threading.Event) -> dict[str, Handler]:
    def failover(target: str = "", old_writer: str = "reader") -> Any:
        if target in ("reader", "down"):
            target, old_writer = "", target
        return cluster.failover(target or None, old_writer=old_writer)

    return {
        "status": lambda: {"replica_status": [_jsonable(r) for r in cluster.replica_status()]},
        "failover": failover,
        "restore": cluster.restore,
        "pause_replay": cluster.pause_replay,
        "resume_replay": cluster.resume_replay,
        "resolve": lambda name: cluster.dns.resolve(name),
        "flush_dns": cluster.dns.flush,
        "stop": stop.set,
    }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


class Commands:
    """Runs one command line at a time against the cluster; answers are JSON-able dicts."""

    def __init__(self, cluster: Any, stop: threading.Event) -> None:
        self.cluster = cluster
        self._table = _commands(cluster, stop)
        self._lock = threading.Lock()

    def execute(self, line: str) -> dict[str, Any]:
        words = line.split()
        if not words:
            return {"ok": False, "error": "empty command; commands: " + HELP}
        command = self._table.get(words[0])
        if command is None:
            return {"ok": False, "error": "unknown command %r; commands: %s" % (words[0], HELP)}
        with self._lock:
            try:
                result = command(*words[1:])
            except (TypeError, ValueError, RuntimeError, OSError, KeyError) as exc:
                return {"ok": False, "error": "%s: %s" % (words[0], exc)}
            return {"ok": True, "result": result, "endpoints": self.cluster.endpoints()}


def serve_control(commands: Commands, host: str, port: int) -> socketserver.ThreadingTCPServer:
    """A line-based control endpoint on loopback, served from a daemon thread."""
    require_loopback(host, "--control")

    class Handle(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                answer = commands.execute(raw.decode("utf-8", "replace"))
                self.wfile.write(json.dumps(answer, default=str).encode() + b"\n")

    server = socketserver.ThreadingTCPServer((host, port), Handle, bind_and_activate=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="aurora-cluster-control", daemon=True).start()
    return server


def remote_resolve(address: Address, host: str, timeout: float = 5.0) -> list[str]:
    """Ask a running cluster's control endpoint for ``host``'s addresses."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(("resolve %s\n" % host).encode())
        answer = json.loads(sock.makefile("rb").readline())
    if not answer.get("ok"):
        raise OSError(answer.get("error", "resolve failed"))
    return list(answer["result"])


def env_resolver(host: str, port: int) -> list[str]:
    """A ``resolver`` for OPTIONS["aurora"]: asks the cluster named by AURORA_CLUSTER_CONTROL."""
    control = os.environ.get("AURORA_CLUSTER_CONTROL")
    if not control:
        raise OSError("AURORA_CLUSTER_CONTROL is not set: it names the cluster's control HOST:PORT")
    return remote_resolve(parse_address(control, "AURORA_CLUSTER_CONTROL"), host)


def _control(text: str) -> Address | None:
    """``--control``: a loopback HOST:PORT (port 0: any free one), or 'none'."""
    return None if text == "none" else address("--control", loopback=True, any_port=True)(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aurora_backend.simulator cluster",
        description="A local Aurora cluster: a writer and readers in streaming replication, "
        "Aurora's endpoints and DNS, real failover. Serves until stopped.",
    )
    parser.add_argument("--readers", type=count("--readers"), default=2, help="number of readers (2)")
    parser.add_argument("--name", default="aurora-local", help="cluster identifier (aurora-local)")
    parser.add_argument(
        "--ttl", type=seconds("--ttl", positive=False), default=5.0, help="DNS TTL in seconds (Aurora: 5)"
    )
    parser.add_argument(
        "--dns-delay",
        type=seconds("--dns-delay", positive=False),
        default=5.0,
        help="seconds after a promotion before the endpoints' records move (5)",
    )
    parser.add_argument(
        "--port", type=port("--port"), default=None, help="port of every endpoint (default: a free one)"
    )
    parser.add_argument(
        "--control",
        type=_control,
        default="127.0.0.1:0",
        help="loopback HOST:PORT of the control endpoint (port 0: any; 'none': stdin only)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log events to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr
    )
    from aurora_backend.testing.aurora_cluster import AuroraCluster

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    cluster = AuroraCluster(
        readers=args.readers, name=args.name, ttl=args.ttl, dns_delay=args.dns_delay, port=args.port
    )
    control: socketserver.ThreadingTCPServer | None = None
    try:
        cluster.start()
        commands = Commands(cluster, done)
        if args.control is not None:
            control = serve_control(commands, *args.control)
        address = "%s:%d" % cast(Address, control.server_address[:2]) if control else None
        print(
            json.dumps({**cluster.endpoints(), "control": address, "started_in": round(cluster.started_in or 0, 3)}),
            flush=True,
        )
        threading.Thread(target=_read_stdin, args=(commands,), daemon=True).start()
        while not done.wait(0.5):
            pass
    finally:
        if control is not None:
            control.shutdown()
            control.server_close()
        cluster.stop()
    return 0


def _read_stdin(commands: Commands) -> None:
    for line in sys.stdin:  # EOF (stdin closed or /dev/null): keep serving until a signal
        if line.strip():
            print(json.dumps(commands.execute(line), default=str), flush=True)
