"""A local RDS Blue/Green deployment: two local Aurora clusters, logical replication, switchover.

``blue`` is an :class:`AuroraCluster` (``wal_level=logical``, as ``rds.logical_replication``
needs a reboot on RDS); :meth:`create` starts ``green`` (``<name>-green-<6 hex>``, the
same port and DNS), copies blue's ``public`` schema and feeds green by a publication and
subscription. :meth:`switchover` does RDS's documented switchover actions, in RDS's order
(https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/blue-green-deployments-switching.html#blue-green-deployments-switching-actions),
and publishes each phase through ``pg_catalog.get_blue_green_fast_switchover_metadata()``
on both writers (bluegreen_sql.py). What is documented and what is assumed: docs/bluegreen.md.

    with BlueGreenDeployment(ttl=0.5) as bg:
        DATABASES["default"] = bg.blue.database_settings(blue_green=True)
        bg.create()
        bg.switchover()
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any

from aurora_backend.testing import aurora_instance as ai
from aurora_backend.testing import bluegreen_sql as sql
from aurora_backend.testing.aurora_cluster import AuroraCluster
from aurora_backend.testing.aurora_instance import Instance

logger = logging.getLogger("aurora_backend")


class GreenCluster(AuroraCluster):
    """Green's instances are named as RDS names them: ``<blue instance>-green-<suffix>``."""

    blue_name = ""
    suffix = ""

    def _instance_id(self, k: int) -> str:
        return "%s-instance-%d-green-%s" % (self.blue_name, k + 1, self.suffix)


def old_name(endpoint: str) -> str:
    """``mydb.cluster-x.rds...`` -> ``mydb-old1.cluster-x.rds...``: RDS's rename of old blue."""
    first, _, rest = endpoint.partition(".")
    return "%s-old1.%s" % (first, rest)


class BlueGreenDeployment:
    """Blue (started by :meth:`start`), green (:meth:`create`), :meth:`switchover`, :meth:`stop`."""

    def __init__(
        self,
        name: str = "bg",
        readers: int = 0,
        ttl: float = 5.0,
        database: str = "aurora",
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        preparation: float = 1.0,
        post: float = 1.0,
        catch_up_timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rng = rng or random.Random()
        self.name = name
        self.clock = clock
        self.sleep = sleep
        self.preparation = preparation
        self.post = post
        self.catch_up_timeout = catch_up_timeout
        self.blue = AuroraCluster(
            readers=readers, name=name, ttl=ttl, dns_delay=0.0, database=database, clock=clock, rng=self.rng
        )
        self.green: AuroraCluster | None = None
        self.id = "bgd-%014x" % self.rng.getrandbits(56)
        self.phase = "NOT_CREATED"
        #: (phase, clock time it was published) in order; a rollback appears as CREATED again.
        self.timeline: list[tuple[str, float]] = []
        #: Server time (clock_timestamp() on green) at which the endpoint names moved.
        self.switched_at: Any | None = None
        self.blue_addresses: list[str] = []
        #: (clock time blue stopped writes, clock time green accepted connections): the floor
        #: of any client's write outage.
        self.blocked: tuple[float, float] | None = None
        self._admin: dict[int, Any] = {}  # writer's server port -> a kept connection (fast publish)

    @property
    def dns(self) -> Any:
        return self.blue.dns

    @property
    def database(self) -> str:
        return self.blue.database

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> BlueGreenDeployment:
        self.blue.start()
        try:
            writer = self.blue.writer
            writer.query("ALTER SYSTEM SET wal_level = logical")
            writer.server.restart()
            self._install(self.blue)
        except BaseException:
            self.stop()
            raise
        return self

    def _install(self, cluster: AuroraCluster) -> None:
        cluster.writer.query(sql.INSTALL_SQL, dbname=cluster.database)

    def create(self) -> AuroraCluster:
        """CreateBlueGreenDeployment: start green, copy the schema, replicate, publish CREATED."""
        blue = self.blue
        suffix = "%06x" % self.rng.getrandbits(24)
        green = GreenCluster(
            readers=blue.readers_wanted,
            name="%s-green-%s" % (self.name, suffix),
            ttl=blue.dns.ttl,
            dns_delay=0.0,
            database=blue.database,
            port=blue.port,
            clock=self.clock,
            rng=random.Random(self.rng.getrandbits(64)),
            subnet=64 + (blue.subnet - 64 + 1 + self.rng.randrange(126)) % 128,
        )
        green.blue_name, green.suffix = self.name, suffix
        green.dns, green.domain = blue.dns, blue.domain  # one account, one region: one DNS suffix
        green.cluster_endpoint = "%s.cluster-%s" % (green.name, blue.domain)
        green.reader_endpoint = "%s.cluster-ro-%s" % (green.name, blue.domain)
        self.green = green
        green.start()
        self._install(green)
        self._copy_schema()
        blue.writer.query(sql.PUBLISH_SQL, dbname=blue.database)
        passfile = os.path.join(green.writer.server.base, "pgpass")
        green.writer.query(sql.subscribe_sql(blue.writer.pg_port, blue.database, passfile), dbname=green.database)
        ai.wait_until(
            lambda: green.writer.scalar(sql.SYNCED_SQL, dbname=green.database),
            self.catch_up_timeout,
            "the initial copy of blue's tables to green",
        )
        self.publish("CREATED")
        return green

    def _copy_schema(self) -> None:
        """Blue's ``public`` schema (no data: the subscription copies it) on green."""
        blue, green = self.blue.writer, self._green().writer
        dump = os.path.join(blue.server.base, "schema.sql")
        passfile = os.path.join(blue.server.base, "pgpass")
        blue.server._run(
            "env",
            "PGPASSFILE=" + passfile,
            os.path.join(blue.server.bin, "pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(blue.pg_port),
            "-U",
            "postgres",
            "-d",
            self.database,
            "-s",
            "-n",
            "public",
            "--no-owner",
            "--no-publications",
            "-f",
            dump,
        )
        with open(dump) as fh:  # green has its public schema and the local cluster's helpers already
            text = (
                fh.read()
                .replace("CREATE SCHEMA public;", "")
                .replace("CREATE FUNCTION public.", "CREATE OR REPLACE FUNCTION public.")
            )
        with open(dump, "w") as fh:
            fh.write(text)
        _run_logged(
            green.server,
            "env",
            "PGPASSFILE=" + passfile,
            os.path.join(green.server.bin, "psql"),
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            str(green.pg_port),
            "-U",
            "postgres",
            "-d",
            self.database,
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            dump,
        )

    def stop(self) -> None:
        """Stop both environments and remove their files; safe to call twice."""
        for conn in self._admin.values():
            conn.close()
        self._admin.clear()
        if self.green is not None:
            try:
                self._drop_subscription()
            except Exception as exc:  # green may already be gone
                logger.debug("blue/green: dropping the subscription failed: %s", exc)
            self.green.stop()
        self.blue.stop()

    def __enter__(self) -> BlueGreenDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the metadata --------------------------------------------------------------------

    def _green(self) -> AuroraCluster:
        if self.green is None:
            raise RuntimeError("blue/green %s: no green environment yet; call create() first" % self.id)
        return self.green

    def rows(self, phase: str) -> list[tuple[Any, ...]]:
        """One row per endpoint of both environments, as get_blue_green_fast_switchover_metadata() has them."""
        status = sql.STATUS_OF_PHASE[phase]
        rows = []
        for role, cluster in ((sql.SOURCE, self.blue), (sql.TARGET, self.green)):
            if cluster is None:
                continue
            names = [cluster.cluster_endpoint, cluster.reader_endpoint] + [
                i.endpoint for i in cluster.instances.values()
            ]
            rows += [(self.id, name, cluster.port, role, status, sql.VERSION) for name in names]
        return rows

    def publish(self, phase: str) -> None:
        """Write ``phase``'s rows on both writers (each sees the whole deployment), then note it."""
        rows = self.rows(phase)
        for cluster in (self.blue, self.green):
            if cluster is None:
                continue
            conn = self._admin.get(cluster.writer.pg_port)
            if conn is None:  # kept open: a phase change is visible within a round trip
                conn = self._admin[cluster.writer.pg_port] = cluster.writer.admin(cluster.database)
                with conn.cursor() as cur:
                    cur.execute("SET default_transaction_read_only = off")  # blue stops writes: not ours
                    cur.execute("SET synchronous_commit = local")  # whatever a test made the app's commits wait for
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute(sql.CLEAR_SQL)
                cur.executemany(sql.INSERT_SQL, rows)
                cur.execute("COMMIT")
        self.phase = phase
        self.timeline.append((phase, self.clock()))
        logger.info("blue/green %s: %s", self.id, phase)

    def metadata(self, side: str = "blue") -> list[dict[str, Any]]:
        """What the metadata function answers on ``side``'s writer ("blue" or "green")."""
        cluster = self.blue if side == "blue" else self._green()
        return cluster.writer.records(
            "SELECT * FROM pg_catalog.get_blue_green_fast_switchover_metadata('aurora_backend')", cluster.database
        )

    # -- switchover ----------------------------------------------------------------------

    def switchover(self, rollback: bool = False) -> list[tuple[str, float]]:
        """SwitchoverBlueGreenDeployment, step by step; ``rollback``: stop before IN_PROGRESS."""
        green = self._green()
        self.publish("PREPARATION")  # 1. guardrails: green replicates and has caught up
        ai.wait_until(
            lambda: green.writer.scalar("SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL") > 0,
            10,
            "green's replication",
        )
        self.sleep(self.preparation)
        if rollback:
            self.publish("CREATED")  # "any changes are rolled back, and no changes are made"
            return self.timeline
        self.publish("IN_PROGRESS")
        self._read_only(self.blue, True)  # 2. stop new writes (green's: its listeners refuse next)
        for instance in self._instances():  # 3. drop connections, allow no new ones
            assert instance.sim is not None
            instance.sim.refuse(True)
            instance.sim.drop_all(silent=False)
        stopped = self.clock()  # (a COMMIT sent before the drop may still be acknowledged)
        self._writes_ended()
        self._catch_up()  # 4. green in sync with blue (and its sequences)
        self._rename()  # 5. green takes blue's names, blue gets -old1
        self._drop_subscription()
        for instance in self._instances():  # 6. allow connections in both environments
            assert instance.sim is not None
            instance.sim.refuse(False)
        self.blocked = (stopped, self.clock())
        # 7. writes on the new production cluster (green never stopped them); old blue stays read-only
        self.publish("POST")
        self.sleep(self.post)
        self.publish("COMPLETED")
        return self.timeline

    def _instances(self) -> list[Instance]:
        return list(self.blue.instances.values()) + list(self._green().instances.values())

    def _read_only(self, cluster: AuroraCluster, on: bool) -> None:
        setting = (
            "ALTER SYSTEM SET default_transaction_read_only = on"
            if on
            else "ALTER SYSTEM RESET default_transaction_read_only"
        )
        cluster.writer.query(setting)
        cluster.writer.query("SELECT pg_reload_conf()")

    def _writes_ended(self) -> None:
        """A transaction already committing when its client was dropped ends on its own."""
        ai.wait_until(
            lambda: (
                self.blue.writer.scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
                )
                == 0
            ),
            self.catch_up_timeout,
            "blue's last transactions to end",
        )

    def _catch_up(self) -> None:
        blue, green = self.blue.writer, self._green().writer
        lsn = blue.scalar("SELECT pg_current_wal_lsn()::text")
        ai.wait_until(lambda: blue.scalar(sql.CAUGHT_UP_SQL, [lsn]), self.catch_up_timeout, "green catching up")
        # Logical replication copies no sequence value: set green's to blue's (as RDS does
        # at switchover, docs/bluegreen.md), so the next id on green follows blue's last.
        values = blue.query(
            "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences "
            "WHERE schemaname = 'public' AND last_value IS NOT NULL",
            dbname=self.database,
        )
        for name, value in values:
            green.query("SELECT setval(%s, %s)", [name, value], dbname=self.database)

    def _rename(self) -> None:
        """Endpoint names move (the DNS records change; cached answers live out their TTL)."""
        blue, green = self.blue, self._green()
        self.blue_addresses = [i.address for i in blue.instances.values()]
        green_readers = [i.address for i in green.readers] or [green.writer.address]
        moves = [
            (blue.cluster_endpoint, green.cluster_endpoint, [green.writer.address], False),
            (blue.reader_endpoint, green.reader_endpoint, green_readers, True),
        ]
        moves += [
            (b.endpoint, g.endpoint, [g.address], False)
            for b, g in zip(blue.instances.values(), green.instances.values(), strict=False)
        ]
        for blue_name, green_name, addresses, pick_one in moves:
            old_addresses = self.dns.authoritative(blue_name)
            self.dns.remove(green_name)
            self.dns.set(old_name(blue_name), old_addresses, pick_one=pick_one)
            self.dns.set(blue_name, addresses, pick_one=pick_one)
        self.switched_at = green.writer.scalar("SELECT clock_timestamp()")
        blue.cluster_endpoint, green.cluster_endpoint = old_name(blue.cluster_endpoint), blue.cluster_endpoint
        blue.reader_endpoint, green.reader_endpoint = old_name(blue.reader_endpoint), blue.reader_endpoint
        for b, g in zip(blue.instances.values(), green.instances.values(), strict=False):
            b.endpoint, g.endpoint = old_name(b.endpoint), b.endpoint
        logger.info("blue/green %s: %s now names green (%s)", self.id, green.cluster_endpoint, green.writer.address)

    def _drop_subscription(self) -> None:
        green = self._green()
        exists = green.writer.scalar(
            "SELECT count(*) FROM pg_subscription WHERE subname = %s", [sql.SUBSCRIPTION], dbname=self.database
        )
        if exists:
            green.writer.query("ALTER SUBSCRIPTION %s DISABLE" % sql.SUBSCRIPTION, dbname=self.database)
            green.writer.query("ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % sql.SUBSCRIPTION, dbname=self.database)
            green.writer.query("DROP SUBSCRIPTION %s" % sql.SUBSCRIPTION, dbname=self.database)
            self.blue.writer.query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s AND NOT active",
                [sql.SUBSCRIPTION],
            )


def _run_logged(server: Any, *args: str) -> None:
    """Run a PostgreSQL client tool; its output in the error when it fails."""
    import subprocess

    try:
        server._run(*args)
    except subprocess.CalledProcessError as err:
        output = (err.stdout or b"").decode(errors="replace")
        raise RuntimeError("%s failed: %s" % (os.path.basename(args[2]), output.strip())) from err
