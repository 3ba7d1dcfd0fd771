"""Proxy mode: the ENGINE sends nothing that pins behind RDS Proxy, as the simulator judges it.

The simulator's RDS Proxy mode applies AWS's pinning rules to what each client session
sends (aurora_backend/simulator/pinning.py). Two extra aliases reach the test database
through the session's simulator with the same settings a user behind RDS Proxy might
have (a per-alias TIME_ZONE, OPTIONS isolation_level), one with proxy mode on, one off.
"""

from __future__ import annotations

import logging
import uuid

import psycopg2
import pytest
from django.db import connections, transaction
from django.db.backends.postgresql.psycopg_any import IsolationLevel
from ledger import services
from ledger.models import Account, Transfer

from aurora_backend import retry_atomic, stats
from aurora_backend.simulator.control import ControlClient, serve_control
from aurora_backend.simulator.pinning import query_pins
from aurora_backend.simulator.rds_proxy import PinningError
from tests.pg import server
from tests.settings import SIM_PORT, TEST_AURORA_OPTIONS

pytestmark = pytest.mark.timeout(60)

REPEATABLE_READ = IsolationLevel.REPEATABLE_READ  # the active driver's number for it


@pytest.mark.parametrize(
    "sql, reasons",
    [
        ("SELECT 1", []),
        ("SET TIME ZONE 'UTC'", ["SET / set_config (session setting)"]),
        ("SET default_transaction_isolation TO DEFAULT", ["RESET / SET ... TO DEFAULT (session setting)"]),
        ("SET ROLE app_owner", ["SET ROLE"]),
        ("SET LOCAL statement_timeout = 5", []),
        ("BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION READ ONLY", []),
        ("SELECT set_config('TimeZone', 'UTC', false)", ["SET / set_config (session setting)"]),
        ("SELECT set_config('app.user', '7', true)", []),
        ('DECLARE "c" CURSOR WITHOUT HOLD FOR SELECT 1', ["cursor declared (DECLARE)"]),
        ("SELECT nextval('s'), 'setval(' AS text", ["sequence function"]),
        ("SELECT currval('s')", ["sequence function"]),
        ("LOAD 'auto_explain'", ["LOAD (library)"]),
        ("CREATE TEMP TABLE t (a int) ON COMMIT DROP", ["temporary table, sequence or view"]),
        ("DISCARD ALL", ["DISCARD (session state)"]),
        ("CREATE TEMPORARY TABLE t (a int)", ["temporary table, sequence or view"]),
        ("SELECT pg_advisory_xact_lock(1)", []),
        ("SELECT pg_try_advisory_lock(1)", ["session-level advisory lock"]),
        ("/* LISTEN */ UPDATE t SET a = 1 -- SET x", []),
        (
            "SELECT E'it\\'s; SET x = 1', $$; LISTEN y$$, 'a;b'; SET search_path = app",
            ["SET / set_config (session setting)"],
        ),
        (
            "LISTEN jobs; PREPARE p AS SELECT 1; EXECUTE p",
            ["LISTEN", "prepared statement (SQL)", "prepared statement (SQL)"],
        ),
        ("UNLISTEN jobs; CLOSE c; SET CONSTRAINTS ALL IMMEDIATE", []),
        ("SELECT '%s'" % ("x" * 16400), ["statement over 16 KB"]),
    ],
)
def test_pinning_rules(sql, reasons):
    assert [pin.reason for pin in query_pins(sql)] == reasons


def test_proxy_option_auto_true_false_and_the_idle_cap():
    from django.core.exceptions import ImproperlyConfigured

    from aurora_backend.options import AuroraOptions
    from aurora_backend.proxy.mode import PROXY_IDLE_CLOSE, proxy_enabled, proxy_options

    proxy_host = {"HOST": "app.proxy-abc.eu-west-1.rds.amazonaws.com"}
    cluster_host = {"HOST": "app.cluster-abc.eu-west-1.rds.amazonaws.com"}
    auto = AuroraOptions.from_settings("x", {"aurora": {"proxy": "auto"}})
    assert auto == AuroraOptions.from_settings("x", {}) and auto.proxy is None
    assert proxy_enabled(auto, proxy_host) and not proxy_enabled(auto, cluster_host)
    forced = AuroraOptions.from_settings("x", {"aurora": {"proxy": True, "idle_timeout": None}})
    assert proxy_enabled(forced, cluster_host) and proxy_options(forced, cluster_host).idle_timeout == PROXY_IDLE_CLOSE
    assert proxy_options(auto, proxy_host).idle_timeout == 120.0  # already below the proxy's 1,800 s
    off = AuroraOptions.from_settings("x", {"aurora": {"proxy": False, "idle_timeout": None}})
    assert not proxy_enabled(off, proxy_host) and proxy_options(off, proxy_host).idle_timeout is None
    with pytest.raises(ImproperlyConfigured, match=r"\['proxy'\] = 'yes' is invalid: it accepts \"auto\""):
        AuroraOptions.from_settings("x", {"aurora": {"proxy": "yes"}})


def _raw(port=SIM_PORT):
    srv = server()
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=port,
        user=srv.user,
        password=srv.password,
        dbname="postgres",
        application_name="pin-test",
    )
    conn.autocommit = True
    return conn


def test_simulator_reports_each_session_and_why(simulator):
    simulator.clear_pinning()
    simulator.rds_proxy(True)
    try:
        pinned, clean = _raw(), _raw()
        with pinned.cursor() as cur:
            cur.execute("SET work_mem = '8MB'")
            cur.execute("SELECT pg_advisory_lock(42)")
            cur.execute("SELECT pg_advisory_unlock(42)")
        with clean.cursor() as cur:
            cur.execute("SELECT 1")
            cur.execute("BEGIN; SET LOCAL work_mem = '8MB'; COMMIT")
        report = {r["session"]: r for r in simulator.pinning()}
        assert len(report) == 2 and all(r["application_name"] == "pin-test" for r in report.values())
        first, second = sorted(report)
        assert report[first]["pinned"] and not report[second]["pinned"]
        assert [(r["reason"], r["detail"]) for r in report[first]["reasons"]] == [
            ("SET / set_config (session setting)", "SET work_mem = '8MB'"),
            ("session-level advisory lock", "SELECT pg_advisory_lock(42)"),
        ]
        control = ControlClient(serve_control(simulator))
        try:
            answer = control.command("pinning pinned")
            assert [r["session"] for r in answer["result"]] == [first]
            assert answer["status"]["rds_proxy"] is True and answer["status"]["counters"]["pinned_sessions"] >= 1
        finally:
            control.close()
        pinned.close()
        clean.close()
    finally:
        simulator.rds_proxy(False)
        simulator.clear_pinning()


def test_named_prepared_statement_is_a_protocol_level_pin(simulator):
    psycopg = pytest.importorskip("psycopg", reason="psycopg 3 sends Parse messages")
    srv = server()
    with simulator.watch_pinning() as watch:
        with psycopg.connect(
            host="127.0.0.1", port=SIM_PORT, user=srv.user, password=srv.password, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute("SELECT %s::int", [1], prepare=False)  # unnamed statement: no pin
            assert watch.pins == []
            conn.execute("SELECT %s::int", [1], prepare=True)
    assert [pin.reason for _, pin in watch.pins] == ["named prepared statement (Parse)"]
    assert watch.pins[0][1].detail.startswith("Parse '_pg3_")


# ----- the ENGINE in front of the simulator ----------------------------------------------------


def _alias(proxy: bool) -> dict:
    srv = server()
    return {
        "ENGINE": "aurora_backend",
        "NAME": connections["default"].creation._get_test_db_name(),
        "USER": srv.user,
        "PASSWORD": srv.password,
        "HOST": "127.0.0.1",
        "PORT": str(SIM_PORT),
        # What users behind RDS Proxy set: a local timezone and a stricter isolation level.
        "TIME_ZONE": "Europe/Paris",
        "OPTIONS": {"aurora": {**TEST_AURORA_OPTIONS, "proxy": proxy}, "isolation_level": REPEATABLE_READ},
    }


@pytest.fixture
def proxied(simulator, transactional_db, django_db_blocker):
    """Aliases "proxy_on" and "proxy_off" to the test database through the simulator.

    Real transactions (no test-case wrapping); the workloads remove the rows they add.
    """
    added = {"proxy_on": _alias(True), "proxy_off": _alias(False)}
    connections.settings.update(connections.configure_settings({"default": connections.settings["default"], **added}))
    simulator.clear_pinning()
    try:
        with django_db_blocker.unblock():
            yield simulator
    finally:
        for alias in added:
            connections[alias].close()
            del connections[alias]
            connections.settings.pop(alias, None)
        simulator.clear_pinning()


def ledger_workload(using: str) -> None:
    """The testproject ledger: accounts, transfers (retry_atomic), reads, an iterator, a report."""
    a, b = (Account.objects.using(using).create(name="%s-%s" % (using, n), balance=100) for n in "ab")
    for amount in (10, 20, 30):
        services.transfer(a.pk, b.pk, amount, using=using)
    with transaction.atomic(using=using):
        assert Account.objects.using(using).select_for_update().get(pk=a.pk).balance == 40
    assert sum(t.amount for t in Transfer.objects.using(using).filter(source=a).iterator(chunk_size=2)) == 60
    assert Account.objects.using(using).filter(name__startswith=using).count() == 2
    Transfer.objects.using(using).filter(source=a).delete()
    Account.objects.using(using).filter(pk__in=[a.pk, b.pk]).delete()


def test_ledger_workload_pins_without_proxy_mode_and_not_with_it(proxied):
    with proxied.watch_pinning() as off:
        ledger_workload("proxy_off")
        connections["proxy_off"].close()
    reasons = {pin.reason for _, pin in off.pins}
    details = " | ".join(pin.detail for _, pin in off.pins)
    # Django's timezone SET and .iterator()'s DECLARE under both drivers; psycopg2 also SETs
    # default_transaction_isolation around each atomic() (psycopg 3 puts it in BEGIN).
    assert {"SET / set_config (session setting)", "cursor declared (DECLARE)"} <= reasons, details
    assert reasons <= {
        "SET / set_config (session setting)",
        "RESET / SET ... TO DEFAULT (session setting)",
        "cursor declared (DECLARE)",
    }, details
    assert "set_config('TimeZone', 'Europe/Paris', false)" in details

    with proxied.assert_no_pinning() as on:
        ledger_workload("proxy_on")
        connections["proxy_on"].close()
    assert on.sessions and on.pins == []


def test_proxy_mode_keeps_the_isolation_level_per_transaction(proxied):
    conn = connections["proxy_on"]

    def level() -> str:
        with conn.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            return cursor.fetchone()[0]

    with proxied.assert_no_pinning():
        with transaction.atomic(using="proxy_on"):
            assert level() == "repeatable read"
        assert level() == "read committed"  # autocommit statements: the session's default
        with transaction.atomic(using="proxy_on"):
            assert level() == "repeatable read"
            with transaction.atomic(using="proxy_on"):  # a savepoint keeps the transaction's level
                assert level() == "repeatable read"


def test_bulk_statements_stay_under_16_kb_in_proxy_mode(proxied):
    def accounts(prefix: str) -> list:
        return [Account(name="%s-%04d-%s" % (prefix, i, "x" * 40), balance=i) for i in range(600)]

    with proxied.watch_pinning() as off:
        Account.objects.using("proxy_off").bulk_create(accounts("off"))
        Account.objects.using("proxy_off").filter(name__startswith="off-").delete()
    assert {pin.reason for _, pin in off.pins} >= {"statement over 16 KB"}

    with proxied.assert_no_pinning():
        made = Account.objects.using("proxy_on").bulk_create(accounts("on"))
        assert Account.objects.using("proxy_on").filter(name__startswith="on-").count() == 600
        for account in made[:300]:
            account.balance += 1
        Account.objects.using("proxy_on").bulk_update(made[:300], ["balance"])
        assert Account.objects.using("proxy_on").filter(name__startswith="on-", balance__gte=1).count() == 600
        Account.objects.using("proxy_on").filter(name__startswith="on-").delete()


def test_proxy_mode_logs_how_to_set_the_timezone(proxied, caplog):
    with caplog.at_level(logging.WARNING, logger="aurora_backend"):
        connections["proxy_on"].ensure_connection()
    text = caplog.text
    assert (
        "does not SET the session timezone" in text
        and "ALTER ROLE %s SET timezone TO 'Europe/Paris'" % server().user in text
    )


def test_datetimes_keep_their_instant_without_the_timezone_set(proxied):
    import datetime

    noon_utc = datetime.datetime(2024, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
    for alias in ("proxy_on", "proxy_off"):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT '2024-01-01 12:00:00+00'::timestamptz, current_setting('TimeZone')")
            value, session_tz = cursor.fetchone()
        assert value == noon_utc, alias
        assert session_tz == (
            "Europe/Paris" if alias == "proxy_off" else connections[alias].connection.info.parameter_status("TimeZone")
        )


def test_retry_and_commit_outcome_stay_pin_free_through_a_scale_event(proxied):
    calls = []

    @retry_atomic(using="proxy_on", backoff_base=0.001, backoff_max=0.01)
    def work() -> None:
        calls.append(1)
        Account.objects.using("proxy_on").create(name="retry-%s" % uuid.uuid4().hex[:8], balance=1)
        if len(calls) == 1:
            assert proxied.scale_event() >= 1
        Account.objects.using("proxy_on").filter(balance=1).update(balance=2)

    before = stats.snapshot("proxy_on")["transactions_retried"]
    with proxied.assert_no_pinning():
        work()
    assert len(calls) == 2 and stats.snapshot("proxy_on")["transactions_retried"] == before + 1


def test_psycopg3_prepared_statements_are_turned_off_in_proxy_mode(simulator, transactional_db, django_db_blocker):
    from aurora_backend import drivers

    if drivers.NAME != "psycopg":
        pytest.skip("prepare_threshold and server_side_binding are psycopg 3 options")
    prepared = {"prepare_threshold": 0, "server_side_binding": True}  # prepare every statement
    added = {}
    for name, proxy in (("prep_on", True), ("prep_off", False)):
        entry = _alias(proxy)
        entry["OPTIONS"] = {"aurora": {**TEST_AURORA_OPTIONS, "proxy": proxy}, **prepared}
        added[name] = entry
    connections.settings.update(connections.configure_settings({"default": connections.settings["default"], **added}))
    try:
        with django_db_blocker.unblock():
            with simulator.watch_pinning() as off:
                assert Account.objects.using("prep_off").filter(balance__gte=0).count() >= 0
            assert "named prepared statement (Parse)" in {pin.reason for _, pin in off.pins}
            with simulator.assert_no_pinning():
                assert Account.objects.using("prep_on").filter(balance__gte=0).count() >= 0
                assert connections["prep_on"].connection.prepare_threshold is None
    finally:
        for alias in added:
            connections[alias].close()
            del connections[alias]
            connections.settings.pop(alias, None)


def test_assert_no_pinning_fails_with_the_causes(proxied):
    with pytest.raises(PinningError, match=r"(?s)1 session\(s\) would be pinned.*cursor declared \(DECLARE\)"):
        with proxied.assert_no_pinning():
            with connections["proxy_off"].cursor() as cursor:
                cursor.execute("DECLARE c CURSOR WITH HOLD FOR SELECT 1")
                cursor.execute("CLOSE c")


@pytest.mark.parametrize(
    "server_zone, django_zone, same",
    [
        ("Etc/UTC", "UTC", True),
        ("UTC", "Etc/UTC", True),
        ("Etc/Universal", "UTC", True),
        ("GMT", "UTC", True),
        ("utc", "UTC", True),
        ("Europe/Paris", "Europe/Paris", True),
        ("Europe/Paris", "UTC", False),
        ("Etc/GMT+1", "UTC", False),
    ],
)
def test_zone_names_of_one_zone_are_the_same_zone(server_zone, django_zone, same):
    from aurora_backend.proxy.mode import same_zone

    assert same_zone(server_zone, django_zone) is same


def test_a_server_in_etc_utc_and_django_in_utc_is_no_difference(proxied, caplog):
    settings_dict = {**_alias(True), "TIME_ZONE": "UTC"}
    settings_dict["OPTIONS"] = {**settings_dict["OPTIONS"], "options": "-c TimeZone=Etc/UTC"}
    connections.settings.update(
        connections.configure_settings({"default": connections.settings["default"], "proxy_utc": settings_dict})
    )
    try:
        with caplog.at_level(logging.WARNING, logger="aurora_backend"):
            with proxied.assert_no_pinning():
                with connections["proxy_utc"].cursor() as cursor:
                    cursor.execute("SELECT current_setting('TimeZone')")
                    assert cursor.fetchone() == ("Etc/UTC",)
        assert "does not SET the session timezone" not in caplog.text
        assert connections["proxy_utc"]._aurora_tz_differs is False
    finally:
        connections["proxy_utc"].close()
        del connections["proxy_utc"]
        connections.settings.pop("proxy_utc", None)


def test_iterator_in_proxy_mode_warns_once_that_it_reads_the_whole_result(proxied, caplog):
    from aurora_backend.proxy import mode

    mode._iterator_warned.pop("proxy_on", None)
    with caplog.at_level(logging.WARNING, logger="aurora_backend"):
        for _ in range(2):
            assert list(Account.objects.using("proxy_on").filter(pk=-1).iterator()) == []
    assert caplog.text.count("the whole result is fetched at once") == 1
