"""``manage.py aurora_health`` against the real server in each state, and its JSON schema."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from aurora_backend import drivers, stats
from aurora_backend.health import report as health
from aurora_backend.testing import free_port
from aurora_backend.testing.drivers import pool_enabled
from tests.pg import server

pytestmark = pytest.mark.django_db(transaction=True)

BLOCKER_APP = "health-test-blocker"


# ----- helpers (also used by test_checks.py) ----------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    """Run the command; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("aurora_health", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def run_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run("--json", *args)
    return code, json.loads(out)


@contextlib.contextmanager
def raw_session(application: str = BLOCKER_APP, **params: Any) -> Iterator[Any]:
    """A second, raw driver session on the test database (not Django's)."""
    srv = server()
    conn = drivers.connect(
        host=srv.host,
        port=srv.port,
        user=params.pop("user", srv.user),
        password=params.pop("password", srv.password),
        dbname=connections["default"].settings_dict["NAME"],
        application_name=application,
        **params,
    )
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def blocking_session() -> Iterator[Any]:
    """Another session idle in an open transaction, holding a temp table and an EXCLUSIVE lock."""
    with raw_session() as conn:
        with conn.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE scratch_rows (n int)")
            conn.commit()  # other sessions see the temp table only once it is committed
            cursor.execute("LOCK TABLE ledger_account IN EXCLUSIVE MODE")
            cursor.execute("SELECT 'still here'")
        time.sleep(0.3)  # make the transaction older than the 0.2 s thresholds the tests pass
        yield conn
        conn.rollback()


@contextlib.contextmanager
def extra_alias(alias: str, **overrides: Any) -> Iterator[dict[str, Any]]:
    """Add a DATABASES alias (a copy of default's with ``overrides``) for the duration."""
    settings_dict = dict(connections["default"].settings_dict, **overrides)
    connections.settings[alias] = settings_dict
    try:
        yield settings_dict
    finally:
        del connections.settings[alias]
        try:  # drop the wrapper built for it (``in`` only looks at settings)
            del connections[alias]
        except AttributeError:
            pass


# ----- a tiny JSON Schema validator (the subset health/schema.json uses) ------------------

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def validate(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, path: str = "$") -> list[str]:
    """Errors of ``instance`` against ``schema`` (type, enum, const, required, properties,
    additionalProperties, items, minimum, oneOf, local $ref)."""
    root = root or schema
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return validate(instance, node, root, path)
    if "oneOf" in schema:
        matches = [s for s in schema["oneOf"] if not validate(instance, s, root, path)]
        return [] if len(matches) == 1 else ["%s: matches %d of oneOf" % (path, len(matches))]
    errors: list[str] = []
    if "type" in schema and not any(_is_type(instance, t) for t in _as_list(schema["type"])):
        return ["%s: %r is not %s" % (path, instance, schema["type"])]
    if "enum" in schema and instance not in schema["enum"]:
        errors.append("%s: %r not in %r" % (path, instance, schema["enum"]))
    if "const" in schema and instance != schema["const"]:
        errors.append("%s: %r != %r" % (path, instance, schema["const"]))
    if "minimum" in schema and isinstance(instance, (int, float)) and instance < schema["minimum"]:
        errors.append("%s: %r < %r" % (path, instance, schema["minimum"]))
    if isinstance(instance, dict):
        errors += ["%s: missing %r" % (path, key) for key in schema.get("required", []) if key not in instance]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in properties:
                errors += validate(value, properties[key], root, "%s.%s" % (path, key))
            elif extra is False:
                errors.append("%s: unexpected key %r" % (path, key))
            elif isinstance(extra, dict):
                errors += validate(value, extra, root, "%s.%s" % (path, key))
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            errors += validate(item, schema["items"], root, "%s[%d]" % (path, i))
    return errors


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _is_type(instance: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(instance, int) and not isinstance(instance, bool)
    if name == "number":
        return isinstance(instance, (int, float)) and not isinstance(instance, bool)
    return isinstance(instance, _TYPES[name])


def schema() -> dict[str, Any]:
    return json.loads(resources.files("aurora_backend").joinpath("health/schema.json").read_text())


# ----- the command, state by state ----------------------------------------------------


def test_healthy_server_exits_0_with_a_readable_table():
    code, out, _ = run("--database", "default")
    assert code == 0, out
    assert "default: HEALTHY" in out
    assert "plain PostgreSQL" in out and ", writer;" in out
    assert "- (not Aurora)" in out  # Aurora-only functions were not called on plain PostgreSQL
    assert "blockers   none" in out
    assert "\x1b[" not in out  # no colour when stdout is not a TTY


def test_json_report_follows_the_documented_schema():
    connections["default"].ensure_connection()
    code, doc = run_json("--database", "default")
    assert code == 0
    assert validate(doc, schema()) == []
    [alias] = doc["databases"]
    assert alias["status"] == "healthy" and alias["connect"]["ok"] and alias["connect"]["attempts"] == 1
    assert alias["endpoint"]["addresses"] == ["127.0.0.1"]
    assert alias["server"]["aurora"] is False and alias["readers"] is None
    pool = alias["process"].pop("pool")
    assert alias["process"] == json.loads(json.dumps(stats.snapshot("default")))
    if pool_enabled():  # this process's pool of "default": psycopg_pool's figures
        assert {"pool_size", "pool_available", "requests_waiting", "pool_max"} <= set(pool)
        assert pool["pool_max"] == 4 and pool["pool_min"] == 0  # aurora_backend's default min_size
        assert 0 <= pool["pool_available"] <= pool["pool_size"] <= 4
    else:
        assert pool is None
    assert alias["capacity"]["connections"] >= 1  # Django's own connection at least
    # The validator really checks: a missing key and a wrong type are reported.
    del alias["connect"]["latency_seconds"]
    alias["status"] = "fine"
    errors = validate(doc, schema())
    assert any("latency_seconds" in e for e in errors) and any("'fine'" in e for e in errors)


def test_closed_port_is_unreachable_exit_2_with_a_clear_message():
    port = free_port()
    with extra_alias("closed", PORT=str(port)):
        code, out, _ = run("--database", "closed")
        assert code == 2
        assert "closed: UNREACHABLE" in out
        assert "cannot connect to 127.0.0.1:%d" % port in out and "Connection refused" in out
        code, doc = run_json("--database", "closed")
    assert code == 2 and validate(doc, schema()) == []
    failure = doc["databases"][0]["connect"]["error"]
    assert failure["kind"] == "connect_retryable" and failure["error_class"] == "OperationalError"
    assert doc["databases"][0]["server"] is None


@pytest.mark.django_db(transaction=True, databases=["default", "sim"])
def test_wait_wakes_a_paused_cluster_and_shows_progress(simulator):
    # The first startup is held 1 s from the moment it arrives (not from before the command
    # starts: under load the command may reach its first attempt late), then gets 57P03.
    simulator.pause()
    result: list[tuple[int, str, str]] = []

    def command() -> None:
        try:
            result.append(run("--json", "--database", "sim", "--wait", "15", "--cold-start-seconds", "0.8"))
        finally:
            connections.close_all()

    thread = threading.Thread(target=command)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while simulator.held_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert simulator.held_count() == 1, "the command's first startup never reached the paused simulator"
        time.sleep(1.0)  # the pause itself: the held attempt waits this long
    finally:
        simulator.resume(fail=1)
        thread.join(30)
    assert not thread.is_alive() and result
    code, out, err = result[0]
    assert code == 0, out + err
    assert "waiting up to 15 s for sim" in err
    assert "sim: attempt 1 failed after" in err and "starting up" in err
    connect = json.loads(out)["databases"][0]["connect"]
    assert connect["ok"] and connect["attempts"] >= 2 and connect["cold_start"] is True
    assert connect["latency_seconds"] >= 1.0


@pytest.mark.django_db(transaction=True, databases=["default", "sim"])
def test_paused_cluster_without_wait_is_unreachable(simulator):
    simulator.pause()
    try:
        code, doc = run_json("--database", "sim")
    finally:
        simulator.resume()
    assert code == 2
    assert doc["databases"][0]["connect"]["error"]["kind"] == "connect_retryable"


def test_open_transaction_temp_table_and_lock_are_blockers_exit_1():
    thresholds = ("--long-transaction-seconds", "0.2", "--idle-in-transaction-seconds", "0.2")
    with blocking_session() as other:
        pid = drivers.backend_pid(other)
        code, doc = run_json("--database", "default", *thresholds)
        _, table, _ = run("--database", "default", *thresholds)
    assert code == 1 and doc["status"] == "degraded"
    assert validate(doc, schema()) == []
    items = {item["kind"]: item for item in doc["databases"][0]["blockers"]["items"]}
    assert set(items) == {"long_transaction", "idle_in_transaction", "temp_table", "table_lock"}
    for item in items.values():
        assert item["pid"] == pid and item["application"] == BLOCKER_APP
        assert item["query"] == "SELECT 'still here'" and item["age_seconds"] >= 0.2
    assert "scratch_rows" in items["temp_table"]["detail"]
    assert items["table_lock"]["detail"] == "ExclusiveLock on ledger_account"
    assert "default: DEGRADED" in table and "4 found" in table
    assert "table_lock" in table and str(pid) in table and "query: SELECT 'still here'" in table


def test_default_thresholds_ignore_a_young_transaction():
    with blocking_session():
        code, doc = run_json("--database", "default")
    kinds = {item["kind"] for item in doc["databases"][0]["blockers"]["items"]}
    assert kinds == {"temp_table", "table_lock"} and code == 1


def test_capacity_near_max_connections_warns():
    code, doc = run_json("--database", "default", "--capacity-warn-percent", "0.1")
    assert code == 1
    assert [f["code"] for f in doc["databases"][0]["findings"] if f["level"] == "warning"] == ["capacity"]


def test_missing_privilege_degrades_the_blockers_section_with_a_note():
    with raw_session() as admin:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("DROP ROLE IF EXISTS health_probe")
            cursor.execute("CREATE ROLE health_probe LOGIN PASSWORD 'probe-pw'")
        try:
            with blocking_session():
                settings_dict = dict(connections["default"].settings_dict, USER="health_probe", PASSWORD="probe-pw")
                report = health.check_alias("probe", settings_dict, health.Thresholds(long_transaction_seconds=0.2))
        finally:
            with admin.cursor() as cursor:
                cursor.execute("DROP ROLE health_probe")
    assert report.status == "degraded"  # the temp table and lock are still seen (catalogs are public)
    assert report.blockers is not None and report.blockers.complete is False
    assert report.blockers.hidden_sessions >= 1 and "pg_read_all_stats" in (report.blockers.note or "")
    assert "long_transaction" not in {b.kind for b in report.blockers.items}  # hidden, not guessed


FAKE_AURORA = """
CREATE FUNCTION aurora_version() RETURNS text LANGUAGE sql AS $$ SELECT '15.4.1' $$;
CREATE FUNCTION aurora_db_instance_identifier() RETURNS text LANGUAGE sql AS $$ SELECT 'db-writer-1' $$;
CREATE FUNCTION aurora_replica_status() RETURNS TABLE (
    server_id text, session_id text, durable_lsn bigint, replica_lag_in_msec real, cpu real,
    last_update_timestamp timestamptz
) LANGUAGE sql AS $$
    VALUES ('db-writer-1', 'MASTER_SESSION_ID', 100::bigint, NULL::real, 12.5::real, now()),
           ('db-reader-1', 'a1b2c3', 99::bigint, 4500::real, 3.0::real, now())
$$;
"""
DROP_FAKE_AURORA = "DROP FUNCTION IF EXISTS aurora_version(), aurora_db_instance_identifier(), aurora_replica_status()"


def test_aurora_sections_with_fake_aurora_functions():
    with raw_session() as admin:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(FAKE_AURORA)
        try:
            code, doc = run_json("--database", "default")
            _, table, _ = run("--database", "default")
        finally:
            with admin.cursor() as cursor:
                cursor.execute(DROP_FAKE_AURORA)
    assert validate(doc, schema()) == []
    alias = doc["databases"][0]
    assert alias["server"]["aurora"] is True
    assert (alias["server"]["aurora_version"], alias["server"]["instance_id"]) == ("15.4.1", "db-writer-1")
    assert [(r["server_id"], r["role"], r["replica_lag_ms"]) for r in alias["readers"]] == [
        ("db-writer-1", "writer", None),
        ("db-reader-1", "reader", 4500.0),
    ]
    assert code == 1 and [f["code"] for f in alias["findings"] if f["level"] == "warning"] == ["replica_lag"]
    assert "Aurora 15.4.1, instance db-writer-1" in table and "db-reader-1 lag 4500 ms" in table


def test_host_name_is_resolved_to_its_addresses():
    settings_dict = dict(connections["default"].settings_dict, HOST="localhost")
    report = health.check_alias("byname", settings_dict)
    assert "127.0.0.1" in report.endpoint.addresses and report.endpoint.host == "localhost"


def test_watch_repeats_count_times():
    code, out, _ = run("--database", "default", "--watch", "0", "--count", "2")
    assert code == 0 and out.count("aurora_health ") == 2


def test_every_aurora_alias_is_checked_by_default_and_bad_aliases_are_refused():
    assert health.aurora_aliases() == ["default", "sim"]
    with pytest.raises(CommandError, match="Unknown database alias 'nope'"):
        run("--database", "nope")
    with extra_alias("lite", ENGINE="django.db.backends.sqlite3", NAME=":memory:"):
        with pytest.raises(CommandError, match="'lite' does not use aurora_backend"):
            run("--database", "lite")


def test_a_connect_that_fails_for_good_is_counted_as_a_connect_failure(django_db_blocker):
    """``connect_failures`` (stats, aurora_health, the exported metrics) moves when a connect
    gives up: here, a closed port past a short ``connect_deadline``."""
    from django.db import OperationalError

    options = dict(connections["default"].settings_dict["OPTIONS"])
    options["aurora"] = dict(options["aurora"], connect_deadline=0.3, backoff_max=0.05)
    if pool_enabled():
        options["pool"] = {"max_size": 1, "timeout": 1}
    with extra_alias("refused", PORT=str(free_port()), OPTIONS=options):
        before = stats.snapshot("refused")["connect_failures"]
        with django_db_blocker.unblock(), pytest.raises(OperationalError, match="connect_deadline"):
            connections["refused"].ensure_connection()
        after = stats.snapshot("refused")["connect_failures"]
    # Django's pool keeps trying in its own threads: each of its connects that gives up counts.
    assert after - before >= 1 if pool_enabled() else after - before == 1
