"""Health of the database behind each aurora_backend alias, as Aurora sees it.

:func:`check_alias` opens one NEW connection (never the process's own), measures it,
reads the server's state through it (health/sql.py) and closes it. The result is a
typed :class:`AliasReport`; :func:`collect` gathers them into a :class:`HealthReport`
whose ``to_dict()`` follows ``health/schema.json``. ``manage.py aurora_health`` and
the database system checks are thin layers over these functions.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from aurora_backend import credentials, stats
from aurora_backend.connection.connect import Attempt, connect_with_retry
from aurora_backend.connection.resolve import default_resolver, resolvable_host
from aurora_backend.errors import classify, driver_error
from aurora_backend.health import sql as health_sql
from aurora_backend.health.role import writer_endpoint_findings
from aurora_backend.health.sql import Finding
from aurora_backend.options import AuroraOptions
from aurora_backend.runtime import Runtime
from aurora_backend.topology import router as topology

logger = logging.getLogger("aurora_backend")

SCHEMA_VERSION = 2
SETTINGS_NAME = "AURORA_HEALTH"
STATUS_EXIT_CODES = {"healthy": 0, "degraded": 1, "unreachable": 2}


@dataclass(frozen=True)
class Thresholds:
    """When a figure becomes a finding; defaults overridable by ``settings.AURORA_HEALTH``."""

    long_transaction_seconds: float = 60.0
    idle_in_transaction_seconds: float = 10.0
    capacity_warn_percent: float = 90.0
    cold_start_seconds: float = 5.0
    recent_restart_seconds: float = 900.0
    replica_lag_warn_ms: float = 1000.0
    query_timeout_seconds: float = 10.0

    @classmethod
    def from_settings(cls, overrides: Mapping[str, float | None] | None = None) -> Thresholds:
        """Defaults, then ``settings.AURORA_HEALTH``, then ``overrides`` whose value is not None."""
        from django.conf import settings

        configured = getattr(settings, SETTINGS_NAME, None) or {}
        if not isinstance(configured, Mapping):
            raise ImproperlyConfigured("settings.%s must be a dict of thresholds." % SETTINGS_NAME)
        values: dict[str, float] = {}
        for source, mapping in (("settings.%s" % SETTINGS_NAME, configured), ("option", overrides or {})):
            for key, value in mapping.items():
                if value is not None:
                    values[key] = _threshold(source, key, value)
        return cls(**values)


def _threshold(source: str, key: str, value: Any) -> float:
    known = [f.name for f in fields(Thresholds)]
    if key not in known:
        raise ImproperlyConfigured("%s has unknown threshold %r; accepted: %s." % (source, key, ", ".join(known)))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ImproperlyConfigured("%s[%r] = %r is invalid: it accepts a number >= 0." % (source, key, value))
    return float(value)


@dataclass
class Endpoint:
    host: str | None
    port: int
    addresses: list[str]
    error: str | None = None


@dataclass
class ConnectFailure:
    kind: str
    error_class: str
    message: str


@dataclass
class ConnectResult:
    ok: bool
    latency_seconds: float
    attempts: int
    cold_start: bool
    address: str | None
    error: ConnectFailure | None = None


@dataclass
class AliasReport:
    """Everything the command shows about one alias; None sections could not be read."""

    alias: str
    status: str
    findings: list[Finding]
    endpoint: Endpoint
    connect: ConnectResult
    server: health_sql.ServerInfo | None = None
    capacity: health_sql.Capacity | None = None
    blockers: health_sql.Blockers | None = None
    readers: list[health_sql.Reader] | None = None
    process: dict[str, Any] = field(default_factory=dict)
    #: The credentials source and the age of its cached credential (never the credential).
    credentials: dict[str, Any] | None = None
    #: Topology routing (topology/router.py): None when it does not apply to the alias.
    topology: dict[str, Any] | None = None


@dataclass
class HealthReport:
    generated_at: str
    status: str
    exit_code: int
    thresholds: Thresholds
    databases: list[AliasReport]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``--json`` (see health/schema.json)."""
        return {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}


def uses_aurora(settings_dict: Mapping[str, Any]) -> bool:
    """True when the alias's ENGINE is aurora_backend's (or composed with its mixin)."""
    from django.db.utils import load_backend

    from aurora_backend.mixin import AuroraWrapperMixin

    engine = settings_dict.get("ENGINE")
    if not engine:
        return False
    try:
        wrapper_class = load_backend(engine).DatabaseWrapper
    except Exception:  # a broken ENGINE is Django's error to report, not ours
        return False
    return issubclass(wrapper_class, AuroraWrapperMixin)


def aurora_aliases() -> list[str]:
    """Aliases in settings.DATABASES that use aurora_backend, in settings order."""
    from django.db import connections

    return [alias for alias in connections.settings if uses_aurora(connections.settings[alias])]


def collect(
    aliases: Sequence[str],
    thresholds: Thresholds | None = None,
    wait: float | None = None,
    on_retry: Callable[[str, Attempt], None] | None = None,
    runtime: Runtime | None = None,
) -> HealthReport:
    """Check every alias in turn; the status is the worst of theirs."""
    thresholds = thresholds or Thresholds.from_settings()
    reports = []
    for alias in aliases:
        callback = None if on_retry is None else (lambda attempt, a=alias: on_retry(a, attempt))
        reports.append(check_alias(alias, thresholds=thresholds, wait=wait, on_retry=callback, runtime=runtime))
    code = max((STATUS_EXIT_CODES[r.status] for r in reports), default=0)
    status = next(name for name, value in STATUS_EXIT_CODES.items() if value == code)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return HealthReport(now, status, code, thresholds, reports)


def check_alias(
    alias: str,
    settings_dict: Mapping[str, Any] | None = None,
    thresholds: Thresholds | None = None,
    wait: float | None = None,
    on_retry: Callable[[Attempt], None] | None = None,
    runtime: Runtime | None = None,
) -> AliasReport:
    """Report on ``alias`` (settings from ``settings_dict``, default the live connection's).

    Connects for at most the alias's ``connect_timeout`` (a probe stays fast), or keeps
    trying for ``wait`` seconds (waking a paused cluster).
    """
    thresholds = thresholds or Thresholds.from_settings()
    wrapper = _fresh_wrapper(alias, settings_dict)
    options: AuroraOptions = wrapper.aurora_options
    params = wrapper.get_connection_params()
    endpoint = _endpoint(params, options)
    deadline = float(wait) if wait is not None else float(options.connect_timeout)
    result, raw = _connect(
        wrapper,
        params,
        dataclasses.replace(options, connect_deadline=deadline),
        runtime or Runtime(),
        on_retry,
        thresholds,
    )
    process = {**stats.snapshot(alias), "pool": _pool_state(alias)}
    report = AliasReport(alias, "healthy", [], endpoint, result, process=process)
    if options.credentials is not None:
        report.credentials = credentials.status(
            options.credentials, params.get("host"), params.get("port"), params.get("user")
        )
    if raw is None:
        assert result.error is not None
        report.findings.append(
            Finding(
                "error",
                "unreachable",
                "cannot connect to %s:%s: %s" % (endpoint.host or "local socket", endpoint.port, result.error.message),
            )
        )
    else:
        try:
            _read_server(report, raw, thresholds)
            report.findings.extend(writer_endpoint_findings(params, report.server))
            from aurora_backend.routing.health import findings as routing_findings

            report.findings.extend(routing_findings(alias, raw))
            from aurora_backend.global_db.health import findings as global_findings

            report.findings.extend(global_findings(alias, options, params, raw))
        finally:
            raw.close()
    if result.cold_start:
        report.findings.append(
            Finding(
                "info",
                "cold_start",
                "connecting took %.1f s over %d attempt(s): the cluster was probably resuming, "
                "scaling or failing over" % (result.latency_seconds, result.attempts),
            )
        )
    report.topology = _topology(options, params, report.readers)
    report.status = _status(report.findings)
    return report


def _topology(options: AuroraOptions, params: Mapping[str, Any], readers: Any) -> dict[str, Any] | None:
    described = topology.describe(options, dict(params))
    if described is not None and not described["instances"] and readers:
        # This process has not needed it yet: what aurora_replica_status() just said.
        described["instances"] = [r.server_id for r in readers]
        described["writer"] = next((r.server_id for r in readers if r.role == "writer"), None)
    return described


def _status(findings: Sequence[Finding]) -> str:
    levels = {f.level for f in findings}
    if "error" in levels:
        return "unreachable"
    return "degraded" if "warning" in levels else "healthy"


def _fresh_wrapper(alias: str, settings_dict: Mapping[str, Any] | None) -> Any:
    """A new, unshared DatabaseWrapper over a copy of the alias's settings."""
    from django.db import connections
    from django.db.utils import load_backend

    source = connections[alias].settings_dict if settings_dict is None else settings_dict
    configured = connections.configure_settings({"default": _copy_settings(dict(source))})["default"]
    configured["OPTIONS"].pop("pool", None)  # a direct connection: never one of the process's pool
    configured["CONN_MAX_AGE"] = 0
    return load_backend(configured["ENGINE"]).DatabaseWrapper(configured, alias)


def _copy_settings(value: Any) -> Any:
    """Copy the dicts and lists of a settings dict; share everything else (a resolver object
    in OPTIONS, e.g. with a lock inside, cannot and need not be deep-copied)."""
    if isinstance(value, dict):
        return {key: _copy_settings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy_settings(item) for item in value)
    return value


def _endpoint(params: Mapping[str, Any], options: AuroraOptions) -> Endpoint:
    host = params.get("host") or None
    port = int(params.get("port") or 5432)
    name = resolvable_host(dict(params))
    if name is None:
        # An IP address, a Unix socket or libpq's own host list: nothing to resolve.
        return Endpoint(host, port, [host] if host and not str(host).startswith("/") and "," not in host else [])
    try:
        return Endpoint(host, port, list((options.resolver or default_resolver)(name, port)))
    except (OSError, UnicodeError) as err:
        return Endpoint(host, port, [], "cannot resolve %s: %s" % (name, err))


def _connect(
    wrapper: Any,
    params: dict[str, Any],
    options: AuroraOptions,
    runtime: Runtime,
    on_retry: Callable[[Attempt], None] | None,
    thresholds: Thresholds,
) -> tuple[ConnectResult, Any]:
    """Open a raw driver connection with the engine's retry; never touches the process's own."""
    from aurora_backend.mixin import AuroraWrapperMixin

    parent = super(AuroraWrapperMixin, wrapper).get_new_connection  # Django's, without our bookkeeping
    failed: list[Attempt] = []

    def retried(attempt: Attempt) -> None:
        failed.append(attempt)
        if on_retry is not None:
            on_retry(attempt)

    start = runtime.clock()
    endpoint = "%r (%s:%s)" % (wrapper.alias, params.get("host") or "local socket", params.get("port") or 5432)
    try:
        raw, address = connect_with_retry(parent, params, options, runtime, on_retry=retried, endpoint=endpoint)
    except Exception as exc:
        elapsed = runtime.clock() - start
        attempts = len(failed) + 1
        return ConnectResult(False, round(elapsed, 4), attempts, False, None, _failure(exc, elapsed, attempts)), None
    elapsed = runtime.clock() - start
    attempts = len(failed) + 1
    cold = attempts > 1 or elapsed >= thresholds.cold_start_seconds
    return ConnectResult(True, round(elapsed, 4), attempts, cold, address or _peer(raw)), raw


def _failure(exc: BaseException, elapsed: float, attempts: int) -> ConnectFailure:
    """Kind and class of the error behind a failed connect (the last attempt's, past a deadline)."""
    from aurora_backend.connection.connect import describe_error
    from aurora_backend.exceptions import ClusterUnavailable

    cause = exc.__cause__ if isinstance(exc, ClusterUnavailable) and exc.__cause__ else driver_error(exc)
    message = "no connection in %.1f s (%d attempt%s); last error: %s" % (
        elapsed,
        attempts,
        "" if attempts == 1 else "s",
        describe_error(cause),
    )
    return ConnectFailure(classify(cause).value, type(cause).__name__, message)


def _pool_state(alias: str) -> dict[str, int] | None:
    """This process's pool of ``alias`` (OPTIONS["pool"]): size, idle, waiting, errors; else None."""
    from django.db import connections

    from aurora_backend.pool.mixin import pool_stats

    if alias not in connections.settings or not connections.settings[alias].get("OPTIONS", {}).get("pool"):
        return None
    pools = getattr(connections[alias], "_connection_pools", {})
    return pool_stats(pools.get(alias))


def _peer(raw: Any) -> str | None:
    try:  # psycopg2: the host libpq connected to (the IP when HOST is one)
        return raw.info.host or None
    except Exception:
        return None


def _read_server(report: AliasReport, raw: Any, thresholds: Thresholds) -> None:
    """Fill the server, capacity, blockers and readers sections; a failed query degrades."""
    raw.autocommit = True
    with raw.cursor() as cursor:
        cursor.execute("SET statement_timeout = %s", [int(thresholds.query_timeout_seconds * 1000)])
        for section, read in (
            ("server", health_sql.server_info),
            ("capacity", health_sql.capacity),
            ("blockers", health_sql.blockers),
        ):
            try:
                setattr(report, section, read(cursor, thresholds, report.findings))
            except Exception as exc:
                logger.warning("aurora_health: reading %s of %r failed: %s", section, report.alias, exc)
                report.findings.append(Finding("warning", "query_failed", "%s: %s" % (section, exc)))
        if report.server is not None and "aurora_replica_status" in report.server.aurora_functions:
            try:
                report.readers = health_sql.readers(cursor, thresholds, report.findings)
            except Exception as exc:
                report.findings.append(Finding("warning", "query_failed", "readers: %s" % exc))
