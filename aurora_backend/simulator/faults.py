"""The Aurora events the simulator can stage: scale, pause/resume, failover and plain faults.

A mixin of AuroraSimulator: every method runs its body in the simulator's loop thread
(through ``_call``) so the state it touches is only ever changed by that thread.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aurora_backend.exceptions import SimulatorError
from aurora_backend.simulator import protocol as p

if TYPE_CHECKING:  # pragma: no cover
    from aurora_backend.simulator.host import SimulatorHost as _Base
else:
    _Base = object

FAILOVER_MODES = ("starting_up", "refuse")


class Faults(_Base):
    """Fault injection methods of AuroraSimulator."""

    def scale_event(self) -> int:
        """Every client connection gets FATAL 57P01 'serverless scale event timeout', then closes."""

        def run() -> int:
            self._count("scale_events")
            hit = self._kill(self._sessions, p.fatal(p.SCALE_EVENT))
            self._count("scale_event_kills", hit)
            return hit

        return self._call(run)

    def scale_point_on_connect(self, count: int = 1) -> None:
        """The next ``count`` startups get FATAL '... past serverless scale point'."""
        if count < 0:
            raise ValueError("scale_point_on_connect(count) needs count >= 0, got %r" % count)

        def run() -> None:
            self._scale_points += count

        self._call(run)

    def pause(self, force: bool = False) -> int:
        """Hold every new connection attempt until resume(); Aurora pauses only with none open.

        Raises SimulatorError if client connections are open, unless ``force`` (they are then
        dropped with the scale-event FATAL first). Returns how many were dropped.
        """

        def run() -> int:
            open_ = [s for s in self._sessions if s.state not in ("held", "closed")]
            if open_ and not force:
                raise SimulatorError(
                    "pause(): %d client connection(s) are open and Aurora pauses only with none; "
                    "close them first or call pause(force=True) to drop them" % len(open_)
                )
            hit = self._kill(open_, p.fatal(p.SCALE_EVENT))
            self._paused = True
            self._count("pauses")
            return hit

        return self._call(run)

    def resume(self, fail: int = 0) -> int:
        """Release held startups; the first ``fail`` of them get FATAL 57P03 instead. Returns how many."""
        if fail < 0:
            raise ValueError("resume(fail) needs fail >= 0, got %r" % fail)

        def run() -> int:
            self._paused = False
            held = [s for s in self._held if s.state == "held"]
            self._held.clear()
            for i, session in enumerate(held):
                session.release(fail=i < fail)
            self._count("resumes")
            self._count("resume_failures", min(fail, len(held)))
            return len(held)

        return self._call(run)

    def pause_for(self, seconds: float, force: bool = False, fail: int = 0) -> int:
        """pause(), then resume(fail) automatically after ``seconds``; returns at once."""
        if seconds < 0:
            raise ValueError("pause_for(seconds) needs seconds >= 0, got %r" % seconds)
        hit = self.pause(force=force)
        self._call(lambda: self._later(seconds, lambda: self.resume(fail)))
        return hit

    def failover(
        self,
        new_upstream: tuple[str, int] | None = None,
        window: float = 1.0,
        mode: str = "starting_up",
        wait: bool = False,
    ) -> int:
        """Drop all (57P01 administrator command), reject or refuse for ``window`` s, then switch.

        ``mode`` "starting_up": new startups get FATAL 57P03 during the window; "refuse":
        the listeners are closed. After the window the upstream is ``new_upstream`` (or
        the same). Returns at once (``wait=True``: after the window) with the drop count.
        """
        if mode not in FAILOVER_MODES:
            raise ValueError("failover(mode=%r): mode must be one of %s" % (mode, FAILOVER_MODES))
        if window < 0:
            raise ValueError("failover(window) needs window >= 0, got %r" % window)
        target = tuple(new_upstream) if new_upstream is not None else None

        async def run() -> int:
            self._failover_done.clear()
            self._count("failovers")
            hit = self._kill(self._sessions, p.fatal(p.ADMIN_SHUTDOWN))
            if mode == "starting_up":
                self._starting_up_until = time.monotonic() + window
            else:
                self._failover_refusing = True
                self._count("refused")
                await self._sync_listeners()
            self._later(window, lambda: self._end_failover(target))
            return hit

        hit = self._call(run)
        if wait:
            self.wait_failover(window + 10)
        return hit

    def _end_failover(self, target: Any | None) -> None:
        import asyncio

        if target is not None:
            self._upstream = (str(target[0]), int(target[1]))
        self._starting_up_until = 0.0
        self._failover_refusing = False
        task = asyncio.ensure_future(self._sync_listeners())
        task.add_done_callback(lambda _t: self._failover_done.set())

    def wait_failover(self, timeout: float = 30.0) -> None:
        """Block until a failover's window has ended (the new upstream is in place)."""
        if not self._failover_done.wait(timeout):
            raise TimeoutError("wait_failover(): the failover window did not end in %.1f s" % timeout)

    def refuse(self, on: bool = True) -> None:
        """Stop (or start again) listening, so clients get 'Connection refused'."""

        async def run() -> None:
            if on and not self._refusing:
                self._count("refused")
            self._refusing = bool(on)
            await self._sync_listeners()

        self._call(run)

    def blackhole(self, on: bool = True) -> None:
        """Accept new connections and never answer them (clients hit connect_timeout)."""

        def run() -> None:
            self._blackholed = bool(on)
            if not on:
                self._kill([s for s in self._sessions if s.state == "blackholed"], None)

        self._call(run)

    def drop(self, count: int = 1, silent: bool = True) -> int:
        """Close ``count`` client connections (oldest first), silently or with 57P01 admin text."""
        if count < 0:
            raise ValueError("drop(count) needs count >= 0, got %r" % count)

        def run() -> int:
            live = [s for s in self._sessions if s.state == "established"]
            live += [s for s in self._sessions if s.state not in ("established", "closed")]
            hit = self._kill(live[:count], None if silent else p.fatal(p.ADMIN_SHUTDOWN))
            self._count("dropped", hit)
            return hit

        return self._call(run)

    def drop_all(self, silent: bool = True) -> int:
        """Close every client connection, silently or with 57P01 administrator command."""
        return self.drop(1 << 30, silent=silent)

    def read_only(self, on: bool = True) -> None:
        """Writes (simple queries with INSERT/UPDATE/DELETE) fail with ERROR 25006, as on a reader."""

        def run() -> None:
            self._read_only = bool(on)

        self._call(run)

    def reset(self) -> None:
        """Heal everything: resume, listen, stop blackholing, clear pending faults; keep counters."""

        async def run() -> None:
            for timer in self._timers:
                timer.cancel()
            self._timers = []
            self._paused = False
            held = [s for s in self._held if s.state == "held"]
            self._held.clear()
            for session in held:
                session.release(fail=False)
            self._blackholed = False
            self._kill([s for s in self._sessions if s.state == "blackholed"], None)
            self._refusing = self._failover_refusing = self._read_only = False
            self._scale_points = 0
            self._starting_up_until = 0.0
            self._upstream = self._original_upstream
            await self._sync_listeners()
            self._failover_done.set()

        self._call(run)
