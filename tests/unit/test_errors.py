"""Error classification: every message and SQLSTATE of docs/aurora_facts.md.

Errors made by a real server, with the driver under test: tests/test_errors.py.
"""

import pytest

from aurora_backend import drivers
from aurora_backend.errors import (
    ErrorKind,
    classify,
    is_scale_event,
    is_transaction_retryable,
    sqlstate,
)

D, C, R, T, N, O = (  # noqa: E741 (O: ErrorKind.OTHER, as in the tables below)
    ErrorKind.DISCONNECT,
    ErrorKind.CONNECT_RETRYABLE,
    ErrorKind.READ_ONLY,
    ErrorKind.TRANSACTION_ROLLBACK,
    ErrorKind.NEVER_RETRY,
    ErrorKind.OTHER,
)


# (message as libpq/psycopg2 reports it with no SQLSTATE, expected kind, is a scale event)
MESSAGES = [
    (
        "terminating connection due to serverless scale event timeout\nSSL connection has been closed unexpectedly",
        D,
        True,
    ),
    ("FATAL:  terminating connection because backend initialization completed past serverless scale point", C, True),
    ("FATAL:  terminating connection because backend initialization completed past seamless quiet point", C, True),
    ("terminating current active connection due to forced scale event", D, True),
    ("terminating connection due to administrator command", D, False),
    ("terminating connection because of crash of another server process", D, False),
    ("FATAL:  the database system is starting up", C, False),
    ("FATAL:  the database system is shutting down", C, False),
    ("FATAL:  the database system is in recovery mode", C, False),
    ("FATAL:  the database system is not yet accepting connections", C, False),
    ("cannot execute INSERT in a read-only transaction", R, False),
    ("FATAL:  sorry, too many clients already", C, False),
    ("FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute", C, False),
    ("server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally", D, False),
    ("SSL connection has been closed unexpectedly", D, False),
    ("SSL SYSCALL error: EOF detected", D, False),
    ("connection socket closed", D, False),  # psycopg 3's wait: the socket failed
    ('connection to server at "h" (10.0.0.1), port 5432 failed: Connection refused\n\tIs the server running', C, False),
    ('connection to server at "h" (10.0.0.1), port 5432 failed: timeout expired', C, False),
    ("server sent an error response during SSL exchange", C, False),
    ("could not serialize access due to concurrent update", T, False),
    ("deadlock detected", T, False),
    (
        'connection to server at "h" (10.0.0.1), port 5432 failed: '
        'FATAL:  password authentication failed for user "app"',
        N,
        False,
    ),
    ('connection to server at "h" (10.0.0.1), port 5432 failed: FATAL:  database "nope" does not exist', N, False),
    ("Feature not supported: RDS Proxy currently doesn't support command-line options.", N, False),
    (
        'connection to server at "127.0.0.2", port 5432 failed: '
        'server certificate for "db.x" does not match host name "y"',
        N,
        False,
    ),
    ('connection to server at "127.0.0.2", port 5432 failed: SSL error: certificate verify failed', N, False),
    ('could not translate host name "db.example" to address: Temporary failure in name resolution', C, False),
    ('could not translate host name "db.exmaple" to address: Name or service not known', N, False),
    ('FATAL:  too many connections for role "app"', C, False),
    ("something else entirely", O, False),
]


class _Psycopg3Style(Exception):
    """psycopg 3 names the SQLSTATE ``sqlstate``; the classifier must read it too."""

    def __init__(self, code, message="x"):
        super().__init__(message)
        self.sqlstate = code


# (SQLSTATE, kind): by code, whatever the message says
CODES = [
    ("57P01", D),
    ("57P02", D),
    ("08006", D),
    ("08001", D),
    ("08003", D),
    ("57P03", C),
    ("53300", C),
    ("25006", R),
    ("40001", T),
    ("40P01", T),
    ("28P01", N),
    ("28000", N),
    ("3D000", N),
    ("23505", N),
    ("22012", N),
    ("42601", N),
    ("XX000", O),
    ("57014", O),
]


@pytest.mark.parametrize("message,kind,scale", MESSAGES)
def test_messages_without_sqlstate(message, kind, scale):
    exc = drivers.OperationalError(message)
    assert sqlstate(exc) is None
    assert classify(exc) is kind
    assert is_scale_event(exc) is scale


def test_dead_connection_objects_are_disconnects():
    assert classify(drivers.InterfaceError("connection already closed")) is D


@pytest.mark.parametrize("code,kind", CODES)
def test_sqlstates(code, kind):
    assert classify(_Psycopg3Style(code)) is kind


def test_never_retry_classes_win_over_messages():
    class IntegrityError(Exception):
        pass

    assert classify(IntegrityError("deadlock detected")) is N


def test_transaction_retryable_set():
    assert is_transaction_retryable(_Psycopg3Style("40001"))
    assert is_transaction_retryable(_Psycopg3Style("57P01"))
    assert is_transaction_retryable(_Psycopg3Style("25006"))
    assert is_transaction_retryable(_Psycopg3Style("53300"))
    assert not is_transaction_retryable(_Psycopg3Style("23505"))
    assert not is_transaction_retryable(ValueError("application error"))
