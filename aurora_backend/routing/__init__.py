"""Reader routing with read-your-writes (docs/routing.md).

- :class:`AuroraRouter` (``DATABASE_ROUTERS = ["aurora_backend.routers.AuroraRouter"]``),
  configured by ``settings.AURORA_ROUTING`` (:class:`RoutingConfig`);
- :func:`reader_settings`: the reader endpoint's DATABASES entry from the writer's;
- :func:`use_writer`: pin this context's reads to the writer;
- :func:`dump_token` / :func:`load_token`: carry this context's writes elsewhere
  (``middleware.ReadYourWritesMiddleware`` for requests, ``celery`` for tasks).

Imported lazily: importing this package needs no configured Django.
"""

from typing import TYPE_CHECKING

from aurora_backend._lazy import exports

if TYPE_CHECKING:
    from aurora_backend.exceptions import PositionUnavailable
    from aurora_backend.routing.carry import dump_token, load_token
    from aurora_backend.routing.config import RoutingConfig, reader_settings
    from aurora_backend.routing.middleware import ReadYourWritesMiddleware
    from aurora_backend.routing.router import AuroraRouter, use_writer

__all__ = [
    "AuroraRouter",
    "PositionUnavailable",
    "ReadYourWritesMiddleware",
    "RoutingConfig",
    "dump_token",
    "load_token",
    "reader_settings",
    "use_writer",
]

_LAZY = {
    "AuroraRouter": "aurora_backend.routing.router",
    "PositionUnavailable": "aurora_backend.exceptions",
    "ReadYourWritesMiddleware": "aurora_backend.routing.middleware",
    "RoutingConfig": "aurora_backend.routing.config",
    "dump_token": "aurora_backend.routing.carry",
    "load_token": "aurora_backend.routing.carry",
    "reader_settings": "aurora_backend.routing.config",
    "use_writer": "aurora_backend.routing.router",
}

__getattr__, __dir__ = exports(__name__, _LAZY)
