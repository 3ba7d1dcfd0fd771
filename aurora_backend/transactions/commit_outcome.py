"""The fate of a transaction whose COMMIT got no answer, asked of the server by transaction id.

When the connection dies while COMMIT is in flight, the client cannot tell whether the
server committed. Re-running the transaction could apply it twice; giving up could lose
an acknowledged write. PostgreSQL (10+) keeps the fate of every recent transaction id:
``txid_status(txid)`` answers 'committed', 'aborted' or 'in progress' (NULL once the id
is too old to know). retry_atomic records the id just before COMMIT and asks after a
lost COMMIT, on a new connection, and trusts the answer only from the same database
(``server_identity.py``): any other server's answer is about an unrelated transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, OperationalError

from aurora_backend.runtime import Runtime
from aurora_backend.transactions.server_identity import (
    IDENTITY_COLUMNS,
    ServerIdentity,
    identity_from_row,
    record_identity,
    recorded_identity,
)

logger = logging.getLogger("aurora_backend")

COMMITTED = "committed"
ABORTED = "aborted"
IN_PROGRESS = "in progress"

#: First and longest wait between two ``txid_status`` checks of an 'in progress' transaction.
_RECHECK_FIRST = 0.05
_RECHECK_MAX = 1.0


class CommitOutcomeUnknown(OperationalError):
    """The connection died during COMMIT and the server could not say whether it committed.

    A ``django.db.OperationalError`` so that existing handlers still catch it; never retried,
    because running the transaction again could apply it twice. The lost COMMIT's error is
    chained as ``__cause__``.

    Attributes: ``alias``; ``txid`` (the transaction id, or None when it was not recorded);
    ``status``, the server's last answer: 'in progress' (still committing after the
    re-check window), None (id too old, or no answer: ``__cause__`` says why).
    """

    def __init__(self, message: str, *, alias: str, txid: int | None, status: str | None) -> None:
        super().__init__(message)
        self.alias = alias
        self.txid = txid
        self.status = status


def current_txid(connection: Any) -> tuple[int | None, ServerIdentity | None]:
    """The id of the open transaction (None if it has written nothing) and the identity of
    the server it runs on, in one round trip.

    The identity is read with the id the first time a driver connection gets here and
    remembered for it: a connection opened inside ``atomic()`` (the old one was found dead
    when the transaction started) is known as surely as one opened before.
    """
    raw = connection.connection
    known = recorded_identity(raw)
    query = (
        "SELECT txid_current_if_assigned()"
        if known is not None
        else ("SELECT txid_current_if_assigned(), " + IDENTITY_COLUMNS)
    )
    with connection.cursor() as cursor:
        cursor.execute(query)
        row = cursor.fetchone()
    if known is None:
        known = identity_from_row(row)
        record_identity(connection.connection, known)  # (the one the query ran on)
    return (None if row[0] is None else int(row[0])), known


def txid_status(connection: Any, txid: int) -> tuple[str | None, ServerIdentity]:
    """The server's answer for ``txid`` and who answered, asked outside any transaction
    (reconnects if needed), in one round trip."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT txid_status(%s), " + IDENTITY_COLUMNS, [txid])
        row = cursor.fetchone()
    return row[0], identity_from_row(row)


def resolve_lost_commit(
    connection: Any,
    txid: int,
    runtime: Runtime,
    check_time: float,
    commit_error: BaseException,
    server: ServerIdentity | None,
) -> str:
    """COMMITTED or ABORTED for ``txid``; raise CommitOutcomeUnknown when it cannot be known.

    ``server`` is the identity of the server the transaction ran on: only the same server's
    answer counts (None, not recorded: no answer counts). 'in progress' is re-checked with
    growing waits for at most ``check_time`` seconds: a server can still be committing (a
    slow deferred trigger, fsync) after the client lost the socket.
    """
    deadline = runtime.clock() + check_time
    wait = _RECHECK_FIRST
    while True:
        try:
            status, answered_by = txid_status(connection, txid)
        except DatabaseError as exc:
            raise _unknown(connection.alias, txid, None, "could not ask the server: %s" % exc) from commit_error
        if server is None or answered_by != server:
            reason = "the database that answered (%s) is not the one the transaction ran on (%s)" % (
                answered_by,
                server or "not recorded",
            )
            raise _unknown(connection.alias, txid, None, reason) from commit_error
        logger.info("txid_status(%s) on %r after a lost COMMIT: %s", txid, connection.alias, status)
        if status in (COMMITTED, ABORTED):
            return status
        now = runtime.clock()
        if status != IN_PROGRESS or now >= deadline:
            raise _unknown(connection.alias, txid, status, _reason(status, check_time)) from commit_error
        runtime.sleep(min(wait, deadline - now))
        wait = min(wait * 2, _RECHECK_MAX)


def _reason(status: str | None, check_time: float) -> str:
    if status == IN_PROGRESS:
        return "it was still in progress after %.1fs of re-checks" % check_time
    return "the server no longer knows it (txid_status returned %r)" % (status,)


def _unknown(alias: str, txid: int | None, status: str | None, reason: str) -> CommitOutcomeUnknown:
    message = (
        "The connection to %r died during COMMIT of transaction %s and its outcome is unknown: %s. "
        "It was not retried (it may have committed); check the data before running it again." % (alias, txid, reason)
    )
    logger.error("%s", message)
    return CommitOutcomeUnknown(message, alias=alias, txid=txid, status=status)


def commit_outcome_unrecorded(alias: str, commit_error: BaseException) -> CommitOutcomeUnknown:
    """The error for a lost COMMIT when the transaction id was not recorded (record_txid=False)."""
    error = _unknown(alias, None, None, "the transaction id was not recorded (record_txid=False)")
    error.__cause__ = commit_error
    return error
