"""Scale-event-aware reconnect against a real server: backends terminated for real.

The process running these tests has no request cycle, like a Celery worker: nothing
here sends request_started/request_finished.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError, connection, transaction
from ledger.models import Account

from aurora_backend import drivers, signals, stats
from aurora_backend.base import DatabaseWrapper
from aurora_backend.connection.connect import ClusterUnavailable
from aurora_backend.runtime import Runtime
from tests.pg import server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin():
    """A superuser connection outside Django, to terminate backends and look at the server."""
    srv = server()
    conn = drivers.connect(host=srv.host, port=srv.port, user=srv.user, password=srv.password, dbname="postgres")
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def received():
    events = []

    def on_reconnect(sender, alias, connection, reason, address, **kw):
        events.append((alias, reason))

    signals.reconnected.connect(on_reconnect)
    yield events
    signals.reconnected.disconnect(on_reconnect)


def terminate(admin, pid, wait=True):
    """Terminate backend ``pid``; with ``wait``, return once it is gone (the FATAL was sent)."""
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cur.fetchone() == (True,)
        deadline = time.monotonic() + 10
        while wait and time.monotonic() < deadline:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cur.fetchone()[0] == 0:
                return
            time.sleep(0.005)
        assert not wait, "backend %s still alive" % pid


def terminate_when_running(admin, pid, marker, timeout=10.0):
    """Terminate backend ``pid`` once it runs a statement containing ``marker``."""
    deadline = time.monotonic() + timeout
    with admin.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active' AND query LIKE %s",
                [pid, "%" + marker + "%"],
            )
            if cur.fetchone()[0]:
                terminate(admin, pid, wait=False)
                return
            time.sleep(0.01)
    raise AssertionError("backend %s never ran %r" % (pid, marker))


def backend_pid():
    connection.ensure_connection()
    return drivers.backend_pid(connection.connection)


def test_terminated_while_idle_in_a_worker_loop_next_query_succeeds(admin, received):
    Account.objects.create(name="a", balance=5)
    before = stats.snapshot("default")["reconnects"]
    old_pid = backend_pid()
    terminate(admin, old_pid)
    # The next ORM call in the loop: no exception, right answer, a new backend.
    assert list(Account.objects.values_list("name", flat=True)) == ["a"]
    assert backend_pid() != old_pid
    assert stats.snapshot("default")["reconnects"] == before + 1
    assert received == [("default", "stale")]


def test_write_after_idle_termination_is_sent_on_the_new_connection(admin):
    old_pid = backend_pid()
    terminate(admin, old_pid)
    # The dead socket is found before the INSERT is sent, so even a write goes through.
    Account.objects.create(name="w", balance=1)
    assert Account.objects.filter(name="w").count() == 1


def test_terminated_during_a_select_in_autocommit_returns_the_rows(admin):
    Account.objects.bulk_create([Account(name="r%d" % i, balance=i) for i in range(3)])
    pid = backend_pid()
    retried = stats.snapshot("default")["statements_retried"]
    killer = threading.Thread(target=terminate_when_running, args=(admin, pid, "pg_sleep"))
    killer.start()
    rows = list(
        Account.objects.extra(where=["pg_sleep(0.3) IS NOT NULL"]).order_by("name").values_list("name", flat=True)
    )
    killer.join()
    assert rows == ["r0", "r1", "r2"]
    assert backend_pid() != pid
    assert stats.snapshot("default")["statements_retried"] == retried + 1


@pytest.fixture
def slow_insert_trigger():
    """Make INSERTs into ledger_account take 0.3 s, so a backend can be killed during one."""
    with connection.cursor() as cur:
        cur.execute(
            "CREATE FUNCTION aurora_slow() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$"
        )
        cur.execute(
            "CREATE TRIGGER aurora_slow BEFORE INSERT ON ledger_account FOR EACH ROW EXECUTE FUNCTION aurora_slow()"
        )
    yield
    with connection.cursor() as cur:
        cur.execute("DROP TRIGGER aurora_slow ON ledger_account")
        cur.execute("DROP FUNCTION aurora_slow()")


def test_terminated_during_an_insert_raises_and_never_duplicates(admin, slow_insert_trigger):
    pid = backend_pid()
    retried = stats.snapshot("default")["statements_retried"]
    killer = threading.Thread(target=terminate_when_running, args=(admin, pid, "INSERT INTO"))
    killer.start()
    with pytest.raises(OperationalError):
        Account.objects.create(name="maybe", balance=1)
    killer.join()
    assert stats.snapshot("default")["statements_retried"] == retried  # a write is never re-run
    assert connection.connection is None  # healed at once, not at the end of a request
    assert Account.objects.filter(name="maybe").count() == 0  # the next call works
    Account.objects.create(name="next", balance=1)
    assert Account.objects.filter(name="next").count() == 1


def test_inside_atomic_error_is_raised_nothing_half_committed_next_transaction_works(admin):
    pid = backend_pid()
    with pytest.raises(OperationalError):
        with transaction.atomic():
            Account.objects.create(name="half", balance=1)
            terminate(admin, pid)
            Account.objects.create(name="other-half", balance=1)
    assert connection.connection is None
    with transaction.atomic():
        Account.objects.create(name="whole", balance=1)
    assert sorted(Account.objects.values_list("name", flat=True)) == ["whole"]


# 25006 after a failover, with a real demoted writer (a hot standby): test_failover_readonly.py


def test_connection_lost_inside_a_raw_begin_is_reported_not_split(admin, received):
    """A transaction opened with a raw BEGIN (outside atomic()) belongs to the app: if the
    connection dies in it, its next statement fails, as with Django's backend; nothing is
    silently re-run in autocommit on a new connection."""
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO ledger_account (name, balance) VALUES ('first half', 1)")
        terminate(admin, drivers.backend_pid(connection.connection))
        with pytest.raises(OperationalError):
            with connection.cursor() as again:  # the pre-use check must not reconnect silently
                again.execute("INSERT INTO ledger_account (name, balance) VALUES ('second half', 1)")
    assert not Account.objects.filter(name__in=["first half", "second half"]).exists()


def _broken_alias(**changes):
    # With OPTIONS["pool"], pools are per alias (Django's rule): drop the last test's one.
    stale = getattr(DatabaseWrapper, "_connection_pools", {}).pop("broken", None)
    if stale is not None:
        stale.close()
    settings_dict = {**connection.settings_dict, **changes}
    settings_dict["OPTIONS"] = {**settings_dict["OPTIONS"], "aurora": {**settings_dict["OPTIONS"]["aurora"]}}
    wrapper = DatabaseWrapper(settings_dict, alias="broken")
    sleeps: list[float] = []
    wrapper.aurora_runtime = Runtime(sleep=sleeps.append)
    return wrapper, sleeps


@pytest.mark.parametrize("changes", [{"PASSWORD": "wrong"}, {"NAME": "no_such_database"}])
def test_bad_password_or_missing_database_fail_at_once(changes):
    wrapper, sleeps = _broken_alias(**changes)
    with pytest.raises(OperationalError) as err:
        wrapper.ensure_connection()
    assert sleeps == []
    assert "wrong" not in str(err.value) or "PASSWORD" in changes and "password authentication failed" in str(err.value)


def test_connect_retry_is_exact_with_injected_time(admin):
    """Refused connections: backoff with full jitter until the deadline, then a clear error."""
    import random

    from aurora_backend.testing import free_port

    settings_dict = {**connection.settings_dict, "PORT": str(free_port())}
    settings_dict["OPTIONS"] = {"aurora": {"connect_deadline": 5, "backoff_base": 0.5, "backoff_max": 2}}
    wrapper = DatabaseWrapper(settings_dict, alias="refused")
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    wrapper.aurora_runtime = Runtime(clock=lambda: now[0], sleep=sleep, random=random.Random(7))
    expected_rng = random.Random(7)
    with pytest.raises(OperationalError) as err:
        wrapper.ensure_connection()
    assert isinstance(err.value.__cause__, ClusterUnavailable)
    caps = [0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    expected = []
    for cap in caps:
        delay = expected_rng.uniform(0, cap)
        if sum(expected) + delay >= 5:
            break
        expected.append(delay)
    assert sleeps == expected
    assert "did not accept a connection in" in str(err.value)
    assert "%d attempts" % (len(expected) + 1) in str(err.value)
    assert "connect_deadline" in str(err.value)


def test_server_restart_a_query_made_while_it_is_down_succeeds_once_it_is_back():
    """A reboot/failover for real: the server stops; a worker's next query waits and succeeds."""
    from tests.pg import cluster

    pg = cluster()
    if pg is None:
        pytest.skip("needs the throwaway cluster (AURORA_TEST_DSN names an external server)")
    Account.objects.create(name="before-restart", balance=1)
    retries = stats.snapshot("default")["connect_retries"]
    pg.stop("fast")
    restarter = threading.Timer(1.5, pg.start)
    restarter.start()
    try:
        started = time.monotonic()
        # The old connection is dead and the server refuses connections for ~1.5 s.
        assert Account.objects.filter(name="before-restart").count() == 1
        waited = time.monotonic() - started
    finally:
        restarter.join()
    assert waited >= 1.0
    assert stats.snapshot("default")["connect_retries"] > retries


def test_server_down_past_the_deadline_fails_with_a_clear_error():
    from tests.pg import cluster

    pg = cluster()
    if pg is None:
        pytest.skip("needs the throwaway cluster")
    wrapper, sleeps = _broken_alias()
    wrapper.settings_dict["OPTIONS"]["aurora"].update(connect_deadline=1.0, backoff_base=0.1, backoff_max=0.2)
    wrapper.aurora_options = type(wrapper.aurora_options).from_settings("broken", wrapper.settings_dict["OPTIONS"])
    wrapper.aurora_runtime = Runtime()  # real time: 1 s
    pg.stop("fast")
    try:
        with pytest.raises(OperationalError) as err:
            wrapper.ensure_connection()
    finally:
        pg.start()
    assert "did not accept a connection in 1." in str(err.value) or "did not accept a connection in 0." in str(
        err.value
    )
    assert isinstance(err.value.__cause__, ClusterUnavailable)


@pytest.mark.parametrize("many", [False, True])
def test_a_write_that_never_left_is_sent_on_a_new_connection(many, received):
    """The driver connection closed under an open cursor (as the idle reaper may do):
    the driver refuses the statement before sending it, so even a write is re-run."""
    with connection.cursor() as cursor:
        connection.connection.close()  # a real close of the driver connection
        sql = "INSERT INTO ledger_account (name, balance) VALUES (%s, %s)"
        if many:
            cursor.executemany(sql, [("m1", 1), ("m2", 2)])
        else:
            cursor.execute(sql, ["s1", 1])
    expected = ["m1", "m2"] if many else ["s1"]
    assert sorted(Account.objects.values_list("name", flat=True)) == expected
    assert received == [("default", "disconnect")]


def test_a_ping_before_every_use_never_breaks_a_new_connection():
    """ping_after tiny: the check runs inside connect() too, before autocommit is set."""
    wrapper, _ = _broken_alias()
    wrapper.aurora_options = type(wrapper.aurora_options)(ping_after=1e-9, idle_timeout=None)
    try:
        for _ in range(3):
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT 1")
                assert cursor.fetchone() == (1,)
            wrapper.close()
        wrapper.ensure_connection()
        assert wrapper.connection.autocommit
    finally:
        wrapper.close()


def test_connect_attempts_are_logged_with_class_attempt_and_time_never_the_password(caplog):
    from aurora_backend.testing import free_port

    caplog.set_level("DEBUG", logger="aurora_backend")
    password = connection.settings_dict["PASSWORD"]
    wrapper, sleeps = _broken_alias(PORT=str(free_port()))
    wrapper.aurora_options = type(wrapper.aurora_options)(connect_deadline=0.3, backoff_base=0.05, backoff_max=0.1)
    with pytest.raises(OperationalError):
        wrapper.ensure_connection()
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries and "attempt 1, 0." in retries[0] and "OperationalError" in retries[0]
    assert "Connection refused" in retries[0]
    bad, _ = _broken_alias(PASSWORD="not-the-" + password)
    with pytest.raises(OperationalError):
        bad.ensure_connection()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "not retryable: never_retry" in text
    assert password not in text and "not-the-" not in text
