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

import psycopg2  # noqa: E402

from aurora_backend.simulator import AuroraSimulator  # noqa: E402
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
    with AuroraSimulator(upstream=(srv.host, srv.port)) as sim:
        direct = psycopg2.connect(srv.dsn)
        proxied = psycopg2.connect(host=sim.address[0], port=sim.address[1], user=srv.user,
                                   password=srv.password, dbname=srv.dbname)
        for conn in (direct, proxied):
            conn.autocommit = True
        cursors = [direct.cursor(), proxied.cursor()]
        round_trips(cursors, min(200, iterations))  # warm up
        d, s = (statistics.median(x) * 1e6 for x in round_trips(cursors, iterations))
        print("SELECT 1 round trip, %d iterations each (median): direct %.1f us, "
              "through simulator %.1f us, overhead %.1f us, ratio %.2fx"
              % (iterations, d, s, s - d, s / d))
        direct.close()
        proxied.close()


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
