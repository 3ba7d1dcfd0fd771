"""Session state belongs to the app (issue 17): real PostgreSQL, real faults, injected time.

1. A session advisory lock outlives an idle spell longer than idle_timeout, and expiry.
2. After SET search_path / SET ROLE, a read whose backend dies is not re-run without them.
3. A client cursor being read is never closed under the loop by expiry or the idle reaper.
4. A lost COMMIT answered by another database is CommitOutcomeUnknown.
"""

from __future__ import annotations

import importlib
import random
import threading
from typing import Any

import pytest
from django.db import OperationalError, connection, connections

from aurora_backend import CommitOutcomeUnknown, drivers, retry_atomic, signals, stats
from aurora_backend.base import DatabaseWrapper
from aurora_backend.connection.lifetime import reaper
from aurora_backend.runtime import Runtime
from aurora_backend.testing import PostgresCluster
from tests.pg import server
from tests.test_reconnect import terminate, terminate_when_running
from tests.test_retry_atomic import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

ALIAS = "session"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def admin():
    srv = server()
    conn = drivers.connect(
        host=srv.host,
        port=srv.port,
        user=srv.user,
        password=srv.password,
        dbname=connection.settings_dict["NAME"],
    )
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def kept():
    """Every session_state_kept signal sent during the test."""
    seen: list[dict] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    signals.session_state_kept.connect(receiver, weak=False, dispatch_uid="test-session-kept")
    yield seen
    signals.session_state_kept.disconnect(dispatch_uid="test-session-kept")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def wrapper(clock):
    """A second alias on the test database with idle_timeout 1 s, max_age 10 s and a fake clock."""
    settings_dict = {**connection.settings_dict}
    settings_dict["OPTIONS"] = {"aurora": {"idle_timeout": 1, "max_age": 10, "ping_after": None}}
    db = DatabaseWrapper(settings_dict, alias=ALIAS)
    db.aurora_runtime = Runtime(clock=clock, random=random.Random(0))
    connections[ALIAS] = db
    yield db
    db.close()
    del connections[ALIAS]


def run(db: Any, sql: str, params: Any = None) -> list:
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def pid_of(db: Any) -> int:
    return run(db, "SELECT pg_backend_pid()")[0][0]


def scalar(admin: Any, sql: str, params: Any = None) -> Any:
    with admin.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


# ----- 1. an advisory lock outlives idle_timeout and max_age ------------------------------


def test_advisory_lock_is_still_held_after_an_idle_spell_longer_than_idle_timeout(wrapper, clock, admin, kept):
    before = stats.snapshot(ALIAS)["session_state_kept"]
    run(wrapper, "SELECT pg_advisory_lock(%s)", [42])
    pid = pid_of(wrapper)
    clock.now += 2  # "a Celery task calling a slow API": idle twice idle_timeout
    assert reaper.reap() == 0
    assert not wrapper.connection.closed
    assert scalar(admin, "SELECT pg_try_advisory_lock(42)") is False  # another worker cannot take it
    clock.now += 20  # and past max_age too
    assert pid_of(wrapper) == pid
    assert run(wrapper, "SELECT pg_advisory_unlock(42)") == [(True,)]  # the first still holds it
    assert [(k["reason"], k["state"]) for k in kept] == [
        ("idle", ["advisory_lock 42"]),
        ("expired", ["advisory_lock 42"]),
    ]
    assert stats.snapshot(ALIAS)["session_state_kept"] == before + 2
    # Unlocked: an ordinary connection again, closed when idle.
    clock.now += 2
    assert reaper.reap() == 1
    assert pid_of(wrapper) != pid


@pytest.mark.parametrize(
    "setup, undo",
    [
        ("SET search_path TO pg_catalog", "RESET ALL"),
        ("LISTEN jobs", "UNLISTEN *"),
        ("CREATE TEMP TABLE scratch (i int)", "DISCARD ALL"),
        ("PREPARE q AS SELECT 1", "DEALLOCATE q"),
    ],
)
def test_other_session_state_keeps_the_connection_until_undone(wrapper, clock, setup, undo):
    run(wrapper, setup)
    pid = pid_of(wrapper)
    clock.now += 20  # past max_age and idle_timeout
    assert reaper.reap() == 0
    assert pid_of(wrapper) == pid
    run(wrapper, undo)
    clock.now += 20
    assert pid_of(wrapper) != pid  # expired at the first use once the state is gone


def test_composed_sql_and_bytes_are_tracked(wrapper, clock):
    sql = importlib.import_module(drivers.NAME + ".sql")
    with wrapper.cursor() as cursor:
        cursor.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier("pg_catalog")))
        cursor.execute(b"SELECT pg_advisory_lock(7)")
    assert wrapper.aurora_session_state() == ["advisory_lock 7", "set search_path"]
    run(wrapper, "DISCARD ALL")
    assert wrapper.aurora_session_state() == []


# ----- 2. a read is never re-run without the tenant's search_path or role ------------------

TENANT_SQL = """
CREATE SCHEMA tenant_a;
CREATE TABLE public.records (tenant text, body text);
CREATE TABLE tenant_a.records (tenant text, body text);
INSERT INTO public.records VALUES ('a', 'a: flu'), ('b', 'b: medical record');
INSERT INTO tenant_a.records VALUES ('a', 'a: flu');
CREATE ROLE tenant_a_role;
GRANT USAGE ON SCHEMA tenant_a TO tenant_a_role;
GRANT SELECT ON public.records, tenant_a.records TO tenant_a_role;
ALTER TABLE public.records ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_a ON public.records FOR SELECT TO tenant_a_role USING (tenant = 'a');
"""
TENANT_DROP = (
    "DROP SCHEMA IF EXISTS tenant_a CASCADE; DROP TABLE IF EXISTS public.records; DROP ROLE IF EXISTS tenant_a_role"
)


@pytest.fixture
def tenants(admin):
    with admin.cursor() as cursor:
        cursor.execute(TENANT_DROP)
        cursor.execute(TENANT_SQL)
    yield
    connections.close_all()
    with admin.cursor() as cursor:
        cursor.execute(TENANT_DROP)


READ = "SELECT body FROM records WHERE pg_sleep(0.3) IS NOT NULL ORDER BY body"


@pytest.mark.parametrize("setup", ["SET search_path TO tenant_a", "SET ROLE tenant_a_role"])
def test_a_read_killed_mid_query_errors_instead_of_answering_as_someone_else(tenants, admin, kept, setup):
    run(connection, setup)
    assert run(connection, "SELECT body FROM records") == [("a: flu",)]
    pid = pid_of(connection)
    before = stats.snapshot("default")
    killer = threading.Thread(target=terminate_when_running, args=(admin, pid, "pg_sleep"))
    killer.start()
    with pytest.raises(OperationalError):
        run(connection, READ)
    killer.join()
    after = stats.snapshot("default")
    assert after["statements_retried"] == before["statements_retried"]
    assert after["session_state_errors"] == before["session_state_errors"] + 1
    assert [k["reason"] for k in kept] == ["rerun"] and isinstance(kept[0]["error"], OperationalError)
    # The next use outside a transaction gets a clean connection: the login role, public.
    assert pid_of(connection) != pid
    assert run(connection, "SELECT current_user = session_user, current_setting('search_path')") == [
        (True, '"$user", public')
    ]


ENTER_TENANT = """CREATE OR REPLACE FUNCTION public.enter_tenant(t text) RETURNS text LANGUAGE sql
                  AS $$ SELECT set_config('search_path', t, false) $$"""


@pytest.mark.parametrize(
    "setup",
    [
        "DO $$BEGIN PERFORM set_config('search_path', 'tenant_a', false); END$$",
        "SELECT enter_tenant('tenant_a')",  # a function that calls set_config: not in the text
        'SELECT "pg_advisory_lock"(42)',  # quoted: the same function
        "CREATE FUNCTION pg_temp.tenant() RETURNS text LANGUAGE sql AS $$ SELECT 'a' $$",
        "CREATE TYPE pg_temp.pair AS (a int, b int)",
        "CREATE DOMAIN pg_temp.positive AS int CHECK (VALUE > 0)",
    ],
)
def test_state_the_text_cannot_show_lets_the_error_through(tenants, admin, kept, setup):
    """Fail-safe: what the app did on the session may have changed the answer (or left
    state a new connection lacks), so a read killed mid-query is not re-run."""
    with admin.cursor() as cursor:
        cursor.execute(ENTER_TENANT)
    run(connection, setup)
    pid = pid_of(connection)
    killer = threading.Thread(target=terminate_when_running, args=(admin, pid, "pg_sleep"))
    killer.start()
    with pytest.raises(OperationalError):  # stock: the same error; a re-run: public's rows
        run(connection, READ)
    killer.join()
    assert [k["reason"] for k in kept] == ["rerun"]
    assert run(connection, "SELECT current_setting('search_path')") == [('"$user", public',)]


def test_terminated_while_idle_with_a_tenant_search_path_the_next_read_errors(tenants, admin):
    run(connection, "SET search_path TO tenant_a")
    terminate(admin, pid_of(connection))
    with pytest.raises(OperationalError):
        run(connection, "SELECT body FROM records ORDER BY body")
    assert run(connection, "SELECT count(*) FROM records") == [(2,)]  # clean: public again


def test_without_session_state_a_killed_read_is_still_re_run(tenants, admin):
    pid = pid_of(connection)
    killer = threading.Thread(target=terminate_when_running, args=(admin, pid, "pg_sleep"))
    killer.start()
    assert run(connection, READ) == [("a: flu",), ("b: medical record",)]
    killer.join()
    run(connection, "SET search_path TO tenant_a")
    run(connection, "RESET search_path")  # state gone again: an ordinary connection
    pid = pid_of(connection)
    killer = threading.Thread(target=terminate_when_running, args=(admin, pid, "pg_sleep"))
    killer.start()
    assert run(connection, READ) == [("a: flu",), ("b: medical record",)]
    killer.join()


# ----- 3. a cursor being read survives expiry and the idle reaper ---------------------------


@pytest.mark.parametrize("per_row", ["expiry", "idle"])
def test_a_cursor_loop_processes_every_row(wrapper, clock, per_row):
    seen = []
    cursor = wrapper.cursor()
    cursor.execute("SELECT id FROM generate_series(1, 10) AS id")
    pid = drivers.backend_pid(wrapper.connection)
    for (row_id,) in cursor:
        seen.append(row_id)
        if per_row == "expiry":
            clock.now += 4  # past max_age after 3 rows; each row's work uses the database
            assert run(wrapper, "SELECT %s", [row_id]) == [(row_id,)]
        else:
            clock.now += 2  # past idle_timeout between two rows
            assert reaper.reap() == 0
    assert seen == list(range(1, 11))
    assert drivers.backend_pid(wrapper.connection) == pid
    # Read to the end: the connection is ordinary again.
    clock.now += 20
    assert pid_of(wrapper) != pid
    cursor.close()


def test_a_closed_cursor_with_unread_rows_no_longer_holds_the_connection(wrapper, clock):
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT id FROM generate_series(1, 10) AS id")
        cursor.fetchone()
        pid = drivers.backend_pid(wrapper.connection)
    assert wrapper.aurora_session_state() == []
    clock.now += 20
    assert pid_of(wrapper) != pid


def test_any_of_many_open_cursors_holds_the_connection_once_it_has_unread_rows(wrapper, clock):
    cursors = [wrapper.cursor() for _ in range(40)]  # more than the registry keeps unpruned
    for cursor in cursors:
        cursor.execute("SELECT 1")
        cursor.fetchall()
    assert wrapper.aurora_session_state() == []
    cursors[3].execute("SELECT id FROM generate_series(1, 3) AS id")  # made long before its rows
    assert wrapper.aurora_session_state() == ["cursor with unread rows"]
    for cursor in cursors:
        cursor.close()
    assert wrapper.aurora_session_state() == []


# ----- 4. a lost COMMIT judged by another database ------------------------------------------

PROBE_SQL = """
CREATE TABLE session_probe (id serial PRIMARY KEY, tag text NOT NULL);
CREATE FUNCTION session_probe_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('session_probe.commit_sleep', true), '') <> '' THEN
    PERFORM pg_sleep(current_setting('session_probe.commit_sleep')::float);
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER session_probe_slow AFTER INSERT ON session_probe
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION session_probe_slow_commit();
"""
PROBE_DROP = "DROP TABLE IF EXISTS session_probe; DROP FUNCTION IF EXISTS session_probe_slow_commit()"
# Spend transaction ids (one per subtransaction) so that the other server knows the id too.
BURN_XIDS = """
CREATE TABLE burn (i int);
DO $$ BEGIN FOR i IN 1..%d LOOP BEGIN INSERT INTO burn VALUES (i); EXCEPTION WHEN others THEN NULL; END;
END LOOP; END $$;
"""


@pytest.fixture
def other_database(admin):
    """A second real cluster with a database of the same name, user and password, whose
    transaction ids are ahead of the test server's: it can answer txid_status for our ids."""
    with admin.cursor() as cursor:
        cursor.execute(PROBE_DROP)
        cursor.execute(PROBE_SQL)
    other = PostgresCluster().start()
    try:
        address = other.address
        raw = drivers.connect(
            host=address.host, port=address.port, user=address.user, password=address.password, dbname=address.dbname
        )
        raw.autocommit = True
        with raw.cursor() as cursor:
            cursor.execute('CREATE DATABASE "%s"' % connection.settings_dict["NAME"])
        raw.close()
        raw = drivers.connect(
            host=address.host,
            port=address.port,
            user=address.user,
            password=address.password,
            dbname=connection.settings_dict["NAME"],
        )
        raw.autocommit = True
        ahead = scalar(admin, "SELECT txid_current()") + 1000
        with raw.cursor() as cursor:
            cursor.execute(BURN_XIDS % max(0, ahead - scalar(raw, "SELECT txid_current()")))
        raw.close()
        yield other
    finally:
        connections.close_all()
        other.destroy()
        with admin.cursor() as cursor:
            cursor.execute(PROBE_DROP)


def test_a_lost_commit_answered_by_another_database_is_commit_outcome_unknown(admin, other_database, wrapper):
    # ``wrapper`` (an alias of its own, never pooled): its next connection goes where its
    # settings say, as a reconnect through DNS does.
    settings = wrapper.settings_dict
    wrapper.aurora_runtime = Runtime()  # real time: commit_check_time must be able to run out
    calls: list[int] = []

    def in_commit(pid: int) -> bool:
        return bool(
            scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event = 'PgSleep'", [pid])
        )

    def switch_then_kill(pid: int) -> None:
        wait_for(lambda: in_commit(pid))
        # Another database now answers behind the same name (Blue/Green, a restored snapshot)...
        settings["HOST"], settings["PORT"] = other_database.address.host, str(other_database.address.port)
        scalar(admin, "SELECT pg_terminate_backend(%s)", [pid])  # ...and the COMMIT here is lost.

    @retry_atomic(using=ALIAS, commit_check_time=1)
    def transfer() -> None:
        calls.append(1)
        run(wrapper, "INSERT INTO session_probe (tag) VALUES ('paid')")
        run(wrapper, "SELECT set_config('session_probe.commit_sleep', '5', true)")
        threading.Thread(target=switch_then_kill, args=(pid_of(wrapper),), daemon=True).start()

    with pytest.raises(CommitOutcomeUnknown) as info:
        transfer()
    wrapper.close()
    assert calls == [1]  # never re-run on a guess
    assert "not the one the transaction ran on" in str(info.value)
    txid = info.value.txid
    assert scalar(admin, "SELECT txid_status(%s)", [txid]) == "aborted"  # the truth, at home
    assert scalar(admin, "SELECT count(*) FROM session_probe") == 0


def test_the_server_identity_is_readable_by_a_role_without_privileges(admin):
    """The identity's system identifier needs no superuser: a bare login role reads it."""
    from aurora_backend.transactions.server_identity import IDENTITY_COLUMNS, identity_from_row

    srv = server()
    with admin.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS plain_login")
        cursor.execute("CREATE ROLE plain_login LOGIN PASSWORD 'plain-pw'")
    try:
        plain = drivers.connect(
            host=srv.host,
            port=srv.port,
            user="plain_login",
            password="plain-pw",
            dbname=connection.settings_dict["NAME"],
        )
        try:
            with plain.cursor() as cursor:
                cursor.execute("SELECT " + IDENTITY_COLUMNS)
                as_plain = identity_from_row(cursor.fetchone())
        finally:
            plain.close()
        with admin.cursor() as cursor:
            cursor.execute("SELECT " + IDENTITY_COLUMNS)
            as_superuser = identity_from_row(cursor.fetchone())
        assert as_plain == as_superuser and as_plain.system_identifier is not None
    finally:
        with admin.cursor() as cursor:
            cursor.execute("DROP ROLE IF EXISTS plain_login")
