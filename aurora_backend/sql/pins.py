"""Which statements make RDS Proxy pin a session (PostgreSQL), from their text.

AWS documents what makes RDS Proxy pin a client session to one database connection
for the rest of its life ("Avoiding pinning an RDS Proxy", the PostgreSQL conditions):
SET commands; PREPARE, DISCARD, DEALLOCATE and EXECUTE; temporary tables, sequences and
views; declaring cursors; discarding session state; LISTEN; loading a library (LOAD);
sequence functions such as nextval and setval; session-level advisory lock functions
(pg_advisory_lock, pg_try_advisory_lock; the ``_xact_`` ones are not listed); set_config.

What a statement does to session state is :mod:`aurora_backend.sql.effects` (the ENGINE's
own list, used to keep connections that hold state); this module maps its effects to
:class:`PinCause` and adds only RDS Proxy's own rules: EXECUTE, LOAD and the sequence
functions the effects do not list. Where AWS is vague, the state's scope decides:
``SET LOCAL``, ``SET TRANSACTION``, ``SET CONSTRAINTS``, ``set_config(..., true)`` and
transaction-level advisory locks end with the transaction and do not pin; ``RESET`` and
``SET ... TO DEFAULT`` do. The protocol-level rules (statement size, named Parse
messages) are the simulator's (``simulator/pinning.py``).
"""

from __future__ import annotations

import re

from aurora_backend.sql.effects import effects
from aurora_backend.sql.kinds import Kind, Op, PinCause
from aurora_backend.sql.lexer import statements

__all__ = ["statement_pins", "session_state_pins", "proxy_only_pins"]

#: Session-state effects that pin, by kind. NOTE effects that end with the transaction
#: (SET LOCAL, SET TRANSACTION, transaction-level advisory locks) are absent; removing
#: state pins only where AWS lists it (RESET, DEALLOCATE, DISCARD, the advisory-lock
#: functions).
_EFFECT_CAUSES: dict[str, PinCause] = {
    Kind.SET: PinCause.SET,
    Kind.SET_ROLE: PinCause.SET_ROLE,
    Kind.SESSION_AUTHORIZATION: PinCause.SESSION_AUTHORIZATION,
    Kind.ADVISORY_LOCK: PinCause.ADVISORY_LOCK,
    Kind.TEMP_TABLE: PinCause.TEMP_TABLE,
    Kind.LISTEN: PinCause.LISTEN,
    Kind.PREPARE: PinCause.PREPARE,
    Kind.CURSOR: PinCause.CURSOR,
    Kind.DISCARD: PinCause.DISCARD,
    Kind.DISCARD_ALL: PinCause.DISCARD,
    Kind.SEQUENCE: PinCause.SEQUENCE,
}
_NOTES_THAT_PIN = frozenset((Kind.TEMP_TABLE, Kind.CURSOR, Kind.DISCARD, Kind.SEQUENCE))
_RELEASES_THAT_PIN = frozenset(
    (Kind.SET, Kind.SET_ROLE, Kind.SESSION_AUTHORIZATION, Kind.ADVISORY_LOCK, Kind.PREPARE, Kind.DISCARD_ALL)
)

#: RDS Proxy's own rules beyond session state: statements that only act on state already
#: there (EXECUTE), loading a library, and the other sequence functions.
_PROXY_ONLY: list[tuple[re.Pattern[str], PinCause]] = [
    (re.compile(r"EXECUTE\b", re.I), PinCause.PREPARE),
    (re.compile(r"LOAD\b", re.I), PinCause.LOAD),
]
_PROXY_ONLY_CALLS = [(re.compile(r"\b(?:currval|lastval)\s*\(", re.I), PinCause.SEQUENCE)]


def session_state_pins(statement: str) -> list[PinCause]:
    """Why one statement pins, from what it does to session state (shared with the ENGINE)."""
    causes = []
    for effect in effects(statement):
        if effect.op == Op.NOTE and effect.name not in _NOTES_THAT_PIN:
            continue
        if effect.op in (Op.RELEASE, Op.RELEASE_ALL) and effect.name not in _RELEASES_THAT_PIN:
            continue
        if effect.name == Kind.SET and effect.op != Op.HOLD:
            causes.append(PinCause.RESET)
        elif effect.name in _EFFECT_CAUSES:
            causes.append(_EFFECT_CAUSES[effect.name])
    return causes


def proxy_only_pins(masked: str) -> list[PinCause]:
    """Why one (masked: ``sql.lexer``) statement pins under the rules that are RDS Proxy's alone."""
    causes = [cause for pattern, cause in _PROXY_ONLY if pattern.match(masked)]
    causes += [cause for pattern, cause in _PROXY_ONLY_CALLS if pattern.search(masked)]
    return causes


def statement_pins(sql: str) -> list[tuple[str, list[PinCause]]]:
    """Each statement of ``sql`` (original text, stripped) with why it pins, without repeats."""
    out = []
    for masked, original in statements(sql):
        causes: list[PinCause] = []
        for cause in session_state_pins(original) + proxy_only_pins(masked):
            if cause not in causes:
                causes.append(cause)
        out.append((original, causes))
    return out
