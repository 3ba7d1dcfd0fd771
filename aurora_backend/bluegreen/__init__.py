"""RDS Blue/Green switchovers without errors reaching the app (docs/bluegreen.md).

``attach(wrapper)`` is called by AuroraWrapperMixin.__init__; when the alias watches
Blue/Green (``OPTIONS["aurora"]["blue_green"]``), it puts three per-instance hooks on the
wrapper, so a wrapper that does not watch pays nothing:

- its resolver becomes the watcher's (blue's addresses replaced by green's once switched);
- ``get_new_connection`` waits while the switchover is IN_PROGRESS (at most ``hold``);
- ``close_if_health_check_failed`` (Django's pre-use hook: before a cursor or a
  transaction, outside any transaction) waits likewise, and closes a connection still on
  old blue after the switch, so that nothing is written there.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from aurora_backend import stats
from aurora_backend.bluegreen.config import BlueGreenConfig, enabled_for
from aurora_backend.bluegreen.tokens import create_table
from aurora_backend.bluegreen.watcher import PHASES, Watcher
from aurora_backend.exceptions import BlueGreenHoldTimeout

if TYPE_CHECKING:  # pragma: no cover
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = [
    "BlueGreenConfig",
    "BlueGreenHoldTimeout",
    "PHASES",
    "Watcher",
    "attach",
    "create_table",
    "reset",
    "watcher_of",
]

logger = logging.getLogger("aurora_backend")

# Per process (a forked child starts its own thread), alias and endpoint.
_watchers: dict[tuple[int, str, str, int, str], Watcher] = {}
_lock = threading.Lock()


def attach(wrapper: Any) -> None:
    """Watch Blue/Green for ``wrapper``'s alias when its settings ask for it (see the module doc)."""
    options = wrapper.aurora_options
    config: BlueGreenConfig = options.blue_green
    host = wrapper.settings_dict.get("HOST")
    if not enabled_for(config, host, wrapper.aurora_proxy_mode):
        return
    if not host or str(host).startswith("/"):
        return
    wrapper._aurora_bg_params = None
    wrapper._aurora_bg_resolver = original = options.resolver

    def resolve(name: str, port: int) -> Any:
        watcher = watcher_of(wrapper)
        return watcher.resolve(name, port) if watcher is not None else _plain(original)(name, port)

    wrapper.aurora_options = dataclasses.replace(options, resolver=resolve)
    klass = type(wrapper)
    wrapper.get_new_connection = lambda params: _new_connection(wrapper, klass, params)
    wrapper.close_if_health_check_failed = lambda: _before_use(wrapper, klass)


def _plain(resolver: Any) -> Any:
    if resolver is not None:
        return resolver
    from aurora_backend.connection.resolve import default_resolver

    return default_resolver


def watcher_of(wrapper: Any) -> Watcher | None:
    """The watcher of the wrapper's endpoint (started on first use), or None."""
    params = wrapper._aurora_bg_params
    if params is None:
        params = wrapper._aurora_bg_params = wrapper.get_connection_params()
    key = (
        os.getpid(),
        wrapper.alias,
        str(params.get("host")),
        int(params.get("port") or 5432),
        str(params.get("dbname")),
    )
    watcher = _watchers.get(key)
    if watcher is None:
        with _lock:
            watcher = _watchers.get(key)
            if watcher is None:
                options = wrapper.aurora_options
                watcher = Watcher(
                    wrapper.alias,
                    params,
                    _plain(wrapper._aurora_bg_resolver),
                    options.blue_green,
                    wrapper.aurora_runtime,
                    type(wrapper),
                )
                _watchers[key] = watcher.start()
    return watcher


def _hold(wrapper: Any) -> None:
    watcher = watcher_of(wrapper)
    if watcher is None:
        return
    watcher.active = True
    if watcher.idle or watcher.phase == "PREPARATION":
        watcher.fresh()  # a stale phase, or RDS may be dropping every connection right now: look first
    if not watcher.holding:
        return
    alias = wrapper.alias
    try:
        held = watcher.wait()
    except TimeoutError as exc:
        stats.incr(alias, "blue_green_hold_timeouts")
        raise BlueGreenHoldTimeout(
            "aurora_backend: %r waited %.1f s for a Blue/Green switchover (phase %s) to end and it has not; "
            "raise DATABASES[%r]['OPTIONS']['aurora']['blue_green']['hold'] (now %g s) if switchovers take "
            "longer here." % (alias, exc.args[0], watcher.phase, alias, watcher.config.hold)
        ) from None
    if held > 0:
        stats.incr(alias, "blue_green_holds")
        stats.incr(alias, "blue_green_held_ms", int(held * 1000))


def _new_connection(wrapper: Any, klass: type[BaseDatabaseWrapper], params: dict[str, Any]) -> Any:
    _hold(wrapper)
    return klass.get_new_connection(wrapper, params)


def _before_use(wrapper: Any, klass: type[BaseDatabaseWrapper]) -> None:
    # Not at the end of a transaction (set_autocommit(True) runs this hook too, autocommit
    # still off): what committed is acknowledged at once.
    if wrapper.connection is not None and not wrapper.in_atomic_block and wrapper.autocommit:
        _hold(wrapper)
        watcher = watcher_of(wrapper)
        if watcher is not None and watcher.switched and wrapper.aurora_address in watcher.blue_addresses:
            logger.info(
                "closing connection %r to old blue %s after the switchover", wrapper.alias, wrapper.aurora_address
            )
            wrapper._aurora_close("blue_green")
    klass.close_if_health_check_failed(wrapper)


def reset() -> None:
    """Stop every watcher (tests)."""
    with _lock:
        watchers = list(_watchers.values())
        _watchers.clear()
    for watcher in watchers:
        watcher.stop()
