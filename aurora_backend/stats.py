"""Per-process counters of what aurora_backend did, per database alias.

Read them with :func:`snapshot`; ``manage.py aurora_health`` shows them.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

COUNTERS = (
    "connections",
    "reconnects",
    "connect_retries",
    "connect_failures",
    "scale_events",
    "statements_retried",
    "transactions_retried",
    "expired",
    "idle_closed",
    "session_state_kept",
    "session_state_errors",
    # Reader routing (aurora_backend.routers), counted on the reader alias.
    "reader_reads",
    "ryw_reads",
    "reader_fallbacks",
    # RDS Blue/Green (aurora_backend.bluegreen): holds, milliseconds held, holds timed out.
    "blue_green_switchovers",
    "blue_green_holds",
    "blue_green_held_ms",
    "blue_green_hold_timeouts",
)

_lock = threading.Lock()
_counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
_last_scale_event: dict[str, float] = {}
_gauges: dict[str, dict[str, int]] = defaultdict(dict)


def incr(alias: str, counter: str, amount: int = 1) -> None:
    with _lock:
        _counts[alias][counter] += amount
        if counter == "scale_events":
            _last_scale_event[alias] = time.time()


def set_gauge(alias: str, name: str, value: int) -> None:
    """A current value shown beside the counters (``blue_green_phase``: 0 NOT_CREATED .. 5 COMPLETED)."""
    with _lock:
        _gauges[alias][name] = value


def snapshot(alias: str | None = None) -> dict[str, Any]:
    """Counters of one alias (or of all, keyed by alias), plus ``last_scale_event`` (epoch s)."""
    with _lock:
        if alias is not None:
            return {**_counts[alias], **_gauges.get(alias, {}), "last_scale_event": _last_scale_event.get(alias)}
        return {
            name: {**counts, **_gauges.get(name, {}), "last_scale_event": _last_scale_event.get(name)}
            for name, counts in _counts.items()
        }


def reset() -> None:
    """Forget every counter (tests)."""
    with _lock:
        _counts.clear()
        _gauges.clear()
        _last_scale_event.clear()
