"""A session that dies during Django's connect-time setup (the time zone ``set_config``
after login) is a dead connection like any other: healed, and the read runs.

The death is real: a server-side hook. The wrapper's connections put a schema first in
their search_path whose ``set_config(text, text, boolean)`` shadows pg_catalog's and
terminates its own backend (``pg_terminate_backend(pg_backend_pid())``: FATAL 57P01,
"terminating connection due to administrator command", as a promoted instance
restarting) the first ``kills`` times it is called, then does what pg_catalog's does.
The server's TimeZone differs from Django's ("UTC"), so Django's setup calls it.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import OperationalError, connection

from aurora_backend import signals
from aurora_backend.base import DatabaseWrapper

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

HOOK_SQL = """
CREATE SCHEMA connect_hook;
CREATE SEQUENCE connect_hook.setups;
CREATE TABLE connect_hook.kills (n int NOT NULL);
INSERT INTO connect_hook.kills VALUES (0);
CREATE FUNCTION connect_hook.set_config(name text, value text, is_local boolean) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  IF name = 'TimeZone' AND nextval('connect_hook.setups') <= (SELECT n FROM connect_hook.kills) THEN
    PERFORM pg_terminate_backend(pg_backend_pid());
  END IF;
  RETURN pg_catalog.set_config(name, value, is_local);
END $$;
"""


@pytest.fixture
def hook():
    """The hook in the test database; yields a function setting how many setups it kills."""
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS connect_hook CASCADE")
        cursor.execute(HOOK_SQL)

    def kill_next(n: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE connect_hook.kills SET n = %s", [n])
            cursor.execute("SELECT setval('connect_hook.setups', 1, false)")

    yield kill_next
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA connect_hook CASCADE")


def _hooked_wrapper(**aurora) -> DatabaseWrapper:
    settings = {**connection.settings_dict}
    settings["OPTIONS"] = {
        **settings["OPTIONS"],
        "aurora": {**settings["OPTIONS"]["aurora"], **aurora},
        "application_name": "setup-%s" % uuid.uuid4().hex[:8],
        "options": "-c search_path=connect_hook,pg_catalog,public -c TimeZone=America/Chicago",
    }
    if "pool" in settings["OPTIONS"]:
        settings["OPTIONS"]["pool"] = {"max_size": 1}
    return DatabaseWrapper(settings, alias="hooked")


def _setups() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM connect_hook.setups")
        return cursor.fetchone()[0]


def test_a_session_that_dies_during_connect_time_setup_is_replaced_and_the_read_runs(hook):
    hook(1)
    wrapper = _hooked_wrapper()
    retried: list = []

    def on_retry(sender, error, **kwargs):
        retried.append(str(error))

    signals.connect_retry.connect(on_retry, weak=False)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT current_setting('TimeZone'), 42")
            assert cursor.fetchone() == ("UTC", 42)  # Django's setup ran on the connection used
    finally:
        signals.connect_retry.disconnect(on_retry)
        wrapper.close()
        if wrapper.pool is not None:
            wrapper.close_pool()
    assert _setups() == 2  # the first setup's session was terminated for real, the second passed
    assert len(retried) == 1  # one connect retry: the session's death (psycopg 3 reads the FATAL, psycopg2 EOF)


def test_a_setup_that_always_dies_fails_within_the_connect_deadline(hook):
    hook(1000)
    wrapper = _hooked_wrapper(connect_deadline=1)
    try:
        with pytest.raises(OperationalError):
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT 1")
    finally:
        wrapper.close()
        if wrapper.pool is not None:
            wrapper.close_pool()
    assert 2 <= _setups() <= 40  # tried again, and bounded
