"""Where aurora_backend's per-query overhead goes: variants of the ENGINE side by side.

A sampling profiler (pyinstrument, py-spy) cannot resolve a few µs per query, so this
attributes the difference between aurora_backend and the stock backend by switching
parts off, one at a time, on separate aliases of the same server (the variants are
patched on the connection *instance* in this process; aurora_backend's files are not
touched), interleaved in blocks like bench_overhead.py:

- ``aurora``: as shipped;
- ``no-precheck``: without the pre-use check in ``close_if_health_check_failed`` (lock,
  clock, one compare, ``poll(0)`` on the connection's socket);
- ``no-swap``: without the cursor class swap (statement re-run) in ``make_cursor``;
- ``stock``: django.db.backends.postgresql.

It also times each component alone (timeit, best of 7).

    python bench/profile_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import timeit
import types
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_overhead import ACCOUNTS, orm_ops, run  # noqa: E402
from common import bench_server, configure_django, database, median, percentile, print_machine  # noqa: E402

VARIANTS = ("aurora", "no-precheck", "no-swap")


def patch(alias: str, variant: str) -> None:
    from django.db import connections
    from django.db.backends.postgresql.base import DatabaseWrapper

    conn = connections[alias]
    conn.ensure_connection()
    if variant == "no-precheck":
        conn.close_if_health_check_failed = types.MethodType(DatabaseWrapper.close_if_health_check_failed, conn)
    elif variant == "no-swap":
        conn.make_cursor = types.MethodType(DatabaseWrapper.make_cursor, conn)


def components(alias: str, stock: str) -> None:
    """Each piece of the hot path timed alone (µs, best of 7)."""
    from django.db import connections

    a, s = connections[alias], connections[stock]
    fd = a.connection.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    now = a.aurora_runtime.clock()

    def block(wrapper: Any) -> None:
        with wrapper.wrap_database_errors:
            pass

    rows = [
        ("select.select([fd], [], [], 0)", lambda: select.select([fd], [], [], 0)),
        ("poll.poll(0) on a registered poller", lambda: poller.poll(0)),
        ("_aurora_full_check (the rare slow path)", lambda: a._aurora_full_check(now)),
        ("aurora close_if_health_check_failed", a.close_if_health_check_failed),
        ("stock close_if_health_check_failed", s.close_if_health_check_failed),
        ("aurora cursor() + close", lambda: a.cursor().close()),
        ("stock cursor() + close", lambda: s.cursor().close()),
        ("aurora wrap_database_errors block", lambda: block(a)),
        ("stock wrap_database_errors block", lambda: block(s)),
    ]
    print("\ncomponents, µs per call (best of 7 x 20000)")
    for label, fn in rows:
        best = min(timeit.repeat(fn, number=20000, repeat=7)) / 20000 * 1e6
        print("  %-40s %7.2f" % (label, best))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting for the smoke test")
    parser.add_argument("-n", type=int, default=None, help="ops per variant per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5)")
    args = parser.parse_args(argv)
    n = args.n or (20 if args.quick else 2000)
    rounds = args.rounds or (1 if args.quick else 5)
    with bench_server() as srv:
        dbs = {v: database(srv, "aurora_backend", conn_max_age=None) for v in VARIANTS}
        dbs["stock"] = database(srv, "django.db.backends.postgresql", conn_max_age=None)
        configure_django(dbs, migrate=("stock",))
        from django.db import connections
        from ledger.models import Account

        Account.objects.using("stock").bulk_create([Account(name="acct-%d" % i, balance=1) for i in range(ACCOUNTS)])
        print_machine("stock")
        for variant in VARIANTS:
            patch(variant, variant)
        engines = {name: {"get": orm_ops(name)["get"]} for name in (*VARIANTS, "stock")}
        result = run(engines, n, rounds, 10 if args.quick else 20)
        samples, blocks, cpu = result["samples"]["get"], result["blocks"]["get"], result["cpu"]["get"]
        stock = median(samples["stock"])
        print("\nget by pk, median µs (%d rounds x %d ops, interleaved)" % (rounds, n))
        out = {}
        for name in (*VARIANTS, "stock"):
            med = median(samples[name])
            paired = [x / y for x, y in zip(blocks[name], blocks["stock"], strict=False)]
            out[name] = med / stock
            cpu_med = median(cpu[name])
            print(
                "  %-14s %8.1f  vs stock %.3f  paired %.3f (p25 %.3f, p75 %.3f)  %+6.1f µs   "
                "client CPU %6.1f µs (%+.1f)"
                % (
                    name,
                    med,
                    med / stock,
                    median(paired),
                    percentile(paired, 0.25),
                    percentile(paired, 0.75),
                    med - stock,
                    cpu_med,
                    cpu_med - median(cpu["stock"]),
                )
            )
        components("aurora", "stock")
        connections.close_all()
        return out


if __name__ == "__main__":
    main()
