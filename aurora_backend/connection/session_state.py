"""Session state a SQL statement sets or clears, known from its text alone.

A PostgreSQL session keeps state between statements: settings (``SET``), the current
role, session advisory locks, temporary tables, ``LISTEN`` channels, prepared
statements and ``WITH HOLD`` cursors. A new connection has none of it, so a connection
carrying it must not be silently replaced. :func:`effects` says what one statement does
to that state; :class:`SessionState` adds the effects up for one connection.

The same list is what makes RDS Proxy pin a session (SET, PREPARE, DECLARE, temp
tables, LISTEN, advisory locks, nextval/setval), so :func:`effects` also reports, as
``NOTE`` effects, statements that hold nothing beyond their transaction but that a proxy
cares about (``SET LOCAL``, transaction-level advisory locks, sequences, cursors without
``WITH HOLD``). Statement size is the caller's business (``len(sql)``).

Cost: :func:`effects` runs on every statement. The answer for a text is kept, so a text
the ORM sent before costs one dict lookup; a new one costs an anchored match of its first
word and a few substring tests; only a statement that may touch session state is parsed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any, cast

from aurora_backend.connection.session_sql import (
    HOLD,
    NOTE,
    RELEASE,
    RELEASE_ALL,
    STATE_KINDS,
    Effect,
    parse,
    resolve,
)

__all__ = [
    "Effect",
    "SessionState",
    "effects",
    "statement_text",
    "HOLD",
    "RELEASE",
    "RELEASE_ALL",
    "NOTE",
    "STATE_KINDS",
]

# ----- the pre-filter -------------------------------------------------------------------

# A statement whose first word may set or clear session state (or that starts with a comment).
_FIRST_WORD = re.compile(
    r"\s*(?:/\*|--|(?:SET|RESET|CREATE|DROP|LISTEN|UNLISTEN|PREPARE|DEALLOCATE|DECLARE|CLOSE|DISCARD"
    r"|DO|CALL|EXECUTE|LOAD|IMPORT)\b)",
    re.I,
)
_INTO_TEMP = re.compile(r"into\s+temp")

# The answers for recent statement texts. An ORM sends the same few texts again and again
# (parameters apart), so most statements cost one dict lookup (hashing the text).
#: ``seen.get(sql)`` is ``effects(sql)`` for a text seen before (the cursor wrapper inlines it).
seen: dict[str, tuple[Effect, ...]] = {}
_KNOWN_MAX = 2048
_KNOWN_LONGEST = 8192  # longer texts (bulk inserts with inlined values) are not kept


def effects(sql: str) -> tuple[Effect, ...]:
    """What ``sql`` (one or more statements) does to session state, in order; () for most SQL."""
    found = seen.get(sql)
    if found is None:
        found = _effects(sql)
        if len(sql) <= _KNOWN_LONGEST:
            if len(seen) >= _KNOWN_MAX:
                seen.clear()
            seen[sql] = found
    return found


def _effects(sql: str) -> tuple[Effect, ...]:
    if _FIRST_WORD.match(sql) is None:
        # Anywhere: function calls (a user function may SET or lock: session_sql's "unknown"),
        # SELECT INTO TEMP, a second statement. Generous on purpose: a false alarm costs one
        # parse, once per text.
        probe = _without_values(sql)
        if "(" not in probe and ";" not in probe:
            low = probe.lower()
            if not ("temp" in low and _INTO_TEMP.search(low)):
                return ()
        if probe is not sql and not parse(probe):
            return ()  # a bulk INSERT: only its head and tail can name a function
    return tuple(parse(sql))


# The VALUES lists of a bulk INSERT the ORM wrote: placeholders only.
_PLACEHOLDERS = re.compile(r"(?:[\s(),]*%s)*[\s(),]*")


def _without_values(sql: str) -> str:
    """``sql`` without the placeholder-only VALUES lists of a long INSERT (a bulk_create of
    thousands of rows is parsed in microseconds, not milliseconds); else ``sql`` itself."""
    if len(sql) < 1024:
        return sql
    at = sql.find(" VALUES (")
    if at < 0:
        return sql
    end = cast(re.Match[str], _PLACEHOLDERS.match(sql, at + 8)).end()  # the pattern matches "" too
    return sql[:at] + " VALUES (%s) " + sql[end:]


def statement_text(sql: Any, connection: Any = None) -> str:
    """``sql`` as text: a str as is, bytes decoded, a psycopg ``sql.Composable`` rendered."""
    if isinstance(sql, str):
        return sql
    if isinstance(sql, (bytes, bytearray, memoryview)):
        return bytes(sql).decode("utf-8", "replace")
    as_string = getattr(sql, "as_string", None)
    if as_string is not None:
        try:
            return str(as_string(connection))
        except Exception:
            pass
    return str(sql)


# ----- the tracker ------------------------------------------------------------------------


class SessionState:
    """The session state one connection holds, from the effects of the statements it ran.

    Start a new one (or :meth:`clear`) for every new connection.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, Counter[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._held)

    @property
    def held(self) -> bool:
        """True while the connection holds any state (the hot-path test: a dict's truth)."""
        return bool(self._held)

    def clear(self) -> None:
        self._held.clear()

    def apply(self, found: Iterable[Effect], params: Any = None) -> None:
        """Add the effects of a statement that succeeded (run with ``params``)."""
        for effect in found:
            if effect.op == NOTE:
                continue
            resolved = resolve(effect, params)
            if resolved is not None:  # None: a set_config(..., %s) whose is_local was true
                self._change(resolved)

    def _change(self, effect: Effect) -> None:
        held, key = self._held, effect.key
        if effect.op == HOLD:
            counts = held.setdefault(effect.name, Counter())
            if effect.name == "advisory_lock":
                counts[key] += 1  # advisory locks stack: each lock needs its unlock
            else:
                counts[key] = 1
        elif effect.op == RELEASE_ALL:
            if effect.name == "discard_all":
                held.clear()
            else:
                held.pop(effect.name, None)
        else:
            pending = held.get(effect.name)
            if pending is not None and key in pending:
                pending[key] -= 1
                if pending[key] <= 0:
                    del pending[key]
                if not pending:
                    del held[effect.name]

    def describe(self) -> list[str]:
        """What is held, e.g. ``["advisory_lock 42", "set search_path"]`` (for logs and signals)."""
        return sorted("%s %s" % (name, key) if key else name for name, counts in self._held.items() for key in counts)

    def kinds(self) -> tuple[str, ...]:
        """The kinds of state held, e.g. ``("advisory_lock", "set")``."""
        return tuple(sorted(self._held))
