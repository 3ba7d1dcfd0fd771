"""The unit suite's guard (tests/unit/conftest.py) refuses database access."""

from __future__ import annotations

import pytest
from django.db import connection

from aurora_backend.testing import PostgresCluster
from tests.unit.conftest import DatabaseAccessInUnitTest


def test_a_query_is_refused_with_the_fix():
    with pytest.raises(DatabaseAccessInUnitTest, match="move .* to the integration suite"):
        connection.cursor()


def test_starting_a_server_is_refused():
    with pytest.raises(DatabaseAccessInUnitTest, match="started a PostgreSQL cluster"):
        PostgresCluster().start()
