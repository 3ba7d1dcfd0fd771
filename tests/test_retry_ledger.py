"""retry_atomic under Aurora events: scale events from the simulator, killed backends, the ledger.

The "sim" alias goes through aurora_backend.simulator (tests/conftest.py); the same
scenarios also run on "default" with pg_terminate_backend as the fault.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable

import pytest
from django.db import connections, transaction
from ledger import services
from ledger.models import Transfer

from aurora_backend import retry_atomic, stats
from tests.test_retry_atomic import admin, run_threads, scalar, sql  # noqa: F401 (fixture)

SIM = pytest.mark.django_db(transaction=True, databases=["default", "sim"])
pytestmark = pytest.mark.timeout(60)

THREADS, TRANSFERS, ACCOUNTS, BALANCE = 4, 50, 10, 1000


@SIM
def test_scale_event_mid_transaction_reruns_and_commits_once(simulator):
    calls, callbacks = [], []

    @retry_atomic(using="sim", backoff_base=0.001, backoff_max=0.01)
    def work() -> None:
        calls.append(len(calls) + 1)
        attempt = len(calls)
        transaction.on_commit(lambda: callbacks.append(attempt), using="sim")
        sql("UPDATE ledger_account SET balance = balance + 1 WHERE name = 'a'", using="sim")
        if attempt == 1:
            assert simulator.scale_event() >= 1
        sql("UPDATE ledger_account SET balance = balance - 1 WHERE name = 'b'", using="sim")

    sql("INSERT INTO ledger_account (name, balance) VALUES ('a', 0), ('b', 0)")
    before = stats.snapshot("sim")["transactions_retried"]
    work()
    assert calls == [1, 2] and callbacks == [2]
    assert sql("SELECT name, balance FROM ledger_account ORDER BY name") == [("a", 1), ("b", -1)]
    assert stats.snapshot("sim")["transactions_retried"] == before + 1


@SIM
def test_write_on_a_demoted_writer_is_rerun(simulator):
    calls = []

    @retry_atomic(using="sim", backoff_base=0.001, backoff_max=0.01)
    def work() -> None:
        calls.append(1)
        simulator.read_only(len(calls) == 1)  # first attempt lands on a "reader": 25006
        sql("INSERT INTO ledger_account (name, balance) VALUES ('c', 5)", using="sim")

    work()
    assert len(calls) == 2
    assert sql("SELECT balance FROM ledger_account WHERE name = 'c'") == [(5,)]


def _ledger_under_faults(alias: str, fault: Callable[[], int], every: float) -> dict:
    """THREADS x TRANSFERS transfers on ``alias`` while ``fault`` strikes, at most every ``every``
    seconds and only once every worker still running has committed since the last strike.

    The second condition makes the test independent of the machine's speed: a strike can
    catch a transaction mid-flight, but its re-run always finishes before the next strike, so
    no transfer needs more than two attempts however slow the machine (a fault on a wall-clock
    timer alone could strike one slow transaction on every attempt until it gave up)."""
    accounts = [a.pk for a in services.open_accounts(ACCOUNTS, BALANCE)]
    requested: list[uuid.UUID] = []
    lock, stop = threading.Lock(), threading.Event()
    progress = threading.Condition()
    committed_since_strike: dict = {}  # worker -> transfers committed since the last strike
    struck = [0]

    def everyone_progressed() -> bool:
        return stop.is_set() or all(committed_since_strike.values())

    def inject() -> None:
        while not stop.wait(every):
            with progress:
                progress.wait_for(everyone_progressed)
                if stop.is_set():
                    return
                struck[0] += fault()
                for k in committed_since_strike:
                    committed_since_strike[k] = 0

    def worker(k: int) -> None:
        rng = random.Random(k)
        try:
            for _ in range(TRANSFERS):
                source, destination = rng.sample(accounts, 2)
                request_id = uuid.uuid4()
                with lock:
                    requested.append(request_id)
                services.transfer(source, destination, rng.randint(1, 5), request_id=request_id, using=alias)
                with progress:
                    committed_since_strike[k] += 1
                    progress.notify_all()
        finally:
            with progress:  # a worker that is done no longer holds the strikes back
                committed_since_strike.pop(k, None)
                progress.notify_all()

    committed_since_strike.update(dict.fromkeys(range(THREADS), 0))
    before = stats.snapshot(alias)["transactions_retried"]
    injector = threading.Thread(target=inject, daemon=True)
    injector.start()
    try:
        run_threads(worker, THREADS)  # asserts that no error reached any caller
    finally:
        with progress:
            stop.set()
            progress.notify_all()
        injector.join(5)
    connections.close_all()
    totals = services.totals()
    assert totals["total"] == ACCOUNTS * BALANCE
    assert totals["transfers"] == THREADS * TRANSFERS == len(requested)
    applied = set(Transfer.objects.values_list("request_id", flat=True))
    assert applied == set(requested)  # every requested transfer applied once (request_id is unique)
    assert struck[0] > 0
    return {"faults": struck[0], "retried": stats.snapshot(alias)["transactions_retried"] - before}


@SIM
def test_ledger_transfers_survive_scale_events(simulator):
    # A scale event drops every connection at once (real ones come minutes apart).
    figures = _ledger_under_faults("sim", simulator.scale_event, 0.1)
    print("ledger via simulator:", figures)


@pytest.mark.django_db(transaction=True)
def test_ledger_transfers_survive_terminated_backends(admin):  # noqa: F811 (fixture)
    def kill_one() -> int:
        return int(
            scalar(
                admin,
                "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend' ORDER BY random() LIMIT 1) AS victim",
            )
        )

    figures = _ledger_under_faults("default", kill_one, 0.1)
    print("ledger via pg_terminate_backend:", figures)
