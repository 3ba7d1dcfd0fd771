"""What ``manage.py aurora_health`` says about the global database an alias is on.

Findings only (the JSON document's keys are unchanged): ``global_topology`` (the primary
region and writer, each region with its lag as ``aurora_global_db_instance_status()``
reports it), ``home_region`` (where this alias reads, whether it may read elsewhere) and
``global_routing`` (what this process learned: the last switchover or failover it saw).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_backend.global_db import router as global_router
from aurora_backend.global_db.endpoint import is_global_endpoint
from aurora_backend.health.sql import Finding
from aurora_backend.topology.router import _ask

REGIONS_SQL = (
    "SELECT aws_region::text, server_id::text, session_id::text = 'MASTER_SESSION_ID', "
    "visibility_lag_in_msec::float8 FROM aurora_global_db_instance_status() ORDER BY 1, 2"
)
LAG_WARNING_MS = 10000.0


def findings(alias: str, options: Any, params: Mapping[str, Any], raw: Any) -> list[Finding]:
    """Findings for an alias on a global writer endpoint or with ``home_region`` set."""
    host = params.get("host")
    if not (is_global_endpoint(host) or options.home_region or options.write_forwarding):
        return []
    rows = _ask(raw, REGIONS_SQL)
    result: list[Finding] = []
    if not rows:
        result.append(
            Finding(
                "warning",
                "global_topology",
                "%r: aurora_global_db_instance_status() answered "
                "nothing here: not an Aurora Global Database (or no permission)" % alias,
            )
        )
    else:
        result.extend(_regions(alias, rows))
    if options.home_region:
        regions = {row[0] for row in rows or []}
        level = "warning" if rows and options.home_region not in regions else "info"
        result.append(
            Finding(
                level,
                "home_region",
                "home region %s%s; reads %s"
                % (
                    options.home_region,
                    "" if level == "info" else " (not a region of this global database)",
                    "may fall back to other regions (cross_region_reads)"
                    if options.cross_region_reads
                    else "stay in it (cross_region_reads off)",
                ),
            )
        )
    if options.write_forwarding:
        result.append(
            Finding(
                "info",
                "write_forwarding",
                "statements write forwarding refuses: %s"
                % (
                    "raise before they are sent"
                    if options.write_forwarding == "error"
                    else "run on %r outside a transaction, raise inside one" % options.primary_alias
                ),
            )
        )
    learned = global_router.describe(options, dict(params))
    if learned and learned.get("last_failover"):
        last = learned["last_failover"]
        took = "" if last.get("seconds") is None else " in %.3f s" % last["seconds"]
        result.append(
            Finding(
                "info",
                "global_routing",
                "this process saw the writer move %s -> %s (found by %s%s)"
                % (last.get("old_writer") or "?", last["new_writer"], last["how"], took),
            )
        )
    return result


def _regions(alias: str, rows: list[Any]) -> list[Finding]:
    regions: dict[str, dict[str, Any]] = {}
    for region, server, is_writer, lag in rows:
        entry = regions.setdefault(region, {"instances": [], "writer": None, "lag": None})
        entry["instances"].append(server)
        if is_writer:
            entry["writer"] = server
        elif lag is not None:
            entry["lag"] = lag if entry["lag"] is None else min(entry["lag"], lag)
    primary = next((r for r, e in regions.items() if e["writer"]), None)
    parts = []
    worst: float | None = None
    for region, entry in sorted(regions.items(), key=lambda item: (item[0] != primary, item[0])):
        if region == primary:
            parts.append("%s primary (writer %s; %d instance(s))" % (region, entry["writer"], len(entry["instances"])))
        else:
            lag = "unknown" if entry["lag"] is None else "%.0f ms" % entry["lag"]
            parts.append("%s secondary, lag %s (%d instance(s))" % (region, lag, len(entry["instances"])))
            if entry["lag"] is not None:
                worst = entry["lag"] if worst is None else max(worst, entry["lag"])
    level = "warning" if worst is not None and worst > LAG_WARNING_MS else "info"
    return [Finding(level, "global_topology", "global database: " + "; ".join(parts))]
