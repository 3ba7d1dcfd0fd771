"""Health: the report behind manage.py aurora_health, its SQL, rendering, JSON schema and system checks.

Public (imported on first use): ``collect(aurora_aliases())`` builds the :class:`HealthReport`
of every aurora alias (``check_alias()`` the :class:`AliasReport` of one), ``render()`` prints
it as ``aurora_health`` does.
"""

from typing import TYPE_CHECKING

from aurora_backend._lazy import exports

if TYPE_CHECKING:
    from aurora_backend.health.render import render
    from aurora_backend.health.report import AliasReport, HealthReport, aurora_aliases, check_alias, collect

__all__ = ["AliasReport", "HealthReport", "aurora_aliases", "check_alias", "collect", "render"]

_REPORT = "aurora_backend.health.report"

_LAZY = {
    "AliasReport": _REPORT,
    "HealthReport": _REPORT,
    "aurora_aliases": _REPORT,
    "check_alias": _REPORT,
    "collect": _REPORT,
    "render": "aurora_backend.health.render",
}

__getattr__, __dir__ = exports(__name__, _LAZY)
