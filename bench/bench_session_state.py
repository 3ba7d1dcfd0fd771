"""Cost of tracking session state (issue 17) on every statement.

1. ``effects(sql)`` alone (timeit, best of 7): an ORM text seen before (the usual case: a
   dict lookup), a text never seen before (the pre-filter), a SET (parsed once, then
   looked up).
2. Client instructions per ORM operation (bench_overhead.py's get, list100, insert),
   counted by valgrind's callgrind in a child process: the stock backend, aurora_backend
   with the tracking switched off in the child (the cursor wrapper's hooks patched) and
   as shipped. Instruction counts do not move with the load of a shared machine, unlike
   time. Each figure is (count after N operations - count after 0) / N, with a fixed hash
   seed and the garbage collector off during the N operations.

    python bench/bench_session_state.py [--quick] [-n N]

``--quick`` (the smoke test) runs the children without valgrind: it proves they work and
counts nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import timeit
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import bench_server, configure_django, database, print_machine  # noqa: E402

ORM_GET = (
    'SELECT "ledger_account"."id", "ledger_account"."name", "ledger_account"."balance" '
    'FROM "ledger_account" WHERE "ledger_account"."id" = %s LIMIT 21'
)
ENGINES = {"stock": "django.db.backends.postgresql", "untracked": "aurora_backend", "tracked": "aurora_backend"}


def time_effects(scale: float = 1.0) -> None:
    from aurora_backend.connection import session_state

    def best(stmt: Any, number: int = 200000) -> float:
        number = max(100, int(number * scale))
        return min(timeit.repeat(stmt, number=number, repeat=7)) / number * 1e9

    # Django builds a new string for every query, so its hash is computed every time: so here.
    head, tail = ORM_GET[:40], ORM_GET[40:]
    counter = iter(range(10**9))
    build = best(lambda: head + tail)
    seen = best(lambda: session_state.effects(head + tail)) - build
    build_unique = best(lambda: head + str(next(counter)) + tail, 50000)
    unseen = best(lambda: session_state._effects(head + str(next(counter)) + tail), 50000) - build_unique
    set_sql = "SET search_path TO tenant_a"
    parsed = best(lambda: session_state._effects(set_sql), 20000) - best(lambda: None)
    print("\neffects(sql), ns per call (best of 7; building the text, %.0f ns, subtracted)" % build)
    print("  ORM text seen before (dict lookup)   %7.0f" % seen)
    print("  ORM text never seen (pre-filter)     %7.0f" % unseen)
    print("  SET parsed (once per distinct text)  %7.0f" % parsed)


def switch_off() -> None:
    """No session-state tracking in this process: the cursor wrapper as it was before it
    (issue 17), i.e. its _execute without the tracking lines and Django's close/__iter__."""
    from django.db import Error as DjangoDatabaseError

    from aurora_backend.connection import statements
    from aurora_backend.drivers import OPEN, status_of

    def _execute(self: Any, sql: Any, params: Any, *ignored: Any) -> Any:
        db = self.db
        clock = db.aurora_runtime.clock
        db._aurora_last_used = clock()
        idle_before = status_of(self.cursor.connection) not in OPEN
        try:
            return self._aurora_next_execute(sql, params, *ignored)
        except DjangoDatabaseError as exc:
            if not self._prepare_rerun(exc, sql, idle_before, many=False):
                raise
        finally:
            db._aurora_last_used = clock()
        return self._aurora_next_execute(sql, params, *ignored)

    statements.RetryingCursorMixin._execute = _execute  # type: ignore[method-assign]
    for klass in statements._cursor_classes.values():  # each class's own execute/_execute (statements.py)
        for name in ("execute", "_execute"):
            if name in vars(klass):
                delattr(klass, name)
    del statements.RetryingCursorMixin.close
    del statements.RetryingCursorMixin.__iter__


def child() -> None:
    """Run N operations of one workload on one engine (under valgrind, from the parent)."""
    from aurora_backend.testing import ServerAddress

    variant, workload, n = os.environ["SS_VARIANT"], os.environ["SS_WORKLOAD"], int(os.environ["SS_N"])
    srv = ServerAddress.from_dsn(os.environ["SS_DSN"])
    configure_django({"bench": database(srv, ENGINES[variant], aurora={} if variant != "stock" else None)}, migrate=())
    if variant == "untracked":
        switch_off()
    from bench_overhead import orm_ops

    op = orm_ops("bench")[workload]
    for _ in range(20):  # warm: connection, caches
        op()
    gc.collect()
    gc.disable()  # a collection falls on some runs and not others: it would be noise
    for _ in range(n):
        op()


def instructions(dsn: str, variant: str, workload: str, n: int, valgrind: bool = True) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0", SS_DSN=dsn, SS_VARIANT=variant, SS_WORKLOAD=workload, SS_N=str(n))
    command = [sys.executable, os.path.abspath(__file__), "--child"]
    if valgrind:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + command
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    match = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if done.returncode or (valgrind and match is None):
        raise SystemExit("child failed:\n" + done.stderr[-3000:])
    return int(match.group(1)) if match else 0


def count_instructions(n: int, workloads: list[str], valgrind: bool) -> dict[str, dict[str, float]]:
    with bench_server() as srv:
        configure_django({"aurora": database(srv, "aurora_backend", aurora={})}, migrate=("aurora",))
        from bench_overhead import ACCOUNTS
        from ledger.models import Account

        print_machine("aurora")
        Account.objects.using("aurora").bulk_create([Account(name="a%d" % i, balance=1000) for i in range(ACCOUNTS)])
        from django.db import connections

        connections.close_all()
        per_op: dict[str, dict[str, float]] = {}
        for workload in workloads:
            for variant in ENGINES:
                base = instructions(srv.dsn, variant, workload, 0, valgrind)
                total = instructions(srv.dsn, variant, workload, n, valgrind)
                per_op.setdefault(workload, {})[variant] = (total - base) / n
    return per_op


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting for the smoke test")
    parser.add_argument("-n", type=int, default=None, help="operations per count (default 300)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child()
    time_effects(0.02 if args.quick else 1.0)
    valgrind = not args.quick and shutil.which("valgrind") is not None
    n = args.n or (3 if args.quick else 300)
    per_op = count_instructions(n, ["get"] if args.quick else ["get", "list100", "insert"], valgrind)
    if not valgrind:
        print(
            "\nthe children ran without valgrind (%s): no instruction counts"
            % ("--quick" if args.quick else "valgrind not found: apt-get install valgrind")
        )
        return None
    print("\nclient instructions per operation (callgrind; (N=%d ops - 0 ops) / N)" % n)
    print("%-9s %12s %12s %12s %12s %11s" % ("workload", "stock", "untracked", "tracked", "tracked-un", "% of stock"))
    for workload, by in per_op.items():
        cost = by["tracked"] - by["untracked"]
        print(
            "%-9s %12.0f %12.0f %12.0f %12.0f %10.2f%%"
            % (workload, by["stock"], by["untracked"], by["tracked"], cost, 100.0 * cost / by["stock"])
        )
    print("command: python bench/bench_session_state.py%s" % (" --quick" if args.quick else ""))
    return None


if __name__ == "__main__":
    main()
