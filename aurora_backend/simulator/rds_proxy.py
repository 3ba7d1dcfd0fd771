"""The simulator's RDS Proxy mode: which client sessions a real RDS Proxy would pin, and why.

With the mode on, every message a client sends is read (not changed) and checked against
:mod:`aurora_backend.simulator.pinning`. The first pin of a session pins it for its life,
as on RDS Proxy; later causes are listed too. Reports: ``sim.pinning()`` (every session
seen while the mode was on), ``with sim.assert_no_pinning(): ...`` in tests, and the
control endpoint's ``pinning`` command.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aurora_backend.exceptions import PinningError
from aurora_backend.simulator.pinning import Pin, message_pins

if TYPE_CHECKING:  # pragma: no cover
    from aurora_backend.simulator.host import SimulatorHost as _Base
else:
    _Base = object

#: Sessions kept in the report (the oldest closed ones are forgotten first).
MAX_SESSIONS = 10000
_ids = itertools.count(1)


class SessionPins:
    """What one client session did that pins it; fed from the simulator's loop thread."""

    def __init__(self, client: str, parameters: dict[str, str]) -> None:
        self.id = next(_ids)
        self.client = client
        self.parameters = parameters
        self.open = True
        self.pins: dict[str, list[Any]] = {}  # reason -> [first detail, count]
        self._buffer = bytearray()

    @property
    def pinned(self) -> bool:
        return bool(self.pins)

    def feed(self, data: bytes) -> list[Pin]:
        """Read the complete messages in ``data`` (with what was left over); returns its pins."""
        buffer = self._buffer
        buffer += data
        found: list[Pin] = []
        pos = 0
        while pos + 5 <= len(buffer):
            end = pos + 1 + struct.unpack_from("!I", buffer, pos + 1)[0]
            if end > len(buffer):
                break
            kind = bytes(buffer[pos : pos + 1])
            if kind in (b"Q", b"P"):
                found.extend(message_pins(kind, bytes(buffer[pos + 5 : end])))
            pos = end
        del buffer[:pos]
        for pin in found:
            entry = self.pins.setdefault(pin.reason, [pin.detail, 0])
            entry[1] += 1
        return found

    def report(self) -> dict[str, Any]:
        return {
            "session": self.id,
            "client": self.client,
            "open": self.open,
            "pinned": self.pinned,
            "database": self.parameters.get("database"),
            "user": self.parameters.get("user"),
            "application_name": self.parameters.get("application_name"),
            "reasons": [{"reason": r, "detail": d, "count": n} for r, (d, n) in self.pins.items()],
        }


class PinWatch:
    """Pins seen while a ``watch_pinning()`` block ran: ``(session id, Pin)`` pairs."""

    def __init__(self) -> None:
        self.pins: list[tuple[int, Pin]] = []
        self.sessions: set[int] = set()

    @property
    def pinned_sessions(self) -> int:
        return len({sid for sid, _ in self.pins})

    def describe(self) -> str:
        return "\n".join("session %d: %s: %s" % (sid, pin.reason, pin.detail) for sid, pin in self.pins)


class RdsProxyMode(_Base):
    """RDS Proxy mode of AuroraSimulator (a mixin; state lives in the loop thread)."""

    def _init_rds_proxy(self, on: bool) -> None:
        self._rds_proxy = on
        self._pin_sessions: deque[SessionPins] = deque()
        self._pin_watches: list[PinWatch] = []

    def rds_proxy(self, on: bool = True) -> None:
        """Turn RDS Proxy mode on or off (applies to sessions that start afterwards)."""

        def run() -> None:
            self._rds_proxy = bool(on)

        self._call(run)

    @property
    def rds_proxy_mode(self) -> bool:
        return self._rds_proxy

    def _track_session(self, client: str, parameters: dict[str, str]) -> SessionPins | None:
        """Called by a session after its startup (loop thread): a tracker, or None if the mode is off."""
        if not self._rds_proxy:
            return None
        tracker = SessionPins(client, parameters)
        self._pin_sessions.append(tracker)
        if len(self._pin_sessions) > MAX_SESSIONS:
            oldest = next((s for s in self._pin_sessions if not s.open), self._pin_sessions[0])
            self._pin_sessions.remove(oldest)
        for watch in self._pin_watches:
            watch.sessions.add(tracker.id)
        return tracker

    def _inspect(self, tracker: SessionPins, data: bytes) -> None:
        """Check what a client sent (loop thread, before it is forwarded)."""
        was_pinned = tracker.pinned
        pins = tracker.feed(data)
        if not pins:
            return
        if not was_pinned:
            self._count("pinned_sessions")
        for watch in self._pin_watches:
            watch.pins.extend((tracker.id, pin) for pin in pins)

    def pinning(self, only_pinned: bool = False) -> list[dict[str, Any]]:
        """Per client session seen in RDS Proxy mode: whether and why it would be pinned."""

        def run() -> list[dict[str, Any]]:
            return [s.report() for s in self._pin_sessions if s.pinned or not only_pinned]

        return self._call(run)

    def clear_pinning(self) -> None:
        """Forget the sessions reported so far (open ones stay tracked but leave the report)."""
        self._call(self._pin_sessions.clear)

    @contextlib.contextmanager
    def watch_pinning(self) -> Iterator[PinWatch]:
        """Turn RDS Proxy mode on for the block and collect the pins it causes."""
        watch = PinWatch()
        was_on = self._rds_proxy

        def start() -> None:
            self._rds_proxy = True
            self._pin_watches.append(watch)

        def stop() -> None:
            self._pin_watches.remove(watch)
            self._rds_proxy = was_on

        self._call(start)
        try:
            yield watch
        finally:
            self._call(stop)

    @contextlib.contextmanager
    def assert_no_pinning(self) -> Iterator[PinWatch]:
        """The block must pin no session behind RDS Proxy; PinningError lists every cause."""
        with self.watch_pinning() as watch:
            yield watch
        if watch.pins:
            raise PinningError(
                "%d session(s) would be pinned by RDS Proxy:\n%s" % (watch.pinned_sessions, watch.describe())
            )
