"""RDS Blue/Green settings and which aliases are watched (no server).

The switchover itself, on the local deployment: tests/test_bluegreen.py.
"""

from __future__ import annotations

import pytest
from django.db import connections

KEY = "DATABASES['x']['OPTIONS']['aurora']['blue_green']"


@pytest.mark.parametrize(
    "value, message",
    [
        ({"hold": 0}, KEY + "['hold'] = 0 is invalid: it accepts a number of seconds > 0."),
        (
            {"poll_fast": 2, "poll_deployed": 1},
            KEY + "['poll_fast'] (2.0) must not exceed " + KEY + "['poll_deployed'] (1.0).",
        ),
        ({"commit_token": "yes"}, KEY + "['commit_token'] = 'yes' is invalid: it accepts True or False."),
        (
            {"holdd": 1},
            KEY + " has unknown key(s) 'holdd'; accepted keys are: enabled, poll, poll_deployed, "
            "poll_fast, hold, commit_token.",
        ),
        ("on", KEY + " = 'on' is invalid: it accepts True, False, \"auto\", or a dict"),
    ],
)
def test_bad_blue_green_settings_name_the_key(value, message):
    from django.core.exceptions import ImproperlyConfigured

    from aurora_backend.options import AuroraOptions

    with pytest.raises(ImproperlyConfigured) as error:
        AuroraOptions.from_settings("x", {"aurora": {"blue_green": value}})
    assert str(error.value).startswith(message)


def test_auto_watches_rds_hosts_only_and_a_plain_alias_gets_no_hook():
    from aurora_backend.bluegreen.config import BlueGreenConfig, enabled_for

    auto = BlueGreenConfig()
    assert enabled_for(auto, "app.cluster-abc.eu-west-1.rds.amazonaws.com", proxy=False)
    assert not enabled_for(auto, "app.proxy-abc.eu-west-1.rds.amazonaws.com", proxy=True)
    assert not enabled_for(auto, "127.0.0.1", proxy=False)
    assert enabled_for(BlueGreenConfig(enabled=True), "127.0.0.1", proxy=False)
    plain = vars(connections["default"])  # 127.0.0.1: "auto" is off, nothing on the instance
    assert "get_new_connection" not in plain and "close_if_health_check_failed" not in plain
