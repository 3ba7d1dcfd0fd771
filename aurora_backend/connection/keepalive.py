"""Bounded detection of a silent host: libpq keepalives and ``tcp_user_timeout`` by default.

A host that dies or is cut off (an Availability Zone partitioned) sends no FIN and no RST:
without these, a query waiting on it waits for the kernel (TCP keepalive with the OS
defaults: about two hours). AWS's guidance for Aurora PostgreSQL is aggressive TCP
keepalives (idle 1 s, interval 1 s, 5 probes; "Fast failover with Amazon Aurora
PostgreSQL") and ``tcp_user_timeout`` for data sent but never acknowledged ("Dead
connection handling in PostgreSQL"); both are libpq connection parameters, so the kernel
does the watching: no thread of ours.

``OPTIONS["aurora"]["silent_host_timeout"]`` (default 6 s, AWS's 1 + 5 x 1) sets them:
``keepalives=1``, ``keepalives_idle=1``, ``keepalives_interval=1``,
``keepalives_count=timeout - 1`` and ``tcp_user_timeout=timeout`` (ms). A key the user set
in ``OPTIONS`` wins; ``keepalives=0`` or ``silent_host_timeout=None`` leaves libpq's defaults.
"""

from __future__ import annotations

import math
from typing import Any

from aurora_backend import drivers

#: libpq 12 added tcp_user_timeout; an older libpq refuses the unknown keyword.
TCP_USER_TIMEOUT_LIBPQ = 120000
KEEPALIVE_KEYS = ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout")


def detection_params(timeout: float | None) -> dict[str, int]:
    """The libpq parameters that make a silent host an error within ``timeout`` seconds."""
    if timeout is None:
        return {}
    params = {
        "keepalives": 1,
        "keepalives_idle": 1,
        "keepalives_interval": 1,
        "keepalives_count": max(1, math.ceil(timeout) - 1),
    }
    if _libpq_version() >= TCP_USER_TIMEOUT_LIBPQ:
        params["tcp_user_timeout"] = int(timeout * 1000)
    return params


def apply(params: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """Add the detection parameters the user did not set (``params`` is changed and returned)."""
    if timeout is None or str(params.get("keepalives", "1")).strip() == "0":
        return params
    for key, value in detection_params(timeout).items():
        params.setdefault(key, value)
    return params


def _libpq_version() -> int:
    try:
        return drivers.libpq_version()
    except Exception:
        return 0
