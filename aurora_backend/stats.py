"""Per-process counters of what aurora_backend did, per database alias.

Read them with :func:`snapshot`; ``manage.py aurora_health`` shows them.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Dict, Optional

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
)

_lock = threading.Lock()
_counts: Dict[str, Dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
_last_scale_event: Dict[str, float] = {}


def incr(alias: str, counter: str, amount: int = 1) -> None:
    with _lock:
        _counts[alias][counter] += amount
        if counter == "scale_events":
            _last_scale_event[alias] = time.time()


def snapshot(alias: Optional[str] = None) -> Dict[str, Any]:
    """Counters of one alias (or of all, keyed by alias), plus ``last_scale_event`` (epoch s)."""
    with _lock:
        if alias is not None:
            return {**_counts[alias], "last_scale_event": _last_scale_event.get(alias)}
        return {
            name: {**counts, "last_scale_event": _last_scale_event.get(name)}
            for name, counts in _counts.items()
        }


def reset() -> None:
    """Forget every counter (tests)."""
    with _lock:
        _counts.clear()
        _last_scale_event.clear()
