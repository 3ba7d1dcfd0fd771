"""The ledger through N real failovers per driver: exactly once, and what each failover costs.

For each driver (psycopg2, psycopg 3, psycopg 3 with Django's pool ``OPTIONS["pool"]``), in
its own process: a local Aurora cluster (``aurora_backend.testing.AuroraCluster``, a writer
and two readers in real streaming replication, Aurora's DNS timing: TTL 5 s, the record
moving 5 s after the promotion), 3 writer threads doing ledger transfers under
``retry_atomic`` with its default settings on the cluster endpoint (topology routing on,
the default) and 2 reader threads summing balances through the reader endpoint; then
``--failovers`` real failovers (``pg_promote()``), each after the DNS of the previous one
settled. Printed per driver:

- acknowledged transfers, committed ones (rows in the database afterwards), app errors
  (any exception a writer or reader thread saw, ``CommitOutcomeUnknown`` apart),
  ``CommitOutcomeUnknown``, lost (acknowledged, not committed), doubled (committed twice:
  the request id is unique, so a double would be an IntegrityError, counted as an app error);
- per failover, the write outage: from the kill of the old writer's connections to the first
  transfer committed on the new writer, and from ``pg_promote()`` to it; and the "first sign
  to new writer" seconds of the ENGINE's topology_failover signal;
- physical connections opened by the app (driver connects to the cluster's port, topology
  probes included; counted by wrapping the driver's connect function in this process).

    python bench/bench_failover_soak.py --failovers 20                  # psycopg2, psycopg, pool in turn
    python bench/bench_failover_soak.py --failovers 3 --drivers pool
    python bench/bench_failover_soak.py --quick                          # one driver, 2 failovers, TTL and delay 0.5 s
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import DRIVER, POOL, configure_django, machine, server_version  # noqa: E402  (this checkout's aurora_backend)

DRIVERS = ("psycopg2", "psycopg", "pool")
RESULT = "RESULT "


# ----- counting physical connections (this process only) --------------------------------


class Opened:
    """Driver connects to ``port`` that succeeded (the cluster's admin connections use the
    servers' own ports, so they are not counted)."""

    def __init__(self) -> None:
        self.count = 0
        self.port: int | None = None
        self.lock = threading.Lock()

    def note(self, kwargs: dict[str, Any], conninfo: str = "") -> None:
        port = kwargs.get("port")
        if port is None and "port=" in conninfo:
            port = conninfo.split("port=")[1].split()[0]
        if self.port is not None and str(port) == str(self.port):
            with self.lock:
                self.count += 1


OPENED = Opened()


def count_connects(driver: str) -> None:
    """Wrap the driver's connect functions that Django and the pool call."""
    if driver == "psycopg2":
        import psycopg2

        plain = psycopg2.connect

        def connect2(*args: Any, **kwargs: Any) -> Any:
            conn = plain(*args, **kwargs)
            OPENED.note(kwargs, args[0] if args and isinstance(args[0], str) else "")
            return conn

        psycopg2.connect = connect2
        return
    import psycopg

    module_connect = psycopg.connect  # Django's non-pooled connects
    class_connect = psycopg.Connection.connect.__func__  # the pool's connection class

    def connect3(*args: Any, **kwargs: Any) -> Any:
        conn = module_connect(*args, **kwargs)
        OPENED.note(kwargs, args[0] if args and isinstance(args[0], str) else "")
        return conn

    def class_connect3(cls: Any, conninfo: str = "", **kwargs: Any) -> Any:
        conn = class_connect(cls, conninfo, **kwargs)
        OPENED.note(kwargs, conninfo)
        return conn

    psycopg.connect = connect3
    psycopg.Connection.connect = classmethod(class_connect3)


# ----- lost COMMITs, from the ENGINE's log -------------------------------------------------


class LostCommits(logging.Handler):
    """Each lost COMMIT retry_atomic resolved: the answer, and seconds from the lost COMMIT
    ("COMMIT on ... got no answer") to the server's answer ("txid_status(...) after a lost COMMIT")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.started: dict[int, float] = {}
        self.answers: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        if message.startswith("COMMIT on"):
            self.started[record.thread or 0] = record.created
        elif message.startswith("txid_status(") and "after a lost COMMIT" in message:
            began = self.started.pop(record.thread or 0, record.created)
            self.answers.append((str(record.args[-1]), record.created - began))


# ----- one driver, in its own process --------------------------------------------------


class Workers:
    """3 writers (transfers under retry_atomic) and 2 readers; what each saw, timed."""

    def __init__(self, accounts: list[int], pooled: bool) -> None:
        self.accounts = accounts
        #: Without a pool the threads keep their connection (CONN_MAX_AGE None, max_age's
        #: expiry): connections opened are reconnects. With one, each use is a checkout.
        self.pooled = pooled
        self.acks: list[tuple[float, str, uuid.UUID]] = []  # (time, instance that committed, request id)
        self.errors: list[tuple[float, str]] = []
        self.unknown: list[tuple[float, str]] = []
        self.reads = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.write, args=(k,), daemon=True) for k in range(3)]
        self.threads += [threading.Thread(target=self.read, daemon=True) for _ in range(2)]

    def write(self, k: int) -> None:
        from django.db import connections
        from ledger import services

        from aurora_backend import CommitOutcomeUnknown, retry_atomic

        @retry_atomic
        def transfer(source: int, destination: int, amount: int, request_id: uuid.UUID) -> str:
            services._apply(source, destination, amount, request_id, "default")
            with connections["default"].cursor() as cursor:  # who commits it: the same transaction
                cursor.execute("SELECT aurora_db_instance_identifier()")
                return cursor.fetchone()[0]

        rng = random.Random(k)
        while not self.stop.is_set():
            source, destination = rng.sample(self.accounts, 2)
            request_id = uuid.uuid4()
            try:
                instance = transfer(source, destination, rng.randint(1, 5), request_id)
                with self.lock:
                    self.acks.append((time.monotonic(), instance, request_id))
            except CommitOutcomeUnknown as exc:
                self.unknown.append((time.monotonic(), str(exc)))
            except Exception as exc:
                self.failed(exc, "")
            if self.pooled:  # back to the pool, as at the end of a request
                connections["default"].close()
        connections["default"].close()

    def read(self) -> None:
        from django.db import connections
        from django.db.models import Sum
        from ledger.models import Account

        while not self.stop.is_set():
            try:
                Account.objects.using("replica").filter(pk__in=self.accounts).aggregate(Sum("balance"))
                self.reads += 1
            except Exception as exc:
                self.failed(exc, "read ")
            if self.pooled:
                connections["replica"].close()
            time.sleep(0.005)
        connections["replica"].close()

    def failed(self, exc: BaseException, what: str) -> None:
        self.errors.append((time.monotonic(), "%s%s: %s" % (what, type(exc).__name__, str(exc).splitlines()[0])))
        if os.environ.get("SOAK_TRACEBACKS"):
            import traceback

            traceback.print_exc()
        time.sleep(0.01)

    def first_ack_on(self, instance: str, after: float, wait: float) -> float | None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self.lock:
                found = next((t for t, who, _ in self.acks if t >= after and who == instance), None)
            if found is not None:
                return found
            time.sleep(0.01)
        return None


def run_driver(args: argparse.Namespace) -> None:
    driver = DRIVER
    count_connects(driver)
    from aurora_backend.testing.aurora_cluster import AuroraCluster

    with AuroraCluster(readers=2, ttl=args.ttl, dns_delay=args.dns_delay) as cluster:
        OPENED.port = cluster.port
        aurora = {"connect_deadline": 60, "connect_timeout": 2}
        databases = {
            "default": cluster.database_settings(**aurora),
            "replica": cluster.database_settings(cluster.reader_endpoint, **aurora),
        }
        if POOL:
            for entry in databases.values():
                entry["OPTIONS"]["pool"] = {"max_size": 4}
                entry["CONN_MAX_AGE"] = 0
        for entry in databases.values():
            entry["CONN_MAX_AGE"] = 0 if POOL else None
        configure_django(databases, migrate=("default",))
        import logging

        logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())
        logging.getLogger("psycopg.pool").propagate = False
        lost_commits = LostCommits()
        logging.getLogger("aurora_backend").addHandler(lost_commits)
        logging.getLogger("aurora_backend").setLevel(logging.INFO)
        from django.db import connections

        info = machine()
        info["postgresql"] = server_version()
        print(
            "  machine: nproc=%(nproc)s cpu=%(cpu)s; Python %(python)s, Django %(django)s, %(driver)s "
            "(libpq %(libpq)s), PostgreSQL %(postgresql)s" % info,
            flush=True,
        )

        from ledger.models import Account, Transfer

        from aurora_backend import signals

        accounts = [
            a.pk for a in Account.objects.bulk_create([Account(name="soak-%d" % i, balance=1000) for i in range(8)])
        ]
        connections["default"].close()
        found: list[tuple[float, float | None, str]] = []  # (time, seconds from first sign, how)

        def on_failover(sender: Any, alias: str, seconds: float | None, how: str, **kw: Any) -> None:
            if alias == "default":
                found.append((time.monotonic(), seconds, how))

        signals.topology_failover.connect(on_failover, weak=False)
        workers = Workers(accounts, POOL)
        for thread in workers.threads:
            thread.start()
        time.sleep(1.0)
        rows = []
        settle = args.ttl + args.dns_delay + 1
        try:
            for number in range(1, args.failovers + 1):
                opened, began = OPENED.count, time.monotonic()
                timeline = cluster.failover()
                promoted = began + timeline["promote"]
                first = workers.first_ack_on(timeline["new_writer"], began, 60)
                time.sleep(settle)  # DNS settled: the next failover starts clean
                signs = [s for t, s, how in found if t >= began and how == "topology"]
                rows.append(
                    {
                        "n": number,
                        "old": timeline["old_writer"],
                        "new": timeline["new_writer"],
                        "outage": None if first is None else round(first - began, 3),
                        "after_promote": None if first is None else round(first - promoted, 3),
                        "first_sign": signs[0] if signs else None,
                        "opened": OPENED.count - opened,
                    }
                )
                print(
                    "  failover %2d %s -> %s: first transfer on the new writer %s s after the kill "
                    "(%s s after pg_promote()); topology: %s s from the first sign; %d connections opened"
                    % (
                        number,
                        rows[-1]["old"][-10:],
                        rows[-1]["new"][-10:],
                        rows[-1]["outage"],
                        rows[-1]["after_promote"],
                        rows[-1]["first_sign"],
                        rows[-1]["opened"],
                    ),
                    flush=True,
                )
        finally:
            workers.stop.set()
            for thread in workers.threads:
                thread.join(60)
        committed = list(Transfer.objects.filter(source_id__in=accounts).values_list("request_id", flat=True))
        total = sum(Account.objects.filter(pk__in=accounts).values_list("balance", flat=True))
        acked = [r for _, _, r in workers.acks]
        result = {
            "driver": driver,
            "failovers": args.failovers,
            "acknowledged": len(acked),
            "committed": len(committed),
            "app_errors": len(workers.errors),
            "commit_outcome_unknown": len(workers.unknown),
            "lost": len(set(acked) - set(committed)),
            "doubled": sum(n - 1 for n in Counter(committed).values() if n > 1),
            "unacknowledged_committed": len(set(committed) - set(acked)),
            "balance_total_ok": total == 8 * 1000,
            "reads": workers.reads,
            "opened": OPENED.count,
            "rows": rows,
            "lost_commits": dict(Counter(answer for answer, _ in lost_commits.answers)),
            "lost_commit_seconds": sorted(round(t, 3) for _, t in lost_commits.answers),
            "errors_seen": dict(Counter(e for _, e in workers.errors).most_common(5)),
        }
        print(RESULT + json.dumps(result), flush=True)


# ----- the parent: each driver in turn, then the table ------------------------------------


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return "%.2f / %.2f / %.2f" % (ordered[0], ordered[len(ordered) // 2], ordered[-1])


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(
        "%d failovers per driver; DNS TTL %.1f s, record moving %.1f s after the promotion; "
        "3 retry_atomic writers + 2 readers" % (args.failovers, args.ttl, args.dns_delay)
    )
    head = (
        "driver",
        "acked",
        "committed",
        "app errors",
        "unknown",
        "lost",
        "doubled",
        "outage s min/med/max",
        "after promote s",
        "first 3 vs last 3",
        "connections (per failover)",
    )
    print(" | ".join(head))
    for r in results:
        outages = [row["outage"] for row in r["rows"] if row["outage"] is not None]
        after = [row["after_promote"] for row in r["rows"] if row["after_promote"] is not None]
        first, last = after[:3], after[-3:]
        print(
            " | ".join(
                str(x)
                for x in (
                    r["driver"],
                    r["acknowledged"],
                    r["committed"],
                    r["app_errors"],
                    r["commit_outcome_unknown"],
                    r["lost"],
                    r["doubled"],
                    _stats(outages),
                    _stats(after),
                    "%.2f vs %.2f" % (sum(first) / max(len(first), 1), sum(last) / max(len(last), 1)),
                    "%d (%s)" % (r["opened"], _stats([float(row["opened"]) for row in r["rows"]])),
                )
            )
        )
        print(
            "    lost COMMITs resolved by txid_status: %s; seconds from the lost COMMIT to the answer "
            "min/med/max: %s" % (r["lost_commits"] or "none", _stats(r["lost_commit_seconds"]))
        )
        if r["errors_seen"]:
            print("    errors:", r["errors_seen"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failovers", type=int, default=20)
    parser.add_argument(
        "--drivers",
        default=None,
        help="comma-separated; default all three (--quick: AURORA_TEST_DRIVER's, or the one Django picks)",
    )
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--dns-delay", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="2 failovers, TTL and DNS delay 0.5 s")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.failovers, args.ttl, args.dns_delay = 2, 0.5, 0.5
    if args.drivers is None:
        args.drivers = DRIVER if args.quick else ",".join(DRIVERS)
    if args.child:
        run_driver(args)
        return
    print("command: python bench/bench_failover_soak.py %s" % " ".join(sys.argv[1:]))
    results = []
    for driver in args.drivers.split(","):
        print("%s:" % driver, flush=True)
        env = dict(os.environ, AURORA_TEST_DRIVER=driver)
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "--failovers",
            str(args.failovers),
            "--ttl",
            str(args.ttl),
            "--dns-delay",
            str(args.dns_delay),
        ]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(RESULT):
                results.append(json.loads(line[len(RESULT) :]))
            else:
                print(line, end="", flush=True)
        if proc.wait() != 0:
            print("  %s: the run failed (exit %d)" % (driver, proc.returncode))
    report(results, args)


if __name__ == "__main__":
    main()
