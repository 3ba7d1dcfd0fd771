"""Recovery: from "the server accepts connections again" to "first successful query".

Through the Aurora simulator (``aurora_backend.simulator.AuroraSimulator``), one client
connection per backend, each scenario repeated ``--repeat`` times:

- scale event: every connection gets FATAL "serverless scale event timeout"; the server
  accepts again at once. Figure: the next query's total time.
- failover: every connection gets FATAL 57P01 and for ``--window`` seconds new
  connections get "the database system is starting up". A query is sent at once.
  Figure: its completion time minus the window (time after the server accepts again).
- cold start: the cluster is paused (no connection open); a query is sent; the
  simulator holds the connection attempt and resumes after R seconds. Figure: the
  query's total time minus R (added latency beyond the resume), for R below and above
  the per-attempt ``connect_timeout``.

aurora_backend runs with its package defaults except ``connect_timeout`` (2 s, so that
a resume longer than an attempt is seen); the stock backend has no retry: its figure is
the error the application gets.

    python bench/bench_recovery.py            # 5 repeats
    python bench/bench_recovery.py --quick    # smoke setting
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import bench_server, configure_django, database, median, print_machine  # noqa: E402

CONNECT_TIMEOUT = 2


def query(alias: str) -> tuple[float, str | None]:
    """Run one ORM-level query; its duration in seconds and the error class name, if any."""
    from django.db import Error, connections

    start = time.monotonic()
    try:
        with connections[alias].cursor() as cur:
            cur.execute("SELECT 1")
    except Error as exc:
        connections[alias].close()
        return time.monotonic() - start, type(exc).__name__
    return time.monotonic() - start, None


def warm(alias: str) -> None:
    from django.db import connections

    connections[alias].close()
    connections[alias].ensure_connection()


def scale_event(sim: Any, alias: str, _: float) -> tuple[float, str | None]:
    warm(alias)
    sim.scale_event()
    return query(alias)


def failover(sim: Any, alias: str, window: float) -> tuple[float, str | None]:
    warm(alias)
    sim.failover(window=window, mode="starting_up")
    took, error = query(alias)
    sim.wait_failover(window + 10)
    sim.reset()
    return took - window, error


def cold_start(resume_after: float) -> Callable[[Any, str, float], tuple[float, str | None]]:
    def scenario(sim: Any, alias: str, _: float) -> tuple[float, str | None]:
        from django.db import connections

        connections.close_all()
        sim.wait_for_connections(0, timeout=5)  # Aurora pauses only with no connection open
        sim.pause()
        timer = threading.Timer(resume_after, sim.resume)
        timer.start()
        try:
            took, error = query(alias)
            if alias == "stock":
                # psycopg 3 keeps an attempt it gave up at connect_timeout (its socket open)
                # in a reference cycle until the garbage collector runs; the stock backend
                # leaves it there (aurora_backend closes it: tests/test_reconnect_simulated.py).
                gc.collect()
        finally:
            timer.join()
            sim.reset()
        return took - resume_after, error

    return scenario


def measure(
    sim: Any, scenario: Callable[..., tuple[float, str | None]], alias: str, window: float, repeat: int
) -> dict[str, Any]:
    figures, errors = [], []
    for _ in range(repeat):
        took, error = scenario(sim, alias, window)
        (errors if error else figures).append(error if error else took)
    return {"figures": figures, "errors": errors}


def fmt(result: dict[str, Any]) -> str:
    figures, errors = result["figures"], result["errors"]
    parts = []
    if figures:
        parts.append("median %.3f s, max %.3f s (n=%d)" % (median(figures), max(figures), len(figures)))
    if errors:
        parts.append("%d app error(s): %s" % (len(errors), ", ".join(sorted(set(errors)))))
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting for the smoke test")
    parser.add_argument("--repeat", type=int, default=None, help="repeats per scenario (default 5)")
    parser.add_argument("--window", type=float, default=None, help="failover window in seconds (default 2)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 5)
    window = args.window if args.window is not None else (0.3 if args.quick else 2.0)
    resumes = [0.5] if args.quick else [1.0, 3.0]
    from aurora_backend.simulator import AuroraSimulator

    with bench_server() as srv:
        sim = AuroraSimulator(upstream=(srv.host, srv.port), listen=[("127.0.0.1", 0)]).start()
        try:
            host, port = sim.address
            aurora = {"connect_timeout": CONNECT_TIMEOUT}
            stock = database(srv, "django.db.backends.postgresql", host=host, port=port, conn_max_age=None)
            stock["OPTIONS"]["connect_timeout"] = CONNECT_TIMEOUT
            configure_django(
                {
                    "default": database(srv, "django.db.backends.postgresql"),
                    "aurora": database(srv, "aurora_backend", host=host, port=port, conn_max_age=None, aurora=aurora),
                    "stock": stock,
                },
                migrate=(),
            )
            print_machine("default")
            print(
                "aurora_backend: package defaults, connect_timeout=%d s; stock: connect_timeout=%d s, no retry"
                % (CONNECT_TIMEOUT, CONNECT_TIMEOUT)
            )
            scenarios: list[tuple[str, Callable[..., Any]]] = [
                ("scale event: next query's total time", scale_event),
                ("failover (window %.1f s): first success after the window" % window, failover),
            ]
            for r in resumes:
                scenarios.append(("cold start (resume after %.1f s): added latency beyond it" % r, cold_start(r)))
            results: dict[str, dict[str, Any]] = {}
            print()
            for label, scenario in scenarios:
                for alias in ("aurora", "stock"):
                    result = measure(sim, scenario, alias, window, repeat)
                    results["%s/%s" % (label.split(":")[0], alias)] = result
                    print("%-62s %-7s %s" % (label, alias, fmt(result)))
            return results
        finally:
            from django.db import connections

            connections.close_all()
            sim.stop()


if __name__ == "__main__":
    main()
