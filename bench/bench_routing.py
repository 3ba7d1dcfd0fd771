"""Reader routing: read share per instance, stale reads per router, added latency per read.

A writer (127.0.0.1) and two hot standbys in streaming replication (127.0.0.2 and
127.0.0.3, one port: the "reader endpoint" resolves to both and the ENGINE spreads
connections over them, reconnecting every 0.5-1.5 s). The standbys apply commits
``--apply-delay`` ms late (``recovery_min_apply_delay``): Aurora's replica lag, made
real. Worker threads (users) each own an account; each step may update it
(``--write-ratio``), may write it in ``atomic()`` and roll back (``--rollback-ratio``),
then reads it back (stale if the value is not the one just written) and reads a random
other account, then waits ``--think`` ms (the user's pace). Same
workload, same servers, under four routers:

- naive: every read to the reader;
- window-S: after a write, reads go to the writer for S seconds (django-multidb-router
  pins for 15 s), then to the reader whatever its lag;
- aurora: aurora_backend.routers.AuroraRouter (read-your-writes by WAL position).

Per router: the read time as the app sees it (routing, query and result, median and mean)
and the time spent choosing the database (``db_for_read``: the router's own round trips to
read positions included, amortized; calls in which the router opened the reader's
connection itself, every 0.5-1.5 s here as ``max_age`` rotates them, counted apart).
Added latency per read: aurora's mean read time minus the naive router's. The fail-safe
cost: the reads that followed a rolled-back write (with no write since) and went to the
writer: AuroraRouter marks a write at the write itself, and a transaction's end cannot be
told a commit or a rollback without asking, so it counts it as a write (docs/routing.md,
"The fail-safe rule"); a router marking commits only would have sent them to a reader. Threads share
one GIL: a call that waits on the network may wait for the GIL after it, so time inside
db_for_read is inflated when another thread runs; the hot-path line has one thread.

    python bench/bench_routing.py            # 4 threads x 200 steps per router
    python bench/bench_routing.py --quick    # smoke setting

It always starts its own three throwaway servers (replication needs them); it never
uses AURORA_TEST_DSN's server.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import configure_django, database, median, print_machine  # noqa: E402

from aurora_backend.testing import PASSWORD, SUPERUSER, PostgresCluster, ServerAddress  # noqa: E402

WRITER, READERS = "127.0.0.1", ["127.0.0.2", "127.0.0.3"]
ENDPOINT = "reader.bench.invalid"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200, help="steps per thread per router")
    parser.add_argument("--write-ratio", type=float, default=0.3)
    parser.add_argument("--apply-delay", type=int, default=20, help="ms the standbys apply commits late")
    parser.add_argument("--think", type=float, default=25.0, help="ms between a user's steps")
    parser.add_argument(
        "--rollback-ratio", type=float, default=0.05, help="share of steps that also write in atomic() and roll back"
    )
    parser.add_argument("--quick", action="store_true", help="2 threads x 40 steps")
    args = parser.parse_args()
    if args.quick:
        args.threads, args.steps = 2, 40
    return args


def reader_endpoint(host: str, port: int) -> list[str]:
    return list(READERS)


class ReadLog:
    """An execute wrapper on every connection: which instance served each SELECT."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reads: Counter = Counter()

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip().upper().startswith("SELECT") and "ledger_account" in sql:  # the workload's reads
            conn = context["connection"]
            with self.lock:
                self.reads[getattr(conn, "aurora_address", None) or conn.settings_dict["HOST"]] += 1
        return execute(sql, params, many, context)


class Timed:
    """A router whose db_for_read is timed (the added latency per read); calls that opened
    the reader's connection are kept apart (the read would have opened it anyway)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.connecting: list[float] = []

    def db_for_read(self, model: Any, **hints: Any) -> Any:
        from django.db import connections

        reader = connections["reader"]
        was_closed = reader.connection is None
        start = time.perf_counter()
        try:
            return self.inner.db_for_read(model, **hints)
        finally:
            elapsed = time.perf_counter() - start
            with self.lock:
                opened = was_closed and reader.connection is not None
                (self.connecting if opened else self.times).append(elapsed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RolledBack(Exception):
    pass


def worker(
    index: int, args: argparse.Namespace, stale: list[int], latency: list[float], failsafe: list[list[int]]
) -> None:
    from django.db import connections, router, transaction
    from ledger.models import Account

    rng = random.Random(index)
    mine = Account.objects.get(name="worker-%d" % index)  # read before any write
    expected = mine.balance
    count = 0
    after_rollback = False
    for _ in range(args.steps):
        if rng.random() < args.write_ratio:
            expected += 1
            Account.objects.filter(pk=mine.pk).update(balance=expected)
            after_rollback = False
        elif rng.random() < args.rollback_ratio:  # (a step without a committed write)
            try:
                with transaction.atomic(using="default"):
                    Account.objects.filter(pk=mine.pk).update(balance=expected + 1000)
                    raise RolledBack()
            except RolledBack:
                after_rollback = True
        if after_rollback:  # where the next read goes (the same call Django makes for it)
            failsafe[index][0] += 1
            failsafe[index][1] += router.db_for_read(Account) == "default"
        start = time.perf_counter()
        if Account.objects.filter(pk=mine.pk).values_list("balance", flat=True).first() != expected:
            count += 1
        middle = time.perf_counter()
        Account.objects.filter(name="seed-%d" % rng.randrange(20)).exists()
        latency.extend((middle - start, time.perf_counter() - middle))
        time.sleep(args.think / 1000.0)
    stale[index] = count
    connections.close_all()


def run(name: str, router: Any, args: argparse.Namespace, log: ReadLog) -> dict[str, Any]:
    from django.db import router as django_router
    from django.test.utils import override_settings

    from aurora_backend.routing import position, token

    timed = Timed(router)
    log.reads.clear()
    trips = dict(position.round_trips)
    stale = [0] * args.threads
    failsafe = [[0, 0] for _ in range(args.threads)]
    latency: list[float] = []
    with override_settings(DATABASE_ROUTERS=[timed]):
        django_router.routers  # noqa: B018 (built now, outside the timed section)
        threads = [
            threading.Thread(target=worker, args=(i, args, stale, latency, failsafe)) for i in range(args.threads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    token.clear()
    reads = sum(log.reads.values())
    share = "  ".join("%s %5.1f%%" % (addr, 100.0 * log.reads[addr] / reads) for addr in [WRITER] + READERS)
    mean = sum(timed.times) / len(timed.times) if timed.times else 0.0
    read_mean = sum(latency) / len(latency)
    print(
        "%-12s reads %5d  %s  stale %4d  read µs median %6.1f mean %6.1f  db_for_read µs median %5.1f "
        "mean %6.1f (+%d calls that opened the reader's connection)"
        % (
            name,
            reads,
            share,
            sum(stale),
            median(latency) * 1e6,
            read_mean * 1e6,
            median(timed.times) * 1e6,
            mean * 1e6,
            len(timed.connecting),
        ),
        flush=True,
    )
    writer_trips = position.round_trips["writer"] - trips["writer"]
    reader_trips = position.round_trips["reader"] - trips["reader"]
    if writer_trips or reader_trips:
        print(
            "%-12s position reads: %d on the writer (after writes), %d on readers: %.3f round trips per read"
            % ("", writer_trips, reader_trips, (writer_trips + reader_trips) / reads)
        )
    after, on_writer = sum(f[0] for f in failsafe), sum(f[1] for f in failsafe)
    if name == "aurora":
        print(
            "%-12s fail-safe cost: %d of %d reads (%.1f%%) went to the writer only because a rolled-back "
            "write counts as a write (%d reads followed one)" % ("", on_writer, reads, 100.0 * on_writer / reads, after)
        )
    return {"stale": sum(stale), "reads": reads, "read_mean": read_mean}


def hot_path(naive: Any, ours: Any, calls: int) -> None:
    """One thread, nothing written, the reader caught up: what choosing costs per read."""
    from ledger.models import Account

    from aurora_backend.routing import token

    token.clear()
    figures = []
    for router in (naive, ours):
        router.db_for_read(Account)
        best = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls):
                router.db_for_read(Account)
            best.append((time.perf_counter() - start) / calls)
        figures.append(min(best) * 1e6)
    print(
        "hot path, µs per db_for_read (one thread, no write pending, best of 5 x %d): naive %.2f, aurora %.2f"
        % (calls, figures[0], figures[1])
    )


def main() -> None:
    args = parse_args()
    # Commits flushed at once, as on Aurora (the test clusters commit asynchronously, which
    # holds WAL back from the standbys for up to wal_writer_delay).
    primary = PostgresCluster(settings={"listen_addresses": WRITER, "synchronous_commit": "on"}).start()
    standbys: list[PostgresCluster] = []
    try:
        port = primary.port + 1
        for address in READERS:
            standby = primary.replica(
                port=port, settings={"listen_addresses": address, "recovery_min_apply_delay": "%dms" % args.apply_delay}
            )
            standbys.append(standby.start())
            port = standby.port
        srv = ServerAddress(WRITER, primary.port, SUPERUSER, PASSWORD, "postgres")
        reader = database(
            srv,
            "aurora_backend",
            host=ENDPOINT,
            port=standbys[0].port,
            aurora={"resolver": reader_endpoint, "max_age": [0.5, 1.5], "connect_deadline": 5},
        )
        reader["TEST"] = {"MIRROR": "default"}
        configure_django({"default": database(srv, "aurora_backend"), "reader": reader})
        from django.conf import settings
        from django.db.backends.signals import connection_created
        from ledger.models import Account

        from aurora_backend.routing.config import RoutingConfig
        from aurora_backend.routing.router import AuroraRouter
        from aurora_backend.testing.routers import FixedWindowRouter, NaiveReaderRouter

        settings.AURORA_ROUTING = {"writer": "default", "reader": "reader"}
        log = ReadLog()

        def watch(sender: Any, connection: Any, **kwargs: Any) -> None:
            if log not in connection.execute_wrappers:  # a wrapper outlives its connections
                connection.execute_wrappers.append(log)

        connection_created.connect(watch, weak=False)
        Account.objects.bulk_create(
            [Account(name="seed-%d" % i) for i in range(20)]
            + [Account(name="worker-%d" % i) for i in range(args.threads)]
        )
        time.sleep(0.5 + args.apply_delay / 1000)  # the standbys replay the seed rows
        print_machine()
        print(
            "routing: writer %s, readers %s (apply delay %d ms); %d threads x %d steps, write ratio %.2f"
            % (WRITER, "/".join(READERS), args.apply_delay, args.threads, args.steps, args.write_ratio)
        )
        print("%-12s %-11s  %-17s %-17s %-17s" % ("router", "", "read share: " + WRITER, READERS[0], READERS[1]))
        window = args.apply_delay / 2000.0
        naive = run("naive", NaiveReaderRouter("default", "reader"), args, log)
        run("window-%gs" % window, FixedWindowRouter("default", "reader", window=window), args, log)
        run("window-15s", FixedWindowRouter("default", "reader", window=15.0), args, log)
        ours = AuroraRouter(RoutingConfig.from_settings())
        results = {"naive": naive}
        results["aurora"] = run("aurora", ours, args, log)
        print(
            "added latency per read, aurora vs naive (mean read time, routing included): %+.1f µs"
            % ((results["aurora"]["read_mean"] - results["naive"]["read_mean"]) * 1e6)
        )
        hot_path(NaiveReaderRouter("default", "reader"), ours, 2000 if args.quick else 20000)
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        for standby in standbys:
            standby.destroy()
        primary.destroy()


if __name__ == "__main__":
    main()
