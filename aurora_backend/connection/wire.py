"""Read, without consuming, what the server sent to an idle connection before closing it.

libpq 17 reports a backend that sent FATAL and closed as "server closed the connection
unexpectedly": Aurora's own text ("... serverless scale event timeout") is lost. On an
idle connection the FATAL is still in the socket buffer when we find the socket
readable, so peeking at it tells a scale event from a failover or a plain drop.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any


def peek(connection: Any, size: int = 2048) -> bytes:
    """Bytes waiting on the driver connection's socket, left in place for the driver."""
    try:
        fd = os.dup(connection.fileno())
    except Exception:
        return b""
    try:
        with socket.socket(fileno=fd) as sock:  # closing a dup does not close the connection
            return sock.recv(size, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return b""


def error_fields(data: bytes) -> dict[str, str] | None:
    """The fields (S, C, M, ...) of an ErrorResponse at the start of ``data``, else None."""
    if len(data) < 5 or data[:1] != b"E":
        return None
    (length,) = struct.unpack("!i", data[1:5])
    body = data[5 : 1 + length]
    fields: dict[str, str] = {}
    for part in body.split(b"\x00"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def pending_error(connection: Any) -> dict[str, str] | None:
    """The ErrorResponse the server left on an idle connection, if any."""
    return error_fields(peek(connection))
