"""The unit suite's one rule: no database.

A test here that asks for the database (the ``django_db`` mark, or the ``db``,
``transactional_db``, ``live_server``... fixtures) is refused at collection with a
UsageError naming it; one that connects anyway (``connection.cursor()``, a
``PostgresCluster``) fails with :class:`DatabaseAccessInUnitTest`. Such a test belongs
in the integration suite, tests/ (see docs/testing.md).

The same rule holds when the root run (``python -m pytest``) collects these tests
under the integration settings, where a server does exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent

#: Fixtures of pytest-django that open the test database for the test. (Not
#: ``django_db_setup``: the root run's tests/conftest.py puts it under every test of the
#: session to create the test database once; a unit test never uses it.)
DATABASE_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
        "live_server",
        "admin_user",
        "admin_client",
    }
)

MOVE_HINT = "tests/unit needs no database: move {} to the integration suite (tests/), see docs/testing.md"


class DatabaseAccessInUnitTest(RuntimeError):
    """A unit test tried to connect to a database or start a server."""


def _in_unit_suite(item: pytest.Item) -> bool:
    return _HERE in Path(str(item.path)).resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse unit tests that declare database access (the mark or a database fixture)."""
    bad = []
    for item in items:
        if not _in_unit_suite(item):
            continue
        fixtures = set(getattr(item, "fixturenames", ())) & DATABASE_FIXTURES
        if item.get_closest_marker("django_db") is not None or fixtures:
            why = "the django_db mark" if not fixtures else "fixture(s) " + ", ".join(sorted(fixtures))
            bad.append(f"{item.nodeid} uses {why}")
    if bad:
        raise pytest.UsageError("\n".join([MOVE_HINT.format("these tests"), *bad]))


@pytest.fixture(autouse=True)
def _no_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any connect or server start in a unit test fail loudly, whatever the settings."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    from aurora_backend.testing.cluster import PostgresCluster

    what = request.node.nodeid

    def refuse_connection(self: BaseDatabaseWrapper) -> None:
        raise DatabaseAccessInUnitTest(f"{what} opened a connection (alias {self.alias!r}). " + MOVE_HINT.format("it"))

    def refuse_server(self: PostgresCluster, *args: object, **kwargs: object) -> None:
        raise DatabaseAccessInUnitTest(f"{what} started a PostgreSQL cluster. " + MOVE_HINT.format("it"))

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", refuse_connection)
    monkeypatch.setattr(BaseDatabaseWrapper, "connect", refuse_connection)
    monkeypatch.setattr(PostgresCluster, "__init__", refuse_server)
