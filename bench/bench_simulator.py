"""Forwarding overhead of the Aurora simulator: `SELECT 1` round trips, direct vs through it.

    python bench/bench_simulator.py [--iterations N] [--quick]

Uses AURORA_TEST_DSN if set, else a throwaway PostgresCluster. Iterations alternate
between the two connections so drift hits both alike; medians are compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

from aurora_backend import drivers  # noqa: E402
from aurora_backend.simulator import AuroraSimulator, SimulatorProcess  # noqa: E402
from aurora_backend.testing import PostgresCluster, ServerAddress  # noqa: E402


def round_trips(cursors, iterations: int) -> list[list[float]]:
    samples: list[list[float]] = [[] for _ in cursors]
    for _ in range(iterations):
        for i, cur in enumerate(cursors):
            start = time.perf_counter()
            cur.execute("SELECT 1")
            cur.fetchone()
            samples[i].append(time.perf_counter() - start)
    return samples


def run(srv: ServerAddress, iterations: int) -> None:
    """Direct vs the in-process simulator (it shares the GIL with this client) vs the
    simulator in its own process (``python -m aurora_backend.simulator``, as in CI)."""
    with AuroraSimulator(upstream=(srv.host, srv.port)) as sim, SimulatorProcess(upstream=(srv.host, srv.port)) as proc:
        targets = {"direct": (srv.host, srv.port), "in-process": sim.address, "subprocess": proc.address}
        conns = {
            name: drivers.connect(host=host, port=port, user=srv.user, password=srv.password, dbname=srv.dbname)
            for name, (host, port) in targets.items()
        }
        for conn in conns.values():
            conn.autocommit = True
        cursors = [conn.cursor() for conn in conns.values()]
        info = machine()
        print("machine: nproc=%(nproc)s cpu=%(cpu)s" % info)
        print(
            "versions: Python %s, %s (libpq %s), PostgreSQL %s"
            % (info["python"], info["driver"], info["libpq"], drivers.server_version(conns["direct"]))
        )
        print("command: python %s" % " ".join(sys.argv))
        round_trips(cursors, min(200, iterations))  # warm up
        medians = dict(zip(conns, (statistics.median(x) * 1e6 for x in round_trips(cursors, iterations)), strict=False))
        direct = medians["direct"]
        print("SELECT 1 round trip, %d iterations each, alternating (median):" % iterations)
        for name, value in medians.items():
            print("  %-11s %7.1f us   overhead %+6.1f us   ratio %.2fx" % (name, value, value - direct, value / direct))
        for conn in conns.values():
            conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="200 iterations: a smoke test")
    args = parser.parse_args()
    iterations = 200 if args.quick else args.iterations
    dsn = os.environ.get("AURORA_TEST_DSN")
    if dsn:
        run(ServerAddress.from_dsn(dsn), iterations)
        return 0
    cluster = PostgresCluster().start()
    try:
        run(cluster.address, iterations)
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
