"""Topology routing on the local Aurora cluster: the new writer found while DNS still lags.

The DNS clock is frozen in these tests, so the cluster endpoint keeps naming the old writer
for as long as a test runs: whatever reaches the new writer got there through topology.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from typing import Any

import pytest
from django.db import connections
from ledger import services
from ledger.models import Account, Transfer

from aurora_backend import drivers, signals
from aurora_backend.runtime import Runtime
from aurora_backend.testing.fixtures import cluster_aliases, register_alias, unregister_alias
from aurora_backend.topology import router as topology

pytestmark = pytest.mark.timeout(90)
OPTIONS = {"connect_deadline": 10, "connect_timeout": 2, "backoff_base": 0.02, "backoff_max": 0.2}


@pytest.fixture(scope="module")
def cluster(aurora_cluster, django_db_blocker):
    with cluster_aliases(aurora_cluster, writer="topo", reader="topo_ro", **OPTIONS), django_db_blocker.unblock():
        with connections["topo"].schema_editor() as editor:
            editor.execute("CREATE TABLE IF NOT EXISTS cluster_probe (v text)")
            for model in (Account, Transfer):
                editor.execute("DROP TABLE IF EXISTS %s CASCADE" % model._meta.db_table)
            for model in (Account, Transfer):
                editor.create_model(model)
        yield aurora_cluster
        connections["topo"].close()
        connections["topo_ro"].close()


@pytest.fixture
def db(cluster, django_db_blocker):
    topology.reset()
    failovers: list[dict] = []

    def on_failover(sender: Any, **kwargs: Any) -> None:
        failovers.append(kwargs)

    signals.topology_failover.connect(on_failover, dispatch_uid="test-topology")
    with django_db_blocker.unblock():
        for alias in ("topo", "topo_ro"):
            connections[alias].close()  # the next connect learns the topology afresh
        yield cluster, failovers
        for alias in ("topo", "topo_ro"):
            connections[alias].close()
    signals.topology_failover.disconnect(dispatch_uid="test-topology")
    cluster.clock.release()
    cluster.clock.advance(cluster.dns_delay + cluster.dns.ttl)  # every DNS move of the test has happened
    cluster.dns.flush()


def where(using: str = "topo") -> tuple:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT aurora_db_instance_identifier(), pg_is_in_recovery()")
        return tuple(cursor.fetchone())


def health_report() -> dict:
    import io
    import json

    from django.core.management import call_command

    out = io.StringIO()
    with pytest.raises(SystemExit):  # unreachable: DNS (frozen) names the old writer, which is down
        call_command("aurora_health", "--database", "topo", "--json", stdout=out)
    return json.loads(out.getvalue())["databases"][0]


def test_new_writer_found_while_dns_still_names_the_old_one(db):
    cluster, failovers = db
    old = cluster.writer
    target, unresolvable = cluster.readers[0], cluster.readers[1]
    assert where() == (old.id, False)  # connected through DNS: the topology is learned
    cluster.clock.freeze()
    cluster.dns.remove(unresolvable.endpoint)  # stale topology: an instance that no longer resolves
    try:
        cluster.failover(target.id, old_writer="down")  # the old writer's endpoint refuses
        assert cluster.dns.resolve(cluster.cluster_endpoint) == [old.address]  # DNS still stale
        with connections["topo"].cursor() as cursor:
            cursor.execute("INSERT INTO cluster_probe VALUES ('topology')")
        assert where() == (target.id, False)
        assert connections["topo"].aurora_address == target.address
        # libpq was given the instance endpoint's name (what sslmode=verify-full checks) and its address
        given = drivers.connection_parameters(connections["topo"].connection)
        assert (given["host"], given["hostaddr"]) == (target.endpoint, target.address)
        assert connections["topo"].settings_dict["HOST"] == cluster.cluster_endpoint
        assert [(f["old_writer"], f["new_writer"], f["how"]) for f in failovers] == [(old.id, target.id, "topology")]
        assert failovers[0]["seconds"] is not None and failovers[0]["seconds"] < 5
        shown = health_report()["topology"]
        assert shown["writer"] == target.id and set(shown["instances"]) == set(cluster.instances)
        assert shown["last_failover"]["new_writer"] == target.id and shown["last_failover"]["how"] == "topology"
    finally:
        cluster.dns.set(unresolvable.endpoint, [unresolvable.address])
        cluster.restore(old.id)


def test_reader_alias_moves_to_another_reader(db):
    cluster, _ = db
    cluster.clock.freeze()
    first = where("topo_ro")
    assert first[1] is True
    lost = cluster.instances[first[0]]
    assert lost.sim is not None
    lost.sim.refuse(True)
    lost.sim.drop_all(silent=False)  # the reader goes away; the reader endpoint's cached answer names it
    try:
        moved = where("topo_ro")
        assert moved[1] is True and moved[0] != lost.id
    finally:
        lost.sim.refuse(False)


def test_two_writers_claiming_the_role_are_not_guessed_between(db, caplog):
    cluster, failovers = db
    writer, rogue = cluster.writer, cluster.readers[0]
    assert where() == (writer.id, False)
    rogue.scalar("SELECT pg_promote(true, 30)")  # split brain: a second server answers as writer
    cluster.clock.freeze()
    try:
        with caplog.at_level(logging.WARNING, logger="aurora_backend"):
            assert writer.sim is not None
            writer.sim.drop_all(silent=False)
            where()
        # not rerouted: the connection went where DNS said, as without topology
        assert connections["topo"].aurora_address == cluster.dns.resolve(cluster.cluster_endpoint)[0]
        assert any("claim to be the writer" in r.getMessage() for r in caplog.records)
        assert failovers == []
    finally:
        from aurora_backend.testing.aurora_instance import DOWN

        rogue.role = DOWN
        assert rogue.sim is not None
        rogue.sim.refuse(True)
        cluster.restore(rogue.id)


def test_plain_postgresql_behind_an_aurora_like_name_falls_back_to_dns(db, django_db_blocker):
    from aurora_backend.testing.aurora_dns import ClusterDNS
    from tests.pg import server

    srv = server()
    dns = ClusterDNS(ttl=0)
    name = "plain.cluster-abc123.local-1.rds.localhost"
    dns.set(name, [srv.host])
    register_alias(
        "plain",
        {
            "ENGINE": "aurora_backend",
            "NAME": srv.dbname,
            "USER": srv.user,
            "PASSWORD": srv.password,
            "HOST": name,
            "PORT": str(srv.port),
            "OPTIONS": {"aurora": {"resolver": dns, **OPTIONS}},
        },
    )
    try:
        with connections["plain"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        from aurora_backend.testing.aurora_instance import connect

        admin = connect(srv.host, srv.port, srv.dbname, user=srv.user, password=srv.password)
        admin.cursor().execute("SELECT pg_terminate_backend(%s)", [pid])
        admin.close()
        with connections["plain"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != pid
        snap = topology.snapshot()
        assert snap["{instance}.abc123.local-1.rds.localhost:%d" % srv.port]["instances"] == []
    finally:
        unregister_alias("plain")


def test_ledger_holds_with_zero_app_errors_under_repeated_failovers(db):
    """Default retry_atomic settings (services.transfer), DNS frozen on the first writer."""
    cluster, failovers = db
    accounts = [
        a.pk
        for a in Account.objects.using("topo").bulk_create(
            [Account(name="t-%s" % uuid.uuid4(), balance=1000) for _ in range(8)]
        )
    ]
    acknowledged: list[uuid.UUID] = []
    errors: list[BaseException] = []
    lock, stop = threading.Lock(), threading.Event()

    def worker(k: int) -> None:
        rng = random.Random(k)
        try:
            while not stop.is_set():
                source, destination = rng.sample(accounts, 2)
                request_id = uuid.uuid4()
                services.transfer(source, destination, rng.randint(1, 5), request_id=request_id, using="topo")
                with lock:
                    acknowledged.append(request_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections["topo"].close()

    where()  # learn the topology
    cluster.clock.freeze()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            stop.wait(0.4)
            cluster.failover()
        stop.wait(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert errors == []
    applied = list(Transfer.objects.using("topo").filter(source_id__in=accounts).values_list("request_id", flat=True))
    assert len(applied) == len(set(applied)) == len(acknowledged) and set(applied) == set(acknowledged)
    assert sum(Account.objects.using("topo").filter(pk__in=accounts).values_list("balance", flat=True)) == 8000
    assert len(failovers) >= 3 and {f["how"] for f in failovers} == {"topology"}


def test_the_second_failover_is_found_as_fast_as_the_first_after_a_reader_sign(db):
    """The first-sign clock of a failover is the writer's: a reader alias's disconnect in
    between (4 s before the next failover, on the ENGINE's clock) does not start it."""
    cluster, failovers = db
    offset = [0.0]
    for alias in ("topo", "topo_ro"):  # the ENGINE's clock: real time plus what the test adds
        connections[alias].aurora_runtime = Runtime(clock=lambda: time.monotonic() + offset[0])
    assert where()[1] is False and where("topo_ro")[1] is True  # the topology is learned
    cluster.clock.freeze()  # DNS keeps naming the first writer: every new writer is found by topology
    cluster.failover()
    assert where() == (cluster.writer.id, False)
    reader = cluster.instances[where("topo_ro")[0]]
    assert reader.sim is not None
    reader.sim.drop_all(silent=False)  # a reader goes away and comes back (a sign for the reader alias)
    assert where("topo_ro")[1] is True
    offset[0] += 4.0  # four quiet seconds
    cluster.failover()
    assert where() == (cluster.writer.id, False)
    assert [f["how"] for f in failovers] == ["topology", "topology"]
    first, second = failovers[0]["seconds"], failovers[1]["seconds"]
    assert first < 2 and second < 2, (first, second)  # on the same footing (4 s on main)


@pytest.fixture
def pooled(db, django_db_blocker):
    """Alias "topo_pool": the cluster endpoint through Django's pool (4 connections)."""
    cluster, failovers = db
    settings = cluster.database_settings(**OPTIONS)
    settings["OPTIONS"]["pool"] = {"max_size": 4, "timeout": 20}
    register_alias("topo_pool", {**settings, "CONN_MAX_AGE": 0})
    try:
        with django_db_blocker.unblock():
            yield cluster, failovers
    finally:
        connections["topo_pool"].close_pool()
        unregister_alias("topo_pool")


@pytest.mark.skipif(drivers.NAME != "psycopg", reason="Django's pool needs psycopg 3")
def test_pool_through_repeated_failovers_zero_app_errors_and_bounded_connections(pooled):
    """3 retry_atomic writers (default settings) and 2 readers share a pool of 4; DNS is
    frozen on the first writer, so every connection that reaches a new writer was routed."""
    cluster, failovers = pooled
    accounts = [
        a.pk
        for a in Account.objects.using("topo_pool").bulk_create(
            [Account(name="p-%s" % uuid.uuid4(), balance=1000) for _ in range(8)]
        )
    ]
    connections["topo_pool"].close()
    acknowledged: list[uuid.UUID] = []
    errors: list[BaseException] = []
    reads = [0]
    lock, stop = threading.Lock(), threading.Event()

    def writer(k: int) -> None:
        rng = random.Random(k)
        try:
            while not stop.is_set():
                source, destination = rng.sample(accounts, 2)
                request_id = uuid.uuid4()
                services.transfer(source, destination, rng.randint(1, 5), request_id=request_id, using="topo_pool")
                with lock:
                    acknowledged.append(request_id)
                connections["topo_pool"].close()  # back to the pool, as at the end of a request
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections["topo_pool"].close()

    def reader(k: int) -> None:
        try:
            while not stop.is_set():
                total = sum(
                    Account.objects.using("topo_pool").filter(pk__in=accounts).values_list("balance", flat=True)
                )
                assert total == 8000
                reads[0] += 1
                connections["topo_pool"].close()
                stop.wait(0.005)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections["topo_pool"].close()

    pool = connections["topo_pool"].pool
    opened_before = pool.get_stats().get("connections_num", 0)
    cluster.clock.freeze()
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    threads += [threading.Thread(target=reader, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            stop.wait(0.4)
            cluster.failover()
        stop.wait(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    opened = pool.get_stats().get("connections_num", 0) - opened_before
    assert errors == []
    applied = list(
        Transfer.objects.using("topo_pool").filter(source_id__in=accounts).values_list("request_id", flat=True)
    )
    assert len(applied) == len(set(applied)) == len(acknowledged) and set(applied) == set(acknowledged)
    assert len(acknowledged) > 0 and reads[0] > 0
    assert len(failovers) >= 3 and {f["how"] for f in failovers} == {"topology"}
    # Each failover: the pool's 4 connections die and are replaced (a few more when a
    # replacement dies too, or finds a connection on the old writer): never a loop.
    print(
        "pool through %d failovers: %d transfers, %d reads, %d physical connections opened"
        % (len(failovers), len(acknowledged), reads[0], opened)
    )
    assert opened <= 4 + 3 * 12, opened


@pytest.mark.parametrize("value", ["abc.example.com", "{instance}.{region}.example.com", 42])
def test_a_bad_instance_template_names_the_setting(value):
    from django.core.exceptions import ImproperlyConfigured

    from aurora_backend.options import AuroraOptions

    with pytest.raises(ImproperlyConfigured, match=r"\['topology_template'\].*\{instance\}"):
        AuroraOptions.from_settings("default", {"aurora": {"topology_template": value}})


def test_only_aurora_endpoints_are_routed():
    from aurora_backend.topology.state import instance_template

    suffix = "abc123.us-east-1.rds.amazonaws.com"
    assert instance_template("prod.cluster-" + suffix, None) == "{instance}." + suffix
    assert instance_template("prod.cluster-ro-" + suffix, None) == "{instance}." + suffix
    assert instance_template("db.example.com", None) is None
    assert instance_template("db.example.com", "{instance}.internal") == "{instance}.internal"
