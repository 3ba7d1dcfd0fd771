"""A local Aurora Global Database: a primary region and a secondary region, in real replication.

The primary region is an :class:`AuroraCluster` (a writer and its readers). The secondary
region is a cascaded standby cluster with its own endpoints: its first instance streams
from the primary's writer, its other instances from that first instance. One
:class:`ClusterDNS` answers every endpoint of both regions and the global writer endpoint
``<name>.global-<id>.global.rds.localhost``. ``aurora_global_db_instance_status()`` and
``aurora_global_db_status()`` are computed from live replication (testing/global_sql.py).

    with GlobalDatabase() as gdb:
        DATABASES["default"] = gdb.database_settings()              # the global writer endpoint
        DATABASES["reader"] = gdb.database_settings(gdb.reader_endpoint("local-2"), home_region="local-2")
        gdb.switchover("local-2")   # planned: no data loss, the regions swap roles
        gdb.failover("local-1")     # unplanned: the primary region is lost, a secondary promoted

See docs/global_database.md for the steps and what is assumed of Aurora.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aurora_backend.simulator import AuroraSimulator
from aurora_backend.testing import aurora_instance as ai
from aurora_backend.testing.aurora_cluster import ADMIN_DATABASES, DOMAIN, AuroraCluster
from aurora_backend.testing.aurora_dns import ClusterDNS, TestClock
from aurora_backend.testing.aurora_failover import replayed
from aurora_backend.testing.aurora_instance import DOWN, READER, WRITER, Instance
from aurora_backend.testing.cluster import PASSWORD, SUPERUSER
from aurora_backend.testing.global_sql import install_global_sql
from aurora_backend.testing.reaper import Reaper

logger = logging.getLogger("aurora_backend")

GLOBAL_DOMAIN = "global.rds.localhost"


@dataclass
class Region:
    """One region's cluster: its identifier, endpoint domain and instances (in order)."""

    name: str  # aws_region
    cluster: str
    domain: str
    instances: list[Instance] = field(default_factory=list)
    detached: bool = False

    @property
    def cluster_endpoint(self) -> str:
        return "%s.cluster-%s" % (self.cluster, self.domain)

    @property
    def reader_endpoint(self) -> str:
        return "%s.cluster-ro-%s" % (self.cluster, self.domain)

    @property
    def template(self) -> str:
        return "{instance}.%s" % self.domain

    @property
    def live(self) -> list[Instance]:
        return [i for i in self.instances if i.role != DOWN]

    @property
    def writer(self) -> Instance | None:
        return next((i for i in self.instances if i.role == WRITER), None)


class GlobalDatabase:
    """Two regions of one global database; ``start()``, ``switchover()``, ``failover()``, ``stop()``."""

    def __init__(
        self,
        name: str = "gdb",
        regions: tuple[str, str] = ("local-1", "local-2"),
        readers: int = 1,
        ttl: float = 5.0,
        dns_delay: float = 5.0,
        database: str = "aurora",
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.rng = rng or random.Random()
        self.clock = clock or TestClock()
        self.name = name
        self.dns_delay = float(dns_delay)
        self.dns = ClusterDNS(ttl=ttl, clock=self.clock, rng=self.rng)
        self.global_endpoint = "%s.global-%012x.%s" % (name, self.rng.getrandbits(48), GLOBAL_DOMAIN)
        self.primary = AuroraCluster(
            readers=readers,
            name="%s-%s" % (name, regions[0]),
            ttl=ttl,
            dns_delay=dns_delay,
            database=database,
            clock=self.clock,
            rng=self.rng,
        )
        self.primary.dns = self.dns
        self.database = database
        self.readers_wanted = readers
        token = "%012x" % self.rng.getrandbits(48)
        domain = "%s.%s" % (token, DOMAIN.replace("local-1", regions[1]))
        second = Region(regions[1], "%s-%s" % (name, regions[1]), domain)
        self.regions: dict[str, Region] = {
            regions[0]: Region(regions[0], self.primary.name, self.primary.domain.replace("local-1", regions[0])),
            regions[1]: second,
        }
        self.events: list[dict[str, Any]] = []
        self._reaper = Reaper()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> GlobalDatabase:
        try:
            primary = self.regions[self.primary_region]
            primary.domain = self.primary.domain
            self.primary.start()
            primary.instances = list(self.primary.instances.values())
            self._start_secondary(self._secondary_regions()[0])
            self.install_functions()
            self.publish()
            self.wait_streaming()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def primary_region(self) -> str:
        for region in self.regions.values():
            if region.writer is not None:
                return region.name
        return next(iter(self.regions))  # before start: the first

    def _secondary_regions(self) -> list[Region]:
        return [r for r in self.regions.values() if r.name != self.primary_region and not r.detached]

    def _start_secondary(self, region: Region) -> None:
        """The secondary cluster: instance 1 streams from the primary's writer, the others from it."""
        subnet = (self.primary.subnet + 1 + self.rng.randrange(60)) % 250 + 2
        head: Instance | None = None
        for k in range(self.readers_wanted + 1):
            instance_id = "%s-instance-%d" % (region.cluster, k + 1)
            # Copied from the writer (a copy taken on a standby needs full_page_writes, off
            # here for speed), then streaming from the region's first instance: cascaded.
            server = ai.new_reader(self.primary.writer.server, instance_id)
            if head is not None:
                with open(os.path.join(server.datadir, "postgresql.auto.conf"), "a") as fh:
                    fh.write(
                        "primary_conninfo = '%s'\n"
                        % ai.primary_conninfo(head.pg_port, instance_id, os.path.join(server.base, "pgpass"))
                    )
            self._reaper.register(server.base, server.bin, server.as_postgres)
            instance = Instance(
                instance_id, "%s.%s" % (instance_id, region.domain), "127.0.%d.%d" % (subnet, k + 1), READER, server
            )
            region.instances.append(instance)
            server.start()
            instance.sim = AuroraSimulator(
                upstream=("127.0.0.1", server.port), listen=[(instance.address, int(self.port))]
            ).start()
            head = head or instance

    def install_functions(self) -> None:
        """(Re)create the global functions on the global writer (every instance gets them)."""
        sql = install_global_sql(
            {i.id: (r.name, i.pg_port) for r in self.regions.values() if not r.detached for i in r.instances}
        )
        for dbname in ADMIN_DATABASES + (self.database,):
            self.writer.query(sql, dbname=dbname)

    def publish(self, delay: float = 0.0) -> float:
        """Point every endpoint at the current roles ``delay`` seconds from now (DNS clock)."""
        due = 0.0
        for region in self.regions.values():
            for instance in region.instances:
                self.dns.set(instance.endpoint, [instance.address])
            if region.detached:
                continue
            head = region.writer or (region.live[0] if region.live else None)
            if head is None:
                continue
            readers = [i.address for i in region.live if i is not head] or [head.address]
            self.dns.set(region.reader_endpoint, readers, delay=delay, pick_one=True)
            due = self.dns.set(region.cluster_endpoint, [head.address], delay=delay)
        return max(due, self.dns.set(self.global_endpoint, [self.writer.address], delay=delay))

    def wait_streaming(self, timeout: float = 30.0) -> None:
        """Block until every live instance has replayed the writer's current WAL."""
        writer = self.writer
        writer.scalar("SELECT txid_current()")
        lsn = writer.scalar("SELECT pg_current_wal_insert_lsn()::text")
        for instance in self.instances():
            if instance.role == READER and not instance.replay_paused:
                ai.wait_until(lambda i=instance: replayed(i, lsn), timeout, "%s replaying %s" % (instance.id, lsn))

    def stop(self) -> None:
        for region in list(self.regions.values())[1:]:
            for instance in region.instances:
                if instance.sim is not None:
                    instance.sim.stop()
            for instance in region.instances:
                try:
                    instance.server.destroy()
                except Exception as exc:
                    logger.warning("global database: removing %s failed: %s", instance.id, exc)
                self._reaper.forget(instance.server.base)
        self.primary.stop()
        self._reaper.close()

    def __enter__(self) -> GlobalDatabase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observation -------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self.primary.port or 0)

    @property
    def writer(self) -> Instance:
        for region in self.regions.values():
            if region.writer is not None and not region.detached:
                return region.writer
        raise RuntimeError("global database %s has no writer right now" % self.name)

    def instances(self) -> list[Instance]:
        return [i for r in self.regions.values() for i in r.instances]

    def instance(self, instance_id: str) -> Instance:
        return next(i for i in self.instances() if i.id == instance_id)

    def region_of(self, instance_id: str) -> str:
        return next(r.name for r in self.regions.values() if any(i.id == instance_id for i in r.instances))

    def reader_endpoint(self, region: str) -> str:
        return self.regions[region].reader_endpoint

    def templates(self) -> dict[str, str]:
        """Each region's instance endpoint template (OPTIONS["aurora"]["global_instance_templates"])."""
        return {r.name: r.template for r in self.regions.values()}

    def status(
        self, sql: str = "SELECT * FROM aurora_global_db_instance_status()", instance_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The rows of a global function as seen from ``instance_id`` (default: the writer)."""
        instance = self.instance(instance_id) if instance_id else self.writer
        return instance.records(sql, self.database)

    def database_settings(self, endpoint: str | None = None, **aurora: Any) -> dict[str, Any]:
        """A DATABASES entry on ``endpoint`` (default: the global writer endpoint)."""
        aurora.setdefault("global_instance_templates", self.templates())
        return {
            "ENGINE": "aurora_backend",
            "NAME": self.database,
            "USER": SUPERUSER,
            "PASSWORD": PASSWORD,
            "HOST": endpoint or self.global_endpoint,
            "PORT": str(self.port),
            "OPTIONS": {"aurora": {"resolver": self.dns, **aurora}},
        }

    # -- replica lag -------------------------------------------------------------------

    def pause_replay(self, instance_id: str) -> None:
        instance = self.instance(instance_id)
        instance.scalar("SELECT pg_wal_replay_pause()")
        instance.replay_paused = True

    def resume_replay(self, instance_id: str) -> None:
        instance = self.instance(instance_id)
        instance.scalar("SELECT pg_wal_replay_resume()")
        instance.replay_paused = False

    # -- switchover and failover ---------------------------------------------------------

    def switchover(self, target: str) -> dict[str, Any]:
        """Planned: see :mod:`aurora_backend.testing.global_failover`."""
        from aurora_backend.testing.global_failover import switchover

        timeline = switchover(self, self.regions[target])
        self.events.append(timeline)
        return timeline

    def failover(self, target: str, lose_unshipped: bool = False) -> dict[str, Any]:
        """Unplanned (detach and promote): see :mod:`aurora_backend.testing.global_failover`."""
        from aurora_backend.testing.global_failover import failover

        timeline = failover(self, self.regions[target], lose_unshipped)
        self.events.append(timeline)
        return timeline
