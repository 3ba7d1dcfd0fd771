"""System checks: each id triggered by the state it names, and not triggered without it."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import Tags, run_checks
from django.test import override_settings

from aurora_backend.health.checks import alias_settings_messages, check_databases
from aurora_backend.testing import free_port
from tests.test_health import blocking_session, extra_alias

PROXY_HOST = "app.proxy-abc123.us-east-1.rds.amazonaws.com"
KEEPALIVES = {"keepalives_idle": 1, "keepalives_interval": 1, "keepalives_count": 5}


def good(**overrides: Any) -> dict[str, Any]:
    """A settings entry that triggers no check; ``overrides`` change it."""
    entry = {
        "ENGINE": "aurora_backend",
        "NAME": "app",
        "HOST": "cluster.cluster-abc.rds.amazonaws.com",
        "CONN_MAX_AGE": 60,
        "OPTIONS": {"aurora": {"connect_deadline": 30}, **KEEPALIVES},
    }
    entry.update(overrides)
    return entry


def ids(entry: dict[str, Any]) -> list[str]:
    return [m.id for m in alias_settings_messages("x", entry)]


def test_good_settings_trigger_nothing():
    assert ids(good()) == []
    assert ids(good(HOST=PROXY_HOST, DISABLE_SERVER_SIDE_CURSORS=True)) == []


def test_e001_invalid_aurora_options_reported_not_raised():
    [message] = alias_settings_messages("x", good(OPTIONS={"aurora": {"conect_deadline": 30}}))
    assert message.id == "aurora_backend.E001" and "'conect_deadline'" in message.msg
    assert message.hint


def test_w001_persistent_connections_without_expiry():
    never = {"aurora": {"connect_deadline": 30, "max_age": None}, **KEEPALIVES}
    assert ids(good(CONN_MAX_AGE=None, OPTIONS=never)) == ["aurora_backend.W001"]
    assert ids(good(CONN_MAX_AGE=600, OPTIONS=never)) == ["aurora_backend.W001"]
    assert ids(good(CONN_MAX_AGE=0, OPTIONS=never)) == []
    assert ids(good(CONN_MAX_AGE=None)) == []  # default max_age expires them


def test_w002_connect_deadline_shorter_than_a_resume():
    assert ids(good(OPTIONS={"aurora": {"connect_deadline": 10}, **KEEPALIVES})) == ["aurora_backend.W002"]
    assert ids(good(OPTIONS={"aurora": {"connect_deadline": 15}, **KEEPALIVES})) == []


def _proxy_opts(proxy: Any = "auto", **extra: Any) -> dict[str, Any]:
    return {"aurora": {"connect_deadline": 30, "proxy": proxy}, **extra, **KEEPALIVES}


def test_w003_isolation_level_behind_rds_proxy_unless_proxy_mode_handles_it():
    off = _proxy_opts(False, isolation_level=3)
    assert ids(good(HOST=PROXY_HOST, DISABLE_SERVER_SIDE_CURSORS=True, OPTIONS=off)) == ["aurora_backend.W003"]
    assert ids(good(OPTIONS=off)) == []
    # Proxy mode (auto on a ".proxy-" host, or forced) puts the level in each BEGIN.
    assert ids(good(HOST=PROXY_HOST, OPTIONS=_proxy_opts(isolation_level=3))) == []
    assert ids(good(OPTIONS=_proxy_opts(True, isolation_level=3))) == []


def test_w004_server_side_cursors_behind_rds_proxy_unless_proxy_mode_handles_it():
    assert ids(good(HOST=PROXY_HOST, OPTIONS=_proxy_opts(False))) == ["aurora_backend.W004"]
    assert ids(good(HOST=PROXY_HOST, DISABLE_SERVER_SIDE_CURSORS=True, OPTIONS=_proxy_opts(False))) == []
    assert ids(good(DISABLE_SERVER_SIDE_CURSORS=False)) == []
    assert ids(good(HOST=PROXY_HOST)) == []  # proxy mode: client-side cursors


def test_w005_command_line_options_behind_rds_proxy():
    options = _proxy_opts(options="-c search_path=app")
    assert ids(good(HOST=PROXY_HOST, OPTIONS=options)) == ["aurora_backend.W005"]  # proxy mode cannot help
    assert ids(good(OPTIONS=_proxy_opts(True, options="-c search_path=app"))) == ["aurora_backend.W005"]
    assert ids(good(OPTIONS=options)) == []


def test_w007_proxy_mode_and_a_timezone_it_will_not_set():
    with override_settings(USE_TZ=True):
        [message] = alias_settings_messages("x", good(HOST=PROXY_HOST, USER="app", TIME_ZONE="Europe/Paris"))
        assert message.id == "aurora_backend.W007"
        assert "ALTER ROLE app SET timezone TO 'Europe/Paris'" in message.hint
        assert ids(good(HOST=PROXY_HOST)) == []  # UTC: Aurora's default, nothing to SET
        assert ids(good(HOST=PROXY_HOST, TIME_ZONE="Europe/Paris", OPTIONS=_proxy_opts(False))) == [
            "aurora_backend.W004"
        ]
    with override_settings(USE_TZ=False, TIME_ZONE="America/Chicago"):
        assert ids(good(HOST=PROXY_HOST)) == ["aurora_backend.W007"]


def test_w008_assume_role_behind_rds_proxy():
    assert ids(good(HOST=PROXY_HOST, OPTIONS=_proxy_opts(assume_role="owner"))) == ["aurora_backend.W008"]
    assert ids(good(OPTIONS=_proxy_opts(assume_role="owner"))) == []


def test_w006_a_silent_host_would_hang_a_query():
    deadline = {"connect_deadline": 30}
    assert ids(good(OPTIONS={"aurora": deadline})) == []  # silent_host_timeout's default: 6 s
    assert ids(good(OPTIONS={"aurora": dict(deadline, silent_host_timeout=None)})) == ["aurora_backend.W006"]
    assert ids(good(OPTIONS={"aurora": deadline, "keepalives": 0})) == ["aurora_backend.W006"]
    assert ids(good(OPTIONS={"aurora": deadline, "keepalives": 0, "tcp_user_timeout": 5000})) == []
    assert ids(good(OPTIONS={"aurora": dict(deadline, silent_host_timeout=None), **KEEPALIVES})) == []
    assert ids(good(OPTIONS={"aurora": dict(deadline, silent_host_timeout=None), "keepalives_idle": 1})) == [
        "aurora_backend.W006"
    ]  # interval and count left at the OS's 75 s x 9
    [message] = alias_settings_messages(
        "x", good(OPTIONS={"aurora": deadline, "keepalives_idle": 300, "tcp_user_timeout": 0})
    )
    assert message.id == "aurora_backend.W006" and "for 305 s" in message.msg


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_settings_check_is_registered_untagged_and_skips_other_engines():
    databases = {
        "default": good(OPTIONS={"aurora": {"bogus": 1}}),
        "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:", "OPTIONS": {"aurora": 1}},
    }
    with override_settings(DATABASES=databases):
        messages = [m for m in run_checks() if m.id.startswith("aurora_backend.")]
    assert [(m.id, m.obj) for m in messages] == [("aurora_backend.E001", "DATABASES['default']")]


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
