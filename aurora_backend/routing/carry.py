"""Carry a context's writes to another request or process: capture, dump, load.

:func:`dump_token` reads the writer's WAL position if this context wrote since it was
last read (one round trip), and returns text for a cookie or a task header;
:func:`load_token` makes that the current context's state, so its reads avoid readers
that have not replayed the write yet.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from django.db import connections

from aurora_backend.errors import ErrorKind, classify
from aurora_backend.exceptions import PositionUnavailable
from aurora_backend.routing import token
from aurora_backend.routing.position import capture_writer
from aurora_backend.routing.writes import in_transaction

logger = logging.getLogger("aurora_backend")

#: Writer aliases where pg_current_wal_insert_lsn() fails for good (not PostgreSQL-like).
_unsupported: set[str] = set()


def capture(current: token.Token, now: float) -> token.Token:
    """``current`` with the writer's position read now, made this context's token.

    Unchanged (still dirty) when it cannot be read, e.g. inside a transaction: the
    window then decides, and the next read tries again.
    """
    writer = connections[current.writer]
    if in_transaction(writer):  # the write may not be committed: no position means anything yet
        return current
    if current.writer in _unsupported:  # known to have no position: the time decides
        lsn = None
    else:
        try:
            writer.ensure_connection()
            lsn = capture_writer(writer.connection)
        except PositionUnavailable as exc:
            if exc.cause is not None and classify(exc.cause) is ErrorKind.NEVER_RETRY:
                logger.warning("writer %r has no WAL position (%s): read-your-writes uses time", current.writer, exc)
                _unsupported.add(current.writer)
            return current
        except Exception as exc:
            logger.debug("reading the position of writer %r failed: %s", current.writer, exc)
            return current
    # With a position, the time it was read (later than the commit: on the safe side);
    # without, the time the write was seen to commit (a pending one: now, its transaction over).
    at = now if lsn is not None or current.pending else current.at
    captured = dataclasses.replace(current, at=at, lsn=lsn, dirty=False, pending=False)
    token.set_token(captured)
    return captured


def dump_token(clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> str | None:
    """This context's writes as text (None: it wrote nothing)."""
    current = token.current()
    if current is None:
        return None
    if current.dirty:
        current = capture(current, clock())
    return token.dumps(current, clock(), wall)


def load_token(
    text: str | None, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
) -> bool:
    """Make ``text`` (from :func:`dump_token`) this context's writes; False if it is malformed.

    A token of this context that is newer is kept.
    """
    loaded = token.loads(text, clock(), wall) if text else None
    if loaded is None:
        return False
    current = token.current()
    if current is None or current.writer != loaded.writer or current.at < loaded.at:
        token.set_token(loaded)
    return True
