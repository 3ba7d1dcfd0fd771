"""Failover, refused, blackholed and dropped connections, several endpoints, read-only writes."""

from __future__ import annotations

import time

import pytest

from aurora_backend import drivers, errors
from aurora_backend.simulator import AuroraSimulator
from aurora_backend.simulator import protocol as p
from aurora_backend.simulator.wire_client import WireClient
from tests.test_simulator import (  # noqa: F401  fixtures and helpers
    assert_closed_unexpectedly,
    connect,
    sim,
    srv,
    wire,
)


def test_failover_starting_up_window_then_new_upstream(srv, sim):
    with AuroraSimulator(upstream=(srv.host, srv.port)) as new_writer:
        conn = connect(srv, sim.address)
        raw = wire(srv, sim)
        assert sim.failover(new_upstream=new_writer.address, window=0.5) == 2
        assert raw.read_to_eof() == p.fatal(p.ADMIN_SHUTDOWN)
        raw.close()
        with pytest.raises(drivers.OperationalError) as info:
            conn.cursor().execute("SELECT 1")
        assert_closed_unexpectedly(info.value, conn, p.ADMIN_SHUTDOWN[1])
        with pytest.raises(drivers.OperationalError, match="FATAL:  the database system is starting up"):
            connect(srv, sim.address)
        with WireClient(sim.address) as client:
            client.send_startup(srv.user, srv.dbname)
            assert client.read_to_eof() == p.fatal(p.STARTING_UP)
        sim.wait_failover(5)
        connect(srv, sim.address).close()
        assert new_writer.counters["startups"] == 1  # the new connection went to the new writer
        assert sim.upstream == new_writer.address
        sim.reset()
        assert sim.upstream == (srv.host, srv.port)


def test_failover_refuse_mode_and_refuse(srv, sim):
    sim.failover(window=0.3, mode="refuse")
    with pytest.raises(drivers.OperationalError, match="Connection refused") as info:
        connect(srv, sim.address)
    assert errors.is_connect_retryable(info.value)
    sim.wait_failover(5)
    connect(srv, sim.address).close()
    sim.refuse(True)
    with pytest.raises(drivers.OperationalError, match="Connection refused"):
        connect(srv, sim.address)
    sim.refuse(False)
    connect(srv, sim.address).close()  # same port again
    assert sim.counters["refused"] == 2


def test_blackhole_hits_connect_timeout(srv, sim):
    sim.blackhole(True)
    started = time.monotonic()
    with pytest.raises(drivers.OperationalError, match="timeout expired"):
        connect(srv, sim.address, connect_timeout=1)
    assert 0.9 <= time.monotonic() - started < 5
    sim.blackhole(False)
    connect(srv, sim.address).close()


def test_drop_silent_and_with_message(srv, sim):
    raw = wire(srv, sim)
    assert sim.drop(1, silent=True) == 1
    assert raw.read_to_eof() == b""
    raw.close()
    conn = connect(srv, sim.address)
    raw = wire(srv, sim)
    sim.wait_for_connections(2)
    assert sim.drop_all(silent=False) == 2
    assert raw.read_to_eof() == p.fatal(p.ADMIN_SHUTDOWN)
    raw.close()
    with pytest.raises(drivers.OperationalError) as info:
        conn.cursor().execute("SELECT 1")
    assert_closed_unexpectedly(info.value, conn, p.ADMIN_SHUTDOWN[1])
    assert sim.counters["dropped"] == 3
    sim.wait_for_connections(0)


def test_several_endpoints_count_their_connections(srv):
    listen = [("127.0.0.2", 0), ("127.0.0.3", 0)]
    with AuroraSimulator(upstream=(srv.host, srv.port), listen=listen) as sim:
        a, b = sim.addresses
        assert [h for h, _ in sim.addresses] == ["127.0.0.2", "127.0.0.3"]
        conns = [connect(srv, a), connect(srv, a), connect(srv, b)]
        assert sim.connection_counts() == {a: 2, b: 1}
        for conn in conns:
            conn.close()
        sim.wait_for_connections(0)
        assert sim.connection_counts() == {a: 0, b: 0}


def test_read_only_writes_fail_with_25006(srv, sim):
    conn = connect(srv, sim.address)
    cur = conn.cursor()
    cur.execute("CREATE TEMP TABLE t (x int)")
    conn.commit()
    sim.read_only(True)
    with pytest.raises(drivers.errors.ReadOnlySqlTransaction) as info:
        cur.execute("INSERT INTO t VALUES (1)")
    assert errors.sqlstate(info.value) == "25006"
    assert "cannot execute INSERT in a read-only transaction" in str(info.value)
    assert errors.classify(info.value, conn) == errors.ErrorKind.READ_ONLY
    conn.rollback()
    cur.execute("SELECT count(*) FROM t")
    assert cur.fetchone() == (0,)
    sim.read_only(False)
    cur.execute("INSERT INTO t VALUES (1)")
    conn.commit()
