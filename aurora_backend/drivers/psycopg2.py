"""The psycopg2 side of the driver seam (see ``aurora_backend.drivers``)."""

from __future__ import annotations

import datetime
import operator
from typing import Any

import psycopg2
import psycopg2.extensions

NAME = "psycopg2"
module = psycopg2
Error = psycopg2.Error
OperationalError = psycopg2.OperationalError
InterfaceError = psycopg2.InterfaceError
errors = psycopg2.errors

_OPEN = (1, 2, 3)  # ACTIVE, INTRANS, INERROR

#: ``status_of(connection)``: PQtransactionStatus in one C call, no Python frame (4 once closed).
status_of = operator.methodcaller("get_transaction_status")


def version() -> str:
    text: str = psycopg2.__version__  # type: ignore[attr-defined]  # types-psycopg2 does not declare it
    return text.split()[0]


def libpq_version() -> int:
    return int(psycopg2.extensions.libpq_version())


def connect(conninfo: str = "", **kwargs: Any) -> Any:
    """A raw driver connection (autocommit off, as the driver's default)."""
    return psycopg2.connect(conninfo or None, **kwargs)


def release_failed_attempt(exc: BaseException) -> None:
    """Nothing to do: psycopg2 connects with libpq's blocking PQconnectdb, which enforces
    ``connect_timeout`` itself and psycopg2 finishes the PGconn (socket closed) on failure."""


def transaction_status(connection: Any) -> int:
    try:
        return int(connection.get_transaction_status())
    except Exception:  # closed
        return 4


def transaction_open(connection: Any) -> bool:
    # On every statement: the C method directly (a closed connection raises InterfaceError).
    try:
        return connection.get_transaction_status() in _OPEN
    except Exception:
        return False


def is_closed(connection: Any) -> bool:
    """psycopg2's ``closed``: 0 open, 1 closed by us, 2 found broken."""
    return bool(connection.closed)


def backend_pid(connection: Any) -> int:
    return int(connection.get_backend_pid())


def peer_address(connection: Any) -> str | None:
    return None  # psycopg2 does not expose PQhostaddr


def connection_parameters(connection: Any) -> dict[str, str]:
    """What libpq was given (without the password)."""
    params = dict(connection.info.dsn_parameters)
    params.pop("password", None)
    return params


def ssl_in_use(connection: Any) -> bool:
    return bool(connection.info.ssl_in_use)


def server_version(connection: Any) -> int:
    return int(connection.server_version)


def cancel(connection: Any) -> None:
    connection.cancel()


def refused_before_sending(exc: BaseException) -> bool:
    """psycopg2 refused the statement because the connection or cursor was already closed:
    nothing reached the server."""
    message = str(exc)
    return isinstance(exc, InterfaceError) and (
        "connection already closed" in message or "cursor already closed" in message
    )


def is_named_cursor(cursor: Any) -> bool:
    """A server-side cursor (``DECLARE``): psycopg2 names those."""
    return bool(cursor.name)


def keep_server_instants(cursor: Any, timezone: Any) -> None:
    """Aware timestamps read on ``cursor`` keep the server's offset (Django's tzinfo_factory
    ignores it, trusting that the session's timezone is Django's)."""
    cursor.tzinfo_factory = _fixed_offset


def _fixed_offset(offset: Any) -> Any:
    if not isinstance(offset, datetime.timedelta):  # minutes, before psycopg2 2.9
        offset = datetime.timedelta(minutes=offset)
    return datetime.timezone(offset)
