"""What the exporters export: metric names, units and labels, and readers of the ENGINE's state.

Labels are bounded: ``alias`` comes from DATABASES; ``instance`` is an Aurora instance
identifier (topology routing) or an address, at most :data:`MAX_INSTANCES` distinct values
per alias per process (later ones are reported as ``"other"``); every other label is one of
a closed set of words the ENGINE itself sends (reasons, outcomes, verdicts).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterator
from typing import Any, NamedTuple

from aurora_backend import stats

#: Distinct ``instance`` label values kept per alias; later ones become "other".
MAX_INSTANCES = 32
OTHER = "other"


class Metric(NamedTuple):
    """One exported metric: OpenTelemetry name (Prometheus: dots become underscores)."""

    name: str
    kind: str  # "counter", "gauge", "histogram", "updown"
    unit: str
    labels: tuple[str, ...]
    description: str

    @property
    def prometheus_name(self) -> str:
        """The Prometheus family name (``_total`` is added by prometheus_client to counters)."""
        base = self.name.replace(".", "_")
        unit = {"s": "_seconds"}.get(self.unit, "")
        return base if base.endswith(unit) else base + unit


def _counter(name: str, description: str, labels: tuple[str, ...] = ("alias",)) -> Metric:
    return Metric(name, "counter", "{event}", labels, description)


#: The counters of ``aurora_backend.stats`` (label ``alias``), by stats name.
STATS_METRICS: dict[str, Metric] = {
    "connections": _counter("aurora.connections.opened", "Connections opened (first or replacement)."),
    "reconnects": _counter(
        "aurora.reconnects",
        "Connections replaced after a disconnect, expiry, idle close, stale check or read-only server.",
    ),
    "connect_retries": _counter("aurora.connect.retries", "Connect attempts that failed and were retried."),
    "connect_failures": _counter("aurora.connect.failures", "Connects that failed after every retry."),
    "scale_events": _counter("aurora.scale_events", "Aurora Serverless scale events seen."),
    "statements_retried": _counter("aurora.statement.reruns", "Statements re-run on a new connection."),
    "transactions_retried": _counter("aurora.transaction.retries", "retry_atomic blocks run again."),
    "expired": _counter("aurora.connections.expired", "Connections closed at their max age."),
    "idle_closed": _counter("aurora.connections.idle_closed", "Connections closed after idle_timeout."),
    "session_state_kept": _counter("aurora.session_state.kept", "Connections kept for the app's session state."),
    "session_state_errors": _counter("aurora.session_state.errors", "Errors let through for session state."),
    "reader_reads": _counter("aurora.reader.reads", "Reads routed to the reader alias."),
    "ryw_reads": _counter("aurora.reader.ryw_reads", "Reads routed to the reader after a read-your-writes wait."),
    "reader_fallbacks": _counter("aurora.reader.fallbacks", "Reader episodes whose reads went to the writer."),
}


def stats_metric(counter: str) -> Metric:
    """The metric of a stats counter (a counter added to stats later gets ``aurora.<name>``)."""
    return STATS_METRICS.get(counter) or _counter("aurora." + counter, "aurora_backend.stats counter %r." % counter)


#: Metrics made from signals (``events.py``).
FAILOVERS = _counter(
    "aurora.failovers", "Writer failovers seen (instance: the new writer).", ("alias", "instance", "how")
)
FAILOVER_DURATION = Metric(
    "aurora.failover.duration",
    "histogram",
    "s",
    ("alias", "how"),
    "From the first sign of trouble to the new writer's connection.",
)
RECONNECT_REASONS = _counter(
    "aurora.reconnects.by_reason", "Reconnects by reason and instance reached.", ("alias", "instance", "reason")
)
TRANSACTION_OUTCOMES = _counter(
    "aurora.transaction.outcomes", "How retried retry_atomic blocks ended.", ("alias", "outcome")
)
LOST_COMMITS = _counter("aurora.lost_commit.verdicts", "Verdicts on COMMITs that got no answer.", ("alias", "verdict"))
EVENT_METRICS = (FAILOVERS, RECONNECT_REASONS, TRANSACTION_OUTCOMES, LOST_COMMITS)

#: Metrics read from state the ENGINE keeps.
REPLICA_LAG = Metric(
    "aurora.replica.lag",
    "gauge",
    "s",
    ("alias", "instance"),
    "Last measured lag of a reader behind the writer (reader routing).",
)
CREDENTIAL_FETCHES = _counter("aurora.credential.fetches", "Credentials fetched (IAM tokens, secrets).", ("source",))
#: OpenTelemetry semantic conventions for database clients (docs/observability.md cites them).
CONNECTION_COUNT = Metric(
    "db.client.connection.count",
    "updown",
    "{connection}",
    ("db.client.connection.pool.name", "db.client.connection.state"),
    "Open connections by state (idle, used); the pool name is the alias.",
)
OPERATION_DURATION = Metric(
    "db.client.operation.duration",
    "histogram",
    "s",
    ("db.system.name", "db.client.connection.pool.name", "error.type"),
    "Duration of database statements as the app saw them (re-runs included).",
)

#: Bucket bounds (s) for durations that are healing, not queries.
HEAL_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


# ----- labels ----------------------------------------------------------------------------


class Instances:
    """Bounded ``instance`` label values: the first MAX_INSTANCES per alias, then "other"."""

    def __init__(self, limit: int = MAX_INSTANCES) -> None:
        self.limit = limit
        self._seen: dict[str, set[Any]] = {}
        self._lock = threading.Lock()

    def label(self, alias: str, instance: str | None) -> str:
        if not instance:
            return "unknown"
        with self._lock:
            seen = self._seen.setdefault(alias, set())
            if instance in seen:
                return instance
            if len(seen) < self.limit:
                seen.add(instance)
                return instance
        return OTHER


instances = Instances()


def instance_of(wrapper: Any, address: str | None = None) -> str | None:
    """The Aurora instance a wrapper is connected to (topology's id), else its address."""
    router = getattr(getattr(wrapper, "aurora", None), "router", None)
    current = getattr(router, "current", None)
    return current or address or getattr(wrapper, "aurora_address", None)


# ----- readers of the ENGINE's state ------------------------------------------------------


def stats_counters() -> Iterator[tuple[str, str, int]]:
    """(stats counter, alias, value) for every alias stats knows."""
    for alias, counts in stats.snapshot().items():
        for counter in stats.COUNTERS:
            yield counter, alias, int(counts.get(counter, 0))


def replica_lags() -> list[tuple[str, str, float]]:
    """(alias, instance, lag s) of every reader routing measured."""
    from aurora_backend.routing import position

    found = []
    for (alias, address), state in position.states().items():
        if state.lag is not None:
            found.append((alias, instances.label(alias, address), state.lag))
    return found


def credential_fetches() -> dict[str, int]:
    """Fetches by source ("iam", "secretsmanager", "callable"), over the process's caches."""
    from aurora_backend.credentials import cache

    totals: dict[str, int] = {}
    for key, found in list(cache._caches.items()):
        source = key[0] if isinstance(key, tuple) and key and isinstance(key[0], str) else OTHER
        totals[source] = totals.get(source, 0) + found.fetches
    return totals


_wrappers: weakref.WeakSet[Any] = weakref.WeakSet()


def track(wrapper: Any) -> None:
    """Count ``wrapper``'s connection in :func:`connection_counts` (connection_created)."""
    if hasattr(wrapper, "aurora_options"):
        _wrappers.add(wrapper)


def connection_counts() -> dict[tuple[str, str], int]:
    """(alias, "idle"|"used") -> open connections: Django's pool's own figures where there is
    one, else one per Django connection (used while a statement or transaction runs)."""
    counts: dict[tuple[str, str], int] = {}
    pools: dict[str, Any] = {}
    for wrapper in list(_wrappers):
        alias = wrapper.alias
        pool = _pool_of(wrapper)
        if pool is not None:
            pools[alias] = pool
            continue
        if wrapper.connection is None:
            continue
        used = wrapper.in_atomic_block or wrapper.aurora.last_used == math.inf  # (statements.py IN_USE)
        key = (alias, "used" if used else "idle")
        counts[key] = counts.get(key, 0) + 1
    for alias, pool in pools.items():
        figures = pool.get_stats()
        size, idle = figures.get("pool_size", 0), figures.get("pool_available", 0)
        counts[(alias, "idle")] = idle
        counts[(alias, "used")] = max(size - idle, 0)
    for alias, _ in list(counts):
        counts.setdefault((alias, "idle"), 0)
        counts.setdefault((alias, "used"), 0)
    return counts


def _pool_of(wrapper: Any) -> Any:
    pools = getattr(type(wrapper), "_connection_pools", None)  # Django's, per alias (never made here)
    return pools.get(wrapper.alias) if pools else None
