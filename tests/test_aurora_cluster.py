"""The local Aurora cluster: real promotion, stale DNS, the ledger across failovers, readers, health.

One cluster for the session (tests/conftest.py: a writer and two readers, TTL and DNS
delay 0.5 s instead of Aurora's 5 s, a TestClock for the DNS). Aliases "aurora" (cluster
endpoint) and "aurora_ro" (reader endpoint), registered for this module, go through the
ENGINE and its resolver hook. Topology routing is off here: these tests are the DNS path.
"""

from __future__ import annotations

import io
import json
import logging
import random
import threading
import uuid
from collections import Counter
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connections
from ledger import services
from ledger.models import Account, Transfer

from aurora_backend import retry_atomic
from aurora_backend.testing.aurora_instance import connect
from aurora_backend.testing.aurora_sql import COLUMNS
from aurora_backend.testing.fixtures import cluster_aliases

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster(aurora_cluster, django_db_blocker):
    """The session's cluster, with aliases "aurora" and "aurora_ro" for this module only."""
    options = {
        "connect_deadline": 10,
        "connect_timeout": 2,
        "backoff_base": 0.02,
        "backoff_max": 0.2,
        "topology": False,
    }
    with cluster_aliases(aurora_cluster, **options), django_db_blocker.unblock():
        with connections["aurora"].schema_editor() as editor:
            editor.execute("CREATE TABLE IF NOT EXISTS cluster_probe (v text)")
            for model in (Account, Transfer):  # the cluster is the session's: start this module afresh
                editor.execute("DROP TABLE IF EXISTS %s CASCADE" % model._meta.db_table)
            for model in (Account, Transfer):
                editor.create_model(model)
        connections["aurora"].close()
        yield aurora_cluster
        connections["aurora"].close()
        connections["aurora_ro"].close()


@pytest.fixture
def db(cluster, django_db_blocker):
    """DB access on the cluster's aliases; the DNS clock running and caches cleared after."""
    with django_db_blocker.unblock():
        yield cluster
        for alias in ("aurora", "aurora_ro"):
            connections[alias].close()
    cluster.clock.release()
    cluster.clock.advance(cluster.dns_delay + cluster.dns.ttl)  # every DNS move of the test has happened
    for reader in cluster.readers:
        if reader.replay_paused:
            cluster.resume_replay(reader.id)
    cluster.dns.flush()


def sql(query: str, params: Any = None, using: str = "aurora") -> list:
    with connections[using].cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def where(using: str = "aurora") -> tuple:
    """(instance identifier, in recovery) of the server behind the alias's connection."""
    return tuple(sql("SELECT aurora_db_instance_identifier(), pg_is_in_recovery()", using=using)[0])


def through_endpoint(cluster, instance) -> tuple:
    conn = connect(instance.address, cluster.port, cluster.database)  # through the instance's simulator
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT aurora_db_instance_identifier(), pg_is_in_recovery()")
            return tuple(cur.fetchone())
    finally:
        conn.close()


def test_failover_promotes_a_reader_for_real(db):
    cluster = db
    old, target = cluster.writer, cluster.readers[-1]
    marker = "before-%s" % uuid.uuid4()
    sql("INSERT INTO cluster_probe VALUES (%s)", [marker])
    timeline_before = target.scalar("SELECT timeline_id FROM pg_control_checkpoint()")

    timeline = cluster.failover(target.id)

    assert (timeline["old_writer"], timeline["new_writer"]) == (old.id, target.id)
    assert timeline["kill"] <= timeline["caught_up"] <= timeline["promoted"] <= timeline["old_writer_back"]
    assert target.scalar("SELECT pg_is_in_recovery()") is False
    assert target.scalar("SELECT timeline_id FROM pg_control_checkpoint()") > timeline_before
    for instance in cluster.instances.values():  # each instance endpoint, through its simulator
        assert through_endpoint(cluster, instance) == (instance.id, instance.role == "reader")
    assert old.role == "reader"
    status = cluster.replica_status()
    assert [c for c in status[0]] == [name for name, _ in COLUMNS]
    writers = [row["server_id"] for row in status if row["session_id"] == "MASTER_SESSION_ID"]
    assert writers == [target.id]
    assert sorted(row["server_id"] for row in status if row["session_id"] != "MASTER_SESSION_ID") == sorted(
        r.id for r in cluster.readers
    )
    assert target.scalar("SELECT count(*) FROM cluster_probe WHERE v = %s", [marker], dbname=cluster.database) == 1


def test_writes_reach_the_new_writer_once_dns_moves(db):
    cluster, clock = db, db.clock
    old = cluster.writer
    assert where() == (old.id, False)
    clock.freeze()
    timeline = cluster.failover()  # the old writer is back as a reader: stale DNS names it
    new, due = cluster.instances[timeline["new_writer"]], timeline["dns_due"]

    with pytest.raises(DatabaseError, match="read-only transaction"):
        sql("INSERT INTO cluster_probe VALUES ('stale dns')")  # reconnected to the old writer: 25006
    assert where() == (old.id, True)
    clock.advance_to(due - 0.001)  # one millisecond before Aurora updates the record
    cluster.dns.flush()  # this client's next lookup is a fresh one: its answer is cached for the TTL
    with pytest.raises(DatabaseError, match="read-only transaction"):
        sql("INSERT INTO cluster_probe VALUES ('still stale')")
    assert cluster.dns.authoritative(cluster.cluster_endpoint) == [old.address]
    clock.advance_to(due)  # the record moves now, but the client's cached answer lives on
    assert cluster.dns.authoritative(cluster.cluster_endpoint) == [new.address]
    with pytest.raises(DatabaseError, match="read-only transaction"):
        sql("INSERT INTO cluster_probe VALUES ('stale for one ttl')")
    clock.advance_to(due - 0.001 + cluster.dns.ttl)  # the cached answer expires
    sql("INSERT INTO cluster_probe VALUES ('after dns moved')")  # 25006, reconnect, re-run: new writer
    assert where() == (new.id, False)
    assert connections["aurora"].aurora_address == new.address
    assert new.scalar("SELECT count(*) FROM cluster_probe WHERE v LIKE '%%stale%%'", dbname=cluster.database) == 0


def test_reader_endpoint_spreads_connections(db):
    cluster, clock = db, db.clock
    reader = connections["aurora_ro"]

    def next_instance() -> str:
        reader.close()
        return where("aurora_ro")[0]

    clock.freeze()
    cluster.dns.rng, rng = random.Random(5), cluster.dns.rng  # this test's draws, exactly
    within_ttl = Counter(next_instance() for _ in range(6))
    assert len(within_ttl) == 1  # one DNS answer, cached for the TTL: every connection on one reader
    spread: Counter = Counter()
    for _ in range(40):
        clock.advance(cluster.dns.ttl)
        spread[next_instance()] += 1
    cluster.dns.rng = rng
    assert set(spread) == {r.id for r in cluster.readers}
    assert min(spread.values()) >= 10, spread


class _LostCommits(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.answers: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("txid_status("):
            self.answers.append(record.getMessage().rsplit(": ", 1)[-1])


def test_ledger_holds_under_repeated_failovers(db):
    cluster = db
    accounts = [
        a.pk
        for a in Account.objects.using("aurora").bulk_create(
            [Account(name="acct-%d" % i, balance=1000) for i in range(8)]
        )
    ]
    acknowledged: list[uuid.UUID] = []
    errors: list[BaseException] = []
    lock, stop = threading.Lock(), threading.Event()
    lost = _LostCommits()
    logging.getLogger("aurora_backend").addHandler(lost)

    # The DNS path: until the cluster endpoint moves (delay + TTL), every attempt reaches the
    # old writer (refused, then 25006): retry for longer than retry_atomic's default 5 attempts.
    transfer = retry_atomic(services._apply, using="aurora", max_attempts=100, max_time=20)

    def worker(k: int) -> None:
        rng = random.Random(k)
        try:
            while not stop.is_set():
                source, destination = rng.sample(accounts, 2)
                request_id = uuid.uuid4()
                transfer(source, destination, rng.randint(1, 5), request_id, "aurora")
                with lock:
                    acknowledged.append(request_id)
        except BaseException as exc:  # any error that reached the app fails the test
            errors.append(exc)
        finally:
            connections["aurora"].close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    timelines = []
    try:
        for _ in range(3):
            stop.wait(0.4)
            timelines.append(cluster.failover())
        stop.wait(1.5)  # past the last DNS move: writes land on the last new writer
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        logging.getLogger("aurora_backend").removeHandler(lost)
    assert errors == []
    applied = list(Transfer.objects.using("aurora").values_list("request_id", flat=True))
    assert len(applied) == len(set(applied)) == len(acknowledged) and set(applied) == set(acknowledged)
    total = sum(Account.objects.using("aurora").values_list("balance", flat=True))
    assert total == 8 * 1000
    assert len({t["new_writer"] for t in timelines}) >= 2
    assert set(lost.answers) <= {"committed", "aborted"}
    print(
        "ledger across %d failovers: %d transfers, lost COMMITs resolved: %s"
        % (len(timelines), len(applied), dict(Counter(lost.answers)))
    )


def test_a_commit_lost_in_the_failover_is_resolved_on_the_promoted_replica(db):
    """COMMIT waits for a paused synchronous reader (remote_apply) when the writer dies:
    committed locally, never acknowledged. txid_status on the promoted reader says so."""
    cluster = db
    old, target = cluster.writer, cluster.readers[0]
    old.query("ALTER SYSTEM SET synchronous_standby_names = '\"%s\"'" % target.id)
    old.query("SELECT pg_reload_conf()")
    cluster.pause_replay(target.id)
    calls, outcome, lost = [], {}, _LostCommits()
    logging.getLogger("aurora_backend").addHandler(lost)

    @retry_atomic(using="aurora", backoff_base=0.01, backoff_max=0.1)
    def work() -> None:
        calls.append(1)
        sql("SET LOCAL synchronous_commit = remote_apply")
        sql("INSERT INTO cluster_probe VALUES ('lost commit')")

    def run() -> None:
        try:
            work()
            outcome["address"] = connections["aurora"].aurora_address
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connections["aurora"].close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        from aurora_backend.testing.aurora_instance import wait_until

        wait_until(
            lambda: old.scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'") == 1,
            10,
            "a COMMIT waiting for the synchronous reader",
        )
        cluster.failover(target.id, old_writer="down")
        thread.join(30)
    finally:
        logging.getLogger("aurora_backend").removeHandler(lost)
        cluster.restore(old.id)
    assert "error" not in outcome, outcome
    assert calls == [1] and lost.answers == ["committed"]
    assert outcome["address"] == target.address  # asked of, and resolved on, the promoted reader
    assert target.scalar("SELECT count(*) FROM cluster_probe WHERE v = 'lost commit'", dbname=cluster.database) == 1


def test_aurora_health_shows_writer_readers_and_lag(db):
    cluster = db
    lagging = cluster.readers[0]
    cluster.pause_replay(lagging.id)
    sql("INSERT INTO cluster_probe VALUES ('lag 1')")
    from aurora_backend.testing.aurora_instance import wait_until

    wait_until(lambda: (cluster.replica_lag_ms(lagging.id) or 0) > 300, 5, "replica lag above 300 ms", interval=0.05)
    sql("INSERT INTO cluster_probe VALUES ('lag 2')")
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("aurora_health", "--database", "aurora", "--json", "--replica-lag-warn-ms", "200", stdout=out)
    assert exit_.value.code == 1  # degraded: a reader lags
    report = json.loads(out.getvalue())["databases"][0]
    rows = {row["server_id"]: row for row in report["readers"]}
    assert report["readers"][0]["role"] == "writer" and report["readers"][0]["server_id"] == cluster.writer.id
    assert set(rows) == set(cluster.instances)
    assert rows[lagging.id]["replica_lag_ms"] > 200
    assert report["server"]["aurora"] and report["server"]["instance_id"] == cluster.writer.id
    assert any(f["code"] == "replica_lag" and lagging.id in f["message"] for f in report["findings"])


def test_cli_serves_a_cluster_until_sigterm_and_leaves_nothing_running():
    import os
    import select
    import signal
    import subprocess
    import sys

    from aurora_backend.simulator import ControlClient
    from aurora_backend.simulator.cluster_cli import remote_resolve
    from aurora_backend.simulator.control import parse_address

    name = "cli-%d" % os.getpid()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aurora_backend.simulator",
            "cluster",
            "--readers",
            "1",
            "--name",
            name,
            "--ttl",
            "0.2",
            "--dns-delay",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert select.select([proc.stdout], [], [], 60)[0], "the cluster CLI printed nothing in 60 s"
        info = json.loads(proc.stdout.readline())
        control = parse_address(info["control"], "control")
        writer = next(i for i, v in info["instances"].items() if v["role"] == "writer")
        address = remote_resolve(control, info["cluster_endpoint"])[0]
        assert address == info["instances"][writer]["address"]
        conn = connect(address, info["port"], info["database"])
        with conn.cursor() as cur:
            cur.execute("SELECT aurora_db_instance_identifier()")
            assert cur.fetchone()[0] == writer
        conn.close()
        with ControlClient(control, timeout=60) as client:
            answer = client.command("failover")
        assert answer["result"]["old_writer"] == writer
        assert answer["endpoints"]["instances"][answer["result"]["new_writer"]]["role"] == "writer"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        proc.stdout.close()
    left = subprocess.run(["pgrep", "-f", "cluster_name=%s-instance" % name], capture_output=True, text=True)
    assert left.stdout == ""  # every server of the cluster stopped


def test_a_killed_test_process_leaves_no_server_running():
    """pg_ctl daemonizes the servers: the reaper stops them when their owner dies (SIGKILL here)."""
    import os
    import select
    import subprocess
    import sys
    import time

    name = "killed-%d" % os.getpid()
    code = (
        "import sys; from aurora_backend.testing import AuroraCluster; "
        "c = AuroraCluster(readers=1, name=%r).start(); print('up', flush=True); sys.stdin.read()" % name
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    try:
        assert select.select([proc.stdout], [], [], 60)[0] and proc.stdout.readline() == b"up\n"
        running = subprocess.run(["pgrep", "-f", "cluster_name=%s-instance" % name], capture_output=True, text=True)
        assert len(running.stdout.split()) >= 2  # the writer and the reader's postmasters (and children)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stdin.close()
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-f", "cluster_name=%s-instance" % name], capture_output=True).stdout:
        assert time.monotonic() < deadline, "servers still running 30 s after their owner was killed"
        time.sleep(0.1)


def test_aurora_health_reports_a_writer_alias_that_reaches_a_reader_as_unhealthy(db):
    """In the DNS window after a failover (the DNS clock frozen: the cluster endpoint still
    names the demoted writer, a reader now), a probe of the writer alias must fail."""
    cluster = db
    old = cluster.writer
    cluster.clock.freeze()
    cluster.failover()
    assert cluster.dns.resolve(cluster.cluster_endpoint) == [old.address] and old.role == "reader"
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("aurora_health", "--database", "aurora", "--json", stdout=out)
    assert exit_.value.code != 0
    report = json.loads(out.getvalue())["databases"][0]
    assert report["server"]["role"] == "reader" and report["server"]["instance_id"] == old.id
    findings = [f for f in report["findings"] if f["code"] == "writer_endpoint_reaches_reader"]
    assert len(findings) == 1 and findings[0]["level"] == "error" and "25006" in findings[0]["message"]
    out = io.StringIO()  # the reader alias reaching a reader is what it promises
    try:
        call_command("aurora_health", "--database", "aurora_ro", "--json", stdout=out)
    except SystemExit:  # (e.g. the promoted reader's recent restart, replica lag)
        pass
    assert not [
        f
        for f in json.loads(out.getvalue())["databases"][0]["findings"]
        if f["code"] == "writer_endpoint_reaches_reader"
    ]
