"""SessionMixin: a connection holding session state the app set is the app's.

Part of :class:`~aurora_backend.mixin.AuroraWrapperMixin`. The cursor wrapper
(``statements.py``) reports every statement that succeeded; its effects on session state
(``session_state.py``: SET, SET ROLE, advisory locks, temp tables, LISTEN, PREPARE, WITH
HOLD cursors) add up here, per connection, and so do client cursors with rows still
unread. While anything is held:

- expiry, the idle reaper, the stale-connection ping and the read-only check never close
  or replace the connection (``freshness.py``);
- a statement whose connection died is never re-run on a new one (``statements.py``):
  the app gets the error, as with Django's own backend.

Each connection starts with nothing held (Django's own connect-time SETs go around the
cursor wrapper). README, "Session state belongs to the app".
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from aurora_backend import signals, stats
from aurora_backend.connection.session_state import SessionState

if TYPE_CHECKING:  # pragma: no cover
    # Checked as what it is mixed into; at run time a plain mixin (AuroraWrapperMixin's MRO).
    from django.db.backends.postgresql.base import DatabaseWrapper as _WrapperBase
else:
    _WrapperBase = object

logger = logging.getLogger("aurora_backend")

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


class SessionMixin(_WrapperBase):
    """Session state held by the current connection (see the module docstring)."""

    alias: str
    connection: Any

    def _aurora_session_reset(self) -> None:
        """A new connection: nothing held. (Called from __init__ and get_new_connection.)"""
        self._aurora_session = SessionState()
        #: id(driver cursor) -> weak reference, for the client cursors made on this connection.
        self._aurora_readers: dict[int, Any] = {}
        #: The same, for cursors a ``for`` loop is reading (its last row read, the loop not ended).
        self._aurora_iterating: dict[int, Any] = {}
        self._aurora_kept_for: set[str] = set()
        self._aurora_kept_news: list[Any] = []

    def _aurora_note_cursor(self, cursor: Any) -> None:
        """``cursor`` was made on this connection: from now on, whenever it has rows unread it
        holds the connection. (Registered once, when made, not after every statement: the
        registry is read only when a connection may be closed or a statement re-run.)"""
        readers = self._aurora_readers
        if len(readers) >= READERS_PRUNE_AT:
            for key, ref in list(readers.items()):
                if _gone(ref()):
                    readers.pop(key, None)
        readers[id(cursor)] = weakref.ref(cursor)

    def aurora_session_state(self) -> list[str]:
        """What the current connection holds, e.g. ``["advisory_lock 42", "set search_path"]``
        (``"cursor with unread rows"`` for a client cursor not read to the end); [] when nothing."""
        held = self._aurora_session.describe()
        if self._aurora_reading():
            held.append("cursor with unread rows")
        return held

    def _aurora_reading(self) -> bool:
        """A client cursor has rows unread, or a ``for`` loop over one has not ended."""
        if any(ref() is not None for ref in list(self._aurora_iterating.values())):
            return True
        return any(has_unread_rows(ref()) for ref in list(self._aurora_readers.values()) if ref() is not None)

    def _aurora_holds_state(self, reason: str | None = None) -> bool:
        """True while the connection holds session state; with ``reason`` ("expired", "idle",
        "read_only"), note that the connection is kept for it (announced once per connection
        and reason by :meth:`_aurora_announce_kept`, outside any lock)."""
        # Cheap first: a connection past its max age holding a SET takes this path on every use.
        if not self._aurora_session.held and not (
            (self._aurora_readers or self._aurora_iterating) and self._aurora_reading()
        ):
            return False
        if reason is not None and reason not in self._aurora_kept_for:
            self._aurora_kept_for.add(reason)
            self._aurora_kept_news.append((reason, self.aurora_session_state(), None))
        return True

    def _aurora_announce_kept(self) -> None:
        """Count, log and signal what :meth:`_aurora_holds_state` noted."""
        news = self._aurora_kept_news  # the reaper thread may announce too: pop() is atomic
        while news:
            try:
                reason, held, error = news.pop(0)
            except IndexError:
                break
            counter = "session_state_errors" if error is not None else "session_state_kept"
            stats.incr(self.alias, counter)
            if error is not None:
                logger.info(
                    "%r: the connection held session state (%s): the error is not healed by a re-run",
                    self.alias,
                    ", ".join(held),
                )
            else:
                logger.info(
                    "keeping connection %r past %s: it holds session state (%s)", self.alias, reason, ", ".join(held)
                )
            signals.session_state_kept.send(
                sender=type(self),
                alias=self.alias,
                connection=self,
                reason=reason,
                state=held,
                error=error,
            )

    def _aurora_state_blocks_rerun(self, exc: BaseException) -> bool:
        """A statement failed on a connection that died: True (announced) when it held state."""
        if not self._aurora_holds_state():
            return False
        self._aurora_kept_news.append(("rerun", self.aurora_session_state(), exc))
        self._aurora_announce_kept()
        return True
