"""The injectable clock both suites use: time that moves only when the test moves it.

``Runtime(clock=FakeClock())`` (aurora_backend/runtime.py) makes backoffs, expiries and
routing windows exact instead of waited for: a test sets ``clock.now`` and asserts.
Pure (no database): tests/unit imports it as freely as the integration suite.
"""

from __future__ import annotations


class FakeClock:
    """A monotonic clock (seconds) that reads ``now``; tests assign or add to it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
