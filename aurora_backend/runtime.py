"""Time, sleep and randomness, injectable so that tests are exact and fast."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import backoff


@dataclass
class Runtime:
    """The clock, sleep and random source aurora_backend uses; tests swap them."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    random: random.Random = field(default_factory=random.Random)


def jittered_delays(base: float, cap: float, rng: random.Random) -> Iterator[float]:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**n)) for n = 0, 1, ...

    The exponential sequence is the ``backoff`` library's; the jitter is its
    ``full_jitter`` drawn from ``rng`` so that tests can seed it.
    """
    waits = backoff.expo(base=2, factor=base, max_value=cap)
    next(waits)  # backoff's generators are primed with one next()
    for value in waits:
        yield rng.uniform(0, value)
