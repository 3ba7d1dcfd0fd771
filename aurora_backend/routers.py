"""The name to put in ``DATABASE_ROUTERS``: ``"aurora_backend.routers.AuroraRouter"``.

The router lives in :mod:`aurora_backend.routing`; this module only names it.
"""

from aurora_backend.routing.router import AuroraRouter, use_writer

__all__ = ["AuroraRouter", "use_writer"]
