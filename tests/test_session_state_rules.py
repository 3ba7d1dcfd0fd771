"""The statement rules of aurora_backend.connection.session_state (pure: no database)."""

from __future__ import annotations

import pytest

from aurora_backend.connection.session_state import (
    HOLD,
    NOTE,
    RELEASE,
    RELEASE_ALL,
    Effect,
    SessionState,
    effects,
    statement_text,
)


def ops(sql: str):
    return [(e.name, e.op, e.key) for e in effects(sql)]


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT "t"."id" FROM "t" WHERE "t"."id" = %s LIMIT 21',
        'UPDATE "t" SET "x" = %s WHERE "id" = %s',
        'INSERT INTO "t" ("a") VALUES (%s) RETURNING "t"."id"',
        'DELETE FROM "t" WHERE "id" IN (%s, %s)',
        "SELECT 'pg_advisory_lock(1)', 'SET x = 1'",
        "-- SELECT pg_advisory_lock(1)\nSELECT 1",
        "SELECT $$;SET x=1$$",
        "INSERT INTO t (a) VALUES ('x;y')",
        "CREATE TABLE baz (i int)",
        "SET CONSTRAINTS ALL IMMEDIATE",
        "SELECT attempts FROM template",
        "INSERT INTO temp VALUES (1)",
    ],
)
def test_ordinary_statements_hold_nothing(sql):
    assert [e for e in effects(sql) if e.op != NOTE] == []


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SET search_path TO tenant_a", ("set", HOLD, "search_path")),
        ("set Search_Path = 'a', public", ("set", HOLD, "search_path")),
        ("SET SESSION statement_timeout = 5", ("set", HOLD, "statement_timeout")),
        ("SET myapp.tenant TO 'a'", ("set", HOLD, "myapp.tenant")),
        ("SET TIME ZONE 'UTC'", ("set", HOLD, "timezone")),
        ("SET SCHEMA 'a'", ("set", HOLD, "search_path")),
        ("SET search_path TO DEFAULT", ("set", RELEASE, "search_path")),
        ("RESET search_path", ("set", RELEASE, "search_path")),
        ("RESET ALL", ("set", RELEASE_ALL, "")),
        ("SET LOCAL search_path TO a", ("set_local", NOTE, "search_path")),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", ("set_transaction", NOTE, "")),
        ("SET ROLE tenant_a_role", ("set_role", HOLD, "role")),
        ("SET role = x", ("set_role", HOLD, "role")),
        ("SET ROLE NONE", ("set_role", RELEASE, "role")),
        ("RESET ROLE", ("set_role", RELEASE, "role")),
        ("SET SESSION AUTHORIZATION bob", ("session_authorization", HOLD, "session_authorization")),
        ("RESET SESSION AUTHORIZATION", ("session_authorization", RELEASE, "session_authorization")),
        ("SELECT set_config('search_path', 'a', false)", ("set", HOLD, "search_path")),
        ("SELECT set_config('role', 'a', false)", ("set_role", HOLD, "role")),
        ("SELECT set_config('search_path', %s, true)", ("set_local", NOTE, "search_path")),
        ("SELECT set_config('work_mem', '1MB', current_setting('x') = 'y')", ("set", HOLD, "work_mem")),
        ("SET synchronous_commit TO local", ("set", HOLD, "synchronous_commit")),
        ("SET TIME ZONE LOCAL", ("set", RELEASE, "timezone")),
        ("SELECT pg_advisory_lock(42)", ("advisory_lock", HOLD, "42")),
        ("SELECT PG_TRY_ADVISORY_LOCK(1, 2)", ("advisory_lock", HOLD, "1,2")),
        ("SELECT pg_advisory_lock_shared(42)", ("advisory_lock", HOLD, "shared:42")),
        ("SELECT pg_advisory_unlock(42)", ("advisory_lock", RELEASE, "42")),
        ("SELECT pg_advisory_unlock_all()", ("advisory_lock", RELEASE_ALL, "")),
        ("SELECT pg_advisory_xact_lock(1)", ("advisory_xact_lock", NOTE, "1")),
        ("CREATE TEMP TABLE foo (id int)", ("temp_table", HOLD, "foo")),
        ('CREATE GLOBAL TEMPORARY TABLE IF NOT EXISTS "Foo" AS SELECT 1', ("temp_table", HOLD, "Foo")),
        ("CREATE TABLE pg_temp.bar (i int)", ("temp_table", HOLD, "bar")),
        ("CREATE TEMP TABLE x (i int) ON COMMIT DROP", ("temp_table", NOTE, "x")),
        ("SELECT 1 AS a INTO TEMPORARY TABLE t2", ("temp_table", HOLD, "t2")),
        ("DROP TABLE IF EXISTS foo CASCADE", ("temp_table", RELEASE, "foo")),
        ("DISCARD TEMP", ("temp_table", RELEASE_ALL, "")),
        ("LISTEN jobs", ("listen", HOLD, "jobs")),
        ("UNLISTEN jobs", ("listen", RELEASE, "jobs")),
        ("UNLISTEN *", ("listen", RELEASE_ALL, "")),
        ("PREPARE p (int) AS SELECT $1", ("prepare", HOLD, "p")),
        ("DEALLOCATE PREPARE p", ("prepare", RELEASE, "p")),
        ("DEALLOCATE ALL", ("prepare", RELEASE_ALL, "")),
        ("DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT 1", ("cursor", HOLD, "c")),
        ("DECLARE c CURSOR FOR SELECT 1", ("cursor", NOTE, "c")),
        ("CLOSE c", ("cursor", RELEASE, "c")),
        ("CLOSE ALL", ("cursor", RELEASE_ALL, "")),
        ("DISCARD ALL", ("discard_all", RELEASE_ALL, "*")),
        ("DISCARD PLANS", ("discard", NOTE, "plans")),
        ("SELECT nextval('s')", ("sequence", NOTE, "'s'")),
        ("/* tenant */ SET search_path TO a", ("set", HOLD, "search_path")),
    ],
)
def test_statement_rules(sql, expected):
    assert ops(sql) == [expected]


def test_several_statements_in_one_text_in_order():
    assert ops("SET a = 1; SELECT pg_advisory_lock(1); RESET a") == [
        ("set", HOLD, "a"),
        ("advisory_lock", HOLD, "1"),
        ("set", RELEASE, "a"),
    ]


def test_tracker_adds_up_and_releases():
    state = SessionState()
    assert not state.held
    for sql in ("SET search_path TO a", "SELECT pg_advisory_lock(42)", "SELECT pg_advisory_lock(42)"):
        state.apply(effects(sql))
    assert state.describe() == ["advisory_lock 42", "set search_path"]
    state.apply(effects("RESET ALL"))
    state.apply(effects("SELECT pg_advisory_unlock(42)"))
    assert state.describe() == ["advisory_lock 42"]  # advisory locks stack
    state.apply(effects("SELECT pg_advisory_unlock(42)"))
    assert not state.held


def test_reset_all_keeps_the_role():
    state = SessionState()
    state.apply(effects("SET ROLE r"))
    state.apply(effects("RESET ALL"))
    assert state.kinds() == ("set_role",)
    state.apply(effects("DISCARD ALL"))
    assert not state.held


def test_parameters_fill_keys():
    state = SessionState()
    state.apply(effects("SELECT pg_advisory_lock(%s)"), [42])
    assert state.describe() == ["advisory_lock 42"]
    state.apply(effects("SELECT %s, pg_advisory_unlock(%s)"), ["x", 42])
    assert not state.held
    state.apply(effects("SELECT set_config(%s, %s, %s)"), ["work_mem", "1MB", True])
    assert not state.held  # is_local true: nothing outlives the transaction
    state.apply(effects("SELECT set_config(%(n)s, %(v)s, false)"), {"n": "search_path", "v": "a"})
    assert state.describe() == ["set search_path"]


def test_unknown_unlock_keeps_the_lock():
    state = SessionState()
    state.apply(effects("SELECT pg_advisory_lock(1)"))
    state.apply(effects("SELECT pg_advisory_unlock(2)"))
    assert state.held


def test_statement_text():
    assert statement_text(b"SET a = 1") == "SET a = 1"
    assert statement_text("x") == "x"
    assert isinstance(effects("SELECT 1")[:0], tuple)
    assert Effect("set", HOLD).key == ""


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT COUNT(*) AS "__count" FROM "t" WHERE ("t"."a" IN (%s, %s) AND NOT ("t"."b" = %s))',
        'SELECT COALESCE(SUM("t"."x"), 0), MAX("t"."y"), DATE_TRUNC(%s, "t"."d" AT TIME ZONE %s) FROM "t"',
        'SELECT ROW_NUMBER() OVER (PARTITION BY "t"."a" ORDER BY "t"."b") FROM "t"',
        'SELECT JSONB_BUILD_OBJECT(%s, "t"."a"), LOWER("t"."n"), CAST("t"."v" AS numeric(10, 2)) FROM "t"',
        'SELECT "t"."id" FROM "t" WHERE EXISTS(SELECT 1 FROM "u" WHERE "u"."t_id" = ("t"."id")) LIMIT 1',
        'CREATE TABLE "t" ("id" bigint NOT NULL PRIMARY KEY, "n" varchar(100) NOT NULL)',
        'CREATE INDEX "i" ON "t" USING gin ("c")',
        "CREATE OR REPLACE FUNCTION public.f(a int) RETURNS int LANGUAGE sql AS $$ SELECT a $$",
        'INSERT INTO "t" ("a", "b") VALUES ' + ", ".join(["(%s, %s)"] * 600) + ' RETURNING "t"."id"',
        "WITH x(a) AS (SELECT 1) SELECT * FROM x",
        # Statements whose "name (" is an object or an option list, not a call (seen taken for calls):
        "CREATE TABLE IF NOT EXISTS probe (v text)",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
        "COPY t (a, b) FROM STDIN",
        "UPDATE t SET (a, b) = (1, 2)",
        "ALTER TABLE ONLY t ADD CONSTRAINT c CHECK (a > 0)",
        "VACUUM (ANALYZE) t",
        "ANALYZE t (a)",
        "EXPLAIN (ANALYZE, BUFFERS) SELECT 1",
        "REINDEX (VERBOSE) TABLE t",
        "SELECT xmlelement(name foo)",
    ],
)
def test_the_orms_sql_and_known_builtins_hold_nothing(sql):
    assert [e for e in effects(sql) if e.op != NOTE] == []


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("DO $$BEGIN PERFORM set_config('search_path', 'a', false); END$$", ("unknown", HOLD, "DO")),
        ("CALL refresh_tenant()", ("unknown", HOLD, "CALL")),
        ("SELECT enter_tenant(%s)", ("unknown", HOLD, "call enter_tenant()")),
        ("SELECT public.enter_tenant('a')", ("unknown", HOLD, "call enter_tenant()")),
        ('SELECT "pg_advisory_lock"(42)', ("unknown", HOLD, "call pg_advisory_lock()")),
        ("SELECT dblink_connect('c', 'dbname=x')", ("unknown", HOLD, "call dblink_connect()")),
        ("CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", ("temp_object", HOLD, "pg_temp.f")),
        ("CREATE TYPE pg_temp.pair AS (a int, b int)", ("temp_object", HOLD, "pg_temp.pair")),
        ("CREATE DOMAIN pg_temp.d AS int", ("temp_object", HOLD, "pg_temp.d")),
        ('INSERT INTO "t" ("a") VALUES ' + ", ".join(["(%s)"] * 600) + ", (f(1))", ("unknown", HOLD, "call f()")),
    ],
)
def test_what_the_text_cannot_show_is_held(sql, expected):
    assert expected in ops(sql)
