"""AuroraWrapperMixin: Aurora-aware connection handling over Django's hook methods.

Put it first in the bases of any PostgreSQL DatabaseWrapper (Django's, PostGIS's, a
metrics backend's): every method calls ``super()``, so behaviours compose.

What it adds, each in its own module:

- ``options``: our settings under ``OPTIONS["aurora"]``, parsed once, removed before psycopg2.
- ``connect``: connect with retry across resumes, failovers and scale points.
- ``resolve``: fresh DNS per connection, spread over the endpoint's addresses.
- ``errors``: what an error means; a dead connection is dropped as soon as it is seen.
- ``statements``: a read whose connection died outside a transaction is re-run.
- ``lifetime``: jittered max age, idle close and a stale-connection check before reuse.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from typing import Any, Callable, Dict, Optional

from django.db.utils import DatabaseErrorWrapper
from django.utils.functional import cached_property

from aurora_backend import signals, stats
from aurora_backend.connect import Attempt, connect_with_retry
from aurora_backend.driver import in_recovery, input_watch, is_idle, peer_address, transaction_open
from aurora_backend.errors import ErrorKind, classify, connection_is_closed, is_scale_event
from aurora_backend.lifetime import draw_expiry, reaper, reason_to_close
from aurora_backend.options import OPTIONS_KEY, AuroraOptions
from aurora_backend.runtime import Runtime
from aurora_backend.statements import retrying_cursor_class
from aurora_backend.wire import pending_error

logger = logging.getLogger("aurora_backend")


class _HealingErrorWrapper(DatabaseErrorWrapper):
    """Django's error translation, after first dropping a connection the error proved dead."""

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if exc_type is None:
            return
        if isinstance(exc_value, Exception):
            self.wrapper._aurora_on_driver_error(exc_value)
        super().__exit__(exc_type, exc_value, traceback)


class AuroraWrapperMixin:
    """Aurora-aware behaviour for a PostgreSQL ``DatabaseWrapper`` (put it first in the MRO)."""

    #: Address (IP) the current connection went to, or None before the first connection.
    aurora_address: Optional[str] = None
    #: Our settings for this alias.
    aurora_options: AuroraOptions

    # Attributes of Django's wrapper this mixin reads; declared for type checkers.
    alias: str
    connection: Any
    settings_dict: Dict[str, Any]
    in_atomic_block: bool
    autocommit: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.aurora_options = AuroraOptions.from_settings(self.alias, self.settings_dict["OPTIONS"])
        self.aurora_runtime = Runtime()
        self._aurora_lock = threading.Lock()
        self._aurora_expires_at: Optional[float] = None
        self._aurora_last_used = 0.0
        self._aurora_connected_at = 0.0
        self._aurora_close_reason: Optional[str] = None
        self._aurora_healing = False
        self._aurora_suspect_read_only = False
        # Before _aurora_check_at only the socket needs a look (see close_if_health_check_failed).
        self._aurora_check_at = 0.0
        windows = [t for t in (self.aurora_options.idle_timeout, self.aurora_options.ping_after) if t is not None]
        self._aurora_idle_window = min(windows, default=math.inf)
        self._aurora_input_waiting: Callable[[], bool] = lambda: True
        # Open server-side cursors: a slow consumer uses its connection between statements.
        self._aurora_named_cursors: "weakref.WeakSet[Any]" = weakref.WeakSet()

    # ----- connecting ---------------------------------------------------------------

    def get_connection_params(self) -> Dict[str, Any]:
        params = super().get_connection_params()  # type: ignore[misc]
        params.pop(OPTIONS_KEY, None)
        return params

    def get_new_connection(self, conn_params: Dict[str, Any]) -> Any:
        parent = super().get_new_connection  # type: ignore[misc]
        connection, address = connect_with_retry(
            parent, conn_params, self.aurora_options, self.aurora_runtime,
            on_retry=self._aurora_connect_retried, endpoint=self._aurora_endpoint(conn_params),
            operational_error=self.Database.OperationalError,  # type: ignore[attr-defined]
        )
        self.aurora_address = address or peer_address(connection) or conn_params.get("host")
        now = self.aurora_runtime.clock()
        self._aurora_connected_at = self._aurora_last_used = now
        self._aurora_input_waiting = input_watch(connection)
        self._aurora_expires_at = draw_expiry(now, self.aurora_options.max_age, self.aurora_runtime.random)
        self._aurora_check_at = self._aurora_next_check(now)
        return connection

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        reason, self._aurora_close_reason = self._aurora_close_reason, None
        stats.incr(self.alias, "connections")
        logger.debug("connected %s to %s", self.alias, self.aurora_address)
        if reason is not None:
            stats.incr(self.alias, "reconnects")
            signals.reconnected.send(
                sender=type(self), alias=self.alias, connection=self, reason=reason,
                address=self.aurora_address,
            )
        if self.aurora_options.idle_timeout is not None:
            reaper.register(self, self.aurora_options.idle_timeout)

    def _aurora_endpoint(self, params: Dict[str, Any]) -> str:
        return "%r (%s:%s)" % (self.alias, params.get("host") or "local socket", params.get("port") or 5432)

    def _aurora_connect_retried(self, attempt: Attempt) -> None:
        stats.incr(self.alias, "connect_retries")
        if is_scale_event(attempt.error):
            self._aurora_scale_event(attempt.error)
        signals.connect_retry.send(
            sender=type(self), alias=self.alias, connection=self, attempt=attempt.number,
            error=attempt.error, delay=attempt.delay, elapsed=attempt.elapsed,
        )

    # ----- checks before use --------------------------------------------------------

    def close_if_health_check_failed(self) -> None:
        # Django's own pre-use hook: it runs before every cursor and when atomic() starts a
        # transaction (set_autocommit), and nowhere inside one.
        connection = self.connection
        # The driver's own flag too: inside connect(), set_autocommit() runs this hook on a
        # new connection that is not in autocommit yet (a ping would open a transaction).
        if connection is not None and not self.in_atomic_block and self.autocommit and connection.autocommit:
            with self._aurora_lock:  # the idle reaper reads _aurora_last_used under it
                now = self.aurora_runtime.clock()
                if now < self._aurora_check_at and not connection.closed and not self._aurora_input_waiting():
                    reason = None  # the usual case: young, recently used, nothing on the socket
                else:
                    reason = self._aurora_full_check(now)
                self._aurora_last_used = now
                # _aurora_next_check(now), inlined: this is the hot path of every query.
                horizon, expires = now + self._aurora_idle_window, self._aurora_expires_at
                self._aurora_check_at = horizon if expires is None or expires > horizon else expires
            if reason is not None:
                self._aurora_close(reason)
        super().close_if_health_check_failed()  # type: ignore[misc]

    def close_if_unusable_or_obsolete(self) -> None:
        if self.connection is not None and not self.in_atomic_block:
            with self._aurora_lock:
                reason = self._aurora_reason_to_close(self.aurora_runtime.clock())
            if reason is not None:
                self._aurora_close(reason)
                return
        super().close_if_unusable_or_obsolete()  # type: ignore[misc]

    def _aurora_reason_to_close(self, now: float) -> Optional[str]:
        connection = self.connection
        if connection_is_closed(connection):
            return "disconnect"
        reason = reason_to_close(now, self._aurora_expires_at, self._aurora_last_used, self.aurora_options.idle_timeout)
        if reason is not None and (transaction_open(connection) or self._aurora_cursors_open()):
            return None  # expiry and idle close wait for a raw transaction or an iterator to end
        return reason

    def _aurora_cursors_open(self) -> bool:
        """A server-side cursor (QuerySet.iterator()) is still being read on this connection."""
        return any(not cursor.closed for cursor in list(self._aurora_named_cursors))

    def _aurora_full_check(self, now: float) -> Optional[str]:
        """Why a connection about to be used outside a transaction must be closed, if it must."""
        reason = self._aurora_reason_to_close(now)
        if reason is not None or transaction_open(self.connection):
            # A transaction opened with a raw BEGIN belongs to the app: no ping inside it and
            # no silent reconnect; its next statement reports a dead connection, as Django's.
            return reason
        if self._aurora_suspect_read_only:
            self._aurora_suspect_read_only = False
            if in_recovery(self.connection):
                return "read_only"
        if self._aurora_looks_stale(now):
            self._aurora_note_pending_error()
            reason = None if self._aurora_ping() else "stale"
        return reason

    def _aurora_next_check(self, now: float) -> float:
        """Until then, a connection used at ``now`` needs no check but the socket poll."""
        horizon = now + self._aurora_idle_window
        expires = self._aurora_expires_at
        return horizon if expires is None or expires > horizon else expires

    def _aurora_looks_stale(self, now: float) -> bool:
        """Idle past ``ping_after``, or the server sent something while we were idle.

        An idle connection outside a transaction has nothing to read unless the server
        spoke: a FATAL before closing (scale event, failover), or EOF. One poll of the
        socket finds that before a statement is sent, so even a write is then safe to
        send on a new connection.
        """
        ping_after = self.aurora_options.ping_after
        if ping_after is not None and now - self._aurora_last_used >= ping_after:
            return True
        return self._aurora_input_waiting()

    def _aurora_ping(self) -> bool:
        """``SELECT 1`` on the driver connection: like Django's is_usable(), but our own, so
        that code counting or patching Django's health checks does not see ours."""
        try:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:
            return False
        return True

    def _aurora_note_pending_error(self) -> None:
        """Count a scale event whose FATAL waits, unread, on the idle connection."""
        fields = pending_error(self.connection)
        if fields and fields.get("M"):
            error = self.Database.OperationalError(fields["M"])  # type: ignore[attr-defined]
            logger.info("server closed %r: %s %s", self.alias, fields.get("C", ""), fields["M"])
            if is_scale_event(error):
                self._aurora_scale_event(error)

    def _aurora_close(self, reason: str) -> None:
        """Close on purpose; the next use opens a new connection (and resolves DNS again)."""
        # The reaper may have closed the driver connection first and said why.
        reason = self._aurora_close_reason or reason
        age = self.aurora_runtime.clock() - self._aurora_connected_at
        logger.info("closing connection %r to %s (%s, age %.1fs)", self.alias, self.aurora_address, reason, age)
        if reason == "expired":
            stats.incr(self.alias, "expired")
        elif reason == "idle" and self.connection is not None and not self.connection.closed:
            stats.incr(self.alias, "idle_closed")  # (the reaper counted those it closed)
        signals.connection_closed.send(sender=type(self), alias=self.alias, connection=self, reason=reason)
        self._aurora_close_reason = reason
        self._aurora_healing = True
        try:
            self.close()  # type: ignore[attr-defined]
        except Exception:  # closing a dead connection may complain; it is gone either way
            self.connection = None
        finally:
            self._aurora_healing = False

    def _aurora_reap_if_idle(self) -> bool:
        """Called by the idle reaper thread: close the driver connection if idle."""
        idle_timeout = self.aurora_options.idle_timeout
        # Never wait for the owner: it may be pinging a connection that hangs.
        if idle_timeout is None or not self._aurora_lock.acquire(blocking=False):
            return False
        try:
            connection = self.connection
            if (
                connection is None or self.in_atomic_block
                or not self.autocommit or connection_is_closed(connection)
                or self.aurora_runtime.clock() - self._aurora_last_used < idle_timeout
                or not is_idle(connection) or self._aurora_cursors_open()
            ):
                return False
            logger.info("closing idle connection %r to %s", self.alias, self.aurora_address)
            stats.incr(self.alias, "idle_closed")
            self._aurora_close_reason = "idle"
            try:
                connection.close()
            except Exception:
                pass
            return True
        finally:
            self._aurora_lock.release()

    # ----- errors -------------------------------------------------------------------

    @cached_property
    def wrap_database_errors(self) -> DatabaseErrorWrapper:
        return _HealingErrorWrapper(self)

    def _aurora_on_driver_error(self, exc: BaseException) -> None:
        """Drop the connection at once when ``exc`` proves it dead or on a demoted writer."""
        if self.connection is None or self._aurora_healing:
            return
        kind = classify(exc, self.connection)
        if kind is ErrorKind.DISCONNECT:
            if is_scale_event(exc):
                self._aurora_scale_event(exc)
            self._aurora_close("disconnect")
        elif kind is ErrorKind.READ_ONLY:
            # A write reached a read-only server. If it is a demoted writer (a reader now:
            # stale DNS after a failover), only a new connection reaches the new writer. A
            # read-only transaction on a writer is the app's choice: nothing to heal.
            self._aurora_suspect_read_only = True
            self._aurora_check_at = 0.0  # inside a transaction: look at the next use outside
            if not self.in_atomic_block and self.autocommit and is_idle(self.connection):
                self._aurora_suspect_read_only = False
                if in_recovery(self.connection):
                    self._aurora_close("read_only")

    def _aurora_scale_event(self, exc: BaseException) -> None:
        stats.incr(self.alias, "scale_events")
        signals.scale_event.send(sender=type(self), alias=self.alias, connection=self, error=exc)

    def _aurora_statement_retried(self, sql: Any, exc: BaseException) -> None:
        stats.incr(self.alias, "statements_retried")
        signals.statement_retried.send(sender=type(self), alias=self.alias, connection=self, sql=sql, error=exc)

    # ----- cursors ------------------------------------------------------------------

    def make_cursor(self, cursor: Any) -> Any:
        if cursor.name:  # a server-side cursor: see _aurora_reap_if_idle
            self._aurora_named_cursors.add(cursor)
        wrapped = super().make_cursor(cursor)  # type: ignore[misc]
        wrapped.__class__ = retrying_cursor_class(type(wrapped))
        return wrapped

    def make_debug_cursor(self, cursor: Any) -> Any:
        if cursor.name:
            self._aurora_named_cursors.add(cursor)
        wrapped = super().make_debug_cursor(cursor)  # type: ignore[misc]
        wrapped.__class__ = retrying_cursor_class(type(wrapped))
        return wrapped
