"""Health: the report behind manage.py aurora_health, its SQL, rendering, JSON schema and system checks.

Public (imported on first use): ``collect(aurora_aliases())`` builds the :class:`HealthReport`
of every aurora alias (``check_alias()`` the :class:`AliasReport` of one), ``render()`` prints
it as ``aurora_health`` does.
"""

from typing import Any, List

_LAZY = {
    "AliasReport": "aurora_backend.health.report",
    "HealthReport": "aurora_backend.health.report",
    "aurora_aliases": "aurora_backend.health.report",
    "check_alias": "aurora_backend.health.report",
    "collect": "aurora_backend.health.report",
    "render": "aurora_backend.health.render",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))
