"""Shared fixtures: the Aurora simulator in front of the test server.

The ``sim`` alias (tests/settings.py) points at ``SIM_PORT`` on 127.0.0.1, where the
session's simulator listens; it mirrors ``default``'s test database.
"""

from __future__ import annotations

import pytest
from django.db import connections

from aurora_backend.testing.fixtures import (  # noqa: F401 (session fixtures: a local Aurora cluster)
    aurora_cluster,
    aurora_cluster_options,
)
from tests.pg import server
from tests.settings import SIM_PORT


@pytest.fixture(scope="session")
def simulator_session():
    from aurora_backend.simulator import AuroraSimulator

    srv = server()
    sim = AuroraSimulator(upstream=(srv.host, srv.port), listen=[("127.0.0.1", SIM_PORT)])
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def simulator(simulator_session):
    """The simulator, healed of every fault before and after the test."""
    simulator_session.reset()
    yield simulator_session
    connections["sim"].close()
    simulator_session.reset()
