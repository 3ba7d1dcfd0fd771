"""Django settings for the unit suite: no server, no connection.

The shared settings (tests/base_settings.py) plus a ``default`` alias on our ENGINE that
points at a loopback port nothing listens on: code that reads ``settings.DATABASES``
(options parsing, checks, the wrapper's constructor) works; a connection would fail
fast, and tests/unit/conftest.py refuses it before it is tried.
"""

from tests.base_settings import *  # noqa: F403 (the shared settings, DRIVER first)
from tests.base_settings import alias

#: TCP port 9 ("discard"): nothing listens there on the machines we test on.
UNREACHABLE_PORT = 9

DATABASES = {
    "default": alias(
        "aurora_unit",
        "aurora",
        "unit-tests-connect-nowhere",
        "127.0.0.1",
        UNREACHABLE_PORT,
    ),
}
