"""The driver seam (aurora_backend.drivers) against the real driver in use, and the
cursor kinds each driver gives Django: client, server-side binding, server-side (named)."""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection
from ledger.models import Account

from aurora_backend import drivers, stats
from aurora_backend.base import DatabaseWrapper
from aurora_backend.errors import ErrorKind, classify
from aurora_backend.testing.drivers import requested
from tests.pg import server
from tests.test_reconnect import admin, terminate, terminate_when_running  # noqa: F401  fixture

pytestmark = pytest.mark.django_db(transaction=True)


def _raw(**kwargs):
    srv = server()
    return drivers.connect(
        host=srv.host, port=srv.port, user=srv.user, password=srv.password, dbname="postgres", **kwargs
    )


def test_the_seam_uses_the_driver_django_uses():
    assert drivers.OperationalError is connection.Database.OperationalError
    assert drivers.NAME == connection.Database.__name__
    expected = {"psycopg2": "psycopg2", "psycopg": "psycopg", "pool": "psycopg"}.get(requested() or "")
    assert expected in (None, drivers.NAME)
    connection.ensure_connection()
    assert drivers.backend_pid(connection.connection) > 0
    assert drivers.transaction_status(connection.connection) == 0 and drivers.is_idle(connection.connection)
    assert "password" not in drivers.connection_parameters(connection.connection)


def test_closed_and_broken_connections_as_the_seam_reports_them(admin):
    closed = _raw()
    closed.close()
    assert drivers.is_closed(closed) and not drivers.transaction_open(closed)
    with pytest.raises(drivers.Error) as refused:
        closed.cursor().execute("SELECT 1")
    # Refused before anything was sent: statement re-run may send even a write again.
    assert drivers.refused_before_sending(refused.value)
    assert classify(refused.value, closed) is ErrorKind.DISCONNECT

    broken = _raw()
    broken.autocommit = True
    terminate(admin, drivers.backend_pid(broken))
    assert not drivers.is_closed(broken)  # nobody has looked yet
    with pytest.raises(drivers.OperationalError) as dead:
        broken.cursor().execute("SELECT 1")
    assert not drivers.refused_before_sending(dead.value)  # sent: its fate is unknown
    assert drivers.is_closed(broken)
    assert classify(dead.value, broken) is ErrorKind.DISCONNECT
    broken.close()


def _server_side_binding_wrapper():
    settings_dict = {**connection.settings_dict}
    settings_dict["OPTIONS"] = {**settings_dict["OPTIONS"], "server_side_binding": True}
    return DatabaseWrapper(settings_dict, alias="server_side_binding")


def test_a_read_with_server_side_binding_is_rerun_after_a_disconnect(admin):
    """Django's psycopg 3 option: parameters bound by the server (ServerBindingCursor);
    psycopg2 ignores it. A read killed mid-statement still returns its rows."""
    Account.objects.bulk_create([Account(name="b%d" % i, balance=i) for i in range(3)])
    wrapper = _server_side_binding_wrapper()
    try:
        wrapper.ensure_connection()
        pid = drivers.backend_pid(wrapper.connection)
        retried = stats.snapshot("server_side_binding")["statements_retried"]
        killer = threading.Thread(target=terminate_when_running, args=(admin, pid, "pg_sleep"))
        killer.start()
        with wrapper.cursor() as cursor:
            if drivers.NAME == "psycopg":
                assert type(cursor.cursor).__name__ == "ServerBindingCursor"
            cursor.execute(
                "SELECT name FROM ledger_account WHERE pg_sleep(0.3) IS NOT NULL AND balance >= %s ORDER BY name", [0]
            )
            rows = [row[0] for row in cursor.fetchall()]
        killer.join()
        assert rows == ["b0", "b1", "b2"]
        assert drivers.backend_pid(wrapper.connection) != pid
        assert stats.snapshot("server_side_binding")["statements_retried"] == retried + 1
    finally:
        wrapper.close()


@pytest.mark.skipif(drivers.NAME != "psycopg", reason="libpq state read through psycopg 3's PGconn")
def test_a_connection_left_mid_command_counts_as_dead():
    """A call that raised before libpq read its command's end leaves libpq OK and ACTIVE;
    every later statement fails with "another command is already in progress" (seen after
    a backend died under a named cursor's FETCH). The seam calls that dead, so it is replaced."""
    raw = _raw(autocommit=True)
    try:
        assert not drivers.is_closed(raw)
        raw.pgconn.send_query(b"SELECT 1")  # sent; its result is never read
        assert drivers.is_closed(raw)
        with pytest.raises(drivers.OperationalError, match="another command is already in progress"):
            raw.execute("SELECT 1")
        assert classify(drivers.OperationalError("connection socket closed"), raw) is ErrorKind.DISCONNECT
    finally:
        raw.close()


def test_a_server_side_cursor_is_tracked_and_never_rerun(admin):
    """QuerySet.iterator() reads through a named (server-side) cursor: the connection is
    in use between chunks, and a disconnect under it is reported, not re-run half-read."""
    Account.objects.bulk_create([Account(name="i%d" % i, balance=i) for i in range(6)])
    rows = Account.objects.order_by("name").values_list("name", flat=True).iterator(chunk_size=2)
    assert next(rows) == "i0"
    open_cursors = list(connection._aurora_named_cursors)
    assert len(open_cursors) == 1 and drivers.is_named_cursor(open_cursors[0])
    assert connection._aurora_cursors_open()
    terminate(admin, drivers.backend_pid(connection.connection))
    with pytest.raises(OperationalError):
        list(rows)
    # The connection was dropped when the error proved it dead; the next query works.
    assert Account.objects.count() == 6
    with connection.cursor() as plain:
        assert not drivers.is_named_cursor(plain.cursor)
