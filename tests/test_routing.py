"""Reader routing on a real writer + hot standby in streaming replication.

WAL replay is paused on the standby (pg_wal_replay_pause()) so that it is stale for as
long as a test needs: any read of a fresh row that reaches it is a stale read.
"""

from __future__ import annotations

import contextvars
import threading
import time
import types

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext, override_settings
from ledger.models import Account

from aurora_backend import drivers, signals, stats
from aurora_backend.health import report as health
from aurora_backend.health.render import render_alias
from aurora_backend.routing import availability, position, token
from aurora_backend.routing.config import RoutingConfig
from aurora_backend.routing.router import AuroraRouter
from aurora_backend.runtime import Runtime
from aurora_backend.testing import PASSWORD, SUPERUSER, PostgresCluster
from aurora_backend.testing.drivers import pool_enabled
from aurora_backend.testing.routers import FixedWindowRouter, NaiveReaderRouter
from tests.base_settings import TEST_AURORA_OPTIONS
from tests.clocks import FakeClock as Clock

W, R = "rw_writer", "rw_reader"


READER_ADDRESSES = ["127.0.0.2", "127.0.0.3"]  # the standby listens on both (one port)


def reader_endpoint(host: str, port: int) -> list:
    """The reader endpoint's DNS: the ENGINE spreads connections over both addresses."""
    return list(READER_ADDRESSES)


def alias_settings(port: int, host: str = "127.0.0.1", **aurora) -> dict:
    options: dict = {"aurora": {**TEST_AURORA_OPTIONS, **aurora}}
    if pool_enabled():
        options["pool"] = {"min_size": 0, "max_size": 4}
    return {
        "ENGINE": "aurora_backend",
        "NAME": "postgres",
        "HOST": host,
        "PORT": str(port),
        "USER": SUPERUSER,
        "PASSWORD": PASSWORD,
        "OPTIONS": options,
    }


@pytest.fixture(scope="module")
def pair(django_db_blocker):
    try:
        primary = PostgresCluster().start()
    except RuntimeError as err:  # no local PostgreSQL binaries
        pytest.skip(str(err))
    standby = None
    try:
        standby = primary.replica().start()
        # The reader endpoint is a name spread over two addresses by the ENGINE; a pool builds
        # connections from parameters frozen at its creation (no resolver): an address there.
        reader_host = "127.0.0.2" if pool_enabled() else "reader.cluster-ro-test.invalid"
        entries = {
            W: alias_settings(primary.port),
            R: alias_settings(standby.port, reader_host, resolver=reader_endpoint),
        }
        for alias, entry in entries.items():
            connections.settings[alias] = connections.configure_settings({"default": entry})["default"]
        with django_db_blocker.unblock():
            with connections[W].schema_editor() as editor:
                editor.create_model(Account)
            Account.objects.using(W).create(name="seed", balance=7)
            servers = types.SimpleNamespace(primary=primary, standby=standby)
            wait_replayed(servers)
            yield servers
    finally:
        for alias in (W, R):
            if alias in connections.settings:
                connections[alias].close()
                close_pool = getattr(connections[alias], "close_pool", None)
                if close_pool is not None:  # Django's pools are kept per alias, past this module
                    close_pool()
                del connections[alias]
                del connections.settings[alias]
        if standby is not None:
            standby.destroy()
        primary.destroy()


def raw(cluster):
    conn = drivers.connect(host="127.0.0.1", port=cluster.port, user=SUPERUSER, password=PASSWORD, dbname="postgres")
    conn.autocommit = True
    return conn


def sql(cluster, statement):
    conn = raw(cluster)
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchone() if cursor.description else None
    finally:
        conn.close()


def wait_replayed(pair, timeout=10.0):
    """Until the standby has replayed everything the writer has written by now."""
    standby = pair.standby
    target = sql(pair.primary, "SELECT pg_current_wal_insert_lsn()")[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            (done,) = sql(standby, "SELECT pg_last_wal_replay_lsn() >= '%s'" % target)
        except drivers.OperationalError:
            done = False
        if done:
            return
        time.sleep(0.01)
    raise AssertionError("the standby did not replay up to %s" % target)


@pytest.fixture(autouse=True)
def fresh(pair, django_db_blocker):
    token.clear()
    FixedWindowRouter.forget()
    position.reset()
    availability.reset()
    stats.reset()
    with django_db_blocker.unblock():
        yield
        for alias in (W, R):
            connections[alias].close()


@pytest.fixture
def paused(pair):
    sql(pair.standby, "SELECT pg_wal_replay_pause()")
    yield pair
    sql(pair.standby, "SELECT pg_wal_replay_resume()")
    wait_replayed(pair)


def router(clock=None, **config):
    values = {"writer": W, "reader": R, "max_lag": 3600.0, "refresh": 0.0, "lag_refresh": 0.0, **config}
    return AuroraRouter(RoutingConfig(**values), Runtime(clock=clock or Clock()))


def write_then_read(n, prefix, clock=None, steps=(0.0,)):
    """Each step: insert a row, update it, read it back. Returns the stale reads."""
    stale = 0
    for i in range(n):
        name = "%s-%d" % (prefix, i)
        account = Account.objects.create(name=name, balance=0)
        Account.objects.filter(pk=account.pk).update(balance=i + 1)
        if clock is not None:
            clock.now += steps[i % len(steps)]
        if Account.objects.filter(name=name).values_list("balance", flat=True).first() != i + 1:
            stale += 1
    return stale


def test_stale_reads_naive_and_timer_routers_and_none_with_read_your_writes(paused):
    n = 10
    counts = {}
    with override_settings(DATABASE_ROUTERS=[NaiveReaderRouter(W, R)]):
        counts["naive"] = write_then_read(n, "naive")
    clock = Clock()
    with override_settings(DATABASE_ROUTERS=[FixedWindowRouter(W, R, window=0.5, clock=clock)]):
        counts["window"] = write_then_read(n, "window", clock, steps=(0.1, 1.0))
    ours = router(clock)
    with override_settings(DATABASE_ROUTERS=[ours]):
        with CaptureQueriesContext(connections[R]) as on_reader:
            counts["aurora"] = write_then_read(n, "aurora", clock, steps=(0.1, 1.0))
    print("stale reads of %d:" % n, counts)
    assert counts == {"naive": n, "window": n // 2, "aurora": 0}
    assert len(on_reader) == 0 and stats.snapshot(R)["ryw_reads"] == n
    ours.close()


def test_other_threads_read_on_the_reader_and_after_catching_up_so_does_the_writer_thread(pair):
    sql(pair.standby, "SELECT pg_wal_replay_pause()")
    ours = router()
    try:
        with override_settings(DATABASE_ROUTERS=[ours]):
            Account.objects.create(name="mine", balance=1)
            assert Account.objects.filter(name="mine").exists()  # on the writer: replay is paused

            seen = {}

            def other():  # a thread of its own: it wrote nothing
                seen["mine"] = Account.objects.filter(name="mine").exists()
                seen["seed"] = Account.objects.get(name="seed").balance
                connections.close_all()

            thread = threading.Thread(target=other)
            thread.start()
            thread.join(10)
            assert seen == {"mine": False, "seed": 7}  # served by the paused reader
            sql(pair.standby, "SELECT pg_wal_replay_resume()")
            wait_replayed(pair)
            with CaptureQueriesContext(connections[R]) as on_reader:
                assert Account.objects.filter(name="mine").exists()
            assert len(on_reader) == 1  # caught up: back on the reader
        assert stats.snapshot(R)["reader_reads"] == 3
        instances = {address for alias, address in position.states()}  # one state per reader instance
        assert instances and instances <= set(READER_ADDRESSES)
    finally:
        sql(pair.standby, "SELECT pg_wal_replay_resume()")
        ours.close()


def test_transactions_select_for_update_raw_writes_and_rollbacks(paused):
    ours = router()
    with override_settings(DATABASE_ROUTERS=[ours]):
        with transaction.atomic(using=W):
            with CaptureQueriesContext(connections[R]) as on_reader:
                assert Account.objects.select_for_update().get(name="seed").balance == 7
                assert Account.objects.count() >= 1
            assert len(on_reader) == 0  # inside atomic() on the writer: everything there
        with pytest.raises(ZeroDivisionError):
            with transaction.atomic(using=W):
                Account.objects.create(name="rolled-back", balance=1)
                _ = 1 / 0
        # Marked at the write (before any on_commit callback could run), pending: a rollback
        # cannot be told from a commit without asking, so it counts (the fail-safe side).
        assert token.current().pending
        token.clear()
        with CaptureQueriesContext(connections[R]) as on_reader:
            assert Account.objects.get(name="seed").balance == 7
        assert len(on_reader) == 1
        with connections[W].cursor() as cursor:  # raw SQL, no router involved
            cursor.execute("INSERT INTO ledger_account (name, balance) VALUES ('raw', 5)")
        assert Account.objects.get(name="raw").balance == 5
        assert ours.allow_migrate(R, "ledger") is False and ours.allow_migrate(W, "ledger") is None
    ours.close()


def test_aurora_replica_lag_path(pair):
    """Same-signature aurora_* functions; lag measured from the standby's real replay."""
    sql(
        pair.primary,
        """
        CREATE OR REPLACE FUNCTION aurora_db_instance_identifier() RETURNS text LANGUAGE sql AS $$
            SELECT CASE WHEN pg_is_in_recovery() THEN 'reader-1' ELSE 'writer-1' END $$;
        CREATE OR REPLACE FUNCTION aurora_replica_status() RETURNS TABLE (
            server_id text, session_id text, durable_lsn bigint, replica_lag_in_msec real, cpu real,
            last_update_timestamp timestamptz) LANGUAGE sql AS $$
            SELECT 'reader-1', 'r1', 0::bigint,
                   (CASE WHEN pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()
                    THEN extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000
                    ELSE 0 END)::real, 1::real, clock_timestamp() $$;
    """,
    )
    wait_replayed(pair)
    sql(pair.standby, "SELECT pg_wal_replay_pause()")
    clock = Clock()
    ours = router(clock, position="aurora")
    try:
        with override_settings(DATABASE_ROUTERS=[ours]):
            assert write_then_read(5, "aurora-lag", clock, steps=(1.0,)) == 0
            assert stats.snapshot(R)["ryw_reads"] == 5
            sql(pair.standby, "SELECT pg_wal_replay_resume()")
            wait_replayed(pair)
            clock.now += 0.01  # the reader reports lag 0 a moment after the write
            with CaptureQueriesContext(connections[R]) as on_reader:
                assert Account.objects.filter(name="aurora-lag-4").exists()
            assert len(on_reader) == 1
        assert connections[R].aurora_address in READER_ADDRESSES
        state = position.reader_state(R, connections[R].aurora_address)
        assert state.aurora is True and state.lag < 0.01
    finally:
        sql(pair.standby, "SELECT pg_wal_replay_resume()")
        sql(pair.primary, "DROP FUNCTION aurora_replica_status(); DROP FUNCTION aurora_db_instance_identifier()")
        wait_replayed(pair)
        ours.close()


def test_a_reader_lagging_past_max_lag_gets_no_reads(paused):
    events = []
    signals.reader_fallback.connect(
        lambda sender, **kw: events.append(("fallback", kw["reason"])), weak=False, dispatch_uid="t1"
    )
    signals.reader_restored.connect(
        lambda sender, **kw: events.append(("restored", kw["reason"])), weak=False, dispatch_uid="t2"
    )
    ours = router(max_lag=0.001)
    try:
        lsn = sql(
            paused.primary,
            "INSERT INTO ledger_account (name, balance) VALUES ('pending', 1) RETURNING pg_current_wal_insert_lsn()",
        )[0]
        deadline = time.monotonic() + 10
        while not sql(paused.standby, "SELECT pg_last_wal_receive_lsn() >= '%s'" % lsn)[0]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with override_settings(DATABASE_ROUTERS=[ours]):
            assert Account.objects.filter(name="pending").exists()  # not written here, yet fresh
            assert stats.snapshot(R)["reader_fallbacks"] == 1
            with override_settings(AURORA_ROUTING={"writer": W, "reader": R, "max_lag": 0.001}):
                report = health.check_alias(R)
            assert {f.code for f in report.findings} >= {"reader_lagging", "reader_fallback"}
            text = "\n".join(render_alias(report))
            print(text)  # docs/routing.md shows this output
            assert "fallbacks to the writer 1" in text
            sql(paused.standby, "SELECT pg_wal_replay_resume()")
            wait_replayed(paused)
            with CaptureQueriesContext(connections[R]) as on_reader:
                assert Account.objects.filter(name="pending").exists()
            assert len(on_reader) == 1
        assert events == [("fallback", "lagging"), ("restored", "lagging")]
    finally:
        signals.reader_fallback.disconnect(dispatch_uid="t1")
        signals.reader_restored.disconnect(dispatch_uid="t2")
        ours.close()


def test_write_in_one_asyncio_task_is_seen_by_its_own_reads_only(paused):
    import asyncio

    from asgiref.sync import sync_to_async

    ours = router()

    async def writer_task():
        await sync_to_async(Account.objects.create)(name="async", balance=3)
        return await sync_to_async(lambda: Account.objects.filter(name="async").exists())()

    async def reader_task():
        await asyncio.sleep(0.05)  # after the write: it is on the writer by now
        return await sync_to_async(lambda: Account.objects.filter(name="async").exists())()

    async def main():
        return await asyncio.gather(writer_task(), reader_task())

    with override_settings(DATABASE_ROUTERS=[ours]):
        assert asyncio.run(main()) == [True, False]  # the other task read the paused reader
    ours.close()


def test_cookie_middleware_carries_a_write_to_the_next_request(paused):
    from django.http import HttpResponse
    from django.test import RequestFactory

    from aurora_backend.routing.middleware import ReadYourWritesMiddleware

    def view(request):
        if request.method == "POST":
            Account.objects.create(name="posted", balance=1)
            return HttpResponse("ok")
        return HttpResponse("yes" if Account.objects.filter(name="posted").exists() else "no")

    ours = router()
    with override_settings(DATABASE_ROUTERS=[ours], AURORA_ROUTING={"writer": W, "reader": R}):
        middleware = ReadYourWritesMiddleware(view)
        factory = RequestFactory()
        response = middleware(factory.post("/"))
        cookie = response.cookies["aurora_ryw"]
        assert cookie["httponly"] and int(cookie["max-age"]) == 60

        def get(cookies):
            request = factory.get("/")
            request.COOKIES.update(cookies)
            return middleware(request).content

        # Later requests run in contexts of their own (another thread or process)
        assert contextvars.Context().run(get, {"aurora_ryw": cookie.value}) == b"yes"
        assert contextvars.Context().run(get, {}) == b"no"  # no cookie: the paused reader
        assert contextvars.Context().run(get, {"aurora_ryw": cookie.value[:-3] + "xyz"}) == b"no"  # bad signature
    ours.close()


def test_celery_headers_carry_a_write_to_the_task(paused):
    from django.dispatch import Signal

    from aurora_backend.routing import celery as aurora_celery

    celery_signals = types.SimpleNamespace(before_task_publish=Signal(), task_prerun=Signal(), task_postrun=Signal())
    aurora_celery.connect(celery_signals)
    ours = router()
    with override_settings(DATABASE_ROUTERS=[ours]):
        Account.objects.create(name="queued", balance=1)
        headers: dict = {}
        celery_signals.before_task_publish.send(sender="tasks.report", headers=headers, body=())
        assert set(headers) == {"aurora_ryw"}

        class Task:  # what Celery's signals send: the task, its request carrying the headers
            request = types.SimpleNamespace(aurora_ryw=headers["aurora_ryw"])

        def worker():
            task = Task()
            celery_signals.task_prerun.send(sender=task, task_id="1", task=task)
            in_task = Account.objects.filter(name="queued").exists()
            celery_signals.task_postrun.send(sender=task, task_id="1", task=task)
            return in_task, Account.objects.filter(name="queued").exists()

        assert contextvars.Context().run(worker) == (True, False)
    ours.close()


def test_reader_down_reads_go_to_the_writer_without_error(pair):
    events = []
    signals.reader_fallback.connect(lambda sender, **kw: events.append(kw["reason"]), weak=False, dispatch_uid="t3")
    clock = Clock()
    ours = router(clock, reader_connect_deadline=0.5, retry_reader_after=5.0)
    try:
        with override_settings(DATABASE_ROUTERS=[ours]):
            assert Account.objects.get(name="seed").balance == 7  # on the reader, connected
            assert stats.snapshot(R)["reader_reads"] == 1
            pair.standby.stop()  # for real: its backends get 57P01 and the socket closes
            for _ in range(3):
                assert Account.objects.get(name="seed").balance == 7
            clock.now += 6  # past retry_reader_after: tried again, still down
            assert Account.objects.get(name="seed").balance == 7
            assert stats.snapshot(R)["reader_fallbacks"] == 4
            pair.standby.start()
            clock.now += 6
            with CaptureQueriesContext(connections[R]) as on_reader:
                assert Account.objects.get(name="seed").balance == 7
            assert len(on_reader) == 1
        assert events == ["unreachable"]
    finally:
        signals.reader_fallback.disconnect(dispatch_uid="t3")
        if not pair.standby.is_running():
            pair.standby.start()
        ours.close()


def test_first_use_of_a_new_pool_is_the_routers_reader_check(pair):
    """The reader alias's first connection is made by the router's quick connect (its
    reader check), before Django's own connect: under Django's pool, on a pool just built
    and not yet opened. The reader is up, so the read is served there, with no fallback."""
    events = []
    signals.reader_fallback.connect(lambda sender, **kw: events.append(kw["reason"]), weak=False, dispatch_uid="t4")
    reader = connections[R]
    reader.close()
    close_pool = getattr(reader, "close_pool", None)
    if close_pool is not None:  # the next access to reader.pool builds a new one, not open
        close_pool()
    ours = router(reader_connect_deadline=2.0)
    try:
        with override_settings(DATABASE_ROUTERS=[ours]):
            assert ours.db_for_read(Account) == R  # nothing touched the reader alias before this
            with CaptureQueriesContext(reader) as on_reader:
                assert Account.objects.get(name="seed").balance == 7
            assert len(on_reader) == 1
        assert events == [] and stats.snapshot(R)["reader_reads"] == 2
    finally:
        signals.reader_fallback.disconnect(dispatch_uid="t4")
        ours.close()


def test_settings_errors_name_the_key_and_reader_endpoint_is_derived():
    from django.core.exceptions import ImproperlyConfigured

    from aurora_backend.routing import reader_settings

    databases = {"default": {}, "reader": {}}
    for raw, message in (
        ({"reader": "replica"}, r"AURORA_ROUTING\['reader'\] = 'replica' is not an alias of settings.DATABASES"),
        ({"max_lag": -1}, r"AURORA_ROUTING\['max_lag'\] = -1 is invalid: it accepts a number of seconds > 0"),
        ({"position": "gtid"}, r"AURORA_ROUTING\['position'\] = 'gtid' is invalid: it accepts one of 'auto'"),
        ({"maxlag": 1}, r"unknown key\(s\) 'maxlag'"),
        ([], r"must be a dict"),
    ):
        with pytest.raises(ImproperlyConfigured, match=message):
            RoutingConfig.from_settings(raw, databases)
    writer = {"HOST": "app.cluster-abc123.eu-west-1.rds.amazonaws.com", "NAME": "app", "OPTIONS": {"aurora": {}}}
    reader = reader_settings(writer, TEST={"MIRROR": "default"})
    assert reader["HOST"] == "app.cluster-ro-abc123.eu-west-1.rds.amazonaws.com"
    assert reader["TEST"] == {"MIRROR": "default"} and reader["OPTIONS"] is not writer["OPTIONS"]
    with pytest.raises(ImproperlyConfigured, match="already a reader endpoint"):
        reader_settings(reader)
    with pytest.raises(ImproperlyConfigured, match="cannot derive a reader endpoint from HOST 'db.example.com'"):
        reader_settings({"HOST": "db.example.com"})
    assert reader_settings({"HOST": "db.example.com"}, HOST="ro.example.com")["HOST"] == "ro.example.com"
    from aurora_backend.routing.checks import check_routing

    with override_settings(AURORA_ROUTING={"reader": "replica"}):
        assert [m.id for m in check_routing()] == ["aurora_backend.E020"]
    with override_settings(AURORA_ROUTING={"writer": W, "reader": R}):
        assert check_routing() == []
    assert check_routing() == []  # no router, no AURORA_ROUTING: nothing to check


def test_use_writer_and_one_database_mode(pair):
    ours = router()
    with override_settings(DATABASE_ROUTERS=[ours]):
        from aurora_backend.routers import use_writer

        with use_writer():
            assert ours.db_for_read(Account) == W
        assert ours.db_for_read(Account) == R
    single = AuroraRouter(RoutingConfig(writer=W, reader=W))
    assert (single.db_for_read(Account), single.db_for_write(Account), single.allow_migrate(W, "ledger")) == (
        None,
        None,
        None,
    )
    ours.close()


def test_writer_without_a_wal_position_falls_back_to_the_window(paused):
    """A role that may not call pg_current_wal_insert_lsn() (RDS restricts some functions)."""
    from aurora_backend.routing import carry

    sql(
        paused.primary,
        """
        CREATE ROLE ryw_app LOGIN PASSWORD 'ryw-app-pw';
        GRANT ALL ON ledger_account TO ryw_app; GRANT ALL ON SEQUENCE ledger_account_id_seq TO ryw_app;
        REVOKE EXECUTE ON FUNCTION pg_current_wal_insert_lsn() FROM PUBLIC;
    """,
    )
    app = "rw_app"
    entry = {**alias_settings(paused.primary.port), "USER": "ryw_app", "PASSWORD": "ryw-app-pw"}
    connections.settings[app] = connections.configure_settings({"default": entry})["default"]
    clock = Clock()
    ours = AuroraRouter(RoutingConfig(writer=app, reader=R, max_lag=3600.0, refresh=0.0), Runtime(clock=clock))
    try:
        with override_settings(DATABASE_ROUTERS=[ours]):
            Account.objects.create(name="no-position", balance=1)
            clock.now += 1.0  # within fallback_window (2 s): the writer
            assert Account.objects.filter(name="no-position").exists()
            assert carry._unsupported == {app}
            clock.now += 1.5  # past it: the reader, paused, so this read is stale (the window's limit)
            assert not Account.objects.filter(name="no-position").exists()
    finally:
        ours.close()
        connections[app].close()
        del connections[app]
        del connections.settings[app]
        carry._unsupported.clear()
        sql(
            paused.primary,
            """
            GRANT EXECUTE ON FUNCTION pg_current_wal_insert_lsn() TO PUBLIC;
            DROP OWNED BY ryw_app; DROP ROLE ryw_app;
        """,
        )


def test_cookie_middleware_in_an_async_stack(paused):
    import asyncio

    from asgiref.sync import sync_to_async
    from django.http import HttpResponse
    from django.test import RequestFactory

    from aurora_backend.routing.middleware import ReadYourWritesMiddleware

    async def view(request):
        if request.method == "POST":
            await sync_to_async(Account.objects.create)(name="async-posted", balance=1)
            return HttpResponse("ok")
        found = await sync_to_async(Account.objects.filter(name="async-posted").exists)()
        return HttpResponse("yes" if found else "no")

    ours = router()
    with override_settings(DATABASE_ROUTERS=[ours], AURORA_ROUTING={"writer": W, "reader": R}):
        middleware = ReadYourWritesMiddleware(view)
        factory = RequestFactory()

        async def request(method, cookies):
            req = getattr(factory, method)("/")
            req.COOKIES.update(cookies)
            return await middleware(req)

        posted = asyncio.run(request("post", {}))
        cookie = posted.cookies["aurora_ryw"].value
        assert asyncio.run(request("get", {"aurora_ryw": cookie})).content == b"yes"
        assert asyncio.run(request("get", {})).content == b"no"
    ours.close()
