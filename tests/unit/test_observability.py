"""Metrics without a database: bounded instance labels, the stats reset, the replica-lag gauge.

Counters moved by real faults: tests/test_observability.py.
"""

from __future__ import annotations

from aurora_backend import stats
from aurora_backend.observability import catalog
from tests.observability_support import (  # noqa: F401 (fixture)
    assert_same_moves,
    counters,
    event_names,
    otel_points,
    readers,
)


def test_instance_labels_are_bounded():
    bounded = catalog.Instances(limit=2)
    assert [bounded.label("a", i) for i in ("x", "y", "z", "x")] == ["x", "y", "other", "x"]
    assert bounded.label("b", "z") == "z"  # per alias
    assert bounded.label("a", None) == "unknown"


def test_stats_reset_between_tests_does_not_confuse_the_reader(readers):
    stats.incr("obs_alias", "scale_events")
    assert readers.registry.get_sample_value("aurora_scale_events_total", {"alias": "obs_alias"}) == 1
    assert otel_points(readers.metrics)[("aurora.scale_events", frozenset({("alias", "obs_alias")}))] == 1


def test_replica_lag_is_a_gauge_per_reader_instance(readers):
    from aurora_backend.routing import position

    state = position.reader_state("lag_alias", "10.1.2.3")
    state.lag = 0.25  # what ReaderState.refresh stores after reading the reader's lag
    try:
        labels = {"alias": "lag_alias", "instance": "10.1.2.3"}
        assert readers.registry.get_sample_value("aurora_replica_lag_seconds", labels) == 0.25
        assert otel_points(readers.metrics)[("aurora.replica.lag", frozenset(labels.items()))] == 0.25
    finally:
        with position._states_lock:
            position._states.pop(("lag_alias", "10.1.2.3"), None)
