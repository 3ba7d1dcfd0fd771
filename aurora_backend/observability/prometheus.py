"""A prometheus_client collector for aurora_backend's metrics.

    from aurora_backend.observability import prometheus
    prometheus.register()              # prometheus_client's default REGISTRY; or register(registry)

Everything is read when Prometheus scrapes (``collect``): the counters of
``aurora_backend.stats``, the signal counts of ``events.py``, replica lag, credential
fetches and open connections. Nothing runs per statement. Per-statement durations come from
django-prometheus (``ENGINE: aurora_backend.observability.django_prometheus``) or from
OpenTelemetry (``otel.py``). Needs ``prometheus_client`` (``pip install aurora_backend[prometheus]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from aurora_backend import stats
from aurora_backend.observability import catalog, events

__all__ = ["AuroraCollector", "register", "unregister", "label_name"]


def label_name(label: str) -> str:
    """Prometheus label names allow no dots: ``db.client.connection.state`` -> ``..._state``."""
    return label.replace(".", "_")


class AuroraCollector(Collector):
    """Collects aurora_backend's metrics from the process's state at each scrape."""

    def collect(self) -> Iterator[Metric]:
        yield from self._stats()
        yield from self._events()
        lag = _family(catalog.REPLICA_LAG)
        for alias, instance, value in catalog.replica_lags():
            lag.add_metric([alias, instance], value)
        yield lag
        fetches = _family(catalog.CREDENTIAL_FETCHES)
        for source, count in sorted(catalog.credential_fetches().items()):
            fetches.add_metric([source], count)
        yield fetches
        connections = _family(catalog.CONNECTION_COUNT)
        for (alias, state), count in sorted(catalog.connection_counts().items()):
            connections.add_metric([alias, state], count)
        yield connections

    def describe(self) -> list[Metric]:
        return []  # collected on each scrape only (names depend on stats.COUNTERS)

    def _stats(self) -> Iterator[Metric]:
        snapshot = stats.snapshot()
        for counter in stats.COUNTERS:
            family = _family(catalog.stats_metric(counter))
            for alias, counts in sorted(snapshot.items()):
                family.add_metric([alias], counts.get(counter, 0))
            yield family

    def _events(self) -> Iterator[Metric]:
        counts, histograms = events.recorder.snapshot()
        for metric in catalog.EVENT_METRICS:
            family = _family(metric)
            for (name, labels), value in sorted(counts.items()):
                if name == metric.name:
                    family.add_metric(list(labels), value)
            yield family
        metric = catalog.FAILOVER_DURATION
        family = HistogramMetricFamily(
            metric.prometheus_name, metric.description, labels=list(metric.labels), unit="seconds"
        )
        for (name, labels), histogram in sorted(histograms.items()):
            if name != metric.name:
                continue
            cumulative, buckets = 0, []
            for bound, count in zip(list(histogram.bounds) + [float("inf")], histogram.buckets, strict=False):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
            family.add_metric(list(labels), buckets, histogram.sum)
        yield family


def _family(metric: catalog.Metric) -> Any:
    labels = [label_name(label) for label in metric.labels]
    unit = "seconds" if metric.unit == "s" else ""
    if metric.kind == "counter":
        return CounterMetricFamily(metric.prometheus_name, metric.description, labels=labels, unit=unit)
    return GaugeMetricFamily(metric.prometheus_name, metric.description, labels=labels, unit=unit)


_collectors: dict[int, AuroraCollector] = {}


def register(registry: Any | None = None) -> AuroraCollector:
    """Register the collector with ``registry`` (default: prometheus_client's REGISTRY), once."""
    registry = REGISTRY if registry is None else registry
    collector = _collectors.get(id(registry))
    if collector is None:
        collector = _collectors[id(registry)] = AuroraCollector()
        events.install()
        registry.register(collector)
    return collector


def unregister(registry: Any | None = None) -> None:
    """Undo :func:`register` for ``registry``."""
    registry = REGISTRY if registry is None else registry
    collector = _collectors.pop(id(registry), None)
    if collector is not None:
        registry.unregister(collector)
        events.uninstall()
