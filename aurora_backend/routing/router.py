"""AuroraRouter: reads to the reader alias, everything else to the writer, never a stale
read of your own write. ``DATABASE_ROUTERS = ["aurora_backend.routers.AuroraRouter"]``.

The fail-safe rule (docs/routing.md): a read goes to the reader only when the router can
show that this context has no uncommitted write and no committed write the reader has not
replayed. So a read goes to the writer when: a transaction of any kind is open on the
writer (``atomic()``, ``set_autocommit(False)``, a raw ``BEGIN``, the driver's own); it
is a ``raw()`` query whose SQL may write; this context is pinned (:func:`use_writer`);
the reader is unreachable or lags past ``max_lag``; or this context wrote and the reader
instance has not been shown to have replayed that write (WAL position, else Aurora's
replica lag, else ``fallback_window``). Otherwise it goes to the reader.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import sys
from collections.abc import Iterator
from typing import Any

from django.core.signals import request_started
from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models.query import QuerySet, RawQuerySet

from aurora_backend import stats
from aurora_backend.drivers import peer_address
from aurora_backend.errors import ErrorKind, classify
from aurora_backend.exceptions import PositionUnavailable
from aurora_backend.routing import availability, token
from aurora_backend.routing.carry import capture
from aurora_backend.routing.config import RoutingConfig
from aurora_backend.routing.position import ReaderState, reader_state
from aurora_backend.routing.writes import WriteTracker, in_transaction, writes
from aurora_backend.runtime import Runtime

logger = logging.getLogger("aurora_backend")

_pinned: contextvars.ContextVar[bool] = contextvars.ContextVar("aurora_pinned", default=False)


@contextlib.contextmanager
def use_writer() -> Iterator[None]:
    """Send this context's reads to the writer inside the block (a report that must be exact)."""
    reset = _pinned.set(True)
    try:
        yield
    finally:
        _pinned.reset(reset)


class AuroraRouter:
    """Django database router over a writer alias and a reader alias (``settings.AURORA_ROUTING``)."""

    def __init__(
        self,
        config: RoutingConfig | None = None,
        runtime: Runtime | None = None,
        **settings: Any,
    ) -> None:
        self.config = config or RoutingConfig.from_settings(settings or None)
        self.runtime = runtime or Runtime()
        self.tracker = WriteTracker(self.config.writer, lambda: self.runtime.clock())
        if self.config.enabled:
            connection_created.connect(self._connection_created, weak=False, dispatch_uid=("aurora_ryw", id(self)))
            request_started.connect(_new_request, weak=False, dispatch_uid="aurora_ryw_request")

    def close(self) -> None:
        """Disconnect the signal receivers and this thread's write tracking (a router replaced)."""
        connection_created.disconnect(dispatch_uid=("aurora_ryw", id(self)))
        if self.config.enabled:
            self.tracker.uninstall(connections[self.config.writer])

    # ----- Django's router API -------------------------------------------------------

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        config = self.config
        if not config.enabled or _foreign(hints, config):
            return None
        writer = connections[config.writer]
        self.tracker.install(writer)
        if _pinned.get() or in_transaction(writer) or _raw_write():
            return config.writer
        return self._choose()

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        config = self.config
        if not config.enabled or _foreign(hints, config):
            return None
        self.tracker.install(connections[config.writer])
        return config.writer

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        pair = (self.config.writer, self.config.reader)
        if self.config.enabled and obj1._state.db in pair and obj2._state.db in pair:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        if self.config.enabled and db == self.config.reader:
            return False
        return None

    # ----- choosing ------------------------------------------------------------------

    def _choose(self) -> str:
        config = self.config
        reader = connections[config.reader]
        if reader.in_atomic_block:  # the app's own transaction on the reader
            return config.reader
        now = self.runtime.clock()
        if now < availability.unreachable_until(config.reader):
            availability.fall_back(reader, "unreachable", availability.unreachable_until(config.reader))
            return config.writer
        state = self._reader_state(reader, now)
        if state is None or not self._read(reader, state, now, config.lag_refresh):
            return config.writer
        if state.lag is not None and state.lag > config.max_lag:
            availability.fall_back(reader, "lagging", lag=state.lag)
            return config.writer
        availability.restored(reader)
        current = token.current()
        if current is not None and current.writer == config.writer:
            if current.pending:  # its transaction has ended (in_transaction() said no)
                current = token.settled(current, now)
            if not self._caught_up(reader, current, state, now):
                stats.incr(config.reader, "ryw_reads")
                return config.writer
        stats.incr(config.reader, "reader_reads")
        return config.reader

    def _reader_state(self, reader: Any, now: float) -> ReaderState | None:
        """The state of the instance this thread's reader connection reached (connected
        now if needed); None, and the fallback counted, when it cannot be reached."""
        reader.close_if_health_check_failed()  # a dead connection: closed now, by a socket poll
        if reader.connection is None:
            try:
                _connect_quickly(reader, self.config.reader_connect_deadline)
            except Exception as exc:
                self._unreachable(reader, now, exc)
                return None
        return reader_state(self.config.reader, _address(reader))

    def _read(self, reader: Any, state: ReaderState, now: float, max_age: float) -> bool:
        """Read position and lag again if the last reading is older than ``max_age``;
        False (fallback counted) when the connection proved dead."""
        try:
            state.refresh(reader.connection, now, max_age)
        except PositionUnavailable as exc:
            cause = exc.cause
            if cause is not None and classify(cause, reader.connection) is ErrorKind.DISCONNECT:
                reader.close()  # dead: Django's next use reconnects
                self._unreachable(reader, now, cause)
                return False
            logger.debug("reader %r position unknown: %s", self.config.reader, exc)
        return True

    def _unreachable(self, reader: Any, now: float, exc: BaseException) -> None:
        availability.fall_back(reader, "unreachable", now + self.config.retry_reader_after, error=exc)
        return None

    def _caught_up(self, reader: Any, current: token.Token, state: ReaderState, now: float) -> bool:
        """Has the reader replayed this context's write? Reads its position again (at most
        every ``refresh``) only while the answer is no."""
        if current.dirty:
            if now - current.at < self.config.refresh:
                return False  # too recent for any reader: no round trip to ask
            current = capture(current, now)
        if self._replayed(current, state, now):
            return True
        if now - state.checked_at < self.config.refresh or not self._read(reader, state, now, self.config.refresh):
            return False
        return self._replayed(current, state, now)

    def _replayed(self, current: token.Token, state: ReaderState, now: float) -> bool:
        config = self.config
        if config.position in ("auto", "lsn") and current.lsn is not None and state.lsn is not None:
            return state.lsn >= current.lsn
        if config.position in ("auto", "aurora") and state.aurora and state.lag is not None:
            return current.at <= state.checked_at - state.lag
        return now - current.at >= config.fallback_window

    def _connection_created(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        self.tracker.install(connection)


def _foreign(hints: Any, config: RoutingConfig) -> bool:
    """The hinted instance lives in another database: not ours to route."""
    instance = hints.get("instance")
    db = getattr(getattr(instance, "_state", None), "db", None)
    return db is not None and db != config.writer and db != config.reader


#: Where Django asks db_for_read() for a raw() query, whatever its SQL does: ``QuerySet.raw``
#: (through ``QuerySet.db``; so in Django 5.2 to 6.1, read in 5.2.19 and 6.1.3) and
#: ``RawQuerySet.db`` (one made directly).
# (mypy reads ``Class.property`` as the property's value type, hence the two ignores.)
_QUERYSET_DB = QuerySet.db.fget.__code__  # type: ignore[attr-defined]
_QUERYSET_RAW = QuerySet.raw.__code__
_RAW_DB = RawQuerySet.db.fget.__code__  # type: ignore[attr-defined]


def _raw_write() -> bool:
    """The read being routed is ``Model.objects.raw(sql)`` whose ``sql`` may write (INSERT ...
    RETURNING). Django's router API does not pass the SQL: it is read from the caller's frame
    (three up: db_for_read <- ConnectionRouter <- ``.db``). Any other caller: False, for a
    frame lookup and a comparison or two."""
    try:
        frame = sys._getframe(3)
    except ValueError:
        return False
    code = frame.f_code
    if code is _QUERYSET_DB:
        caller = frame.f_back
        if caller is None or caller.f_code is not _QUERYSET_RAW:
            return False
        sql = caller.f_locals.get("raw_query")
    elif code is _RAW_DB:
        sql = getattr(frame.f_locals.get("self"), "raw_query", None)
    else:
        return False
    return sql is not None and writes(sql)


def _address(connection: Any) -> str | None:
    address = getattr(connection, "aurora_address", None) or peer_address(connection.connection)
    return address or connection.settings_dict.get("HOST")


def _connect_quickly(connection: Any, deadline: float) -> None:
    """Connect within ``deadline`` (aurora_backend's ENGINE retries until its connect_deadline,
    Django's pool waits its own ``timeout``: 30 s by default)."""
    pool = getattr(connection, "pool", None)  # Django 5.1+ with OPTIONS["pool"]: psycopg_pool
    if pool is not None:
        # A brand-new pool is built closed (open=False, as Django's): Django opens it in
        # get_new_connection, which has not run yet. open() is idempotent on an open pool.
        pool.open()
        pool.putconn(pool.getconn(timeout=deadline))  # raises PoolTimeout if none can be had
    options = getattr(connection, "aurora_options", None)
    if options is not None and options.connect_deadline > deadline:
        connection.aurora_options = dataclasses.replace(options, connect_deadline=deadline)
        try:
            connection.ensure_connection()
        finally:
            connection.aurora_options = options
    else:
        connection.ensure_connection()


def _new_request(**kwargs: Any) -> None:
    token.clear()
