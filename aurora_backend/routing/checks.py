"""System check of the routing settings, with every ``manage.py check``:

- aurora_backend.E020: ``settings.AURORA_ROUTING`` is invalid (the ImproperlyConfigured
  text), checked when the router is in ``DATABASE_ROUTERS`` or AURORA_ROUTING is set.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from aurora_backend.routing.config import SETTINGS_NAME, RoutingConfig


def router_installed() -> bool:
    from django.conf import settings

    paths = [
        r if isinstance(r, str) else type(r).__module__ + "." + type(r).__name__
        for r in getattr(settings, "DATABASE_ROUTERS", [])
    ]
    return any(path.startswith("aurora_backend.rout") for path in paths)


@checks.register()
def check_routing(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.conf import settings

    if not router_installed() and getattr(settings, SETTINGS_NAME, None) is None:
        return []
    try:
        RoutingConfig.from_settings()
    except ImproperlyConfigured as err:
        return [checks.Error(str(err), hint="See README.md, 'Reader routing'.", id="aurora_backend.E020")]
    return []
