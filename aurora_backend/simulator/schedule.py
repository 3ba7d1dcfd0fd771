"""Scheduled events for a long-running simulator: periodic scale events and Aurora's auto-pause.

Both run as tasks in the simulator's loop and call its public fault methods, which run
directly there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from aurora_backend.simulator.proxy import AuroraSimulator

logger = logging.getLogger("aurora_backend")
TICK = 0.05


async def scale_every(sim: AuroraSimulator, interval: float) -> None:
    """A forced scale event every ``interval`` seconds."""
    while True:
        await asyncio.sleep(interval)
        hit = sim.scale_event()
        logger.info("simulator: scheduled scale event dropped %d connection(s)", hit)


async def auto_pause(sim: AuroraSimulator, idle: float, resume_delay: float, fail: int = 0) -> None:
    """Pause after ``idle`` s without connections; a held attempt resumes it ``resume_delay`` s later.

    That is Aurora Serverless v2 at 0 ACU: it pauses when nobody is connected, and the
    first connection attempt wakes it up after a delay (15 s or more on a real cluster).
    """
    idle_since = time.monotonic()
    resume_at = None
    while True:
        await asyncio.sleep(TICK)
        now = time.monotonic()
        if sim._paused:
            held = any(s.state == "held" for s in sim._held)
            if held and resume_at is None:
                resume_at = now + resume_delay
            if resume_at is not None and now >= resume_at:
                logger.info("simulator: auto-resume released %d attempt(s)", sim.resume(fail))
                resume_at, idle_since = None, now
            continue
        if sim._sessions:
            idle_since = now
        elif now - idle_since >= idle:
            sim.pause()
            logger.info("simulator: auto-paused after %.1f s without connections", idle)


def start(sim: AuroraSimulator, coroutine_factory: Callable[..., Coroutine[Any, Any, Any]], *args: object) -> None:
    """Run ``coroutine_factory(sim, *args)`` as a task of the simulator's loop."""
    sim._call(lambda: asyncio.ensure_future(coroutine_factory(sim, *args)))
