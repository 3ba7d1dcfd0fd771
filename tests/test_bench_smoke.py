"""Each benchmark under bench/ still starts, runs on a tiny setting and prints its figures.

Benchmarks are not tests (CI does not time them); this only proves they work. Each
runs as a subprocess (they configure Django themselves) with ``--quick`` against the
test server (AURORA_TEST_DSN, exported by tests/pg.py), in a database of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.pg import server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: bench script -> lines its output must contain (the figures it exists to print).
EXPECTED = {
    "bench_overhead.py": ["median µs per operation", "get ", "list100 ", "insert ", "target aurora/stock"],
    "profile_overhead.py": ["get by pk, median µs", "no-precheck", "components, µs per call"],
    "bench_reader_spread.py": [
        "connections per reader over time",
        "connection opens per 0.5 s bucket",
        "aurora: ",
        "stock: ",
    ],
    "bench_recovery.py": ["scale event: next query's total time", "failover (window", "cold start (resume after"],
    "bench_storm.py": ["connection attempts per 100 ms", "aurora  attempts", "expo    attempts", "fixed   attempts"],
    "bench_routing.py": [
        "read share",
        "naive ",
        "window-15s ",
        "aurora ",
        "stale ",
        "added latency per read",
        "hot path",
    ],
    "bench_simulator.py": ["SELECT 1 round trip", "direct ", "in-process ", "subprocess "],
    "bench_session_state.py": ["effects(sql), ns per call", "ORM text seen before", "the children ran"],
    "bench_cluster.py": ["cluster start:", "failover timeline", "first successful write after the kill"],
    "bench_topology.py": [
        "first write acknowledged by the new writer",
        "dns      path: median",
        "topology path: median",
    ],
    "bench_failover_soak.py": [
        "failover  1 ",
        "failover  2 ",
        "driver | acked | committed | app errors",
        "lost COMMITs resolved by txid_status",
    ],
    "bench_bluegreen.py": ["Blue/Green: DNS TTL", "round 1 aurora", "round 1 stock", "outage median"],
    "bench_chaos.py": [
        "chaos run",
        "aurora+retry_atomic",
        "stock+atomic",
        "transfers requested",
        "unknown-fate writes",
        "ledger total after",
        "server connections left open",
    ],
}


def run_bench(script: str, timeout: float = 50) -> str:
    env = dict(os.environ, AURORA_TEST_DSN=server().dsn, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", script), "--quick"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )
    output = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, "%s --quick exited with %d:\n%s" % (script, proc.returncode, output[-3000:])
    return output


@pytest.mark.timeout(60)
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_bench_runs_quick(script: str) -> None:
    output = run_bench(script)
    missing = [line for line in EXPECTED[script] if line not in output]
    assert not missing, "%s printed no %r:\n%s" % (script, missing, output[-3000:])
    assert "machine: nproc=" in output and "PostgreSQL" in output


def test_bench_databases_are_dropped() -> None:
    """A benchmark leaves no database of its own behind on the shared server."""
    from aurora_backend import drivers

    run_bench("bench_overhead.py")
    with drivers.connect(server().dsn, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'aurora_bench_%%'")
        assert cur.fetchone()[0] == 0
    conn.close()


@pytest.mark.timeout(120)
def test_bench_silent_host_runs_quick() -> None:
    """Not in EXPECTED: it needs network namespaces (root, iproute2) and a longer timeout."""
    from aurora_backend.testing.silent_host import unavailable

    reason = unavailable()
    if reason:
        pytest.skip("no silent host here: %s" % reason)
    output = run_bench("bench_silent_host.py", timeout=110)
    for line in (
        "first transfer committed on the new writer",
        "app errors: reads",
        "ledger total",
        "threads of ours left",
    ):
        assert line in output, "bench_silent_host.py printed no %r:\n%s" % (line, output[-3000:])
