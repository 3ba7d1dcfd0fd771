"""Is a statement a read: safe to re-run after a disconnect, because it changed nothing.

A read starts with SELECT, WITH, VALUES, TABLE, SHOW or EXPLAIN (not EXPLAIN ANALYZE),
names none of the words that make such a statement write (INSERT, UPDATE, DELETE, MERGE,
INTO, nextval, setval, advisory locks, ...) outside comments and literals, and calls no
function outside the known built-ins (``sql.calls``: a user function may write, SET or
lock). What cannot be ruled out is not a read: the fail-safe side.
"""

from __future__ import annotations

import re
from typing import Any

from aurora_backend.sql.effects import effects
from aurora_backend.sql.kinds import Kind
from aurora_backend.sql.lexer import lex

__all__ = ["is_read", "text_of", "READ_FIRST_WORDS"]

#: The first words of a statement that may be a read.
READ_FIRST_WORDS = ("SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN")
_READ_START = re.compile(r"\s*(?:%s)\b" % "|".join(READ_FIRST_WORDS), re.I)
_WRITE_WORDS = re.compile(
    r"\b(?:INSERT|UPDATE|DELETE|MERGE|INTO|TRUNCATE|CREATE|DROP|ALTER|GRANT|REVOKE|COPY|CALL|"
    r"LOCK|ANALYZE|ANALYSE|NEXTVAL|SETVAL|SET_CONFIG|PG_ADVISORY_\w+|PG_TRY_ADVISORY_\w+|"
    r"PG_TERMINATE_BACKEND|PG_CANCEL_BACKEND|PG_NOTIFY|LO_\w+|DBLINK\w*|TXID_CURRENT)\b",
    re.I,
)


def text_of(sql: Any) -> str:
    """``sql`` as text: bytes decoded, anything else through str()."""
    if isinstance(sql, str):
        return sql
    if isinstance(sql, bytes):
        return sql.decode("utf-8", "replace")
    return str(sql)


def is_read(sql: Any) -> bool:
    """True when ``sql`` cannot have changed anything (see the module docstring)."""
    sql = text_of(sql)
    masked = lex(sql).masked
    if not _READ_START.match(masked) or _WRITE_WORDS.search(masked):
        return False
    return "(" not in masked or not any(effect.name == Kind.UNKNOWN for effect in effects(sql))
