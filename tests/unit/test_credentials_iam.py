"""IAM tokens (botocore's own signer, fixed credentials and clock), the cache, the option.

No network: signing is local; the SigV4 signature is checked here the way RDS checks it.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import random
import sys
import threading
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import botocore.auth
import pytest
from django.core.exceptions import ImproperlyConfigured

from aurora_backend.base import DatabaseWrapper
from aurora_backend.credentials import Login, config
from aurora_backend.credentials.cache import Credential, CredentialCache
from aurora_backend.credentials.login import cache
from aurora_backend.options import AuroraOptions
from aurora_backend.runtime import Runtime
from tests.clocks import FakeClock
from tests.credentials_support import ACCESS_KEY, SECRET_KEY, offline_aws

__all__ = ["offline_aws"]
pytestmark = pytest.mark.usefixtures("offline_aws")

ENDPOINT = "mycluster.cluster-abc123xyz.eu-west-1.rds.amazonaws.com"
START = datetime.datetime(2026, 12, 3, 8, 0, 0)
KEY = "DATABASES['default']['OPTIONS']['aurora']['credentials']"


class Clock(FakeClock):
    """One fake time for our cache (monotonic seconds) and botocore's signer (UTC)."""

    def __init__(self) -> None:
        super().__init__(now=0.0)

    def utc(self, remove_tzinfo: bool = True) -> datetime.datetime:
        return START + datetime.timedelta(seconds=self.now)


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(botocore.auth, "get_current_datetime", fake.utc)
    return fake


def parse(creds: Any, **options: Any) -> AuroraOptions:
    return AuroraOptions.from_settings("default", {"aurora": {"credentials": creds}, **options})


def iam_login(clock: Clock, seed: int = 7) -> Login:
    options = parse({"source": "iam"}, sslmode="verify-full")
    return Login(options.credentials, Runtime(clock=clock, random=random.Random(seed)), Exception, "'default'")


def verify_sigv4(token: str, secret_key: str) -> dict[str, str]:
    """Check the presigned token's signature as the server would; return its query."""
    url = urlsplit("https://" + token)
    query = parse_qsl(url.query, keep_blank_values=True)
    fields = dict(query)
    encode = lambda s: quote(s, safe="-_.~")  # noqa: E731
    canonical_query = "&".join("%s=%s" % (encode(k), encode(v)) for k, v in sorted(query) if k != "X-Amz-Signature")
    canonical = "\n".join(
        ["GET", url.path or "/", canonical_query, "host:%s\n" % url.netloc, "host", hashlib.sha256(b"").hexdigest()]
    )
    scope = fields["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", fields["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret_key).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    assert hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest() == fields["X-Amz-Signature"]
    return fields


def test_token_is_signed_for_the_endpoint_name_not_the_address(clock):
    params = {"host": ENDPOINT, "hostaddr": "10.1.2.3", "port": "5432", "user": "app_iam", "sslmode": "verify-full"}
    iam_login(clock).apply(params)
    token = params["password"]
    assert params["hostaddr"] == "10.1.2.3" and params["user"] == "app_iam"
    assert token.startswith(ENDPOINT + ":5432/?")
    fields = verify_sigv4(token, SECRET_KEY)
    assert fields["Action"] == "connect" and fields["DBUser"] == "app_iam"
    assert fields["X-Amz-Credential"] == "%s/20261203/eu-west-1/rds-db/aws4_request" % ACCESS_KEY
    assert fields["X-Amz-Date"] == "20261203T080000Z" and fields["X-Amz-Expires"] == "900"
    with pytest.raises(AssertionError):
        verify_sigv4(token.replace(ENDPOINT, "10.1.2.3", 1), SECRET_KEY)  # not valid for the IP


def test_region_comes_from_the_endpoint_or_the_option(clock):
    params = {"host": "db.cluster-ro-x.ap-southeast-2.rds.amazonaws.com", "port": 6000, "user": "u"}
    iam_login(clock).apply(params)
    assert "/ap-southeast-2/rds-db/" in verify_sigv4(params["password"], SECRET_KEY)["X-Amz-Credential"]
    assert params["password"].startswith("db.cluster-ro-x.ap-southeast-2.rds.amazonaws.com:6000/?")
    options = parse({"source": "iam", "region": "us-east-2", "user": "signer"}, sslmode="require")
    params = {"host": "db.internal.example", "port": 5432, "user": "ignored"}
    Login(options.credentials, Runtime(clock=clock), Exception, "x").apply(params)
    fields = verify_sigv4(params["password"], SECRET_KEY)
    assert "/us-east-2/rds-db/" in fields["X-Amz-Credential"] and fields["DBUser"] == "signer"


def test_token_is_refreshed_before_15_minutes_and_reused_until_then(clock):
    params = {"host": ENDPOINT, "port": 5432, "user": "app_iam"}
    login = iam_login(clock)
    tokens: list[str] = []
    for second in range(0, 1800):
        clock.now = float(second)
        attempt = dict(params)
        login.apply(attempt)
        if not tokens or attempt["password"] != tokens[-1]:
            tokens.append(attempt["password"])
            fields = verify_sigv4(attempt["password"], SECRET_KEY)
            signed = datetime.datetime.strptime(fields["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
            assert signed == START + datetime.timedelta(seconds=second)  # signed at our clock
    dates = [datetime.datetime.strptime(verify_sigv4(t, SECRET_KEY)["X-Amz-Date"], "%Y%m%dT%H%M%SZ") for t in tokens]
    gaps = [(b - a).total_seconds() for a, b in zip(dates, dates[1:], strict=False)]
    assert 3 <= len(tokens) <= 4  # about one token per 8-10 minutes, not one per connection
    assert all(480 <= gap <= 600 for gap in gaps), gaps  # jittered, well before the 900 s expiry
    assert cache(login.config, ENDPOINT, 5432, "app_iam").fetches == len(tokens)


def test_fifty_threads_make_one_fetch(clock):
    calls: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def fetch(rejected: Credential | None) -> Credential:
        calls.append(threading.current_thread().name)
        entered.set()
        release.wait(10)
        return Credential("u", "pw-%d" % len(calls), "callable", None)

    shared = CredentialCache(fetch, refresh=600.0)
    runtime = Runtime(clock=clock, random=random.Random(1))
    got: list[Credential] = []
    threads = [threading.Thread(target=lambda: got.append(shared.get(runtime))) for _ in range(50)]
    for thread in threads:
        thread.start()
    assert entered.wait(10)
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1 and len(got) == 50 and len({id(c) for c in got}) == 1
    # All 50 refused: one of them drops it, the 49 others find the fresh one.
    dropped = [shared.reject(got[0], runtime) for _ in range(50)]
    assert dropped.count("dropped") == 1 and dropped.count("replaced") == 49
    after = [shared.get(runtime) for _ in range(50)]
    assert len(calls) == 2 and all(c.password == "pw-2" for c in after)


def test_a_due_refresh_is_made_by_one_thread_while_the_others_use_the_valid_one(clock):
    entered, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def fetch(rejected: Credential | None) -> Credential:
        calls.append(1)
        if len(calls) == 2:
            entered.set()
            release.wait(10)
        return Credential("u", "pw-%d" % len(calls), "token", 840.0)

    shared = CredentialCache(fetch, refresh=600.0)
    runtime = Runtime(clock=clock, random=random.Random(2))
    first = shared.get(runtime)
    clock.now = 700.0  # due (refresh <= 600 s) but valid (< 840 s)
    refresher = threading.Thread(target=shared.get, args=(runtime,))
    refresher.start()
    assert entered.wait(10)
    others = [shared.get(runtime) for _ in range(49)]  # do not wait for the refresher
    assert all(c is first for c in others)
    release.set()
    refresher.join(10)
    assert shared.get(runtime).password == "pw-2" and len(calls) == 2


def test_a_failed_refresh_keeps_the_valid_credential_then_fails_clearly_past_expiry(clock, caplog):
    outcomes: list[Any] = [Credential("u", "pw-1", "token", 840.0)]

    def fetch(rejected: Credential | None) -> Credential:
        result = outcomes.pop(0) if outcomes else RuntimeError("AWS is unreachable")
        if isinstance(result, Exception):
            raise result
        return result

    shared = CredentialCache(fetch, refresh=600.0)
    runtime = Runtime(clock=clock, random=random.Random(3))
    shared.get(runtime)
    clock.now = 650.0
    assert shared.get(runtime).password == "pw-1"
    assert "refreshing credentials failed (RuntimeError)" in caplog.text
    clock.now = 841.0
    with pytest.raises(RuntimeError):
        shared.get(runtime)


# ----- the option ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "creds,options,fragment",
    [
        ({"source": "iam"}, {}, "requires TLS, but OPTIONS['sslmode'] is None"),
        ({"source": "iam"}, {"sslmode": "prefer"}, "set OPTIONS['sslmode'] to 'require'"),
        ({"source": "iam", "refresh": 900}, {"sslmode": "require"}, "['refresh'] = 900 is invalid"),
        ({"source": "vault"}, {}, "['source'] = 'vault' is invalid: it accepts 'iam', 'secretsmanager', 'callable'"),
        ({"source": "secretsmanager"}, {}, "needs 'secret_id'"),
        (
            {"source": "secretsmanager", "secret_id": "s", "user": "x"},
            {},
            "unknown key(s) 'user' for source 'secretsmanager'",
        ),
        ({"source": "callable", "callable": "no.such.fn"}, {}, "['callable'] = 'no.such.fn' is invalid"),
        (42, {}, "a callable returning (user, password), its dotted path"),
    ],
)
def test_bad_credentials_options_name_the_key_and_the_fix(creds, options, fragment):
    with pytest.raises(ImproperlyConfigured) as err:
        parse(creds, **options)
    assert KEY in str(err.value) and fragment in str(err.value)


def test_shorthands_and_defaults():
    assert parse("tests.unit.test_credentials_iam.sample_credentials").credentials.func() == ("u", "p")
    assert parse(sample_credentials).credentials.source == "callable"
    sm = parse({"source": "secretsmanager", "secret_id": "arn:aws:secretsmanager:sa-east-1:1:secret:x"}).credentials
    assert sm.refresh == 3600.0 and sm.region is None
    from aurora_backend.credentials.secretsmanager import region_for

    assert region_for(sm) == "sa-east-1"


def sample_credentials():
    return ("u", "p")


def test_without_boto3_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ImproperlyConfigured) as err:
        parse({"source": "secretsmanager", "secret_id": "s"})
    assert "pip install 'aurora_backend[iam]'" in str(err.value) and KEY in str(err.value)


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"HOST": "10.0.0.5"}, "is not an RDS endpoint name"),
        ({"PASSWORD": "left-over"}, "remove PASSWORD"),
        ({"HOST": ""}, "set DATABASES['iam']['HOST'] to the cluster's endpoint name"),
    ],
)
def test_iam_settings_are_checked_when_the_wrapper_is_built(changes, fragment):
    from django.db import connections

    settings_dict = {
        **connections["default"].settings_dict,
        "HOST": ENDPOINT,
        "USER": "app",
        "PASSWORD": "",
        "OPTIONS": {"sslmode": "require", "aurora": {"credentials": {"source": "iam"}}},
        **changes,
    }
    with pytest.raises(ImproperlyConfigured) as err:
        DatabaseWrapper(settings_dict, alias="iam")
    assert fragment in str(err.value)
    assert "left-over" not in str(err.value)


def test_region_parsing():
    assert config  # the module the option lives in
    from aurora_backend.credentials.iam import region_from_host

    assert region_from_host(ENDPOINT) == "eu-west-1"
    assert region_from_host("x.proxy-abc.us-gov-west-1.rds.amazonaws.com") == "us-gov-west-1"
    assert region_from_host("x.cluster-abc.cn-north-1.rds.amazonaws.com.cn") == "cn-north-1"
    assert region_from_host("localhost") is None and region_from_host(None) is None


def test_the_system_check_reports_a_bad_credentials_setting_without_connecting():
    from aurora_backend.health.checks import alias_settings_messages

    settings_dict = {
        "ENGINE": "aurora_backend",
        "HOST": ENDPOINT,
        "USER": "app",
        "PASSWORD": "left-over",
        "OPTIONS": {"sslmode": "require", "aurora": {"credentials": {"source": "iam"}}},
    }
    (message,) = alias_settings_messages("default", settings_dict)
    assert message.id == "aurora_backend.E001" and "remove PASSWORD" in message.msg
    assert "left-over" not in message.msg
