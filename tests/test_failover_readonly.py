"""25006 after a failover, with a real hot standby as the demoted writer.

A primary listens on 127.0.0.2 and its streaming replica (pg_basebackup, a real
read-only server: pg_is_in_recovery() is true) on 127.0.0.3, same port. The cluster
endpoint's DNS is a resolver the test switches, as Aurora's does after a failover.
"""

from __future__ import annotations

import random

import pytest
from django.db import DatabaseError, connection, transaction

from aurora_backend import signals
from aurora_backend.base import DatabaseWrapper
from aurora_backend.runtime import Runtime
from aurora_backend.testing import PASSWORD, SUPERUSER, PostgresCluster

ENDPOINT = "writer.cluster-test.invalid"
PRIMARY, STANDBY = "127.0.0.2", "127.0.0.3"


@pytest.fixture(scope="module")
def pair():
    try:
        primary = PostgresCluster(settings={"listen_addresses": "127.0.0.1," + PRIMARY}).start()
    except RuntimeError as err:  # no local PostgreSQL binaries
        pytest.skip(str(err))
    try:
        standby = primary.replica(port=primary.port, settings={"listen_addresses": STANDBY}).start()
        try:
            yield primary
        finally:
            standby.destroy()
    finally:
        primary.destroy()


class DNS:
    def __init__(self, address: str) -> None:
        self.address = address

    def __call__(self, host: str, port: int) -> list[str]:
        return [self.address]


@pytest.fixture
def writer(pair, django_db_blocker):
    """An alias on the cluster endpoint, connected while DNS still names the old writer."""
    dns = DNS(STANDBY)
    settings_dict = {
        **connection.settings_dict,
        "NAME": "postgres",
        "HOST": ENDPOINT,
        "PORT": str(pair.port),
        "USER": SUPERUSER,
        "PASSWORD": PASSWORD,
        "OPTIONS": {"aurora": {"resolver": dns, "connect_deadline": 5, "connect_timeout": 2}},
    }
    wrapper = DatabaseWrapper(settings_dict, alias="writer")
    wrapper.aurora_runtime = Runtime(random=random.Random(1))
    reasons: list[str] = []

    def on_reconnect(sender, alias, reason, **kw):
        if alias == "writer":
            reasons.append(reason)

    signals.reconnected.connect(on_reconnect, dispatch_uid="failover-ro")
    with django_db_blocker.unblock():
        wrapper.ensure_connection()
        yield wrapper, dns, reasons
        wrapper.close()
    signals.reconnected.disconnect(dispatch_uid="failover-ro")


def primary_rows(pair) -> list[str]:
    from aurora_backend import drivers

    conn = drivers.connect(host=PRIMARY, port=pair.port, user=SUPERUSER, password=PASSWORD, dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT v FROM failover_t ORDER BY v")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def table(pair):
    from aurora_backend import drivers

    conn = drivers.connect(host=PRIMARY, port=pair.port, user=SUPERUSER, password=PASSWORD, dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute("DROP TABLE IF EXISTS failover_t; CREATE TABLE failover_t (v text)")
    conn.close()


def wait_replicated(wrapper) -> None:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_class WHERE relname = 'failover_t'")
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("the standby never saw the table")


def test_write_on_a_demoted_writer_reconnects_to_the_new_writer_and_goes_through(pair, writer):
    wrapper, dns, reasons = writer
    assert wrapper.aurora_address == STANDBY  # connected before the failover
    wait_replicated(wrapper)
    dns.address = PRIMARY  # the failover: the endpoint now names the new writer
    with wrapper.cursor() as cursor:
        cursor.execute("INSERT INTO failover_t VALUES ('after failover')")  # 25006, then re-run
    assert reasons == ["read_only"]
    assert wrapper.aurora_address == PRIMARY
    assert primary_rows(pair) == ["after failover"]


def test_a_read_only_transaction_chosen_by_the_app_is_left_alone(pair, writer):
    wrapper, dns, reasons = writer
    dns.address = PRIMARY
    wrapper.close()
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        cursor.execute("SET default_transaction_read_only = on")
    with pytest.raises(DatabaseError, match="read-only transaction"):
        with wrapper.cursor() as cursor:
            cursor.execute("INSERT INTO failover_t VALUES ('never')")
    from django.db import connections

    connections["writer"] = wrapper
    try:
        with transaction.atomic(using="writer"):
            with wrapper.cursor() as cursor:
                try:
                    with transaction.atomic(using="writer"):
                        cursor.execute("INSERT INTO failover_t VALUES ('never either')")
                except DatabaseError:
                    pass  # caught, as Django allows with a savepoint
                cursor.execute("SELECT pg_backend_pid()")
                assert cursor.fetchone()[0] == pid  # same connection, still usable
    finally:
        del connections["writer"]
    assert reasons == []
    assert primary_rows(pair) == []
