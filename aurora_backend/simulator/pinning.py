"""RDS Proxy's pinning rules for PostgreSQL, applied to what a client sends.

AWS documents what makes RDS Proxy pin a client session to one database connection
for the rest of its life ("Avoiding pinning an RDS Proxy", the PostgreSQL conditions):
SET commands; PREPARE, DISCARD, DEALLOCATE and EXECUTE; temporary tables, sequences and
views; declaring cursors; discarding session state; LISTEN; loading a library (LOAD);
sequence functions such as nextval and setval; session-level advisory lock functions
(pg_advisory_lock, pg_try_advisory_lock; the ``_xact_`` ones are not listed); set_config;
and, for every engine, any statement whose text is over 16 KB.

The simulator reads these from the client stream: simple Query ('Q') texts and the
extended protocol's Parse ('P') messages, whose non-empty statement name is itself a
server-side prepared statement. Where AWS is vague this module chooses the state's
scope: ``SET LOCAL``, ``SET TRANSACTION``, ``SET CONSTRAINTS`` and ``set_config(..., true)``
end with the transaction and do not pin; ``SET SESSION CHARACTERISTICS`` and ``RESET`` do.
"""

from __future__ import annotations

import re
from typing import Iterator, List, NamedTuple, Optional, Tuple

#: "Any statement with a text size greater than 16 KB causes the proxy to pin the session."
MAX_STATEMENT_BYTES = 16 * 1024
#: Characters of a statement kept in a pin report.
DETAIL_CHARS = 200


class Pin(NamedTuple):
    """Why a session pins: a short ``reason`` and what showed it (statement text or message kind)."""

    reason: str
    detail: str


_MASK = re.compile(
    r"""--[^\n]*|/\*.*?\*/|(?:[eE])?'(?:[^']|'')*'|"(?:[^"]|"")*"|(\$[A-Za-z_0-9]*\$).*?\1""",
    re.DOTALL,
)


def _masked(sql: str) -> str:
    """``sql`` with comments and the insides of literals and quoted names blanked, same length."""
    def blank(match: "re.Match[str]") -> str:
        text = match.group(0)
        if text[:2] in ("--", "/*"):
            return " " * len(text)
        return text[0] + " " * (len(text) - 2) + text[-1]
    return _MASK.sub(blank, sql)


def statements(sql: str) -> List[Tuple[str, str]]:
    """(masked, original) text of each statement of a query, split on top-level semicolons."""
    masked, out, start = _masked(sql), [], 0
    for end in [i for i, ch in enumerate(masked) if ch == ";"] + [len(masked)]:
        if masked[start:end].strip():
            out.append((masked[start:end].strip(), sql[start:end].strip()))
        start = end + 1
    return out


_KEYWORD_RULES = [
    (re.compile(r"SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS?\b)", re.I), "SET statement"),
    (re.compile(r"RESET\b", re.I), "RESET statement"),
    (re.compile(r"(PREPARE|EXECUTE|DEALLOCATE)\b", re.I), "prepared statement (SQL)"),
    (re.compile(r"DISCARD\b", re.I), "DISCARD (session state)"),
    (re.compile(r"DECLARE\b", re.I), "cursor declared (DECLARE)"),
    (re.compile(r"LISTEN\b", re.I), "LISTEN"),
    (re.compile(r"LOAD\b", re.I), "LOAD (library)"),
    (re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:GLOBAL|LOCAL)\s+)?(?:TEMP|TEMPORARY)\b", re.I),
     "temporary table, sequence or view"),
]
_INTO_TEMP = re.compile(r"\bINTO\s+(?:TEMP|TEMPORARY)\b", re.I)
_CALLS = [
    (re.compile(r"\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(", re.I), "session-level advisory lock"),
    (re.compile(r"\b(?:nextval|setval|currval|lastval)\s*\(", re.I), "sequence function"),
]
_SET_CONFIG = re.compile(r"\bset_config\s*\(([^()]*)\)", re.I)


def _set_config_pins(statement: str) -> bool:
    """set_config(name, value, is_local) pins unless is_local is literally true."""
    for match in _SET_CONFIG.finditer(statement):
        args = match.group(1).split(",")
        if len(args) < 3 or args[2].strip().lower() != "true":
            return True
    return False


def session_state_pins(statement: str) -> Optional[str]:
    """The reason one masked statement leaves session state behind, or None."""
    for pattern, reason in _KEYWORD_RULES:
        if pattern.match(statement):
            return reason
    if _INTO_TEMP.search(statement):
        return "temporary table, sequence or view"
    if _set_config_pins(statement):
        return "set_config (session parameter)"
    for pattern, reason in _CALLS:
        if pattern.search(statement):
            return reason
    return None


def _detail(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS - 3] + "..."


def query_pins(sql: str, size: Optional[int] = None) -> Iterator[Pin]:
    """Every pin one query text (simple or Parse) causes: its size, then each statement."""
    if (size if size is not None else len(sql.encode("utf-8"))) > MAX_STATEMENT_BYTES:
        yield Pin("statement over 16 KB", _detail(sql))
    for masked, original in statements(sql):
        reason = session_state_pins(masked)
        if reason is not None:
            yield Pin(reason, _detail(original))


def message_pins(kind: bytes, body: bytes) -> Iterator[Pin]:
    """Pins of one client protocol message (type byte and body, without the length)."""
    if kind == b"Q":
        text = body.rstrip(b"\0")
        yield from query_pins(text.decode("utf-8", "replace"), len(text))
    elif kind == b"P":
        name, _, rest = body.partition(b"\0")
        text = rest.partition(b"\0")[0]
        if name:
            yield Pin("named prepared statement (Parse)",
                      "Parse %r: %s" % (name.decode("utf-8", "replace"), _detail(text.decode("utf-8", "replace"))))
        yield from query_pins(text.decode("utf-8", "replace"), len(text))
