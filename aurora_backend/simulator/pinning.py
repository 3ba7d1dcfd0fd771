"""RDS Proxy's pinning rules for PostgreSQL, applied to what a client sends.

AWS documents what makes RDS Proxy pin a client session to one database connection for
the rest of its life ("Avoiding pinning an RDS Proxy", the PostgreSQL conditions). The
rules about statement text (SET, PREPARE, temp tables, LISTEN, advisory locks, sequence
functions, ...) are :mod:`aurora_backend.sql.pins` (on the same lexer and session-state
effects the ENGINE uses). This module adds the protocol's: any statement whose text is
over 16 KB (every engine), and the extended protocol's Parse ('P') messages, whose
non-empty statement name is itself a server-side prepared statement. The simulator
reads simple Query ('Q') texts and Parse messages from the client stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from aurora_backend.proxy.mode import PROXY_MAX_STATEMENT_BYTES
from aurora_backend.sql.kinds import PinCause
from aurora_backend.sql.pins import statement_pins

__all__ = ["Pin", "query_pins", "message_pins", "MAX_STATEMENT_BYTES"]

#: "Any statement with a text size greater than 16 KB causes the proxy to pin the session."
MAX_STATEMENT_BYTES = PROXY_MAX_STATEMENT_BYTES
#: Characters of a statement kept in a pin report.
DETAIL_CHARS = 200


class Pin(NamedTuple):
    """Why a session pins: a ``reason`` (a ``PinCause``, equal to its text) and what showed
    it (statement text or message kind)."""

    reason: str
    detail: str


def _detail(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def query_pins(sql: str, size: int | None = None) -> Iterator[Pin]:
    """Every pin one query text (simple or Parse) causes: its size, then each statement."""
    if (size if size is not None else len(sql.encode("utf-8"))) > MAX_STATEMENT_BYTES:
        yield Pin(PinCause.SIZE, _detail(sql))
    for original, causes in statement_pins(sql):
        for cause in causes:
            yield Pin(cause, _detail(original))


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
                PinCause.NAMED_PARSE,
                "Parse %r: %s" % (name.decode("utf-8", "replace"), _detail(text.decode("utf-8", "replace"))),
            )
        yield from query_pins(text.decode("utf-8", "replace"), len(text))
