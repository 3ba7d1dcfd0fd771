"""Proxy mode: behind RDS Proxy, the ENGINE itself avoids what pins a session.

RDS Proxy pins a client session to one database connection for its life when it sees
session state (docs/proxy.md lists AWS's rules). Django's postgresql backend causes
some of it on its own; in proxy mode (``OPTIONS["aurora"]["proxy"]``: on for hosts
containing ".proxy-", or True/False) the ENGINE:

- sends no ``set_config('TimeZone', ...)`` at connect when the server's timezone differs
  from Django's (``UTC``, ``Etc/UTC``, ``Zulu``, ``GMT`` ... are one zone: no difference): it
  logs once how to set the role's or database's timezone instead (and
  system check W007 says so). Aware datetimes read meanwhile keep the instant the server
  sent (psycopg2 gets a fixed-offset tzinfo; psycopg 3 converts); with USE_TZ = False
  naive values are in the session's timezone until the role's is set;
- uses no server-side cursors (``QuerySet.iterator()`` reads with a client-side cursor,
  as DISABLE_SERVER_SIDE_CURSORS does: the whole result is fetched at once, and a WARNING
  says so once per alias, docs/proxy.md);
- under psycopg 3 uses no prepared statements (``prepare_threshold`` None) and binds
  parameters client-side;
- puts ``OPTIONS["isolation_level"]`` in each transaction's BEGIN (the driver's isolation
  level is set only while autocommit is off), never in a session SET;
- splits bulk_create / bulk_update / delete batches so that no statement's text tops
  16 KB (inside the same transaction: Django wraps batches in one atomic block);
- closes a connection idle for ``idle_timeout`` (capped below the proxy's default idle
  client timeout, 1,800 s).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings

from aurora_backend.drivers import keep_server_instants
from aurora_backend.options import AuroraOptions

if TYPE_CHECKING:  # pragma: no cover
    # Checked as what it is mixed into; at run time a plain mixin (AuroraWrapperMixin's MRO).
    from django.db.backends.postgresql.base import DatabaseWrapper as _WrapperBase
    from django.db.backends.postgresql.operations import DatabaseOperations as _OperationsBase
else:
    _WrapperBase = _OperationsBase = object

logger = logging.getLogger("aurora_backend")

#: Aliases whose .iterator() in proxy mode has been warned about (once per alias and process).
_iterator_warned: dict[str, bool] = {}

#: "Any statement with a text size greater than 16 KB causes the proxy to pin the session."
PROXY_MAX_STATEMENT_BYTES = 16 * 1024
#: What proxy mode lets the values of one bulk statement take (the rest is its SQL).
BULK_VALUES_BUDGET = PROXY_MAX_STATEMENT_BYTES - 3 * 1024
#: RDS Proxy's default IdleClientTimeout (seconds): it closes client connections idle this long.
PROXY_IDLE_CLIENT_TIMEOUT = 1800.0
#: Proxy mode closes idle connections itself before then.
PROXY_IDLE_CLOSE = PROXY_IDLE_CLIENT_TIMEOUT - 60.0


def behind_rds_proxy(settings_dict: Mapping[str, Any]) -> bool:
    """RDS Proxy endpoints (default and custom) contain ".proxy-" in their host name."""
    return ".proxy-" in str(settings_dict.get("HOST") or "")


def proxy_enabled(options: AuroraOptions, settings_dict: Mapping[str, Any]) -> bool:
    """Proxy mode for an alias: the ``proxy`` option, or "auto" (None): the host's name."""
    return behind_rds_proxy(settings_dict) if options.proxy is None else options.proxy


def proxy_options(options: AuroraOptions, settings_dict: Mapping[str, Any]) -> AuroraOptions:
    """``options`` with idle_timeout capped below RDS Proxy's idle client timeout in proxy mode."""
    if not proxy_enabled(options, settings_dict):
        return options
    if options.idle_timeout is not None and options.idle_timeout <= PROXY_IDLE_CLOSE:
        return options
    return dataclasses.replace(options, idle_timeout=PROXY_IDLE_CLOSE)


def value_bytes(value: Any) -> int:
    """Roughly what one value takes in a statement's text (quoted, escaped, separated)."""
    if value is None:
        return 6
    if isinstance(value, (bytes, bytearray, memoryview)):
        return 2 * len(value) + 12  # bytea as '\\x...'
    text = str(value)
    return len(text.encode("utf-8")) + text.count("'") + text.count("\\") + 12


def pin_free_batch_size(fields: Any, objs: Any) -> int:
    """Objects per bulk statement (bulk_create/bulk_update/delete batches) that keeps its text
    under RDS Proxy's 16 KB pinning limit, judged by the largest object."""
    names = [getattr(f, "attname", f) for f in fields]
    largest = max((_object_bytes(obj, names) for obj in objs), default=16)
    return max(1, BULK_VALUES_BUDGET // largest)


def _object_bytes(obj: Any, names: list[str]) -> int:
    state = getattr(obj, "__dict__", None)
    if state is None:  # a plain value (a primary key)
        return 16 + value_bytes(obj)
    # Only the instance's own values: never a descriptor (no query for a related object).
    # A name it does not hold (a delete batch's related field) stands for its primary key.
    pk = getattr(obj, "pk", None)
    return 16 + sum(value_bytes(state[name] if name in state else pk) for name in names)


class _PinFreeOperations(_OperationsBase):
    """DatabaseOperations mixin of proxy mode: bulk statements stay under 16 KB."""

    def bulk_batch_size(self, fields: Any, objs: Any) -> int:
        size = super().bulk_batch_size(fields, objs)
        return max(1, min(size, pin_free_batch_size(fields, objs)))


_ops_classes: dict[type, type] = {}


def pin_free_operations(ops: Any) -> None:
    """Give a connection's ``ops`` proxy mode's bulk batch size (a subclass, made once per class)."""
    klass = type(ops)
    if issubclass(klass, _PinFreeOperations):
        return
    if klass not in _ops_classes:
        _ops_classes[klass] = type("PinFree" + klass.__name__, (_PinFreeOperations, klass), {})
    ops.__class__ = _ops_classes[klass]


#: Names of the one zone at offset 0 without daylight saving time (IANA tzdata's links).
_UTC_NAMES = frozenset(
    prefix + name
    for prefix in ("", "etc/")
    for name in ("utc", "uct", "universal", "zulu", "gmt", "gmt0", "gmt+0", "gmt-0", "greenwich")
)


def same_zone(a: str, b: str) -> bool:
    """``a`` and ``b`` name the same time zone (``Etc/UTC`` and ``UTC``; names compared without case)."""
    a, b = (a or "").lower(), (b or "").lower()
    return a == b or (a in _UTC_NAMES and b in _UTC_NAMES)


def timezone_advice(role: str, wanted: str) -> str:
    """What to run so that new sessions start in ``wanted`` without a SET (shared with checks)."""
    return (
        "ALTER ROLE %s SET timezone TO '%s'; (or ALTER DATABASE ... SET timezone, or the "
        "cluster parameter group's timezone)" % (role or "<user>", wanted)
    )


class ProxyModeMixin(_WrapperBase):
    """Hook overrides for proxy mode (part of AuroraWrapperMixin; a no-op when the mode is off)."""

    #: Whether this alias runs in proxy mode (set by AuroraWrapperMixin.__init__).
    aurora_proxy_mode: bool = False
    #: tz_differs: the current connection's session timezone is not Django's (proxy mode
    #: did not SET it); tz_advised: the warning was given (connection/state.py).
    aurora: Any

    alias: str
    connection: Any
    settings_dict: dict[str, Any]

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        if self.aurora_proxy_mode:
            if "prepare_threshold" in params:  # psycopg 3: never PREPARE a named statement
                params["prepare_threshold"] = None
            binding = _server_binding_cursor()
            if binding is not None and params.get("cursor_factory") is binding:
                from django.db.backends.postgresql.base import Cursor

                params["cursor_factory"] = Cursor  # client-side binding
        return params

    def _configure_timezone(self, connection: Any) -> bool:
        if not self.aurora_proxy_mode:
            return super()._configure_timezone(connection)  # type: ignore[misc]
        current = connection.info.parameter_status("TimeZone")
        wanted = self.timezone_name
        state = self.aurora
        state.tz_differs = bool(wanted and not same_zone(current, wanted))
        if state.tz_differs and not state.tz_advised:
            state.tz_advised = True
            logger.warning(
                "%s: proxy mode does not SET the session timezone (it would pin the session "
                "behind RDS Proxy): the server's is %s, Django expects %s. Run %s",
                self.alias,
                current,
                wanted,
                timezone_advice(self.settings_dict.get("USER") or "", wanted),
            )
        return False

    def chunked_cursor(self) -> Any:
        if self.aurora_proxy_mode:  # DECLARE pins: read .iterator() results client-side
            if not _iterator_warned.get(self.alias):
                _iterator_warned[self.alias] = True
                logger.warning(
                    "%s: proxy mode reads QuerySet.iterator() with a client-side cursor (a server-side "
                    "cursor's DECLARE would pin the session behind RDS Proxy): the whole result is "
                    "fetched at once, in memory. For a large export, page by primary key "
                    "(.filter(pk__gt=last).order_by('pk')[:n]) or use an alias with proxy False.",
                    self.alias,
                )
            return self.cursor()
        return super().chunked_cursor()

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        if self.aurora_proxy_mode and "isolation_level" in self.settings_dict["OPTIONS"]:
            # Django set it on the driver; in autocommit psycopg2 would SET it for the session.
            connection.isolation_level = None
        return connection

    def _set_autocommit(self, autocommit: bool) -> None:
        level = self._aurora_transaction_isolation()
        if level is None:
            super()._set_autocommit(autocommit)  # type: ignore[misc]
            return
        # The driver's isolation level only while autocommit is off: it then goes into
        # each BEGIN ("BEGIN ISOLATION LEVEL ..."), and the session keeps its default.
        errors = self.wrap_database_errors
        if autocommit:
            with errors:
                self.connection.isolation_level = None
            super()._set_autocommit(True)  # type: ignore[misc]
        else:
            super()._set_autocommit(False)  # type: ignore[misc]
            with errors:
                self.connection.isolation_level = level

    def _aurora_transaction_isolation(self) -> Any:
        if not self.aurora_proxy_mode or "isolation_level" not in self.settings_dict["OPTIONS"]:
            return None
        return getattr(self, "isolation_level", None)


def server_instants(wrapper: Any, cursor: Any) -> None:
    """A new driver cursor of ``wrapper`` whose session timezone is not Django's (proxy mode
    did not SET it): make it read timestamps as the instants the server sent. Called, when
    ``wrapper.aurora.tz_differs``, for every cursor made (``make_cursor``,
    ``make_debug_cursor``, a re-run's new cursor), not as a ``create_cursor`` override: one
    frame less per cursor when the time zones agree."""
    if settings.USE_TZ:
        keep_server_instants(cursor, wrapper.timezone)


def _server_binding_cursor() -> Any:
    from django.db.backends.postgresql import base

    return getattr(base, "ServerBindingCursor", None)
