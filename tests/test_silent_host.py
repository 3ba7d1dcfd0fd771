"""A host that goes silent (no FIN, no RST: a network namespace whose veth link is set down).

Real faults only: aurora_backend/testing/silent_host.py puts an endpoint in its own
network namespace; ``silence()`` drops every packet to it. Timings are scaled down
(``silent_host_timeout`` 2 s) except in the test that checks the default bound.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError, connections, transaction

from aurora_backend import drivers, signals, stats
from aurora_backend.connection.connect import ClusterUnavailable
from aurora_backend.connection.keepalive import detection_params
from aurora_backend.options import AuroraOptions
from aurora_backend.testing import aurora_instance as ai
from aurora_backend.testing.drivers import pool_enabled
from aurora_backend.testing.fixtures import register_alias, unregister_alias
from aurora_backend.testing.silent_host import SilentServer, unavailable
from aurora_backend.topology import router as topology
from tests.pg import server

pytestmark = pytest.mark.timeout(120)

#: Stock Django (psycopg2) with AWS's keepalives 1/1/5: its error, measured in issue 26.
STOCK_WITH_KEEPALIVES = 7.2
SCALED = {
    "silent_host_timeout": 2,
    "connect_timeout": 2,
    "connect_deadline": 10,
    "backoff_base": 0.02,
    "backoff_max": 0.2,
}


@pytest.fixture(scope="module")
def netns() -> None:
    reason = unavailable()
    if reason:
        pytest.skip("no silent host here: %s" % reason)


# -- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1.5, -3, True, "6", float("inf")])
def test_silent_host_timeout_is_validated(value: Any) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        AuroraOptions.from_settings("x", {"aurora": {"silent_host_timeout": value}})
    message = str(info.value)
    assert "DATABASES['x']['OPTIONS']['aurora']['silent_host_timeout']" in message
    assert ">= 2" in message and "None" in message


def test_default_detection_is_aws_keepalives_and_tcp_user_timeout() -> None:
    assert AuroraOptions().silent_host_timeout == 6.0
    params = detection_params(6.0)
    assert {k: params[k] for k in ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count")} == {
        "keepalives": 1,
        "keepalives_idle": 1,
        "keepalives_interval": 1,
        "keepalives_count": 5,
    }
    assert params["tcp_user_timeout"] == 6000  # libpq >= 12 (both drivers here ship 17)


def test_the_driver_gets_them_and_the_users_own_win(django_db_blocker: Any) -> None:
    srv = server()
    base = {
        "ENGINE": "aurora_backend",
        "NAME": "postgres",
        "USER": srv.user,
        "PASSWORD": srv.password,
        "HOST": srv.host,
        "PORT": str(srv.port),
    }
    register_alias("keepalive_default", dict(base, OPTIONS={}))
    register_alias("keepalive_own", dict(base, OPTIONS={"keepalives_idle": 7, "tcp_user_timeout": 0}))
    register_alias("keepalive_off", dict(base, OPTIONS={"aurora": {"silent_host_timeout": None}}))
    try:
        with django_db_blocker.unblock():
            default = _libpq_params("keepalive_default")
            own = _libpq_params("keepalive_own")
            off = _libpq_params("keepalive_off")
    finally:
        for alias in ("keepalive_default", "keepalive_own", "keepalive_off"):
            unregister_alias(alias)
    assert (default["keepalives_idle"], default["keepalives_count"], default["tcp_user_timeout"]) == ("1", "5", "6000")
    assert (own["keepalives_idle"], own["keepalives_count"], own["tcp_user_timeout"]) == ("7", "5", "0")
    assert not off.get("keepalives_idle") and off.get("tcp_user_timeout") in (None, "", "0")


def _libpq_params(alias: str) -> dict[str, str]:
    connection = connections[alias]
    connection.ensure_connection()
    params = drivers.connection_parameters(connection.connection)
    connection.close()
    return params


# -- one silent host, alone -------------------------------------------------------------------


@pytest.fixture
def silent(netns: None, django_db_blocker: Any) -> Iterator[Any]:
    """``make(**aurora)``: a SilentServer in front of the test server, and an alias on it."""
    made: list[SilentServer] = []
    srv = server()

    def make(**aurora: Any) -> SilentServer:
        endpoint = SilentServer((srv.host, srv.port)).start()
        made.append(endpoint)
        options: dict[str, Any] = {"aurora": dict(aurora)}
        if pool_enabled():
            options["pool"] = {"max_size": 1}
        register_alias(
            "silent",
            {
                "ENGINE": "aurora_backend",
                "NAME": "postgres",
                "USER": srv.user,
                "PASSWORD": srv.password,
                "HOST": endpoint.address,
                "PORT": str(endpoint.port),
                "OPTIONS": options,
            },
        )
        return endpoint

    with django_db_blocker.unblock():
        yield make
        for endpoint in made:
            endpoint.restore()
        unregister_alias("silent")
        from tests.conftest import _close_pools

        _close_pools(keep=("default", "sim"))
        for endpoint in made:
            endpoint.close()
        _terminate("silent-host-test")


def _admin() -> Any:
    srv = server()
    return ai.connect(srv.host, srv.port, timeout=5, user=srv.user, password=srv.password)


def _terminate(marker: str) -> None:
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s "
                "AND pid <> pg_backend_pid()",
                ["%" + marker + "%"],
            )
    finally:
        conn.close()


def _silence_when_running(endpoint: Any, marker: str, admin: Any) -> dict[str, float]:
    """A thread that silences ``endpoint`` once a query containing ``marker`` runs on the server."""
    when: dict[str, float] = {}

    def watch() -> None:
        deadline = time.monotonic() + 10
        with admin.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                    "AND pid <> pg_backend_pid()",
                    ["%" + marker + "%"],
                )
                if cur.fetchone()[0]:
                    endpoint.silence()
                    when["silenced"] = time.monotonic()
                    return
                time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    when["thread"] = thread  # type: ignore[assignment]
    return when


def test_silent_host_mid_query_in_atomic_raises_the_original_error_at_once(silent: Any) -> None:
    endpoint = silent()  # default settings: silent_host_timeout 6 s, connect_deadline 60 s
    connection = connections["silent"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    before = stats.snapshot("silent")
    admin = _admin()
    try:
        when = _silence_when_running(endpoint, "silent-host-test-atomic", admin)
        with pytest.raises(OperationalError) as info:
            with transaction.atomic(using="silent"):
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_sleep(60) /* silent-host-test-atomic */")
        failed = time.monotonic()
        when["thread"].join(5)  # type: ignore[attr-defined]
    finally:
        admin.close()
    waited = failed - when["silenced"]
    # Found by the kernel (keepalives / tcp_user_timeout), not after connect_deadline (60 s):
    assert 3.0 <= waited <= STOCK_WITH_KEEPALIVES, waited
    assert not isinstance(info.value.__cause__, ClusterUnavailable)
    assert "timed out" in str(info.value)  # the driver's own error: "... Connection timed out"
    after = stats.snapshot("silent")
    assert after["connect_retries"] == before["connect_retries"]  # no reconnect on the way out
    assert connection.connection is None and not connection.in_atomic_block


def _wait_kernel_gave_up(raw: Any, timeout: float) -> None:
    """Until the kernel declared the idle connection's peer dead (POLLERR/POLLHUP)."""
    poller = select.poll()
    poller.register(raw.fileno(), select.POLLIN)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(100)):
            return
    raise AssertionError("the kernel did not give up on the silent connection in %.0f s" % timeout)


def test_an_idle_connection_to_a_silent_host_is_never_handed_to_the_app(silent: Any) -> None:
    endpoint = silent(**SCALED)
    connection = connections["silent"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        old_pid = cursor.fetchone()[0]
    raw = connection.connection
    if pool_enabled():
        connection.close()  # back to the pool, idle there
    reasons: list[str] = []

    def on_reconnect(sender: Any, alias: str, reason: str, **kwargs: Any) -> None:
        if alias == "silent":
            reasons.append(reason)

    endpoint.silence()
    _wait_kernel_gave_up(raw, 10)  # keepalives: ~2 s with silent_host_timeout=2
    endpoint.restore()  # the host is back: only a new connection reaches it
    signals.reconnected.connect(on_reconnect, dispatch_uid="silent-host-test")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            new_pid = cursor.fetchone()[0]
    finally:
        signals.reconnected.disconnect(dispatch_uid="silent-host-test")
    assert new_pid != old_pid
    if not pool_enabled():
        assert reasons in (["disconnect"], ["stale"])


# -- the local Aurora cluster with silent hosts -----------------------------------------------


@pytest.fixture(scope="module")
def silent_cluster(netns: None, django_db_blocker: Any) -> Iterator[Any]:
    from aurora_backend.testing.aurora_cluster import AuroraCluster
    from aurora_backend.testing.aurora_dns import TestClock

    try:
        cluster = AuroraCluster(readers=2, ttl=0.5, dns_delay=0.5, clock=TestClock(), silent_hosts=True).start()
    except RuntimeError as err:
        pytest.skip(str(err))
    aurora = dict(SCALED)
    register_alias("quiet", cluster.database_settings(**aurora))
    register_alias("quiet_ro", cluster.database_settings(cluster.reader_endpoint, **aurora))
    try:
        yield cluster
    finally:
        unregister_alias("quiet")
        unregister_alias("quiet_ro")
        cluster.stop()


@pytest.fixture
def cluster(silent_cluster: Any, django_db_blocker: Any) -> Iterator[Any]:
    topology.reset()
    with django_db_blocker.unblock():
        for alias in ("quiet", "quiet_ro"):
            connections[alias].close()
        yield silent_cluster
        for alias in ("quiet", "quiet_ro"):
            connections[alias].close()
    clock = silent_cluster.clock
    clock.release()
    clock.advance(silent_cluster.dns_delay + silent_cluster.dns.ttl)
    silent_cluster.dns.flush()
    for instance in list(silent_cluster.instances.values()):
        if instance.silent_host is not None and instance.silent_host.silent:
            silent_cluster.unsilence(instance.id)
        if instance.role == ai.DOWN:
            silent_cluster.restore(instance.id)


def where(alias: str = "quiet") -> tuple:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT aurora_db_instance_identifier(), pg_is_in_recovery()")
        return tuple(cursor.fetchone())


def _connect_seconds(alias: str) -> float:
    connections[alias].close()
    began = time.monotonic()
    connections[alias].ensure_connection()
    return time.monotonic() - began


def test_a_hung_reader_never_slows_the_writers_connects(cluster: Any) -> None:
    assert where() == (cluster.writer.id, False)  # learns the topology
    hung = cluster.readers[0]
    cluster.silence(hung.id)
    connections["quiet"]._aurora_router.suspect("test: a scale event on the writer")
    times = [_connect_seconds("quiet") for _ in range(5)]
    assert where() == (cluster.writer.id, False)
    # Before: every routed connect waited for the hung reader's 2 s probe timeout.
    assert max(times) < 1.0, times
    assert hung.id in topology.topology_for(connections["quiet"]._aurora_router.template, cluster.port).hung


def test_a_new_connect_to_a_silent_writer_times_out_then_topology_finds_the_new_one(cluster: Any) -> None:
    old = cluster.writer
    assert where() == (old.id, False)
    connections["quiet"].close()
    cluster.clock.freeze()  # DNS keeps naming the old writer
    cluster.silence(old.id)
    new = cluster.failover(old_writer=ai.DOWN)["new_writer"]
    began = time.monotonic()
    assert where() == (new, False)
    assert time.monotonic() - began < SCALED["connect_timeout"] + 1.5


def test_a_read_in_flight_on_a_silent_writer_is_re_run_on_the_new_writer(cluster: Any) -> None:
    old = cluster.writer
    assert where() == (old.id, False)
    cluster.clock.freeze()
    admin = old.admin()
    result: dict[str, Any] = {}

    def read() -> None:
        try:
            with connections["quiet"].cursor() as cursor:
                cursor.execute("SELECT aurora_db_instance_identifier(), pg_sleep(1) /* silent-read */")
                result["row"] = cursor.fetchone()
        except Exception as exc:  # pragma: no cover - the failure the test reports
            result["error"] = exc
        finally:
            connections["quiet"].close()

    reader = threading.Thread(target=read)
    # Django's connections are per thread: the alias in the thread connects on its own.
    reader.start()
    try:
        when = _silence_when_running(_Instance(cluster, old.id), "silent-read", admin)
        when["thread"].join(10)  # type: ignore[attr-defined]
        assert "silenced" in when
        new = cluster.failover(old_writer=ai.DOWN)["new_writer"]
        reader.join(30)
    finally:
        admin.close()
    assert "error" not in result, result.get("error")
    assert result["row"][0] == new


class _Instance:
    """What _silence_when_running needs of an endpoint: silence()."""

    def __init__(self, cluster: Any, instance_id: str) -> None:
        self.cluster, self.instance_id = cluster, instance_id

    def silence(self) -> None:
        self.cluster.silence(self.instance_id)
