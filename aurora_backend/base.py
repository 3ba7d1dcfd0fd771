"""The ENGINE: ``"ENGINE": "aurora_backend"`` in a DATABASES entry.

Django's postgresql DatabaseWrapper with :class:`~aurora_backend.mixin.AuroraWrapperMixin`
first in the MRO. To combine with another ENGINE (PostGIS, a metrics backend), build
the same one-liner over that ENGINE's DatabaseWrapper.
"""

from django.db.backends.postgresql import base

from aurora_backend.mixin import AuroraWrapperMixin


class DatabaseWrapper(AuroraWrapperMixin, base.DatabaseWrapper):
    """PostgreSQL, Aurora-aware. ``vendor`` stays "postgresql" for third-party code paths."""
