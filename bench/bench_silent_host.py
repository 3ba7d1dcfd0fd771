"""A host that goes silent (no FIN, no RST) on the local Aurora cluster, under the ENGINE's defaults.

Needs root and iproute2: each instance's endpoint is in its own network namespace
(aurora_backend/testing/silent_host.py) and "silent" means its veth link is set down.

0. A query in flight inside ``atomic()`` when its host goes silent: seconds until the app
   gets its error, the ENGINE's defaults against stock Django with AWS's keepalives 1/1/5
   and a 10 s ``connect_timeout`` (stock reconnects on its way out of ``atomic()``).
1. Hung reader + scale event on the writer: one reader silenced, then a scale event on the
   healthy writer; for ``--window`` seconds (30) new writer connections are opened one after
   another, alternating the ENGINE (cluster endpoint, topology on: every connect of the
   window is routed) and Django's stock backend (the writer's address). Connect times printed.
2. Silent writer mid-run under the ledger workload: reader threads (ORM reads outside
   transactions) and writer threads (transfers under ``retry_atomic``) on the cluster
   endpoint, default settings; the writer is silenced and a failover starts at once (the
   local cluster cannot know when Aurora would decide to fail over: its own detection is
   not in the figure). Printed: app errors for reads and writes, seconds from the silence to
   the first transfer committed on the new writer, the ledger's total, threads left.

    python bench/bench_silent_host.py                  # Aurora's timings, this driver
    python bench/bench_silent_host.py --all-drivers    # psycopg2, psycopg, pool in turn
    python bench/bench_silent_host.py --quick          # smoke setting
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import DRIVER, POOL, configure_django, print_machine  # noqa: E402

from aurora_backend.testing.aurora_cluster import AuroraCluster  # noqa: E402
from aurora_backend.testing.aurora_instance import DOWN  # noqa: E402
from aurora_backend.testing.cluster import PASSWORD, SUPERUSER  # noqa: E402
from aurora_backend.testing.silent_host import unavailable  # noqa: E402

ACCOUNTS, BALANCE = 20, 1000
HUNG_AFTER = 60  # seconds: a wait on a silent host this long is reported as hung, then ended


def settings(cluster: AuroraCluster) -> dict[str, dict[str, Any]]:
    aurora = cluster.database_settings()  # the ENGINE's defaults; only the cluster's DNS
    if POOL:
        aurora["OPTIONS"]["pool"] = {"max_size": 8}
    writer = cluster.writer
    stock = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": cluster.database,
        "USER": SUPERUSER,
        "PASSWORD": PASSWORD,
        "HOST": writer.address,
        "PORT": str(cluster.port),
    }
    reader = cluster.readers[0]
    direct = {
        "ENGINE": "aurora_backend",
        "NAME": cluster.database,
        "USER": SUPERUSER,
        "PASSWORD": PASSWORD,
        "HOST": reader.address,
        "PORT": str(cluster.port),
        "OPTIONS": {},
    }
    stock_keepalives = dict(
        stock,
        HOST=reader.address,
        OPTIONS={
            "keepalives": 1,
            "keepalives_idle": 1,
            "keepalives_interval": 1,
            "keepalives_count": 5,
            "connect_timeout": 10,
        },
    )
    return {"default": aurora, "stock": stock, "atomic_aurora": direct, "atomic_stock": stock_keepalives}


# -- 0. mid-query inside atomic(): how long until the app gets its error ------------------------


def in_atomic(cluster: AuroraCluster) -> dict[str, tuple[float, str]]:
    from django.db import connections, transaction

    reader = cluster.readers[0]
    seen: dict[str, tuple[float, str]] = {}
    for alias, name in (
        ("atomic_aurora", "aurora (defaults)"),
        ("atomic_stock", "stock (keepalives 1/1/5, connect_timeout 10)"),
    ):
        marker = "bench-silent-%s" % alias
        connections[alias].ensure_connection()
        admin = reader.admin(cluster.database)
        silenced: list[float] = []
        done = threading.Event()

        def watch(admin: Any, marker: str, silenced: list[float], done: threading.Event) -> None:
            with admin.cursor() as cur:
                for _ in range(1000):
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                        "AND pid <> pg_backend_pid()",
                        ["%" + marker + "%"],
                    )
                    if cur.fetchone()[0]:
                        break
                    time.sleep(0.01)
                # Past the server's delayed ACK of the query: with data unacknowledged, keepalives
                # never start (only tcp_user_timeout ends the wait; TCP retransmits ~15 min).
                time.sleep(0.2)
                cluster.silence(reader.id)
                silenced.append(time.monotonic())
                if not done.wait(HUNG_AFTER):  # still waiting: let it end (the bench must)
                    cluster.unsilence(reader.id)
                    cur.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s "
                        "AND pid <> pg_backend_pid()",
                        ["%" + marker + "%"],
                    )

        watcher = threading.Thread(target=watch, args=(admin, marker, silenced, done))
        watcher.start()
        try:
            with transaction.atomic(using=alias):
                with connections[alias].cursor() as cursor:
                    cursor.execute("SELECT pg_sleep(120) /* %s */" % marker)
            error = "no error"
        except Exception as exc:
            error = "%s: %s" % (type(exc).__name__, str(exc).strip().splitlines()[0][:70])
        failed = time.monotonic()
        done.set()
        watcher.join(10)
        if reader.silent_host is not None and reader.silent_host.silent:
            cluster.unsilence(reader.id)
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s "
                "AND pid <> pg_backend_pid()",
                ["%" + marker + "%"],
            )
        admin.close()
        connections[alias].close()
        if failed - silenced[0] >= HUNG_AFTER:
            error = "still waiting after %d s: ended by the bench (link up, backend terminated)" % HUNG_AFTER
        seen[name] = (failed - silenced[0], error)
    print("query in flight inside atomic() when its host goes silent: seconds from the silence to the app's error")
    for name, (seconds, error) in seen.items():
        print("  %-46s %6.2f s  %s" % (name, seconds, error))
    return seen


# -- 1. a hung reader, then a scale event on the writer ----------------------------------------


def hung_reader(cluster: AuroraCluster, window: float) -> dict[str, list[float]]:
    from django.db import connections

    hung = cluster.readers[-1]
    for alias in ("default", "stock"):
        connections[alias].ensure_connection()
    with connections["default"].cursor() as cursor:  # learns the topology
        cursor.execute("SELECT 1")
    cluster.silence(hung.id)
    assert cluster.writer.sim is not None
    cluster.writer.sim.scale_event()
    times: dict[str, list[float]] = {"aurora": [], "stock": []}
    errors = {"aurora": 0, "stock": 0}
    for alias, name in (("default", "aurora"), ("stock", "stock")):
        try:  # the event's error, on the connection each had
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:
            errors[name] += 1
            connections[alias].close()
    began = time.monotonic()
    while time.monotonic() - began < window:
        for alias, name in (("default", "aurora"), ("stock", "stock")):
            connections[alias].close()
            t = time.monotonic()
            connections[alias].ensure_connection()
            times[name].append(time.monotonic() - t)
        time.sleep(0.05)
    for alias in ("default", "stock"):
        connections[alias].close()
    cluster.unsilence(hung.id)
    print(
        "hung reader %s + scale event on the writer: new writer connections over %.0f s "
        "(errors on the event: aurora %d, stock %d)" % (hung.id, window, errors["aurora"], errors["stock"])
    )
    print("  %-7s %6s %9s %9s %9s %9s" % ("", "n", "median", "mean", "p95", "max"))
    for name in ("aurora", "stock"):
        ms = sorted(x * 1000 for x in times[name])
        print(
            "  %-7s %6d %7.2fms %7.2fms %7.2fms %7.2fms"
            % (name, len(ms), statistics.median(ms), statistics.fmean(ms), ms[int(0.95 * (len(ms) - 1))], ms[-1])
        )
    a, s = statistics.median(times["aurora"]), statistics.median(times["stock"])
    print("  aurora - stock, median: %+.2f ms (ratio %.2f)" % ((a - s) * 1000, a / s))
    return times


# -- 2. a silent writer under the ledger workload ------------------------------------------------


class Workload:
    """Reader and writer threads on "default"; what the app saw, with times."""

    def __init__(self, ids: list[int], readers: int, writers: int, seed: int) -> None:
        self.ids = ids
        self.stop = threading.Event()
        self.commits: list[tuple[float, str]] = []
        self.read_errors: list[tuple[float, str]] = []
        self.write_errors: list[tuple[float, str]] = []
        self.reads = 0
        self.threads = [threading.Thread(target=self.read, name="bench-read-%d" % k) for k in range(readers)]
        self.threads += [
            threading.Thread(target=self.write, args=(random.Random(seed + k),), name="bench-write-%d" % k)
            for k in range(writers)
        ]

    def read(self) -> None:
        from django.db import connections
        from ledger.models import Account

        while not self.stop.is_set():
            try:
                list(Account.objects.values_list("pk", "balance"))
                self.reads += 1
            except Exception as exc:
                self.read_errors.append((time.monotonic(), "%s: %s" % (type(exc).__name__, str(exc)[:80])))
            time.sleep(0.01)
        connections.close_all()

    def write(self, rng: random.Random) -> None:
        from django.db import connections
        from ledger.services import _apply

        from aurora_backend import retry_atomic

        @retry_atomic(using="default")
        def transfer(source: int, destination: int, request_id: uuid.UUID) -> str:
            _apply(source, destination, 1, request_id, "default")
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT aurora_db_instance_identifier()")
                return cursor.fetchone()[0]

        while not self.stop.is_set():
            source, destination = rng.sample(self.ids, 2)
            try:
                who = transfer(source, destination, uuid.uuid4())
                self.commits.append((time.monotonic(), who))
            except Exception as exc:
                self.write_errors.append((time.monotonic(), "%s: %s" % (type(exc).__name__, str(exc)[:80])))
            time.sleep(0.01)
        connections.close_all()


def silent_writer(cluster: AuroraCluster, readers: int, writers: int, wait: float) -> dict[str, Any]:
    from django.db import connections
    from ledger.services import open_accounts, totals

    from aurora_backend.serverless import close_all

    ids = [a.pk for a in open_accounts(ACCOUNTS, BALANCE)]
    connections["default"].close()
    work = Workload(ids, readers, writers, seed=26)
    for thread in work.threads:
        thread.start()
    time.sleep(2.0)
    old = cluster.writer
    silenced = time.monotonic()
    cluster.silence(old.id)
    timeline = cluster.failover(old_writer=DOWN)
    new = timeline["new_writer"]
    deadline = silenced + wait
    first: float | None = None
    while time.monotonic() < deadline:
        first = next((t for t, who in list(work.commits) if who == new), None)
        if first is not None and time.monotonic() > first + 2.0:
            break
        time.sleep(0.05)
    work.stop.set()
    for thread in work.threads:
        thread.join(60)
    close_all()
    total = totals()["total"]
    close_all()
    left = threads_left(10.0)
    return {
        "old": old.id,
        "new": new,
        "promoted": timeline["promoted"],
        "first_write": None if first is None else first - silenced,
        "read_errors": work.read_errors,
        "write_errors": work.write_errors,
        "reads": work.reads,
        "commits": len(work.commits),
        "total": total,
        "expected_total": ACCOUNTS * BALANCE,
        "threads_left": left,
    }


def threads_left(timeout: float) -> dict[str, int]:
    """aurora_backend's threads still alive (probe threads end with their probes: waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        ours = [t.name for t in threading.enumerate() if t.name.startswith("aurora")]
        probes = [n for n in ours if n.startswith("aurora-probe")]
        if not probes or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return {
        "probe": len(probes),
        "idle_reaper": sum(n == "aurora_backend-idle-reaper" for n in ours),
        "other": len(
            [
                n
                for n in ours
                if not n.startswith("aurora-probe")
                and n != "aurora_backend-idle-reaper"
                and not n.startswith("aurora-simulator")
            ]
        ),
    }


def report(result: dict[str, Any]) -> None:
    print(
        "silent writer %s under the ledger workload (default settings; failover started at the silence, "
        "%s promoted %.2f s later):" % (result["old"], result["new"], result["promoted"])
    )
    first = result["first_write"]
    print(
        "  first transfer committed on the new writer: %s after the silence (goal < 12 s)"
        % ("never" if first is None else "%.2f s" % first)
    )
    print(
        "  app errors: reads %d of %d, retry_atomic transfers %d of %d"
        % (
            len(result["read_errors"]),
            result["reads"] + len(result["read_errors"]),
            len(result["write_errors"]),
            result["commits"] + len(result["write_errors"]),
        )
    )
    for _when, what in (result["read_errors"] + result["write_errors"])[:5]:
        print("    %s" % what)
    print("  ledger total: %d (expected %d)" % (result["total"], result["expected_total"]))
    left = result["threads_left"]
    print(
        "  threads of ours left after close_all(): probe %d, other %d (idle reaper: %d, the daemon "
        "that closes idle connections, started at the first connect)"
        % (left["probe"], left["other"], left["idle_reaper"])
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke setting: TTL 0.5 s, 3 s window")
    parser.add_argument("--all-drivers", action="store_true", help="run once per driver, in subprocesses")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args(argv)
    if args.all_drivers:
        forward = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--all-drivers"]
        status = 0
        for driver in ("psycopg2", "psycopg", "pool"):
            print("=== AURORA_TEST_DRIVER=%s" % driver, flush=True)
            status |= subprocess.call(
                [sys.executable, os.path.abspath(__file__), *forward], env=dict(os.environ, AURORA_TEST_DRIVER=driver)
            )
        raise SystemExit(status)
    reason = unavailable()
    if reason:
        raise SystemExit("bench_silent_host: no silent host here: %s" % reason)
    ttl = 0.5 if args.quick else 5.0
    window = 3.0 if args.quick else args.window
    with AuroraCluster(readers=2, ttl=ttl, dns_delay=ttl, silent_hosts=True) as cluster:
        configure_django(settings(cluster), migrate=("default",))
        print_machine()
        print("driver: %s; DNS ttl %.1f s, record moves %.1f s after a promotion" % (DRIVER, ttl, ttl))
        in_atomic(cluster)
        if POOL:
            print("hung reader + scale event: skipped under Django's pool (topology routes no pooled connection)")
        else:
            hung_reader(cluster, window)
        report(silent_writer(cluster, args.readers, args.writers, wait=40.0))


if __name__ == "__main__":
    main()
