"""Where a reader is: its WAL replay position and its lag, read at most every ``refresh`` s.

One :class:`ReaderState` per reader instance (alias and address) per process: the reader
endpoint spreads connections over instances, and each thread's reads go to the instance
its own connection reached. The writer's position after a write is read with
:func:`capture_writer` (``pg_current_wal_insert_lsn()``). Both use the driver connection directly, so Django's query log
(``assertNumQueries``, ``CaptureQueriesContext``) never sees them.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any

from aurora_backend.drivers import is_idle
from aurora_backend.routing.token import parse_lsn

logger = logging.getLogger("aurora_backend")

# The insert position, not pg_current_wal_lsn() (the write position): with asynchronous
# commit a commit record can sit in WAL buffers past the write position.
WRITER_SQL = "SELECT pg_current_wal_insert_lsn()::text"

# Lag on PostgreSQL: the usual formula, 0 when nothing received waits for replay.
PG_READER_SQL = """
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()
            THEN extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
            ELSE 0 END,
       to_regprocedure('aurora_replica_status()') IS NOT NULL
"""

# Lag on Aurora: this instance's replica_lag_in_msec, plus the age of that sample.
AURORA_READER_SQL = """
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
       (SELECT replica_lag_in_msec::float8 / 1000
               + greatest(extract(epoch FROM clock_timestamp() - last_update_timestamp)::float8, 0)
        FROM aurora_replica_status()
        WHERE server_id::text = aurora_db_instance_identifier()::text
        LIMIT 1),
       true
"""


class PositionUnavailable(Exception):
    """The position could not be read; ``cause`` is the driver's error, if any."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass
class ReaderState:
    """What was last measured on one reader instance (``checked_at``: monotonic s)."""

    #: pg_last_wal_replay_lsn(); None where the reader reports none (a primary, Aurora).
    lsn: int | None = None
    #: Seconds behind the writer; None when it cannot be told.
    lag: float | None = None
    #: aurora_replica_status() exists there (None: not looked yet).
    aurora: bool | None = None
    in_recovery: bool | None = None
    checked_at: float = -math.inf
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def refresh(self, raw: Any, now: float, refresh: float) -> None:
        """Read position and lag on ``raw`` (a driver connection to this instance) when the
        last reading is older than ``refresh``; a thread that finds another one reading it
        keeps the last reading. Raises :class:`PositionUnavailable`."""
        if now - self.checked_at < refresh or not self._lock.acquire(blocking=False):
            return
        try:
            sql = AURORA_READER_SQL if self.aurora else PG_READER_SQL
            in_recovery, lsn, lag, aurora = _fetch(raw, sql)
            if aurora and not self.aurora:  # found Aurora: read its lag from now on
                in_recovery, lsn, lag, aurora = _fetch(raw, AURORA_READER_SQL)
            self.in_recovery, self.lsn, self.aurora = in_recovery, parse_lsn(lsn), bool(aurora)
            self.lag = None if lag is None else max(0.0, float(lag))
            self.checked_at = now
        finally:
            self._lock.release()


#: Round trips made to read positions, by kind ("writer", "reader"): what routing costs.
round_trips: dict[str, int] = {"writer": 0, "reader": 0}


def _fetch(raw: Any, sql: str) -> tuple[Any, ...]:
    round_trips["writer" if sql is WRITER_SQL else "reader"] += 1
    if not is_idle(raw):
        raise PositionUnavailable("the connection is inside a transaction the app opened")
    try:
        with raw.cursor() as cursor:
            cursor.execute(sql)
            return tuple(cursor.fetchone())
    except Exception as exc:
        text = str(exc).strip()
        raise PositionUnavailable(text.splitlines()[0] if text else type(exc).__name__, exc) from exc


def capture_writer(raw: Any) -> int | None:
    """pg_current_wal_lsn() on the writer's driver connection (outside a transaction)."""
    (lsn,) = _fetch(raw, WRITER_SQL)
    return parse_lsn(lsn)


_states: dict[tuple[str, str | None], ReaderState] = {}
_states_lock = threading.Lock()


def reader_state(alias: str, address: str | None) -> ReaderState:
    """The process-wide state of the reader instance at ``address`` behind ``alias``."""
    key = (alias, address)
    state = _states.get(key)
    if state is None:
        with _states_lock:
            state = _states.setdefault(key, ReaderState())
    return state


def states() -> dict[tuple[str, str | None], ReaderState]:
    """A copy of every reader state (health, benchmarks)."""
    with _states_lock:
        return dict(_states)


def reset() -> None:
    """Forget every reading (tests)."""
    with _states_lock:
        _states.clear()
