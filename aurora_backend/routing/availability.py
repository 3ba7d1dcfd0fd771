"""Is a reader alias usable right now? Fallback episodes, their signals and counters.

A reader is *unreachable* (connect or position read failed: down, failing over) or
*lagging* (behind by more than ``max_lag``): its reads go to the writer. An episode
starts with one ``signals.reader_fallback`` and ends with one ``signals.reader_restored``;
``stats`` counts every read sent to the writer because of it (``reader_fallbacks``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from aurora_backend import signals, stats

logger = logging.getLogger("aurora_backend")

_lock = threading.Lock()
#: alias -> (reason, unreachable until (monotonic s) or 0 for lagging)
_episodes: dict[str, tuple[str, float]] = {}


def unreachable_until(alias: str) -> float:
    """The reader is not tried before this (monotonic s); 0 when it may be tried."""
    episode = _episodes.get(alias)
    return episode[1] if episode is not None and episode[0] == "unreachable" else 0.0


def fall_back(
    connection: Any, reason: str, until: float = 0.0, lag: float | None = None, error: BaseException | None = None
) -> None:
    """Count a read sent to the writer; start an episode if none of this reason runs."""
    alias = connection.alias
    stats.incr(alias, "reader_fallbacks")
    with _lock:
        previous = _episodes.get(alias)
        _episodes[alias] = (reason, until)
    if previous is None or previous[0] != reason:
        logger.warning(
            "reader %r %s: its reads go to the writer%s",
            alias,
            reason,
            " (lag %.3f s)" % lag if lag is not None else (" (%s)" % _first_line(error) if error else ""),
        )
        signals.reader_fallback.send(
            sender=type(connection),
            alias=alias,
            connection=connection,
            reason=reason,
            lag=lag,
            error=error,
        )


def restored(connection: Any) -> None:
    """The reader is usable again (called on each read it gets: cheap when nothing ran)."""
    if connection.alias not in _episodes:
        return
    with _lock:
        previous = _episodes.pop(connection.alias, None)
    if previous is not None:
        logger.info("reader %r usable again after being %s", connection.alias, previous[0])
        signals.reader_restored.send(
            sender=type(connection),
            alias=connection.alias,
            connection=connection,
            reason=previous[0],
        )


def current(alias: str) -> str | None:
    """The running episode's reason ("unreachable", "lagging") or None."""
    episode = _episodes.get(alias)
    return None if episode is None else episode[0]


def reset() -> None:
    with _lock:
        _episodes.clear()


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else ""
    return (text.splitlines() or [type(error).__name__])[0]
