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
cursor wrapper). docs/session_state.md.
"""

from __future__ import annotations

import logging
from typing import Any

from aurora_backend import signals, stats
from aurora_backend.connection.state import READERS_PRUNE_AT, ConnectionState, has_unread_rows

__all__ = ["SessionMixin", "READERS_PRUNE_AT", "has_unread_rows"]

logger = logging.getLogger("aurora_backend")


class SessionMixin:
    """Session state held by the current connection (see the module docstring); the state
    itself is ``self.aurora`` (``state.py``), reset for each new connection."""

    alias: str
    connection: Any
    aurora: ConnectionState

    def aurora_session_state(self) -> list[str]:
        """What the current connection holds, e.g. ``["advisory_lock 42", "set search_path"]``
        (``"cursor with unread rows"`` for a client cursor not read to the end); [] when nothing."""
        return self.aurora.describe_held()

    def _aurora_announce_kept(self) -> None:
        """Count, log and signal what ``self.aurora.holds_state()`` noted."""
        news = self.aurora.kept_news  # the reaper thread may announce too: pop() is atomic
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
        state = self.aurora
        if not state.holds_state():
            return False
        state.kept_news.append(("rerun", state.describe_held(), exc))
        self._aurora_announce_kept()
        return True
