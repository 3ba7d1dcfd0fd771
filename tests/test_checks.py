"""System checks that query a database: each id triggered by the state it names.

The checks on settings alone: tests/unit/test_checks.py.
"""

from __future__ import annotations

import pytest
from django.core.checks import Tags, run_checks
from django.test import override_settings

from aurora_backend.health.checks import check_databases
from aurora_backend.testing import free_port
from tests.test_health import blocking_session, extra_alias

# ----- database checks (manage.py check --database ...) ------------------------------------


def database_ids(aliases: list[str]) -> list[str]:
    return sorted(m.id for m in run_checks(tags=[Tags.database], databases=aliases) if m.id.startswith("aurora_"))


@pytest.mark.django_db(transaction=True)
def test_database_checks_quiet_on_a_healthy_database():
    assert database_ids(["default"]) == []
    assert database_ids([]) == []  # without --database nothing connects


@pytest.mark.django_db(transaction=True)
def test_e002_unreachable_database():
    with extra_alias("closed", PORT=str(free_port())):
        [message] = check_databases(databases=["closed"])
    assert message.id == "aurora_backend.E002" and "Connection refused" in message.msg


@pytest.mark.django_db(transaction=True)
def test_w010_to_w013_scaling_blockers():
    fast = {"long_transaction_seconds": 0.2, "idle_in_transaction_seconds": 0.2}
    with blocking_session(), override_settings(AURORA_HEALTH=fast):
        assert database_ids(["default"]) == [
            "aurora_backend.W010",
            "aurora_backend.W011",
            "aurora_backend.W012",
            "aurora_backend.W013",
        ]


@pytest.mark.django_db(transaction=True)
def test_w014_connections_near_max():
    with override_settings(AURORA_HEALTH={"capacity_warn_percent": 0.1}):
        assert database_ids(["default"]) == ["aurora_backend.W014"]
