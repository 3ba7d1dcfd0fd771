"""Django's pool (OPTIONS["pool"]): the settings errors that need no server.

The faults across a pool of real connections are in tests/test_pool.py, which builds its
wrappers with :func:`_pooled` from here.
"""

from __future__ import annotations

import uuid

import django
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from aurora_backend import drivers
from aurora_backend.base import DatabaseWrapper


def _settings(pool=True, aurora=None, **changes):
    settings_dict = {**connection.settings_dict, "CONN_MAX_AGE": 0, **changes}
    app = "pool-%s" % uuid.uuid4().hex[:8]
    settings_dict["OPTIONS"] = {
        **settings_dict["OPTIONS"], "pool": pool, "application_name": app,
        "aurora": {**settings_dict["OPTIONS"]["aurora"], **(aurora or {})},
    }
    return settings_dict


def _pooled(alias="pooled", pool=True, aurora=None, **changes):
    return DatabaseWrapper(_settings(pool, aurora, **changes), alias=alias)


@pytest.mark.skipif(drivers.NAME != "psycopg2", reason="psycopg 3 is installed and in use")
def test_pool_with_psycopg2_only_names_the_setting_and_the_fix():
    with pytest.raises(ImproperlyConfigured) as err:
        _pooled(alias="p2")
    message = str(err.value)
    assert "DATABASES['p2']['OPTIONS']['pool']" in message and "aurora_backend[psycopg]" in message


@pytest.mark.skipif(django.VERSION >= (5, 1), reason="Django 5.1+ has a pool")
def test_pool_on_a_django_without_one_names_the_setting_and_the_fix():
    with pytest.raises(ImproperlyConfigured, match=r"\['pool'\] needs (psycopg 3|Django 5\.1 or newer)"):
        _pooled(alias="nopool")
