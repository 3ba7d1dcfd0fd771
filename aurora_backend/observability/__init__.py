"""Metrics and traces for dashboards: OpenTelemetry (``otel``) and Prometheus (``prometheus``).

Nothing here is imported by the ENGINE: until the app calls :func:`otel.instrument` or
:func:`prometheus.register`, it costs nothing, per statement or at import. Both read the
same sources: the counters of ``aurora_backend.stats`` (read when a reader collects, so the
exported counters move exactly as ``stats.snapshot()`` does), the signals of
``aurora_backend.signals`` (``events``), and the state the ENGINE keeps anyway (replica lag,
credential fetches, open connections: ``catalog``). See docs/observability.md.
"""

from typing import TYPE_CHECKING

from aurora_backend._lazy import exports

if TYPE_CHECKING:
    from aurora_backend.observability import otel, prometheus

#: The two exporters, imported on first use (``from aurora_backend.observability import otel``).
__all__ = ["otel", "prometheus"]

__getattr__, __dir__ = exports(__name__, {name: "%s.%s" % (__name__, name) for name in __all__})
