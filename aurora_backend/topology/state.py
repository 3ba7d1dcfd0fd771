"""What a process knows of each Aurora cluster's topology, shared by aliases and threads.

Keyed by the instance endpoint template and port. topology/router.py routes connects
with it; aurora_health shows it (:func:`describe`).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aurora_backend.connection.resolve import resolvable_host

#: ``<cluster>.cluster-[ro-|custom-]<suffix>``: Aurora's cluster, reader and custom endpoints.
AURORA_ENDPOINT = re.compile(r"^[^.]+\.cluster-(?P<kind>ro-|custom-)?(?P<suffix>[^.]+\..+)$", re.IGNORECASE)


@dataclass
class Failover:
    """The last failover this process saw on a cluster."""

    old_writer: str | None
    new_writer: str
    how: str  # "topology": found by probing instance endpoints; "dns": the endpoint moved
    seconds: float | None  # from the first sign of trouble to the new writer's connection
    at: float = field(default_factory=time.time)


@dataclass
class Topology:
    """What this process knows of one cluster (shared by every alias and thread)."""

    instances: list[str] = field(default_factory=list)
    seen: dict[str, float] = field(default_factory=dict)  # instance -> when last listed
    writer: str | None = None
    learned_at: float | None = None
    unknown_until: float = 0.0  # aurora_replica_status() failed: do not ask again before
    suspect_since: float | None = None
    suspect_until: float = 0.0
    last_failover: Failover | None = None
    decided: tuple[str, float] | None = None  # (writer, when) chosen by the last full probe round
    hung: dict[str, float] = field(default_factory=dict)  # instance -> left out of probe rounds until
    last_sign: float = 0.0  # when the last failure sign was seen
    dns_confirmed: float = -1.0  # when a round last found the same writer as before, where DNS points
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> dict[str, Any]:
        failover = self.last_failover
        return {
            "instances": list(self.instances),
            "writer": self.writer,
            "learned_seconds_ago": None if self.learned_at is None else round(time.monotonic() - self.learned_at, 3),
            "last_failover": None if failover is None else dict(vars(failover)),
        }


_registry: dict[tuple[str, int], Topology] = {}
_registry_lock = threading.Lock()


def topology_for(template: str, port: int) -> Topology:
    with _registry_lock:
        return _registry.setdefault((template.lower(), port), Topology())


def snapshot() -> dict[str, dict[str, Any]]:
    """Every topology this process learned, keyed by "template:port" (aurora_health)."""
    with _registry_lock:
        return {"%s:%d" % key: topo.snapshot() for key, topo in _registry.items()}


def reset() -> None:
    """Forget every topology (tests)."""
    with _registry_lock:
        _registry.clear()


def instance_template(host: str, configured: str | None) -> str | None:
    """``{instance}.<suffix>`` for an Aurora cluster/reader endpoint, or the configured template."""
    if configured:
        return configured
    match = AURORA_ENDPOINT.match(host)
    return "{instance}." + match.group("suffix") if match else None


def describe(options: Any, params: dict[str, Any]) -> dict[str, Any] | None:
    """What aurora_health shows: the instance endpoint template and this process's knowledge."""
    host = resolvable_host(params)
    template = instance_template(host, options.topology_template) if host else None
    if not options.topology or template is None:
        return None
    with _registry_lock:
        known = _registry.get((template.lower(), int(params.get("port") or 5432)))
    return {"template": template, **(known or Topology()).snapshot()}
