"""A real failover on the local Aurora cluster, as metrics and span events: the failover
counter (labelled by the new writer), its duration, and exactly the stats counters moved."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connections

from aurora_backend.observability import catalog
from aurora_backend.testing.fixtures import cluster_aliases
from aurora_backend.topology import router as topology
from tests.observability_support import assert_same_moves, counters, otel_points, readers  # noqa: F401

pytestmark = pytest.mark.timeout(90)
OPTIONS = {"connect_deadline": 10, "connect_timeout": 2, "backoff_base": 0.02, "backoff_max": 0.2}


@pytest.fixture
def cluster(aurora_cluster, django_db_blocker) -> Iterator[object]:
    topology.reset()
    with cluster_aliases(aurora_cluster, writer="obs", reader="obs_ro", **OPTIONS), django_db_blocker.unblock():
        with connections["obs"].cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS cluster_probe (v text)")
        yield aurora_cluster
        connections["obs"].close()
        connections["obs_ro"].close()
    aurora_cluster.clock.release()
    aurora_cluster.clock.advance(aurora_cluster.dns_delay + aurora_cluster.dns.ttl)
    aurora_cluster.dns.flush()


def test_cluster_failover_is_counted_timed_and_on_the_span(cluster, readers):
    old, target = cluster.writer, cluster.readers[0]
    with connections["obs"].cursor() as cursor:  # connected through DNS: the topology is learned
        cursor.execute("SELECT aurora_db_instance_identifier()")
        assert cursor.fetchone()[0] == old.id
    before = counters(readers)
    cluster.clock.freeze()  # DNS keeps naming the old writer: topology finds the new one
    try:
        cluster.failover(target.id, old_writer="down")
        with readers.tracer.start_as_current_span("request"):
            with connections["obs"].cursor() as cursor:
                cursor.execute("INSERT INTO cluster_probe VALUES ('observed')")
    finally:
        cluster.restore(old.id)
    moves = assert_same_moves(before, counters(readers))
    assert moves[("reconnects", "obs")] == 1
    labels = {"alias": "obs", "instance": target.id, "how": "topology"}
    points = otel_points(readers.metrics)
    assert points[(catalog.FAILOVERS.name, frozenset(labels.items()))] == 1
    assert readers.registry.get_sample_value("aurora_failovers_total", labels) == 1
    duration = points[(catalog.FAILOVER_DURATION.name, frozenset({"alias": "obs", "how": "topology"}.items()))]
    assert duration.count == 1 and 0 <= duration.sum < 10
    assert (
        readers.registry.get_sample_value("aurora_failover_duration_seconds_count", {"alias": "obs", "how": "topology"})
        == 1
    )
    assert (
        readers.registry.get_sample_value("aurora_failover_duration_seconds_sum", {"alias": "obs", "how": "topology"})
        == duration.sum
    )
    (span,) = readers.spans.get_finished_spans()
    (event,) = [e for e in span.events if e.name == "aurora.failover"]
    assert (event.attributes["aurora.old_writer"], event.attributes["aurora.new_writer"]) == (old.id, target.id)
    assert event.attributes["aurora.seconds"] == duration.sum
