"""Aurora Global Database on the local global database (aurora_backend/testing/global_db.py).

Two regions in real streaming replication: local-1 (primary at the start) and local-2 (a
cascaded secondary). The app under test lives in local-2: its writer alias is on the global
writer endpoint, its reader alias on local-2's reader endpoint with home_region="local-2".
TTL and DNS delay are scaled down to 0.5 s; the DNS clock is frozen where a test says so,
so whatever reaches a new writer then got there through the global topology.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import pytest
from django.db import NotSupportedError, connections, transaction
from django.test import override_settings
from ledger import services
from ledger.models import Account, Transfer

from aurora_backend import retry_atomic, signals
from aurora_backend.global_db import state as global_state
from aurora_backend.global_db.forwarding import WriteForwardingRefused
from aurora_backend.routing.config import RoutingConfig
from aurora_backend.routing.router import AuroraRouter
from aurora_backend.runtime import Runtime
from aurora_backend.testing.drivers import pool_enabled
from aurora_backend.testing.fixtures import register_alias, unregister_alias
from aurora_backend.topology import router as topology

pytestmark = pytest.mark.timeout(90)
OPTIONS = {"connect_deadline": 10, "connect_timeout": 2, "backoff_base": 0.02, "backoff_max": 0.2}
ALIASES = ("gdb_w", "gdb_r", "gdb_dns", "gdb_fwd", "gdb_fwd_err")
HOME = "local-2"


# -- without a database ----------------------------------------------------------------


# -- on the local global database --------------------------------------------------------


@pytest.fixture(scope="module")
def gdb(django_db_blocker):
    from aurora_backend.testing.global_db import GlobalDatabase

    try:
        database = GlobalDatabase(ttl=0.5, dns_delay=0.5, rng=random.Random(24)).start()
    except RuntimeError as err:  # no PostgreSQL binaries here
        pytest.skip(str(err))
    pool = {"pool": {"max_size": 4}} if pool_enabled() else {}
    home = dict(OPTIONS, home_region=HOME)
    settings = {
        "gdb_w": database.database_settings(**OPTIONS),
        "gdb_dns": database.database_settings(topology=False, **OPTIONS),
        "gdb_r": database.database_settings(database.reader_endpoint(HOME), **home),
        "gdb_fwd": database.database_settings(
            database.reader_endpoint(HOME), write_forwarding="route", primary_alias="gdb_w", **home
        ),
        "gdb_fwd_err": database.database_settings(database.reader_endpoint(HOME), write_forwarding="error", **home),
    }
    for alias, entry in settings.items():
        entry["OPTIONS"].update(pool)
        register_alias(alias, entry)
    try:
        with django_db_blocker.unblock():
            with connections["gdb_w"].schema_editor() as editor:
                for model in (Account, Transfer):
                    editor.create_model(model)
            database.wait_streaming()
            yield database
    finally:
        with django_db_blocker.unblock():
            for alias in ALIASES:
                unregister_alias(alias)
        database.stop()


@pytest.fixture
def db(gdb, django_db_blocker):
    topology.reset()
    global_state.reset()
    moves: list[dict[str, Any]] = []

    def on_failover(sender: Any, **kwargs: Any) -> None:
        moves.append(kwargs)

    signals.topology_failover.connect(on_failover, dispatch_uid="test-global-db")
    with django_db_blocker.unblock():
        _close_all()
        yield gdb, moves
        _close_all()
    signals.topology_failover.disconnect(dispatch_uid="test-global-db")
    gdb.clock.release()
    gdb.clock.advance(gdb.dns_delay + gdb.dns.ttl)  # every DNS move of the test has happened
    gdb.dns.flush()


def _close_all() -> None:
    """Every alias's connection and, under Django's pool, its pool: each test starts as a new
    process would, with no connection made before the topology registries were reset (a
    pool's connection learns the global topology when it is opened, not when checked out)."""
    for alias in ALIASES:
        connections[alias].close()
        close_pool = getattr(connections[alias], "close_pool", None)
        if close_pool is not None:
            close_pool()


def where(using: str) -> tuple[str, bool]:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT aurora_db_instance_identifier(), pg_is_in_recovery()")
        name, recovering = cursor.fetchone()
    return name, recovering


def test_global_functions_have_aws_columns_and_follow_replication(db):
    gdb, _ = db
    rows = gdb.status(instance_id=gdb.regions[HOME].instances[-1].id)  # asked on a secondary reader
    assert list(rows[0]) == [
        "server_id",
        "session_id",
        "aws_region",
        "durable_lsn",
        "highest_lsn_rcvd",
        "feedback_epoch",
        "feedback_xmin",
        "oldest_read_view_lsn",
        "visibility_lag_in_msec",
    ]
    assert {r["server_id"]: r["aws_region"] for r in rows} == {i.id: gdb.region_of(i.id) for i in gdb.instances()}
    writers = [r for r in rows if r["session_id"] == "MASTER_SESSION_ID"]
    assert [w["server_id"] for w in writers] == [gdb.writer.id] and writers[0]["visibility_lag_in_msec"] is None
    status = gdb.status("SELECT * FROM aurora_global_db_status()")
    assert list(status[0]) == [
        "aws_region",
        "highest_lsn_written",
        "durability_lag_in_msec",
        "rpo_lag_in_msec",
        "last_lag_calculation_time",
        "feedback_epoch",
        "feedback_xmin",
    ]
    assert [(s["aws_region"], s["durability_lag_in_msec"]) for s in status][0] == (gdb.primary_region, -1)
    paused = gdb.regions[HOME].instances[-1]
    gdb.pause_replay(paused.id)
    try:
        gdb.writer.query("SELECT txid_current()", dbname=gdb.database)
        time.sleep(0.3)  # the lag is wall-clock time since the last replayed commit: let some pass
        lags = {
            r["server_id"]: r["visibility_lag_in_msec"]
            for r in gdb.status("SELECT * FROM aurora_global_db_instance_status()")
        }
        assert lags[paused.id] >= 300
        assert all(lag == 0 for name, lag in lags.items() if name not in (paused.id, gdb.writer.id))
    finally:
        gdb.resume_replay(paused.id)


def test_home_region_reads_stay_in_their_region(db):
    gdb, _ = db
    home = {i.id for i in gdb.regions[HOME].instances}
    for _ in range(8):
        name, recovering = where("gdb_r")
        assert recovering and name in home
        connections["gdb_r"].close()
        gdb.clock.advance(gdb.dns.ttl)  # a new answer from the reader endpoint each time


def test_home_reader_falls_back_across_regions_only_by_choice(db):
    from django.db import OperationalError

    gdb, _ = db
    where("gdb_r")  # learns the global topology (shared in the process by this endpoint's aliases)
    quick = dict(OPTIONS, connect_deadline=2, home_region=HOME)
    register_alias("gdb_r_only", gdb.database_settings(gdb.reader_endpoint(HOME), **quick))
    register_alias("gdb_r_any", gdb.database_settings(gdb.reader_endpoint(HOME), cross_region_reads=True, **quick))
    lost = gdb.regions[HOME].instances
    gdb.clock.freeze()
    for instance in lost:  # every reader of the home region goes away
        instance.sim.refuse(True)
        instance.sim.drop_all(silent=False)
    try:
        with pytest.raises(OperationalError):  # cross_region_reads off: no other region is used
            where("gdb_r_only")
        name, recovering = where("gdb_r_any")
        assert recovering and gdb.region_of(name) != HOME
    finally:
        for instance in lost:
            instance.sim.refuse(False)
        unregister_alias("gdb_r_only")
        unregister_alias("gdb_r_any")


def test_read_your_writes_across_regions(db):
    gdb, _ = db
    ours = AuroraRouter(RoutingConfig(writer="gdb_w", reader="gdb_r", max_lag=3600.0, refresh=0.0), Runtime())
    home = gdb.regions[HOME].instances
    for instance in home:
        gdb.pause_replay(instance.id)
    try:
        with override_settings(DATABASE_ROUTERS=[ours]):
            account = Account.objects.create(name="ryw-%s" % uuid.uuid4(), balance=7)
            for _ in range(3):  # never stale: the home reader has not replayed the write
                assert Account.objects.get(pk=account.pk).balance == 7
            assert not Account.objects.using("gdb_r").filter(pk=account.pk).exists()  # replay is paused
            for instance in home:
                gdb.resume_replay(instance.id)
            gdb.wait_streaming()
            assert ours.db_for_read(Account) == "gdb_r"  # replayed: back to the home region
            assert Account.objects.get(pk=account.pk).balance == 7
            assert gdb.region_of(where("gdb_r")[0]) == HOME
    finally:
        for instance in home:
            if instance.replay_paused:
                gdb.resume_replay(instance.id)
        ours.close()


def test_write_forwarding_refusals_are_routed_or_refused_clearly(db):
    gdb, _ = db
    with connections["gdb_fwd"].cursor() as cursor:  # outside a transaction: run on the primary
        cursor.execute("CREATE SEQUENCE IF NOT EXISTS gdb_fwd_seq")
        cursor.execute("SELECT nextval('gdb_fwd_seq'), pg_is_in_recovery()")
        value, recovering = cursor.fetchone()
        assert value >= 1 and recovering is False
    assert where("gdb_fwd")[1] is True  # the alias itself still reads its home reader
    with pytest.raises(WriteForwardingRefused, match=r"apg_write_forward.consistency_mode.*'gdb_w'"):
        with transaction.atomic(using="gdb_fwd"):
            Account.objects.using("gdb_fwd").filter(balance__lt=0).exists()
            with transaction.atomic(using="gdb_fwd"):  # nested atomic(): SAVEPOINT
                pass
    assert not connections["gdb_fwd"].in_atomic_block and connections["gdb_fwd"].get_autocommit()
    with pytest.raises(NotSupportedError, match=r"TRUNCATE is not run on 'gdb_fwd_err'.*write_forwarding"):
        with connections["gdb_fwd_err"].cursor() as cursor:
            cursor.execute("TRUNCATE ledger_transfer")
    assert Transfer.objects.using("gdb_w").count() >= 0  # nothing ran anywhere
    assert where("gdb_fwd_err")[1] is True


def test_health_shows_the_global_topology_lags_and_home_region(db):
    gdb, _ = db
    paused = gdb.regions[HOME].instances[-1]
    gdb.pause_replay(paused.id)
    try:
        gdb.writer.query("SELECT txid_current()", dbname=gdb.database)
        time.sleep(0.2)  # the lag is wall-clock time since the last replayed commit
        reader = health_findings("gdb_r")
    finally:
        gdb.resume_replay(paused.id)
    primary = gdb.primary_region
    shown = reader["global_topology"]
    assert shown.startswith("global database: %s primary (writer %s" % (primary, gdb.writer.id))
    if primary != HOME:
        lag = float(shown.split("%s secondary, lag " % HOME)[1].split(" ms")[0])
        assert lag == 0  # the region's lag: its closest instance (the first one is not paused)
    assert reader["home_region"] == "home region %s; reads stay in it (cross_region_reads off)" % HOME
    forwarding = health_findings("gdb_fwd")
    assert forwarding["write_forwarding"] == (
        "statements write forwarding refuses: run on 'gdb_w' outside a transaction, raise inside one"
    )


def test_switchover_found_faster_than_dns(db):
    gdb, moves = db
    old = gdb.writer
    assert where("gdb_w") == (old.id, False)  # connected through DNS: the global topology is learned
    gdb.clock.freeze()
    target = "local-1" if gdb.primary_region == HOME else HOME
    timeline = gdb.switchover(target)
    assert gdb.dns.resolve(gdb.global_endpoint) == [old.address]  # DNS still names the old primary
    with connections["gdb_w"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledger_account")
    assert where("gdb_w") == (timeline["new_writer"], False)
    assert [(m["old_writer"], m["new_writer"], m["how"]) for m in moves] == [
        (old.id, timeline["new_writer"], "topology")
    ]
    health = health_findings("gdb_w")
    assert "global database: %s primary (writer %s" % (target, timeline["new_writer"]) in health["global_topology"]
    assert "found by topology" in health["global_routing"]
    reader = health_findings("gdb_r")
    assert reader["home_region"].startswith("home region %s; reads stay in it" % HOME)
    assert "secondary, lag " in reader["global_topology"]


def health_findings(alias: str) -> dict[str, str]:
    import io
    import json

    from django.core.management import call_command

    out = io.StringIO()
    try:
        call_command("aurora_health", "--database", alias, "--json", stdout=out)
    except SystemExit:
        pass
    report = json.loads(out.getvalue())["databases"][0]
    return {f["code"]: f["message"] for f in report["findings"]}


def _outage(acks: list[float], began: float) -> float:
    """The longest time without an acknowledged write after ``began`` (s)."""
    times = sorted(t for t in acks if t >= began - 1.0)
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=float("inf"))


@pytest.mark.parametrize("event", ["switchover", "failover"])
def test_ledger_from_the_secondary_region(db, event, capsys):
    """retry_atomic (services.transfer) on the global writer endpoint, from local-2's app,
    beside the same ledger on a DNS-only alias (topology off): 0 errors, 0 lost, 0 doubled."""
    gdb, moves = db
    if event == "failover" and len(gdb._secondary_regions()) == 0:
        pytest.skip("no secondary region left")
    paths = ("gdb_w", "gdb_dns")
    accounts = {
        alias: [
            a.pk
            for a in Account.objects.using("gdb_w").bulk_create(
                [Account(name="g-%s" % uuid.uuid4(), balance=1000) for _ in range(6)]
            )
        ]
        for alias in paths
    }
    gdb.wait_streaming()
    acknowledged: dict[str, list[tuple[uuid.UUID, float]]] = {alias: [] for alias in paths}
    errors: list[BaseException] = []
    lock, stop = threading.Lock(), threading.Event()

    # On the DNS path (the DNS-only alias) a write waits for the record to move (TTL plus
    # the move's delay), which retry_atomic's default 5 attempts may or may not outlast, by
    # luck: the budget such an app needs covers the DNS window. The topology path, with or
    # without Django's pool, needs no more than the defaults (services.transfer).
    transfers = {alias: retry_atomic(services._apply, using=alias, max_attempts=100, max_time=10) for alias in paths}

    def worker(alias: str, k: int) -> None:
        rng = random.Random(k)
        try:
            while not stop.is_set():
                source, destination = rng.sample(accounts[alias], 2)
                request_id = uuid.uuid4()
                if alias == "gdb_dns":
                    transfers[alias](source, destination, rng.randint(1, 5), request_id, alias)
                else:
                    services.transfer(source, destination, rng.randint(1, 5), request_id=request_id, using=alias)
                with lock:
                    acknowledged[alias].append((request_id, time.monotonic()))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections[alias].close()

    for alias in paths:
        where(alias)  # learn the topology
    threads = [threading.Thread(target=worker, args=(alias, k)) for alias in paths for k in range(2)]
    for thread in threads:
        thread.start()
    try:
        stop.wait(0.4)
        began = time.monotonic()
        target = "local-1" if gdb.primary_region == HOME else HOME
        timeline = gdb.switchover(target) if event == "switchover" else gdb.failover(target)
        promoted = began + timeline["promoted"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(
            any(t > promoted for _, t in acknowledged[alias]) for alias in paths
        ):
            stop.wait(0.05)
        stop.wait(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert errors == []
    figures = {}
    for alias in paths:
        acks = [rid for rid, _ in acknowledged[alias]]
        applied = list(
            Transfer.objects.using("gdb_w").filter(source_id__in=accounts[alias]).values_list("request_id", flat=True)
        )
        assert len(applied) == len(set(applied)) == len(acks) and set(applied) == set(acks)
        total = sum(Account.objects.using("gdb_w").filter(pk__in=accounts[alias]).values_list("balance", flat=True))
        assert total == 6000
        figures[alias] = _outage([t for _, t in acknowledged[alias]], began)
    with capsys.disabled():
        print(
            "\n%s (%s, TTL %.1f s, DNS moves %.1f s after promotion): write outage %.3f s via the global "
            "topology, %.3f s DNS-only"
            % (event, timeline["new_region"], gdb.dns.ttl, gdb.dns_delay, figures["gdb_w"], figures["gdb_dns"])
        )
    assert any(m["how"] == "topology" and m["alias"] == "gdb_w" for m in moves)
