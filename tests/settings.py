"""Django settings for the integration suite: testproject's apps on the test server.

What both suites share is in tests/base_settings.py; this module adds the server
(started at import by tests/pg.py unless ``AURORA_TEST_DSN`` names one) and the
``sim`` alias in front of it.
"""

import os

from aurora_backend.testing import free_port
from aurora_backend.testing.drivers import pool_enabled
from tests.base_settings import *  # noqa: F403 (the shared settings, DRIVER first)
from tests.base_settings import TEST_AURORA_OPTIONS, alias  # noqa: F401 (imported by tests)
from tests.pg import server

_srv = server()

#: Where the session's Aurora simulator listens (tests/conftest.py); child processes inherit it.
SIM_PORT = int(os.environ.setdefault("AURORA_TEST_SIM_PORT", str(free_port())))

DATABASES = {
    "default": alias(
        "aurora_tests",
        _srv.user,
        _srv.password,
        _srv.host,
        _srv.port,
        TEST={"NAME": "test_aurora_tests"},
    ),
    "sim": alias(
        "aurora_tests",
        _srv.user,
        _srv.password,
        "127.0.0.1",
        SIM_PORT,
        TEST={"MIRROR": "default"},
    ),
}

if pool_enabled():
    # AURORA_TEST_DRIVER=pool: every connection of the suite comes from Django's pool.
    # "default" serves concurrent threads (retry tests): 4 connections. "sim" counts the
    # reconnects and scale events of one Django connection: a pool of one keeps those exact.
    # Faults across a pool of several connections: tests/test_pool.py.
    DATABASES["default"]["OPTIONS"]["pool"] = {"max_size": 4}
    DATABASES["sim"]["OPTIONS"]["pool"] = {"max_size": 1}
