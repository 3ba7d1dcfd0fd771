"""One instance of a local Aurora cluster: a real PostgreSQL server behind its own simulator.

The server listens on 127.0.0.1 at a private port (Aurora's instance internals); the
simulator listens on the instance's own loopback address at the cluster's port (its
instance endpoint), so Aurora's faults can be staged per instance.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from aurora_backend.simulator import AuroraSimulator
from aurora_backend.testing.cluster import PASSWORD, SUPERUSER, PostgresCluster

WRITER, READER, DOWN = "writer", "reader", "down"

#: Settings of every instance: replication-ready, fast, loopback only.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "wal_keep_size": "128MB",
    "synchronous_commit": "on",  # a commit acknowledged is in the WAL the readers stream
    "max_wal_senders": "16",
    "hot_standby": "on",
    "wal_receiver_status_interval": "1s",
    "max_connections": "200",
}


@dataclass
class Instance:
    """A DB instance: identifier, endpoint name, loopback address, role, server and simulator."""

    id: str
    endpoint: str
    address: str
    role: str
    server: PostgresCluster
    sim: AuroraSimulator | None = None
    replay_paused: bool = field(default=False)
    #: Its endpoint's network namespace when the cluster has silent hosts (silent_host.py).
    silent_host: Any | None = None

    def new_simulator(self, port: int) -> AuroraSimulator:
        """A simulator (not started) for this instance's endpoint, in its namespace if it has one."""
        factory = self.silent_host.listen_socket if self.silent_host is not None else None
        return AuroraSimulator(
            upstream=("127.0.0.1", self.pg_port), listen=[(self.address, port)], listen_socket=factory
        )

    @property
    def pg_port(self) -> int:
        return self.server.port

    def admin(self, dbname: str = "postgres", timeout: int = 5) -> Any:
        """A direct autocommit superuser connection to this instance's server (not through the simulator)."""
        return connect("127.0.0.1", self.pg_port, dbname, timeout)

    def query(self, sql: str, params: Any = None, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        conn = self.admin(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def records(self, sql: str, dbname: str = "postgres") -> list[dict[str, Any]]:
        """The rows of ``sql`` as dicts keyed by column name (Aurora's status functions)."""
        conn = self.admin(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                names = [c[0] for c in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()

    def scalar(self, sql: str, params: Any = None, dbname: str = "postgres") -> Any:
        rows = self.query(sql, params, dbname)
        return rows[0][0] if rows else None


def connect(
    host: str, port: int, dbname: str = "postgres", timeout: int = 5, user: str = SUPERUSER, password: str = PASSWORD
) -> Any:
    """An autocommit superuser connection (psycopg2, a dependency of the package: the harness's
    own connections, whatever driver the application under test uses)."""
    conn = psycopg2.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        dbname=dbname,
        connect_timeout=timeout,
        application_name="aurora-local-admin",
    )
    conn.autocommit = True
    return conn


def new_writer(instance_id: str) -> PostgresCluster:
    """initdb a server that will be the cluster's first writer (not started)."""
    server = PostgresCluster(settings=dict(SERVER_SETTINGS, cluster_name=instance_id))
    write_passfile(server)
    return server


def write_passfile(server: PostgresCluster) -> str:
    """``<base>/pgpass``: how a server reaches its peers (replication, the lag query)."""
    passfile = os.path.join(server.base, "pgpass")
    with open(passfile, "w") as fh:
        fh.write("127.0.0.1:*:*:%s:%s\n" % (SUPERUSER, PASSWORD))
    os.chmod(passfile, 0o600)
    if server.as_postgres:
        shutil.chown(passfile, user="postgres")
    return passfile


def new_reader(
    source: PostgresCluster, instance_id: str, port: int | None = None, timeout: float = 120
) -> PostgresCluster:
    """A hot standby of the running ``source`` (pg_basebackup), streaming as ``instance_id``."""
    standby = PostgresCluster(port=port, settings=dict(SERVER_SETTINGS, cluster_name=instance_id), initdb=False)
    passfile = write_passfile(standby)
    source.base_backup(standby, passfile, timeout=timeout)
    with open(os.path.join(standby.datadir, "postgresql.auto.conf"), "a") as fh:
        fh.write("primary_conninfo = '%s'\n" % primary_conninfo(source.port, instance_id, passfile))
        fh.write("recovery_target_timeline = 'latest'\n")
    return standby


def primary_conninfo(port: int, instance_id: str, passfile: str) -> str:
    return "host=127.0.0.1 port=%d user=%s passfile=%s application_name=%s" % (port, SUPERUSER, passfile, instance_id)


def follow(instance: Instance, writer_port: int) -> None:
    """Point a running reader at a new writer (PostgreSQL 13+ applies it on reload)."""
    passfile = os.path.join(instance.server.base, "pgpass")
    conninfo = primary_conninfo(writer_port, instance.id, passfile)
    conn = instance.admin()
    try:
        with conn.cursor() as cur:
            cur.execute("ALTER SYSTEM SET primary_conninfo = %s", [conninfo])
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll ``predicate()`` until true; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except psycopg2.Error:
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError("aurora cluster: %s did not happen within %.1f s" % (what, timeout))
        time.sleep(interval)
