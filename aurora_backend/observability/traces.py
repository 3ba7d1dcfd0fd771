"""Span events: what the ENGINE healed inside the current span (a request, a task).

Each :class:`~aurora_backend.observability.events.Healed` becomes an event named
``aurora.<kind>`` (``aurora.statement_rerun``, ``aurora.transaction_retry``,
``aurora.connect_retry``, ``aurora.reconnect``, ``aurora.scale_event``, ``aurora.failover``,
``aurora.lost_commit``, ...) on the span current in the thread that healed, with
``aurora.alias``, ``aurora.reason`` and, where the ENGINE measured it, ``aurora.seconds``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from aurora_backend.observability.events import Healed


def attributes_of(healed: Healed) -> dict[str, Any]:
    """The event's attributes: only str, int, float (OpenTelemetry's types); None left out."""
    found: dict[str, Any] = {"aurora.alias": healed.alias}
    if healed.reason is not None:
        found["aurora.reason"] = healed.reason
    if healed.seconds is not None:
        found["aurora.seconds"] = float(healed.seconds)
    for key, value in healed.attributes.items():
        if value is None:
            continue
        found["aurora." + key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return found


def add_event(healed: Healed) -> None:
    """Add ``healed`` to the current span, if one is recording."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("aurora." + healed.kind, attributes_of(healed))
