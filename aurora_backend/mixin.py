"""AuroraWrapperMixin: Aurora-aware connection handling over Django's hook methods.

Put it first in the bases of any PostgreSQL DatabaseWrapper (Django's, PostGIS's, a
metrics backend's): every method calls ``super()``, so behaviours compose.

What it adds, one concern per subpackage (docs/features.md, "Where things live"):

- ``options``: our settings under ``OPTIONS["aurora"]``, parsed once, removed before the driver sees them.
- ``drivers``: the one seam between psycopg2 and psycopg 3.
- ``connection``: connect with retry (``connect``), fresh DNS spread over addresses
  (``resolve``), jittered max age and idle close (``lifetime``), a check before use that
  finds a dead connection before a statement is sent to it (``freshness``), re-run of a
  read whose connection died (``statements``), and session state the app set, never
  closed, replaced or re-run past (``session``, ``session_state``).
- ``errors``: what an error means; a dead connection is dropped as soon as it is seen.
- ``pool``: Django's pool (``OPTIONS["pool"]``) with our connect, checks and healing.
- ``credentials``: IAM tokens and rotating secrets, fetched per physical connection.
- ``topology``: after a failover, the new writer found from aurora_replica_status(), not DNS.
- ``proxy``: behind RDS Proxy, nothing the ENGINE sends pins the session.
- ``transactions`` (``retry_atomic``), ``routing``, ``health``, ``simulator``, ``testing``:
  used by the app, not by this mixin.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.utils import DatabaseErrorWrapper
from django.utils.functional import cached_property

from aurora_backend import bluegreen, credentials, signals, stats
from aurora_backend.connection import keepalive
from aurora_backend.connection.connect import Attempt, connect_with_retry, describe_error
from aurora_backend.connection.freshness import FreshnessMixin, plain_health_hooks
from aurora_backend.connection.lifetime import draw_expiry, reaper
from aurora_backend.connection.state import READERS_PRUNE_AT, ConnectionState
from aurora_backend.connection.statements import _cursor_classes, retrying_cursor_class
from aurora_backend.drivers import in_recovery, input_watch, is_idle, is_named_cursor, peer_address
from aurora_backend.errors import ErrorKind, classify, is_scale_event
from aurora_backend.global_db import forwarding
from aurora_backend.global_db.router import router_for as global_router_for
from aurora_backend.options import OPTIONS_KEY, AuroraOptions
from aurora_backend.pool.config import pool_options
from aurora_backend.pool.mixin import PoolMixin
from aurora_backend.proxy.mode import ProxyModeMixin, pin_free_operations, proxy_enabled, proxy_options, server_instants
from aurora_backend.runtime import Runtime
from aurora_backend.topology import router as topology

logger = logging.getLogger("aurora_backend")


class _HealingErrorWrapper(DatabaseErrorWrapper):
    """Django's error translation, after first dropping a connection the error proved dead."""

    wrapper: Any  # set by DatabaseErrorWrapper.__init__; django-stubs does not declare it

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if exc_type is None:
            return
        if isinstance(exc_value, Exception):
            self.wrapper._aurora_on_driver_error(exc_value)
        super().__exit__(exc_type, exc_value, traceback)


class AuroraWrapperMixin(PoolMixin, FreshnessMixin, ProxyModeMixin):
    """Aurora-aware behaviour for a PostgreSQL ``DatabaseWrapper`` (put it first in the MRO)."""

    #: Address (IP) the current connection went to, or None before the first connection.
    aurora_address: str | None = None
    #: Our settings for this alias.
    aurora_options: AuroraOptions
    #: Everything kept about this wrapper's connection (connection/state.py); the mixins
    #: and collaborators see it through their Protocols.
    aurora: ConnectionState

    # Attributes of Django's wrapper this mixin reads; declared for type checkers.
    alias: str
    connection: Any
    settings_dict: dict[str, Any]
    in_atomic_block: bool
    autocommit: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Django makes a wrapper per alias per thread (``ConnectionHandler``), and a copy for
        tests (``copy()``). Settings are parsed and checked here, once, and the wrapper gets its
        own state object, ``self.aurora`` (connection/state.py)."""
        super().__init__(*args, **kwargs)
        options = AuroraOptions.from_settings(self.alias, self.settings_dict["OPTIONS"])
        self.aurora_proxy_mode = proxy_enabled(options, self.settings_dict)
        self.aurora_options = proxy_options(options, self.settings_dict)
        if self.aurora_proxy_mode:
            pin_free_operations(self.ops)
        # Django's pool (OPTIONS["pool"]): bad settings fail here; built in pool/mixin.py.
        pool_options(self.alias, self.settings_dict)
        self.aurora_runtime = Runtime()
        windows = [t for t in (self.aurora_options.idle_timeout, self.aurora_options.ping_after) if t is not None]
        #: Everything kept about this wrapper's connection (connection/state.py).
        self.aurora = ConnectionState(
            idle_window=min(windows, default=math.inf),
            # Per class, read per cursor: nobody between us and Django's make_cursor (see
            # make_cursor), or its close_if_health_check_failed (see freshness.py).
            plain_make_cursor=_plain_make_cursor(type(self)),
            plain_health_hooks=plain_health_hooks(type(self)),
        )
        forwarding.install(self)  # OPTIONS['aurora']['write_forwarding'] (global_db/forwarding.py)
        # Rotating credentials: checked now, fetched per connection (credentials/login.py).
        credentials.check_settings(self.alias, self.settings_dict, self.aurora_options.credentials)
        if self.aurora_options.credentials is not None:  # dbshell logs in with the fresh credential
            self.client = credentials.credentials_client(self)
        bluegreen.attach(self)  # RDS Blue/Green: per-instance hooks, only when watched

    # ----- connecting ---------------------------------------------------------------

    def get_connection_params(self) -> dict[str, Any]:
        """Django calls it in ``connect()`` (and our pool when it is built): the driver's
        keyword arguments, without ``OPTIONS["aurora"]``, with TCP keepalives."""
        params = super().get_connection_params()
        params.pop(OPTIONS_KEY, None)
        return keepalive.apply(params, self.aurora_options.silent_host_timeout)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        """Django calls it in ``connect()`` for the driver connection (with a pool, a checkout):
        ours is retried and routed; the state starts afresh for the new connection."""
        pooled = self.pool is not None
        connection, address = self._aurora_open(super().get_new_connection, conn_params, pooled)
        self.aurora_address = address or peer_address(connection) or conn_params.get("host")
        now = self.aurora_runtime.clock()
        # With a pool, the pool's max_lifetime ends connections (drawn from max_age: pool/config.py).
        max_age = None if pooled else self.aurora_options.max_age
        self.aurora.new_connection(now, draw_expiry(now, max_age, self.aurora_runtime.random), input_watch(connection))
        return connection

    def _aurora_open(
        self, parent: Callable[[dict[str, Any]], Any], conn_params: dict[str, Any], pooled: bool
    ) -> tuple[Any, str | None]:
        """A driver connection from ``parent`` (Django's get_new_connection) and the address it
        went to (None: unknown): a connect retried up to connect_deadline, or a pool checkout."""
        if pooled:  # a checkout: the pool opened it (and routed it) through _aurora_pool_connect
            # The wrapper's Router first: a sign seen at checkout (a connection handed out dead,
            # stale or on a reader) or later in _aurora_close routes the pool's next connects.
            global_router_for(self, conn_params) or topology.router_for(self, conn_params)
            connection = self._aurora_checkout(parent, conn_params)
            return connection, getattr(connection, "_aurora_address", None)
        else:
            router = global_router_for(self, conn_params) or topology.router_for(self, conn_params)
            try:
                connection, address = connect_with_retry(
                    router.wrap(parent) if router else parent,
                    conn_params,
                    self.aurora_options,
                    self.aurora_runtime,
                    on_retry=self._aurora_connect_retried,
                    endpoint=self._aurora_endpoint(conn_params),
                )
            except Exception:
                stats.incr(self.alias, "connect_failures")  # given up (deadline) or not retryable
                raise
            if router is not None:
                address = router.routed[1] if router.routed else address
                router.learn(connection)
            return connection, address

    def connect(self) -> None:
        """Django calls it from ``ensure_connection()`` when there is no connection: connect
        and run the connect-time setup, then count it, and signal a reconnect with its reason."""
        self._aurora_connect_through_setup()
        state = self.aurora
        reason, state.close_reason = state.close_reason, None
        stats.incr(self.alias, "connections")
        logger.debug("connected %s to %s", self.alias, self.aurora_address)
        if reason is not None:
            stats.incr(self.alias, "reconnects")
            signals.reconnected.send(
                sender=type(self),
                alias=self.alias,
                connection=self,
                reason=reason,
                address=self.aurora_address,
            )
        if self.aurora_options.idle_timeout is not None and self.pool is None:
            # With a pool, its max_idle closes idle connections (a reaper's close would
            # only make the pool open a replacement).
            reaper.register(self, self.aurora_options.idle_timeout)

    def _aurora_connect_through_setup(self) -> None:
        """Django's connect; a new connection that dies in Django's connect-time setup (after
        login: the time zone, the role) is dropped and another opened, like a failed connect.

        Nothing of the app's ran on it yet. (With a pool, the setup runs inside the pool's
        retried connect: pool/mixin.py.)
        """
        start = self.aurora_runtime.clock()
        number = 0
        while True:
            number += 1
            try:
                super().connect()
                return
            except Exception as exc:
                raw = self.connection  # None: the connect itself failed (already retried)
                elapsed = self.aurora_runtime.clock() - start
                if (
                    raw is None
                    or self.pool is not None
                    or number >= _SETUP_ATTEMPTS
                    or elapsed >= self.aurora_options.connect_deadline
                    or classify(exc, raw) not in (ErrorKind.DISCONNECT, ErrorKind.CONNECT_RETRYABLE)
                ):
                    raise
                logger.warning(
                    "connection %r to %s died during connect-time setup: %s; connecting again",
                    self.alias,
                    self.aurora_address,
                    describe_error(exc),
                )
                self._aurora_connect_retried(Attempt(number, exc, 0.0, elapsed, self.aurora_address))
                self._aurora_close("disconnect")

    def _aurora_endpoint(self, params: dict[str, Any]) -> str:
        return "%r (%s:%s)" % (self.alias, params.get("host") or "local socket", params.get("port") or 5432)

    def _aurora_connect_retried(self, attempt: Attempt) -> None:
        stats.incr(self.alias, "connect_retries")
        if is_scale_event(attempt.error):
            self._aurora_scale_event(attempt.error)
        signals.connect_retry.send(
            sender=type(self),
            alias=self.alias,
            connection=self,
            attempt=attempt.number,
            error=attempt.error,
            delay=attempt.delay,
            elapsed=attempt.elapsed,
        )

    # ----- errors -------------------------------------------------------------------

    @cached_property
    def wrap_database_errors(self) -> DatabaseErrorWrapper:
        """Django enters it around every driver call (cursors, commit, rollback, connect):
        ours drops a connection the error proved dead before Django translates the error."""
        return _HealingErrorWrapper(self)

    def _aurora_on_driver_error(self, exc: BaseException) -> None:
        """Drop the connection at once when ``exc`` proves it dead or on a demoted writer."""
        state = self.aurora
        if self.connection is None or state.healing:
            return
        kind = classify(exc, self.connection)
        if kind is ErrorKind.DISCONNECT:
            if is_scale_event(exc):
                self._aurora_scale_event(exc)
            self._aurora_close("disconnect")
            self._aurora_pool_disconnect()  # the pool's other idle connections: checked now
        elif kind is ErrorKind.READ_ONLY:
            # A write reached a read-only server. If it is a demoted writer (a reader now:
            # stale DNS after a failover), only a new connection reaches the new writer. A
            # read-only transaction on a writer is the app's choice: nothing to heal.
            state.suspect_read_only = True
            self._aurora_pool_suspect_read_only()  # the pool's other connections: at checkout
            state.check_at = 0.0  # inside a transaction: look at the next use outside
            if state.holds_state("read_only"):
                self._aurora_announce_kept()  # a new connection would lose the app's session state
            elif not self.in_atomic_block and self.autocommit and is_idle(self.connection):
                state.suspect_read_only = False
                if in_recovery(self.connection):
                    self._aurora_close("read_only")

    def _aurora_close(self, reason: str) -> None:
        router = self.aurora.router
        if router is not None and reason in ("disconnect", "stale", "read_only"):
            router.suspect(reason)  # the instance behind the endpoint may have changed role
        super()._aurora_close(reason)

    def _aurora_scale_event(self, exc: BaseException) -> None:
        stats.incr(self.alias, "scale_events")
        signals.scale_event.send(sender=type(self), alias=self.alias, connection=self, error=exc)

    def _aurora_statement_retried(self, sql: Any, exc: BaseException) -> None:
        stats.incr(self.alias, "statements_retried")
        signals.statement_retried.send(sender=type(self), alias=self.alias, connection=self, sql=sql, error=exc)

    # ----- cursors ------------------------------------------------------------------

    def chunked_cursor(self) -> Any:
        """Django calls it for ``QuerySet.iterator()``: a server-side cursor, registered so
        that it holds the connection while it is read."""
        # Django's only way to a server-side (named) cursor: QuerySet.iterator().
        wrapped = super().chunked_cursor()
        if is_named_cursor(wrapped.cursor):  # see ConnectionState.cursors_open
            self.aurora.named_cursors.add(wrapped.cursor)
            self.aurora.readers.pop(id(wrapped.cursor), None)  # not a client cursor
        return wrapped

    def make_cursor(self, cursor: Any) -> Any:
        """Django calls it (``_prepare_cursor``) for every cursor when queries are not logged:
        the driver cursor, registered (its unread rows hold the connection), in our
        CursorWrapper class (statements.py: re-run of a statement whose connection died)."""
        # Its unread rows will hold the connection (session.py): state.note_cursor, inlined.
        state = self.aurora
        readers = state.readers
        if len(readers) < READERS_PRUNE_AT:
            readers[id(cursor)] = _weak(cursor)
        else:
            state.note_cursor(cursor)
        if state.tz_differs:  # proxy mode, the server's time zone is not Django's
            server_instants(self, cursor)
        if state.plain_make_cursor:  # nobody between us and Django: build it directly
            return _RetryingCursorWrapper(cursor, self)
        wrapped = super().make_cursor(cursor)
        wrapped.__class__ = _cursor_classes.get(type(wrapped)) or retrying_cursor_class(type(wrapped))
        return wrapped

    def make_debug_cursor(self, cursor: Any) -> Any:
        """Django calls it instead of ``make_cursor`` when queries are logged (DEBUG, or
        ``force_debug_cursor``): the same, over Django's CursorDebugWrapper."""
        self.aurora.note_cursor(cursor)
        if self.aurora.tz_differs:
            server_instants(self, cursor)
        wrapped = super().make_debug_cursor(cursor)
        wrapped.__class__ = retrying_cursor_class(type(wrapped))
        return wrapped


#: Connects whose setup may die (each connect is itself retried): a bound, not a policy.
_SETUP_ATTEMPTS = 5

_RetryingCursorWrapper = retrying_cursor_class(CursorWrapper)
_weak = weakref.ref
_plain: dict[type, bool] = {}


def _plain_make_cursor(klass: type) -> bool:
    """True when the make_cursor after AuroraWrapperMixin in ``klass``'s MRO is Django's
    own (it only builds a CursorWrapper), so the cursor can be built in one step."""
    plain = _plain.get(klass)
    if plain is None:
        mro = klass.__mro__
        after = mro[mro.index(AuroraWrapperMixin) + 1 :]
        owner = next((k for k in after if "make_cursor" in vars(k)), None)
        plain = _plain[klass] = owner is BaseDatabaseWrapper
    return plain
