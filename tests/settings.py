"""Django settings for the test suite: testproject's apps on the test server."""

import os

from aurora_backend.testing import free_port
from aurora_backend.testing.drivers import pool_enabled, select_driver

#: The driver under test (AURORA_TEST_DRIVER: psycopg2, psycopg, pool; unset: Django's pick).
DRIVER = select_driver()

# Kept after select_driver(): the driver is chosen before anything else is imported.
from tests.pg import server  # noqa: E402

_srv = server()

#: Where the session's Aurora simulator listens (tests/conftest.py); child processes inherit it.
SIM_PORT = int(os.environ.setdefault("AURORA_TEST_SIM_PORT", str(free_port())))

#: Our options for tests: fault timings scaled down (a "35 s resume" becomes seconds).
TEST_AURORA_OPTIONS = {"connect_deadline": 10, "connect_timeout": 2, "backoff_base": 0.05, "backoff_max": 0.5}

SECRET_KEY = "aurora-backend-tests"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "testproject.urls"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "aurora_backend",
    "ledger",
]
MIDDLEWARE: list[str] = []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "aurora_backend",
        "NAME": "aurora_tests",
        "USER": _srv.user,
        "PASSWORD": _srv.password,
        "HOST": _srv.host,
        "PORT": str(_srv.port),
        "TEST": {"NAME": "test_aurora_tests"},
        "OPTIONS": {"aurora": dict(TEST_AURORA_OPTIONS)},
    },
    "sim": {
        "ENGINE": "aurora_backend",
        "NAME": "aurora_tests",
        "USER": _srv.user,
        "PASSWORD": _srv.password,
        "HOST": "127.0.0.1",
        "PORT": str(SIM_PORT),
        "TEST": {"MIRROR": "default"},
        "OPTIONS": {"aurora": dict(TEST_AURORA_OPTIONS)},
    },
}

if pool_enabled():
    # AURORA_TEST_DRIVER=pool: every connection of the suite comes from Django's pool.
    # "default" serves concurrent threads (retry tests): 4 connections. "sim" counts the
    # reconnects and scale events of one Django connection: a pool of one keeps those exact.
    # Faults across a pool of several connections: tests/test_pool.py.
    DATABASES["default"]["OPTIONS"]["pool"] = {"max_size": 4}
    DATABASES["sim"]["OPTIONS"]["pool"] = {"max_size": 1}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"aurora_backend": {"handlers": ["null"], "level": "DEBUG"}},
}
