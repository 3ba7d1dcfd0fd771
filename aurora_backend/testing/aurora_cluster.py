"""A local Aurora cluster: one writer and N readers in real streaming replication.

Each instance is a real PostgreSQL server behind its own simulator listener; endpoints
are named as Aurora names them and answered by :class:`ClusterDNS` (5 s TTL, the
cluster endpoint moving ``dns_delay`` seconds after a promotion), which the ENGINE uses
through ``OPTIONS["aurora"]["resolver"]``. :meth:`AuroraCluster.failover` promotes a
reader for real. See docs/cluster.md.

    with AuroraCluster(readers=2) as cluster:
        DATABASES["default"] = cluster.database_settings()
        cluster.failover()
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import psycopg2

from aurora_backend.simulator import AuroraSimulator
from aurora_backend.testing import aurora_instance as ai
from aurora_backend.testing.aurora_dns import ClusterDNS
from aurora_backend.testing.aurora_instance import READER, WRITER, Instance
from aurora_backend.testing.aurora_sql import DBLINK_SQL, install_sql
from aurora_backend.testing.cluster import PASSWORD, SUPERUSER, free_port
from aurora_backend.testing.reaper import Reaper

logger = logging.getLogger("aurora_backend")

DOMAIN = "local-1.rds.localhost"
ADMIN_DATABASES = ("template1", "postgres")


class AuroraCluster:
    """A writer and ``readers`` readers; ``start()``, ``failover()``, ``stop()``."""

    def __init__(
        self,
        readers: int = 2,
        name: str = "aurora-local",
        ttl: float = 5.0,
        dns_delay: float = 5.0,
        database: str = "aurora",
        port: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        subnet: int | None = None,
        startup_timeout: float = 120.0,
        silent_hosts: bool = False,
    ) -> None:
        if readers < 0:
            raise ValueError("AuroraCluster(readers) needs readers >= 0, got %r" % readers)
        self.rng = rng or random.Random()
        self.name = name
        self.readers_wanted = readers
        self.dns_delay = float(dns_delay)
        self.database = database
        self.port = port
        self.clock = clock
        self.startup_timeout = startup_timeout
        #: Each instance's endpoint in its own network namespace, so that silence(id) can make
        #: it a host that stops answering for real (silent_host.py; needs root and iproute2).
        self.silent_hosts = silent_hosts
        token = "%012x" % self.rng.getrandbits(48)
        self.domain = "%s.%s" % (token, DOMAIN)
        self.cluster_endpoint = "%s.cluster-%s" % (name, self.domain)
        self.reader_endpoint = "%s.cluster-ro-%s" % (name, self.domain)
        self.subnet = subnet if subnet is not None else 64 + self.rng.randrange(128)
        self.dns = ClusterDNS(ttl=ttl, clock=clock, rng=self.rng)
        self.instances: dict[str, Instance] = {}
        self.failovers: list[dict[str, Any]] = []
        self.started_in: float | None = None
        self._reaper = Reaper()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> AuroraCluster:
        began = time.monotonic()
        try:
            self._start_servers()
            self._start_listeners()
            self.install_functions()
            self._publish_dns()
            self.wait_streaming()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        logger.info("aurora cluster %s: started in %.2fs (%d readers)", self.name, self.started_in, self.readers_wanted)
        return self

    def _instance_id(self, k: int) -> str:
        return "%s-instance-%d" % (self.name, k + 1)

    def _new_instance(self, k: int, role: str, server: Any) -> Instance:
        self._reaper.register(server.base, server.bin, server.as_postgres)
        instance_id = self._instance_id(k)
        host = None
        if self.silent_hosts:
            from aurora_backend.testing.silent_host import SilentHost

            host = SilentHost().start()
        address = host.address if host else "127.0.%d.%d" % (self.subnet, k + 1)
        return Instance(instance_id, "%s.%s" % (instance_id, self.domain), address, role, server, silent_host=host)

    def _start_servers(self) -> None:
        writer_server = ai.new_writer(self._instance_id(0))
        writer = self._new_instance(0, WRITER, writer_server)
        self.instances[writer.id] = writer
        writer_server.start()
        writer.query("CREATE DATABASE %s" % self.database)
        for k in range(1, self.readers_wanted + 1):
            reader_id = self._instance_id(k)
            reader = self._new_instance(k, READER, ai.new_reader(writer_server, reader_id))
            self.instances[reader.id] = reader
            reader.server.start()

    def _start_listeners(self, tries: int = 10) -> None:
        """One simulator per instance, all on the same port (Aurora: every endpoint on 5432)."""
        for attempt in range(tries):
            port = self.port or free_port()
            started: list[AuroraSimulator] = []
            try:
                for instance in self.instances.values():
                    started.append(instance.new_simulator(port).start())
            except OSError:
                for sim in started:
                    sim.stop()
                if self.port or attempt == tries - 1:
                    raise
                continue
            for instance, sim in zip(self.instances.values(), started, strict=False):
                instance.sim = sim
            self.port = port
            return

    def install_functions(self) -> None:
        """(Re)create Aurora's functions on the writer; the readers get them by replication."""
        sql = install_sql({i.id: i.pg_port for i in self.instances.values()}, self.aurora_version())
        writer = self.writer
        for dbname in ADMIN_DATABASES + (self.database,):
            try:
                writer.query(DBLINK_SQL, dbname=dbname)
            except psycopg2.Error as exc:  # no contrib package: lag from the writer's estimate
                logger.info("aurora cluster: no dblink (%s); readers' lag as the writer estimates it", exc)
            writer.query(sql, dbname=dbname)

    def aurora_version(self) -> str:
        version = self.writer.scalar("SHOW server_version").split()[0]
        return version + ".0" if version.count(".") == 1 else version

    def _publish_dns(self, delay: float = 0.0) -> float:
        """Point the cluster, reader and instance endpoints at the current roles."""
        for instance in self.instances.values():
            self.dns.set(instance.endpoint, [instance.address])
        readers = [i.address for i in self.instances.values() if i.role == READER]
        self.dns.set(self.reader_endpoint, readers or [self.writer.address], delay=delay, pick_one=True)
        return self.dns.set(self.cluster_endpoint, [self.writer.address], delay=delay)

    def wait_streaming(self, timeout: float = 30.0) -> None:
        """Block until every reader streams from the writer and has replayed its WAL."""
        readers = [i.id for i in self.readers if not i.replay_paused]
        if not readers:
            return
        writer = self.writer
        # A commit record for every reader to replay: a fresh standby's lag is measured from
        # pg_last_xact_replay_timestamp(), NULL until it has replayed one. (It writes nothing
        # else, so it is not flushed at once: wait for the insert position.)
        writer.scalar("SELECT txid_current()")
        lsn = writer.scalar("SELECT pg_current_wal_insert_lsn()::text")
        sql = (
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND "
            "application_name = ANY(%s) AND replay_lsn >= %s::pg_lsn"
        )
        ai.wait_until(
            lambda: writer.scalar(sql, [readers, lsn]) == len(readers),
            timeout,
            "streaming replication to %s" % ", ".join(readers),
        )

    def stop(self) -> None:
        """Stop every simulator and server and remove their files; safe to call twice."""
        for instance in self.instances.values():
            if instance.sim is not None:
                instance.sim.stop()
            if instance.silent_host is not None:
                instance.silent_host.close()
        for instance in self.instances.values():
            try:
                instance.server.destroy()
            except Exception as exc:  # keep removing the others
                logger.warning("aurora cluster: removing %s failed: %s", instance.id, exc)
            self._reaper.forget(instance.server.base)
        self._reaper.close()

    def __enter__(self) -> AuroraCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observation -------------------------------------------------------------------

    @property
    def writer(self) -> Instance:
        for instance in self.instances.values():
            if instance.role == WRITER:
                return instance
        raise RuntimeError("aurora cluster %s has no writer right now" % self.name)

    @property
    def readers(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.role == READER]

    def instance_at(self, address: str) -> Instance | None:
        for instance in self.instances.values():
            if instance.address == address:
                return instance
        return None

    def replica_status(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        """aurora_replica_status() as seen from ``instance_id`` (default: the writer)."""
        instance = self.instances[instance_id] if instance_id else self.writer
        return instance.records("SELECT * FROM aurora_replica_status()", self.database)

    def endpoints(self) -> dict[str, Any]:
        """Everything a client needs, JSON-able (what the CLI prints)."""
        return {
            "cluster_endpoint": self.cluster_endpoint,
            "reader_endpoint": self.reader_endpoint,
            "port": self.port,
            "database": self.database,
            "user": SUPERUSER,
            "ttl": self.dns.ttl,
            "dns_delay": self.dns_delay,
            "instances": {
                i.id: {
                    "endpoint": i.endpoint,
                    "address": i.address,
                    "role": i.role,
                    "server_port": i.pg_port,
                    "replay_paused": i.replay_paused,
                }
                for i in self.instances.values()
            },
        }

    def database_settings(self, endpoint: str | None = None, **aurora: Any) -> dict[str, Any]:
        """A DATABASES entry on ``endpoint`` (default the cluster endpoint) using this cluster's DNS."""
        return {
            "ENGINE": "aurora_backend",
            "NAME": self.database,
            "USER": SUPERUSER,
            "PASSWORD": PASSWORD,
            "HOST": endpoint or self.cluster_endpoint,
            "PORT": str(self.port),
            "OPTIONS": {"aurora": {"resolver": self.dns, **aurora}},
        }

    # -- silent hosts ------------------------------------------------------------------

    def silence(self, instance_id: str) -> None:
        """The instance's host stops answering: its packets are dropped, no FIN, no RST
        (needs ``AuroraCluster(silent_hosts=True)``). The server behind it keeps running."""
        self._silent_host(instance_id).silence()

    def unsilence(self, instance_id: str) -> None:
        """The instance's host answers again."""
        self._silent_host(instance_id).restore()

    def _silent_host(self, instance_id: str) -> Any:
        host = self.instances[instance_id].silent_host
        if host is None:
            raise ValueError("silence(%r): start the cluster with AuroraCluster(silent_hosts=True)" % instance_id)
        return host

    # -- replica lag -------------------------------------------------------------------

    def pause_replay(self, instance_id: str) -> None:
        """Stop applying WAL on a reader: it lags (and says so) until :meth:`resume_replay`."""
        instance = self._reader(instance_id)
        instance.scalar("SELECT pg_wal_replay_pause()")
        instance.replay_paused = True

    def resume_replay(self, instance_id: str) -> None:
        instance = self._reader(instance_id)
        instance.scalar("SELECT pg_wal_replay_resume()")
        instance.replay_paused = False

    def replica_lag_ms(self, instance_id: str) -> float | None:
        """The reader's replica_lag_in_msec as aurora_replica_status() on the reader reports it."""
        for row in self.replica_status(instance_id):
            if row["server_id"] == instance_id:
                return row["replica_lag_in_msec"]
        return None

    def _reader(self, instance_id: str) -> Instance:
        instance = self.instances.get(instance_id)
        if instance is None or instance.role != READER:
            raise ValueError(
                "%r is not a reader of this cluster; readers: %s"
                % (instance_id, ", ".join(i.id for i in self.readers) or "none")
            )
        return instance

    # -- failover ----------------------------------------------------------------------

    def failover(self, target: str | None = None, old_writer: str = READER) -> dict[str, Any]:
        """Promote a reader for real; see :mod:`aurora_backend.testing.aurora_failover`."""
        from aurora_backend.testing.aurora_failover import failover

        timeline = failover(self, target, old_writer)
        self.failovers.append(timeline)
        return timeline

    def restore(self, instance_id: str) -> None:
        """Bring an instance left down by ``failover(old_writer="down")`` back as a reader."""
        from aurora_backend.testing.aurora_failover import rebuild_as_reader

        rebuild_as_reader(self, self.instances[instance_id])
