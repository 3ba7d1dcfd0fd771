"""Reconnect storm: N connections dropped at once, connection attempts per 100 ms.

N client threads hold one connection each through the Aurora simulator (run as a
separate process, ``aurora_backend.simulator.SimulatorProcess``). The simulator then fails over: every
connection gets FATAL 57P01 at once and for ``--window`` seconds new connections are
rejected with "the database system is starting up" (57P03). All clients then use their
connection at the same moment and reconnect:

- ``aurora``: aurora_backend (pre-use check, connect retry with exponential backoff and
  full jitter: ``backoff_base``/``backoff_max`` below);
- ``expo``: the stock backend with a hand-written reconnect loop on the same schedule,
  min(backoff_max, backoff_base * 2**n), without jitter: every client retries at the
  same times;
- ``fixed``: the same loop retrying every ``--fixed-delay`` seconds (no jitter either).

Attempts are timed on the client side (Django's ``connection_created`` for successes,
aurora_backend's ``connect_retry`` signal or the loop itself for failures) and counted
per 100 ms; the simulator's count of accepted connections is printed as a cross-check.
The peak per 100 ms is the load the storm puts on the server.

    python bench/bench_storm.py            # 200 clients, 5 s window
    python bench/bench_storm.py --quick    # smoke setting
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import bench_server, configure_django, database, print_machine  # noqa: E402

BUCKET = 0.1


def aurora_client(alias: str) -> Callable[[], None]:
    """aurora_backend heals the connection itself: just run the query."""
    from django.db import connections

    def use() -> None:
        with connections[alias].cursor() as cur:
            cur.execute("SELECT 1")

    return use


class Attempts:
    """Times of connection attempts: successes (connection_created), failures (recorded)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._lock = threading.Lock()

    def record(self, **_: Any) -> None:
        with self._lock:
            self.times.append(time.monotonic())

    def since(self, start: float) -> list[float]:
        with self._lock:
            return sorted(t - start for t in self.times if t >= start)


ATTEMPTS = Attempts()


def loop_client(alias: str, delays: Callable[[], Iterator[float]]) -> Callable[[], None]:
    """The stock backend with a hand-written reconnect loop sleeping ``delays()`` (no jitter)."""
    from django.db import Error, connections

    def use() -> None:
        waits = delays()
        failures = 0
        while True:
            try:
                with connections[alias].cursor() as cur:
                    cur.execute("SELECT 1")
                return
            except Error:
                connections[alias].close()
                if failures:  # the first error was the dead connection, later ones connect failures
                    ATTEMPTS.record()
                    time.sleep(next(waits))
                failures += 1

    return use


def fixed_delays(delay: float) -> Callable[[], Iterator[float]]:
    return lambda: itertools.repeat(delay)


def expo_delays(base: float, cap: float) -> Callable[[], Iterator[float]]:
    """aurora_backend's schedule, min(cap, base * 2**n), without the jitter."""
    return lambda: (min(cap, base * 2**n) for n in itertools.count())


def storm(sim: Any, clients: int, use: Callable[[], None], alias: str, window: float, limit: float) -> dict[str, Any]:
    """Connect ``clients`` threads, fail over, release them together; sample attempts."""
    from django.db import connections

    ready = threading.Barrier(clients + 1)
    go = threading.Event()
    done: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        try:
            with connections[alias].cursor() as cur:
                cur.execute("SELECT 1")
            ready.wait(60)
            go.wait(60)
            use()
            with lock:
                done.append(time.monotonic())
        except Exception as exc:  # an app-visible error: counted, not fatal to the bench
            with lock:
                errors.append(type(exc).__name__)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait(120)
    sim.failover(window=window, mode="starting_up")
    start = time.monotonic()
    before = sim.counters["accepted"]
    go.set()
    for thread in threads:
        thread.join(max(0.0, start + limit - time.monotonic()))
    accepted = sim.counters["accepted"] - before
    sim.reset()
    times = ATTEMPTS.since(start)
    buckets = [0] * (int(max(times, default=0.0) / BUCKET) + 1)
    for t in times:
        buckets[int(t / BUCKET)] += 1
    finished = max(done) - start if done else float("nan")
    return {
        "buckets": buckets,
        "attempts": len(times),
        "accepted": accepted,
        "errors": errors,
        "reconnected": len(done),
        "all_done_s": finished,
    }


class RemoteSimulator:
    """The few AuroraSimulator calls this bench makes, sent to a SimulatorProcess."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.address = process.address

    def failover(self, window: float, mode: str) -> None:
        self.process.command("failover %g %s" % (window, mode))

    def reset(self) -> None:
        self.process.command("reset")

    @property
    def counters(self) -> dict[str, int]:
        return self.process.status()["counters"]

    def stop(self) -> None:
        self.process.stop()


def print_results(results: dict[str, dict[str, Any]], window: float) -> None:
    labels = list(results)
    print("\nconnection attempts per 100 ms after the drop (failover window %.1f s)" % window)
    print("%6s  %s" % ("t (s)", "  ".join("%8s" % label for label in labels)))
    length = max(len(r["buckets"]) for r in results.values())
    for i in range(length):
        cells = ["%8s" % (r["buckets"][i] if i < len(r["buckets"]) else "") for r in results.values()]
        print("%6.1f  %s" % ((i + 1) * BUCKET, "  ".join(cells)))
    print()
    for label, r in results.items():
        after_first = r["buckets"][1:] or [0]
        print(
            "%-7s attempts %4d (simulator accepted %d), peak %3d per 100 ms (after the first 100 ms: %3d), "
            "reconnected %d, app errors %d, all reconnected at %.2f s"
            % (
                label,
                r["attempts"],
                r["accepted"],
                max(r["buckets"] or [0]),
                max(after_first),
                r["reconnected"],
                len(r["errors"]),
                r["all_done_s"],
            )
        )


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting for the smoke test")
    parser.add_argument("--clients", type=int, default=None, help="connections dropped at once (default 200)")
    parser.add_argument("--window", type=float, default=None, help="seconds the server rejects (default 3)")
    parser.add_argument("--fixed-delay", type=float, default=0.5, help="fixed reconnect delay (default 0.5 s)")
    parser.add_argument(
        "--backoff",
        type=float,
        nargs=2,
        default=None,
        metavar=("BASE", "MAX"),
        help="aurora backoff_base and backoff_max (default: the package's)",
    )
    args = parser.parse_args(argv)
    clients = args.clients or (20 if args.quick else 200)
    window = args.window if args.window is not None else (0.6 if args.quick else 5.0)
    if args.backoff is None:
        from aurora_backend.options import AuroraOptions

        defaults = AuroraOptions()
        args.backoff = [0.1, 1.0] if args.quick else [defaults.backoff_base, defaults.backoff_max]
    from aurora_backend.simulator import SimulatorProcess

    with bench_server() as srv:
        # In a process of its own: 200 client threads must not starve the proxy of the GIL.
        sim = RemoteSimulator(SimulatorProcess(upstream=(srv.host, srv.port)).start())
        try:
            host, port = sim.address
            aurora = {
                "backoff_base": args.backoff[0],
                "backoff_max": args.backoff[1],
                "connect_deadline": 60,
                "connect_timeout": 5,
                "idle_timeout": None,
            }
            configure_django(
                {
                    "default": database(srv, "django.db.backends.postgresql"),
                    "aurora": database(srv, "aurora_backend", host=host, port=port, conn_max_age=None, aurora=aurora),
                    "stock": database(srv, "django.db.backends.postgresql", host=host, port=port, conn_max_age=None),
                },
                migrate=(),
            )
            print_machine("default")
            print(
                "clients=%d window=%.1fs aurora backoff_base=%g backoff_max=%g (full jitter); "
                "fixed delay %g s" % (clients, window, args.backoff[0], args.backoff[1], args.fixed_delay)
            )
            limit = window + 30
            from django.db.backends.signals import connection_created

            from aurora_backend import signals

            connection_created.connect(ATTEMPTS.record, weak=False)
            signals.connect_retry.connect(ATTEMPTS.record, weak=False)
            base, cap = args.backoff
            results = {
                "aurora": storm(sim, clients, aurora_client("aurora"), "aurora", window, limit),
                "expo": storm(sim, clients, loop_client("stock", expo_delays(base, cap)), "stock", window, limit),
                "fixed": storm(
                    sim, clients, loop_client("stock", fixed_delays(args.fixed_delay)), "stock", window, limit
                ),
            }
            print_results(results, window)
            return results
        finally:
            sim.stop()


if __name__ == "__main__":
    main()
