"""Django's connection pool (``OPTIONS["pool"]``, Django 5.1+, psycopg_pool) made Aurora-safe.

Django builds one ``psycopg_pool.ConnectionPool`` per alias with the connection kwargs
frozen at that moment. :class:`PoolMixin` builds it instead (the same arguments Django
passes, plus ours) and leaves it in Django's ``_connection_pools``, so Django's own code
keeps serving it:

- ``connection_class``: every physical connection the pool opens goes through
  :func:`~aurora_backend.connection.connect.connect_with_retry` (retry, deadline, fresh DNS
  and address choice, everything applied per attempt) instead of frozen kwargs;
- lifetime: ``max_lifetime`` defaults to the top of ``max_age`` and each connection draws
  its own lifetime uniformly in ``max_age`` (psycopg_pool alone jitters only -5%);
- idle: ``min_size`` defaults to 0 and ``max_idle`` to ``idle_timeout``; every connection
  unused for a whole ``max_idle`` window is closed (psycopg_pool alone closes one per
  window), so a quiet process holds none and Serverless can pause;
- checkout: a connection handed out is checked like ours (``pool/mixin.py``, ``_aurora_checkout_problem``).

Supported: psycopg >= 3.1.12 with psycopg_pool >= 3.2 (``check``), Django 5.1+.
"""

from __future__ import annotations

import inspect
import random
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from aurora_backend import drivers

POOL_KEY = "pool"
MIN_PSYCOPG = (3, 1, 12)
MIN_PSYCOPG_POOL = (3, 2, 0)
#: ConnectionPool arguments Django or aurora_backend set: not accepted in OPTIONS["pool"].
_RESERVED = {
    "conninfo": "Django builds it from NAME, USER, HOST, PORT and OPTIONS",
    "kwargs": "Django builds it from NAME, USER, HOST, PORT and OPTIONS",
    "open": "Django opens the pool on first use",
    "configure": "Django sets the time zone and role with it",
    "check": "use CONN_HEALTH_CHECKS; aurora_backend checks every connection it hands out",
    "connection_class": "aurora_backend routes every new connection through its connect retry",
}
_FIX = "pip install 'aurora_backend[psycopg]'"


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _where(alias: str) -> str:
    return "DATABASES[%r]['OPTIONS'][%r]" % (alias, POOL_KEY)


def pool_options(alias: str, settings_dict: dict[str, Any]) -> dict[str, Any] | None:
    """The user's ``OPTIONS["pool"]`` as a dict (None: no pool), validated.

    Raises ImproperlyConfigured naming the setting and the fix for: psycopg 3 missing or too
    old, psycopg_pool missing or too old, CONN_MAX_AGE != 0, keys ConnectionPool does not
    take (or that Django and aurora_backend set themselves), Django older than 5.1.
    """
    raw = settings_dict.get("OPTIONS", {}).get(POOL_KEY)
    if not raw:
        return None
    where = _where(alias)
    if drivers.NAME != "psycopg":
        raise ImproperlyConfigured(
            "%s needs psycopg 3 (Django's pool is psycopg_pool); only psycopg2 is installed. "
            "Fix: %s, or remove %s." % (where, _FIX, where)
        )
    import django

    if django.VERSION < (5, 1):
        raise ImproperlyConfigured(
            "%s needs Django 5.1 or newer (Django %s has no connection pool). Fix: upgrade "
            "Django, or remove %s." % (where, django.get_version(), where)
        )
    if _version(drivers.version()) < MIN_PSYCOPG:
        raise ImproperlyConfigured(
            "%s needs psycopg >= %s (installed: %s). Fix: %s."
            % (where, ".".join(map(str, MIN_PSYCOPG)), drivers.version(), _FIX)
        )
    try:
        import psycopg_pool
    except ImportError as err:
        raise ImproperlyConfigured("%s needs psycopg_pool, which is not installed. Fix: %s." % (where, _FIX)) from err
    if _version(psycopg_pool.__version__) < MIN_PSYCOPG_POOL:
        raise ImproperlyConfigured(
            "%s needs psycopg_pool >= %s (installed: %s). Fix: %s."
            % (where, ".".join(map(str, MIN_PSYCOPG_POOL)), psycopg_pool.__version__, _FIX)
        )
    max_age = settings_dict.get("CONN_MAX_AGE", 0)
    if max_age != 0:
        raise ImproperlyConfigured(
            "DATABASES[%r]['CONN_MAX_AGE'] = %r cannot be used with %s: Pooling doesn't support "
            "persistent connections. Fix: set CONN_MAX_AGE to 0 (or remove it), or remove %s."
            % (alias, max_age, where, where)
        )
    if raw is True:
        return {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(
            "%s = %r is invalid: it accepts True or a dict of psycopg_pool.ConnectionPool arguments." % (where, raw)
        )
    accepted = accepted_keys()
    for key in sorted(raw):
        if key in _RESERVED:
            raise ImproperlyConfigured("%s[%r] cannot be set: %s. Fix: remove it." % (where, key, _RESERVED[key]))
        if key not in accepted:
            raise ImproperlyConfigured(
                "%s has unknown key %r; accepted keys are: %s." % (where, key, ", ".join(sorted(accepted)))
            )
    return dict(raw)


def accepted_keys() -> set[str]:
    """psycopg_pool.ConnectionPool's keyword arguments, minus the ones set for the user."""
    from psycopg_pool import ConnectionPool

    parameters = inspect.signature(ConnectionPool.__init__).parameters
    return {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY} - set(_RESERVED)


def pool_arguments(user: dict[str, Any], aurora_options: Any) -> dict[str, Any]:
    """The user's pool arguments with aurora_backend's defaults for the keys they left out."""
    arguments = dict(user)
    if "min_size" not in arguments:
        arguments["min_size"] = 0  # an idle process holds no connection (Serverless can pause)
        arguments.setdefault("max_size", 4)  # psycopg_pool's default pool size
    if "max_idle" not in arguments and aurora_options.idle_timeout is not None:
        arguments["max_idle"] = aurora_options.idle_timeout
    if "max_lifetime" not in arguments and aurora_options.max_age is not None:
        arguments["max_lifetime"] = aurora_options.max_age[1]
    return arguments


def pool_class() -> type[Any]:
    """ConnectionPool with per-connection lifetimes drawn from ``max_age`` and a full shrink.

    Built at first use (psycopg_pool is optional), hence no static type beyond a class.
    """
    global _pool_class
    if _pool_class is None:
        from psycopg_pool import ConnectionPool

        class AuroraConnectionPool(ConnectionPool):
            #: (min, max) seconds: each connection's lifetime is drawn uniformly in it.
            aurora_max_age: tuple[float, float] | None = None
            aurora_random: random.Random = random.Random()

            def getconn(self, timeout: float | None = None) -> Any:
                # Django calls getconn() without a timeout: the ENGINE's checkout waits in
                # slices of its own (pool/mixin.py, _getconn), set for this thread only.
                if timeout is None:
                    timeout = getattr(checkout_slice, "timeout", None)
                return super().getconn(timeout)

            def _set_connection_expiry_date(self, conn: Any) -> None:
                super()._set_connection_expiry_date(conn)  # sets _created_at and _expire_at
                if self.aurora_max_age is not None:
                    low, high = self.aurora_max_age
                    conn._expire_at = conn._created_at + self.aurora_random.uniform(low, high)

            def _shrink_pool(self) -> None:
                # psycopg_pool closes one connection unused for a whole max_idle window; close
                # every such connection (each call drops one while the window's minimum allows).
                while True:
                    before = self._nconns
                    super()._shrink_pool()
                    if self._nconns >= before:
                        return

        _pool_class = AuroraConnectionPool
    return _pool_class


_pool_class: type | None = None
#: ``timeout`` of the getconn() the current thread's checkout makes (None: the pool's own).
checkout_slice = threading.local()


def hooks_missing() -> list[str]:
    """What the pool relies on that this psycopg_pool or Django lacks (see health/checks.py)."""
    from django.db.backends.postgresql.base import DatabaseWrapper
    from psycopg_pool import ConnectionPool

    parameters = inspect.signature(ConnectionPool.__init__).parameters
    missing = [name for name in ("connection_class", "check", "configure") if name not in parameters]
    missing += [
        name
        for name in ("_set_connection_expiry_date", "_shrink_pool", "check", "get_stats")
        if not hasattr(ConnectionPool, name)
    ]
    missing += [
        name
        for name in ("_connection_pools", "_configure_connection", "close_pool")
        if not hasattr(DatabaseWrapper, name)
    ]
    return missing


def connection_class(connect: Any) -> type:
    """A psycopg Connection class whose ``connect`` is ``connect(parent_connect, conninfo, kwargs)``."""
    import psycopg

    class AuroraPoolConnection(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            parent = super().connect
            return connect(lambda params: parent(conninfo, **params), kwargs)

    return AuroraPoolConnection
