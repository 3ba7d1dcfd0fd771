"""django-prometheus's PostgreSQL DatabaseWrapper with AuroraWrapperMixin first in the MRO.

The composition ``aurora_backend.postgis`` uses for PostGIS: our healing around
django-prometheus's counting. django-prometheus wraps the driver's cursor class
(``cursor_factory``); our mixin wraps Django's CursorWrapper above it, so a statement the
ENGINE re-runs reaches django-prometheus's cursor twice: two executions, as the driver saw it.
"""

from django_prometheus.db.backends.postgresql import base

from aurora_backend.mixin import AuroraWrapperMixin


class DatabaseWrapper(AuroraWrapperMixin, base.DatabaseWrapper):  # type: ignore[misc]  # django-prometheus has no types
    """django-prometheus's PostgreSQL, Aurora-aware. ``vendor`` stays "postgresql"."""
