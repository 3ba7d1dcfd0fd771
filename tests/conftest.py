"""Shared fixtures: the Aurora simulator in front of the test server.

The ``sim`` alias (tests/settings.py) points at ``SIM_PORT`` on 127.0.0.1, where the
session's simulator listens; it mirrors ``default``'s test database.
"""

from __future__ import annotations

import pytest

from aurora_backend.serverless import close_all
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
    close_all(["sim"])  # with OPTIONS["pool"], the pool's connections too
    simulator_session.reset()
    yield simulator_session
    close_all(["sim"])
    simulator_session.reset()


def _close_pools(keep=()) -> None:
    """Close Django's pools (AURORA_TEST_DRIVER=pool) except those of ``keep`` aliases."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    pools = getattr(DatabaseWrapper, "_connection_pools", {})
    for alias in [a for a in list(pools) if a not in keep]:
        pool = pools.pop(alias, None)
        if pool is not None:
            pool.close()


@pytest.fixture(autouse=True)
def _ad_hoc_pools_closed():
    """Wrappers a test builds under its own alias leave no pool (and no connection) behind."""
    yield
    from django.conf import settings

    _close_pools(keep=settings.DATABASES)


@pytest.fixture(scope="session", autouse=True)
def _pools_closed_before_the_test_database_is_dropped(django_db_setup, django_db_blocker):
    yield
    _close_pools()
