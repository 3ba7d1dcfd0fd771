"""Notice the writes this context commits on the writer alias: ORM or raw SQL alike.

An execute wrapper (Django's ``connection.execute_wrappers``) on each of the writer's
connections looks at every statement after it ran. A write in autocommit is committed
when it returns; inside ``atomic()`` the context is marked by an ``on_commit`` callback,
so a rolled-back transaction marks nothing. A raw ``BEGIN ... COMMIT`` is marked at its
first write: the position is read only once the connection is idle again, after COMMIT.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict

from django.db import transaction

from aurora_backend.connection.statements import is_read
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
_HINTS = ("INSERT", "UPDATE", "DELETE", "MERGE", "INTO", "TRUNCATE", "CREATE", "DROP", "ALTER",
          "GRANT", "REVOKE", "COPY", "CALL", "LOCK", "ANALY", "VAL", "SET_CONFIG", "ADVISORY",
          "PG_TERMINATE", "PG_CANCEL", "PG_NOTIFY", "LO_", "DBLINK", "TXID_CURRENT")


_known: Dict[str, bool] = {}
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
    if not any(hint in upper for hint in _HINTS):
        return False
    return not is_read(sql)


class WriteTracker:
    """The execute wrapper of one writer alias (one instance per router)."""

    def __init__(self, writer: str, clock: Callable[[], float]) -> None:
        self.writer = writer
        self.clock = clock
        self._on_commit = self._committed  # one bound method: on_commit entries are compared to it

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

    def _wrote(self, connection: Any) -> None:
        if not connection.in_atomic_block:
            token.mark_written(self.writer, self.clock())
        elif not any(entry[1] is self._on_commit for entry in connection.run_on_commit):
            transaction.on_commit(self._on_commit, using=connection.alias)

    def _committed(self) -> None:
        token.mark_written(self.writer, self.clock())
