"""Routing settings: ``settings.AURORA_ROUTING``, parsed once into a :class:`RoutingConfig`.

A wrong type or value, an unknown key, or an alias missing from ``DATABASES`` raises
``ImproperlyConfigured`` naming the key and what it accepts. :func:`reader_settings`
builds the reader alias's DATABASES entry from the writer's (the ``cluster-ro-`` endpoint).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured

SETTINGS_NAME = "AURORA_ROUTING"
POSITIONS = ("auto", "lsn", "aurora", "window")


@dataclass(frozen=True)
class RoutingConfig:
    """The writer/reader pair and how reads are routed between them (times in seconds)."""

    #: Alias of the cluster (writer) endpoint: writes, transactions, migrations.
    writer: str = "default"
    #: Alias of the reader endpoint; equal to ``writer`` turns routing off (one database).
    reader: str = "reader"
    #: A reader further behind than this gets no reads: they go to the writer.
    max_lag: float = 2.0
    #: How a reader is known to have caught up with a write: "auto" (WAL position where the
    #: reader reports one, else Aurora's replica_lag_in_msec, else the window), or one of them.
    position: str = "auto"
    #: While a read waits for a reader to replay this context's write, the reader's position
    #: is read again at most this often (per instance, per process).
    refresh: float = 0.05
    #: A reader's lag (for ``max_lag``) is read again at most this often.
    lag_refresh: float = 1.0
    #: When no position is known: reads go to the writer this long after a write.
    fallback_window: float = 2.0
    #: A reader that could not be reached is not tried again for this long.
    retry_reader_after: float = 5.0
    #: Deadline of the router's connect to the reader (the writer is there meanwhile).
    reader_connect_deadline: float = 2.0
    #: Cookie of :class:`~aurora_backend.routing.middleware.ReadYourWritesMiddleware`.
    cookie_name: str = "aurora_ryw"
    #: How long a user's write keeps their reads on the writer across requests, at most.
    cookie_max_age: float = 60.0

    @property
    def enabled(self) -> bool:
        return self.reader != self.writer

    @classmethod
    def from_settings(
        cls,
        raw: Mapping[str, Any] | None = None,
        databases: Mapping[str, Any] | None = None,
    ) -> RoutingConfig:
        """Parse ``raw`` (default ``settings.AURORA_ROUTING``) against ``databases`` (default
        the configured aliases)."""
        from django.conf import settings
        from django.db import connections

        if raw is None:
            raw = getattr(settings, SETTINGS_NAME, None) or {}
        if databases is None:
            databases = connections.settings
        if not isinstance(raw, Mapping):
            raise ImproperlyConfigured(
                "settings.%s must be a dict such as {'writer': 'default', 'reader': 'reader'}, not %s."
                % (SETTINGS_NAME, type(raw).__name__)
            )
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ImproperlyConfigured(
                "settings.%s has unknown key(s) %s; accepted keys are: %s."
                % (SETTINGS_NAME, ", ".join(repr(k) for k in unknown), ", ".join(known))
            )
        values = {key: _parse(key, value) for key, value in raw.items()}
        config = cls(**values)
        for role in ("writer", "reader"):
            alias = getattr(config, role)
            if alias not in databases:
                raise ImproperlyConfigured(
                    "settings.%s[%r] = %r is not an alias of settings.DATABASES (%s). Add it; for "
                    "an Aurora cluster, DATABASES[%r] = reader_settings(DATABASES[%r]) from "
                    "aurora_backend.routing builds the reader endpoint's entry."
                    % (SETTINGS_NAME, role, alias, ", ".join(databases), alias, config.writer)
                )
        return config


def _parse(key: str, value: Any) -> Any:
    where = "settings.%s[%r]" % (SETTINGS_NAME, key)
    if key in ("writer", "reader", "cookie_name"):
        if not isinstance(value, str) or not value:
            raise ImproperlyConfigured("%s = %r is invalid: it accepts a non-empty string." % (where, value))
        return value
    if key == "position":
        if value not in POSITIONS:
            raise ImproperlyConfigured(
                "%s = %r is invalid: it accepts one of %s." % (where, value, ", ".join(repr(p) for p in POSITIONS))
            )
        return value
    zero_ok = key in ("refresh", "lag_refresh")
    accepted = "a number of seconds >= 0" if zero_ok else "a number of seconds > 0"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero_ok):
        raise ImproperlyConfigured("%s = %r is invalid: it accepts %s." % (where, value, accepted))
    return float(value)


def reader_settings(writer: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """The DATABASES entry of an Aurora cluster's reader endpoint, from the writer's entry.

    ``mycluster.cluster-abc.eu-west-1.rds.amazonaws.com`` becomes
    ``mycluster.cluster-ro-abc.eu-west-1.rds.amazonaws.com`` (names compared without regard
    to case, as DNS does). ``overrides`` replace keys of the result: ``HOST`` for any other
    reader host, ``TEST={"MIRROR": "default"}`` so that Django's tests read the writer's
    test database. Dicts and lists are the reader's own copies; any other object in them
    (a resolver, a credentials provider: callables that may hold a lock or a cache) is
    shared with the writer, never copied.
    """
    host = str(writer.get("HOST") or "")
    if "HOST" not in overrides:
        overrides["HOST"] = _reader_host(host)
    entry = _copy_containers(dict(writer))
    entry.update(overrides)
    return entry


def _reader_host(host: str) -> str:
    lowered = host.lower()
    if ".cluster-ro-" in lowered:
        raise ImproperlyConfigured(
            "reader_settings(): HOST %r is already a reader endpoint (.cluster-ro-); pass the "
            "writer's DATABASES entry, whose HOST contains '.cluster-'." % host
        )
    if ".cluster-custom-" in lowered:
        raise ImproperlyConfigured(
            "reader_settings(): HOST %r is a custom endpoint (.cluster-custom-), which has no "
            "reader endpoint of its own to derive. Pass the cluster endpoint's entry (HOST "
            "'...cluster-...'), or HOST='...' to reader_settings() naming the reader host (for "
            "example a custom endpoint whose members are readers)." % host
        )
    at = lowered.find(".cluster-")
    if at < 0:
        raise ImproperlyConfigured(
            "reader_settings(): cannot derive a reader endpoint from HOST %r: an Aurora cluster "
            "endpoint contains '.cluster-' (e.g. app.cluster-abc123.eu-west-1.rds.amazonaws.com). "
            "Pass HOST='...' to reader_settings() for any other reader host." % host
        )
    return host[:at] + ".cluster-ro-" + host[at + len(".cluster-") :]


def _copy_containers(value: Any) -> Any:
    """``value`` with its dicts, lists and tuples copied, and every other object shared."""
    if isinstance(value, dict):
        return {key: _copy_containers(item) for key, item in value.items()}
    if type(value) in (list, tuple):  # (a namedtuple or other sequence is shared)
        return type(value)(_copy_containers(item) for item in value)
    return value
