"""What aurora_backend asks of a driver connection, in one place.

Only attributes psycopg2 and psycopg 3 share: ``fileno()``, ``info.host_addr`` and
``info.transaction_status`` (0 = idle in both).
"""

from __future__ import annotations

import functools
import select
from typing import Any, Callable, Optional

_IDLE = 0  # PQTRANS_IDLE: no command running, no transaction open
_OPEN = (1, 2, 3)  # ACTIVE (a command runs), INTRANS, INERROR; 4 is UNKNOWN (connection bad)


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


def peer_address(connection: Any) -> Optional[str]:
    """The IP address the connection actually went to, if the driver can tell."""
    try:
        return connection.info.host_addr or None
    except Exception:
        return None


def transaction_status(connection: Any) -> int:
    """libpq's PQtransactionStatus: 0 idle, 1 active, 2 in transaction, 3 in error, 4 unknown."""
    # Read before every statement: psycopg2's method first, the cheapest way to ask.
    try:
        return int(connection.get_transaction_status())
    except AttributeError:  # psycopg 3
        try:
            return int(connection.info.transaction_status)
        except Exception:
            return 4
    except Exception:  # closed
        return 4


def is_idle(connection: Any) -> bool:
    """No command running and no transaction open on the connection."""
    return transaction_status(connection) == _IDLE


def transaction_open(connection: Any) -> bool:
    """The server holds a transaction (or runs a command) for this connection, as libpq last
    saw it: e.g. a raw ``BEGIN`` sent in autocommit mode, outside Django's atomic()."""
    return transaction_status(connection) in _OPEN


def in_recovery(connection: Any) -> Optional[bool]:
    """``pg_is_in_recovery()``: True on a reader (a demoted writer), None if it cannot say."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            return bool(cursor.fetchone()[0])
    except Exception:
        return None
