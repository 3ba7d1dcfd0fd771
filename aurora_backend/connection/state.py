"""ConnectionState: everything aurora_backend keeps about one wrapper's connection, in one place.

One instance per ``DatabaseWrapper`` (so one per alias per thread, as Django's wrappers),
made in ``AuroraWrapperMixin.__init__`` and reached as ``wrapper.aurora``. Its per-connection
part is reset by :meth:`ConnectionState.new_connection` when a connection opens (not when it
closes: a statement that failed on a dead connection still asks what that connection held).

Each collaborator sees it through a small Protocol naming only what it reads and writes:

- :class:`StatementState`: the cursor classes (``statements.py``), per statement;
- :class:`ReaperState`: the idle reaper thread (``lifetime.py``);
- :class:`RouterState`: the topology and global routers, the pool's checkout, observability.

The mixins over Django's hooks (``mixin.py``, ``freshness.py``, ``session.py``,
``pool/mixin.py``, ``proxy/mode.py``) own the rest. No module sets private attributes on the
wrapper: what is per connection lives here, with ``__slots__`` (a misspelt field is an error).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from aurora_backend.connection.session_state import Effect, SessionState

__all__ = [
    "ConnectionState",
    "StatementState",
    "ReaperState",
    "RouterState",
    "READERS_PRUNE_AT",
    "has_unread_rows",
    "state_of",
]

#: More registered client cursors than this and the closed or collected ones are forgotten
#: (make_cursor registers them itself below this number: it is the path of every cursor).
READERS_PRUNE_AT = 32


def has_unread_rows(cursor: Any) -> bool:
    """A client cursor whose result still has rows the app has not fetched (DB-API attributes)."""
    try:
        if cursor.description is None:  # no result set: a write, or closed by the app
            return False
        return (cursor.rownumber or 0) < cursor.rowcount
    except Exception:  # a driver that cannot say: nothing to protect
        return False


def _gone(cursor: Any) -> bool:
    """Collected or closed: a cursor that can never have unread rows again."""
    if cursor is None:
        return True
    try:
        return bool(cursor.closed)
    except Exception:
        return False


def _always() -> bool:
    return True


class ConnectionState:
    """The state of one wrapper's connection (see the module docstring)."""

    __slots__ = (
        # Per wrapper (kept across connections).
        "lock",
        "idle_window",
        "plain_make_cursor",
        "plain_health_hooks",
        "router",
        "tz_differs",
        "tz_advised",
        "close_reason",
        "healing",
        "suspect_read_only",
        "named_cursors",
        # Per connection (new_connection()).
        "connected_at",
        "last_used",
        "expires_at",
        "check_at",
        "input_waiting",
        "session",
        "readers",
        "iterating",
        "kept_for",
        "kept_news",
    )

    def __init__(
        self, idle_window: float = math.inf, plain_make_cursor: bool = False, plain_health_hooks: bool = False
    ) -> None:
        #: Guards ``last_used`` and the checks against the idle reaper thread.
        self.lock = threading.Lock()
        #: min(idle_timeout, ping_after): a connection used within it needs only the socket poll.
        self.idle_window = idle_window
        #: The two MRO probes (see mixin.py ``_plain_make_cursor``, freshness.py ``plain_health_hooks``).
        self.plain_make_cursor = plain_make_cursor
        self.plain_health_hooks = plain_health_hooks
        #: The topology or global Router of this wrapper (topology/router.py, global_db/router.py).
        self.router: Any = None
        #: Proxy mode: the connection's session timezone is not Django's; the warning was given.
        self.tz_differs = False
        self.tz_advised = False
        #: Why the last close happened (the reaper may close first and say why).
        self.close_reason: str | None = None
        #: Closing on purpose: errors met meanwhile are not healed again.
        self.healing = False
        #: A 25006 was seen: the next use outside a transaction asks pg_is_in_recovery().
        self.suspect_read_only = False
        #: Open server-side cursors: a slow consumer uses its connection between statements.
        self.named_cursors: weakref.WeakSet[Any] = weakref.WeakSet()
        self.expires_at: float | None = None
        self.new_connection(0.0, None, _always)
        self.check_at = 0.0  # no connection yet: the first one is checked in full

    def new_connection(self, now: float, expires_at: float | None, input_waiting: Callable[[], bool]) -> None:
        """A connection opened at ``now``: nothing held, nothing seen yet."""
        self.connected_at = self.last_used = now
        #: Monotonic time the connection expires (None: never; the pool's max_lifetime rules).
        self.expires_at = expires_at
        #: Before it, only the socket needs a look (see close_if_health_check_failed); 0: now.
        self.check_at = self.next_check(now)
        #: The per-connection poll(): True when the server sent something while we were idle.
        self.input_waiting = input_waiting
        self.reset_session()

    def reset_session(self) -> None:
        """Nothing held: no session state, no client cursor registered."""
        self.session = SessionState()
        #: id(driver cursor) -> weak reference, for the client cursors made on this connection.
        self.readers: dict[int, Any] = {}
        #: The same, for cursors a ``for`` loop is reading (its last row read, the loop not ended).
        self.iterating: dict[int, Any] = {}
        self.kept_for: set[str] = set()
        #: (reason, held, error) to announce outside any lock (session.py ``_aurora_announce_kept``).
        self.kept_news: list[tuple[str, list[str], BaseException | None]] = []

    def next_check(self, now: float) -> float:
        """When the next full check is due after one at ``now`` (until then, the pre-use check
        polls the socket only): an idle window later, or at expiry if that comes first."""
        horizon = now + self.idle_window
        expires = self.expires_at
        return horizon if expires is None or expires > horizon else expires

    def after_fork(self) -> None:
        """A forked child: a lock the reaper held at the fork would never be released."""
        self.lock = threading.Lock()

    # ----- cursors ------------------------------------------------------------------

    def note_cursor(self, cursor: Any) -> None:
        """``cursor`` was made on this connection: from now on, whenever it has rows unread it
        holds the connection. (Registered once, when made, not after every statement: the
        registry is read only when a connection may be closed or a statement re-run.)"""
        readers = self.readers
        if len(readers) >= READERS_PRUNE_AT:
            for key, ref in list(readers.items()):
                if _gone(ref()):
                    readers.pop(key, None)
        readers[id(cursor)] = weakref.ref(cursor)

    def cursors_open(self) -> bool:
        """A server-side cursor (QuerySet.iterator()) is still being read on this connection."""
        return any(not cursor.closed for cursor in list(self.named_cursors))

    def reading(self) -> bool:
        """A client cursor has rows unread, or a ``for`` loop over one has not ended."""
        if any(ref() is not None for ref in list(self.iterating.values())):
            return True
        return any(has_unread_rows(ref()) for ref in list(self.readers.values()) if ref() is not None)

    # ----- session state ------------------------------------------------------------

    def describe_held(self) -> list[str]:
        """What the connection holds, e.g. ``["advisory_lock 42", "set search_path"]``."""
        held = self.session.describe()
        if self.reading():
            held.append("cursor with unread rows")
        return held

    def holds_state(self, reason: str | None = None) -> bool:
        """True while the connection holds session state; with ``reason`` ("expired", "idle",
        "read_only"), note once per connection and reason that it is kept for it (announced
        by the wrapper's ``_aurora_announce_kept``, outside any lock)."""
        # Cheap first: a connection past its max age holding a SET takes this path on every use.
        if not self.session.held and not ((self.readers or self.iterating) and self.reading()):
            return False
        if reason is not None and reason not in self.kept_for:
            self.kept_for.add(reason)
            self.kept_news.append((reason, self.describe_held(), None))
        return True

    def apply(self, found: tuple[Effect, ...], params: Any = None) -> None:
        """The effects of a statement that succeeded on this connection."""
        self.session.apply(found, params)


@runtime_checkable
class StatementState(Protocol):
    """What the cursor classes (``statements.py``) read and write, per statement."""

    last_used: float
    session: SessionState
    readers: dict[int, Any]
    iterating: dict[int, Any]
    tz_differs: bool

    def note_cursor(self, cursor: Any) -> None: ...


@runtime_checkable
class ReaperState(Protocol):
    """What the idle reaper thread (``lifetime.py``) needs of a wrapper's state."""

    lock: threading.Lock
    last_used: float
    close_reason: str | None

    def cursors_open(self) -> bool: ...

    def holds_state(self, reason: str | None = None) -> bool: ...

    def after_fork(self) -> None: ...


@runtime_checkable
class RouterState(Protocol):
    """What the routers (topology, global database), the pool's checkout and the
    observability catalog read or set: the wrapper's Router, and whether a statement runs."""

    router: Any
    last_used: float


def state_of(wrapper: Any) -> ConnectionState | None:
    """``wrapper.aurora`` for an aurora_backend wrapper; None for any other wrapper."""
    state = getattr(wrapper, "aurora", None)
    return state if isinstance(state, ConnectionState) else None
