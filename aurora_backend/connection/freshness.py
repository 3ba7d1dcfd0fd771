"""FreshnessMixin: before a connection is used outside a transaction, make sure it is fresh.

Part of :class:`~aurora_backend.mixin.AuroraWrapperMixin` (which sets the state read
here). Django calls ``close_if_health_check_failed`` before every cursor and when
``atomic()`` starts a transaction; this is where an expired, idle, closed or dead
connection is closed first, so the next use opens a new one (and resolves DNS again).
The idle reaper thread (``lifetime.py``) closes idle connections of quiet processes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aurora_backend import signals, stats
from aurora_backend.connection.lifetime import reason_to_close
from aurora_backend.connection.session import SessionMixin
from aurora_backend.connection.state import ConnectionState
from aurora_backend.connection.wire import pending_error
from aurora_backend.drivers import in_recovery, is_idle, transaction_open
from aurora_backend.errors import connection_is_closed, is_scale_event

logger = logging.getLogger("aurora_backend")


class FreshnessMixin(SessionMixin):
    """Expiry, idle close, and dead-connection detection before use (see the module doc)."""

    # Django's, and AuroraWrapperMixin's (set in its __init__).
    connection: Any
    alias: str
    in_atomic_block: bool
    autocommit: bool
    aurora_address: str | None
    aurora_options: Any
    aurora_runtime: Any
    aurora: ConnectionState
    Database: Any  # the driver module (Django's DatabaseWrapper.Database)
    health_check_enabled: bool  # Django's (5.1+), not in django-stubs
    health_check_done: bool

    if TYPE_CHECKING:  # pragma: no cover
        # Other mixins' methods, reached through AuroraWrapperMixin's MRO.

        def _aurora_scale_event(self, exc: BaseException) -> None: ...  # AuroraWrapperMixin's

    def close_if_health_check_failed(self) -> None:
        """Django calls it before every cursor (``_cursor``) and when ``atomic()`` starts a
        transaction (``set_autocommit``), never inside one: close the connection here if it
        is expired, idle, closed, dead or on a demoted writer, so the next use opens a new one."""
        connection = self.connection
        state = self.aurora
        if connection is not None and not self.in_atomic_block and self.autocommit:
            with state.lock:  # the idle reaper reads last_used under it
                now = self.aurora_runtime.clock()
                if now < state.check_at and not connection.closed and not state.input_waiting():
                    reason = None  # the usual case: young, recently used, nothing on the socket
                elif not connection.autocommit:
                    # The driver's own flag: inside connect(), set_autocommit() runs this hook on
                    # a new connection not in autocommit yet (a ping would open a transaction).
                    reason = None
                else:
                    # At least once per idle window (from the check, not from each use: the
                    # check itself reads last_used), and whenever the socket has news.
                    reason = self._aurora_full_check(now)
                    state.check_at = state.next_check(now)
                state.last_used = now
            if reason is not None:
                self._aurora_close(reason)
            elif state.kept_news:  # kept for session state: say so, outside the lock
                self._aurora_announce_kept()
        # Django's own hooks after ours (postgresql's, then the base one) do nothing unless
        # CONN_HEALTH_CHECKS asks for a check not yet done: then, or with any other hook in
        # between (another mixin), they run. Skipping them saves three frames per cursor.
        if not state.plain_health_hooks or (self.health_check_enabled and not self.health_check_done):
            super().close_if_health_check_failed()  # type: ignore[misc]

    def close_if_unusable_or_obsolete(self) -> None:
        """Django calls it at the start and end of each request (``request_started`` and
        ``request_finished``): close an expired or idle connection there, as well as
        Django's own CONN_MAX_AGE and errors-occurred checks (``super()``)."""
        if self.connection is not None and not self.in_atomic_block:
            with self.aurora.lock:
                reason = self._aurora_reason_to_close(self.aurora_runtime.clock())
            if reason is not None:
                self._aurora_close(reason)
                return
            if self.aurora.kept_news:
                self._aurora_announce_kept()
        super().close_if_unusable_or_obsolete()  # type: ignore[misc]

    def _aurora_reason_to_close(self, now: float) -> str | None:
        connection = self.connection
        if connection_is_closed(connection):
            return "disconnect"
        state = self.aurora
        reason = reason_to_close(now, state.expires_at, state.last_used, self.aurora_options.idle_timeout)
        if reason is not None and (transaction_open(connection) or state.cursors_open() or state.holds_state(reason)):
            return None  # expiry and idle close wait for a raw transaction, an iterator or session state to end
        return reason

    def _aurora_full_check(self, now: float) -> str | None:
        """Why a connection about to be used outside a transaction must be closed, if it must."""
        state = self.aurora
        reason = self._aurora_reason_to_close(now)
        if reason is not None or transaction_open(self.connection) or state.holds_state():
            # A transaction opened with a raw BEGIN, or session state, belongs to the app: no
            # ping and no silent reconnect; its next statement reports a dead connection, as Django's.
            return reason
        if state.suspect_read_only:
            state.suspect_read_only = False
            if in_recovery(self.connection):
                return "read_only"
        if self._aurora_looks_stale(now):
            self._aurora_note_pending_error()
            reason = None if self._aurora_ping() else "stale"
        return reason

    def _aurora_looks_stale(self, now: float) -> bool:
        """Idle past ``ping_after``, or the server sent something while we were idle.

        An idle connection outside a transaction has nothing to read unless the server
        spoke: a FATAL before closing (scale event, failover), or EOF. One poll of the
        socket finds that before a statement is sent, so even a write is then safe to
        send on a new connection.
        """
        ping_after = self.aurora_options.ping_after
        if ping_after is not None and now - self.aurora.last_used >= ping_after:
            return True
        return self.aurora.input_waiting()

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
        self._aurora_count_pending_error(self.connection)

    def _aurora_count_pending_error(self, connection: Any) -> None:
        fields = pending_error(connection)
        if fields and fields.get("M"):
            error = self.Database.OperationalError(fields["M"])
            logger.info("server closed %r: %s %s", self.alias, fields.get("C", ""), fields["M"])
            if is_scale_event(error):
                self._aurora_scale_event(error)

    def _aurora_close(self, reason: str) -> None:
        """Close on purpose; the next use opens a new connection (and resolves DNS again)."""
        state = self.aurora
        # The reaper may have closed the driver connection first and said why.
        reason = state.close_reason or reason
        age = self.aurora_runtime.clock() - state.connected_at
        logger.info("closing connection %r to %s (%s, age %.1fs)", self.alias, self.aurora_address, reason, age)
        if reason == "expired":
            stats.incr(self.alias, "expired")
        elif reason == "idle" and self.connection is not None and not self.connection.closed:
            stats.incr(self.alias, "idle_closed")  # (the reaper counted those it closed)
        signals.connection_closed.send(sender=type(self), alias=self.alias, connection=self, reason=reason)
        state.close_reason = reason
        state.healing = True
        self._aurora_pool_release_dead(reason)  # type: ignore[attr-defined]
        try:
            self.close()  # type: ignore[attr-defined]
        except Exception:  # closing a dead connection may complain; it is gone either way
            self.connection = None
        finally:
            state.healing = False

    def _aurora_reap_if_idle(self) -> bool:
        """Called by the idle reaper thread: close the driver connection if idle."""
        idle_timeout = self.aurora_options.idle_timeout
        state = self.aurora
        lock = state.lock
        # Never wait for the owner: it may be pinging a connection that hangs.
        if idle_timeout is None or not lock.acquire(blocking=False):
            return False
        kept = False
        try:
            connection = self.connection
            if (
                connection is None
                or self.in_atomic_block
                or not self.autocommit
                or connection_is_closed(connection)
                or self.aurora_runtime.clock() - state.last_used < idle_timeout
                or not is_idle(connection)
                or state.cursors_open()
            ):
                return False
            if state.holds_state("idle"):
                kept = True
                return False
            logger.info("closing idle connection %r to %s", self.alias, self.aurora_address)
            stats.incr(self.alias, "idle_closed")
            state.close_reason = "idle"
            try:
                connection.close()
            except Exception:
                pass
            return True
        finally:
            lock.release()
            if kept and state.kept_news:
                self._aurora_announce_kept()


#: Per DatabaseWrapper class: only Django's own close_if_health_check_failed after ours.
_plain_hooks: dict[type, bool] = {}


def _django_hooks() -> set[Any]:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper

    hooks = {BaseDatabaseWrapper.__dict__["close_if_health_check_failed"]}
    own = PostgresWrapper.__dict__.get("close_if_health_check_failed")  # Django 5.1+: "if self.pool: return"
    if own is not None:
        hooks.add(own)
    return hooks


def plain_health_hooks(klass: type) -> bool:
    """True when every close_if_health_check_failed after FreshnessMixin in ``klass``'s MRO
    is one of Django's own (which return at once without CONN_HEALTH_CHECKS)."""
    plain = _plain_hooks.get(klass)
    if plain is None:
        mro = klass.__mro__
        known = _django_hooks()
        plain = _plain_hooks[klass] = all(
            vars(k)["close_if_health_check_failed"] in known
            for k in mro[mro.index(FreshnessMixin) + 1 :]
            if "close_if_health_check_failed" in vars(k)
        )
    return plain
