"""Scale-event-aware reconnect through the Aurora simulator (alias "sim").

The simulator sends Aurora's exact messages on the wire; what psycopg2 makes of them
is what the ENGINE must survive. Timings are scaled down: a "35 s resume" is 1.5 s,
and the "sim" alias's connect_deadline is 10 s.
"""

from __future__ import annotations

import gc
import threading
import time

import pytest
from django.core.signals import request_finished, request_started
from django.db import OperationalError, connections
from ledger.models import Account

from aurora_backend import drivers, signals, stats
from aurora_backend.connection.connect import ClusterUnavailable
from aurora_backend.options import AuroraOptions
from aurora_backend.serverless import close_all
from tests.pg import server

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "sim"])

sim_db = connections["sim"]


@pytest.fixture
def reasons():
    seen = []

    def on_reconnect(sender, alias, reason, **kw):
        if alias == "sim":
            seen.append(reason)

    signals.reconnected.connect(on_reconnect, dispatch_uid="sim-reasons")
    yield seen
    signals.reconnected.disconnect(dispatch_uid="sim-reasons")


def accounts():
    return list(Account.objects.using("sim").order_by("name").values_list("name", flat=True))


def counters():
    return stats.snapshot("sim")


def wait_until_running(marker, timeout=10.0):
    """Block until some backend runs a statement containing ``marker`` (seen on the server)."""
    srv = server()
    admin = drivers.connect(host=srv.host, port=srv.port, user=srv.user, password=srv.password, dbname="postgres")
    admin.autocommit = True
    try:
        deadline = time.monotonic() + timeout
        with admin.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                    "AND pid <> pg_backend_pid()",
                    ["%" + marker + "%"],
                )
                if cur.fetchone()[0]:
                    return
                time.sleep(0.01)
        raise AssertionError("nobody ran %r" % marker)
    finally:
        admin.close()


@pytest.fixture
def persistent_sim(monkeypatch):
    """CONN_MAX_AGE=None on "sim", so the connection outlives a request."""
    if sim_db.settings_dict["OPTIONS"].get("pool"):
        # Django refuses CONN_MAX_AGE != 0 with a pool when it builds one (so do we, as Django);
        # stale pooled connections: tests/test_pool.py (test_terminated_pool_connections_...).
        pytest.skip("persistent connections (CONN_MAX_AGE=None) cannot be combined with OPTIONS['pool']")
    monkeypatch.setitem(sim_db.settings_dict, "CONN_MAX_AGE", None)
    close_all(["sim"])  # with OPTIONS["pool"], the pool's connections too
    yield sim_db
    close_all(["sim"])


def test_scale_event_between_requests(simulator, persistent_sim, reasons):
    request_started.send(sender=None)
    Account.objects.using("sim").create(name="a", balance=1)
    request_finished.send(sender=None)
    before = counters()["reconnects"]
    assert simulator.scale_event() == 1
    assert simulator.wait_for_connections(0, timeout=5)
    request_started.send(sender=None)  # Django's own check at the request boundary finds it
    assert accounts() == ["a"]
    request_finished.send(sender=None)
    assert counters()["reconnects"] == before + 1
    assert reasons == ["stale"]


def test_scale_event_while_idle_in_a_worker_loop(simulator, reasons):
    Account.objects.using("sim").create(name="w", balance=1)
    before = counters()
    for _ in range(3):  # a worker loop that never sees a request
        simulator.scale_event()
        simulator.wait_for_connections(0, timeout=5)
        Account.objects.using("sim").create(name="w%d" % _, balance=1)  # a write, on a new connection
    assert Account.objects.using("sim").filter(name__startswith="w").count() == 4
    assert counters()["reconnects"] == before["reconnects"] + 3
    assert counters()["statements_retried"] == before["statements_retried"]
    # Aurora's text is lost by libpq 17, but the FATAL was read off the idle socket.
    assert counters()["scale_events"] == before["scale_events"] + 3
    assert reasons == ["stale"] * 3


def test_scale_event_during_a_select_returns_the_right_rows(simulator):
    Account.objects.using("sim").bulk_create([Account(name="s%d" % i, balance=i) for i in range(3)])
    before = counters()["statements_retried"]
    sim_db.ensure_connection()
    hit = []
    killer = threading.Thread(target=lambda: (wait_until_running("pg_sleep"), hit.append(simulator.scale_event())))
    killer.start()
    rows = list(
        Account.objects.using("sim")
        .extra(where=["pg_sleep(0.3) IS NOT NULL"])
        .order_by("name")
        .values_list("name", flat=True)
    )
    killer.join()
    assert hit == [1]
    assert rows == ["s0", "s1", "s2"]
    assert counters()["statements_retried"] == before + 1


def test_scale_event_during_an_insert_raises_once_and_never_duplicates(simulator):
    with connections["default"].cursor() as cur:
        cur.execute(
            "CREATE FUNCTION aurora_slow() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$"
        )
        cur.execute(
            "CREATE TRIGGER aurora_slow BEFORE INSERT ON ledger_account FOR EACH ROW EXECUTE FUNCTION aurora_slow()"
        )
    try:
        sim_db.ensure_connection()
        killer = threading.Thread(target=lambda: (wait_until_running("INSERT INTO"), simulator.scale_event()))
        killer.start()
        with pytest.raises(OperationalError):
            Account.objects.using("sim").create(name="unknown-fate", balance=1)
        killer.join()
        assert sim_db.connection is None  # healed at once
        assert Account.objects.using("sim").filter(name="unknown-fate").count() == 0
        Account.objects.using("sim").create(name="next", balance=1)  # the next call works
        assert accounts() == ["next"]
    finally:
        with connections["default"].cursor() as cur:
            cur.execute("DROP TRIGGER aurora_slow ON ledger_account")
            cur.execute("DROP FUNCTION aurora_slow()")


def test_paused_cluster_a_request_made_during_the_pause_succeeds_on_resume(simulator):
    Account.objects.using("sim").create(name="p", balance=1)
    simulator.pause(force=True)  # Aurora pauses only with no connections: they are dropped
    resumer = threading.Timer(1.5, simulator.resume)
    resumer.start()
    started = time.monotonic()
    try:
        assert accounts() == ["p"]
    finally:
        resumer.join()
    assert 1.4 <= time.monotonic() - started < 10  # waited for the resume, within the deadline


def test_paused_past_the_deadline_fails_with_a_clear_error(simulator):
    close_all(["sim"])
    options = sim_db.aurora_options
    sim_db.aurora_options = AuroraOptions(**{**options.__dict__, "connect_deadline": 2.5, "connect_timeout": 2})
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # the attempts given up must be closed by the ENGINE, not by the collector
    try:
        simulator.wait_for_connections(0, timeout=5)
        simulator.pause()
        started = time.monotonic()
        with pytest.raises(OperationalError) as err:
            accounts()
        elapsed = time.monotonic() - started
        simulator.resume()
        # Released by the resume, no attempt finds a client: the app holds the error, not a socket.
        simulator.wait_for_connections(0, timeout=5)
    finally:
        sim_db.aurora_options = options
        simulator.resume()
        if enabled:
            gc.enable()
    assert isinstance(err.value.__cause__, ClusterUnavailable)
    assert "did not accept a connection in" in str(err.value) and "connect_deadline=2.5s" in str(err.value)
    assert elapsed < 6


def test_past_serverless_scale_point_on_connect_is_retried(simulator):
    close_all(["sim"])
    before = counters()
    simulator.scale_point_on_connect(2)
    assert accounts() == []
    after = counters()
    assert after["connect_retries"] == before["connect_retries"] + 2
    assert after["scale_events"] == before["scale_events"] + 2


def test_failover_window_then_new_writer(simulator, reasons):
    Account.objects.using("sim").create(name="f", balance=1)
    scale_events = counters()["scale_events"]
    simulator.failover(window=1.0, mode="starting_up")
    started = time.monotonic()
    assert accounts() == ["f"]  # 57P03 "starting up" for ~1 s, retried, then served
    assert time.monotonic() - started >= 0.9
    assert reasons in (["stale"], ["disconnect"])
    assert counters()["scale_events"] == scale_events  # "administrator command" is no scale event


def test_scale_event_hitting_an_attempt_held_by_a_pause_is_retried(simulator):
    """The FATAL reaches libpq after the SSL negotiation (libpq 17 drops an error sent
    in reply to SSLRequest): it is a disconnect, and the connect is retried."""
    close_all(["sim"])
    simulator.pause()
    result = {}

    def work():
        try:
            result["rows"] = accounts()
        finally:
            connections["sim"].close()  # the worker's own connection: closed, not left to the gc

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 5
    while simulator.held_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert simulator.held_count() == 1
    before = counters()["connect_retries"]
    simulator.scale_event()
    simulator.resume()
    worker.join(10)
    assert result == {"rows": []}
    assert counters()["connect_retries"] >= before + 1


def test_an_attempt_abandoned_at_connect_timeout_is_closed_when_the_engine_retries(simulator):
    """A resume longer than connect_timeout (2 s): the first attempt times out, the second is
    served. The first one's socket must be closed when the ENGINE gives up on it, so that the
    simulator (Aurora) holds no session for it. psycopg 3 leaves a timed-out attempt's PGconn
    in a reference cycle (its connect frame, its list of errors, the error's traceback), open
    until the cyclic garbage collector happens to run: the collector is kept off here so that
    it cannot hide the leak. (bench/bench_recovery.py's cold start found it.)"""
    close_all(["sim"])
    enabled = gc.isenabled()
    gc.collect()  # what earlier tests left to the collector: closed before it is turned off
    gc.disable()
    resumer = threading.Timer(2.5, simulator.resume)
    try:
        simulator.wait_for_connections(0, timeout=5)
        held = simulator.counters["held"]
        simulator.pause()
        resumer.start()
        assert accounts() == []
        assert simulator.counters["held"] == held + 2  # the abandoned attempt and the served one
        simulator.wait_for_connections(1, timeout=5)  # the served one only
        close_all(["sim"])
        simulator.wait_for_connections(0, timeout=5)
    finally:
        if resumer.is_alive():
            resumer.join()
        if enabled:
            gc.enable()
