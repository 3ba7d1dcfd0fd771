"""Normal traffic passes through unchanged; thousands of connections leave nothing behind;
the command line process is driven through its control endpoint."""

from __future__ import annotations

import gc
import io
import os
import threading
import tracemalloc

import pytest

from aurora_backend import drivers
from aurora_backend.simulator import SimulatorProcess, schedule
from aurora_backend.simulator import protocol as p
from aurora_backend.simulator.wire_client import WireClient
from tests.test_simulator import (  # noqa: F401  fixtures and helpers
    assert_closed_unexpectedly,
    connect,
    sim,
    srv,
    wait_until,
)


def copy_in(cur, sql, text):
    """COPY ... FROM STDIN with either driver's API (psycopg 3: cursor.copy())."""
    if hasattr(cur, "copy"):
        with cur.copy(sql) as copy:
            copy.write(text)
    else:
        cur.copy_expert(sql, io.StringIO(text))


def copy_out(cur, sql):
    if hasattr(cur, "copy"):
        with cur.copy(sql) as copy:
            return b"".join(bytes(chunk) for chunk in copy).decode()
    out = io.StringIO()
    cur.copy_expert(sql, out)
    return out.getvalue()


def test_queries_transactions_copy_and_large_results(srv, sim):
    conn = connect(srv, sim.address)  # default sslmode=prefer: the simulator answers 'N'
    cur = conn.cursor()
    cur.execute("CREATE TEMP TABLE t (id int, body text)")
    cur.execute("INSERT INTO t VALUES (1, 'a')")
    conn.rollback()
    cur.execute("CREATE TEMP TABLE t (id int, body text)")
    conn.commit()
    copy_in(cur, "COPY t FROM STDIN", "".join("%d\trow %d\n" % (i, i) for i in range(5000)))
    conn.commit()
    assert copy_out(cur, "COPY t TO STDOUT").count("\n") == 5000
    cur.execute("SELECT repeat('x', 1048576) FROM generate_series(1, 10)")  # 10 MB
    rows = cur.fetchall()
    assert len(rows) == 10 and all(r[0] == "x" * 1048576 for r in rows)
    named = conn.cursor("server_side")
    named.itersize = 100
    named.execute("SELECT id FROM t ORDER BY id")
    assert sum(1 for _ in named) == 5000
    named.close()
    conn.commit()
    with pytest.raises(drivers.OperationalError, match="does not support SSL"):
        connect(srv, sim.address, sslmode="require")
    conn.close()


def test_cancel_is_forwarded(srv, sim):
    """In process through a raw CancelRequest: the driver's cancel (psycopg2's conn.cancel()) holds the GIL while
    libpq waits for the server to close, so it would deadlock an in-process simulator (see
    the out-of-process test below for conn.cancel())."""
    conn = connect(srv, sim.address)
    key = next(iter(sim._sessions)).framer.backend_key
    assert key is not None and int.from_bytes(key[:4], "big") == drivers.backend_pid(conn)

    def cancel():
        with WireClient(sim.address) as client:
            client.send(p.build_request(p.CANCEL_REQUEST, key))
            client.read_to_eof()

    timer = threading.Timer(0.3, cancel)
    timer.start()
    with pytest.raises(drivers.errors.QueryCanceled):
        conn.cursor().execute("SELECT pg_sleep(20)")
    timer.join()
    conn.rollback()
    assert sim.counters["cancels"] == 1


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def churn(srv, sim, rounds: int, batch: int) -> None:
    """Open `batch` raw startups at a time (each reaches the upstream), then drop them all."""
    for i in range(rounds):
        clients = [WireClient(sim.address) for _ in range(batch)]
        for client in clients:
            client.ssl_request()
            client.send_startup(srv.user, srv.dbname)
        for client in clients:
            client.read_message()  # the server's authentication request: the path is complete
        if i % 2:
            sim.drop_all(silent=i % 4 == 1)
        for client in clients:
            client.close()
        sim.wait_for_connections(0, 10)


def test_thousands_of_connections_leak_nothing(srv, sim):
    churn(srv, sim, 2, 50)  # warm up
    gc.collect()
    tracemalloc.start()
    before = (fd_count(), sim.task_count(), tracemalloc.get_traced_memory()[0])
    churn(srv, sim, 40, 50)  # 2000 connections
    gc.collect()
    wait_until(lambda: sim.task_count() <= before[1], 5)
    after = (fd_count(), sim.task_count(), tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    print(
        "\nleak check over 2000 connections: fds %d -> %d, tasks %d -> %d, traced memory "
        "%.1f KiB -> %.1f KiB" % (before[0], after[0], before[1], after[1], before[2] / 1024, after[2] / 1024)
    )
    assert sim.counters["accepted"] >= 2100
    assert after[0] <= before[0] + 2
    assert after[1] <= before[1]
    assert after[2] - before[2] < 512 * 1024


def test_auto_pause_schedule(srv, sim):
    schedule.start(sim, schedule.auto_pause, 0.1, 0.3)
    wait_until(lambda: sim.counters["pauses"] == 1)
    conn = connect(srv, sim.address, connect_timeout=10)  # held ~0.3 s, then resumed
    assert sim.counters["held"] == 1 and sim.counters["resumes"] == 1
    conn.close()


def test_process_driven_by_control_endpoint(srv):
    with SimulatorProcess(upstream=(srv.host, srv.port)) as proc:
        conn = connect(srv, proc.address)
        assert proc.command("scale")["result"] == 1
        with pytest.raises(drivers.OperationalError) as info:
            conn.cursor().execute("SELECT 1")
        assert_closed_unexpectedly(info.value, conn, p.SCALE_EVENT[1])
        proc.command("scale_point 1")
        with pytest.raises(drivers.OperationalError, match="past serverless scale point"):
            connect(srv, proc.address)
        status = proc.status()
        assert status["counters"]["scale_events"] == 1
        assert status["counters"]["scale_points"] == 1
        with pytest.raises(RuntimeError, match="unknown command 'explode'"):
            proc.command("explode")
        conn = connect(srv, proc.address)
        timer = threading.Timer(0.3, drivers.cancel, [conn])  # the driver's own cancel, out of process
        timer.start()
        with pytest.raises(drivers.errors.QueryCanceled):
            conn.cursor().execute("SELECT pg_sleep(20)")
        timer.join()
        conn.close()
        pid = proc.pid
    assert pid is not None and not os.path.exists("/proc/%d/cmdline" % pid) or _is_zombie_free(pid)


def _is_zombie_free(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return True
