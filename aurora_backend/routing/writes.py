"""Notice the writes this context commits on the writer alias: ORM or raw SQL alike.

An execute wrapper (Django's ``connection.execute_wrappers``) on each of the writer's
connections looks at every statement after it ran, and marks the context at the write
itself, before anything else runs (an app's ``on_commit`` callback included). A write in
autocommit is committed when it returns. A write inside a transaction of any kind
(``atomic()``, ``set_autocommit(False)``, a raw ``BEGIN``, the driver's own) is marked
*pending*: its commit time is unknown, so the router keeps reads on the writer while the
transaction is open and takes the write as committed when it first sees it ended
(a rolled-back write too: the safe side). COPY through Django's cursor (psycopg2
``copy_expert``/``copy_from``, psycopg 3 ``cursor.copy()``) is reported by the cursor
wrapper through :meth:`WriteTracker.aurora_note_write`. Whether a statement wrote is
:func:`aurora_backend.sql.writes.writes` (the one SQL lexer; answers cached per text).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aurora_backend.drivers import OPEN, status_of
from aurora_backend.routing import token
from aurora_backend.sql.writes import writes

__all__ = ["WriteTracker", "in_transaction", "writes"]


class WriteTracker:
    """The execute wrapper of one writer alias (one instance per router)."""

    def __init__(self, writer: str, clock: Callable[[], float]) -> None:
        self.writer = writer
        self.clock = clock

    def __call__(self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any) -> Any:
        try:
            return execute(sql, params, many, context)
        finally:
            if writes(sql):
                self._wrote(context["connection"])

    def install(self, connection: Any) -> None:
        """Put the wrapper first on ``connection`` (so Django's execute_wrapper() pops stay
        right), replacing a previous router's (settings changed, tests)."""
        wrappers = connection.execute_wrappers
        if connection.alias != self.writer or (wrappers and wrappers[0] is self):
            return
        wrappers[:] = [w for w in wrappers if not isinstance(w, WriteTracker)]
        wrappers.insert(0, self)

    def uninstall(self, connection: Any) -> None:
        if self in connection.execute_wrappers:
            connection.execute_wrappers.remove(self)

    def aurora_note_write(self, connection: Any) -> None:
        """A write that does not pass through execute() (COPY): the cursor wrapper says so."""
        if connection.alias == self.writer:
            self._wrote(connection)

    def _wrote(self, connection: Any) -> None:
        pending = in_transaction(connection)
        current = token.current()
        if pending and current is not None and current.pending and current.writer == self.writer:
            return  # already marked in this transaction
        token.mark_written(self.writer, self.clock(), pending)


def in_transaction(connection: Any) -> bool:
    """A transaction of any kind is open on ``connection`` (a Django wrapper): ``atomic()``,
    ``set_autocommit(False)``, a raw ``BEGIN``, one the driver opened, or a command (COPY)
    still running."""
    raw = connection.connection
    if raw is None:
        return False
    return connection.in_atomic_block or not connection.autocommit or status_of(raw) in OPEN
