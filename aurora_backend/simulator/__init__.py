"""Aurora simulator: a PostgreSQL proxy that stages Aurora's scale, pause, resume and failover events.

Tests and CI runs put it between an application and a real PostgreSQL server; see
docs/simulator.md. ``AuroraSimulator`` runs in-process, ``SimulatorProcess`` in a child
process driven through the loopback control endpoint (``ControlClient``).
"""

from aurora_backend.simulator.control import ControlClient
from aurora_backend.simulator.faults import SimulatorError
from aurora_backend.simulator.process import SimulatorProcess
from aurora_backend.simulator.proxy import AuroraSimulator

__all__ = ["AuroraSimulator", "ControlClient", "SimulatorError", "SimulatorProcess"]
