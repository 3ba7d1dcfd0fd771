"""Readers for the observability tests: an OpenTelemetry SDK with in-memory reader and
exporter, a private Prometheus registry, and the counters each of them shows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

from aurora_backend import stats
from aurora_backend.observability import catalog, events, otel, prometheus

Key = tuple[str, str]  # (stats counter, alias)


class Readers(NamedTuple):
    metrics: Any  # InMemoryMetricReader
    spans: Any  # InMemorySpanExporter
    tracer: Any
    registry: Any  # a private prometheus_client CollectorRegistry


@pytest.fixture
def readers() -> Iterator[Readers]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import CollectorRegistry

    reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    events.recorder.reset()
    otel.instrument(meter_provider=meter_provider)
    prometheus.register(registry)
    try:
        yield Readers(reader, exporter, tracer_provider.get_tracer("tests"), registry)
    finally:
        prometheus.unregister(registry)
        otel.uninstrument()
        meter_provider.shutdown()


def otel_points(reader: Any) -> dict[tuple[str, frozenset[tuple[str, Any]]], Any]:
    """(metric name, attributes) -> value (sums, gauges) or the point itself (histograms)."""
    found: dict[tuple[str, frozenset[tuple[str, Any]]], Any] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, frozenset(point.attributes.items()))
                    found[key] = point.value if hasattr(point, "value") else point
    return found


class Counters(NamedTuple):
    stats: dict[Key, int]
    otel: dict[Key, float]
    prometheus: dict[Key, float]


def counters(readers: Readers) -> Counters:
    """Every stats counter of every alias, as stats, OpenTelemetry and Prometheus show it."""
    snapshot = stats.snapshot()
    points = otel_points(readers.metrics)
    from_stats, from_otel, from_prom = {}, {}, {}
    for alias, counts in snapshot.items():
        for counter in stats.COUNTERS:
            metric = catalog.stats_metric(counter)
            key = (counter, alias)
            from_stats[key] = counts[counter]
            from_otel[key] = points.get((metric.name, frozenset({("alias", alias)})), 0)
            value = readers.registry.get_sample_value(metric.prometheus_name + "_total", {"alias": alias})
            from_prom[key] = value or 0
    return Counters(from_stats, from_otel, from_prom)


def moved(before: dict[Key, float], after: dict[Key, float]) -> dict[Key, float]:
    return {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}


def assert_same_moves(before: Counters, after: Counters) -> dict[Key, float]:
    """The counters OpenTelemetry and Prometheus moved are exactly those stats moved."""
    expected = moved(before.stats, after.stats)
    assert moved(before.otel, after.otel) == expected
    assert moved(before.prometheus, after.prometheus) == expected
    return expected


def event_names(span: Any) -> list:
    return [event.name for event in span.events]
