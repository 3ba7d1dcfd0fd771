"""Jittered expiry with fresh DNS, idle close, the reaper, and never inside atomic().

The throwaway cluster listens on 127.0.0.1, 127.0.0.2 and 127.0.0.3, standing for the
instances behind a reader endpoint; a resolver the test switches stands for its DNS.
"""

from __future__ import annotations

import random
import time

import pytest
from django.db import connection, transaction

from aurora_backend import drivers, signals, stats
from aurora_backend.base import DatabaseWrapper
from aurora_backend.connection.lifetime import reaper
from aurora_backend.runtime import Runtime
from aurora_backend.serverless import close_connections, lambda_handler
from tests.clocks import FakeClock
from tests.pg import cluster, server

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINT = "reader.cluster-test.invalid"


class SwitchableDNS:
    """A resolver whose answer the test changes, like a reader endpoint's DNS record."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.lookups = 0

    def __call__(self, host: str, port: int) -> list[str]:
        assert host == ENDPOINT
        self.lookups += 1
        return list(self.addresses)


def make_wrapper(dns, clock, seed=0, **aurora):
    if cluster() is None:
        pytest.skip("needs the throwaway cluster listening on 127.0.0.1-3")
    settings_dict = {**connection.settings_dict, "HOST": ENDPOINT}
    settings_dict["OPTIONS"] = {"aurora": {"resolver": dns, "ping_after": None, **aurora}}
    wrapper = DatabaseWrapper(settings_dict, alias="reader")
    wrapper.aurora_runtime = Runtime(clock=clock, random=random.Random(seed))
    return wrapper


def server_address(wrapper) -> str:
    with wrapper.cursor() as cur:
        cur.execute("SELECT host(inet_server_addr())")
        return cur.fetchone()[0]


def test_every_long_lived_connection_moves_to_the_new_address_within_one_max_age():
    dns, clock = SwitchableDNS("127.0.0.2"), FakeClock()
    workers = [make_wrapper(dns, clock, seed=i, max_age=[60, 120], idle_timeout=None) for i in range(6)]
    try:
        assert [server_address(w) for w in workers] == ["127.0.0.2"] * 6
        assert [w.aurora_address for w in workers] == ["127.0.0.2"] * 6
        dns.addresses = ["127.0.0.3"]  # a new reader; DNS now sends everyone there
        clock.now += 59  # before the shortest lifetime: nobody moves
        assert [server_address(w) for w in workers] == ["127.0.0.2"] * 6
        moved_at = []
        for step in range(1, 62):  # one max-age window, one worker-loop iteration a second
            clock.now += 1
            for w in workers:
                before = w.aurora_address
                assert server_address(w) in ("127.0.0.2", "127.0.0.3")  # never an error
                if before != w.aurora_address:
                    moved_at.append(step)
        assert [server_address(w) for w in workers] == ["127.0.0.3"] * 6
        assert len(moved_at) == 6
        assert len(set(moved_at)) > 1  # jitter: they did not all move in the same second
    finally:
        for w in workers:
            w.close()


def test_connections_spread_over_all_addresses_of_the_name():
    dns, clock = SwitchableDNS("127.0.0.1", "127.0.0.2", "127.0.0.3"), FakeClock()
    wrapper = make_wrapper(dns, clock, seed=3, max_age=None, idle_timeout=None)
    seen = []
    try:
        for _ in range(30):
            seen.append(server_address(wrapper))
            wrapper.close()
    finally:
        wrapper.close()
    counts = {a: seen.count(a) for a in ("127.0.0.1", "127.0.0.2", "127.0.0.3")}
    assert all(count >= 5 for count in counts.values()), counts
    assert dns.lookups == 30  # resolved again for every connection


def test_expiry_and_idle_close_never_happen_inside_atomic():
    dns, clock = SwitchableDNS("127.0.0.2"), FakeClock()
    wrapper = make_wrapper(dns, clock, max_age=10, idle_timeout=5)
    try:
        wrapper.ensure_connection()
        pid = drivers.backend_pid(wrapper.connection)
        from django.db import connections

        connections["reader"] = wrapper
        try:
            with transaction.atomic(using="reader"):
                with wrapper.cursor() as cur:
                    cur.execute("SELECT 1")
                clock.now += 100  # past the max age and the idle timeout
                reaper.reap()
                assert not wrapper.connection.closed
                with wrapper.cursor() as cur:
                    cur.execute("SELECT pg_backend_pid()")
                    assert cur.fetchone()[0] == pid
            assert wrapper.connection is not None and not wrapper.connection.closed
            with wrapper.cursor() as cur:  # first use outside the transaction rotates it
                cur.execute("SELECT pg_backend_pid()")
                assert cur.fetchone()[0] != pid
        finally:
            del connections["reader"]
    finally:
        wrapper.close()


def test_idle_connection_is_closed_by_the_reaper_and_reopened_on_use():
    dns, clock = SwitchableDNS("127.0.0.2"), FakeClock()
    wrapper = make_wrapper(dns, clock, max_age=None, idle_timeout=30)
    closed = []
    signals.reconnected.connect(lambda sender, reason, **kw: closed.append(reason), weak=False, dispatch_uid="t-idle")
    try:
        pid = (wrapper.ensure_connection(), drivers.backend_pid(wrapper.connection))[1]
        clock.now += 29
        assert reaper.reap() == 0
        clock.now += 1
        before = stats.snapshot("reader")["idle_closed"]
        assert reaper.reap() >= 1
        assert wrapper.connection.closed
        assert stats.snapshot("reader")["idle_closed"] == before + 1
        assert_backend_gone(pid)
        with wrapper.cursor() as cur:
            cur.execute("SELECT 1")
        assert closed == ["idle"]
    finally:
        signals.reconnected.disconnect(dispatch_uid="t-idle")
        wrapper.close()


def test_the_reaper_thread_closes_an_idle_connection_with_nobody_calling_it():
    """Real time: a quiet worker holds no connection after idle_timeout."""
    dns = SwitchableDNS("127.0.0.2")
    wrapper = make_wrapper(dns, time.monotonic, max_age=None, idle_timeout=0.3)
    try:
        wrapper.ensure_connection()
        assert_backend_gone(drivers.backend_pid(wrapper.connection), timeout=5)
    finally:
        wrapper.close()


def assert_backend_gone(pid, timeout=5.0):
    srv = server()
    admin = drivers.connect(host=srv.host, port=srv.port, user=srv.user, password=srv.password, dbname="postgres")
    admin.autocommit = True  # pg_stat_activity is a snapshot per transaction
    try:
        deadline = time.monotonic() + timeout
        with admin.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
                if cur.fetchone()[0] == 0:
                    return
                time.sleep(0.02)
        raise AssertionError("backend %s still connected after %.1fs" % (pid, timeout))
    finally:
        admin.close()


def test_lambda_handler_closes_connections_at_the_end_of_an_invocation():
    @lambda_handler
    def handler(event, context):
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            return cur.fetchone()[0]

    pid = handler({}, None)
    assert connection.connection is None
    assert_backend_gone(pid)
    with close_connections():
        connection.ensure_connection()
    assert connection.connection is None


def test_reaper_leaves_a_slowly_consumed_server_side_cursor_alone():
    from ledger.models import Account

    Account.objects.bulk_create([Account(name="it%d" % i, balance=i) for i in range(6)])
    dns, clock = SwitchableDNS("127.0.0.2"), FakeClock()
    wrapper = make_wrapper(dns, clock, max_age=None, idle_timeout=30)
    from django.db import connections

    connections["reader"] = wrapper
    try:
        names = []
        for account in Account.objects.using("reader").order_by("name").iterator(chunk_size=2):
            names.append(account.name)
            clock.now += 20  # slow work per row: 40 s between two fetches of a chunk
            reaper.reap()
        assert names == ["it%d" % i for i in range(6)]
    finally:
        del connections["reader"]
        wrapper.close()


def test_expiry_waits_for_an_open_iterator():
    """A connection past its max age is not closed under a QuerySet.iterator() being read."""
    from ledger.models import Account

    Account.objects.bulk_create([Account(name="x%d" % i, balance=i) for i in range(6)])
    dns, clock = SwitchableDNS("127.0.0.2"), FakeClock()
    wrapper = make_wrapper(dns, clock, max_age=60, idle_timeout=None)
    from django.db import connections

    connections["reader"] = wrapper
    try:
        names = []
        for account in Account.objects.using("reader").order_by("name").iterator(chunk_size=2):
            names.append(account.name)
            clock.now += 100  # past the max age
            Account.objects.using("reader").filter(pk=account.pk).update(balance=0)  # another cursor
        assert names == ["x%d" % i for i in range(6)]
        pid = drivers.backend_pid(wrapper.connection)
        with wrapper.cursor() as cursor:  # the iterator is done: now it rotates
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != pid
    finally:
        del connections["reader"]
        wrapper.close()


def test_the_reaper_leaves_a_cursor_between_execute_and_fetch_alone():
    dns, clock = SwitchableDNS("127.0.0.2"), FakeClock()
    wrapper = make_wrapper(dns, clock, max_age=None, idle_timeout=30)
    try:
        with wrapper.cursor() as cursor:
            clock.now += 100  # the cursor was taken long ago, the statement runs now
            cursor.execute("SELECT 42")
            clock.now += 29
            assert reaper.reap() == 0
            assert cursor.fetchone() == (42,)
    finally:
        wrapper.close()
