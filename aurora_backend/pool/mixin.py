"""PoolMixin: Django's pool (``OPTIONS["pool"]``) with our connect, checks and healing.

Part of :class:`~aurora_backend.mixin.AuroraWrapperMixin`. With a pool, Django's
``get_new_connection`` checks a connection out (``getconn``) and ``close`` returns it
(``putconn``). Here:

- the pool is built by us (``pool/config.py``) and left where Django looks for it;
- a connection checked out is checked like ours before Django gets it: closed, a pending
  FATAL or EOF on the socket (one poll), unused past ``ping_after`` (``SELECT 1``), and a
  demoted writer (``pg_is_in_recovery()``) once another connection of the pool hit 25006.
  A failing one is closed, so the pool drops it, and the next is checked;
- a disconnect on one connection makes the pool check all of its idle ones in the
  background (``pool.check()``), so the dead are dropped together, not handed out one by one;
- a connection we close on purpose (dead, stale, demoted writer) is closed for real, so
  the pool does not take it back.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db.backends.base.base import NO_DB_ALIAS

from aurora_backend import drivers, stats
from aurora_backend.connection.connect import connect_with_retry
from aurora_backend.connection.state import RouterState
from aurora_backend.drivers import in_recovery, input_watch, peer_address
from aurora_backend.global_db.router import router_for as global_router_for
from aurora_backend.pool.config import (
    POOL_KEY,
    checkout_slice,
    connection_class,
    pool_arguments,
    pool_class,
    pool_options,
)
from aurora_backend.topology import router as topology

if TYPE_CHECKING:  # pragma: no cover
    # Checked as what it is mixed into; at run time a plain mixin (AuroraWrapperMixin's MRO).
    from django.db.backends.postgresql.base import DatabaseWrapper as _WrapperBase

else:
    _WrapperBase = object

logger = logging.getLogger("aurora_backend")

_sweeping: weakref.WeakSet[Any] = weakref.WeakSet()
_sweep_lock = threading.Lock()


def sweep(pool: Any) -> bool:
    """Check the pool's idle connections in a background thread (one sweep at a time)."""
    with _sweep_lock:
        if pool in _sweeping:
            return False
        _sweeping.add(pool)

    def run() -> None:
        try:
            pool.check()
        except Exception:  # a closed pool, a server still down: the next checkout tells
            logger.debug("pool check of %r failed", getattr(pool, "name", pool), exc_info=True)
        finally:
            with _sweep_lock:
                _sweeping.discard(pool)

    threading.Thread(target=run, name="aurora_backend-pool-check", daemon=True).start()
    return True


def pool_stats(pool: Any) -> dict[str, int] | None:
    """psycopg_pool's figures: pool_size, pool_available, requests_waiting, errors, ..."""
    if pool is None:
        return None
    try:
        return dict(pool.get_stats())
    except Exception:
        return None


class PoolMixin(_WrapperBase):
    """Django's pool, Aurora-safe (see the module doc)."""

    alias: str
    settings_dict: dict[str, Any]
    aurora_options: Any
    aurora_runtime: Any
    aurora: RouterState
    _connection_pools: dict[str, Any]

    if TYPE_CHECKING:  # pragma: no cover
        # Other mixins' methods, reached through AuroraWrapperMixin's MRO.

        def _aurora_endpoint(self, params: dict[str, Any]) -> str: ...  # AuroraWrapperMixin's

        def _aurora_count_pending_error(self, connection: Any) -> None: ...  # FreshnessMixin's

    @property
    def pool(self) -> Any:
        # As Django: OPTIONS["pool"] is read on each access and validated when the pool is
        # built, so settings changed after __init__ (Django's own tests do) take effect.
        if self.alias == NO_DB_ALIAS or not self.settings_dict["OPTIONS"].get(POOL_KEY):
            return None
        pools = self._connection_pools
        pool = pools.get(self.alias)
        if pool is None:
            options = pool_options(self.alias, self.settings_dict) or {}
            # Two threads may build one each: the first stored wins (as in Django); neither
            # is open yet, so the other is simply dropped.
            pool = pools.setdefault(self.alias, self._aurora_build_pool(options))
        return pool

    def _aurora_build_pool(self, options: dict[str, Any]) -> Any:
        """What Django's ``pool`` builds, plus our connection class, lifetimes and defaults."""
        connect_kwargs = self.get_connection_params()
        connect_kwargs["autocommit"] = True  # as Django: it sets autocommit later on
        klass = pool_class()
        arguments = pool_arguments(options, self.aurora_options)
        # getconn()'s timeout is the app's (psycopg_pool's 30 s unless set): a busy pool's wait
        # is its setting. Only a checkout that meets a connect riding out a resume waits
        # longer, up to that connect's deadline (see _getconn).
        pool = klass(
            kwargs=connect_kwargs,
            open=False,
            configure=None,  # Django's setup runs inside our retried connect: _aurora_pool_connect
            check=klass.check_connection if self.settings_dict.get("CONN_HEALTH_CHECKS") else None,
            connection_class=connection_class(self._aurora_pool_connect),
            **arguments,
        )
        pool.aurora_max_age = None if "max_lifetime" in options else self.aurora_options.max_age
        pool.aurora_random = self.aurora_runtime.random
        pool.aurora_suspect_since = 0.0  # a connection saw 25006: check roles at checkout
        pool.aurora_last_error = None  # the last failed connect, while connecting fails
        pool.aurora_resuming = set()  # threads whose connect is being retried (set ops are atomic)
        return pool

    def _aurora_pool_connect(self, parent: Callable[[dict[str, Any]], Any], kwargs: dict[str, Any]) -> Any:
        """Every physical connection the pool opens: retry, deadline, fresh address choice."""
        pool = self._connection_pools.get(self.alias)
        me = threading.get_ident()

        def retried(attempt: Any) -> None:
            if pool is not None:  # a connect meeting a resuming cluster: checkouts wait for it
                pool.aurora_resuming.add(me)
            self._aurora_connect_retried(attempt)  # type: ignore[attr-defined]

        # Topology routing (global_db/router.py for a global database, else topology/router.py)
        # per connect: after a failover sign, to the instance that says it is the writer,
        # with this attempt's parameters (fresh credentials included), not the endpoint's
        # stale DNS.
        router = global_router_for(self, kwargs, own=True) or topology.router_for(self, kwargs, own=True)
        routed = router.wrap(parent) if router is not None else parent
        try:
            connection, address = connect_with_retry(
                lambda params: self._aurora_set_up(routed(params)),
                kwargs,
                self.aurora_options,
                self.aurora_runtime,
                on_retry=retried,
                endpoint=self._aurora_endpoint(kwargs),
            )
        except Exception as exc:
            stats.incr(self.alias, "connect_failures")  # one of the pool's connects, given up
            if pool is not None:  # why getconn() will time out: told to the waiting request
                pool.aurora_last_error = exc
            raise
        finally:
            if pool is not None:
                pool.aurora_resuming.discard(me)
        if pool is not None:
            pool.aurora_last_error = None
        if router is not None:
            address = router.routed[1] if router.routed else address
            router.learn(connection)
        connection._aurora_address = address or peer_address(connection)
        connection._aurora_used_at = connection._aurora_role_checked_at = self.aurora_runtime.clock()
        return connection

    def _aurora_set_up(self, connection: Any) -> Any:
        """Django's connect-time setup (time zone, role) of a new pooled connection, as part
        of the connect: a connection that dies in it is one more failed connect attempt."""
        try:
            self._configure_connection(connection)  # type: ignore[attr-defined]  # Django 5.1+, not in django-stubs
        except BaseException:
            connection.close()
            raise
        return connection

    def _aurora_checkout(self, parent: Callable[[dict[str, Any]], Any], conn_params: dict[str, Any]) -> Any:
        """Django's checkout (``getconn``), repeated while the connection handed out is bad."""
        pool = self.pool
        aurora = self.aurora_options
        wait = _Wait(self.aurora_runtime.clock, aurora.connect_deadline + aurora.connect_timeout, pool)
        for _ in range(pool.max_size + 1):
            connection = _getconn(pool, parent, conn_params, wait)
            reason = self._aurora_checkout_problem(pool, connection)
            if reason is None:
                return connection
            logger.info("pool of %r handed out a %s connection: dropped", self.alias, reason)
            router = self.aurora.router
            if router is not None:  # the instance behind the endpoint may have changed role
                router.suspect(reason)
            _drop(pool, connection)
            sweep(pool)
        return _getconn(pool, parent, conn_params, wait)  # every one was bad: the pool's check decides

    def _aurora_checkout_problem(self, pool: Any, connection: Any) -> str | None:
        now = self.aurora_runtime.clock()
        if drivers.is_closed(connection):
            return "disconnect"
        used_at = getattr(connection, "_aurora_used_at", now)
        connection._aurora_used_at = now
        ping_after = self.aurora_options.ping_after
        stale = input_watch(connection)() or (ping_after is not None and now - used_at >= ping_after)
        if stale:
            self._aurora_count_pending_error(connection)
            if not _ping(connection):
                return "stale"
        if getattr(connection, "_aurora_role_checked_at", 0.0) < pool.aurora_suspect_since:
            connection._aurora_role_checked_at = now
            if in_recovery(connection):
                return "read_only"
        return None

    def _aurora_pool_suspect_read_only(self) -> None:
        pool = self.pool
        if pool is not None:
            pool.aurora_suspect_since = self.aurora_runtime.clock()

    def _aurora_pool_disconnect(self) -> None:
        pool = self.pool
        if pool is not None:
            sweep(pool)

    def _aurora_pool_release_dead(self, reason: str) -> None:
        """Before Django returns the connection to the pool: close it for real unless it is
        merely idle, so the pool drops it instead of handing it out again."""
        connection = getattr(self, "connection", None)
        if reason != "idle" and connection is not None and self.pool is not None:
            try:
                connection.close()
            except Exception:
                pass


#: A checkout waits in slices this long at most, to notice a connect that failed for good
#: (the pool's getconn() would wait out its whole timeout) or one that is riding out a resume.
CHECKOUT_SLICE = 1.0


class _Wait:
    """How long one checkout waits: the pool's ``timeout`` (the app's), or, while one of the
    pool's connects is being retried (a resuming cluster), up to ``longest`` from its start;
    not past a connect that failed for good."""

    def __init__(self, clock: Callable[[], float], longest: float, pool: Any) -> None:
        self.clock = clock
        now = clock()
        self.until, self.resume_until = now + pool.timeout, now + longest

    def slice(self, pool: Any) -> float:
        end = self.resume_until if pool.aurora_resuming else self.until
        return max(0.001, min(CHECKOUT_SLICE, end - self.clock()))

    def more(self, pool: Any, last_error: BaseException | None) -> bool:
        if pool.aurora_resuming:
            return self.clock() < self.resume_until
        if last_error is not None:
            return False  # connecting failed for good (past connect_deadline): say why now
        return self.clock() < self.until


def _getconn(pool: Any, parent: Callable[[dict[str, Any]], Any], conn_params: dict[str, Any], wait: _Wait) -> Any:
    """Django's checkout, within the pool's own ``timeout`` (the app's), waited in slices:
    past it, again while a connect of the pool is being retried (a resuming cluster), up to
    ``connect_deadline``. When the pool has no connection to give because connecting failed,
    the connect error itself (e.g. ClusterUnavailable past connect_deadline, a wrong
    password) rather than psycopg_pool's bare "couldn't get a connection"."""
    from psycopg_pool import PoolTimeout

    while True:
        checkout_slice.timeout = wait.slice(pool)
        try:
            return parent(conn_params)
        except PoolTimeout as timeout:
            # Read once: a connect in the pool's threads may clear it at any moment, and the
            # error raised must be the one that ended the wait.
            last = getattr(pool, "aurora_last_error", None)
            if not wait.more(pool, last):
                _raise_connect_error(last, timeout)
        finally:
            checkout_slice.timeout = None


def _raise_connect_error(last: BaseException | None, timeout: BaseException) -> None:
    if last is None:
        raise timeout
    try:
        error = type(last)(str(last))
    except Exception:
        raise timeout from last
    raise error from last


def _ping(connection: Any) -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _drop(pool: Any, connection: Any) -> None:
    """Close a checked-out connection and give it back: the pool replaces it."""
    try:
        connection.close()
    except Exception:
        pass
    try:
        pool.putconn(connection)
    except Exception:
        logger.debug("pool would not take back a closed connection", exc_info=True)
