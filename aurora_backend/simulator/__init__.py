"""Aurora simulator: a PostgreSQL proxy that stages Aurora's scale, pause, resume and failover events.

Tests and CI runs put it between an application and a real PostgreSQL server; see
docs/simulator.md. ``AuroraSimulator`` runs in-process, ``SimulatorProcess`` in a child
process driven through the loopback control endpoint (``ControlClient``).
"""

from typing import TYPE_CHECKING

from aurora_backend._lazy import exports
from aurora_backend.exceptions import PinningError, SimulatorError
from aurora_backend.simulator.control import ControlClient
from aurora_backend.simulator.process import SimulatorProcess
from aurora_backend.simulator.proxy import AuroraSimulator

if TYPE_CHECKING:
    from aurora_backend.simulator.cluster_cli import env_resolver
    from aurora_backend.simulator.wire_client import WireClient

# Imported on first use: the raw-socket client, and the resolver the cluster CLI's
# environment sets up ("resolver": "aurora_backend.simulator.env_resolver").
_LAZY = {
    "WireClient": "aurora_backend.simulator.wire_client",
    "env_resolver": "aurora_backend.simulator.cluster_cli",
}

__all__ = [
    "AuroraSimulator",
    "ControlClient",
    "PinningError",
    "SimulatorError",
    "SimulatorProcess",
    "WireClient",
    "env_resolver",
]

__getattr__, __dir__ = exports(__name__, _LAZY)
