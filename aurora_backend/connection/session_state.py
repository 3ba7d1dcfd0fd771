"""The session state one connection holds: :class:`SessionState`, from statement effects.

A PostgreSQL session keeps state between statements: settings (``SET``), the current
role, session advisory locks, temporary tables, ``LISTEN`` channels, prepared
statements and ``WITH HOLD`` cursors. A new connection has none of it, so a connection
carrying it must not be silently replaced. What one statement does to that state is
:func:`effects` (:mod:`aurora_backend.sql.effects`, on the one SQL lexer, cached per
text in ``seen``); :class:`SessionState` adds the effects up for one connection.

``effects``, ``Effect``, ``HOLD``/``RELEASE``/``RELEASE_ALL``/``NOTE`` and
``STATE_KINDS`` are importable from here (docs/session_state.md) as from
``aurora_backend.sql``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from aurora_backend.sql.effects import (
    HOLD,
    NOTE,
    RELEASE,
    RELEASE_ALL,
    STATE_KINDS,
    Effect,
    effects,
    resolve,
)
from aurora_backend.sql.effects import seen as seen  # the cache statements.py's hot path reads
from aurora_backend.sql.kinds import Kind

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
            if effect.name == Kind.ADVISORY_LOCK:
                counts[key] += 1  # advisory locks stack: each lock needs its unlock
            else:
                counts[key] = 1
        elif effect.op == RELEASE_ALL:
            if effect.name == Kind.DISCARD_ALL:
                held.clear()
            else:
                held.pop(effect.name, None)
        else:
            current = held.get(effect.name)
            if current is not None and key in current:
                current[key] -= 1
                if current[key] <= 0:
                    del current[key]
                if not current:
                    del held[effect.name]

    def describe(self) -> list[str]:
        """What is held, e.g. ``["advisory_lock 42", "set search_path"]`` (for logs and signals)."""
        return sorted("%s %s" % (name, key) if key else name for name, counts in self._held.items() for key in counts)

    def kinds(self) -> tuple[str, ...]:
        """The kinds of state held, e.g. ``("advisory_lock", "set")``."""
        return tuple(sorted(self._held))
