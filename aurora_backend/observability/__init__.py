"""Metrics and traces for dashboards: OpenTelemetry (``otel``) and Prometheus (``prometheus``).

Nothing here is imported by the ENGINE: until the app calls :func:`otel.instrument` or
:func:`prometheus.register`, it costs nothing, per statement or at import. Both read the
same sources: the counters of ``aurora_backend.stats`` (read when a reader collects, so the
exported counters move exactly as ``stats.snapshot()`` does), the signals of
``aurora_backend.signals`` (``events``), and the state the ENGINE keeps anyway (replica lag,
credential fetches, open connections: ``catalog``). See docs/observability.md.
"""
