"""Connection lifetimes: a jittered maximum age, an idle timeout, and the idle reaper.

Each connection draws its own lifetime from ``max_age`` = (min, max), so that the
connections of many processes started together expire spread over the range
instead of all at once (the Rails fix for reader hot-spotting used 5-10 minutes:
docs/aurora_facts.md, [W2]). Expiry is a
true close: the next connection resolves DNS again.

The reaper is one daemon thread per process. It closes the driver connection of a
wrapper unused for ``idle_timeout`` that is outside any transaction, so a quiet
worker holds no connection and Aurora Serverless can scale down or pause. The
owning thread notices the closed connection at its next use and opens a new one.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import weakref
from typing import Protocol

from aurora_backend.connection.state import ReaperState

logger = logging.getLogger("aurora_backend")


def draw_expiry(now: float, max_age: tuple[float, float] | None, rng: random.Random) -> float | None:
    """The monotonic time at which a connection opened at ``now`` expires (None: never)."""
    if max_age is None:
        return None
    low, high = max_age
    return now + (low if low == high else rng.uniform(low, high))


def reason_to_close(now: float, expires_at: float | None, last_used: float, idle_timeout: float | None) -> str | None:
    """ "expired" or "idle" when a connection outside a transaction should be closed now."""
    if expires_at is not None and now >= expires_at:
        return "expired"
    if idle_timeout is not None and now - last_used >= idle_timeout:
        return "idle"
    return None


class Reapable(Protocol):
    """What the reaper needs of a registered wrapper: its state (the lock above all) and
    the close itself (``FreshnessMixin._aurora_reap_if_idle``, under that lock)."""

    @property
    def aurora(self) -> ReaperState: ...

    def _aurora_reap_if_idle(self) -> bool: ...


class IdleReaper:
    """Closes idle connections of registered DatabaseWrappers from a daemon thread."""

    def __init__(self) -> None:
        self._wrappers: weakref.WeakSet[Reapable] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.interval = 30.0

    def register(self, wrapper: Reapable, idle_timeout: float) -> None:
        with self._lock:
            self._wrappers.add(wrapper)
            # Check often enough that a connection is closed at most 25% late.
            interval = max(0.05, min(self.interval, idle_timeout / 4))
            shorter, self.interval = interval < self.interval, interval
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="aurora_backend-idle-reaper", daemon=True)
                self._thread.start()
            elif shorter:
                self._wake.set()

    def after_fork_in_child(self) -> None:
        """A forked child has none of the parent's threads: a lock the reaper held at the
        fork would never be released. Start afresh (the next connect registers again)."""
        for wrapper in list(self._wrappers):
            wrapper.aurora.after_fork()
        self._wrappers = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.reap()

    def reap(self) -> int:
        """Close every registered connection that is idle; return how many were closed."""
        with self._lock:
            wrappers = list(self._wrappers)
        closed = 0
        for wrapper in wrappers:
            try:
                closed += bool(wrapper._aurora_reap_if_idle())
            except Exception:  # never let one odd wrapper kill the reaper
                logger.exception("idle reaper: checking %r failed", wrapper)
        return closed


reaper = IdleReaper()

if hasattr(os, "register_at_fork"):  # gunicorn --preload, Celery prefork
    os.register_at_fork(after_in_child=reaper.after_fork_in_child)
