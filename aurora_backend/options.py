"""aurora_backend's own settings: ``DATABASES[alias]["OPTIONS"]["aurora"]``.

They are parsed once per alias into an :class:`AuroraOptions` and removed from the
parameters before psycopg2 sees them. A wrong type or value, or a key we do not
know, raises ``ImproperlyConfigured`` naming the key and what it accepts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from aurora_backend.bluegreen import config as blue_green_config
from aurora_backend.credentials import config as credentials_config
from aurora_backend.global_db import config as global_config

OPTIONS_KEY = "aurora"

#: ``resolver(host, port) -> [address, ...]``; the default uses ``socket.getaddrinfo``.
Resolver = Callable[[str, int], Sequence[str]]


@dataclass(frozen=True)
class AuroraOptions:
    """Validated aurora_backend settings of one database alias (all times in seconds)."""

    #: Timeout of one connection attempt (libpq ``connect_timeout``, whole seconds, >= 2).
    connect_timeout: int = 10
    #: Keep retrying a retryable connect failure for this long: a paused Serverless v2
    #: cluster resumes in ~15 s, after a day asleep in 30 s or more.
    connect_deadline: float = 60.0
    #: Backoff between connect attempts: full jitter over min(backoff_max, base * 2**n).
    backoff_base: float = 0.5
    backoff_max: float = 2.0
    #: Each connection lives a random time within this range, then is truly closed and
    #: reopened (new DNS resolution). None disables it.
    max_age: tuple[float, float] | None = (300.0, 600.0)
    #: A connection unused this long is closed, so an idle process holds none. None: never.
    idle_timeout: float | None = 120.0
    #: A connection unused this long is checked with ``SELECT 1`` before reuse. None: never.
    ping_after: float | None = 30.0
    #: Outside a transaction, re-run a read that failed because the connection died.
    retry_reads: bool = True
    #: Resolve the host at connect time and spread connections over its addresses.
    spread_addresses: bool = True
    #: Name resolver (a callable or its dotted path); None uses ``socket.getaddrinfo``.
    resolver: Resolver | None = field(default=None, compare=False)
    #: After a failover, find the new writer through aurora_replica_status() and the
    #: instance endpoints instead of waiting for DNS (docs/topology.md). Aurora endpoints only.
    topology: bool = True
    #: Instance endpoint name, "{instance}.<suffix>"; None: derived from the cluster endpoint.
    topology_template: str | None = None
    #: Re-read the topology at connect time at most this often (seconds).
    topology_refresh: float = 30.0
    #: RDS Proxy mode (docs/proxy.md): True, False, or None ("auto": on when HOST contains ".proxy-").
    proxy: bool | None = None
    #: A silent host (no FIN, no RST) makes a query waiting on it fail within about this
    #: long: libpq keepalives and tcp_user_timeout (connection/keepalive.py). None: libpq's.
    silent_host_timeout: float | None = 6.0
    #: Where each login's user and password come from (IAM, Secrets Manager, a callable);
    #: None: USER and PASSWORD. See aurora_backend/credentials.
    credentials: credentials_config.CredentialsConfig | None = None
    #: RDS Blue/Green switchovers: watch the phase, hold traffic through one (docs/bluegreen.md).
    blue_green: blue_green_config.BlueGreenConfig = field(default_factory=blue_green_config.BlueGreenConfig)
    #: Aurora Global Database (docs/global_database.md): the app's region, each region's
    #: instance endpoint template, cross-region reader fallback, write forwarding refusals.
    home_region: str | None = None
    global_instance_templates: Mapping[str, str] | None = field(default=None, compare=False)
    cross_region_reads: bool = False
    write_forwarding: str | None = None
    primary_alias: str | None = None

    @classmethod
    def from_settings(cls, alias: str, options: Mapping[str, Any]) -> AuroraOptions:
        """Parse ``OPTIONS`` of a DATABASES entry (the whole dict, ours under "aurora")."""
        raw = options.get(OPTIONS_KEY, {})
        where = "DATABASES[%r]['OPTIONS'][%r]" % (alias, OPTIONS_KEY)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ImproperlyConfigured(
                "%s must be a dict of aurora_backend settings, not %s." % (where, type(raw).__name__)
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ImproperlyConfigured(
                "%s has unknown key(s) %s; accepted keys are: %s."
                % (where, ", ".join(repr(k) for k in unknown), ", ".join(sorted(known)))
            )
        values = dict(raw)
        if "connect_timeout" not in values and options.get("connect_timeout") is not None:
            # libpq's own connect_timeout, when set, is the per-attempt timeout.
            values["connect_timeout"] = _libpq_int(alias, options["connect_timeout"])
        parsed = {name: _PARSERS[name]("%s[%r]" % (where, name), value) for name, value in values.items()}
        result = cls(**parsed)
        result._check_consistency(where)
        credentials_config.check_sslmode("%s['credentials']" % where, result.credentials, options.get("sslmode"))
        return result

    def _check_consistency(self, where: str) -> None:
        if self.backoff_base > self.backoff_max:
            raise ImproperlyConfigured(
                "%s['backoff_base'] (%s) must not exceed %s['backoff_max'] (%s)."
                % (where, self.backoff_base, where, self.backoff_max)
            )
        global_config.check(where, self)


def _key_error(key: str, value: Any, accepted: str) -> ImproperlyConfigured:
    return ImproperlyConfigured("%s = %r is invalid: it accepts %s." % (key, value, accepted))


def _positive(key: str, value: Any, accepted: str = "a number of seconds > 0") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _key_error(key, value, accepted)
    if not math.isfinite(value) or value <= 0:
        raise _key_error(key, value, accepted)
    return float(value)


def _optional_positive(key: str, value: Any) -> float | None:
    if value is None:
        return None
    return _positive(key, value, "a number of seconds > 0, or None to disable it")


def _connect_timeout(key: str, value: Any) -> int:
    accepted = "a whole number of seconds >= 2 (libpq's minimum)"
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise _key_error(key, value, accepted)
    return value


def _libpq_int(alias: str, value: Any) -> int:
    try:
        return max(2, int(value))
    except (TypeError, ValueError) as err:
        raise ImproperlyConfigured(
            "DATABASES[%r]['OPTIONS']['connect_timeout'] = %r is invalid: it accepts a whole "
            "number of seconds." % (alias, value)
        ) from err


def _max_age(key: str, value: Any) -> tuple[float, float] | None:
    accepted = "None (no expiry), a number of seconds > 0, or a [min, max] pair of seconds with 0 < min <= max"
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = _positive(key, value, accepted)
        return (seconds, seconds)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = (_positive(key, v, accepted) for v in value)
        if low <= high:
            return (low, high)
    raise _key_error(key, value, accepted)


def _silent_host_timeout(key: str, value: Any) -> float | None:
    accepted = (
        "a number of seconds >= 2 (keepalives need one second idle and one probe), "
        "or None to leave libpq's TCP settings alone"
    )
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 2:
        raise _key_error(key, value, accepted)
    return float(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _key_error(key, value, "True or False")
    return value


def _proxy(key: str, value: Any) -> bool | None:
    if value is None or value == "auto":
        return None
    if not isinstance(value, bool):
        raise _key_error(key, value, '"auto" (on for hosts containing ".proxy-"), True or False')
    return value


def _resolver(key: str, value: Any) -> Resolver | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as err:
            raise _key_error(key, value, "a callable(host, port) or the dotted path of one") from err
    if not callable(value):
        raise _key_error(key, value, "a callable(host, port) or the dotted path of one")
    return value


def _template(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "{instance}" not in value or value.count("{") != 1:
        raise _key_error(
            key,
            value,
            "None or a host name containing {instance}, e.g. '{instance}.abc123.us-east-1.rds.amazonaws.com'",
        )
    return value


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "connect_timeout": _connect_timeout,
    "connect_deadline": _positive,
    "backoff_base": _positive,
    "backoff_max": _positive,
    "max_age": _max_age,
    "idle_timeout": _optional_positive,
    "ping_after": _optional_positive,
    "retry_reads": _bool,
    "spread_addresses": _bool,
    "resolver": _resolver,
    "topology": _bool,
    "topology_template": _template,
    "topology_refresh": _positive,
    "proxy": _proxy,
    "silent_host_timeout": _silent_host_timeout,
    "credentials": credentials_config.parse,
    "blue_green": blue_green_config.parse,
    "home_region": global_config.home_region,
    "global_instance_templates": global_config.instance_templates,
    "cross_region_reads": _bool,
    "write_forwarding": global_config.write_forwarding,
    "primary_alias": global_config.primary_alias,
}
