"""Chaos run: the ledger under scale events, a pause, a failover and dropped connections.

testproject's ledger is driven by ``--threads`` threads through the Aurora simulator (a
separate process, ``aurora_backend.simulator.SimulatorProcess``, so the proxy does not
share the GIL with the clients) while a scheduler thread stages a fixed schedule of
events. Two runs over the same planned transfers (same accounts, amounts, request ids)
and the same schedule:

- ``aurora``: ENGINE aurora_backend, ``ledger.services.transfer`` (``retry_atomic``);
- ``stock``: ENGINE django.db.backends.postgresql, the same SQL (``ledger.services._apply``)
  under a plain ``transaction.atomic``.

Requests arrive at a fixed rate (``--transfers`` over ``--duration`` seconds, open loop,
as requests reach a web app), so the schedule is placed at fixed fractions of the run.
Each transfer is one "request": on an error the app counts it and moves on, and after
every request it calls ``close_if_unusable_or_obsolete()`` as Django does at request end.
Afterwards the table is checked against what the app believes: "unknown-fate" writes
(the app saw an error, the row is there) and "lost" ones (acknowledged, row missing).

    python bench/bench_chaos.py            # 8 threads, 2000 transfers, 12 s per run
    python bench/bench_chaos.py --quick    # smoke setting
    python bench/bench_chaos.py --log chaos.log   # aurora_backend's INFO log to a file
    AURORA_TEST_DRIVER=psycopg python bench/bench_chaos.py   # psycopg 3 (default: Django's pick)
    AURORA_TEST_DRIVER=pool python bench/bench_chaos.py      # psycopg 3 + Django's pool, both runs

With the pool, "connections opened" counts checkouts (Django's connection_created), and
each run's pool is closed when its workers are done (an app shutting down) before the
server's connections are counted.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import POOL, bench_server, configure_django, database, percentile, print_machine  # noqa: E402

APP_LOG = logging.getLogger("bench_chaos")  # the app's own error log (--log)
ACCOUNTS = 50
BALANCE = 1_000_000
Planned = tuple[int, int, int, uuid.UUID]  # source index, destination index, amount, request id


def plan_transfers(count: int, seed: int) -> list[Planned]:
    """The same ``count`` transfers for both runs: random pairs of accounts, small amounts."""
    rng = random.Random(seed)
    planned = []
    for _ in range(count):
        source, destination = rng.sample(range(ACCOUNTS), 2)
        planned.append((source, destination, rng.randint(1, 100), uuid.UUID(int=rng.getrandbits(128))))
    return planned


def schedule(duration: float, pause: float, window: float) -> list[tuple[float, str]]:
    """(seconds after the start, simulator command): the same events for both runs."""
    events = [
        (0.10, "scale"),
        (0.20, "drop_all"),
        (0.30, "pause force"),
        (0.45, "scale"),
        (0.55, "failover %g starting_up" % window),
        (0.75, "drop_all message"),
        (0.85, "scale"),
    ]
    timed = [(f * duration, command) for f, command in events]
    timed.append((0.30 * duration + pause, "resume"))
    return sorted(timed)


def stock_transfer(source_id: int, destination_id: int, amount: int, request_id: uuid.UUID, using: str) -> Any:
    """The ledger's transfer as an app on the stock backend writes it: plain atomic(), no retry."""
    from django.db import transaction
    from ledger.services import _apply

    with transaction.atomic(using=using):
        return _apply(source_id, destination_id, amount, request_id, using)


def aurora_transfer(source_id: int, destination_id: int, amount: int, request_id: uuid.UUID, using: str) -> Any:
    from ledger.services import transfer

    return transfer(source_id, destination_id, amount, request_id=request_id, using=using)


class Run:
    """What the app saw during one run: outcome per request, latencies, errors by class."""

    def __init__(self, planned: list[Planned]) -> None:
        self.planned = planned
        self.acknowledged: list[bool | None] = [None] * len(planned)
        self.latencies: list[float] = []
        self.errors: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        self.next_index = itertools.count()

    def record(self, index: int, took: float, error: BaseException | None) -> None:
        from aurora_backend.errors import classify

        with self.lock:
            self.acknowledged[index] = error is None
            if error is None:
                self.latencies.append(took)
            else:
                self.errors["%s (%s)" % (type(error).__name__, classify(error).value)] += 1


def worker(
    run: Run,
    call: Callable[..., Any],
    alias: str,
    ids: list[int],
    start: float,
    rate: float,
    finished: threading.Barrier,
    release: threading.Event,
) -> None:
    """Take the next request, wait for its arrival time, run it; hold the connection at the end."""
    from django.db import connections

    try:
        for index in iter(lambda: next(run.next_index), None):
            if index >= len(run.planned):
                break
            source, destination, amount, request_id = run.planned[index]
            time.sleep(max(0.0, start + index / rate - time.monotonic()))
            began, error = time.monotonic(), None
            try:
                call(ids[source], ids[destination], amount, request_id, using=alias)
            except Exception as exc:  # an app-visible error: counted, the app moves on
                error = exc
                APP_LOG.info("%s: transfer %s failed", alias, request_id, exc_info=True)
            run.record(index, time.monotonic() - began, error)
            connections[alias].close_if_unusable_or_obsolete()  # Django's request end
        finished.wait(120)
        release.wait(120)
    finally:
        connections.close_all()


def scheduler(proc: Any, events: list[tuple[float, str]], start: float, log: list[str]) -> None:
    """Send each command to the simulator at its time; log what it hit."""
    for at, command in events:
        time.sleep(max(0.0, start + at - time.monotonic()))
        try:
            result = proc.command(command)["result"]
        except (RuntimeError, OSError) as exc:
            result = "error: %s" % exc
        log.append("t=%5.2fs %-24s -> %s" % (time.monotonic() - start, command, result))


def server_connections() -> int:
    """Backends on the bench database other than the admin's own ("default", direct)."""
    from django.db import connections

    with connections["default"].cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return int(cur.fetchone()[0])


def settle_connections(expected: int, timeout: float = 5.0) -> int:
    """Server-side count, polled until it reaches ``expected`` or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    count = server_connections()
    while count > expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = server_connections()
    return count


def reset_ledger() -> tuple[list[int], int]:
    """Empty ledger, ACCOUNTS accounts of BALANCE each; their ids and the total."""
    from django.db import connections
    from ledger.services import open_accounts, totals

    with connections["default"].cursor() as cur:
        cur.execute("TRUNCATE ledger_transfer, ledger_account RESTART IDENTITY")
    ids = [a.pk for a in open_accounts(ACCOUNTS, BALANCE)]
    return ids, totals()["total"]


def audit(run: Run, ids: list[int]) -> dict[str, Any]:
    """Compare the table with what the app believes; check balances against the transfer rows."""
    from django.db.models import Sum
    from ledger.models import Account, Transfer
    from ledger.services import totals

    applied = set(Transfer.objects.values_list("request_id", flat=True))
    believed_ok = {p[3] for p, ok in zip(run.planned, run.acknowledged, strict=False) if ok}
    believed_failed = {p[3] for p, ok in zip(run.planned, run.acknowledged, strict=False) if ok is False}
    debits = dict(Transfer.objects.values_list("source_id").annotate(s=Sum("amount")))
    credits = dict(Transfer.objects.values_list("destination_id").annotate(s=Sum("amount")))
    consistent = all(a.balance == BALANCE - debits.get(a.pk, 0) + credits.get(a.pk, 0) for a in Account.objects.all())
    return {
        "committed": len(applied),
        "acknowledged": len(believed_ok),
        "unknown_fate": len(believed_failed & applied),
        "lost": len(believed_ok - applied),
        "never_answered": run.acknowledged.count(None),
        "total_after": totals()["total"],
        "consistent": consistent,
    }


def chaos_run(
    proc: Any,
    alias: str,
    call: Callable[..., Any],
    planned: list[Planned],
    threads: int,
    duration: float,
    events: list[tuple[float, str]],
) -> dict[str, Any]:
    """One run: fresh ledger, workers and scheduler, then the audit and the counters."""
    from aurora_backend import stats

    ids, total_before = reset_ledger()
    before = stats.snapshot(alias)
    opened_before = OPENED[alias]
    run, log = Run(planned), []
    finished, release = threading.Barrier(threads + 1), threading.Event()
    start = time.monotonic() + 0.2
    rate = len(planned) / duration
    pool = [
        threading.Thread(target=worker, args=(run, call, alias, ids, start, rate, finished, release), daemon=True)
        for _ in range(threads)
    ]
    pool.append(threading.Thread(target=scheduler, args=(proc, events, start, log), daemon=True))
    for thread in pool:
        thread.start()
    finished.wait(duration + 120)
    elapsed = time.monotonic() - start
    held = server_connections()
    release.set()
    for thread in pool:
        thread.join(30)
    if POOL:  # the app shuts down: its pool closes its connections
        from django.db import connections

        connections[alias].close_pool()
    proc.command("reset")
    after = stats.snapshot(alias)
    counters = {
        name: after[name] - before[name]
        for name in ("reconnects", "connect_retries", "transactions_retried", "statements_retried", "scale_events")
    }
    result = audit(run, ids)
    result.update(
        counters,
        requested=len(planned),
        total_before=total_before,
        errors=run.errors,
        p50=percentile(run.latencies, 0.5),
        p99=percentile(run.latencies, 0.99),
        max=max(run.latencies, default=0.0),
        opened=OPENED[alias] - opened_before,
        held=held,
        left_open=settle_connections(0),
        elapsed=elapsed,
        log=log,
    )
    return result


OPENED: dict[str, int] = collections.Counter()
_OPENED_LOCK = threading.Lock()


def count_opened(sender: Any, connection: Any, **_: Any) -> None:
    """connection_created receiver: connections opened per alias (workers connect concurrently)."""
    with _OPENED_LOCK:
        OPENED[connection.alias] += 1


ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("transfers requested", lambda r: str(r["requested"])),
    ("acknowledged (app saw success)", lambda r: str(r["acknowledged"])),
    ("committed (rows in ledger_transfer)", lambda r: str(r["committed"])),
    ("app-visible errors", lambda r: str(sum(r["errors"].values()))),
    ("unknown-fate writes (error, but committed)", lambda r: str(r["unknown_fate"])),
    ("lost (acknowledged, not committed)", lambda r: str(r["lost"])),
    ("requests never answered", lambda r: str(r["never_answered"])),
    ("ledger total before", lambda r: str(r["total_before"])),
    ("ledger total after", lambda r: str(r["total_after"])),
    ("balances match transfer rows", lambda r: "yes" if r["consistent"] else "NO"),
    (
        "latency p50 / p99 / max (ms, acknowledged)",
        lambda r: "%.1f / %.1f / %.0f" % (r["p50"] * 1e3, r["p99"] * 1e3, r["max"] * 1e3),
    ),
    ("connections opened", lambda r: str(r["opened"])),
    ("reconnects (stats)", lambda r: str(r["reconnects"])),
    ("connect retries (stats)", lambda r: str(r["connect_retries"])),
    ("transaction retries (stats)", lambda r: str(r["transactions_retried"])),
    ("statements re-run (stats)", lambda r: str(r["statements_retried"])),
    ("server connections, workers still alive", lambda r: str(r["held"])),
    ("server connections left open at the end", lambda r: str(r["left_open"])),
    ("run time (s)", lambda r: "%.1f" % r["elapsed"]),
]


def print_results(results: dict[str, dict[str, Any]]) -> None:
    labels = list(results)
    print()
    for label, r in results.items():
        print("%s events:" % label)
        for line in r["log"]:
            print("  " + line)
    print("\n%-44s %s" % ("chaos run", "".join("%-24s" % label for label in labels)))
    for name, fmt in ROWS:
        print("%-44s %s" % (name, "".join("%-24s" % fmt(r) for r in results.values())))
    classes = sorted(set().union(*(r["errors"] for r in results.values())))
    for name in classes:
        print("%-44s %s" % ("  error " + name, "".join("%-24s" % r["errors"].get(name, 0) for r in results.values())))


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting for the smoke test")
    parser.add_argument("--threads", type=int, default=None, help="client threads (default 8)")
    parser.add_argument("--transfers", type=int, default=None, help="transfers per run (default 2000)")
    parser.add_argument("--duration", type=float, default=None, help="seconds over which they arrive (default 12)")
    parser.add_argument("--window", type=float, default=None, help="failover window in seconds (default 2)")
    parser.add_argument("--pause", type=float, default=None, help="seconds paused before resume (default 1.5)")
    parser.add_argument("--seed", type=int, default=8, help="seed of the planned transfers")
    parser.add_argument("--log", default=None, help="write aurora_backend's INFO log to this file")
    args = parser.parse_args(argv)
    threads = args.threads or (4 if args.quick else 8)
    transfers = args.transfers or (200 if args.quick else 2000)
    duration = args.duration or (3.0 if args.quick else 12.0)
    window = args.window if args.window is not None else (0.5 if args.quick else 2.0)
    pause = args.pause if args.pause is not None else (0.4 if args.quick else 1.5)
    for name, value in (("--threads", threads), ("--transfers", transfers), ("--duration", duration)):
        if value <= 0:
            parser.error("%s must be > 0, got %r" % (name, value))
    if 0.55 * duration + window >= 0.75 * duration or 0.30 * duration + pause >= 0.55 * duration:
        parser.error(
            "--window/--pause too long for --duration %g: the pause must end before 55%% of it, "
            "the failover window before 75%%" % duration
        )
    from aurora_backend.simulator import SimulatorProcess

    with bench_server() as srv:
        proc = SimulatorProcess(upstream=(srv.host, srv.port)).start()
        try:
            host, port = proc.address
            pooled = {"min_size": 0, "max_size": threads} if POOL else None  # one per worker thread
            stock = database(srv, "django.db.backends.postgresql", host=host, port=port, conn_max_age=None, pool=pooled)
            stock["OPTIONS"]["connect_timeout"] = 10  # aurora_backend's default per attempt; bounded
            configure_django(
                {
                    "default": database(srv, "django.db.backends.postgresql"),
                    "aurora": database(
                        srv, "aurora_backend", host=host, port=port, conn_max_age=None, aurora={}, pool=pooled
                    ),
                    "stock": stock,
                }
            )
            if args.log:
                handler = logging.FileHandler(args.log)
                handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(levelname)s %(message)s"))
                for name in ("aurora_backend", "bench_chaos"):
                    logging.getLogger(name).addHandler(handler)
                    logging.getLogger(name).setLevel(logging.INFO)
            from django.db.backends.signals import connection_created

            connection_created.connect(count_opened, weak=False)
            print_machine("default")
            events = schedule(duration, pause, window)
            if 0.30 * duration + pause > 0.45 * duration:
                print(
                    "note: the scale event at %.1f s falls inside the pause: it kills the held connection "
                    "attempts (see docs/benchmarks.md, chaos run)" % (0.45 * duration)
                )
            print(
                "threads=%d transfers=%d over %.1f s (%.0f/s), %d accounts; failover window %.1f s, "
                "pause %.1f s; aurora_backend: package defaults; %s"
                % (
                    threads,
                    transfers,
                    duration,
                    transfers / duration,
                    ACCOUNTS,
                    window,
                    pause,
                    "Django's pool, max_size %d" % threads if POOL else "no pool",
                )
            )
            planned = plan_transfers(transfers, args.seed)
            results = {
                "aurora+retry_atomic": chaos_run(proc, "aurora", aurora_transfer, planned, threads, duration, events),
                "stock+atomic": chaos_run(proc, "stock", stock_transfer, planned, threads, duration, events),
            }
            print_results(results)
            return results
        finally:
            from django.db import connections

            connections.close_all()
            proc.stop()


if __name__ == "__main__":
    main()
