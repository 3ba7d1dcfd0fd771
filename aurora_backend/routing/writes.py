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
wrapper through :meth:`WriteTracker.aurora_note_write`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aurora_backend.connection.session_state import effects
from aurora_backend.connection.statements import is_read
from aurora_backend.drivers import OPEN, status_of
from aurora_backend.routing import token

# Statements that change no row a reader could read.
_SESSION = re.compile(
    r"\s*(?:SAVEPOINT|RELEASE|ROLLBACK|COMMIT|END|BEGIN|START|SET|RESET|SHOW|DECLARE|FETCH|CLOSE|"
    r"MOVE|DISCARD|LISTEN|UNLISTEN|DEALLOCATE)\b",
    re.I,
)
# SELECT ... FOR UPDATE locks rows and changes none.
_ROW_LOCK = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+)?UPDATE\b", re.I)


_FIRST_WORD = re.compile(r"\s*([A-Za-z]+)")
_READ_FIRST = frozenset(("SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN"))
# Words whose absence proves a read cheaply (a substring test in C); is_read() decides
# the rest. A superset of is_read()'s writing words.
_HINTS = (
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "INTO",
    "TRUNCATE",
    "CREATE",
    "DROP",
    "ALTER",
    "GRANT",
    "REVOKE",
    "COPY",
    "CALL",
    "LOCK",
    "ANALY",
    "VAL",
    "SET_CONFIG",
    "ADVISORY",
    "PG_TERMINATE",
    "PG_CANCEL",
    "PG_NOTIFY",
    "LO_",
    "DBLINK",
    "TXID_CURRENT",
)


_known: dict[str, bool] = {}
_KNOWN_MAX = 2048


def writes(sql: Any) -> bool:
    """True when ``sql`` may have changed data (conservative: unknown means yes).

    Runs after every statement on the writer: the ORM's SQL (parameters apart) repeats, so
    answers are remembered; a new statement is decided by its first word and substring
    tests, and statements.is_read() (a regular expression) only for reads that name a
    writing word.
    """
    if isinstance(sql, bytes):
        sql = sql.decode("utf-8", "replace")
    elif not isinstance(sql, str):
        sql = str(sql)
    known = _known.get(sql)
    if known is None:
        if len(_known) >= _KNOWN_MAX:
            _known.clear()
        known = _known[sql] = _classify(sql)
    return known


def _classify(sql: str) -> bool:
    first = _FIRST_WORD.match(sql)
    if first is None:  # a leading comment, or nothing: the full rule
        return not _SESSION.match(sql) and not is_read(_ROW_LOCK.sub("", sql))
    word = first.group(1).upper()
    if word not in _READ_FIRST:
        return not _SESSION.match(sql)
    upper = sql.upper()
    if "UPDATE" in upper:
        sql = _ROW_LOCK.sub("", sql)
        upper = sql.upper()
    if any(hint in upper for hint in _HINTS) and not is_read(sql):
        return True
    # A call of a function not known to be harmless (a user function may write): a write.
    return "(" in sql and any(effect.name == "unknown" for effect in effects(sql))


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
