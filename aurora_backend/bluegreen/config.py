"""``OPTIONS["aurora"]["blue_green"]``: watch RDS Blue/Green switchovers, hold traffic through one.

``True``/``False``/``"auto"`` (the default: on for hosts under ``.rds.amazonaws.com``, not
behind RDS Proxy), or a dict of the keys below (``enabled`` defaults to True there).
Intervals follow the AWS wrappers' defaults (``bg_interval_baseline_ms`` 60000,
``bg_interval_increased_ms`` 1000, ``bg_interval_high_ms`` 100); see docs/bluegreen.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class BlueGreenConfig:
    """Validated Blue/Green settings of one alias (seconds)."""

    #: None: "auto" (on for *.rds.amazonaws.com hosts); True or False to force it.
    enabled: bool | None = None
    #: Phase poll interval while no switchover is under way (the AWS wrappers' baseline: 60 s).
    poll: float = 60.0
    #: Phase poll interval while a deployment exists (CREATED, COMPLETED; AWS "increased": 1 s).
    poll_deployed: float = 1.0
    #: Phase poll interval from PREPARATION until the switchover has ended (AWS "high": 100 ms).
    poll_fast: float = 0.1
    #: Longest wait of one new connection or transaction during IN_PROGRESS; then an error.
    hold: float = 60.0
    #: Write a commit token in each writing transaction of retry_atomic, replicated to green,
    #: so that a COMMIT lost in the switchover is settled on whichever side answers.
    commit_token: bool = False


def parse(key: str, value: Any) -> BlueGreenConfig:
    """The config for ``value`` (bool, "auto", None or a dict); ``key`` names it in errors."""
    if value is None or value == "auto":
        return BlueGreenConfig()
    if isinstance(value, bool):
        return BlueGreenConfig(enabled=value)
    if not isinstance(value, Mapping):
        raise _error(key, value, 'True, False, "auto", or a dict with keys %s' % ", ".join(_names()))
    unknown = sorted(set(value) - set(_names()))
    if unknown:
        raise ImproperlyConfigured(
            "%s has unknown key(s) %s; accepted keys are: %s."
            % (key, ", ".join(repr(k) for k in unknown), ", ".join(_names()))
        )
    parsed: dict[str, Any] = {"enabled": True}
    for name, item in value.items():
        where = "%s[%r]" % (key, name)
        if name in ("enabled", "commit_token"):
            if not isinstance(item, bool):
                raise _error(where, item, "True or False")
            parsed[name] = item
        else:
            parsed[name] = _seconds(where, item)
    config = BlueGreenConfig(**parsed)
    for fast, slow in (("poll_fast", "poll_deployed"), ("poll_deployed", "poll")):
        if getattr(config, fast) > getattr(config, slow):
            raise ImproperlyConfigured(
                "%s[%r] (%s) must not exceed %s[%r] (%s)."
                % (key, fast, getattr(config, fast), key, slow, getattr(config, slow))
            )
    return config


def enabled_for(config: BlueGreenConfig, host: str | None, proxy: bool) -> bool:
    """Whether to watch: as configured, or ("auto") for an RDS host not behind RDS Proxy."""
    if config.enabled is not None:
        return config.enabled
    return bool(host) and str(host).lower().rstrip(".").endswith(".rds.amazonaws.com") and not proxy


def _names() -> list[str]:
    return [f.name for f in fields(BlueGreenConfig)]


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise _error(key, value, "a number of seconds > 0")
    return float(value)


def _error(key: str, value: Any, accepted: str) -> ImproperlyConfigured:
    return ImproperlyConfigured("%s = %r is invalid: it accepts %s." % (key, value, accepted))
