"""Aurora faults through the simulator: the exact bytes on the wire and what the driver raises.

Measured with psycopg2-binary 2.9.13 and psycopg 3.3 / libpq 17: a FATAL then close on an
established connection surfaces as a plain OperationalError "server closed the connection
unexpectedly", no SQLSTATE, the connection closed (psycopg2 ``closed == 2``, psycopg 3
``closed``/``broken``; the server's text is lost); FATALs during
startup keep their text ("connection to server at ... failed: FATAL:  ...").
"""

from __future__ import annotations

import struct
import threading
import time

import pytest

from aurora_backend import drivers, errors
from aurora_backend.simulator import AuroraSimulator, SimulatorError
from aurora_backend.simulator import protocol as p
from aurora_backend.simulator.wire_client import WireClient
from tests.pg import server

CLOSED_TEXT = "server closed the connection unexpectedly"


@pytest.fixture(scope="module")
def srv():
    return server()


@pytest.fixture
def sim(srv):
    with AuroraSimulator(upstream=(srv.host, srv.port)) as simulator:
        yield simulator


def connect(srv, address, **kwargs):
    return drivers.connect(
        host=address[0], port=address[1], user=srv.user, password=srv.password, dbname=srv.dbname, **kwargs
    )


def wire(srv, sim) -> WireClient:
    client = WireClient(sim.address)
    assert client.ssl_request() == b"N"
    client.startup(srv.user, srv.password, srv.dbname)
    return client


def in_thread(fn):
    """Run fn in a thread; returns (thread, box) where box gets 'result' or 'error'."""
    box: dict = {}

    def run():
        try:
            box["result"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in %.1f s" % timeout
        time.sleep(0.005)


def assert_closed_unexpectedly(exc, conn, fatal=None):
    """What each driver makes of a FATAL then close on an established connection.

    psycopg2 (libpq 17) loses the server's text: a plain OperationalError "server closed
    the connection unexpectedly" without SQLSTATE. psycopg 3 reads the FATAL before the EOF:
    the server's own message (``fatal``) with its SQLSTATE 57P01 (AdminShutdown).
    """
    assert isinstance(exc, drivers.OperationalError)
    if drivers.NAME == "psycopg2":
        assert type(exc) is drivers.OperationalError
        assert CLOSED_TEXT in str(exc)
        assert errors.sqlstate(exc) is None
    else:
        assert isinstance(exc, drivers.errors.AdminShutdown) and errors.sqlstate(exc) == "57P01"
        assert fatal is None or fatal in str(exc)
    assert drivers.is_closed(conn)
    assert errors.is_disconnect(exc, conn)


# -- the messages themselves ------------------------------------------------------------


def test_error_response_bytes_are_postgresqls():
    body = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to serverless scale event timeout\0\0"
    assert p.fatal(p.SCALE_EVENT) == b"E" + struct.pack("!I", len(body) + 4) + body
    assert p.error_response("57P03", "the database system is starting up") == (
        b"E\x00\x00\x00\x3eSFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
    )


def test_framer_finds_every_boundary_whatever_the_chunking():
    stream = b"".join(b"D" + struct.pack("!I", 4 + n) + b"x" * n for n in (0, 1, 3, 7, 300))
    ends = set()
    pos = 0
    while pos < len(stream):
        pos += 1 + struct.unpack_from("!I", stream, pos + 1)[0]
        ends.add(pos)
    for size in range(1, 12):
        framer = p.Framer()
        for start in range(0, len(stream), size):
            chunk = stream[start : start + size]
            cut = framer.first_boundary(chunk)
            expected = min((e - start for e in ends if start < e <= start + len(chunk)), default=-1)
            assert cut == expected or (cut == 0 and framer.at_boundary)
            framer.feed(chunk)
            assert framer.at_boundary == (start + len(chunk) in ends)


# -- scale event --------------------------------------------------------------------


def test_scale_event_on_idle_connection_bytes(srv, sim):
    with wire(srv, sim) as client:
        assert sim.scale_event() == 1
        assert client.read_to_eof() == p.fatal(p.SCALE_EVENT)
    assert sim.counters["scale_events"] == 1


def test_scale_event_mid_result_lands_on_a_message_boundary(srv, sim):
    with wire(srv, sim) as client:
        client.send_query("SELECT repeat('x', 1000) FROM generate_series(1, 20000)")
        assert client.read_message()[0] == b"T"  # the result is streaming now
        assert sim.scale_event() == 1
        messages = p.parse_messages(client.read_to_eof())  # raises if a message were cut
    assert messages[-1] == (b"E", p.fatal(p.SCALE_EVENT)[5:])
    assert {kind for kind, _ in messages[:-1]} == {b"D"}
    assert len(messages) < 20000


def test_scale_event_idle_and_mid_query(srv, sim):
    idle = connect(srv, sim.address)
    busy = connect(srv, sim.address)
    pid = drivers.backend_pid(busy)
    thread, box = in_thread(lambda: busy.cursor().execute("SELECT pg_sleep(30)"))
    watcher = drivers.connect(srv.dsn)
    watcher.autocommit = True
    cur = watcher.cursor()
    try:
        wait_until(
            lambda: (
                cur.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]) or cur.fetchone() == ("active",)
            )
        )
        assert sim.scale_event() == 2
        thread.join(10)
        assert_closed_unexpectedly(box["error"], busy, p.SCALE_EVENT[1])
        with pytest.raises(drivers.OperationalError) as info:
            idle.cursor().execute("SELECT 1")
        assert_closed_unexpectedly(info.value, idle, p.SCALE_EVENT[1])
        # the killed backend's query is cancelled too, so the backend goes away
        wait_until(
            lambda: cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]) or cur.fetchone() == (0,)
        )
    finally:
        watcher.close()
    sim.wait_for_connections(0)


# -- scale point at startup -----------------------------------------------------------


def test_scale_point_on_connect_bytes_and_driver(srv, sim):
    sim.scale_point_on_connect(count=2)
    with WireClient(sim.address) as client:
        client.send_startup(srv.user, srv.dbname)
        assert client.read_to_eof() == p.fatal(p.SCALE_POINT)
    with pytest.raises(drivers.OperationalError) as info:
        connect(srv, sim.address)
    assert type(info.value) is drivers.OperationalError and errors.sqlstate(info.value) is None
    assert (
        "FATAL:  terminating connection because backend initialization completed past serverless scale point"
    ) in str(info.value)
    assert errors.is_connect_retryable(info.value)
    connect(srv, sim.address).close()  # the third attempt gets through
    assert sim.counters["scale_points"] == 2


# -- pause / resume -------------------------------------------------------------------


def test_pause_holds_startup_until_resume(srv, sim):
    sim.pause()
    thread, box = in_thread(lambda: connect(srv, sim.address, connect_timeout=20))
    wait_until(lambda: sim.held_count() == 1)
    time.sleep(0.2)  # held, not failed: still waiting after a while
    assert thread.is_alive()
    assert sim.resume() == 1
    thread.join(10)
    conn = box["result"]
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    with pytest.raises(SimulatorError, match="pause\\(force=True\\)"):
        sim.pause()
    assert sim.pause(force=True) == 1
    with pytest.raises(drivers.OperationalError):
        conn.cursor().execute("SELECT 1")
    sim.resume()


def test_resume_fails_some_held_attempts_with_57p03(srv, sim):
    sim.pause()
    raw = WireClient(sim.address)
    wait_until(lambda: sim.held_count() == 1)
    attempts = [in_thread(lambda: connect(srv, sim.address, connect_timeout=20)) for _ in range(2)]
    wait_until(lambda: sim.held_count() == 3)
    assert sim.resume(fail=1) == 3  # the raw client arrived first
    raw.send_startup(srv.user, srv.dbname)
    assert raw.read_to_eof() == p.fatal(p.STARTING_UP)
    raw.close()
    for thread, _ in attempts:
        thread.join(10)
    assert all("result" in box for _, box in attempts)
    assert sim.counters["resume_failures"] == 1


def test_pause_hang_hits_connect_timeout_and_resume_fail_text(srv, sim):
    sim.pause()
    started = time.monotonic()
    with pytest.raises(drivers.OperationalError, match="timeout expired"):
        connect(srv, sim.address, connect_timeout=1)
    assert time.monotonic() - started >= 0.9
    thread, box = in_thread(lambda: connect(srv, sim.address, connect_timeout=20))
    wait_until(lambda: sim.held_count() == 2)  # the timed-out attempt is still held, as on Aurora
    sim.resume(fail=5)
    thread.join(10)
    exc = box["error"]
    assert type(exc) is drivers.OperationalError and errors.sqlstate(exc) is None
    assert "FATAL:  the database system is starting up" in str(exc)
    assert errors.is_connect_retryable(exc)


def test_pause_for_resumes_by_itself(srv, sim):
    sim.pause_for(0.3)
    started = time.monotonic()
    connect(srv, sim.address, connect_timeout=10).close()
    assert time.monotonic() - started >= 0.25
