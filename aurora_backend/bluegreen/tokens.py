"""Commit tokens: settle a COMMIT lost in a Blue/Green switchover on whichever side answers.

``txid_status()`` only speaks for its own database, and after a switchover the endpoint
names green, another database. With ``blue_green={"commit_token": True}``, retry_atomic
writes one row with a random token inside each transaction that wrote something, just
before COMMIT; logical replication carries it to green with the transaction. After a lost
COMMIT the token is looked up on the side that answers: found, the transaction committed
(on blue, and green has it too). Not found: on the same database, the txid rule decides
(the COMMIT may still be in progress); on green after the switch, it did not commit,
because RDS lets green take the names only once it has caught up with blue.

Cost per writing transaction: one INSERT of 24 bytes in the same round trip as a bounded
clean-up (at most ``CLEANUP_BATCH`` tokens older than ``RETENTION`` removed, through an
index), i.e. one extra statement, one heap and two index entries, replicated to green.
Create the table before the Blue/Green deployment (DDL is not replicated):
``python manage.py shell -c "from aurora_backend.bluegreen.tokens import create_table; create_table()"``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError

from aurora_backend.transactions.commit_outcome import ABORTED, COMMITTED

logger = logging.getLogger("aurora_backend")

TABLE = "aurora_commit_tokens"
RETENTION = "10 minutes"
CLEANUP_BATCH = 4
CREATE_SQL = (
    "CREATE TABLE IF NOT EXISTS %(t)s (token uuid PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now()); "
    "CREATE INDEX IF NOT EXISTS %(t)s_created_at ON %(t)s (created_at)" % {"t": TABLE}
)
WRITE_SQL = (
    "WITH expired AS (DELETE FROM %(t)s WHERE token IN (SELECT token FROM %(t)s WHERE created_at < "
    "now() - interval '%(r)s' ORDER BY created_at LIMIT %(n)d FOR UPDATE SKIP LOCKED)) "
    "INSERT INTO %(t)s (token) VALUES (%%s)" % {"t": TABLE, "r": RETENTION, "n": CLEANUP_BATCH}
)
FIND_SQL = "SELECT EXISTS (SELECT 1 FROM %s WHERE token = %%s)" % TABLE
_EXISTS_SQL = "SELECT to_regclass(%s) IS NOT NULL"
_RECHECK = 60.0  # seconds before asking again whether a missing table was created

_table_seen: dict[str, tuple[bool, float]] = {}
_lock = threading.Lock()


def create_table(using: str = "default") -> None:
    """Create the token table (and its index) on ``using``: once, before the deployment."""
    from django.db import connections

    with connections[using].cursor() as cursor:
        cursor.execute(CREATE_SQL)


def enabled(connection: Any) -> bool:
    options = getattr(connection, "aurora_options", None)
    return bool(options is not None and options.blue_green.commit_token)


def write(connection: Any, txid: int | None) -> str | None:
    """Insert a token in the open transaction when it wrote something; the token, or None."""
    if txid is None or not enabled(connection) or not _table_exists(connection):
        return None
    token = str(uuid.uuid4())
    with connection.cursor() as cursor:
        cursor.execute(WRITE_SQL, [token])
    return token


def settle(connection: Any, token: str | None, fallback: Callable[[], str]) -> str:
    """COMMITTED or ABORTED for a lost COMMIT; ``fallback()`` (the txid rule) when the token cannot say."""
    if token is None:
        return fallback()
    try:
        with connection.cursor() as cursor:
            cursor.execute(FIND_SQL, [token])
            found = bool(cursor.fetchone()[0])
    except DatabaseError as exc:
        logger.info("commit token of %r could not be looked up (%s): txid rule", connection.alias, exc)
        return fallback()
    logger.info(
        "commit token %s on %r after a lost COMMIT: %s", token, connection.alias, "found" if found else "absent"
    )
    if found:
        return COMMITTED
    if _switched(connection):
        return ABORTED  # green took the names only after catching up with blue: it would be here
    return fallback()


def _switched(connection: Any) -> bool:
    from aurora_backend import bluegreen

    watcher = bluegreen.watcher_of(connection) if hasattr(connection, "_aurora_bg_params") else None
    return bool(watcher is not None and watcher.switched)


def _table_exists(connection: Any) -> bool:
    now = time.monotonic()
    seen = _table_seen.get(connection.alias)
    if seen is not None and (seen[0] or now < seen[1]):
        return seen[0]
    with connection.cursor() as cursor:
        cursor.execute(_EXISTS_SQL, [TABLE])
        exists = bool(cursor.fetchone()[0])
    if not exists:
        logger.warning(
            "OPTIONS['aurora']['blue_green']['commit_token'] is on for %r but table %s does not "
            "exist: create it with aurora_backend.bluegreen.tokens.create_table()",
            connection.alias,
            TABLE,
        )
    with _lock:
        _table_seen[connection.alias] = (exists, now + _RECHECK)
    return exists


def reset() -> None:
    """Forget what is known about the token tables (tests)."""
    with _lock:
        _table_seen.clear()
