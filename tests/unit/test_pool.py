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

needs_psycopg3 = pytest.mark.skipif(
    drivers.NAME != "psycopg" or django.VERSION < (5, 1),
    reason="Django's pool needs psycopg 3 and Django 5.1+",
)


@needs_psycopg3
@pytest.mark.parametrize(
    "changes,pool,expected",
    [
        ({"CONN_MAX_AGE": 60}, True, "DATABASES['bad']['CONN_MAX_AGE'] = 60 cannot be used with"),
        ({}, {"max_sise": 4}, "has unknown key 'max_sise'; accepted keys are: "),
        ({}, {"check": None}, "['pool']['check'] cannot be set: use CONN_HEALTH_CHECKS"),
        ({}, {"connection_class": None}, "['pool']['connection_class'] cannot be set"),
        ({}, "yes", "['pool'] = 'yes' is invalid: it accepts True or a dict"),
    ],
)
def test_bad_pool_settings_name_the_setting_and_the_fix(changes, pool, expected):
    with pytest.raises(ImproperlyConfigured) as err:
        _pooled(alias="bad", pool=pool, **changes)
    assert expected in str(err.value)


@needs_psycopg3
def test_a_psycopg_too_old_for_the_pool_is_refused(monkeypatch):
    monkeypatch.setattr(drivers, "version", lambda: "3.1.8")
    with pytest.raises(ImproperlyConfigured, match=r"needs psycopg >= 3\.1\.12 \(installed: 3\.1\.8\)"):
        _pooled(alias="old")


def test_system_checks_report_pool_settings():
    from aurora_backend.health.checks import alias_settings_messages

    bad = [
        m for m in alias_settings_messages("p", _settings(pool={"max_sise": 1})) if m.id.startswith("aurora_backend.E")
    ]
    assert [m.id for m in bad] == ["aurora_backend.E003"]
    assert "needs psycopg 3" in bad[0].msg or "needs Django 5.1" in bad[0].msg or "unknown key 'max_sise'" in bad[0].msg
    if drivers.NAME == "psycopg" and django.VERSION >= (5, 1):
        assert "unknown key 'max_sise'" in bad[0].msg
        kept = alias_settings_messages("p", _settings(pool={"min_size": 2, "max_size": 4}))
        assert "aurora_backend.W009" in [m.id for m in kept]
        fine = alias_settings_messages("p", _settings(pool={"max_size": 4}))
        assert not [m for m in fine if m.id in ("aurora_backend.E003", "aurora_backend.E004", "aurora_backend.W009")]


def _settings(pool=True, aurora=None, **changes):
    settings_dict = {**connection.settings_dict, "CONN_MAX_AGE": 0, **changes}
    app = "pool-%s" % uuid.uuid4().hex[:8]
    settings_dict["OPTIONS"] = {
        **settings_dict["OPTIONS"],
        "pool": pool,
        "application_name": app,
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
