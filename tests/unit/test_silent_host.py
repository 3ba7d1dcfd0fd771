"""Silent-host detection settings: the defaults and the validation (no network namespace).

A host that really goes silent: tests/test_silent_host.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from aurora_backend.connection.keepalive import detection_params
from aurora_backend.options import AuroraOptions


@pytest.mark.parametrize("value", [0, 1.5, -3, True, "6", float("inf")])
def test_silent_host_timeout_is_validated(value: Any) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        AuroraOptions.from_settings("x", {"aurora": {"silent_host_timeout": value}})
    message = str(info.value)
    assert "DATABASES['x']['OPTIONS']['aurora']['silent_host_timeout']" in message
    assert ">= 2" in message and "None" in message


def test_default_detection_is_aws_keepalives_and_tcp_user_timeout() -> None:
    assert AuroraOptions().silent_host_timeout == 6.0
    params = detection_params(6.0)
    assert {k: params[k] for k in ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count")} == {
        "keepalives": 1,
        "keepalives_idle": 1,
        "keepalives_interval": 1,
        "keepalives_count": 5,
    }
    assert params["tcp_user_timeout"] == 6000  # libpq >= 12 (both drivers here ship 17)
