"""RDS Blue/Green: the local deployment, the phases the ENGINE sees, the hold, the ledger.

Real servers throughout: blue and green are local Aurora clusters, green fed by logical
replication; switchover() drops connections (simulators), moves DNS names (TTL 0.2 s
instead of 5 s) and publishes each phase through the metadata function. Polls are
scaled down with the deadlines (poll 0.2 s, fast poll 0.02 s instead of 60 s and 0.1 s).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import pytest
from django.db import OperationalError, connections, transaction
from ledger import services
from ledger.models import Account, Transfer

from aurora_backend import bluegreen, retry_atomic, signals, stats
from aurora_backend.bluegreen import tokens
from aurora_backend.testing.bluegreen import BlueGreenDeployment
from aurora_backend.testing.drivers import pool_enabled
from aurora_backend.testing.fixtures import register_alias, unregister_alias
from aurora_backend.transactions.commit_outcome import CommitOutcomeUnknown

pytestmark = pytest.mark.timeout(90)

WATCH = {"poll": 0.2, "poll_deployed": 0.05, "poll_fast": 0.02, "hold": 10}
CONNECT = {"connect_deadline": 10, "connect_timeout": 2, "backoff_base": 0.02, "backoff_max": 0.2, "topology": False}
WHERE = (
    "ALTER TABLE ledger_transfer ADD COLUMN written_on text DEFAULT current_setting('cluster_name'), "
    "ADD COLUMN written_at timestamptz DEFAULT clock_timestamp()"
)


def deployment() -> BlueGreenDeployment:
    try:
        return BlueGreenDeployment(ttl=0.2, preparation=0.3, post=0.3, rng=random.Random(21)).start()
    except RuntimeError as err:  # no PostgreSQL binaries here
        pytest.skip(str(err))


def alias(bg: BlueGreenDeployment, name: str, **blue_green: Any) -> str:
    settings = bg.blue.database_settings(blue_green=dict(WATCH, **blue_green), **CONNECT)
    if pool_enabled():
        settings["OPTIONS"]["pool"] = {"max_size": 4}
    register_alias(name, settings)
    return name


def ledger_schema(using: str) -> None:
    with connections[using].schema_editor() as editor:
        for model in (Account, Transfer):
            editor.create_model(model)
        editor.execute(WHERE)
        editor.execute(tokens.CREATE_SQL)
    Account.objects.using(using).bulk_create([Account(name="acct-%d" % i, balance=1000) for i in range(10)])


@pytest.fixture(autouse=True)
def _clean(django_db_blocker):
    stats.reset()
    tokens.reset()
    with django_db_blocker.unblock():
        yield
    bluegreen.reset()


@pytest.fixture
def phases():
    seen: list[tuple] = []

    def record(sender, alias, phase, previous, **kwargs):
        seen.append((alias, previous, phase))

    signals.blue_green_phase.connect(record, weak=False)
    yield seen
    signals.blue_green_phase.disconnect(record)


@pytest.fixture(scope="module")
def staging(django_db_blocker):
    """A deployment that is never switched over (hold, rollback, metadata)."""
    bg = deployment()
    try:
        with django_db_blocker.unblock():
            ledger_schema(alias(bg, "bg_setup", enabled=False))
            unregister_alias("bg_setup")
        bg.create()
        yield bg
    finally:
        bg.stop()


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met within %.1f s" % timeout
        time.sleep(0.01)


def assert_phases(phases: list, expected: list, name: str | None = None) -> None:
    """The phases the blue_green_phase signal reported, in order. The watcher thread sends
    the signal just after it updates its phase and holding flag, so wait (bounded) for the
    list to be complete before comparing."""

    def seen() -> list:
        return [p[2] for p in phases if name is None or p[0] == name]

    deadline = time.monotonic() + 10
    while seen() != expected and len(seen()) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen() == expected


def watcher(name: str) -> bluegreen.Watcher:
    found = bluegreen.watcher_of(connections[name])
    assert found is not None
    return found


# ----- settings ---------------------------------------------------------------------------


# ----- fidelity ---------------------------------------------------------------------------


def test_aurora_functions_are_in_pg_catalog_as_on_aurora(staging):
    rows = staging.blue.writer.query(
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'pg_catalog' AND p.proname IN ('aurora_version', 'aurora_db_instance_identifier', "
        "'aurora_replica_status', 'get_blue_green_fast_switchover_metadata') ORDER BY 1",
        dbname=staging.database,
    )
    assert [r[0] for r in rows] == [
        "aurora_db_instance_identifier",
        "aurora_replica_status",
        "aurora_version",
        "get_blue_green_fast_switchover_metadata",
    ]
    # What the AWS Python wrapper runs, qualified (its database_dialect.py).
    writer = staging.blue.writer
    assert (
        writer.scalar(
            "SELECT server_id FROM pg_catalog.aurora_replica_status() WHERE session_id "
            "OPERATOR(pg_catalog.=) 'MASTER_SESSION_ID'",
            dbname=staging.database,
        )
        == writer.id
    )
    assert (
        writer.scalar(
            "SELECT 'pg_catalog.get_blue_green_fast_switchover_metadata'::regproc::text", dbname=staging.database
        )
        is not None
    )


def test_metadata_lists_both_environments_with_the_wrappers_columns(staging):
    rows = staging.blue.writer.query(
        "SELECT version, endpoint, port, role, status FROM "
        "pg_catalog.get_blue_green_fast_switchover_metadata('aws_advanced_python_wrapper-1.0')",
        dbname=staging.database,
    )
    assert {r[3] for r in rows} == {"BLUE_GREEN_DEPLOYMENT_SOURCE", "BLUE_GREEN_DEPLOYMENT_TARGET"}
    assert {(r[0], r[2], r[4]) for r in rows} == {("1.0", staging.blue.port, "AVAILABLE")}
    assert staging.green is not None and staging.green.cluster_endpoint in {r[1] for r in rows}

    def rows_of(side: str) -> list:
        return [{k: v for k, v in row.items() if k != "update_stamp"} for row in staging.metadata(side)]

    assert rows_of("green") == rows_of("blue")  # each writer knows the whole deployment


# ----- hold and rollback ------------------------------------------------------------------


def test_a_hold_that_outlasts_its_setting_raises_naming_it(staging, phases):
    name = alias(staging, "bg_hold", hold=0.3)
    try:
        Account.objects.using(name).count()  # connected; the watcher runs
        wait_for(lambda: watcher(name).phase == "CREATED")  # its first poll
        staging.publish("PREPARATION")
        wait_for(lambda: watcher(name).phase == "PREPARATION")  # within one poll (0.05 s)
        staging.publish("IN_PROGRESS")  # the metadata only: nothing else happens
        wait_for(lambda: watcher(name).holding)
        began = time.monotonic()
        with pytest.raises(OperationalError) as error:
            with transaction.atomic(using=name):
                pass
        held = time.monotonic() - began
        assert isinstance(error.value, bluegreen.BlueGreenHoldTimeout)
        assert "DATABASES['bg_hold']['OPTIONS']['aurora']['blue_green']['hold']" in str(error.value)
        assert 0.3 <= held < 2.0
        assert stats.snapshot(name)["blue_green_hold_timeouts"] == 1
        assert stats.snapshot(name)["blue_green_phase"] == 3
    finally:
        staging.publish("CREATED")
        wait_for(lambda: not watcher(name).holding)
        unregister_alias(name)
    assert_phases(phases, ["CREATED", "PREPARATION", "IN_PROGRESS", "CREATED"])


def test_a_switchover_rolled_back_before_in_progress_changes_nothing(staging, phases):
    name = alias(staging, "bg_rollback")
    written: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        try:
            while not stop.is_set():
                source, destination = random.Random(len(written)).sample(range(1, 11), 2)
                services.transfer(source, destination, 1, using=name)
                written.append(1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections[name].close()

    try:
        Account.objects.using(name).count()
        wait_for(lambda: watcher(name).phase == "CREATED")
        thread = threading.Thread(target=write)
        thread.start()
        staging.switchover(rollback=True)
        count = len(written)
        wait_for(lambda: len(written) > count + 5)
        stop.set()
        thread.join(30)
        assert errors == []
        assert_phases(phases, ["CREATED", "PREPARATION", "CREATED"])
        assert not watcher(name).switched and stats.snapshot(name)["blue_green_holds"] == 0
        assert staging.dns.authoritative(staging.blue.cluster_endpoint) == [staging.blue.writer.address]
        on_green = staging.green.writer.scalar(  # type: ignore[union-attr]
            "SELECT count(*) FROM ledger_transfer WHERE written_on <> %s",
            [staging.blue.writer.id],
            dbname=staging.database,
        )
        assert on_green == 0  # every write went to blue (and reached green by replication)
    finally:
        stop.set()
        unregister_alias(name)


# ----- the switchover ---------------------------------------------------------------------


def test_the_ledger_through_a_switchover(phases):
    """0 app errors, 0 lost, 0 doubled; no write on green before the switch, none on old blue after."""
    bg = deployment()
    name = alias(bg, "bg_ledger", commit_token=True)
    acked: list[uuid.UUID] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    transfer = retry_atomic(services._apply, using=name, max_attempts=50, max_time=30)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                source, destination = rng.sample(range(1, 11), 2)
                request_id = uuid.UUID(int=rng.getrandbits(128))
                transfer(source, destination, rng.randint(1, 5), request_id, name)
                acked.append(request_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections[name].close()

    try:
        ledger_schema(name)
        green = bg.create()
        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(acked) > 20 and watcher(name).phase == "CREATED")
        timeline = bg.switchover()
        count = len(acked)
        wait_for(lambda: len(acked) > count + 20)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert [p for p, _ in timeline] == ["CREATED", "PREPARATION", "IN_PROGRESS", "POST", "COMPLETED"]
        assert_phases(phases, ["CREATED", "PREPARATION", "IN_PROGRESS", "POST", "COMPLETED"], name)
        db = bg.database
        rows = green.writer.query(
            "SELECT request_id, written_on, written_at < %s FROM ledger_transfer", [bg.switched_at], dbname=db
        )
        assert sorted(str(r[0]) for r in rows) == sorted(str(a) for a in acked)  # none lost, none doubled
        assert green.writer.scalar("SELECT sum(balance) FROM ledger_account", dbname=db) == 10 * 1000
        assert not [r for r in rows if r[1] == green.writer.id and r[2]]  # nothing on green before the switch
        assert [r for r in rows if r[1] == green.writer.id]  # and writes there after it
        old = bg.blue.writer
        late = old.scalar("SELECT count(*) FROM ledger_transfer WHERE written_at >= %s", [bg.switched_at], dbname=db)
        assert late == 0  # nothing on old blue after the switch
        counters = stats.snapshot(name)
        assert counters["blue_green_switchovers"] == 1 and counters["blue_green_phase"] == 5
        assert counters["blue_green_holds"] > 0 and counters["blue_green_held_ms"] > 0
    finally:
        stop.set()
        unregister_alias(name)
        bg.stop()


#: Every COMMIT waits for a synchronous standby that never comes, after its commit record is
#: written: cancelled by RDS's drop, it stays committed ("committed locally"), unacknowledged.
WAIT_FOR_NOBODY = "ALTER SYSTEM SET synchronous_standby_names = 'aurora_nobody'"


def test_a_commit_lost_in_the_switchover_is_settled_by_its_token():
    """The COMMIT is on its way when RDS drops connections; blue commits it, green has it.

    With a commit token the engine finds it on green: no error, no second run. Without one,
    the txid rule cannot judge green's answer: CommitOutcomeUnknown, as before.
    """
    bg = deployment()
    with_token, plain = alias(bg, "bg_token", commit_token=True), alias(bg, "bg_plain")
    outcome: dict[str, Any] = {}

    def commit(name: str) -> None:
        try:
            retry_atomic(
                lambda: connections[name].cursor().execute("INSERT INTO slow_commit (v) VALUES (%s)", [name]),
                using=name,
            )()
            outcome[name] = "committed"
        except BaseException as exc:
            outcome[name] = exc
        finally:
            connections[name].close()

    try:
        bg.blue.writer.query("CREATE TABLE slow_commit (id bigserial PRIMARY KEY, v text)", dbname=bg.database)
        bg.blue.writer.query(tokens.CREATE_SQL, dbname=bg.database)
        green = bg.create()
        bg.blue.writer.query(WAIT_FOR_NOBODY)
        bg.blue.writer.query("SELECT pg_reload_conf()")
        for name in (with_token, plain):
            connections[name].cursor().execute("SELECT 1")
            wait_for(lambda name=name: watcher(name).phase == "CREATED")
            connections[name].close()
        threads = [threading.Thread(target=commit, args=(name,)) for name in (with_token, plain)]
        for thread in threads:
            thread.start()
        wait_for(
            lambda: bg.blue.writer.scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'") == 2
        )
        bg.switchover()
        for thread in threads:
            thread.join(30)
        assert outcome[with_token] == "committed"
        assert isinstance(outcome[plain], CommitOutcomeUnknown)
        assert "not the one the transaction ran on" in str(outcome[plain])
        rows = green.writer.query("SELECT v, count(*) FROM slow_commit GROUP BY v ORDER BY v", dbname=bg.database)
        assert rows == [(plain, 1), (with_token, 1)]  # both committed on blue, once, and reached green
        assert bg.blue.writer.scalar("SELECT count(*) FROM slow_commit", dbname=bg.database) == 2
    finally:
        unregister_alias(with_token)
        unregister_alias(plain)
        bg.stop()
