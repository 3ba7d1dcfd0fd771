"""Choose the driver a test process uses: ``AURORA_TEST_DRIVER``.

Django's postgresql backend uses psycopg 3 whenever it is importable and psycopg2
otherwise. To run a suite under each driver from one environment:

- ``AURORA_TEST_DRIVER=psycopg2``: psycopg 3 is hidden (as if it were not installed);
- ``AURORA_TEST_DRIVER=psycopg``: psycopg 3, without Django's pool;
- ``AURORA_TEST_DRIVER=pool``: psycopg 3 with ``OPTIONS["pool"]`` (see :func:`pool_enabled`).

Unset: whatever Django would pick. Call :func:`select_driver` from settings, before
Django loads a database backend; child processes inherit the variable.
"""

from __future__ import annotations

import importlib.util
import os
import sys

ENV = "AURORA_TEST_DRIVER"
CHOICES = ("psycopg2", "psycopg", "pool")


def requested() -> str | None:
    name = os.environ.get(ENV) or None
    if name is not None and name not in CHOICES:
        raise RuntimeError("%s=%r: use one of %s" % (ENV, name, ", ".join(CHOICES)))
    return name


def select_driver() -> str:
    """Apply ``AURORA_TEST_DRIVER`` to this process; returns the driver in use."""
    name = requested()
    if name == "psycopg2":
        if "psycopg" in sys.modules and sys.modules["psycopg"] is not None:
            raise RuntimeError("%s=psycopg2: psycopg 3 was imported before select_driver()" % ENV)
        sys.modules["psycopg"] = None  # type: ignore[assignment]  # import psycopg -> ImportError
        return "psycopg2"
    if name in ("psycopg", "pool"):
        if importlib.util.find_spec("psycopg") is None:
            raise RuntimeError("%s=%s needs psycopg 3: pip install 'aurora_backend[psycopg]'" % (ENV, name))
        if name == "pool" and importlib.util.find_spec("psycopg_pool") is None:
            raise RuntimeError("%s=pool needs psycopg_pool: pip install 'aurora_backend[psycopg]'" % ENV)
        return name
    return "psycopg" if importlib.util.find_spec("psycopg") is not None else "psycopg2"


def pool_enabled() -> bool:
    """True when the tests should put ``OPTIONS["pool"]`` on their aliases."""
    return requested() == "pool"
