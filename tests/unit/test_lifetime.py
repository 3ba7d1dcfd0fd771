"""Connection lifetimes: expiries drawn over a range, so processes started together do not reconnect together.

The reaper and expiry on real connections: tests/test_lifetime.py.
"""

from __future__ import annotations

import random

from aurora_backend.connection.lifetime import draw_expiry


def test_expiries_of_processes_started_together_spread_over_the_range():
    """No reconnect storm: 1000 connections opened in the same second expire over 300 s."""
    rng = random.Random(42)
    expiries = [draw_expiry(0.0, (300.0, 600.0), rng) for _ in range(1000)]
    assert 300 <= min(expiries) and max(expiries) <= 600
    per_second = {}
    for e in expiries:
        per_second[int(e)] = per_second.get(int(e), 0) + 1
    assert max(per_second.values()) <= 12  # vs 1000 in one second with a fixed max age
