"""Django's pool (OPTIONS["pool"]) under aurora_backend: real faults across a pool of
several connections, lifetimes, idle close, and bad settings.

Runs under AURORA_TEST_DRIVER=psycopg and pool (psycopg 3 with psycopg_pool); under
psycopg2 only the "pool needs psycopg 3" error applies.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from aurora_backend import drivers, stats
from aurora_backend.runtime import Runtime
from tests.test_reconnect import admin, terminate  # noqa: F401  fixture
from tests.unit.test_pool import _pooled, needs_psycopg3

pytestmark = pytest.mark.django_db(transaction=True)


class Resolver:
    """Records every lookup; answers the current address (switchable, as DNS after failover)."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.address = address
        self.calls: list = []

    def __call__(self, host: str, port: int) -> list:
        self.calls.append((host, port))
        return [self.address]


def _backends(admin, wrapper) -> list:  # noqa: F811
    app = wrapper.settings_dict["OPTIONS"]["application_name"]
    with admin.cursor() as cur:
        cur.execute("SELECT pid, host(client_addr) FROM pg_stat_activity WHERE application_name = %s", [app])
        return cur.fetchall()


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not reached in %.1f s" % timeout
        time.sleep(0.01)


def _query(wrapper):
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    wrapper.close()  # back to the pool
    return pid


# ----- bad settings ------------------------------------------------------------------------


@needs_psycopg3
def test_pool_settings_changed_after_init_take_effect_as_in_django():
    """Django reads OPTIONS["pool"] when ``pool`` is used (Django's own tests rely on it)."""
    wrapper = _pooled(alias="late", pool=False)
    assert wrapper.pool is None
    wrapper.settings_dict["OPTIONS"]["pool"] = {"min_size": 0, "max_size": 2}
    try:
        assert wrapper.pool is not None and wrapper.pool.max_size == 2
        assert wrapper.pool.min_size == 0
        assert _query(wrapper) > 0  # a checkout from that pool
    finally:
        wrapper.close_pool()
    wrapper.settings_dict["CONN_MAX_AGE"] = 10
    with pytest.raises(ImproperlyConfigured, match="Pooling doesn't support persistent connections"):
        _ = wrapper.pool


# ----- every physical connection through our connect ------------------------------------------


@needs_psycopg3
def test_each_pool_connection_resolves_afresh_and_follows_dns(admin):  # noqa: F811
    """No frozen kwargs: every physical connection the pool opens picks its address anew."""
    resolver = Resolver("127.0.0.1")
    wrapper = _pooled(pool={"min_size": 2, "max_size": 2}, aurora={"resolver": resolver}, HOST="db.aurora.test")
    pool = wrapper.pool
    pool.open(wait=True, timeout=10)
    assert len(resolver.calls) == 2 and resolver.calls[0][0] == "db.aurora.test"
    assert _addresses(pool) == ["127.0.0.1", "127.0.0.1"]
    resolver.address = "127.0.0.2"  # a failover moved the name
    for pid, _ in _backends(admin, wrapper):
        admin.cursor().execute("SELECT pg_terminate_backend(%s)", [pid])
    _query(wrapper)  # dead ones dropped at checkout; replacements go to the new address
    _wait(lambda: wrapper.pool.get_stats()["pool_available"] == 2 and _addresses(pool) == ["127.0.0.2"] * 2)
    assert len(resolver.calls) >= 4


def _addresses(pool) -> list:
    """The server address of each connection in the pool (all checked out at once)."""
    held = [pool.getconn(timeout=10) for _ in range(pool.max_size)]
    try:
        return sorted(conn.execute("SELECT host(inet_server_addr())").fetchone()[0] for conn in held)
    finally:
        for conn in held:
            pool.putconn(conn)


@needs_psycopg3
def test_pool_connections_are_retried_across_a_scale_point(simulator):
    from tests.settings import SIM_PORT

    before = stats.snapshot("pooled-sim")["connect_retries"]
    simulator.scale_point_on_connect(2)
    wrapper = _pooled(
        alias="pooled-sim",
        pool={"max_size": 2},
        HOST="127.0.0.1",
        PORT=str(SIM_PORT),
        NAME=connection.settings_dict["NAME"],
    )
    assert _query(wrapper) > 0
    assert stats.snapshot("pooled-sim")["connect_retries"] == before + 2


# ----- lifetimes and idle close -----------------------------------------------------------------


@needs_psycopg3
def test_lifetimes_are_drawn_from_max_age_and_spread():
    wrapper = _pooled(pool={"min_size": 4, "max_size": 4}, aurora={"max_age": [100, 200]})
    wrapper.aurora_runtime = Runtime(random=random.Random(20))
    pool = wrapper.pool
    assert pool.aurora_random is wrapper.aurora_runtime.random  # the pool draws from the wrapper's
    pool.aurora_random = random.Random(20)  # and only the lifetimes from this one
    pool.open(wait=True, timeout=10)
    assert pool.max_lifetime == 200
    with pool.connection() as a, pool.connection() as b, pool.connection() as c, pool.connection() as d:
        lifetimes = sorted(conn._expire_at - conn._created_at for conn in (a, b, c, d))
    seeded = random.Random(20)
    expected = sorted(seeded.uniform(100, 200) for _ in range(4))
    assert lifetimes == pytest.approx(expected, abs=1e-6)  # each drawn uniformly from max_age
    assert expected[-1] - expected[0] > 10  # (seed 20: not psycopg_pool's -5% jitter around 200)
    own = _pooled(alias="own-lifetime", pool={"max_lifetime": 50})
    assert own.pool.max_lifetime == 50 and own.pool.aurora_max_age is None  # the user's wins


@needs_psycopg3
def test_an_idle_pool_closes_every_connection_so_serverless_can_pause(admin):  # noqa: F811
    wrapper = _pooled(pool={"max_size": 3}, aurora={"idle_timeout": 0.3})
    pool = wrapper.pool
    assert (pool.min_size, pool.max_idle) == (0, 0.3)
    pool.open(wait=True)
    held = [pool.getconn(timeout=10) for _ in range(3)]
    for conn in held:
        pool.putconn(conn)
    assert len(_backends(admin, wrapper)) == 3
    # psycopg_pool alone would close one per max_idle window; all three go in one or two.
    _wait(lambda: pool.get_stats()["pool_size"] == 0, timeout=3)
    _wait(lambda: _backends(admin, wrapper) == [], timeout=3)


# ----- real faults across the pool ------------------------------------------------------------


@needs_psycopg3
def test_terminated_pool_connections_are_dropped_together_not_handed_out(admin):  # noqa: F811
    wrapper = _pooled(pool={"min_size": 3, "max_size": 3})
    pool = wrapper.pool
    pool.open(wait=True, timeout=10)
    old = {pid for pid, _ in _backends(admin, wrapper)}
    assert len(old) == 3
    for pid in old:
        admin.cursor().execute("SELECT pg_terminate_backend(%s)", [pid])
    _wait(lambda: not ({pid for pid, _ in _backends(admin, wrapper)} & old))
    started = time.monotonic()
    pid = _query(wrapper)  # no error; not a dead connection, and no check backoff
    assert time.monotonic() - started < 1.0 and pid not in old
    # The first dead one found made the pool check the others: all replaced, none dead.
    _wait(lambda: len(_backends(admin, wrapper)) == 3 and not ({p for p, _ in _backends(admin, wrapper)} & old))
    for _ in range(3):
        assert _query(wrapper) not in old


@needs_psycopg3
def test_a_disconnect_mid_statement_drops_the_pools_other_dead_connection(admin):  # noqa: F811
    wrapper = _pooled(pool={"min_size": 2, "max_size": 2})
    pool = wrapper.pool
    pool.open(wait=True, timeout=10)
    wrapper.ensure_connection()
    mine = drivers.backend_pid(wrapper.connection)
    other = next(pid for pid, _ in _backends(admin, wrapper) if pid != mine)
    terminate(admin, other)  # the idle one in the pool
    stats_before = pool.get_stats()
    terminate(admin, mine)
    with wrapper.cursor() as cursor:  # a read: re-run on a new connection, never on `other`
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] not in (mine, other)
    wrapper.close()

    def dropped() -> int:  # by the background check (lost) or at checkout / on return (bad)
        now = pool.get_stats()
        return sum(now.get(k, 0) - stats_before.get(k, 0) for k in ("connections_lost", "returns_bad"))

    _wait(lambda: dropped() >= 2)
    for _ in range(3):
        assert _query(wrapper) not in (mine, other)


@needs_psycopg3
def test_a_server_restart_empties_the_pool_and_requests_succeed_once_it_is_back():
    from tests.pg import cluster

    pg = cluster()
    if pg is None:
        pytest.skip("needs the throwaway cluster (AURORA_TEST_DSN names an external server)")
    wrapper = _pooled(alias="restart", pool={"min_size": 2, "max_size": 2})
    wrapper.pool.open(wait=True, timeout=10)
    retries = stats.snapshot("restart")["connect_retries"]
    pg.stop("fast")
    restarter = threading.Timer(1.0, pg.start)
    restarter.start()
    try:
        assert _query(wrapper) > 0  # waits for the server, through the pool's connect retry
    finally:
        restarter.join()
    assert stats.snapshot("restart")["connect_retries"] > retries
    for _ in range(3):
        assert _query(wrapper) > 0
    assert wrapper.pool.get_stats()["pool_size"] <= 2


# ----- system checks ------------------------------------------------------------------------------
