"""Credentials that rotate, against a real PostgreSQL that authenticates with scram-sha-256.

A Secrets Manager rotation is done as its rotation Lambda does it (AWSPENDING set, ALTER
ROLE, AWSCURRENT moved) while threads open connections through the ENGINE; the secret is
read from a Secrets Manager on 127.0.0.1 (tests/fake_secretsmanager.py) through botocore.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import uuid
from importlib import resources
from typing import Any

import boto3
import pytest
from django.core.management import call_command
from django.db import OperationalError, connections
from django.db.backends.signals import connection_created

from aurora_backend import signals, stats
from aurora_backend.base import DatabaseWrapper
from aurora_backend.credentials import CredentialsRejected, Login
from aurora_backend.credentials.cache import peek
from aurora_backend.credentials.login import cache_key
from aurora_backend.testing.drivers import pool_enabled
from tests.credentials_support import (
    ACCESS_KEY,
    ALIAS,
    ROLE,
    SECRET_KEY,
    Workload,
    close_pool,
    create_role,
    drop_role,
    offline_aws,
    settings_for,
    sql,
)
from tests.fake_secretsmanager import FakeSecretsManager

__all__ = ["offline_aws"]  # a fixture, used by name
SECRET = "prod/app/db"
pytestmark = pytest.mark.usefixtures("offline_aws", "db_access")


@pytest.fixture
def db_access(django_db_blocker):
    """Our aliases talk to the server's ``postgres`` database as ROLE, not the test database."""
    with django_db_blocker.unblock():
        yield
        close_pool()


@pytest.fixture
def fake_sm():
    fake = FakeSecretsManager().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def passwords():
    old, new = "old-" + secrets.token_hex(12), "new-" + secrets.token_hex(12)
    create_role(old)
    try:
        yield old, new
    finally:
        drop_role()


def sm_source(fake: FakeSecretsManager) -> dict[str, Any]:
    return {"source": "secretsmanager", "secret_id": SECRET, "region": "eu-west-1", "endpoint_url": fake.url}


def test_the_server_authenticates_the_role_with_scram(passwords):
    assert sql("SHOW password_encryption") == [("scram-sha-256",)]
    ((stored,),) = sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", ROLE)
    assert stored.startswith("SCRAM-SHA-256$")
    methods = {row[0] for row in sql("SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host'")}
    assert methods == {"scram-sha-256"}


class Store:
    """A credentials callable over a store the test rotates (latest version first)."""

    def __init__(self, password: str) -> None:
        self.current, self.pending, self.calls = password, None, 0

    def __call__(self):
        self.calls += 1
        return ROLE, self.pending or self.current


@pytest.mark.parametrize("source", ["secretsmanager", "callable"])
def test_rotation_under_a_threaded_workload_is_invisible(source, passwords, fake_sm, caplog):
    old, new = passwords
    caplog.set_level(logging.INFO, logger="aurora_backend")
    store = Store(old)
    version = fake_sm.create(SECRET, {"username": ROLE, "password": old, "engine": "postgres"})
    settings_dict = settings_for(sm_source(fake_sm) if source == "secretsmanager" else store)
    lambda_client = boto3.client(
        "secretsmanager",
        region_name="eu-west-1",
        endpoint_url=fake_sm.url,
        aws_access_key_id="AKIDLAMBDA",
        aws_secret_access_key="lambda-secret",
    )
    keeper = DatabaseWrapper(settings_dict, alias=ALIAS)  # a connection that lives through it
    stats.reset()
    try:
        with keeper.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            ((pid_before,),) = cursor.fetchall()
        with Workload(settings_dict) as work:
            work.wait_for(30)
            # createSecret: the new password under AWSPENDING.
            pending = str(uuid.uuid4())
            store.pending = new
            lambda_client.put_secret_value(
                SecretId=SECRET,
                ClientRequestToken=pending,
                VersionStages=["AWSPENDING"],
                SecretString=json.dumps({"username": ROLE, "password": new, "engine": "postgres"}),
            )
            work.wait_for(30)
            sql("ALTER ROLE %s PASSWORD %%s" % ROLE, new)  # setSecret
            before = len(work.pids)
            work.wait_for(60, logins=12)  # new logins while AWSCURRENT still holds the old password
            lambda_client.update_secret_version_stage(  # finishSecret
                SecretId=SECRET,
                VersionStage="AWSCURRENT",
                MoveToVersionId=pending,
                RemoveFromVersionId=version,
            )
            store.current, store.pending = new, None
            work.wait_for(30, logins=6)
        with keeper.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            ((pid_after,),) = cursor.fetchall()
    finally:
        keeper.close()
    connected = stats.snapshot(ALIAS)["connections"]
    print(
        "rotation via %s: %d connections (%d physical, %d after ALTER ROLE), %d errors, "
        "secret reads %s, callable calls %d"
        % (
            source,
            connected,
            len(work.pids),
            len(work.pids) - before,
            len(work.errors),
            dict(fake_sm.reads),
            store.calls,
        )
    )
    assert work.errors == []
    assert len(work.pids) - before >= 18  # logins after ALTER ROLE, all with the new password
    assert pid_after == pid_before  # rotation never closes a live connection
    key = cache_key(keeper.aurora_options.credentials, keeper.settings_dict["HOST"], keeper.settings_dict["PORT"], ROLE)
    assert peek(key).fetches == 2  # once at start, once after the first refused login
    if source == "secretsmanager":
        app_reads = {stage: n for (name, stage), n in fake_sm.reads.items()}
        assert app_reads == {"AWSCURRENT": 2, "AWSPENDING": 1}
        assert all(ACCESS_KEY in auth or "AKIDLAMBDA" in auth for auth in fake_sm.authorizations)
    else:
        assert store.calls == 2
    assert connected >= 150  # connections (with a pool: checkouts) per process >> fetches per process
    dropped = [r for r in caplog.records if "fetching it afresh" in r.getMessage()]
    assert len(dropped) == 1
    assert old not in caplog.text and new not in caplog.text


def test_a_credential_refused_twice_is_a_clear_error_after_one_fresh_fetch(passwords, caplog):
    wrong = "wrong-" + secrets.token_hex(12)
    store = Store(wrong)
    settings_dict = settings_for(store)
    if pool_enabled():  # the pool retries in the background until its timeout, then says why
        settings_dict["OPTIONS"]["pool"]["timeout"] = 1
    for _ in range(2):
        wrapper = DatabaseWrapper(settings_dict, alias=ALIAS)
        with pytest.raises(OperationalError) as raised:
            wrapper.ensure_connection()
        cause = raised.value.__cause__
        assert isinstance(cause, CredentialsRejected)
        assert "refused the login of user %r with a credential from callable" % ROLE in str(cause)
        assert "also after fetching it afresh" in str(cause)
        assert wrong not in str(cause) and wrong not in repr(cause)
    # The cached one, then one fetched afresh; then nothing newer to fetch for REFETCH_PAUSE,
    # however many attempts (a second connect, the pool's background retries).
    assert store.calls == 2
    assert wrong not in caplog.text


def _capture_signals() -> list[str]:
    seen: list[str] = []

    def receiver(sender, **kwargs):
        seen.append(repr(sorted(kwargs.items(), key=lambda kv: kv[0])))

    for signal in (signals.reconnected, signals.connect_retry, signals.scale_event, connection_created):
        signal.connect(receiver, weak=False, dispatch_uid="credentials-grep")
    return seen


def _health(alias: str, settings_dict: dict[str, Any]) -> list[str]:
    from tests.test_health import validate

    connections.settings[alias] = settings_dict
    try:
        out = io.StringIO()
        try:
            call_command("aurora_health", "--json", "--database", alias, stdout=out)
        except SystemExit:
            pass
        report = json.loads(out.getvalue())
        schema = json.loads(resources.files("aurora_backend.health").joinpath("schema.json").read_text())
        assert validate(report, schema) == []
        table = io.StringIO()
        try:
            call_command("aurora_health", "--database", alias, stdout=table)
        except SystemExit:
            pass
        return [out.getvalue(), table.getvalue(), json.dumps(report["databases"][0]["credentials"])]
    finally:
        del connections.settings[alias]
        try:
            del connections[alias]
        except AttributeError:
            pass


def test_secrets_never_reach_logs_errors_signals_health_or_repr(passwords, fake_sm, caplog, capfd):
    old, _ = passwords
    caplog.set_level(logging.DEBUG, logger="aurora_backend")
    seen = _capture_signals()
    wrong = "wrong-" + secrets.token_hex(12)
    fake_sm.create(SECRET, {"username": ROLE, "password": old})
    texts: list[str] = []
    try:
        good = settings_for(sm_source(fake_sm))
        wrapper = DatabaseWrapper(good, alias=ALIAS)
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == ROLE
        texts += [repr(wrapper.aurora_options), repr(wrapper.settings_dict), repr(vars(wrapper))]
        texts += [repr(vars(peek(key))) for key in [cache_key(wrapper.aurora_options.credentials, None, None, None)]]
        texts += [
            repr(Login(wrapper.aurora_options.credentials, wrapper.aurora_runtime, OperationalError, "x").__dict__)
        ]
        wrapper.close()
        health = _health("rotating_health", good)
        texts += health
        status = json.loads(health[2])
        assert status["source"] == "secretsmanager" and status["fetches"] == 1 and status["age_seconds"] >= 0
        assert status["label"] == "AWSCURRENT"
        bad_settings = settings_for(Store(wrong))
        if pool_enabled():
            bad_settings["OPTIONS"]["pool"]["timeout"] = 1
        bad = DatabaseWrapper(bad_settings, alias="rotating_bad")
        with pytest.raises(OperationalError) as raised:
            bad.ensure_connection()
        error: BaseException = raised.value
        while error is not None:
            texts += [str(error), repr(error), repr(getattr(error, "args", ()))]
            error = error.__cause__ or error.__context__
    finally:
        for signal in (signals.reconnected, signals.connect_retry, signals.scale_event, connection_created):
            signal.disconnect(dispatch_uid="credentials-grep")
    out, err = capfd.readouterr()
    everything = "\n".join(texts + seen + [caplog.text, out, err])
    assert ROLE in everything and "secretsmanager" in everything  # we did look at the real output
    for secret in (old, wrong, SECRET_KEY):
        assert secret not in everything


def test_dbshell_gets_the_fresh_credential_in_the_environment_not_argv(passwords, capfd):
    old, new = passwords
    store = Store(old)
    settings_dict = settings_for(store)
    wrapper = DatabaseWrapper(settings_dict, alias=ALIAS)
    args, env = wrapper.client.settings_to_cmd_args_env(wrapper.settings_dict, ["-c", "SELECT 1"])
    assert env["PGPASSWORD"] == old and old not in " ".join(args) and ["-U", ROLE] == args[1:3]
    sql("ALTER ROLE %s PASSWORD %%s" % ROLE, new)
    store.current = new  # rotated since: dbshell must not use the password it saw above
    connections.settings["rotating_shell"] = settings_dict
    try:
        call_command("dbshell", "--database", "rotating_shell", "--", "-tAc", "SELECT current_user || '-ok'")
    finally:
        del connections.settings["rotating_shell"]
        try:
            del connections["rotating_shell"]
        except AttributeError:
            pass
    out, _ = capfd.readouterr()
    assert "%s-ok" % ROLE in out  # psql logged in with the password fetched afresh
    assert old not in out and new not in out
    assert store.calls == 2
