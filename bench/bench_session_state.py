"""Cost of tracking session state (issue 17) on every statement.

1. ``effects(sql)`` alone (timeit, best of 7): an ORM text seen before (the usual case: a
   dict lookup), a text never seen before (the pre-filter), a SET (parsed once, then
   looked up).
2. The ORM workloads of bench_overhead.py on one aurora alias, client CPU per operation,
   with the tracking on and switched off in this process (the cursor wrapper's hooks
   patched between blocks, untimed), interleaved with the stock backend.

    python bench/bench_session_state.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_overhead import ACCOUNTS, orm_ops, run  # noqa: E402
from common import bench_server, configure_django, database, median, print_machine  # noqa: E402

ORM_GET = ('SELECT "ledger_account"."id", "ledger_account"."name", "ledger_account"."balance" '
           'FROM "ledger_account" WHERE "ledger_account"."id" = %s LIMIT 21')


def time_effects() -> None:
    from aurora_backend.connection import session_state

    def best(stmt: Any, number: int = 200000) -> float:
        return min(timeit.repeat(stmt, number=number, repeat=7)) / number * 1e9

    # Django builds a new string for every query, so its hash is computed every time: so here.
    head, tail = ORM_GET[:40], ORM_GET[40:]
    counter = iter(range(10 ** 9))
    build = best(lambda: head + tail)
    seen = best(lambda: session_state.effects(head + tail)) - build
    build_unique = best(lambda: head + str(next(counter)) + tail, 50000)
    unseen = best(lambda: session_state._effects(head + str(next(counter)) + tail), 50000) - build_unique
    set_sql = "SET search_path TO tenant_a"
    parsed = best(lambda: session_state._effects(set_sql), 20000) - best(lambda: None)
    empty = build
    print("\neffects(sql), ns per call (best of 7; building the text, %.0f ns, subtracted)" % empty)
    print("  ORM text seen before (dict lookup)   %7.0f" % seen)
    print("  ORM text never seen (pre-filter)     %7.0f" % unseen)
    print("  SET parsed (once per distinct text)  %7.0f" % parsed)


def switch(tracking: bool) -> None:
    """Tracking on (as shipped) or off, for every aurora cursor in this process."""
    from aurora_backend.connection import session, statements
    from aurora_backend.connection.session_state import effects

    statements.effects = effects if tracking else (lambda sql: ())  # type: ignore[assignment]
    session.SessionMixin._aurora_note_rows = (  # type: ignore[assignment]
        _note_rows if tracking else (lambda self, cursor: None))


_note_rows: Any = None


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    global _note_rows
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting for the smoke test")
    args = parser.parse_args(argv)
    n, rounds, block = (40, 1, 20) if args.quick else (2000, 5, 20)
    time_effects()
    with bench_server() as srv:
        configure_django({
            "aurora": database(srv, "aurora_backend", aurora={}),
            "stock": database(srv, "django.db.backends.postgresql"),
        }, migrate=("aurora",))
        from aurora_backend.connection.session import SessionMixin
        from ledger.models import Account

        _note_rows = SessionMixin._aurora_note_rows
        Account.objects.using("aurora").bulk_create(
            [Account(name="a%d" % i, balance=1000) for i in range(ACCOUNTS)])
        ops = orm_ops("aurora")
        engines = {"tracked": ops, "untracked": dict(ops), "stock": orm_ops("stock")}
        reopen = {"tracked": lambda: switch(True), "untracked": lambda: switch(False)}
        print_machine("aurora")
        result = run(engines, n, rounds, block, reopen=reopen)
        switch(True)
    print("\nclient CPU µs per operation, median (%d rounds x %d ops, blocks of %d)" % (rounds, n, block))
    print("%-9s %9s %9s %9s %12s %14s" % ("workload", "stock", "untracked", "tracked", "tracked-un", "% of stock"))
    costs: Dict[str, float] = {}
    for workload, by_engine in result["cpu"].items():
        med = {name: median(values) for name, values in by_engine.items()}
        costs[workload] = med["tracked"] - med["untracked"]
        print("%-9s %9.1f %9.1f %9.1f %10.2fus %13.2f%%" % (
            workload, med["stock"], med["untracked"], med["tracked"], costs[workload],
            100.0 * costs[workload] / med["stock"]))
    return costs


if __name__ == "__main__":
    main()
