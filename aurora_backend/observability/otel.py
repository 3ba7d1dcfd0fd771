"""OpenTelemetry metrics (and, with ``traces.py``, span events) for aurora_backend.

    from aurora_backend.observability import otel
    otel.instrument()            # the global MeterProvider; or instrument(meter_provider=...)

Counters are asynchronous instruments read at collection: ``aurora_backend.stats`` and the
signal counts of ``events.py``, so they cost nothing between collections. Histograms are
recorded when their event happens: failover durations and, unless
``operation_duration=False``, ``db.client.operation.duration`` per statement through
Django's ``execute_wrappers`` (the only per-statement cost; see bench/bench_instructions.py).
Needs ``opentelemetry-api`` (``pip install aurora_backend[otel]``) and an SDK to export.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from aurora_backend import stats
from aurora_backend.observability import catalog, events, traces

__all__ = ["instrument", "uninstrument", "OperationTimer"]

#: Semantic conventions the metric names and attributes follow.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.44.0"

_lock = threading.Lock()
_state: _Instrumentation | None = None


def instrument(meter_provider: Any = None, *, operation_duration: bool = True, span_events: bool = True) -> None:
    """Export aurora_backend's metrics through ``meter_provider`` (default: the global one),
    and, with ``span_events``, add healing events to the current span. Idempotent."""
    global _state
    with _lock:
        if _state is None:
            _state = _Instrumentation(meter_provider, operation_duration, span_events)


def uninstrument() -> None:
    """Stop: callbacks observe nothing more, no statement is timed, no span event is added."""
    global _state
    with _lock:
        if _state is not None:
            _state.close()
            _state = None


class _Instrumentation:
    def __init__(self, meter_provider: Any, operation_duration: bool, span_events: bool) -> None:
        self.active = True
        self.meter = metrics.get_meter("aurora_backend", _version(), meter_provider, schema_url=SCHEMA_URL)
        for counter in stats.COUNTERS:
            self._observable(catalog.stats_metric(counter), self._stats_reader(counter))
        for metric in catalog.EVENT_METRICS:
            self._observable(metric, self._events_reader(metric))
        self._observable(catalog.REPLICA_LAG, self._replica_lag)
        self._observable(catalog.CREDENTIAL_FETCHES, self._credential_fetches)
        self._observable(catalog.CONNECTION_COUNT, self._connection_count)
        self.failover_duration = _histogram(self.meter, catalog.FAILOVER_DURATION, catalog.HEAL_BUCKETS)
        self.timer: OperationTimer | None = None
        if operation_duration:
            self.timer = OperationTimer(_histogram(self.meter, catalog.OPERATION_DURATION, None))
            connection_created.connect(self._connection_created, weak=False, dispatch_uid="aurora_otel_timer")
            for wrapper in connections.all(initialized_only=True):
                if wrapper.connection is not None:
                    self._connection_created(None, wrapper)
        self.span_events = span_events
        events.recorder.listeners.append(self._healed)
        events.install()

    def close(self) -> None:
        self.active = False
        events.recorder.listeners.remove(self._healed)
        events.uninstall()
        if self.timer is not None:
            connection_created.disconnect(dispatch_uid="aurora_otel_timer")
            for wrapper in list(self.timer.wrappers):
                if self.timer in wrapper.execute_wrappers:
                    wrapper.execute_wrappers.remove(self.timer)

    # -- instruments ---------------------------------------------------------------------

    def _observable(self, metric: catalog.Metric, read: Callable[[], Iterable[Observation]]) -> None:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return read() if self.active else ()

        make = {
            "counter": self.meter.create_observable_counter,
            "gauge": self.meter.create_observable_gauge,
            "updown": self.meter.create_observable_up_down_counter,
        }[metric.kind]
        make(metric.name, callbacks=[callback], unit=metric.unit, description=metric.description)

    def _stats_reader(self, counter: str) -> Callable[[], list[Observation]]:
        def read() -> list[Observation]:
            return [Observation(counts.get(counter, 0), {"alias": alias}) for alias, counts in stats.snapshot().items()]

        return read

    def _events_reader(self, metric: catalog.Metric) -> Callable[[], list[Observation]]:
        def read() -> list[Observation]:
            counts, _ = events.recorder.snapshot()
            return [
                Observation(value, dict(zip(metric.labels, labels, strict=False)))
                for (name, labels), value in counts.items()
                if name == metric.name
            ]

        return read

    def _replica_lag(self) -> list[Observation]:
        return [
            Observation(lag, {"alias": alias, "instance": instance}) for alias, instance, lag in catalog.replica_lags()
        ]

    def _credential_fetches(self) -> list[Observation]:
        return [Observation(count, {"source": source}) for source, count in catalog.credential_fetches().items()]

    def _connection_count(self) -> list[Observation]:
        return [
            Observation(count, {"db.client.connection.pool.name": alias, "db.client.connection.state": state})
            for (alias, state), count in catalog.connection_counts().items()
        ]

    # -- events --------------------------------------------------------------------------

    def _healed(self, healed: events.Healed) -> None:
        if healed.kind == "failover" and healed.seconds is not None:
            self.failover_duration.record(healed.seconds, {"alias": healed.alias, "how": healed.reason or ""})
        if self.span_events:
            traces.add_event(healed)

    def _connection_created(self, sender: Any, connection: Any = None, **kwargs: Any) -> None:
        assert self.timer is not None
        if hasattr(connection, "aurora_options"):
            self.timer.attach(connection)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aurora_backend")
    except PackageNotFoundError:
        return "unknown"


def _histogram(meter: Any, metric: catalog.Metric, bounds: Any) -> Any:
    if bounds is not None:
        try:  # opentelemetry-api >= 1.23: advisory bucket bounds
            return meter.create_histogram(
                metric.name,
                unit=metric.unit,
                description=metric.description,
                explicit_bucket_boundaries_advisory=list(bounds),
            )
        except TypeError:
            pass
    return meter.create_histogram(metric.name, unit=metric.unit, description=metric.description)


class OperationTimer:
    """A Django execute wrapper recording ``db.client.operation.duration`` per statement."""

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram
        self.wrappers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._attributes: dict[str, dict[str, str]] = {}

    def attach(self, wrapper: Any) -> None:
        """First in ``wrapper.execute_wrappers`` (so ``execute_wrapper()`` blocks nest inside)."""
        if self not in wrapper.execute_wrappers:
            wrapper.execute_wrappers.insert(0, self)
            self.wrappers.add(wrapper)

    def __call__(self, execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
        alias = context["connection"].alias
        attributes = self._attributes.get(alias)
        if attributes is None:
            attributes = self._attributes[alias] = {
                "db.system.name": "postgresql",
                "db.client.connection.pool.name": alias,
            }
        start = time.monotonic()
        try:
            result = execute(sql, params, many, context)
        except Exception as exc:
            self.histogram.record(time.monotonic() - start, {**attributes, "error.type": type(exc).__qualname__})
            raise
        self.histogram.record(time.monotonic() - start, attributes)
        return result
