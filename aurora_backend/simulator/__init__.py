"""Aurora simulator: a PostgreSQL proxy that stages Aurora's scale, pause, resume and failover events.

Tests and CI runs put it between an application and a real PostgreSQL server; see
docs/simulator.md. ``AuroraSimulator`` runs in-process, ``SimulatorProcess`` in a child
process driven through the loopback control endpoint (``ControlClient``).
"""

from typing import Any, List

from aurora_backend.exceptions import PinningError, SimulatorError
from aurora_backend.simulator.control import ControlClient
from aurora_backend.simulator.process import SimulatorProcess
from aurora_backend.simulator.proxy import AuroraSimulator

# Imported on first use: the raw-socket client, and the resolver the cluster CLI's
# environment sets up ("resolver": "aurora_backend.simulator.env_resolver").
_LAZY = {
    "WireClient": "aurora_backend.simulator.wire_client",
    "env_resolver": "aurora_backend.simulator.cluster_cli",
}

__all__ = [
    "AuroraSimulator", "ControlClient", "PinningError", "SimulatorError", "SimulatorProcess", "WireClient", "env_resolver",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))
