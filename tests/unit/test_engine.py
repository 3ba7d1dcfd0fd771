"""The ENGINE class: PostgreSQL with our mixin first (no connection).

The ENGINE against a real server: tests/test_engine.py.
"""

from django.db import connections

from aurora_backend.base import DatabaseWrapper
from aurora_backend.mixin import AuroraWrapperMixin


def test_engine_is_postgresql_with_the_mixin_first():
    wrapper = connections["default"]
    assert isinstance(wrapper, DatabaseWrapper)
    assert wrapper.vendor == "postgresql"
    assert type(wrapper).__mro__[1] is AuroraWrapperMixin
