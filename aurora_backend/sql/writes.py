"""May a statement have changed data a reader could read (for read-your-writes routing).

Runs after every statement on the writer (``routing/writes.py``): the ORM's SQL
(parameters apart) repeats, so answers are remembered per text (bounded); a new text is
decided by its first word (past comments) and substring tests, and :func:`is_read` only
for reads that name a writing word. Conservative: unknown means yes.
"""

from __future__ import annotations

import re
from typing import Any

from aurora_backend.sql.effects import effects
from aurora_backend.sql.kinds import Kind
from aurora_backend.sql.lexer import KEYWORD, lex
from aurora_backend.sql.reads import READ_FIRST_WORDS, is_read, text_of

__all__ = ["writes", "SESSION_FIRST_WORDS"]

#: First words of statements that change no row a reader could read.
SESSION_FIRST_WORDS = frozenset(
    (
        "SAVEPOINT",
        "RELEASE",
        "ROLLBACK",
        "COMMIT",
        "END",
        "BEGIN",
        "START",
        "SET",
        "RESET",
        "SHOW",
        "DECLARE",
        "FETCH",
        "CLOSE",
        "MOVE",
        "DISCARD",
        "LISTEN",
        "UNLISTEN",
        "DEALLOCATE",
    )
)
_READ_FIRST = frozenset(READ_FIRST_WORDS)
# SELECT ... FOR UPDATE locks rows and changes none.
_ROW_LOCK = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+)?UPDATE\b", re.I)
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
    """True when ``sql`` may have changed data (conservative: unknown means yes)."""
    if sql.__class__ is not str:
        sql = text_of(sql)
    known = _known.get(sql)
    if known is None:
        if len(_known) >= _KNOWN_MAX:
            _known.clear()
        known = _known[sql] = _classify(sql)
    return known


def _classify(sql: str) -> bool:
    lexed = lex(sql)
    first = KEYWORD.match(lexed.masked)
    if first is None:  # nothing, or "(SELECT ...": the full rule
        return not is_read(_unlocked(sql))
    word = first.group(1).upper()
    if word not in _READ_FIRST:
        return word not in SESSION_FIRST_WORDS
    upper = lexed.masked.upper()
    if "UPDATE" in upper:
        sql = _unlocked(sql)
        upper = lex(sql).masked.upper()
    if any(hint in upper for hint in _HINTS) and not is_read(sql):
        return True
    # A call of a function not known to be harmless (a user function may write): a write.
    return "(" in upper and any(effect.name == Kind.UNKNOWN for effect in effects(sql))


def _unlocked(sql: str) -> str:
    """``sql`` without its row-locking clauses (FOR UPDATE, FOR NO KEY UPDATE), outside
    comments and literals."""
    masked = lex(sql).masked
    pieces, kept = [], 0
    for m in _ROW_LOCK.finditer(masked):
        pieces.append(sql[kept : m.start()])
        kept = m.end()
    if not pieces:
        return sql
    pieces.append(sql[kept:])
    return "".join(pieces)
