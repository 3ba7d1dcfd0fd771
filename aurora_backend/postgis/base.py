"""The PostGIS ENGINE: ``"ENGINE": "aurora_backend.postgis"`` in a DATABASES entry.

GeoDjango's PostGIS DatabaseWrapper with :class:`~aurora_backend.mixin.AuroraWrapperMixin`
first in the MRO: the same healing as ``aurora_backend``, the same spatial behaviour as
``django.contrib.gis.db.backends.postgis``. The other modules Django looks for in an
ENGINE package (``features``, ``operations``, ...) are GeoDjango's, through the wrapper's
class attributes.
"""

from django.contrib.gis.db.backends.postgis import base

from aurora_backend.mixin import AuroraWrapperMixin


class DatabaseWrapper(AuroraWrapperMixin, base.DatabaseWrapper):
    """PostGIS, Aurora-aware. ``vendor`` stays "postgresql" for third-party code paths."""
