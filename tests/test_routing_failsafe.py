"""The fail-safe routing rule (issue 25) on a real writer + hot standby.

Each test makes a read that Django's stock backend (everything on the writer) answers
right, and that a router reading from a standby could answer wrong: WAL replay is paused,
or the write is not committed, so any such read that reached the reader would return the
old value.
"""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext, override_settings
from ledger.models import Account

from aurora_backend.routing import dump_token, reader_settings, token
from tests.test_routing import (  # noqa: F401 (fixtures)
    Clock,
    R,
    W,
    fresh,
    pair,
    paused,
    router,
    sql,
    wait_replayed,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def row(pair, request):
    """A row both servers have (balance 0), then replay paused: the reader keeps 0."""
    (pk,) = sql(
        pair.primary,
        "INSERT INTO ledger_account (name, balance) VALUES ('%s', 0) RETURNING id" % request.node.name[:60],
    )
    wait_replayed(pair)
    sql(pair.standby, "SELECT pg_wal_replay_pause()")
    token.clear()
    connections[W].close()  # the test's router watches the writer's connections from their start
    yield pk
    sql(pair.standby, "SELECT pg_wal_replay_resume()")
    wait_replayed(pair)


def balance(pk):
    return Account.objects.get(pk=pk).balance


def test_on_commit_callbacks_registered_before_the_first_write_read_it(row):
    seen = []

    def fails():
        raise RuntimeError("a callback that raises: Django skips the later ones")

    ours = router()
    with override_settings(DATABASE_ROUTERS=[ours]):
        with pytest.raises(RuntimeError):
            with transaction.atomic(using=W):
                account = Account.objects.select_for_update().get(pk=row)
                transaction.on_commit(lambda: seen.append(balance(row)), using=W)
                transaction.on_commit(fails, using=W)
                account.balance = 11
                account.save()
        assert seen == [11]  # the callback's read: the writer (stock: 11)
        assert balance(row) == 11  # and every later read of the request
        token.clear()
        headers = []
        with transaction.atomic(using=W):  # Celery's pattern: publish from on_commit
            transaction.on_commit(lambda: headers.append(dump_token()), using=W)
            Account.objects.filter(pk=row).update(balance=12)
        assert headers and headers[0].split(":")[1] != "-"  # the writer's position after the commit
    ours.close()


def test_set_autocommit_false_keeps_reads_in_the_transaction(row):
    clock = Clock()
    ours = router(clock, position="window", fallback_window=2.0)
    with override_settings(DATABASE_ROUTERS=[ours]):
        transaction.set_autocommit(False, using=W)
        try:
            Account.objects.filter(pk=row).update(balance=11)
            clock.now += 2.5  # past the window: no reader can have an uncommitted write
            assert balance(row) == 11
            transaction.commit(using=W)
        finally:
            transaction.set_autocommit(True, using=W)
        assert balance(row) == 11  # committed just now: still the writer
    ours.close()


def test_a_raw_begin_keeps_reads_in_the_transaction(row):
    clock = Clock()
    ours = router(clock, position="window", fallback_window=2.0)
    with override_settings(DATABASE_ROUTERS=[ours]):
        with connections[W].cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("UPDATE ledger_account SET balance = 11 WHERE id = %s", [row])
        clock.now += 2.5
        with CaptureQueriesContext(connections[R]) as on_reader:
            assert balance(row) == 11
        assert len(on_reader) == 0
        with connections[W].cursor() as cursor:
            cursor.execute("COMMIT")
        clock.now += 0.5  # committed 0.5 s ago: inside the window, the writer
        assert balance(row) == 11
    ours.close()


def test_a_transaction_opened_on_the_driver_connection_keeps_reads_on_the_writer(row):
    """Around Django entirely: BEGIN and UPDATE on the driver's own connection and cursor."""
    clock = Clock()
    ours = router(clock, position="window", fallback_window=2.0)
    with override_settings(DATABASE_ROUTERS=[ours]):
        writer = connections[W]
        writer.ensure_connection()
        raw = writer.connection.cursor()
        try:
            raw.execute("BEGIN")
            raw.execute("UPDATE ledger_account SET balance = 11 WHERE id = %s", [row])
            clock.now += 2.5
            assert balance(row) == 11  # stock: 11 (the same connection, in its transaction)
        finally:
            raw.execute("ROLLBACK")
            raw.close()
    ours.close()


def test_copy_through_djangos_cursor_counts_as_a_write(row):
    ours = router()
    with override_settings(DATABASE_ROUTERS=[ours]):
        with connections[W].cursor() as cursor:
            statement = "COPY ledger_account (name, balance) FROM STDIN"
            if hasattr(cursor.cursor, "copy_expert"):  # psycopg2
                cursor.copy_expert(statement, io.StringIO("copied-1\t1\ncopied-2\t2\n"))
            else:  # psycopg 3
                with cursor.copy(statement) as copy:
                    copy.write_row(("copied-1", 1))
                    copy.write_row(("copied-2", 2))
        assert Account.objects.filter(name__startswith="copied-").count() == 2  # stock: 2
        if hasattr(connections[W].connection, "get_parameter_status"):  # psycopg2: copy_from too
            token.clear()
            with connections[W].cursor() as cursor:
                cursor.copy_from(io.StringIO("copied-3\t3\n"), "ledger_account", columns=("name", "balance"))
            assert Account.objects.filter(name__startswith="copied-").count() == 3
    ours.close()


def test_raw_with_a_write_goes_to_the_writer(row):
    ours = router()
    with override_settings(DATABASE_ROUTERS=[ours]):
        inserted = list(
            Account.objects.raw("INSERT INTO ledger_account (name, balance) VALUES ('raw-insert', 5) RETURNING *")
        )
        assert [(a.name, a.balance) for a in inserted] == [("raw-insert", 5)]
        assert Account.objects.get(name="raw-insert").balance == 5  # marked: the writer
        token.clear()
        with CaptureQueriesContext(connections[R]) as on_reader:  # a raw() read: the reader
            assert [a.balance for a in Account.objects.raw("SELECT * FROM ledger_account WHERE id = %s", [row])] == [0]
        assert len(on_reader) == 1
    ours.close()


def test_a_user_function_call_counts_as_a_write(row, pair):
    sql(
        pair.primary,
        """CREATE OR REPLACE FUNCTION bump(i int) RETURNS int LANGUAGE sql AS
                         $$ UPDATE ledger_account SET balance = 11 WHERE id = i RETURNING balance $$""",
    )
    ours = router()
    with override_settings(DATABASE_ROUTERS=[ours]):
        with connections[W].cursor() as cursor:
            cursor.execute("SELECT bump(%s)", [row])
        assert balance(row) == 11
    ours.close()


def test_reader_settings_shares_objects_refuses_custom_endpoints_ignores_case():
    import threading

    class Resolver:  # like AuroraCluster's: holds a lock, cannot be copied or pickled
        def __init__(self):
            self.lock = threading.Lock()

        def __call__(self, host, port):
            return [host]

    resolver = Resolver()
    writer = {
        "HOST": "App.Cluster-Abc123.eu-west-1.rds.amazonaws.com",
        "NAME": "app",
        "OPTIONS": {"aurora": {"resolver": resolver, "connect_deadline": 30}},
    }
    reader = reader_settings(writer)
    assert reader["HOST"] == "App.cluster-ro-Abc123.eu-west-1.rds.amazonaws.com"
    assert reader["OPTIONS"]["aurora"]["resolver"] is resolver
    reader["OPTIONS"]["aurora"]["connect_deadline"] = 5  # the dicts are the reader's own
    assert writer["OPTIONS"]["aurora"]["connect_deadline"] == 30
    with pytest.raises(ImproperlyConfigured, match="already a reader endpoint"):
        reader_settings({"HOST": "app.CLUSTER-RO-abc.eu-west-1.rds.amazonaws.com"})
    with pytest.raises(ImproperlyConfigured, match="custom endpoint"):
        reader_settings({"HOST": "analytics.cluster-custom-abc123.eu-west-1.rds.amazonaws.com"})
    assert reader_settings(writer, HOST="x")["OPTIONS"]["aurora"]["resolver"] is resolver
