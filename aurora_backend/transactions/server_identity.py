"""Which database a connection reaches, so that a lost COMMIT is judged by the right one.

``txid_status()`` answers about a transaction id of *its own* server. After a lost COMMIT
the reconnect may reach another database behind the same name (a Blue/Green switchover,
a restored snapshot, a new cluster): there the id belongs to an unrelated transaction.
So retry_atomic records the identity of the server a transaction runs on (once per
driver connection, in the same round trip as the transaction id: ``current_txid``) and
asks ``txid_status`` only of a server with the same identity.

The identity is PostgreSQL's system identifier (``pg_control_system()``, chosen at initdb
and kept by every physical replica, hence by the instances of one Aurora cluster, which
share one storage volume, across failover), with the database's oid and name.
``pg_control_system()`` is executable by any role on PostgreSQL 15 (checked with a
login role without privileges); where it is not, the identity is the oid and name alone.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, NamedTuple

from django.db import Error

logger = logging.getLogger("aurora_backend")

#: The identity columns, after any others in a SELECT; never an error (the privilege is tested first).
IDENTITY_COLUMNS = (
    "CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') "
    "THEN (pg_control_system()).system_identifier::text END, "
    "(SELECT oid::bigint FROM pg_database WHERE datname = current_database()), current_database()"
)


class ServerIdentity(NamedTuple):
    """The system identifier (None if the role may not read it), database oid and name."""

    system_identifier: str | None
    database_oid: int
    database: str

    def __str__(self) -> str:
        return "system %s, database %s (oid %s)" % (
            self.system_identifier or "unknown",
            self.database,
            self.database_oid,
        )


# Per driver connection: a connection never moves to another server.
_known: weakref.WeakKeyDictionary[Any, ServerIdentity] = weakref.WeakKeyDictionary()


def identity_from_row(row: Any) -> ServerIdentity:
    """The identity from the last three columns of a row selected with IDENTITY_COLUMNS."""
    system, oid, name = row[-3:]
    return ServerIdentity(system, int(oid), name)


def remember_server(connection: Any) -> None:
    """Record the identity of the server ``connection`` (a Django connection) reaches, once
    per driver connection. Called outside any transaction; an error leaves it unrecorded."""
    if recorded_identity(connection.connection) is not None:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + IDENTITY_COLUMNS)
            identity = identity_from_row(cursor.fetchone())
    except Error as exc:  # (InterfaceError too: not a DatabaseError)
        logger.info("could not read the server identity of %r: %s", connection.alias, exc)
        return
    record_identity(connection.connection, identity)  # (the cursor may have opened a new one)


def record_identity(raw_connection: Any, identity: ServerIdentity) -> None:
    """Remember ``identity`` for a driver connection (it never moves to another server)."""
    try:
        _known[raw_connection] = identity
    except TypeError:  # None, or a driver connection that cannot be weakly referenced
        pass


def recorded_identity(raw_connection: Any) -> ServerIdentity | None:
    """The identity recorded for a driver connection, or None."""
    try:
        return _known.get(raw_connection)
    except TypeError:  # None, or a driver connection that cannot be weakly referenced
        return None
