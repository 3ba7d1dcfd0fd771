"""The readable (table) form of a :class:`~aurora_backend.health.report.HealthReport`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aurora_backend.health.report import AliasReport, HealthReport
from aurora_backend.health.sql import Blocker, human_seconds

Paint = Callable[[str, str], str]
BLOCKER_KINDS = ("long_transaction", "idle_in_transaction", "temp_table", "table_lock")
_COLUMNS = (("KIND", 20), ("PID", 8), ("USER", 12), ("APPLICATION", 16), ("AGE", 12))


def plain(text: str, _role: str) -> str:
    return text


def render(report: HealthReport, paint: Paint = plain) -> str:
    """The whole report; ``paint(text, role)`` colours it (role: healthy/degraded/unreachable/...)."""
    lines = [
        "aurora_health %s: %s (exit %d)"
        % (report.generated_at, paint(report.status.upper(), report.status), report.exit_code)
    ]
    for alias in report.databases:
        lines.append("")
        lines.extend(render_alias(alias, paint))
    return "\n".join(lines)


def render_alias(report: AliasReport, paint: Paint = plain) -> list[str]:
    lines = ["%s: %s" % (paint(report.alias, "title"), paint(report.status.upper(), report.status))]

    def row(label: str, text: str) -> None:
        lines.append("  %-10s %s" % (label, text))

    endpoint = report.endpoint
    resolved = ", ".join(endpoint.addresses) or endpoint.error or "(not resolved here)"
    row("endpoint", "%s:%s -> %s" % (endpoint.host or "local socket", endpoint.port, resolved))
    row("connect", _connect_text(report))
    if report.server is not None:
        row("server", _server_text(report))
    if report.capacity is not None:
        cap = report.capacity
        row("capacity", "%d / %d connections (%.1f%%)" % (cap.connections, cap.max_connections, cap.percent))
    if report.server is not None:
        row("readers", _readers_text(report))
    row("process", _process_text(report.process))
    if report.credentials is not None:
        row("login", _credentials_text(report.credentials))
    if report.topology is not None:
        row("topology", _topology_text(report.topology))
    if report.blockers is not None:
        items = report.blockers.items
        row("blockers", "none" if not items else paint("%d found" % len(items), "degraded"))
        if items:
            lines.extend(_blocker_table(items))
        if report.blockers.note:
            lines.append("    note: %s" % report.blockers.note)
    notes = [f for f in report.findings if f.code not in BLOCKER_KINDS and f.code != "insufficient_privilege"]
    if notes:
        lines.append("  findings")
        for finding in notes:
            level = paint("%-7s" % finding.level.upper(), finding.level)
            lines.append("    %s %s: %s" % (level, finding.code, finding.message))
    return lines


def _connect_text(report: AliasReport) -> str:
    c = report.connect
    attempts = "%d attempt%s" % (c.attempts, "" if c.attempts == 1 else "s")
    if not c.ok:
        assert c.error is not None
        return "FAILED after %.2f s, %s: %s (%s)" % (c.latency_seconds, attempts, c.error.error_class, c.error.kind)
    text = "%.0f ms, %s, to %s" % (c.latency_seconds * 1000, attempts, c.address or "?")
    return text + (" (cold start)" if c.cold_start else "")


def _server_text(report: AliasReport) -> str:
    s = report.server
    assert s is not None
    kind = "Aurora %s" % (s.aurora_version or "") if s.aurora else "plain PostgreSQL"
    name = " ".join(s.version.split()[:2])
    instance = ", instance %s" % s.instance_id if s.instance_id else ""
    restart = " (recent restart)" if s.recent_restart else ""
    return "%s, %s%s, %s; up %s since %s%s" % (
        name,
        kind.strip(),
        instance,
        s.role,
        human_seconds(s.uptime_seconds),
        s.started_at[:19],
        restart,
    )


def _readers_text(report: AliasReport) -> str:
    assert report.server is not None
    if report.readers is None:
        return "- (aurora_replica_status() not available)" if report.server.aurora else "- (not Aurora)"
    parts = []
    for r in report.readers:
        if r.role == "writer":
            parts.append("%s writer" % r.server_id)
        else:
            parts.append("%s lag %s ms" % (r.server_id, _number(r.replica_lag_ms)))
    return "; ".join(parts) or "none"


def _number(value: float | None) -> str:
    return "?" if value is None else "%.0f" % value


def _process_text(process: Any) -> str:
    last = process.get("last_scale_event")
    text = "connections %s, reconnects %s, connect retries %s, scale events %s (last: %s)" % (
        process.get("connections", 0),
        process.get("reconnects", 0),
        process.get("connect_retries", 0),
        process.get("scale_events", 0),
        "never" if last is None else _epoch(last),
    )
    routed = [process.get(key, 0) for key in ("reader_reads", "ryw_reads", "reader_fallbacks")]
    if any(routed):
        text += "; reads routed here %s, to the writer for read-your-writes %s, fallbacks to the writer %s" % tuple(
            routed
        )
    return text


def _credentials_text(status: Any) -> str:
    age = status.get("age_seconds")
    if age is None:
        return "%s, nothing cached yet" % status["description"]
    refresh = status.get("refresh_in_seconds")
    return "%s, %s fetched %s ago%s, %d fetch(es) by this process" % (
        status["description"],
        status.get("label") or "credential",
        human_seconds(age),
        "" if refresh is None else ", refresh in %s" % human_seconds(refresh),
        status.get("fetches", 0),
    )


def _topology_text(topo: Any) -> str:
    instances = ", ".join(topo.get("instances") or []) or "not learned yet"
    text = "writer %s; instances %s; endpoints %s" % (topo.get("writer") or "?", instances, topo.get("template"))
    last = topo.get("last_failover")
    if last:
        took = "" if last.get("seconds") is None else " in %.3f s" % last["seconds"]
        text += "; last failover %s -> %s (found by %s%s, %s)" % (
            last.get("old_writer") or "?",
            last["new_writer"],
            last["how"],
            took,
            _epoch(last["at"]),
        )
    return text


def _epoch(value: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).isoformat(timespec="seconds")


def _blocker_table(items: list[Blocker]) -> list[str]:
    header = "    " + "".join(name.ljust(width) for name, width in _COLUMNS) + "DETAIL"
    lines = [header]
    for item in items:
        cells = (
            item.kind,
            "-" if item.pid is None else str(item.pid),
            item.user or "-",
            item.application or "-",
            "-" if item.age_seconds is None else human_seconds(item.age_seconds),
        )
        text = "".join(_cell(value, width) for value, (_, width) in zip(cells, _COLUMNS, strict=False))
        lines.append("    %s%s" % (text, item.detail))
        if item.query:
            lines.append("    %squery: %s" % (" " * sum(w for _, w in _COLUMNS), item.query))
    return lines


def _cell(value: str, width: int) -> str:
    value = value if len(value) < width else value[: width - 2] + "~"
    return value.ljust(width)
