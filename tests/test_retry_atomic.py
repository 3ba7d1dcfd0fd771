"""retry_atomic against the real server: rollbacks from real concurrency, killed backends, lost COMMITs.

Faults are real: serialization failures and deadlocks between two threads, backends
terminated with pg_terminate_backend, a client socket shut down while the server is still
inside COMMIT (a deferred constraint trigger that sleeps keeps COMMIT busy long enough).
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connection, connections, transaction

from aurora_backend import CommitOutcomeUnknown, drivers, retry_atomic, retrying, signals, stats
from aurora_backend.errors import sqlstate
from aurora_backend.runtime import Runtime, jittered_delays
from aurora_backend.transactions.retry import NestedRetryWarning
from tests.pg import server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

PROBE_SQL = """
CREATE TABLE retry_probe (id serial PRIMARY KEY, tag text NOT NULL UNIQUE, n int NOT NULL DEFAULT 0);
CREATE TABLE retry_counter (id int PRIMARY KEY, n int NOT NULL);
INSERT INTO retry_counter VALUES (1, 0), (2, 0);
CREATE FUNCTION retry_probe_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('retry_probe.commit_sleep', true), '') <> '' THEN
    PERFORM pg_sleep(current_setting('retry_probe.commit_sleep')::float);
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER retry_probe_slow AFTER INSERT ON retry_probe
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION retry_probe_slow_commit();
"""
DROP_SQL = "DROP TABLE IF EXISTS retry_probe, retry_counter; DROP FUNCTION IF EXISTS retry_probe_slow_commit()"


# ----- fixtures and helpers ------------------------------------------------------------


@pytest.fixture
def admin():
    """A raw autocommit driver connection to the test database, outside Django."""
    srv = server()
    conn = drivers.connect(
        host=srv.host,
        port=srv.port,
        user=srv.user,
        password=srv.password,
        dbname=connections["default"].settings_dict["NAME"],
    )
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def probe(admin):
    with admin.cursor() as cur:
        cur.execute(DROP_SQL)
        cur.execute(PROBE_SQL)
    yield admin
    connections.close_all()
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        cur.execute(DROP_SQL)


class Recorder:
    """A Runtime whose sleeps are recorded (and really slept only when ``real``)."""

    def __init__(self, seed: int = 7, real: bool = False) -> None:
        self.slept: list[float] = []
        self.real = real
        self.runtime = Runtime(clock=time.monotonic, sleep=self.sleep, random=random.Random(seed))

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.real:
            time.sleep(seconds)


@pytest.fixture
def recorder():
    """connections['default'] draws its delays from a seeded rng and does not sleep."""
    rec = Recorder()
    connection.ensure_connection()  # so that the first draw from the rng is retry_atomic's
    saved = connection.aurora_runtime
    connection.aurora_runtime = rec.runtime
    yield rec
    connection.aurora_runtime = saved


@pytest.fixture
def retries():
    """Every transaction_retry signal sent during the test."""
    seen: list[dict] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    signals.transaction_retry.connect(receiver, weak=False)
    yield seen
    signals.transaction_retry.disconnect(receiver)


def sql(query: str, params: Any = None, using: str = "default") -> list:
    with connections[using].cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def scalar(admin: Any, query: str, params: Any = None) -> Any:
    with admin.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()[0]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met within %.1fs" % timeout)


def server_deadlocks(admin: Any) -> int:
    """Deadlocks the server detected in the test database so far (pg_stat_database)."""
    return scalar(admin, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")


def terminate_self(admin: Any) -> None:
    """Terminate the backend of Django's connection and wait until it is gone."""
    pid = sql("SELECT pg_backend_pid()")[0][0]
    assert scalar(admin, "SELECT pg_terminate_backend(%s, 5000)", [pid])


def run_threads(target: Callable[[int], None], count: int) -> None:
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            target(k)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(45)
    assert not any(t.is_alive() for t in threads), "worker threads did not finish"
    assert not errors, errors


# ----- real concurrency ----------------------------------------------------------------

ROUNDS = 8


def test_repeatable_read_conflicts_retry_until_each_commits_once(probe, retries):
    barrier, rounds_barrier = threading.Barrier(2), threading.Barrier(2)
    done = []

    def worker(k: int) -> None:
        for i in range(ROUNDS):
            first = [True]

            @retry_atomic(backoff_base=0.001, backoff_max=0.01)
            def bump() -> None:
                sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                n = sql("SELECT n FROM retry_counter WHERE id = 1")[0][0]
                if first[0]:  # noqa: B023 - called in this iteration
                    first[0] = False  # noqa: B023 - called in this iteration
                    barrier.wait(10)  # both have read the same n: one update must fail
                sql("UPDATE retry_counter SET n = %s WHERE id = 1", [n + 1])
                sql("INSERT INTO retry_probe (tag) VALUES (%s)", ["%d-%d" % (k, i)])  # noqa: B023 - called in this iteration

            rounds_barrier.wait(10)
            bump()
            done.append((k, i))

    run_threads(worker, 2)
    assert scalar(probe, "SELECT n FROM retry_counter WHERE id = 1") == 2 * ROUNDS
    assert scalar(probe, "SELECT count(*) FROM retry_probe") == 2 * ROUNDS == len(set(done))
    assert len(retries) == ROUNDS  # exactly one loser per round, re-run once
    assert {sqlstate(r["error"]) for r in retries} == {"40001"}


def test_serializable_write_skew_is_retried_into_a_serial_order(probe, retries):
    barrier, rounds_barrier = threading.Barrier(2), threading.Barrier(2)

    def worker(k: int) -> None:
        for i in range(ROUNDS):
            rounds_barrier.wait(10)
            for attempt in retrying(backoff_base=0.001, backoff_max=0.01, max_attempts=20):
                with attempt:
                    sql("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                    seen = sql("SELECT count(*) FROM retry_probe")[0][0]
                    if attempt.number == 1:
                        barrier.wait(10)
                    sql("INSERT INTO retry_probe (tag, n) VALUES (%s, %s)", ["%d-%d" % (k, i), seen])

    run_threads(worker, 2)
    # Serializable and exactly once: each row saw exactly the rows committed before it.
    assert sorted(r[0] for r in sql("SELECT n FROM retry_probe")) == list(range(2 * ROUNDS))
    assert len(retries) >= ROUNDS
    assert {sqlstate(r["error"]) for r in retries} == {"40001"}


def test_deadlocks_are_retried_and_both_transactions_commit(probe, retries):
    barrier, rounds_barrier = threading.Barrier(2), threading.Barrier(2)
    rounds = 3

    def worker(k: int) -> None:
        order = (1, 2) if k == 0 else (2, 1)
        for _ in range(rounds):
            first = [True]

            @retry_atomic(backoff_base=0.001, backoff_max=0.01)
            def both() -> None:
                sql("SET LOCAL deadlock_timeout = '50ms'")
                sql("UPDATE retry_counter SET n = n + 1 WHERE id = %s", [order[0]])
                if first[0]:  # noqa: B023 - called in this iteration
                    first[0] = False  # noqa: B023 - called in this iteration
                    barrier.wait(10)  # each holds one row and wants the other's
                sql("UPDATE retry_counter SET n = n + 1 WHERE id = %s", [order[1]])

            rounds_barrier.wait(10)
            both()

    before = server_deadlocks(probe)
    run_threads(worker, 2)
    assert [r[0] for r in sql("SELECT n FROM retry_counter ORDER BY id")] == [2 * rounds, 2 * rounds]
    assert {sqlstate(r["error"]) for r in retries} == {"40P01"}
    # Each round deadlocks at least once (the barrier makes the cycle). Under load it can
    # deadlock again: the victim's re-run may take back its row (left free by its own
    # rollback) before the survivor, woken by that rollback, gets to it, closing a new
    # cycle; the server then picks a victim again (either transaction). So: exactly one
    # retry per deadlock the server detected; more would be a retry of a non-victim.
    assert len(retries) >= rounds
    # run_threads closed the workers' connections; their backends flush counts as they exit.
    try:
        wait_for(lambda: server_deadlocks(probe) - before >= len(retries))
    except AssertionError:
        pass  # reported just below
    assert server_deadlocks(probe) - before == len(retries)


# ----- a connection lost mid transaction ------------------------------------------------


def test_backend_killed_mid_transaction_reruns_once_with_exact_backoff(probe, recorder, retries):
    before = stats.snapshot("default")["transactions_retried"]
    calls, callbacks = [], []

    @retry_atomic
    def work() -> str:
        calls.append(len(calls) + 1)
        attempt = len(calls)
        transaction.on_commit(lambda: callbacks.append(attempt))
        sql("INSERT INTO retry_probe (tag) VALUES ('first')")
        if attempt == 1:
            terminate_self(probe)  # a scale event / failover: the transaction is rolled back
        sql("INSERT INTO retry_probe (tag) VALUES ('second')")
        return "done"

    assert work() == "done"
    assert calls == [1, 2]
    assert callbacks == [2]  # the failed attempt's callback never ran
    assert scalar(probe, "SELECT count(*) FROM retry_probe") == 2
    expected = next(jittered_delays(0.05, 2.0, random.Random(7)))
    assert recorder.slept == [expected]
    assert stats.snapshot("default")["transactions_retried"] == before + 1
    assert [(r["alias"], r["attempt"], r["delay"]) for r in retries] == [("default", 1, expected)]
    assert isinstance(retries[0]["error"], OperationalError)


def test_final_failure_raises_the_last_database_error_unchanged(probe, recorder):
    calls = []

    @retry_atomic(max_attempts=3)
    def doomed() -> None:
        calls.append(1)
        sql("INSERT INTO retry_probe (tag) VALUES ('doomed')")
        terminate_self(probe)
        sql("SELECT 1")

    with pytest.raises(OperationalError) as info:
        doomed()
    assert type(info.value) is OperationalError and isinstance(info.value.__cause__, drivers.OperationalError)
    assert len(calls) == 3 and len(recorder.slept) == 2
    assert scalar(probe, "SELECT count(*) FROM retry_probe") == 0


def test_max_time_bounds_the_retries(probe, recorder):
    clock = [0.0]
    recorder.runtime.clock = lambda: clock[0]
    recorder.runtime.sleep = lambda s: clock.__setitem__(0, clock[0] + s)
    calls = []

    @retry_atomic(max_attempts=100, max_time=1.0, backoff_base=0.2, backoff_max=0.2)
    def doomed() -> None:
        calls.append(1)
        clock[0] += 0.3  # each attempt takes 0.3 s of (fake) time
        terminate_self(probe)
        sql("SELECT 1")

    with pytest.raises(OperationalError):
        doomed()
    assert clock[0] <= 1.0 + 0.3 and 2 <= len(calls) <= 3


def test_integrity_error_is_raised_at_once(probe, recorder, retries):
    calls = []

    @retry_atomic
    def duplicate() -> None:
        calls.append(1)
        sql("INSERT INTO retry_probe (tag) VALUES ('dup'), ('dup')")

    with pytest.raises(IntegrityError):
        duplicate()
    assert len(calls) == 1 and recorder.slept == [] and retries == []


def test_application_exception_is_never_retried(probe, recorder):
    calls = []

    @retry_atomic
    def broken() -> None:
        calls.append(1)
        sql("INSERT INTO retry_probe (tag) VALUES ('x')")
        raise ValueError("business rule")

    with pytest.raises(ValueError):
        broken()
    assert len(calls) == 1 and recorder.slept == []
    assert scalar(probe, "SELECT count(*) FROM retry_probe") == 0


def test_nested_in_atomic_does_not_retry_and_warns_once(probe, recorder):
    calls = []

    @retry_atomic
    def inner(kill: bool) -> None:
        calls.append(1)
        if kill:
            terminate_self(probe)
        sql("SELECT 1")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(OperationalError):
            with transaction.atomic():
                inner(True)
        with transaction.atomic():
            inner(False)
    assert len(calls) == 2 and recorder.slept == []
    assert [w.category for w in caught] == [NestedRetryWarning]
    assert "inner" not in str(caught[0].message) or "enclosing atomic()" in str(caught[0].message)


# ----- lost COMMIT ---------------------------------------------------------------------


def _in_commit(admin: Any, pid: int) -> bool:
    return bool(scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event = 'PgSleep'", [pid]))


def _lost_commit_work(calls: list, callbacks: list, fault: Callable[[int, int], None], sleep_s: float):
    """A block whose first COMMIT sleeps ``sleep_s`` in a trigger while ``fault(pid, fd)`` strikes."""

    def work() -> None:
        calls.append(len(calls) + 1)
        attempt = len(calls)
        transaction.on_commit(lambda: callbacks.append(attempt))
        sql("INSERT INTO retry_probe (tag) VALUES ('paid')")
        if attempt == 1:
            sql("SELECT set_config('retry_probe.commit_sleep', %s, true)", [str(sleep_s)])
            pid = sql("SELECT pg_backend_pid()")[0][0]
            threading.Thread(target=fault, args=(pid, connection.connection.fileno()), daemon=True).start()

    return work


LOST = "COMMIT on 'default' got no answer"


def test_lost_commit_that_aborted_is_retried(probe, retries, caplog):
    calls, callbacks = [], []

    def kill_during_commit(pid: int, fd: int) -> None:
        wait_for(lambda: _in_commit(probe, pid))
        scalar(probe, "SELECT pg_terminate_backend(%s)", [pid])

    work = retry_atomic(backoff_base=0.001, backoff_max=0.01)(
        _lost_commit_work(calls, callbacks, kill_during_commit, 5)
    )
    work()
    assert calls == [1, 2] and callbacks == [2]
    assert scalar(probe, "SELECT count(*) FROM retry_probe") == 1  # no double write
    assert len(retries) == 1 and LOST in caplog.text and ": aborted" in caplog.text


def test_lost_commit_that_committed_is_a_success(probe, retries, caplog):
    calls, callbacks = [], []

    def cut_socket_during_commit(pid: int, fd: int) -> None:
        wait_for(lambda: _in_commit(probe, pid))
        # The client loses the socket; the server finishes COMMIT and cannot tell anyone.
        sock = socket.socket(fileno=os.dup(fd))
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    work = retry_atomic(commit_check_time=10)(_lost_commit_work(calls, callbacks, cut_socket_during_commit, 0.5))
    work()
    assert calls == [1] and callbacks == [1]  # acknowledged, callbacks once, never re-run
    assert scalar(probe, "SELECT count(*) FROM retry_probe") == 1
    assert retries == [] and LOST in caplog.text and ": committed" in caplog.text


def test_lost_commit_still_in_progress_raises_commit_outcome_unknown(probe, retries):
    calls, callbacks = [], []
    pids: list = []

    def cut_socket_during_commit(pid: int, fd: int) -> None:
        pids.append(pid)
        wait_for(lambda: _in_commit(probe, pid))
        sock = socket.socket(fileno=os.dup(fd))
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    work = retry_atomic(commit_check_time=0.2)(_lost_commit_work(calls, callbacks, cut_socket_during_commit, 30))
    with pytest.raises(CommitOutcomeUnknown) as info:
        work()
    error = info.value
    assert isinstance(error, OperationalError) and isinstance(error.__cause__, OperationalError)
    assert error.status == "in progress" and isinstance(error.txid, int) and error.alias == "default"
    assert calls == [1] and callbacks == [] and retries == []
    scalar(probe, "SELECT pg_terminate_backend(%s, 5000)", [pids[0]])
    assert scalar(probe, "SELECT txid_status(%s)", [error.txid]) == "aborted"
    assert scalar(probe, "SELECT count(*) FROM retry_probe") == 0


def test_lost_commit_on_a_connection_replaced_as_the_transaction_started_is_resolved(probe, retries, caplog):
    """The connection dies between attempts; atomic() finds it dead and opens another, on
    which the transaction runs and its COMMIT is lost: the server is still known."""
    reconnects: list = []

    def on_reconnect(sender: Any, **kwargs: Any) -> None:
        reconnects.append(kwargs["reason"])

    calls, callbacks = [], []

    def cut_socket_during_commit(pid: int, fd: int) -> None:
        wait_for(lambda: _in_commit(probe, pid))
        sock = socket.socket(fileno=os.dup(fd))
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    work = _lost_commit_work(calls, callbacks, cut_socket_during_commit, 0.5)
    signals.reconnected.connect(on_reconnect, weak=False)
    try:
        for attempt in retrying(commit_check_time=10):
            if attempt.number == 1:  # connected by retrying(); killed before atomic() starts
                terminate_self(probe)
            with attempt:
                work()
    finally:
        signals.reconnected.disconnect(on_reconnect)
    # The transaction ran on a connection opened by atomic(); the lost COMMIT was asked on the next.
    assert reconnects == ["stale", "disconnect"]
    assert calls == [1] and callbacks == [1]  # resolved as committed: acknowledged once
    assert scalar(probe, "SELECT count(*) FROM retry_probe") == 1
    assert retries == [] and LOST in caplog.text and ": committed" in caplog.text
