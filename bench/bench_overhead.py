"""Overhead of aurora_backend against Django's stock backend and the raw driver (the floor).

Three ORM workloads on a warm connection: a get by primary key, a 100-row list and an
insert in ``atomic()``. Each (workload, engine) runs N operations per round, engines
alternating (aurora, stock, raw, then stock, aurora, raw, ...) over several rounds so
that drift of the machine hits both alike. Reports the median per operation in µs and
the ratio aurora/stock (target: <= 1.03 on every workload). ``retry_atomic`` is measured
against ``atomic`` on the insert workload when ``aurora_backend.transactions.retry`` exists.

    python bench/bench_overhead.py            # full run (~1 min on 2 cores)
    python bench/bench_overhead.py --quick    # smoke setting (seconds)
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import bench_server, configure_django, database, median, percentile, print_machine  # noqa: E402

ACCOUNTS = 200
#: Untimed operations on each new connection before a block is timed.
WARMUP = 5
Op = Callable[[], Any]


def orm_ops(alias: str) -> dict[str, Op]:
    """The ORM workloads on one alias."""
    from django.db import transaction
    from ledger.models import Account, Transfer

    accounts = Account.objects.using(alias)
    first = accounts.order_by("pk").values_list("pk", flat=True)[:2]
    source, destination = list(first)
    state = {"i": 0}

    def get() -> Any:
        state["i"] += 1
        return accounts.get(pk=source + state["i"] % ACCOUNTS)

    def list100() -> Any:
        return list(accounts.order_by("pk")[:100])

    def insert() -> Any:
        with transaction.atomic(using=alias):
            return Transfer.objects.using(alias).create(
                request_id=uuid.uuid4(), source_id=source, destination_id=destination, amount=1
            )

    return {"get": get, "list100": list100, "insert": insert}


def retry_ops(alias: str) -> dict[str, Op]:
    """The insert workload in ``retry_atomic`` (empty when it does not exist yet)."""
    try:
        from aurora_backend.transactions.retry import retry_atomic
    except ImportError:
        return {}
    from ledger.models import Account, Transfer

    source, destination = list(Account.objects.using(alias).order_by("pk").values_list("pk", flat=True)[:2])

    @retry_atomic(using=alias)
    def insert() -> Any:
        return Transfer.objects.using(alias).create(
            request_id=uuid.uuid4(), source_id=source, destination_id=destination, amount=1
        )

    return {"insert": insert}


def raw_ops(dsn: str) -> dict[str, Op]:
    """The same SQL as the ORM sends, on a bare driver connection: the floor."""
    from aurora_backend import drivers

    conn = drivers.connect(dsn)
    conn.autocommit = True
    pin_backend(drivers.backend_pid(conn))
    cur = conn.cursor()
    cur.execute("SELECT id FROM ledger_account ORDER BY id LIMIT 2")
    source, destination = (row[0] for row in cur.fetchall())
    state = {"i": 0}

    def get() -> Any:
        state["i"] += 1
        cur.execute(
            'SELECT "ledger_account"."id", "ledger_account"."name", "ledger_account"."balance" '
            'FROM "ledger_account" WHERE "ledger_account"."id" = %s LIMIT 21',
            (source + state["i"] % ACCOUNTS,),
        )
        return cur.fetchall()

    def list100() -> Any:
        cur.execute(
            'SELECT "ledger_account"."id", "ledger_account"."name", "ledger_account"."balance" '
            'FROM "ledger_account" ORDER BY "ledger_account"."id" ASC LIMIT 100'
        )
        return cur.fetchall()

    def insert() -> Any:
        conn.autocommit = False
        cur.execute(
            'INSERT INTO "ledger_transfer" ("request_id", "source_id", "destination_id", "amount", '
            '"created_at") VALUES (%s, %s, %s, %s, now()) RETURNING "ledger_transfer"."id"',
            (str(uuid.uuid4()), source, destination, 1),
        )
        cur.fetchone()
        conn.commit()
        conn.autocommit = True

    return {"get": get, "list100": list100, "insert": insert}


def _reopener(alias: str) -> Op:
    """Close the alias's connection and open a new one (a new server backend)."""
    from django.db import connections

    from aurora_backend import drivers

    def reopen() -> None:
        connection = connections[alias]
        connection.close()
        connection.ensure_connection()
        pin_backend(drivers.backend_pid(connection.connection))

    return reopen


def pin(pid: int, cpu: int) -> bool:
    """Pin a process to one CPU when the machine has two or more and we may (Linux)."""
    try:
        if (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(pid, {cpu})
            return True
    except (AttributeError, OSError):
        pass
    return False


def pin_backend(pid: int) -> None:
    """Every server backend on CPU 1, the client on CPU 0: the same placement for every
    connection of every engine, so that placement is not what the figures compare."""
    pin(pid, 1)


def time_ops(op: Op, n: int) -> tuple[list[float], list[float]]:
    """Run ``op`` ``n`` times; the wall time and this thread's CPU time of each call in µs.

    CPU time is what the client library spends itself: unlike wall time it is not
    inflated by the server or by other processes on the machine.
    """
    wall, cpu = [], []
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for _ in range(n):
        start, cpu_start = clock(), cpu_clock()
        op()
        cpu.append((cpu_clock() - cpu_start) / 1000.0)
        wall.append((clock() - start) / 1000.0)
    return wall, cpu


def run(
    engines: dict[str, dict[str, Op]], n: int, rounds: int, block: int, reopen: dict[str, Op] | None = None
) -> dict[str, Any]:
    """Per (workload, engine): every op's µs; engines interleaved in blocks of ``block`` ops.

    Within a round the engines take turns every ``block`` operations (ABC, CBA, ABC, ...),
    so that noise from other processes on the machine hits every engine alike; each
    block's median gives one paired aurora/stock ratio. ``reopen[name]``, when given, opens
    a new connection before each block (untimed): on 2 cores, where the scheduler places a
    connection's server backend changes its round trip by up to 2x for its whole life, so
    comparing two long-lived connections compares two placements, not two ENGINEs.
    """
    reopen = reopen or {}
    samples: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}
    blocks: dict[str, dict[str, list[float]]] = {}
    names = list(engines)
    for round_no in range(rounds + 1):  # round 0 warms up and is not recorded
        for workload in ("get", "list100", "insert"):
            present = [name for name in names if workload in engines[name]]
            for block_no in range(max(1, n // block)):
                order = present if (block_no + round_no) % 2 == 0 else present[::-1]
                for name in order:
                    if name in reopen:
                        reopen[name]()
                        for _ in range(WARMUP):  # a new backend loads its catalog caches first
                            engines[name][workload]()
                    gc.disable()
                    try:
                        times, cpu_times = time_ops(engines[name][workload], block)
                    finally:
                        gc.enable()
                    if round_no:
                        samples.setdefault(workload, {}).setdefault(name, []).extend(times)
                        cpu.setdefault(workload, {}).setdefault(name, []).extend(cpu_times)
                        blocks.setdefault(workload, {}).setdefault(name, []).append(median(times))
            gc.collect()
    return {"samples": samples, "cpu": cpu, "blocks": blocks}


def report(result: dict[str, Any], n: int, rounds: int, block: int) -> dict[str, float]:
    """Print the table; return the aurora/stock ratio per workload."""
    samples, blocks = result["samples"], result["blocks"]
    print("\nmedian µs per operation (%d rounds x %d ops per engine, interleaved in blocks of %d)" % (rounds, n, block))
    print(
        "%-9s %9s %9s %9s %13s %20s %12s %22s"
        % (
            "workload",
            "raw",
            "stock",
            "aurora",
            "aurora/stock",
            "paired (p25-p75)",
            "aurora-stock",
            "client CPU a/s (µs)",
        )
    )
    ratios: dict[str, float] = {}
    for workload, by_engine in samples.items():
        med = {name: median(values) for name, values in by_engine.items()}
        ratio = med["aurora"] / med["stock"]
        ratios[workload] = ratio
        paired = [a / s for a, s in zip(blocks[workload]["aurora"], blocks[workload]["stock"], strict=False)]
        cpu = {name: median(values) for name, values in result["cpu"][workload].items()}
        print(
            "%-9s %9.1f %9.1f %9.1f %13.3f %20s %10.1fus %22s"
            % (
                workload,
                med.get("raw", 0.0),
                med["stock"],
                med["aurora"],
                ratio,
                "%.3f (%.3f-%.3f)" % (median(paired), percentile(paired, 0.25), percentile(paired, 0.75)),
                med["aurora"] - med["stock"],
                "%.3f (%.1f/%.1f)" % (cpu["aurora"] / cpu["stock"], cpu["aurora"], cpu["stock"]),
            )
        )
        retry = med.get("aurora+retry_atomic")
        if retry is not None:
            print(
                "%-9s %9s %9s %9.1f %13.3f   retry_atomic vs stock atomic; vs aurora atomic %.3f"
                % ("  retry", "", "", retry, retry / med["stock"], retry / med["aurora"])
            )
    worst = max(ratios.values())
    print(
        "\ntarget aurora/stock <= 1.03 on every workload: %s (worst %.3f)"
        % ("HOLDS" if worst <= 1.03 else "MISSED", worst)
    )
    print("load average at the end: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    return ratios


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting for the smoke test")
    parser.add_argument("-n", type=int, default=None, help="operations per engine per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5)")
    parser.add_argument("--block", type=int, default=None, help="ops per turn of an engine (default 20)")
    args = parser.parse_args(argv)
    n = args.n or (30 if args.quick else 2000)
    rounds = args.rounds or (2 if args.quick else 5)
    block = args.block or (10 if args.quick else 20)
    with bench_server() as srv:
        configure_django(
            {
                "aurora": database(srv, "aurora_backend", conn_max_age=None),
                "stock": database(srv, "django.db.backends.postgresql", conn_max_age=None),
            },
            migrate=("stock",),
        )
        from django.db import connections
        from ledger.models import Account

        Account.objects.using("stock").bulk_create([Account(name="acct-%d" % i, balance=1000) for i in range(ACCOUNTS)])
        print_machine("stock")
        pinned = pin(0, 0)
        print(
            "placement: client on CPU 0, server backends on CPU 1"
            if pinned
            else "placement: not pinned (one CPU, or sched_setaffinity refused)"
        )
        engines = {"aurora": orm_ops("aurora"), "stock": orm_ops("stock"), "raw": raw_ops(srv.dsn)}
        retry = retry_ops("aurora")
        if retry:
            engines["aurora+retry_atomic"] = retry
        else:
            print("aurora_backend.transactions.retry not importable: retry_atomic not measured")
        print("load average at the start: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
        reopen = {
            name: _reopener(alias)
            for name, alias in (("aurora", "aurora"), ("stock", "stock"), ("aurora+retry_atomic", "aurora"))
            if name in engines
        }
        result = run(engines, n, rounds, block, reopen)
        ratios = report(result, n, rounds, block)
        connections.close_all()
        return ratios


if __name__ == "__main__":
    main()
