"""The ENGINE connects, migrates, serves testproject's views, and behaves like Django's."""

import json

import pytest
from django.db import connection, connections
from django.test import Client
from ledger import services
from ledger.models import Account

from aurora_backend import drivers
from aurora_backend.base import DatabaseWrapper
from aurora_backend.mixin import AuroraWrapperMixin

pytestmark = pytest.mark.django_db(transaction=True)


def test_engine_is_postgresql_with_the_mixin_first():
    wrapper = connections["default"]
    assert isinstance(wrapper, DatabaseWrapper)
    assert wrapper.vendor == "postgresql"
    assert type(wrapper).__mro__[1] is AuroraWrapperMixin


def test_connects_and_queries_a_real_server():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), 1 + 1")
        assert cursor.fetchone() == ("test_aurora_tests", 2)
    assert connection.aurora_address == "127.0.0.1"


def test_migrations_created_the_ledger_tables():
    tables = connection.introspection.table_names()
    assert {"ledger_account", "ledger_transfer"} <= set(tables)


def test_views_move_money_and_keep_the_total():
    a, b = services.open_accounts(2, 100)
    client = Client()
    response = client.post(
        "/transfer/",
        json.dumps({"source": a.pk, "destination": b.pk, "amount": 30}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert client.get("/total/").json() == {"total": 200, "accounts": 2, "transfers": 1}
    listed = client.get("/accounts/").json()["accounts"]
    assert [row["balance"] for row in listed] == [70, 130]
    too_much = client.post(
        "/transfer/",
        json.dumps({"source": a.pk, "destination": b.pk, "amount": 1000}),
        content_type="application/json",
    )
    assert too_much.status_code == 409
    assert Account.objects.get(pk=a.pk).balance == 70


def test_our_options_never_reach_the_driver():
    assert connection.settings_dict["OPTIONS"]["aurora"]  # set in tests/settings.py
    assert "aurora" not in connection.get_connection_params()
    connection.close()
    connection.ensure_connection()  # a real connection made with them set
    params = drivers.connection_parameters(connection.connection)
    assert params["dbname"] and "aurora" not in params and "connect_deadline" not in params
    dsn = " ".join("%s=%s" % item for item in params.items() if item[1])
    # libpq would have refused an unknown option: prove it, so the check above means something.
    with pytest.raises(drivers.Error, match="invalid connection option"):
        drivers.connect(dsn + " aurora=1")


def test_readme_run_command_sets_up_and_serves_testproject():
    """``python testproject/run.py`` on a fresh machine: its --check mode, end to end."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("AURORA_DSN", "DJANGO_SETTINGS_MODULE")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, os.path.join(root, "testproject", "run.py"), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "transfer 201" in result.stdout
    assert "'total': 10000" in result.stdout


def test_the_mixin_composes_with_another_backend_that_wraps_cursors():
    """Composition (e.g. with a metrics backend): the other mixin's make_cursor still runs
    and our statement re-run is still mixed in."""
    from django.db.backends.postgresql import base as pg

    from aurora_backend.connection.statements import RetryingCursorMixin

    class MetricsMixin:
        def make_cursor(self, cursor):
            wrapped = super().make_cursor(cursor)
            wrapped.seen_by_metrics = True
            return wrapped

    class Composed(AuroraWrapperMixin, MetricsMixin, pg.DatabaseWrapper):
        pass

    wrapper = Composed(connection.settings_dict, alias="composed")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
            assert cursor.seen_by_metrics is True
            assert isinstance(cursor, RetryingCursorMixin)
        with connections["default"].cursor() as plain:
            assert isinstance(plain, RetryingCursorMixin)
    finally:
        wrapper.close()


def test_execute_wrappers_still_see_every_statement():
    """Django's connection.execute_wrapper() hooks run as with the stock backend (the
    statement path only skips Django's wrapper loop when no wrapper is installed)."""
    seen = []
    wrapper = connections["default"]

    def recorder(execute, sql, params, many, context):
        seen.append((sql, many, context["connection"] is wrapper))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(recorder):
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s", [1])
            assert cursor.fetchone() == (1,)
            cursor.executemany("SELECT %s", [[1], [2]])
    with connection.cursor() as cursor:
        cursor.execute("SELECT 2")
    assert seen == [("SELECT %s", False, True), ("SELECT %s", True, True)]


@pytest.mark.parametrize("compose", [False, True])
def test_conn_health_checks_still_run_django_s_check(compose):
    """CONN_HEALTH_CHECKS: Django's own check (is_usable() once per request cycle) runs as
    with the stock backend, also with another mixin's hook between ours and Django's."""
    from django.db.backends.postgresql import base as pg

    hooks = []

    class OtherHook:
        def close_if_health_check_failed(self):
            hooks.append(1)
            super().close_if_health_check_failed()

    klass = type("Composed", (AuroraWrapperMixin, OtherHook, pg.DatabaseWrapper), {}) if compose else DatabaseWrapper
    options = {k: v for k, v in connection.settings_dict["OPTIONS"].items() if k != "pool"}  # (a pool checks itself)
    settings = dict(connection.settings_dict, CONN_HEALTH_CHECKS=True, CONN_MAX_AGE=None, OPTIONS=options)
    wrapper = klass(settings, alias="health_checked")
    checks = []
    usable = wrapper.is_usable
    wrapper.is_usable = lambda: checks.append(1) or usable()
    try:
        with wrapper.cursor() as cursor:  # a new connection: no check
            cursor.execute("SELECT 1")
        wrapper.close_if_unusable_or_obsolete()  # the end of a request: the next use checks
        for _ in range(3):
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT 1")
        assert checks == [1]
        assert (len(hooks) >= 4) if compose else not hooks  # the other hook: every cursor (and connect)
    finally:
        wrapper.close()


def test_transfer_to_an_unknown_account_is_404_naming_it():
    a, _ = services.open_accounts(2, 100)
    client = Client()
    response = client.post(
        "/transfer/",
        json.dumps({"source": a.pk, "destination": 999999, "amount": 5}),
        content_type="application/json",
    )
    assert response.status_code == 404, response.content
    assert response.json() == {"error": "no account with id 999999"}
    same = client.post(
        "/transfer/",
        json.dumps({"source": a.pk, "destination": a.pk, "amount": 5}),
        content_type="application/json",
    )
    assert same.status_code == 400
    assert client.get("/total/").json()["total"] == 200
