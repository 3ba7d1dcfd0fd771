"""Metrics and span events on every driver: a simulator scale event, a failover and a
retried transaction move exactly the counters ``stats.snapshot()`` moves, in OpenTelemetry
(SDK in-memory reader) and in Prometheus (a private registry)."""

from __future__ import annotations

import pytest
from django.db import Error, ProgrammingError, connections
from ledger.models import Account

from aurora_backend import drivers, retry_atomic
from aurora_backend.observability import catalog
from aurora_backend.testing.drivers import pool_enabled
from tests.observability_support import (  # noqa: F401 (fixture)
    assert_same_moves,
    counters,
    event_names,
    otel_points,
    readers,
)
from tests.pg import server
from tests.test_retry_atomic import admin, probe, retries  # noqa: F401 (fixtures: the lost-COMMIT probe)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "sim"])


def admin_connection(dbname: str) -> object:
    srv = server()
    conn = drivers.connect(host=srv.host, port=srv.port, user=srv.user, password=srv.password, dbname=dbname)
    conn.autocommit = True
    return conn


def test_scale_event_moves_the_same_counters_and_marks_the_span(simulator, readers):
    Account.objects.using("sim").create(name="a", balance=1)
    before = counters(readers)
    assert simulator.scale_event() == 1
    assert simulator.wait_for_connections(0, timeout=5)
    with readers.tracer.start_as_current_span("request"):
        Account.objects.using("sim").create(name="b", balance=1)
    moves = assert_same_moves(before, counters(readers))
    assert moves[("scale_events", "sim")] == 1
    assert moves[("reconnects", "sim")] == 1
    (span,) = readers.spans.get_finished_spans()
    assert "aurora.scale_event" in event_names(span)
    (reconnect,) = [e for e in span.events if e.name == "aurora.reconnect"]
    assert reconnect.attributes["aurora.alias"] == "sim"
    assert reconnect.attributes["aurora.reason"] in ("stale", "disconnect")
    assert reconnect.attributes["aurora.instance"] == "127.0.0.1"
    points = otel_points(readers.metrics)
    reason = reconnect.attributes["aurora.reason"]
    labels = {"alias": "sim", "instance": "127.0.0.1", "reason": reason}
    assert points[(catalog.RECONNECT_REASONS.name, frozenset(labels.items()))] == 1
    assert readers.registry.get_sample_value("aurora_reconnects_by_reason_total", labels) == 1


def test_read_rerun_after_a_scale_event_is_an_event_with_its_time(simulator, readers):
    import threading

    from tests.test_reconnect_simulated import wait_until_running

    Account.objects.using("sim").create(name="r", balance=1)
    connections["sim"].ensure_connection()
    before = counters(readers)
    killer = threading.Thread(target=lambda: (wait_until_running("pg_sleep"), simulator.scale_event()))
    killer.start()
    with readers.tracer.start_as_current_span("request"):
        rows = list(
            Account.objects.using("sim").extra(where=["pg_sleep(0.3) IS NOT NULL"]).values_list("name", flat=True)
        )
    killer.join()
    assert rows == ["r"]
    moves = assert_same_moves(before, counters(readers))
    assert moves[("statements_retried", "sim")] == 1
    (span,) = readers.spans.get_finished_spans()
    (rerun,) = [e for e in span.events if e.name == "aurora.statement_rerun"]
    assert rerun.attributes["aurora.alias"] == "sim" and rerun.attributes["aurora.reason"]
    assert 0 <= rerun.attributes["aurora.seconds"] < 5
    names = event_names(span)
    assert names.index("aurora.statement_rerun") < names.index("aurora.reconnect")


def test_failover_window_moves_the_same_counters_and_shows_the_wait(simulator, readers):
    Account.objects.using("sim").create(name="f", balance=1)
    before = counters(readers)
    simulator.failover(window=1.0, mode="starting_up")
    with readers.tracer.start_as_current_span("request"):
        assert list(Account.objects.using("sim").values_list("name", flat=True)) == ["f"]
    moves = assert_same_moves(before, counters(readers))
    assert moves[("reconnects", "sim")] == 1
    assert moves[("connect_retries", "sim")] >= 1
    (span,) = readers.spans.get_finished_spans()
    assert "aurora.reconnect" in event_names(span)
    retries = [e for e in span.events if e.name == "aurora.connect_retry"]
    if pool_enabled():  # the pool's own threads connect, outside the request's span
        assert retries == []
        return
    assert len(retries) == moves[("connect_retries", "sim")]
    # "the database system is starting up" (57P03; psycopg2 keeps no SQLSTATE from a connect)
    assert {e.attributes["aurora.reason"] for e in retries} <= {"57P03", "OperationalError"}
    assert all(e.attributes["aurora.seconds"] >= 0 for e in retries)
    assert [e.attributes["aurora.attempt"] for e in retries] == list(range(1, len(retries) + 1))


def test_retried_transaction_moves_the_same_counters_and_its_outcome(readers):
    admin = admin_connection(connections["default"].settings_dict["NAME"])
    calls = []

    @retry_atomic(backoff_base=0.01, backoff_max=0.01)
    def work() -> None:
        calls.append(1)
        Account.objects.create(name="t%d" % len(calls), balance=1)
        if len(calls) == 1:  # the backend dies mid transaction: rolled back, run again
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            with admin.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
            Account.objects.count()

    try:
        connections["default"].ensure_connection()
        before = counters(readers)
        with readers.tracer.start_as_current_span("request"):
            work()
    finally:
        admin.close()
    assert len(calls) == 2 and list(Account.objects.values_list("name", flat=True)) == ["t2"]
    moves = assert_same_moves(before, counters(readers))
    assert moves[("transactions_retried", "default")] == 1
    assert moves[("reconnects", "default")] == 1
    outcome = frozenset({"alias": "default", "outcome": "committed"}.items())
    assert otel_points(readers.metrics)[(catalog.TRANSACTION_OUTCOMES.name, outcome)] == 1
    assert (
        readers.registry.get_sample_value(
            "aurora_transaction_outcomes_total", {"alias": "default", "outcome": "committed"}
        )
        == 1
    )
    (span,) = readers.spans.get_finished_spans()
    (retry,) = [e for e in span.events if e.name == "aurora.transaction_retry"]
    assert retry.attributes["aurora.attempt"] == 1
    assert retry.attributes["aurora.seconds"] == pytest.approx(0.01, abs=0.01)  # the backoff drawn
    assert "aurora.transaction_finished" in event_names(span)


def test_operation_duration_is_recorded_per_statement_with_the_error_type(readers):
    with connections["default"].cursor() as cursor:
        for _ in range(3):
            cursor.execute("SELECT 1")
        with pytest.raises(ProgrammingError):
            cursor.execute("SELECT * FROM no_such_table")
    points = otel_points(readers.metrics)
    base = {"db.system.name": "postgresql", "db.client.connection.pool.name": "default"}
    ok = points[(catalog.OPERATION_DURATION.name, frozenset(base.items()))]
    failed = points[(catalog.OPERATION_DURATION.name, frozenset({**base, "error.type": "ProgrammingError"}.items()))]
    assert ok.count >= 3 and failed.count == 1
    assert 0 < ok.sum < 5


def test_connection_count_by_state(readers):
    connection = connections["default"]
    connection.ensure_connection()
    connection.close()
    connection.ensure_connection()  # connection_created: now counted
    points = otel_points(readers.metrics)
    idle = (
        "db.client.connection.count",
        frozenset({"db.client.connection.pool.name": "default", "db.client.connection.state": "idle"}.items()),
    )
    assert points[idle] >= 1
    assert (
        readers.registry.get_sample_value(
            "db_client_connection_count",
            {"db_client_connection_pool_name": "default", "db_client_connection_state": "idle"},
        )
        == points[idle]
    )


def test_grafana_dashboard_uses_only_exported_metrics(readers):
    import json
    import re
    from pathlib import Path

    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    exported = {"db_client_operation_duration_seconds_bucket"}  # OpenTelemetry's, exported through OTLP
    labels = set()
    for family in readers.registry.collect():
        exported |= {family.name + suffix for suffix in suffixes[family.type]}
        labels |= {label for sample in family.samples for label in sample.labels}
    labels |= {"db_client_connection_pool_name", "db_client_connection_state"}
    dashboard = json.loads((Path(__file__).parent.parent / "docs" / "grafana_dashboard.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b((?:aurora|db_client)_[a-z_]+)\b", target["expr"]))
    used -= labels
    assert len(used) >= 15 and used <= exported, used - exported


def test_transaction_that_gives_up_is_counted_as_gave_up(readers):
    admin = admin_connection(connections["default"].settings_dict["NAME"])

    @retry_atomic(max_attempts=2, backoff_base=0.001, backoff_max=0.001)
    def work() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
        Account.objects.count()  # on a dead connection: every attempt fails

    try:
        connections["default"].ensure_connection()
        before = counters(readers)
        with pytest.raises(Error):
            work()
    finally:
        admin.close()
    moves = assert_same_moves(before, counters(readers))
    assert moves[("transactions_retried", "default")] == 1
    labels = {"alias": "default", "outcome": "gave_up"}
    assert readers.registry.get_sample_value("aurora_transaction_outcomes_total", labels) == 1
    assert otel_points(readers.metrics)[(catalog.TRANSACTION_OUTCOMES.name, frozenset(labels.items()))] == 1


def test_lost_commit_verdict_is_counted(readers, probe, retries):
    from tests.test_retry_atomic import _in_commit, _lost_commit_work, scalar, wait_for

    calls, callbacks = [], []

    def kill_during_commit(pid: int, fd: int) -> None:
        wait_for(lambda: _in_commit(probe, pid))
        scalar(probe, "SELECT pg_terminate_backend(%s)", [pid])

    block = _lost_commit_work(calls, callbacks, kill_during_commit, 5)
    work = retry_atomic(backoff_base=0.001, backoff_max=0.01)(block)
    work()
    assert calls == [1, 2]
    for metric, labels in (
        (catalog.LOST_COMMITS, {"alias": "default", "verdict": "aborted"}),
        (catalog.TRANSACTION_OUTCOMES, {"alias": "default", "outcome": "committed"}),
    ):
        assert otel_points(readers.metrics)[(metric.name, frozenset(labels.items()))] == 1
        assert readers.registry.get_sample_value(metric.prometheus_name + "_total", labels) == 1
