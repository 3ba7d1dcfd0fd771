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
server-side prepared statement. What a statement does to session state is not written
here: :mod:`aurora_backend.connection.session_state` (the ENGINE's own list, used to keep
connections that hold state) says it, and this module maps its effects to pins. Only
RDS Proxy's own rules live here: the 16 KB size, named Parse messages, EXECUTE, LOAD and
the sequence functions session_state does not list. Where AWS is vague, the state's
scope decides: ``SET LOCAL``, ``SET TRANSACTION``, ``SET CONSTRAINTS``,
``set_config(..., true)`` and transaction-level advisory locks end with the transaction
and do not pin; ``RESET`` and ``SET ... TO DEFAULT`` do.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

from aurora_backend.connection.session_state import HOLD, NOTE, RELEASE, RELEASE_ALL, effects
from aurora_backend.proxy.mode import PROXY_MAX_STATEMENT_BYTES

#: "Any statement with a text size greater than 16 KB causes the proxy to pin the session."
MAX_STATEMENT_BYTES = PROXY_MAX_STATEMENT_BYTES
#: Characters of a statement kept in a pin report.
DETAIL_CHARS = 200


class Pin(NamedTuple):
    """Why a session pins: a short ``reason`` and what showed it (statement text or message kind)."""

    reason: str
    detail: str


_MASK = re.compile(
    r"""--[^\n]*|/\*.*?\*/|(?<!\w)[eE]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|"(?:[^"]|"")*"|(\$\w*\$).*?\1""",
    re.DOTALL,
)


def _masked(sql: str) -> str:
    """``sql`` with comments and the insides of literals and quoted names blanked, same length."""

    def blank(match: re.Match[str]) -> str:
        text = match.group(0)
        if text[:2] in ("--", "/*"):
            return " " * len(text)
        return text[0] + " " * (len(text) - 2) + text[-1]

    return _MASK.sub(blank, sql)


def statements(sql: str) -> list[tuple[str, str]]:
    """(masked, original) text of each statement of a query, split on top-level semicolons."""
    masked, out, start = _masked(sql), [], 0
    for end in [i for i, ch in enumerate(masked) if ch == ";"] + [len(masked)]:
        if masked[start:end].strip():
            out.append((masked[start:end].strip(), sql[start:end].strip()))
        start = end + 1
    return out


#: Session-state effects (aurora_backend.connection.session_state) that pin, by effect name.
#: NOTE effects that end with the transaction (SET LOCAL, SET TRANSACTION, transaction-level
#: advisory locks) are absent; removing state pins only where AWS lists it (RESET, DEALLOCATE,
#: DISCARD, the advisory-lock functions).
_EFFECT_REASONS = {
    "set": "SET / set_config (session setting)",
    "set_role": "SET ROLE",
    "session_authorization": "SET SESSION AUTHORIZATION",
    "advisory_lock": "session-level advisory lock",
    "temp_table": "temporary table, sequence or view",
    "listen": "LISTEN",
    "prepare": "prepared statement (SQL)",
    "cursor": "cursor declared (DECLARE)",
    "discard": "DISCARD (session state)",
    "discard_all": "DISCARD (session state)",
    "sequence": "sequence function",
}
_PIN_RELEASES = {"set", "set_role", "session_authorization", "advisory_lock", "prepare", "discard_all"}
_RESET_REASON = "RESET / SET ... TO DEFAULT (session setting)"

#: RDS Proxy's own rules beyond session state: statements that only act on state already
#: there (EXECUTE), loading a library, and the other sequence functions.
_PROXY_ONLY = [
    (re.compile(r"EXECUTE\b", re.I), "prepared statement (SQL)"),
    (re.compile(r"LOAD\b", re.I), "LOAD (library)"),
]
_PROXY_ONLY_CALLS = [(re.compile(r"\b(?:currval|lastval)\s*\(", re.I), "sequence function")]


def session_state_pins(statement: str) -> list[str]:
    """Why one statement pins, from what it does to session state (shared with the ENGINE)."""
    reasons = []
    for effect in effects(statement):
        if effect.op == NOTE and effect.name not in ("temp_table", "cursor", "discard", "sequence"):
            continue
        if effect.op in (RELEASE, RELEASE_ALL) and effect.name not in _PIN_RELEASES:
            continue
        if effect.name == "set" and effect.op != HOLD:
            reasons.append(_RESET_REASON)
        elif effect.name in _EFFECT_REASONS:
            reasons.append(_EFFECT_REASONS[effect.name])
    return reasons


def proxy_only_pins(masked: str) -> list[str]:
    """Why one (masked) statement pins under the rules that are RDS Proxy's alone."""
    reasons = [reason for pattern, reason in _PROXY_ONLY if pattern.match(masked)]
    reasons += [reason for pattern, reason in _PROXY_ONLY_CALLS if pattern.search(masked)]
    return reasons


def _detail(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def query_pins(sql: str, size: int | None = None) -> Iterator[Pin]:
    """Every pin one query text (simple or Parse) causes: its size, then each statement."""
    if (size if size is not None else len(sql.encode("utf-8"))) > MAX_STATEMENT_BYTES:
        yield Pin("statement over 16 KB", _detail(sql))
    for masked, original in statements(sql):
        seen = set()
        for reason in session_state_pins(original) + proxy_only_pins(masked):
            if reason not in seen:
                seen.add(reason)
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
            yield Pin(
                "named prepared statement (Parse)",
                "Parse %r: %s" % (name.decode("utf-8", "replace"), _detail(text.decode("utf-8", "replace"))),
            )
        yield from query_pins(text.decode("utf-8", "replace"), len(text))
