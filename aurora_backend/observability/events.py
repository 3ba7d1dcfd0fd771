"""What the ENGINE's signals say, as counters, durations and healing events.

:func:`install` connects one receiver per signal (idempotent). Receivers count into the
:data:`recorder` (read by both exporters when they collect) and pass a :class:`Healed` to
each listener (``otel.py`` records durations, ``traces.py`` adds span events). Signals are
sent only when something happened (a retry, a reconnect, a failover): never per statement.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from django.db.backends.signals import connection_created

from aurora_backend import signals
from aurora_backend.observability import catalog
from aurora_backend.runtime import Runtime


class Healed(NamedTuple):
    """One thing the ENGINE did: ``kind`` (e.g. "statement_rerun"), ``reason``, ``seconds``
    spent (None when not measured), and other ``attributes`` (closed words and numbers)."""

    kind: str
    alias: str
    reason: str | None
    seconds: float | None
    attributes: dict[str, Any]


Listener = Callable[[Healed], None]


class Histogram:
    """Cumulative bucket counts (bounds: catalog.HEAL_BUCKETS, then +Inf), sum and count."""

    def __init__(self, bounds: tuple[float, ...] = catalog.HEAL_BUCKETS) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))
        self.buckets[index] += 1
        self.sum += value
        self.count += 1


class Recorder:
    """Counters and histograms made from signals, keyed by (metric name, label values)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, tuple[str, ...]], int] = {}
        self.histograms: dict[tuple[str, tuple[str, ...]], Histogram] = {}
        self.listeners: list[Listener] = []

    def count(self, metric: catalog.Metric, *labels: str) -> None:
        with self._lock:
            key = (metric.name, labels)
            self.counts[key] = self.counts.get(key, 0) + 1

    def observe(self, metric: catalog.Metric, value: float, *labels: str) -> None:
        with self._lock:
            histogram = self.histograms.get((metric.name, labels))
            if histogram is None:
                histogram = self.histograms[(metric.name, labels)] = Histogram()
            histogram.observe(value)

    def snapshot(self) -> tuple[dict[tuple[str, tuple[str, ...]], int], dict[tuple[str, tuple[str, ...]], Histogram]]:
        with self._lock:
            return dict(self.counts), dict(self.histograms)

    def emit(self, healed: Healed) -> None:
        for listener in list(self.listeners):
            listener(healed)

    def reset(self) -> None:
        """Forget every count (tests)."""
        with self._lock:
            self.counts.clear()
            self.histograms.clear()


recorder = Recorder()
_clock = Runtime().clock
#: Per thread: (alias, when, reason) of a statement being re-run, until its new connection.
_pending = threading.local()


def reason_of(error: BaseException | None) -> str | None:
    """A bounded word for an error: its SQLSTATE, else (connect-time errors carry none) the
    driver error's class name."""
    if error is None:
        return None
    from aurora_backend.errors import driver_error, sqlstate

    return sqlstate(error) or type(driver_error(error)).__name__


# ----- receivers ---------------------------------------------------------------------------


def _reconnected(
    sender: Any, alias: str, connection: Any = None, reason: str = "", address: Any = None, **kwargs: Any
) -> None:
    instance = catalog.instances.label(alias, catalog.instance_of(connection, address))
    recorder.count(catalog.RECONNECT_REASONS, alias, instance, reason)
    pending = getattr(_pending, "rerun", None)
    if pending is not None and pending[0] == alias:
        _pending.rerun = None
        recorder.emit(
            Healed("statement_rerun", alias, pending[2], round(_clock() - pending[1], 6), {"instance": instance})
        )
    recorder.emit(Healed("reconnect", alias, reason, None, {"instance": instance}))


def _statement_retried(sender: Any, alias: str, error: Any = None, **kwargs: Any) -> None:
    _pending.rerun = (alias, _clock(), reason_of(error))  # the time spent ends at the new connection


def _connect_retry(
    sender: Any, alias: str, attempt: int = 0, error: Any = None, delay: Any = None, elapsed: Any = None, **kwargs: Any
) -> None:
    recorder.emit(Healed("connect_retry", alias, reason_of(error), elapsed, {"attempt": attempt, "delay": delay}))


def _scale_event(sender: Any, alias: str, error: Any = None, **kwargs: Any) -> None:
    recorder.emit(Healed("scale_event", alias, reason_of(error), None, {}))


def _transaction_retry(
    sender: Any, alias: str, attempt: int = 0, error: Any = None, delay: Any = None, **kwargs: Any
) -> None:
    recorder.emit(Healed("transaction_retry", alias, reason_of(error), delay, {"attempt": attempt}))


def _transaction_finished(sender: Any, alias: str, attempts: int = 0, outcome: str = "", **kwargs: Any) -> None:
    recorder.count(catalog.TRANSACTION_OUTCOMES, alias, outcome)
    recorder.emit(Healed("transaction_finished", alias, outcome, None, {"attempts": attempts}))


def _lost_commit(sender: Any, alias: str, verdict: str = "", **kwargs: Any) -> None:
    recorder.count(catalog.LOST_COMMITS, alias, verdict)
    recorder.emit(Healed("lost_commit", alias, verdict, None, {}))


def _failover(
    sender: Any,
    alias: str,
    new_writer: Any = None,
    old_writer: Any = None,
    how: str = "",
    seconds: float | None = None,
    **kwargs: Any,
) -> None:
    recorder.count(catalog.FAILOVERS, alias, catalog.instances.label(alias, new_writer), how)
    if seconds is not None:
        recorder.observe(catalog.FAILOVER_DURATION, seconds, alias, how)
    recorder.emit(Healed("failover", alias, how, seconds, {"old_writer": old_writer, "new_writer": new_writer}))


def _reader_fallback(sender: Any, alias: str, reason: str = "", lag: Any = None, **kwargs: Any) -> None:
    recorder.emit(Healed("reader_fallback", alias, reason, None, {"lag": lag}))


def _connection_created(sender: Any, connection: Any = None, **kwargs: Any) -> None:
    catalog.track(connection)


_RECEIVERS = (
    (signals.reconnected, _reconnected),
    (signals.statement_retried, _statement_retried),
    (signals.connect_retry, _connect_retry),
    (signals.scale_event, _scale_event),
    (signals.transaction_retry, _transaction_retry),
    (signals.transaction_finished, _transaction_finished),
    (signals.lost_commit, _lost_commit),
    (signals.topology_failover, _failover),
    (signals.reader_fallback, _reader_fallback),
    (connection_created, _connection_created),
)
_installed = 0
_install_lock = threading.Lock()


def install() -> None:
    """Connect the receivers (once, however many exporters ask)."""
    global _installed
    with _install_lock:
        _installed += 1
        if _installed == 1:
            for signal, receiver in _RECEIVERS:
                signal.connect(receiver, weak=False, dispatch_uid="aurora_observability")


def uninstall() -> None:
    """Undo one :func:`install`; the last one disconnects the receivers."""
    global _installed
    with _install_lock:
        _installed = max(_installed - 1, 0)
        if _installed == 0:
            for signal, _ in _RECEIVERS:
                signal.disconnect(dispatch_uid="aurora_observability")
