"""Settings both suites share: the apps, logging and the scaled-down fault timings.

``tests/settings.py`` (integration) adds a real server and the simulator alias;
``tests/unit/settings.py`` adds a database nobody connects to. Neither copies this module.
"""

from __future__ import annotations

from typing import Any

from aurora_backend.testing.drivers import select_driver

#: The driver under test (AURORA_TEST_DRIVER: psycopg2, psycopg, pool; unset: Django's pick).
#: Applied here, before Django loads a backend, so ``psycopg2`` hides psycopg 3 in both suites.
DRIVER = select_driver()

#: Our options for tests: fault timings scaled down (a "35 s resume" becomes seconds).
TEST_AURORA_OPTIONS = {
    "connect_deadline": 10,
    "connect_timeout": 2,
    "backoff_base": 0.05,
    "backoff_max": 0.5,
}

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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"aurora_backend": {"handlers": ["null"], "level": "DEBUG"}},
}


def alias(name: str, user: str, password: str, host: str, port: int, **extra: Any) -> dict[str, Any]:
    """One ``DATABASES`` entry on our ENGINE with the test options (a fresh dict each call)."""
    entry: dict[str, Any] = {
        "ENGINE": "aurora_backend",
        "NAME": name,
        "USER": user,
        "PASSWORD": password,
        "HOST": host,
        "PORT": str(port),
        "OPTIONS": {"aurora": dict(TEST_AURORA_OPTIONS)},
    }
    entry.update(extra)
    return entry
