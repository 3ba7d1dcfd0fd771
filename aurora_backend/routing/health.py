"""What ``manage.py aurora_health`` says about reader routing, on the reader alias.

It reads the reader's lag the way the router does (on the probe's own connection) and
says whether reads would fall back to the writer; the process counters
(``reader_reads``, ``ryw_reads``, ``reader_fallbacks``) are in the report's ``process``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from aurora_backend.exceptions import PositionUnavailable
from aurora_backend.health.sql import Finding
from aurora_backend.routing import availability
from aurora_backend.routing.checks import router_installed
from aurora_backend.routing.config import SETTINGS_NAME, RoutingConfig
from aurora_backend.routing.position import ReaderState


def configured() -> RoutingConfig | None:
    """The routing settings when the router is installed (or AURORA_ROUTING is set)."""
    from django.conf import settings

    if not router_installed() and getattr(settings, SETTINGS_NAME, None) is None:
        return None
    try:
        config = RoutingConfig.from_settings()
    except ImproperlyConfigured:
        return None  # the router itself reports it, on first use
    return config if config.enabled else None


def findings(alias: str, raw: Any) -> list[Finding]:
    """Findings for ``alias`` when it is the routing reader; ``raw``: a driver connection to it."""
    config = configured()
    if config is None or alias != config.reader:
        return []
    result = []
    state = ReaderState()
    try:
        state.refresh(raw, 0.0, 0.0)
    except PositionUnavailable as exc:
        return [Finding("warning", "reader_position_unknown", "cannot read the reader's position: %s" % exc)]
    lag = "unknown" if state.lag is None else "%.3f s" % state.lag
    if state.lag is not None and state.lag > config.max_lag:
        result.append(
            Finding(
                "warning",
                "reader_lagging",
                "reader %r lags %s behind writer %r (max_lag %g s): "
                "routed reads fall back to the writer" % (alias, lag, config.writer, config.max_lag),
            )
        )
    else:
        how = "a %g s window" % config.fallback_window
        if state.lsn is not None or state.aurora:
            how = "WAL position" if state.lsn is not None else "Aurora replica lag"
        result.append(
            Finding(
                "info",
                "reader_routing",
                "reader of %r, lag %s (max_lag %g s); read-your-writes by %s"
                % (config.writer, lag, config.max_lag, how),
            )
        )
    episode = availability.current(alias)
    if episode is not None:
        result.append(
            Finding(
                "warning",
                "reader_fallback",
                "this process sends the reads of %r to the writer: reader %s" % (alias, episode),
            )
        )
    return result
