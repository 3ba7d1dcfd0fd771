"""PostgreSQL wire protocol pieces the simulator needs: framing and the messages it injects.

Only what a proxy must understand: the untyped startup packets a client sends first
(StartupMessage, SSLRequest, GSSENCRequest, CancelRequest), the typed framing of
both streams afterwards (one type byte, a 4-byte big-endian length that counts
itself), and byte-exact ErrorResponse / ReadyForQuery messages. The texts are
Aurora's, as listed with their sources in docs/aurora_facts.md.
"""

from __future__ import annotations

import re
import struct

PROTOCOL_3_0 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

#: Largest startup packet PostgreSQL accepts (MAX_STARTUP_PACKET_LENGTH).
MAX_STARTUP_PACKET = 10000

SCALE_EVENT = ("57P01", "terminating connection due to serverless scale event timeout")
# Aurora's SQLSTATE for this one is UNCONFIRMED: the message is what clients match on.
SCALE_POINT = (
    "57P01",
    "terminating connection because backend initialization completed past serverless scale point",
)
ADMIN_SHUTDOWN = ("57P01", "terminating connection due to administrator command")
STARTING_UP = ("57P03", "the database system is starting up")
READ_ONLY = ("25006", "cannot execute %s in a read-only transaction")

_LENGTH = struct.Struct("!I")
_unpack_length = _LENGTH.unpack_from


def error_response(code: str, message: str, severity: str = "FATAL") -> bytes:
    """Build an ErrorResponse exactly as PostgreSQL sends it: fields S, V, C, M, then a zero."""
    body = (
        b"".join(
            tag + value.encode("utf-8") + b"\0"
            for tag, value in ((b"S", severity), (b"V", severity), (b"C", code), (b"M", message))
        )
        + b"\0"
    )
    return b"E" + _LENGTH.pack(len(body) + 4) + body


def fatal(pair: tuple[str, str]) -> bytes:
    """ErrorResponse FATAL for one of the (SQLSTATE, message) pairs above."""
    return error_response(pair[0], pair[1], "FATAL")


def startup_code(packet: bytes) -> int:
    """The request code (or protocol version) of an untyped startup packet body."""
    return _unpack_length(packet, 0)[0] if len(packet) >= 4 else 0


def startup_parameters(packet: bytes) -> dict[str, str]:
    """The name/value pairs of a StartupMessage body (after the protocol version)."""
    parts = packet[4:].split(b"\0")
    return {
        parts[i].decode("utf-8", "replace"): parts[i + 1].decode("utf-8", "replace")
        for i in range(0, len(parts) - 1, 2)
        if parts[i]
    }


def build_startup(params: dict[str, str]) -> bytes:
    """A complete StartupMessage (protocol 3.0) with ``params``; used by raw test clients."""
    body = (
        _LENGTH.pack(PROTOCOL_3_0)
        + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items())
        + b"\0"
    )
    return _LENGTH.pack(len(body) + 4) + body


def build_request(code: int, payload: bytes = b"") -> bytes:
    """An untyped request packet (SSLRequest, GSSENCRequest, CancelRequest)."""
    return _LENGTH.pack(8 + len(payload)) + _LENGTH.pack(code) + payload


def parse_messages(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a byte string of complete typed messages into (type, body); raises if one is cut."""
    out, pos = [], 0
    while pos < len(data):
        if pos + 5 > len(data):
            raise ValueError("truncated message header at offset %d" % pos)
        length = _unpack_length(data, pos + 1)[0]
        end = pos + 1 + length
        if end > len(data):
            raise ValueError("truncated %r message at offset %d" % (data[pos : pos + 1], pos))
        out.append((data[pos : pos + 1], bytes(data[pos + 5 : end])))
        pos = end
    return out


class Framer:
    """Tracks message boundaries of a typed stream by lengths only, without copying bodies.

    ``feed`` is called with every chunk forwarded; ``at_boundary`` says whether the bytes
    forwarded so far end exactly after a whole message, and ``first_boundary`` where the
    next boundary falls inside a chunk, so a fault is injected between messages only.
    It also remembers the BackendKeyData ('K') it sees, to cancel a killed backend's query.
    """

    __slots__ = ("_skip", "_hdr", "backend_key")

    def __init__(self) -> None:
        self._skip = 0  # bytes of the current message still to come
        self._hdr = b""  # a header cut by a chunk boundary (1-4 bytes)
        self.backend_key: bytes | None = None

    @property
    def at_boundary(self) -> bool:
        return self._skip == 0 and not self._hdr

    def feed(self, data: bytes) -> None:
        n = len(data)
        pos = self._skip
        if self._hdr:
            k = len(self._hdr)
            hdr = self._hdr + bytes(data[: 5 - k])
            if len(hdr) < 5:
                self._hdr = hdr
                return
            self._hdr = b""
            pos = 1 + _unpack_length(hdr, 1)[0] - k
        elif pos >= n:
            self._skip = pos - n
            return
        while pos + 5 <= n:
            if data[pos] == 75 and pos + 13 <= n:  # 'K' BackendKeyData: pid + secret
                self.backend_key = bytes(data[pos + 5 : pos + 13])
            pos += 1 + _unpack_length(data, pos + 1)[0]
        if pos >= n:
            self._skip = pos - n
        else:
            self._hdr = bytes(data[pos:])
            self._skip = 0

    def first_boundary(self, data: bytes) -> int:
        """Offset in ``data`` after which the stream is at a boundary, or -1 if none."""
        if self._hdr:
            k = len(self._hdr)
            hdr = self._hdr + bytes(data[: 5 - k])
            if len(hdr) < 5:
                return -1
            end = 1 + _unpack_length(hdr, 1)[0] - k
            return end if end <= len(data) else -1
        return self._skip if self._skip <= len(data) else -1


_WRITE_RE = re.compile(rb"\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


def write_verb(query: bytes) -> str | None:
    """The first INSERT/UPDATE/DELETE keyword in a query text, upper-cased, or None."""
    match = _WRITE_RE.search(query)
    return match.group(1).decode().upper() if match else None


def read_only_query(verb: str) -> bytes:
    """A simple Query ('Q') that makes the server itself raise 25006 for ``verb``.

    Rewriting the statement (instead of answering for the server) keeps the server's
    transaction state and the client's in step: inside a block the transaction aborts.
    """
    text = "DO $aurora_sim$BEGIN RAISE EXCEPTION USING ERRCODE = '%s', MESSAGE = '%s'; END$aurora_sim$" % (
        READ_ONLY[0],
        READ_ONLY[1] % verb,
    )
    body = text.encode() + b"\0"
    return b"Q" + _LENGTH.pack(len(body) + 4) + body
