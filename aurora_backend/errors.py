"""What a database error means for the connection and the transaction.

Driver-agnostic: it reads the SQLSTATE (psycopg2 ``pgcode``, psycopg 3 ``sqlstate``),
the message, and the connection's ``closed`` flag. Connect-time errors carry no
SQLSTATE, and libpq 17 reports a terminated backend as a plain OperationalError
with no SQLSTATE either, so the message and the connection state matter as much
as the code. The messages, with their sources, are in docs/aurora_facts.md.
"""

from __future__ import annotations

import enum
from typing import Any

from aurora_backend.drivers import is_closed


class ErrorKind(str, enum.Enum):
    #: The connection is dead; any open transaction was rolled back by the server.
    DISCONNECT = "disconnect"
    #: A connection attempt failed for a reason that passes (refused, timeout, resume,
    #: scale point, starting up, too many clients).
    CONNECT_RETRYABLE = "connect_retryable"
    #: A write reached a server that is now a reader (stale DNS after failover).
    READ_ONLY = "read_only"
    #: The transaction was rolled back (serialization failure, deadlock): run it again.
    TRANSACTION_ROLLBACK = "transaction_rollback"
    #: Retrying cannot help: authentication, missing database, integrity, data, SQL errors.
    NEVER_RETRY = "never_retry"
    #: Anything else: not ours to retry.
    OTHER = "other"


_NEVER_RETRY_CLASSES = frozenset({"IntegrityError", "DataError", "ProgrammingError", "NotSupportedError"})
# SQLSTATE classes: 22 data exception, 23 integrity, 28 auth, 42 syntax/access, 3D missing db,
# 0A feature not supported, 3F missing schema.
_NEVER_RETRY_CODE_CLASSES = ("22", "23", "28", "42", "3D", "0A", "3F")

# Transient even though a never-retry message contains them ("could not translate host name").
_TRANSIENT_MESSAGES = ("temporary failure in name resolution",)  # EAI_AGAIN

_NEVER_RETRY_MESSAGES = (
    "password authentication failed",
    "authentication failed for user",
    "no pg_hba.conf entry",
    "does not exist",  # database / role "x" does not exist (FATAL 3D000 / 28000 at connect)
    "permission denied",
    "could not translate host name",
    "invalid dsn",
    "invalid connection option",
    "server certificate for",  # ... does not match host name (sslmode=verify-full)
    "certificate verify failed",
    "feature not supported: rds proxy",
    "doesn't support command-line options",
)

_SCALE_EVENT_MESSAGES = (
    "serverless scale event",
    "serverless scale point",
    "seamless quiet point",
    "forced scale event",
)

_CONNECT_RETRYABLE_MESSAGES = (
    "past serverless scale point",
    "past seamless quiet point",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "connection refused",
    "timeout expired",
    "connection timed out",
    "could not connect to server",
    "no route to host",
    "network is unreachable",
    "too many clients already",
    "too many connections for role",
    "remaining connection slots are reserved",
    # libpq 17 (CVE-2024-10977) discards the text of an error sent before SSL/GSS
    # negotiation: a server refusing a startup (scale point, resume) or failing to fork.
    "server sent an error response during ssl exchange",
    "server sent an error response during gss encryption exchange",
)

#: A connection that was up and then failed: a "timed out" in these is a silent host found
#: by keepalives or tcp_user_timeout mid-session, never a connect attempt to retry.
_SESSION_LOST_MESSAGES = (
    "could not receive data from server",
    "could not send data to server",
    "consuming input failed",
    "sending query failed",
)

_DISCONNECT_MESSAGES = (
    "server closed the connection unexpectedly",
    "ssl connection has been closed unexpectedly",
    "ssl syscall error",
    "connection already closed",
    "terminating connection due to",
    "terminating connection because",
    "terminating current active connection",
    "forced scale event",
    "could not receive data from server",
    "connection socket closed",  # psycopg 3's wait: the socket failed (POLLERR/POLLHUP/POLLNVAL)
    "could not send data to server",
    "no connection to the server",
    "connection not open",
    "lost synchronization with server",
    "the connection is closed",
    "connection is lost",
    "consuming input failed",
    "sending query failed",
)

_READ_ONLY_MESSAGES = ("in a read-only transaction",)
_ROLLBACK_MESSAGES = ("could not serialize access", "deadlock detected")


def driver_error(exc: BaseException) -> BaseException:
    """The driver's exception behind a Django ``DatabaseError`` (or ``exc`` itself)."""
    cause = exc.__cause__
    if cause is not None and type(exc).__module__ == "django.db.utils":
        return cause
    return exc


def sqlstate(exc: BaseException) -> str | None:
    """The five-character SQLSTATE of a driver error, or None (connect-time errors)."""
    exc = driver_error(exc)
    code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)
    return code if isinstance(code, str) and code else None


def _message(exc: BaseException) -> str:
    return str(exc).lower()


def _has(message: str, needles: tuple[str, ...]) -> bool:
    return any(needle in message for needle in needles)


def _class_names(exc: BaseException) -> set[str]:
    return {klass.__name__ for klass in type(exc).__mro__}


def connection_is_closed(connection: Any) -> bool:
    """True when a driver connection says it is closed or dead (see ``drivers.is_closed``)."""
    return is_closed(connection)


def classify(exc: BaseException, connection: Any = None) -> ErrorKind:
    """Say what ``exc`` means; ``connection`` is the driver connection it came from, if any."""
    exc = driver_error(exc)
    code = sqlstate(exc)
    message = _message(exc)
    names = _class_names(exc)
    if code is not None:
        kind = _classify_code(code)
        if kind is not None:
            return kind
    if names & _NEVER_RETRY_CLASSES:
        return ErrorKind.NEVER_RETRY
    if code is None:
        kind = _classify_message(message)
        if kind is not None:
            return kind
    if names & {"OperationalError", "InterfaceError"} and connection_is_closed(connection):
        return ErrorKind.DISCONNECT
    return ErrorKind.OTHER


def _classify_code(code: str) -> ErrorKind | None:
    if code in ("57P01", "57P02") or code.startswith("08"):
        return ErrorKind.DISCONNECT
    if code in ("57P03", "53300"):
        return ErrorKind.CONNECT_RETRYABLE
    if code == "25006":
        return ErrorKind.READ_ONLY
    if code in ("40001", "40P01"):
        return ErrorKind.TRANSACTION_ROLLBACK
    if code.startswith(_NEVER_RETRY_CODE_CLASSES):
        return ErrorKind.NEVER_RETRY
    return None


def _classify_message(message: str) -> ErrorKind | None:
    # Order matters: "database "x" does not exist" must not be read as a retryable failure
    # just because libpq prefixed it with 'connection to server at ... failed'.
    if _has(message, _SESSION_LOST_MESSAGES):
        return ErrorKind.DISCONNECT
    if _has(message, _TRANSIENT_MESSAGES):
        return ErrorKind.CONNECT_RETRYABLE
    if _has(message, _NEVER_RETRY_MESSAGES):
        return ErrorKind.NEVER_RETRY
    if _has(message, _CONNECT_RETRYABLE_MESSAGES):
        return ErrorKind.CONNECT_RETRYABLE
    if _has(message, _DISCONNECT_MESSAGES):
        return ErrorKind.DISCONNECT
    if _has(message, _READ_ONLY_MESSAGES):
        return ErrorKind.READ_ONLY
    if _has(message, _ROLLBACK_MESSAGES):
        return ErrorKind.TRANSACTION_ROLLBACK
    return None


def is_scale_event(exc: BaseException) -> bool:
    """True when the error text is one of Aurora Serverless's scaling messages."""
    return _has(_message(driver_error(exc)), _SCALE_EVENT_MESSAGES)


def is_connect_retryable(exc: BaseException, connection: Any = None) -> bool:
    """A connection attempt that failed this way may succeed if tried again."""
    return classify(exc, connection) in (ErrorKind.CONNECT_RETRYABLE, ErrorKind.DISCONNECT)


def is_disconnect(exc: BaseException, connection: Any = None) -> bool:
    """The connection that raised ``exc`` is dead and must be replaced."""
    return classify(exc, connection) is ErrorKind.DISCONNECT


#: Kinds after which a whole transaction may be run again on a (new) connection.
TRANSACTION_RETRYABLE = frozenset(
    {ErrorKind.DISCONNECT, ErrorKind.CONNECT_RETRYABLE, ErrorKind.READ_ONLY, ErrorKind.TRANSACTION_ROLLBACK}
)


def is_transaction_retryable(exc: BaseException, connection: Any = None) -> bool:
    """The transaction was rolled back for a reason that running it again cures."""
    return classify(exc, connection) in TRANSACTION_RETRYABLE
