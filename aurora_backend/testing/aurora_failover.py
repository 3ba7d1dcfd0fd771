"""Failover of a local Aurora cluster, step by step as Aurora does it.

1. The writer's connections die with ``FATAL 57P01 terminating connection due to
   administrator command`` and its endpoint refuses new ones; the server shuts down.
2. The chosen reader replays everything the old writer wrote (Aurora's storage is shared,
   so a committed transaction is never lost: txid_status answers the truth afterwards),
   then is promoted for real with ``pg_promote()``; its own connections are dropped, as
   the promoted Aurora instance restarts.
3. The other readers follow the new writer (new timeline, ``recovery_target_timeline``).
4. The cluster and reader endpoints move ``dns_delay`` seconds later (the DNS clock).
5. The old writer comes back as a reader, rebuilt from the new writer with
   pg_basebackup, or stays down (``old_writer="down"``) until ``cluster.restore(id)``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

from aurora_backend.testing import aurora_instance as ai
from aurora_backend.testing.aurora_instance import DOWN, READER, WRITER, Instance

if TYPE_CHECKING:  # pragma: no cover
    from aurora_backend.testing.aurora_cluster import AuroraCluster

logger = logging.getLogger("aurora_backend")

OLD_WRITER_MODES = (READER, DOWN)


def failover(cluster: AuroraCluster, target: str | None, old_writer: str) -> dict[str, Any]:
    """Run a failover; returns its timeline (seconds since the writer's connections died)."""
    if old_writer not in OLD_WRITER_MODES:
        raise ValueError(
            "failover(old_writer=%r): use %r (rebuilt as a reader) or %r (left down)" % (old_writer, READER, DOWN)
        )
    old = cluster.writer
    new = cluster._reader(target) if target else _pick_target(cluster)
    began = time.monotonic()
    timeline: dict[str, Any] = {"old_writer": old.id, "new_writer": new.id}

    def mark(step: str) -> None:
        timeline[step] = round(time.monotonic() - began, 4)

    assert old.sim is not None and new.sim is not None
    old.sim.refuse(True)
    timeline["killed_connections"] = old.sim.drop_all(silent=False)
    old.role = DOWN
    mark("kill")
    end_lsn = _shut_down(old)
    mark("writer_down")
    if new.replay_paused:
        cluster.resume_replay(new.id)
    ai.wait_until(lambda: _replayed(new, end_lsn), 30, "%s replaying the old writer's WAL" % new.id)
    mark("caught_up")
    new.sim.drop_all(silent=False)
    mark("promote")
    new.scalar("SELECT pg_promote(true, 30)")
    new.role = WRITER
    mark("promoted")
    for reader in cluster.readers:
        ai.follow(reader, new.pg_port)
    timeline["dns_due"] = publish(cluster, delay=cluster.dns_delay)
    timeline["dns_moves_after_promotion"] = cluster.dns_delay
    if old_writer == READER:
        rebuild_as_reader(cluster, old)
        mark("old_writer_back")
    logger.info("aurora cluster %s: failover %s -> %s: %s", cluster.name, old.id, new.id, timeline)
    return timeline


def _pick_target(cluster: AuroraCluster) -> Instance:
    """Aurora promotes by promotion tier, then size; here: the first reader not paused, else the first."""
    readers = cluster.readers
    if not readers:
        raise RuntimeError("aurora cluster %s: failover needs a reader to promote and has none" % cluster.name)
    live = [r for r in readers if not r.replay_paused]
    return (live or readers)[0]


def _shut_down(old: Instance) -> str:
    """Stop the old writer cleanly (its walsenders ship the last WAL); returns its last LSN."""
    old.server.stop("fast")
    out = old.server._run(os.path.join(old.server.bin, "pg_controldata"), old.server.datadir).stdout
    match = re.search(rb"Latest checkpoint location:\s*([0-9A-F]+/[0-9A-F]+)", out)
    if match is None:
        raise RuntimeError("pg_controldata of %s printed no checkpoint location" % old.id)
    return match.group(1).decode()


def _replayed(instance: Instance, lsn: str) -> bool:
    return bool(instance.scalar("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]))


def publish(cluster: AuroraCluster, delay: float) -> float:
    """Move the cluster and reader endpoints to the current roles after ``delay`` (DNS clock)."""
    readers = [i.address for i in cluster.readers] or [cluster.writer.address]
    cluster.dns.set(cluster.reader_endpoint, readers, delay=delay, pick_one=True)
    return cluster.dns.set(cluster.cluster_endpoint, [cluster.writer.address], delay=delay)


def rebuild_as_reader(cluster: AuroraCluster, instance: Instance) -> None:
    """Replace ``instance``'s server by a fresh standby of the current writer, same port."""
    if instance.role != DOWN:
        raise ValueError("restore(%r): the instance is a %s, not down" % (instance.id, instance.role))
    old_server = instance.server
    if old_server.is_running():
        old_server.stop("fast")
    server = ai.new_reader(cluster.writer.server, instance.id, port=old_server.port)
    cluster._reaper.register(server.base, server.bin, server.as_postgres)
    old_server.destroy()
    cluster._reaper.forget(old_server.base)
    server.start()
    moved = server.port != old_server.port
    instance.server = server
    instance.replay_paused = False
    assert instance.sim is not None
    if moved:  # another process took the port meanwhile: a new simulator on the same endpoint
        instance.sim.stop()
        instance.sim = instance.new_simulator(int(cluster.port or 0)).start()
    else:
        instance.sim.reset()
    instance.role = READER
    if moved:
        cluster.install_functions()
    due = cluster.dns.pending(cluster.cluster_endpoint)
    delay = max(0.0, due - cluster.clock()) if due is not None else 0.0
    readers = [i.address for i in cluster.readers]
    cluster.dns.set(cluster.reader_endpoint, readers, delay=delay, pick_one=True)
    cluster.wait_streaming()
