"""The unit suite's rule (tests/unit/conftest.py): no database, and the driver it was given.

Under .ci/unit_without_postgres.sh (``AURORA_UNIT_NO_POSTGRES=1``) it also checks, from
inside the suite, that no PostgreSQL server binary can be found.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.db import connection

from aurora_backend.testing import PostgresCluster, find_pg_bin
from tests.unit import conftest
from tests.unit.conftest import DatabaseAccessInUnitTest


def test_a_query_is_refused_with_the_fix():
    with pytest.raises(DatabaseAccessInUnitTest, match="move it to the integration suite"):
        connection.cursor()


def test_starting_a_server_is_refused():
    with pytest.raises(DatabaseAccessInUnitTest, match="started a PostgreSQL cluster"):
        PostgresCluster()


def _item(name: str, marker: object = None, fixtures: tuple = ()) -> SimpleNamespace:
    return SimpleNamespace(
        path=Path(conftest.__file__).parent / "test_x.py",
        nodeid="tests/unit/test_x.py::" + name,
        fixturenames=list(fixtures),
        get_closest_marker=lambda mark: marker if mark == "django_db" else None,
    )


def test_the_django_db_mark_and_database_fixtures_are_refused_at_collection():
    items = [
        _item("test_marked", marker=object()),
        _item("test_db", fixtures=("db",)),
        _item("test_pure"),
    ]
    with pytest.raises(pytest.UsageError) as err:
        conftest.pytest_collection_modifyitems(None, items)  # type: ignore[arg-type]
    message = str(err.value)
    assert "test_marked uses the django_db mark" in message and "test_db uses fixture(s) db" in message
    assert "test_pure" not in message and "move these tests to the integration suite (tests/)" in message
    conftest.pytest_collection_modifyitems(None, [_item("test_pure")])  # type: ignore[arg-type]


def test_the_driver_under_test_is_the_one_asked_for():
    """AURORA_TEST_DRIVER=psycopg2 hides psycopg 3 here too (tests/base_settings.py)."""
    if os.environ.get("AURORA_TEST_DRIVER") == "psycopg2":
        assert settings.DRIVER == "psycopg2" and sys.modules.get("psycopg", "absent") is None
        from django.db.backends.postgresql import base

        assert not base.is_psycopg3


@pytest.mark.skipif(
    os.environ.get("AURORA_UNIT_NO_POSTGRES") != "1",
    reason="only under .ci/unit_without_postgres.sh",
)
def test_no_postgresql_is_installed_here():
    assert [tool for tool in ("pg_ctl", "postgres", "initdb", "psql") if shutil.which(tool)] == []
    with pytest.raises(RuntimeError, match="No PostgreSQL server found"):
        find_pg_bin()
