"""The role an alias reached against the role its endpoint promises (aurora_health)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_backend.connection.resolve import resolvable_host
from aurora_backend.health.sql import Finding
from aurora_backend.topology.state import AURORA_ENDPOINT


def writer_endpoint_findings(params: Mapping[str, Any], server: Any) -> list[Finding]:
    """An error when an alias on an Aurora cluster (writer) endpoint reached a reader.

    After a failover the cluster endpoint's DNS names the demoted writer, a reader now,
    for up to ~10 s (Aurora's 5 s TTL, the record updated seconds after the promotion):
    every write through it fails with 25006. A probe must not call that healthy.
    """
    host = resolvable_host(dict(params))
    match = AURORA_ENDPOINT.match(host) if host else None
    if server is None or server.role != "reader" or match is None or match.group("kind"):
        return []
    return [
        Finding(
            "error",
            "writer_endpoint_reaches_reader",
            "%s is the cluster (writer) endpoint but reached a reader%s (pg_is_in_recovery() is true): "
            "writes through this alias fail with 25006 (read-only transaction). DNS still names a "
            "demoted writer after a failover, or the cluster has no writer."
            % (host, " (%s)" % server.instance_id if getattr(server, "instance_id", None) else ""),
        )
    ]
