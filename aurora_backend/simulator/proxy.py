"""AuroraSimulator: a PostgreSQL proxy whose faults are Aurora's, run in a background thread.

An asyncio loop in a daemon thread owns every listener and connection; the public
methods hand work to that loop and wait for it, so tests call them from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar, overload

from aurora_backend.exceptions import SimulatorError
from aurora_backend.simulator import protocol as p
from aurora_backend.simulator.faults import Faults
from aurora_backend.simulator.rds_proxy import RdsProxyMode
from aurora_backend.simulator.session import Session

logger = logging.getLogger("aurora_backend")

Address = tuple[str, int]
_T = TypeVar("_T")
COUNTER_NAMES = (
    "accepted",
    "startups",
    "forwarded_bytes",
    "scale_events",
    "scale_event_kills",
    "scale_points",
    "pauses",
    "resumes",
    "held",
    "resume_failures",
    "failovers",
    "starting_up_rejections",
    "refused",
    "blackholed",
    "dropped",
    "cancels",
    "read_only_rejections",
    "upstream_failures",
    "pinned_sessions",
)


def _address(value: Any, argument: str) -> Address:
    try:
        host, port = value
        return str(host), int(port)
    except (TypeError, ValueError):
        raise ValueError(
            "%s must be a (host, port) pair such as ('127.0.0.1', 5432), got %r" % (argument, value)
        ) from None


class AuroraSimulator(Faults, RdsProxyMode):
    """Proxy in front of ``upstream`` listening on every ``listen`` address; see docs/simulator.md.

    ``rds_proxy=True`` starts it in RDS Proxy mode (pinning detection, docs/proxy.md).
    """

    upstream_timeout = 10.0

    def __init__(
        self,
        upstream: Address,
        listen: Iterable[Address] | None = None,
        rds_proxy: bool = False,
        listen_socket: Callable[[str, int], socket.socket] | None = None,
    ) -> None:
        self._init_rds_proxy(rds_proxy)
        # Makes each listening socket (e.g. inside a network namespace: testing/silent_host.py).
        self._listen_socket = listen_socket
        self._original_upstream = _address(upstream, "upstream")
        self._upstream = self._original_upstream
        self._listen = [_address(a, "listen[]") for a in (listen or [("127.0.0.1", 0)])]
        if not self._listen:
            raise ValueError("listen must name at least one (host, port) address")
        self._bound: list[Address] = list(self._listen)
        self._servers: list[asyncio.AbstractServer | None] = [None] * len(self._listen)
        self._counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._sessions: dict[Session, None] = {}
        self._held: deque[Session] = deque()
        self._timers: list[asyncio.TimerHandle] = []
        self._aux_servers: list[asyncio.AbstractServer] = []  # control endpoints
        self._paused = self._blackholed = self._refusing = self._read_only = False
        self._failover_refusing = False
        self._scale_points = 0
        self._starting_up_until = 0.0
        self._failover_done = threading.Event()
        self._failover_done.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> AuroraSimulator:
        """Bind every listen address and serve from a daemon thread; returns self."""
        if self._thread is not None:
            raise SimulatorError("start(): this simulator was already started; create a new one")
        self._loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="aurora-simulator", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout=10)
        except BaseException:
            self._thread.join(5)
            raise
        logger.info("simulator: listening on %s, upstream %s:%d", self._bound, *self._upstream)
        return self

    def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open_listeners())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        """Close every listener and connection and end the thread; safe to call twice."""
        if self._stopped or self._loop is None or self._thread is None:
            self._stopped = True
            return
        self._stopped = True
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        self._close_listeners()
        for server in self._aux_servers:
            server.close()
        for timer in self._timers:
            timer.cancel()
        for session in list(self._sessions):
            session.abort()
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

    def __enter__(self) -> AuroraSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- listeners -----------------------------------------------------------------

    async def _open_listeners(self) -> None:
        for index, (host, port) in enumerate(self._bound):
            if self._servers[index] is not None:
                continue
            accept = lambda r, w, i=index: self._accept(i, r, w)  # noqa: E731
            if self._listen_socket is not None:
                server = await asyncio.start_server(accept, sock=self._listen_socket(host, port))
            else:
                server = await asyncio.start_server(accept, host, port, reuse_address=True)
            self._servers[index] = server
            self._bound[index] = server.sockets[0].getsockname()[:2]

    def _close_listeners(self) -> None:
        for index, server in enumerate(self._servers):
            if server is not None:
                server.close()
                self._servers[index] = None

    async def _sync_listeners(self) -> None:
        if self._refusing or self._failover_refusing:
            self._close_listeners()
        else:
            await self._open_listeners()

    async def _accept(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._counters["accepted"] += 1
        session = Session(self, index, reader, writer)
        self._sessions[session] = None
        try:
            await session.run()
        except asyncio.CancelledError:  # shutdown: end quietly (asyncio logs a cancelled handler)
            pass

    def _forget(self, session: Session) -> None:
        self._sessions.pop(session, None)

    # -- called from sessions (loop thread) ---------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + n

    def _startup_fault(self) -> bytes | None:
        """The FATAL a StartupMessage gets right now, if any."""
        if self._scale_points > 0:
            self._scale_points -= 1
            self._count("scale_points")
            return p.fatal(p.SCALE_POINT)
        if time.monotonic() < self._starting_up_until:
            self._count("starting_up_rejections")
            return p.fatal(p.STARTING_UP)
        return None

    async def _forward_cancel(self, packet: bytes) -> None:
        """Send a CancelRequest to the upstream on a connection of its own, as libpq does."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*self._upstream), timeout=self.upstream_timeout
            )
        except (OSError, asyncio.TimeoutError):
            return
        writer.write(packet)
        try:
            await asyncio.wait_for(reader.read(1), timeout=self.upstream_timeout)
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    # -- thread bridge -------------------------------------------------------------

    @overload
    def _call(self, fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any) -> _T: ...
    @overload
    def _call(self, fn: Callable[..., _T], *args: Any) -> _T: ...

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the loop thread and return its result."""
        loop = self._loop
        if loop is None or self._stopped or not loop.is_running():
            raise SimulatorError("the simulator is not running: call start() first")
        if threading.current_thread() is self._thread:
            return fn(*args)
        if asyncio.iscoroutinefunction(fn):
            return asyncio.run_coroutine_threadsafe(fn(*args), loop).result(10)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(10)

    def _later(self, delay: float, fn: Callable[[], Any]) -> None:
        assert self._loop is not None
        self._timers = [t for t in self._timers if not t.cancelled()]
        self._timers.append(self._loop.call_later(delay, fn))

    def _kill(self, sessions: Iterable[Session], message: bytes | None) -> int:
        hit = 0
        for session in list(sessions):
            if session.state != "closed":
                session.kill(message)
                hit += 1
        return hit

    # -- observation ---------------------------------------------------------------

    @property
    def addresses(self) -> list[Address]:
        return list(self._bound)

    @property
    def address(self) -> Address:
        return self._bound[0]

    @property
    def upstream(self) -> Address:
        return self._upstream

    @property
    def counters(self) -> dict[str, int]:
        counters = dict(self._counters)
        counters["open"] = len(self._sessions)
        return counters

    def connection_counts(self) -> dict[Address, int]:
        """Client connections open right now, per listen address (held ones included)."""

        def count() -> dict[Address, int]:
            result = dict.fromkeys(self._bound, 0)
            for session in self._sessions:
                key = self._bound[session.index]
                result[key] += 1
            return result

        return self._call(count)

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Block until exactly ``n`` client connections are open; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            total = sum(self.connection_counts().values())
            if total == n:
                return True
            if time.monotonic() >= deadline:
                raise TimeoutError("wait_for_connections(%d): %d open after %.1f s" % (n, total, timeout))
            time.sleep(0.005)

    def task_count(self) -> int:
        """asyncio tasks alive in the simulator's loop (leak checks)."""
        return self._call(lambda: len(asyncio.all_tasks(self._loop)))

    def held_count(self) -> int:
        """Connection attempts currently held by pause()."""
        return self._call(lambda: sum(1 for s in self._held if s.state == "held"))
