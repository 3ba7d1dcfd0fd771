"""Reader routing with read-your-writes (README "Reader routing", docs/routing.md).

- :class:`AuroraRouter` (``DATABASE_ROUTERS = ["aurora_backend.routers.AuroraRouter"]``),
  configured by ``settings.AURORA_ROUTING`` (:class:`RoutingConfig`);
- :func:`reader_settings`: the reader endpoint's DATABASES entry from the writer's;
- :func:`use_writer`: pin this context's reads to the writer;
- :func:`dump_token` / :func:`load_token`: carry this context's writes elsewhere
  (``middleware.ReadYourWritesMiddleware`` for requests, ``celery`` for tasks).

Imported lazily: importing this package needs no configured Django.
"""

from typing import Any, List

_LAZY = {
    "AuroraRouter": "aurora_backend.routing.router",
    "use_writer": "aurora_backend.routing.router",
    "RoutingConfig": "aurora_backend.routing.config",
    "reader_settings": "aurora_backend.routing.config",
    "dump_token": "aurora_backend.routing.carry",
    "load_token": "aurora_backend.routing.carry",
    "ReadYourWritesMiddleware": "aurora_backend.routing.middleware",
    "PositionUnavailable": "aurora_backend.exceptions",
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
