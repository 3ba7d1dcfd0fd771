"""Read-your-writes state of the current request, task or thread, in a ContextVar.

A :class:`Token` says "this context wrote to the writer": when (monotonic clock) and,
once captured, the writer's WAL position after the write. Each thread starts with no
token; asyncio tasks copy their creator's; asgiref copies changes made in
``sync_to_async`` back. Tokens are immutable: a new one is set on each change, so a
copied context never sees a later write of another.

Serialized (cookie, task header) as ``"<writer alias>:<lsn hex or ->:<unix time>"``: the
wall clock crosses processes, the monotonic clock does not.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class Token:
    """A write of this context: ``at`` (monotonic s), the writer's WAL position after it."""

    writer: str
    at: float
    #: pg_current_wal_lsn() read after the write committed; None: not read (yet, or unknown).
    lsn: int | None = None
    #: A write happened after ``lsn`` was read (or none was read): capture before comparing.
    dirty: bool = True
    #: The write was made inside an open transaction: when (or whether) it commits is not
    #: known yet. Reads stay on the writer while the transaction is open; once it has ended,
    #: the write is taken as committed at the time this is noticed (on the safe side).
    pending: bool = False


_current: contextvars.ContextVar[Token | None] = contextvars.ContextVar("aurora_ryw", default=None)


def current() -> Token | None:
    return _current.get()


def set_token(token: Token | None) -> None:
    _current.set(token)


def clear() -> None:
    """Forget this context's writes (a new request, a new task)."""
    if _current.get() is not None:
        _current.set(None)


def mark_written(writer: str, now: float, pending: bool = False) -> None:
    """This context wrote on ``writer`` at ``now`` (committed, or ``pending`` in an open
    transaction): its WAL position is unknown."""
    _current.set(Token(writer, now, pending=pending))


def settled(current: Token, now: float) -> Token:
    """``current`` with a pending write taken as committed at ``now`` (its transaction has
    ended: committed then at the latest, or rolled back), made this context's token."""
    resolved = Token(current.writer, now)
    _current.set(resolved)
    return resolved


def parse_lsn(text: str | None) -> int | None:
    """``'16/B374D848'`` -> an integer ordered as WAL positions are; None stays None."""
    if not text:
        return None
    high, _, low = str(text).partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def dumps(token: Token, now: float, wall: Clock = time.time) -> str:
    """Text form for a cookie or a task header (a captured token: no longer dirty)."""
    written = wall() - (0.0 if token.pending else max(0.0, now - token.at))
    return "%s:%s:%.3f" % (token.writer, "-" if token.lsn is None else format_lsn(token.lsn), written)


def loads(text: str, now: float, wall: Clock = time.time) -> Token | None:
    """The token of :func:`dumps`, placed on this process's monotonic clock; None if malformed."""
    try:
        writer, lsn_text, written = str(text).rsplit(":", 2)
        lsn = None if lsn_text == "-" else parse_lsn(lsn_text)
        age = max(0.0, wall() - float(written))
    except (TypeError, ValueError):
        return None
    if not writer:
        return None
    return Token(writer, now - age, lsn, dirty=False)
