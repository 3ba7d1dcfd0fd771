"""The psycopg 3 side of the driver seam (see ``aurora_backend.drivers``)."""

from __future__ import annotations

import operator
import traceback
from typing import Any

import psycopg
import psycopg.errors
import psycopg.pq

NAME = "psycopg"
module = psycopg
Error = psycopg.Error
OperationalError = psycopg.OperationalError
InterfaceError = psycopg.InterfaceError
errors = psycopg.errors

_OPEN = (1, 2, 3)  # ACTIVE, INTRANS, INERROR


def _safe_status(connection: Any) -> int:
    try:
        return int(connection.pgconn.transaction_status)
    except Exception:  # a finished PGconn of the pure-Python libpq wrapper
        return 4


#: ``status_of(connection)``: PQtransactionStatus. With psycopg's C implementation one C
#: call, no Python frame (4 once closed); the pure-Python one raises once closed.
status_of = operator.attrgetter("pgconn.transaction_status") if psycopg.pq.__impl__ != "python" else _safe_status
_ServerCursor = psycopg.ServerCursor


def version() -> str:
    return psycopg.__version__


def libpq_version() -> int:
    return int(psycopg.pq.version())


def connect(conninfo: str = "", **kwargs: Any) -> Any:
    """A raw driver connection (autocommit off, as the driver's default)."""
    return psycopg.connect(conninfo, **kwargs)


def release_failed_attempt(exc: BaseException) -> None:
    """Close now the socket of a connect attempt that failed with ``exc``.

    At ``connect_timeout`` psycopg 3 (3.3.9) abandons its connect generator, and the
    generator's PGconn (socket open, libpq mid-startup) stays in a reference cycle:
    ``Connection.connect``'s frame holds its list of errors, the raised error's traceback
    holds that frame. Only the cyclic garbage collector frees it; until then the server
    (Aurora, after a resume) keeps a session for it. Clearing the locals of the finished
    frames in the error's tracebacks breaks the cycle: the PGconn is freed at once and
    libpq closes the socket (PQfinish). Frames still running (the caller's) are left alone.
    (psycopg finishes the PGconn itself when the server refuses: psycopg/psycopg#565.)
    """
    seen = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if error.__traceback__ is not None:
            traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__


def transaction_status(connection: Any) -> int:
    try:
        return int(connection.pgconn.transaction_status)
    except Exception:
        return 4


def transaction_open(connection: Any) -> bool:
    # On every statement: libpq's status straight from the PGconn (4 = UNKNOWN once closed).
    try:
        return connection.pgconn.transaction_status in _OPEN
    except Exception:  # a finished PGconn (pure-Python libpq wrapper)
        return False


def is_closed(connection: Any) -> bool:
    """psycopg 3: ``closed`` once closed or found dead, ``broken`` once an error proved it dead;
    or stuck mid-command: dead too (see ``_stuck``)."""
    return bool(connection.closed or connection.broken) or _stuck(connection)


def _stuck(connection: Any) -> bool:
    """libpq still ACTIVE (a command in progress) while nobody is running one, outside
    pipeline mode: a call raised before libpq read the command's end, and libpq has not
    read EOF, so the connection still says OK. Seen after a backend died under a named
    cursor's FETCH: every later statement failed with "another command is already in
    progress". No statement can succeed on it again: dead."""
    try:
        pgconn = connection.pgconn
        return pgconn.transaction_status == 1 and pgconn.pipeline_status == 0
    except Exception:  # a finished PGconn (pure-Python libpq wrapper)
        return False


def backend_pid(connection: Any) -> int:
    return int(connection.info.backend_pid)


def peer_address(connection: Any) -> str | None:
    try:
        return connection.info.hostaddr or None  # PQhostaddr: the IP actually dialled
    except Exception:
        return None


def connection_parameters(connection: Any) -> dict[str, str]:
    """What libpq was given (without the password)."""
    return dict(connection.info.get_parameters())


def ssl_in_use(connection: Any) -> bool:
    return bool(connection.pgconn.ssl_in_use)


def server_version(connection: Any) -> int:
    return int(connection.info.server_version)


def cancel(connection: Any) -> None:
    cancel_safe = getattr(connection, "cancel_safe", None)  # psycopg 3.2+
    (cancel_safe or connection.cancel)()


# Raised by psycopg 3 before anything is sent: the connection was closed (or found dead
# by an earlier statement: libpq status BAD), or the cursor was closed.
_REFUSED = {(OperationalError, "the connection is closed"), (InterfaceError, "the cursor is closed")}


def refused_before_sending(exc: BaseException) -> bool:
    """psycopg 3 refused the statement because the connection or cursor was already closed:
    nothing reached the server."""
    return (type(exc), str(exc)) in _REFUSED


def is_named_cursor(cursor: Any) -> bool:
    """A server-side cursor (``DECLARE``): psycopg 3's ServerCursor (client cursors have no name)."""
    return isinstance(cursor, _ServerCursor)


_tz_loaders: dict[Any, type] = {}


def keep_server_instants(cursor: Any, timezone: Any) -> None:
    """Aware timestamps read on ``cursor`` converted to ``timezone`` (Django's own loader
    replaces the tzinfo, trusting that the session's timezone is Django's)."""
    loader = _tz_loaders.get(timezone)
    if loader is None:
        from psycopg.types.datetime import TimestamptzLoader

        class ConvertingTzLoader(TimestamptzLoader):
            def load(self, data: Any) -> Any:
                return super().load(data).astimezone(timezone)

        loader = _tz_loaders[timezone] = ConvertingTzLoader
    cursor.adapters.register_loader("timestamptz", loader)
