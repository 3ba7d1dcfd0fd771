"""System checks: risky aurora_backend settings, and (with --database) the live database.

Settings checks run with every ``manage.py check`` (and runserver, migrate...):

- aurora_backend.E001: ``OPTIONS["aurora"]`` is invalid (the ImproperlyConfigured text).
- W001: persistent connections (CONN_MAX_AGE None or > 0) with ``max_age`` None.
- W002: ``connect_deadline`` shorter than a Serverless resume (15 s).
- W003: ``OPTIONS["isolation_level"]`` behind RDS Proxy without proxy mode (each atomic()
  sends SET: pins). Proxy mode (docs/proxy.md) puts the level in each BEGIN instead.
- W004: server-side cursors behind RDS Proxy without proxy mode (DECLARE pins the session).
- W005: ``OPTIONS["options"]`` (``-c ...``) behind RDS Proxy (refused at connect).
- W006: a silent host (no FIN, no RST) would hang a query for minutes or hours: keepalives
  off, or ``silent_host_timeout`` None without keepalives of the user's, or settings whose
  bound is over ``SLOW_DETECTION`` seconds (connection/keepalive.py).
- W007: proxy mode, and Django expects a session timezone other than UTC: the ENGINE does
  not SET it (that pins), so the role or database must have it.
- W008: ``OPTIONS["assume_role"]`` behind RDS Proxy (SET ROLE at connect pins every session).
- E003: ``OPTIONS["pool"]`` is invalid (psycopg2 only, CONN_MAX_AGE, unknown key, versions).
- E004: this Django or psycopg_pool lacks what makes its pool Aurora-safe (pool/config.py).
- W009: ``OPTIONS["pool"]["min_size"]`` > 0: the pool keeps connections open when idle.

"Behind RDS Proxy": HOST contains ".proxy-", or ``OPTIONS["aurora"]["proxy"]`` is True.

Database checks (``manage.py check --database ALIAS``): E002 unreachable, W010 long
transaction, W011 idle in transaction, W012 temporary tables, W013 explicit table lock,
W014 connections near max_connections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from aurora_backend import credentials
from aurora_backend.connection import keepalive
from aurora_backend.options import AuroraOptions
from aurora_backend.proxy.mode import behind_rds_proxy, proxy_enabled, same_zone, timezone_advice

#: A Serverless v2 resume takes ~15 s (30 s or more after a day asleep): docs/aurora_facts.md, Timings.
RESUME_SECONDS = 15.0
SLOW_DETECTION = 60  # seconds: a silent host noticed later than this hangs workers
#: Linux's TCP keepalive defaults (idle, interval, probes): what libpq leaves in place.
OS_KEEPALIVE = (7200, 75, 9)
DATABASE_CHECK_IDS = {
    "long_transaction": "W010",
    "idle_in_transaction": "W011",
    "temp_table": "W012",
    "table_lock": "W013",
    "capacity": "W014",
}


__all__ = ["alias_settings_messages", "behind_rds_proxy", "check_databases", "check_settings", "database_messages"]


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every aurora_backend alias in settings.DATABASES, checked without connecting."""
    from django.conf import settings

    from aurora_backend.health.report import uses_aurora

    messages: list[checks.CheckMessage] = []
    for alias, settings_dict in getattr(settings, "DATABASES", {}).items():
        if uses_aurora(settings_dict):
            messages.extend(alias_settings_messages(alias, settings_dict))
    return messages


def alias_settings_messages(alias: str, settings_dict: Mapping[str, Any]) -> list[checks.CheckMessage]:
    """The settings checks of one alias (a raw DATABASES entry)."""
    options = settings_dict.get("OPTIONS") or {}
    where = "DATABASES[%r]" % alias
    try:
        aurora = AuroraOptions.from_settings(alias, options)
        credentials.check_settings(alias, settings_dict, aurora.credentials)
    except ImproperlyConfigured as err:
        return [
            checks.Error(
                str(err),
                hint="Fix the key named above; every option is in docs/configuration.md.",
                obj=where,
                id="aurora_backend.E001",
            )
        ]
    messages = [
        m for m in (_w001(where, settings_dict, aurora), _w002(where, aurora), _w006(where, options, aurora)) if m
    ]
    if options.get("pool"):
        messages.extend(_pool_messages(alias, where, settings_dict))
    mode = proxy_enabled(aurora, settings_dict)
    if mode or behind_rds_proxy(settings_dict):
        messages.extend(_proxy_messages(where, settings_dict, options, mode))
    return messages


def _w001(where: str, settings_dict: Mapping[str, Any], aurora: AuroraOptions) -> checks.CheckMessage | None:
    max_age = settings_dict.get("CONN_MAX_AGE", 0)
    if aurora.max_age is not None or not (max_age is None or max_age > 0):
        return None
    return checks.Warning(
        "%s keeps connections open (CONN_MAX_AGE=%r) and OPTIONS['aurora']['max_age'] is None: a "
        "connection never expires, so it sticks to one reader and never sees DNS changes." % (where, max_age),
        hint="Set OPTIONS['aurora']['max_age'] (default [300, 600] seconds).",
        obj=where,
        id="aurora_backend.W001",
    )


def _w002(where: str, aurora: AuroraOptions) -> checks.CheckMessage | None:
    if aurora.connect_deadline >= RESUME_SECONDS:
        return None
    return checks.Warning(
        "%s: OPTIONS['aurora']['connect_deadline'] is %g s, shorter than a Serverless v2 resume "
        "(~15 s, 30 s or more after a day paused): requests fail while the cluster wakes up."
        % (where, aurora.connect_deadline),
        hint="Set it to 30 or more, unless the cluster never pauses.",
        obj=where,
        id="aurora_backend.W002",
    )


def _w006(where: str, options: Mapping[str, Any], aurora: AuroraOptions) -> checks.CheckMessage | None:
    seconds = detection_bound(options, aurora)
    if seconds is not None and seconds <= SLOW_DETECTION:
        return None
    return checks.Warning(
        "%s: a query waiting on a host that went silent (host failure, network partition: no FIN, "
        "no RST) would hang %s." % (where, "for hours" if seconds is None else "for %d s" % seconds),
        hint="Leave OPTIONS['aurora']['silent_host_timeout'] at its default (6 s: libpq keepalives "
        "1/1/5 as AWS recommends for Aurora, and tcp_user_timeout), and remove 'keepalives': 0 "
        "or slower keepalive settings from OPTIONS (docs/silent_host.md).",
        obj=where,
        id="aurora_backend.W006",
    )


def detection_bound(options: Mapping[str, Any], aurora: AuroraOptions) -> float | None:
    """Seconds after which a silent host fails a waiting query, from the settings; None: ~hours."""
    params = keepalive.apply({k: v for k, v in options.items() if k != "aurora"}, aurora.silent_host_timeout)
    try:
        user_timeout = int(params.get("tcp_user_timeout") or 0) / 1000.0
        if str(params.get("keepalives", "1")).strip() == "0":
            return user_timeout or None  # unacknowledged data only: an idle wait is never bounded
        idle, interval, count = (
            int(params.get(key, default))
            for key, default in zip(
                ("keepalives_idle", "keepalives_interval", "keepalives_count"), OS_KEEPALIVE, strict=True
            )
        )
    except (TypeError, ValueError):
        return None
    probes = idle + interval * count
    # Linux: with tcp_user_timeout set, keepalives give up once it has passed (and a probe went out).
    return max(user_timeout, idle + interval) if user_timeout else float(probes)


def _pool_messages(alias: str, where: str, settings_dict: Mapping[str, Any]) -> list[checks.CheckMessage]:
    from aurora_backend.pool.config import hooks_missing, pool_options

    try:
        user = pool_options(alias, dict(settings_dict))
    except ImproperlyConfigured as err:
        return [checks.Error(str(err), obj=where, id="aurora_backend.E003")]
    missing = hooks_missing()
    if missing:
        return [
            checks.Error(
                "%s: OPTIONS['pool'] cannot be made Aurora-safe with this Django/psycopg_pool: it lacks %s, "
                "so pooled connections would skip connect retry, fresh DNS or the checks before use."
                % (where, ", ".join(missing)),
                hint="Use Django 5.2 to 6.1 with psycopg_pool 3.2-3.3, or remove OPTIONS['pool'].",
                obj=where,
                id="aurora_backend.E004",
            )
        ]
    if user and user.get("min_size", 0) > 0:
        return [
            checks.Warning(
                "%s: OPTIONS['pool']['min_size'] = %r keeps that many connections open while the process "
                "is idle, so Aurora Serverless cannot pause or scale down." % (where, user["min_size"]),
                hint="Leave min_size out (aurora_backend's default is 0) unless the cluster never pauses.",
                obj=where,
                id="aurora_backend.W009",
            )
        ]
    return []


def _proxy_messages(
    where: str, settings_dict: Mapping[str, Any], options: Mapping[str, Any], mode: bool
) -> list[checks.CheckMessage]:
    """Behind RDS Proxy; ``mode``: the ENGINE's proxy mode handles W003/W004 itself."""
    messages: list[checks.CheckMessage] = []
    turn_on = " or turn on proxy mode: OPTIONS['aurora']['proxy'] = True (docs/proxy.md)"
    if options.get("isolation_level") is not None and not mode:
        messages.append(
            checks.Warning(
                "%s sets OPTIONS['isolation_level'] behind RDS Proxy: each atomic() then sends "
                "SET default_transaction_isolation, which pins the client to one server connection." % where,
                hint="Remove it and set the level per transaction or on the role (ALTER ROLE ... SET),"
                + turn_on
                + ", which puts it in each BEGIN.",
                obj=where,
                id="aurora_backend.W003",
            )
        )
    if not settings_dict.get("DISABLE_SERVER_SIDE_CURSORS", False) and not mode:
        messages.append(
            checks.Warning(
                "%s uses server-side cursors (QuerySet.iterator()) behind RDS Proxy: DECLARE pins the "
                "session, and a transaction-pooled proxy may drop the cursor." % where,
                hint="Set DISABLE_SERVER_SIDE_CURSORS = True for this alias," + turn_on + ".",
                obj=where,
                id="aurora_backend.W004",
            )
        )
    if options.get("options"):
        messages.append(
            checks.Warning(
                "%s sets OPTIONS['options'] (%r) behind RDS Proxy, which refuses command-line options "
                "at connect: 'RDS Proxy currently doesn't support command-line options'." % (where, options["options"]),
                hint="Remove it; set these parameters on the role or in the DB parameter group.",
                obj=where,
                id="aurora_backend.W005",
            )
        )
    messages.extend(m for m in (_w007(where, settings_dict, mode), _w008(where, options)) if m)
    return messages


def _w007(where: str, settings_dict: Mapping[str, Any], mode: bool) -> checks.CheckMessage | None:
    from django.conf import settings

    wanted = settings_dict.get("TIME_ZONE") or "UTC" if settings.USE_TZ else settings.TIME_ZONE
    if not mode or not wanted or same_zone(wanted, "UTC"):
        return None
    return checks.Warning(
        "%s: proxy mode does not SET the session timezone at connect (it pins the session), and "
        "Django expects %s: sessions start in the role's or database's timezone (Aurora's default "
        "is UTC)." % (where, wanted),
        hint="Run %s, then silence this check (SILENCED_SYSTEM_CHECKS)."
        % timezone_advice(str(settings_dict.get("USER") or ""), wanted),
        obj=where,
        id="aurora_backend.W007",
    )


def _w008(where: str, options: Mapping[str, Any]) -> checks.CheckMessage | None:
    if not options.get("assume_role"):
        return None
    return checks.Warning(
        "%s sets OPTIONS['assume_role'] behind RDS Proxy: Django sends SET ROLE on every new "
        "connection, which pins every session to one server connection." % where,
        hint="Connect as that role instead (the proxy's Secrets Manager secret for it).",
        obj=where,
        id="aurora_backend.W008",
    )


@checks.register(checks.Tags.database)
def check_databases(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Connect to each named aurora_backend alias: reachability and scaling blockers."""
    from django.db import connections

    from aurora_backend.health import report as health

    messages: list[checks.CheckMessage] = []
    for alias in databases or ():
        if alias in connections.settings and health.uses_aurora(connections.settings[alias]):
            messages.extend(database_messages(health.check_alias(alias)))
    return messages


def database_messages(report: Any) -> list[checks.CheckMessage]:
    """Check messages for the findings of one :class:`~aurora_backend.health.report.AliasReport`."""
    where = "DATABASES[%r]" % report.alias
    messages: list[checks.CheckMessage] = []
    for finding in report.findings:
        if finding.code == "unreachable":
            messages.append(
                checks.Error(
                    "%s is unreachable: %s" % (where, finding.message),
                    hint="Is the cluster paused or failing over? `manage.py aurora_health --wait 60` wakes it.",
                    obj=where,
                    id="aurora_backend.E002",
                )
            )
        elif finding.code in DATABASE_CHECK_IDS:
            messages.append(
                checks.Warning(
                    "%s: %s: %s" % (where, finding.code.replace("_", " "), finding.message),
                    hint="This keeps Aurora from reaching a scaling point (and from pausing); "
                    "`manage.py aurora_health` lists all of them.",
                    obj=where,
                    id="aurora_backend." + DATABASE_CHECK_IDS[finding.code],
                )
            )
    return messages
