"""Metrics and traces for dashboards: OpenTelemetry (``otel``) and Prometheus (``prometheus``).

Nothing here is imported by the ENGINE: until the app calls :func:`otel.instrument` or
:func:`prometheus.register`, it costs nothing, per statement or at import. Both read the
same sources: the counters of ``aurora_backend.stats`` (read when a reader collects, so the
exported counters move exactly as ``stats.snapshot()`` does), the signals of
``aurora_backend.signals`` (``events``), and the state the ENGINE keeps anyway (replica lag,
credential fetches, open connections: ``catalog``). See docs/observability.md.
"""

from typing import Any, List

#: The two exporters, imported on first use (``from aurora_backend.observability import otel``).
__all__ = ["otel", "prometheus"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    import importlib

    return importlib.import_module("%s.%s" % (__name__, name))


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
