"""The one statement path (connection/statements.py ``_execute_over``), entry by entry.

Every way a statement reaches the server through a cursor of the ENGINE, ``execute``,
``executemany``, ``callproc``, the debug cursor (queries logged) and a server-side cursor
(``QuerySet.iterator()``), must behave alike where the rules say so: the connection is in
use while the statement runs and used at its end; the session state it takes holds the
connection; a read whose connection died is re-run only where that is safe. Real
PostgreSQL, real terminated backends, an injected clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError

from aurora_backend import drivers
from aurora_backend.connection.lifetime import reaper
from aurora_backend.errors import sqlstate
from tests import test_session_state
from tests.test_reconnect import terminate

# Fixtures: the "session" alias (idle_timeout 1 s, max_age 10 s, a fake clock), an admin connection.
wrapper, clock, admin = test_session_state.wrapper, test_session_state.clock, test_session_state.admin

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def wait_until_running(cursor: Any, pid: int, marker: str, worker: Any) -> None:
    """Poll pg_stat_activity with ``cursor`` until backend ``pid`` runs a statement containing
    ``marker`` (sent by ``worker``, a thread); fail if the thread ends first."""
    running = 0
    while not running and worker.is_alive():
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active' AND query LIKE %s",
            [pid, "%" + marker + "%"],
        )
        running = cursor.fetchone()[0]
    assert running, "the statement never showed in pg_stat_activity"


def pid_of(db: Any) -> int:
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


#: Each entry, given a cursor of ``wrapper``: take the session advisory lock 7.
TAKE_LOCK: dict[str, Callable[[Any], None]] = {
    "execute": lambda c: c.execute("SELECT pg_advisory_lock(%s)", [7]),
    "executemany": lambda c: c.executemany("SELECT pg_advisory_lock(7) WHERE %s = 1", [[1]]),
    "callproc": lambda c: c.callproc("pg_advisory_lock", [7]),
    "debug execute": lambda c: c.execute("SELECT pg_advisory_lock(%s)", [7]),
}


def cursor_for(db: Any, entry: str) -> Any:
    db.force_debug_cursor = entry.startswith("debug")
    return db.cursor()


@pytest.mark.parametrize("entry", sorted(TAKE_LOCK))
def test_every_entry_marks_the_connection_used_at_the_end_of_its_statement(wrapper, clock, entry):
    with cursor_for(wrapper, entry) as cursor:
        clock.now += 5  # a cursor made long ago: its statement is the use that counts
        TAKE_LOCK[entry](cursor)
        assert wrapper.aurora.last_used == clock.now
    wrapper.force_debug_cursor = False


@pytest.mark.parametrize("entry", sorted(TAKE_LOCK))
def test_every_entry_tracks_the_session_state_its_statement_takes(wrapper, clock, entry):
    with cursor_for(wrapper, entry) as cursor:
        TAKE_LOCK[entry](cursor)
    wrapper.force_debug_cursor = False
    assert wrapper.aurora_session_state() == ["advisory_lock 7"]
    pid = pid_of(wrapper)
    clock.now += 20  # past idle_timeout and max_age: kept for the lock, by the reaper and at use
    assert reaper.reap() == 0
    assert pid_of(wrapper) == pid
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(7)")
    assert wrapper.aurora_session_state() == []
    clock.now += 20
    assert pid_of(wrapper) != pid  # nothing held: expired at the next use


def test_the_debug_cursor_logs_the_query_and_takes_the_same_path(wrapper, clock):
    wrapper.force_debug_cursor = True
    try:
        with wrapper.cursor() as cursor:
            clock.now += 3
            cursor.execute("SET search_path TO public")
        assert wrapper.queries[-1]["sql"] == "SET search_path TO public"
        assert wrapper.aurora.last_used == clock.now
        assert wrapper.aurora_session_state() == ["set search_path"]
    finally:
        wrapper.force_debug_cursor = False


def test_a_statement_is_in_use_while_it_runs_on_every_wrapped_entry(wrapper, clock):
    seen = []

    def probe(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((many, wrapper.aurora.last_used))
        return execute(sql, params, many, context)

    with wrapper.execute_wrapper(probe):
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.executemany("SELECT %s", [[1], [2]])
        wrapper.force_debug_cursor = True
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
        wrapper.force_debug_cursor = False
    # Wrappers run before the statement: the clock of the cursor's check, not yet "in use".
    assert [many for many, _ in seen] == [False, True, False]
    assert all(used == clock.now for _, used in seen)
    assert wrapper.aurora.last_used == clock.now


@pytest.mark.parametrize("entry", ["execute", "debug execute"])
def test_a_read_whose_connection_died_is_re_run_from_execute(wrapper, admin, entry):
    with cursor_for(wrapper, entry) as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        terminate(admin, pid)
        cursor.execute("SELECT pg_backend_pid()")  # same cursor: no pre-use check in between
        assert cursor.fetchone()[0] != pid
    wrapper.force_debug_cursor = False


@pytest.mark.parametrize("entry", ["executemany", "callproc"])
def test_a_batch_or_a_function_whose_connection_died_is_not_re_run(wrapper, admin, entry):
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        terminate(admin, pid)
        with pytest.raises(DatabaseError):
            if entry == "executemany":
                cursor.executemany("SELECT %s", [[1]])
            else:
                cursor.callproc("pg_backend_pid")
    assert pid_of(wrapper) != pid  # the next cursor has a new connection


def test_a_server_side_cursor_holds_the_connection_until_closed_and_is_never_re_run(wrapper, clock, admin):
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 1")
    with wrapper.chunked_cursor() as named:
        assert drivers.is_named_cursor(named.cursor)
        clock.now += 5
        named.execute("SELECT generate_series(1, 100)")
        assert wrapper.aurora.last_used == clock.now
        assert named.fetchmany(10)[-1] == (10,)
        clock.now += 20  # idle past idle_timeout, a slow consumer between fetches
        assert reaper.reap() == 0
        assert named.fetchmany(10)[-1] == (20,)
    clock.now += 20
    assert reaper.reap() == 1  # closed: nothing holds the connection any more
    with wrapper.chunked_cursor() as named:
        named.execute("SELECT pg_backend_pid()")
        pid = named.fetchone()[0]
    with wrapper.chunked_cursor() as named:
        terminate(admin, pid)
        with pytest.raises(DatabaseError):
            named.execute("SELECT 1")  # a server-side cursor is never re-run
    assert pid_of(wrapper) != pid


def test_execute_keeps_django_signature_and_the_statement_runs_once(wrapper):
    with wrapper.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE once (i int)")
        cursor.execute("INSERT INTO once VALUES (%s)", [1])
        cursor.execute("INSERT INTO once VALUES (%s)", params=[2])
        cursor.executemany("INSERT INTO once VALUES (%s)", [[3], [4]])
        cursor.execute("SELECT count(*) FROM once")
        assert cursor.fetchone() == (4,)
        with pytest.raises(TypeError):
            cursor.execute()
        # a call Django's signatures refuse is refused (the two extra arguments of Django's
        # own wrapper loop are the only ones accepted)
        with pytest.raises(TypeError, match="positional arguments but 4 were given"):
            cursor.execute("SELECT 1", None, False)
        with pytest.raises(TypeError, match="positional arguments but 6 were given"):
            cursor.execute("SELECT 1", None, False, {}, 5)
        with pytest.raises(TypeError, match="positional arguments but 4 were given"):
            cursor.executemany("SELECT 1", [], True)
        with pytest.raises(TypeError):
            cursor.execute("SELECT 1", None, many=False)
    assert not math.isinf(wrapper.aurora.last_used)


RUN_SLOWLY: dict[str, Callable[[Any], None]] = {
    "execute": lambda c: c.execute("SELECT pg_sleep(%s) /* slow-entry */", [60]),
    "executemany": lambda c: c.executemany("SELECT pg_sleep(%s) /* slow-entry */", [[60]]),
    "callproc": lambda c: c.callproc("pg_sleep", [60]),
}


@pytest.mark.parametrize("entry", sorted(RUN_SLOWLY))
def test_the_idle_reaper_leaves_a_running_statement_alone_on_every_entry(wrapper, clock, admin, entry):
    import threading

    pid = pid_of(wrapper)
    wrapper.inc_thread_sharing()
    errors = []

    def run() -> None:
        try:
            with wrapper.cursor() as cursor:
                RUN_SLOWLY[entry](cursor)
        except Exception as exc:  # reported below
            errors.append(exc)

    # The statement runs until this test cancels it (a fixed short sleep could end before
    # the reaper looks, on a loaded machine, and the reaper would then be right to close).
    worker = threading.Thread(target=run)
    worker.start()
    try:
        with admin.cursor() as cur:  # until the statement runs on the server
            wait_until_running(cur, pid, "pg_sleep", worker)
        clock.now += 20  # idle_timeout long past, by the clock
        assert reaper.reap() == 0
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_cancel_backend(%s)", [pid])
        worker.join(30)
        wrapper.dec_thread_sharing()
    assert not worker.is_alive()
    # the app's statement was cancelled by the test (57014), not cut off by the reaper
    assert len(errors) == 1 and sqlstate(errors[0]) == "57014", errors
    assert wrapper.aurora.close_reason != "idle"


def test_the_debug_cursor_logs_copy_as_django_does(wrapper):
    """COPY is counted as a write, and Django's debug cursor still logs it (its copy_expert
    on psycopg2, its copy on psycopg 3), as Django's own test_copy_*cursors expect."""
    import io

    wrapper.force_debug_cursor = True
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE copied (i int)")
            if hasattr(cursor.cursor, "copy_expert"):  # psycopg2
                sql = "COPY copied TO STDOUT (FORMAT CSV, HEADER)"
                cursor.copy_expert(sql, io.StringIO())
            else:
                sql = "COPY copied TO STDOUT"
                with cursor.copy(sql) as copy:
                    assert list(copy) == []
        assert wrapper.queries_log[-1]["sql"] == sql
    finally:
        wrapper.force_debug_cursor = False
