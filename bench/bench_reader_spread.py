"""How connections spread over 3 readers, aurora_backend vs Django's stock backend (issue 5).

N worker threads query a "reader endpoint" in a loop. The readers are 127.0.0.1,
127.0.0.2 and 127.0.0.3 (one PostgreSQL server listening on all three). DNS is
simulated like Aurora's reader endpoint: each resolution returns ONE address at
random; it starts with 127.0.0.1/127.0.0.2 and a third reader, 127.0.0.3, is "added
by autoscaling" ``--add-at`` seconds in.

- aurora_backend: HOST is a name resolved by ``OPTIONS["aurora"]["resolver"]`` (the
  simulated DNS) at every new connection; ``max_age`` is scaled down to seconds.
- stock backend, persistent connections (CONN_MAX_AGE=None): libpq resolves the name
  once, when the connection opens, and never again. The bench does the same without
  patching Django: each worker gets its own stock alias whose HOST is the address the
  simulated DNS returned when the worker started (one process per worker, in effect).

Every 0.5 s it samples which address each worker's session is on (each query is
``SELECT host(inet_server_addr())``, so the server says it) and prints the count per
reader, then a histogram of connection opens per 0.5 s after the simultaneous start.

    python bench/bench_reader_spread.py            # 12 workers, 20 s per backend
    python bench/bench_reader_spread.py --quick    # smoke setting (a few seconds)
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

from common import bench_server, configure_django, database, print_machine  # noqa: E402

READERS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
ENDPOINT = "reader.bench.invalid"
BUCKET = 0.5


class SimulatedDNS:
    """A reader endpoint: each resolution returns one of the current readers at random."""

    def __init__(self, addresses: list[str], seed: int = 5) -> None:
        self._lock = threading.Lock()
        self._addresses = list(addresses)
        self._rng = random.Random(seed)
        self.resolutions = 0

    def set(self, addresses: list[str]) -> None:
        with self._lock:
            self._addresses = list(addresses)

    def __call__(self, host: str, port: int) -> list[str]:
        with self._lock:
            self.resolutions += 1
            return [self._rng.choice(self._addresses)]


DNS = SimulatedDNS(READERS[:2])


def readers_reachable(host_port: int, user: str, password: str, dbname: str) -> bool:
    """True when the server answers on all three reader addresses."""
    from aurora_backend import drivers

    for address in READERS:
        try:
            drivers.connect(
                host=address, port=host_port, user=user, password=password, dbname=dbname, connect_timeout=2
            ).close()
        except drivers.OperationalError:
            return False
    return True


class Run:
    """One backend's run: workers, sampler, connection-open times."""

    def __init__(self, label: str, workers: int, duration: float, add_at: float) -> None:
        self.label, self.workers, self.duration, self.add_at = label, workers, duration, add_at
        self.current: list[str | None] = [None] * workers
        self.samples: list[tuple] = []
        self.opens: list[float] = []
        self.errors = 0
        self.queries = 0
        self.start = 0.0
        self._lock = threading.Lock()

    def opened(self, **_: Any) -> None:
        with self._lock:
            self.opens.append(time.monotonic() - self.start)

    def worker(self, index: int, alias_for: Any, barrier: threading.Barrier, stop: threading.Event) -> None:
        from django.db import connections

        alias = alias_for(index)
        barrier.wait()
        try:
            while not stop.is_set():
                try:
                    with connections[alias].cursor() as cur:
                        cur.execute("SELECT host(inet_server_addr())")
                        self.current[index] = cur.fetchone()[0]
                    with self._lock:
                        self.queries += 1
                except Exception:
                    with self._lock:
                        self.errors += 1
                stop.wait(0.01)
        finally:
            connections.close_all()

    def execute(self, alias_for: Any) -> None:
        from django.db.backends.signals import connection_created

        DNS.set(READERS[:2])
        stop = threading.Event()
        barrier = threading.Barrier(self.workers + 1)
        connection_created.connect(self.opened, weak=False)
        threads = [
            threading.Thread(target=self.worker, args=(i, alias_for, barrier, stop), daemon=True)
            for i in range(self.workers)
        ]
        try:
            for thread in threads:
                thread.start()
            self.start = time.monotonic()
            barrier.wait(timeout=30)
            added = False
            while True:
                now = time.monotonic() - self.start
                if now >= self.duration:
                    break
                if not added and now >= self.add_at:
                    DNS.set(READERS)
                    added = True
                time.sleep(BUCKET - (now % BUCKET))
                self.samples.append((time.monotonic() - self.start, Counter(self.current)))
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
            connection_created.disconnect(self.opened)


def stock_alias_for(port: int) -> Any:
    """Each worker: its stock alias, HOST set to what DNS says when the worker starts."""
    from django.db import connections

    def alias_for(index: int) -> str:
        alias = "stock-%d" % index
        connections.settings[alias]["HOST"] = DNS(ENDPOINT, port)[0]
        return alias

    return alias_for


def print_timeline(runs: list[Run]) -> None:
    print("\nconnections per reader over time (.1/.2/.3), reader 127.0.0.3 added at t=%.1fs" % runs[0].add_at)
    print("%6s  %s" % ("t (s)", "  ".join("%-16s" % r.label for r in runs)))
    for i in range(min(len(r.samples) for r in runs)):
        cells = []
        for r in runs:
            counts = r.samples[i][1]
            cells.append("%-16s" % "/".join(str(counts.get(a, 0)) for a in READERS))
        print("%6.1f  %s" % (runs[0].samples[i][0], "  ".join(cells)))


def summarize(run: Run) -> dict[str, Any]:
    """Max/min per reader after the new reader had one max-age window, and when it got load."""
    first_on_new = next((t for t, c in run.samples if c.get(READERS[2], 0) > 0), None)
    tail = [c for t, c in run.samples if t >= run.duration - max(2.0, run.duration / 4)]
    spread = [(max(c.get(a, 0) for a in READERS), min(c.get(a, 0) for a in READERS)) for c in tail]
    means = {a: sum(c.get(a, 0) for c in tail) / max(1, len(tail)) for a in READERS}
    return {
        "first_on_new": first_on_new,
        "tail_mean": means,
        "tail_max": max(s[0] for s in spread) if spread else 0,
        "tail_min": min(s[1] for s in spread) if spread else 0,
        "opens": len(run.opens),
    }


def print_histogram(runs: list[Run]) -> None:
    print("\nconnection opens per %.1f s bucket after the simultaneous start" % BUCKET)
    buckets = int(runs[0].duration / BUCKET) + 1
    hist = {r.label: Counter(int(t / BUCKET) for t in r.opens) for r in runs}
    print("%6s  %s" % ("t (s)", "  ".join("%8s" % r.label for r in runs)))
    for b in range(buckets):
        print("%6.1f  %s" % (b * BUCKET, "  ".join("%8d" % hist[r.label].get(b, 0) for r in runs)))
    for r in runs:
        later = [n for b, n in hist[r.label].items() if b > 0]
        print(
            "%s: %d opens after the start, peak %d per %.1f s bucket"
            % (r.label, sum(later), max(later) if later else 0, BUCKET)
        )


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting for the smoke test")
    parser.add_argument("--workers", type=int, default=None, help="worker threads (default 12)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per backend (default 20)")
    parser.add_argument("--add-at", type=float, default=None, help="seconds until 127.0.0.3 is added (default 6)")
    parser.add_argument(
        "--max-age",
        type=float,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="aurora max_age range in seconds (default 2 4)",
    )
    args = parser.parse_args(argv)
    workers = args.workers or (6 if args.quick else 12)
    duration = args.duration or (4.0 if args.quick else 20.0)
    add_at = args.add_at if args.add_at is not None else (1.0 if args.quick else 6.0)
    max_age = list(args.max_age or ([0.5, 1.0] if args.quick else [2.0, 4.0]))
    with bench_server() as srv:
        if not readers_reachable(srv.port, srv.user, srv.password, srv.dbname):
            print(
                "skipped: the server does not listen on %s (port %d); unset AURORA_TEST_DSN to use "
                "a throwaway cluster that does" % (", ".join(READERS), srv.port)
            )
            return {}
        aurora = {"max_age": max_age, "idle_timeout": None, "resolver": DNS}
        stock = {
            "stock-%d" % i: database(srv, "django.db.backends.postgresql", conn_max_age=None) for i in range(workers)
        }
        configure_django(
            {
                "default": database(srv, "django.db.backends.postgresql"),
                "aurora": database(srv, "aurora_backend", host=ENDPOINT, conn_max_age=None, aurora=aurora),
                **stock,
            },
            migrate=("default",),
        )
        print_machine("default")
        print("workers=%d duration=%.1fs add_at=%.1fs aurora max_age=%s" % (workers, duration, add_at, max_age))
        runs = [Run("aurora", workers, duration, add_at), Run("stock", workers, duration, add_at)]
        runs[0].execute(lambda index: "aurora")
        runs[1].execute(stock_alias_for(srv.port))
        print_timeline(runs)
        print_histogram(runs)
        result = {}
        for r in runs:
            s = summarize(r)
            result[r.label] = s
            print(
                "%s: %d queries, %d errors; first connection on 127.0.0.3 at %s; last %.1f s: max %d / "
                "min %d connections per reader"
                % (
                    r.label,
                    r.queries,
                    r.errors,
                    "t=%.1fs" % s["first_on_new"] if s["first_on_new"] is not None else "never",
                    max(2.0, duration / 4),
                    s["tail_max"],
                    s["tail_min"],
                )
            )
            print(
                "%s: mean connections per reader in the last %.1f s: %s"
                % (r.label, max(2.0, duration / 4), ", ".join("%s %.1f" % (a, m) for a, m in s["tail_mean"].items()))
            )
        print("DNS resolutions: %d" % DNS.resolutions)
        return result


if __name__ == "__main__":
    main()
