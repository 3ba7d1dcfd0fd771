"""The driver seam: everything aurora_backend asks of psycopg2 or psycopg 3, in one place.

Django's postgresql backend uses psycopg 3 when it is importable and psycopg2 otherwise;
``active`` is the module (``drivers/psycopg2.py`` or ``drivers/psycopg.py``) for the same
choice. Code elsewhere asks these functions, never the driver's own API, so a driver
difference is one function here, not an ``if`` in every module.
"""

from __future__ import annotations

import functools
import select
import threading
from collections.abc import Callable
from typing import Any

from django.db.backends.postgresql.psycopg_any import is_psycopg3

if is_psycopg3:
    from aurora_backend.drivers import psycopg as active
else:
    from aurora_backend.drivers import psycopg2 as active  # type: ignore[no-redef]

#: "psycopg2" or "psycopg": the driver Django uses in this process.
NAME: str = active.NAME
#: The driver's exception classes (Django re-raises them as django.db's).
Error: type = active.Error
OperationalError: type = active.OperationalError
InterfaceError: type = active.InterfaceError
#: The driver's per-SQLSTATE exception module (``errors.QueryCanceled``, ...).
errors: Any = active.errors

_IDLE = 0  # PQTRANS_IDLE: no command running, no transaction open

#: ``connect(conninfo="", **kwargs)``: a raw driver connection (tools, tests, benchmarks).
connect: Callable[..., Any] = active.connect
#: ``release_failed_attempt(exc)``: close now the socket of a connect attempt that failed with
#: ``exc`` and is retried (psycopg 3 keeps a timed-out one open until the garbage collector runs).
release_failed_attempt: Callable[[BaseException], None] = active.release_failed_attempt
#: libpq's PQtransactionStatus: 0 idle, 1 active, 2 in transaction, 3 in error, 4 unknown.
transaction_status: Callable[[Any], int] = active.transaction_status
#: The server holds a transaction (or runs a command) for this connection, as libpq last
#: saw it: e.g. a raw ``BEGIN`` sent in autocommit mode, outside Django's atomic().
transaction_open: Callable[[Any], bool] = active.transaction_open
#: PQtransactionStatus as cheaply as the driver allows (the per-statement read; see OPEN).
status_of: Callable[[Any], int] = active.status_of
#: The statuses in which the server holds a transaction or runs a command (a frozenset: one
#: hash lookup per statement instead of up to three comparisons).
OPEN: frozenset[int] = frozenset((1, 2, 3))
#: The server process id of a driver connection.
backend_pid: Callable[[Any], int] = active.backend_pid
#: What libpq was given to connect (host, hostaddr, sslmode, ...; never the password).
connection_parameters: Callable[[Any], dict[str, str]] = active.connection_parameters
ssl_in_use: Callable[[Any], bool] = active.ssl_in_use
server_version: Callable[[Any], int] = active.server_version
#: Ask the server to cancel the connection's running statement.
cancel: Callable[[Any], None] = active.cancel
#: The driver refused a statement before sending it (connection or cursor already closed).
refused_before_sending: Callable[[BaseException], bool] = active.refused_before_sending
#: A server-side cursor (``DECLARE``; Django's ``QuerySet.iterator()``).
is_named_cursor: Callable[[Any], bool] = active.is_named_cursor
#: ``(cursor, tz)``: aware timestamps keep the server's instant when the session's timezone
#: is not Django's (proxy mode does not SET it).
keep_server_instants: Callable[[Any, Any], None] = active.keep_server_instants


_error_classes: dict[tuple[type, type], type] = {}
_error_classes_lock = threading.Lock()


def operational_error_class(base: type, operational_error: type | None = None) -> type:
    """``base`` (an aurora_backend error) that is also the driver's ``OperationalError``.

    What ends a connect is raised inside the driver's ``connect()``, where Django turns the
    driver's errors into ``django.db.OperationalError``; this subclass of both is built once
    per (base, driver class) and reused, so ``except ClusterUnavailable`` and ``except
    OperationalError`` both catch it. It reports the base's name and module, and pickles
    (its instances rebuild through this function).
    """
    driver_class = operational_error or OperationalError
    key = (base, driver_class)
    klass = _error_classes.get(key)
    if klass is None:
        with _error_classes_lock:
            klass = _error_classes.get(key)
            if klass is None:
                namespace = {
                    "__module__": base.__module__,
                    "__qualname__": base.__qualname__,
                    "__doc__": base.__doc__,
                    "__reduce__": _reduce_driver_error,
                }
                klass = _error_classes[key] = type(base.__name__, (base, driver_class), namespace)
    return klass


def _reduce_driver_error(self: BaseException) -> tuple[Any, ...]:
    base, driver_class = type(self).__bases__
    return (_driver_error, (base, driver_class, self.args), self.__dict__ or None)


def _driver_error(base: type, driver_class: type, args: tuple[Any, ...]) -> BaseException:
    error: BaseException = operational_error_class(base, driver_class)(*args)
    return error


def version() -> str:
    """The driver's version, e.g. "2.9.13" or "3.3.9"."""
    return active.version()


def libpq_version() -> int:
    return active.libpq_version()


def is_closed(connection: Any) -> bool:
    """The driver connection is closed or known dead (psycopg2 ``closed``; psycopg 3
    ``closed``/``broken``). None (no connection) is not closed."""
    if connection is None:
        return False
    try:
        return active.is_closed(connection)
    except Exception:  # a half-torn-down connection object
        return True


def input_watch(connection: Any) -> Callable[[], Any]:
    """A cheap test, made once per connection, of "the server sent something (or EOF)".

    An idle connection outside a transaction has nothing to read unless the server
    spoke: a FATAL before it closed (scale event, failover) or EOF. A socket that is
    gone also counts as input waiting, so that the caller checks the connection.
    """
    try:
        fd = connection.fileno()
    except Exception:  # closed: the driver refuses to say
        return lambda: True
    poll = getattr(select, "poll", None)
    if poll is None:  # Windows: select() takes any socket there
        return lambda: bool(select.select([fd], [], [], 0)[0])
    poller = poll()
    poller.register(fd, select.POLLIN)
    # A non-empty list (POLLIN, POLLHUP or POLLNVAL) is true; partial() keeps it in C.
    return functools.partial(poller.poll, 0)


def peer_address(connection: Any) -> str | None:
    """The IP address the connection actually went to, if the driver can tell."""
    try:
        return active.peer_address(connection)
    except Exception:
        return None


def is_idle(connection: Any) -> bool:
    """No command running and no transaction open on the connection."""
    return transaction_status(connection) == _IDLE


def in_recovery(connection: Any) -> bool | None:
    """``pg_is_in_recovery()``: True on a reader (a demoted writer), None if it cannot say."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            return bool(cursor.fetchone()[0])
    except Exception:
        return None
