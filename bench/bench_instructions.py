"""Client instructions per statement: aurora_backend against Django's stock backend.

Wall-clock overhead of a few microseconds drowns in noise on a shared 2-core machine;
instruction counts do not. A child Python process runs each workload N times per ENGINE
under ``valgrind --tool=callgrind``; before each phase it calls ``os.getppid()``, and
callgrind's ``--dump-before=getppid`` cuts the profile there, so each dump holds exactly
one phase (the PostgreSQL server is another process: not counted). Per statement:
instructions of the phase / N. Workloads:

- ``cursor+execute``: ``with connection.cursor() as c: c.execute("SELECT 1"); c.fetchone()``
  (the pre-use check runs per cursor);
- ``execute``: one cursor, ``c.execute("SELECT 1"); c.fetchone()`` N times (raw statements);
- ``orm_get``: ``Account.objects.get(pk=...)``.

    python bench/bench_instructions.py                       # the driver Django picks
    AURORA_TEST_DRIVER=psycopg2 python bench/bench_instructions.py
    AURORA_TEST_DRIVER=psycopg python bench/bench_instructions.py
    python bench/bench_instructions.py --all-drivers --quick # psycopg2, psycopg, pool in turn
    python bench/bench_instructions.py --all-drivers --observability

``--observability`` adds phases ``aurora+obs``: the same "aurora" connection after
``aurora_backend.observability.otel.instrument()`` (an SDK MeterProvider, every instrument,
``db.client.operation.duration`` per statement) and ``prometheus.register()`` (a private
registry). Before those, the child checks that neither aurora_backend.observability nor
opentelemetry nor prometheus_client was imported: the plain phases are the cost without them.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

WORKLOADS = ("cursor+execute", "execute", "orm_get")
ENGINES = ("stock", "aurora")


def child(n: int) -> None:
    """Runs under callgrind: warm up, then one marked phase per (workload, engine)."""
    from common import POOL, bench_server, configure_django, database

    with bench_server() as srv:
        pool = {"min_size": 0, "max_size": 1} if POOL else None
        configure_django(
            {
                "stock": database(srv, "django.db.backends.postgresql", conn_max_age=None, pool=pool),
                "aurora": database(srv, "aurora_backend", conn_max_age=None, aurora={}, pool=pool),
            },
            migrate=("stock",),
        )
        from django.db import connections
        from ledger.models import Account

        pk = Account.objects.using("stock").create(name="x", balance=1).pk
        ops = {}
        for engine in ENGINES:
            conn = connections[engine]

            def cursor_execute(conn=conn) -> None:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT 1")
                    cursor.fetchone()

            held = conn.cursor()

            def execute(cursor=held) -> None:
                cursor.execute("SELECT 1")
                cursor.fetchone()

            def orm_get(engine=engine) -> None:
                Account.objects.using(engine).get(pk=pk)

            ops[engine] = {"cursor+execute": cursor_execute, "execute": execute, "orm_get": orm_get}
        for engine in ENGINES:  # warm up: imports, caches, the connection itself
            for op in ops[engine].values():
                for _ in range(30):
                    op()
        phases = []
        for workload in WORKLOADS:
            for engine in ENGINES:
                op = ops[engine][workload]
                phases.append("%s %s" % (workload, engine))
                os.getppid()  # marker: callgrind dumps before it
                for _ in range(n):
                    op()
        if os.environ.get("AURORA_BENCH_OBSERVABILITY") == "1":
            phases.extend(_observed_phases(ops["aurora"], n))
        os.getppid()
        print("PHASES " + "|".join(phases))
        connections.close_all()


def _observed_phases(ops: dict[str, Callable[[], None]], n: int) -> list[str]:
    """The "aurora" workloads again: with the counters only (OpenTelemetry without the
    per-statement histogram, and Prometheus), then with everything."""
    os.getppid()  # marker: the set-up below is a phase of its own, not reported
    phases = ["setup observability"]
    loaded = sorted(
        m
        for m in sys.modules
        if m.split(".")[0] in ("opentelemetry", "prometheus_client") or m.startswith("aurora_backend.observability")
    )
    print("IMPORTED " + (",".join(loaded) or "none"))
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry

    from aurora_backend.observability import otel, prometheus

    prometheus.register(CollectorRegistry())
    for engine, duration in (("aurora+counters", False), ("aurora+obs", True)):
        otel.uninstrument()
        otel.instrument(
            meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]), operation_duration=duration
        )
        for op in ops.values():
            for _ in range(30):
                op()
        for workload in WORKLOADS:
            phases.append("%s %s" % (workload, engine))
            os.getppid()
            for _ in range(n):
                ops[workload]()
        os.getppid()
        phases.append("setup observability")
    return phases[:-1]


def measure(n: int, driver: str | None) -> dict[str, dict[str, float]]:
    """Run the child under callgrind; instructions per statement per workload and engine."""
    env = dict(os.environ)
    if driver:
        env["AURORA_TEST_DRIVER"] = driver
    with tempfile.TemporaryDirectory(prefix="aurora-callgrind-") as tmp:
        out = os.path.join(tmp, "cg.out")
        command = [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=" + out,
            "--dump-before=getppid",
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "-n",
            str(n),
        ]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit("callgrind run failed:\n%s\n%s" % (proc.stdout[-2000:], proc.stderr[-3000:]))
        phases = next(line[7:] for line in proc.stdout.splitlines() if line.startswith("PHASES ")).split("|")
        imported = [line[9:] for line in proc.stdout.splitlines() if line.startswith("IMPORTED ")]
        if imported:
            print("  observability modules imported before enabling: %s" % imported[0])
        dumps = sorted(glob.glob(out + ".*"), key=lambda p: int(p.rsplit(".", 1)[1]))
        totals = [_total(path) for path in dumps]
    # dump 1: start-up; dump k+1: phase k (from its marker to the next one).
    result: dict[str, dict[str, float]] = {}
    for index, label in enumerate(phases):
        workload, engine = label.split()
        result.setdefault(workload, {})[engine] = totals[index + 1] / n
    return result


def _total(path: str) -> int:
    with open(path) as fh:
        for line in fh:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit("no totals in %s" % path)


def report(driver_label: str, result: dict[str, dict[str, float]]) -> None:
    for workload in WORKLOADS:
        stock, aurora = result[workload]["stock"], result[workload]["aurora"]
        print(
            "  %-10s %-15s stock %9.0f  aurora %9.0f  instr/statement   ratio %.4f  (%+.2f%%)"
            % (driver_label, workload, stock, aurora, aurora / stock, (aurora / stock - 1) * 100)
        )
        for engine, label in (
            ("aurora+counters", "+ otel counters, prometheus"),
            ("aurora+obs", "+ otel with operation.duration"),
        ):
            observed = result[workload].get(engine)
            if observed is not None:
                print(
                    "  %-10s %-15s %-32s %9.0f  instr/statement   ratio to stock %.4f  (%+.0f vs aurora)"
                    % (driver_label, workload, label, observed, observed / stock, observed - aurora)
                )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-n", type=int, default=None, help="statements per phase (default 400; --quick 100)")
    parser.add_argument("--quick", action="store_true", help="fewer statements (smoke test)")
    parser.add_argument("--all-drivers", action="store_true", help="psycopg2, psycopg and pool in turn")
    parser.add_argument(
        "--observability",
        action="store_true",
        help="also measure the aurora ENGINE with OpenTelemetry and Prometheus enabled",
    )
    args = parser.parse_args(argv)
    n = args.n or (100 if args.quick else 400)
    if args.child:
        child(n)
        return
    if args.observability:
        os.environ["AURORA_BENCH_OBSERVABILITY"] = "1"
    from common import DRIVER, machine

    info = machine()
    print("machine: nproc=%(nproc)s cpu=%(cpu)s" % info)
    print("versions: Python %(python)s, Django %(django)s, %(driver)s (libpq %(libpq)s)" % info)
    print("command: python %s" % " ".join(sys.argv))
    print("client instructions per statement (valgrind --tool=callgrind, %d statements per phase):" % n)
    for driver in ("psycopg2", "psycopg", "pool") if args.all_drivers else (None,):
        report(driver or DRIVER, measure(n, driver))


if __name__ == "__main__":
    main()
