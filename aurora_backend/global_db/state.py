"""What a process knows of each global database: instances by region, the writer, lags.

Keyed by the settings that name it (the global writer endpoint, or the alias's home
region endpoint) and the port; shared by the aliases and threads of the process. The
instance list and writer live in a :class:`aurora_backend.topology.state.Topology`, so
the topology router's probing works on it unchanged.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from aurora_backend.topology.state import Topology


@dataclass
class GlobalTopology(Topology):
    """A topology spanning regions: ``regions`` (instance -> region), ``lags`` (ms, None: writer)."""

    regions: dict[str, str] = field(default_factory=dict)
    lags: dict[str, float | None] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        shown = super().snapshot()
        by_region: dict[str, dict[str, Any]] = {}
        for instance, region in sorted(self.regions.items()):
            entry = by_region.setdefault(region, {"instances": [], "lag_ms": None, "primary": False})
            entry["instances"].append(instance)
            lag = self.lags.get(instance)
            if instance == self.writer:
                entry["primary"] = True
            elif lag is not None:
                entry["lag_ms"] = lag if entry["lag_ms"] is None else min(entry["lag_ms"], lag)
        shown["regions"] = by_region
        shown["primary_region"] = self.regions.get(self.writer or "")
        return shown


_registry: dict[tuple[str, int], GlobalTopology] = {}
_lock = threading.Lock()


def topology_for(key: str, port: int) -> GlobalTopology:
    with _lock:
        return _registry.setdefault((key.lower(), port), GlobalTopology())


def known(key: str, port: int) -> GlobalTopology | None:
    with _lock:
        return _registry.get((key.lower(), port))


def reset() -> None:
    """Forget every global topology (tests)."""
    with _lock:
        _registry.clear()
