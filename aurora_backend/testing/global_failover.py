"""Switchover and failover of a local global database, step by step (docs/global_database.md).

Switchover (planned, no data loss; AWS: "switchover", formerly "managed planned failover"):

1. The primary's writer stops taking writes: its connections die (57P01) and its endpoint
   refuses new ones; the server shuts down cleanly, shipping its last WAL.
2. The target region's first instance replays all of it (nothing lost), then is promoted;
   its own connections are dropped (the promoted instance restarts, as on Aurora).
3. Every other instance follows the new writer; the old writer is rebuilt as a standby
   of it: the regions have swapped roles and the global database keeps both.
4. The global writer endpoint and the regions' cluster endpoints move ``dns_delay``
   seconds later (the DNS clock).

Failover (unplanned, "detach and promote"):

1. The primary region is lost: every instance's connections die, endpoints refuse, servers
   stop (``lose_unshipped=True``: at once, losing WAL not shipped yet, Aurora's RPO lag;
   default: a fast shutdown, which ships it, so a test's ledger can be exact).
2. The target region's first instance is promoted with what it has; its region's other
   instances follow it.
3. The lost region is detached: no longer part of the global database (its instances are
   not listed by ``aurora_global_db_instance_status()``; its endpoints keep answering
   with the dead addresses).
4. The global writer endpoint moves ``dns_delay`` seconds later.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from aurora_backend.simulator import AuroraSimulator
from aurora_backend.testing import aurora_instance as ai
from aurora_backend.testing.aurora_failover import _replayed, _shut_down
from aurora_backend.testing.aurora_instance import DOWN, READER, WRITER, Instance

if TYPE_CHECKING:  # pragma: no cover
    from aurora_backend.testing.global_db import GlobalDatabase, Region

logger = logging.getLogger("aurora_backend")


def _target_head(gdb: GlobalDatabase, target: Region) -> Instance:
    if target.name == gdb.primary_region or target.detached or not target.live:
        raise ValueError(
            "%r is not a secondary region of %s; secondaries: %s"
            % (target.name, gdb.name, ", ".join(r.name for r in gdb._secondary_regions()) or "none")
        )
    return target.live[0]


def _promote(new: Instance, mark: Any) -> None:
    assert new.sim is not None
    new.sim.drop_all(silent=False)
    mark("promote")
    new.scalar("SELECT pg_promote(true, 30)")
    new.role = WRITER
    mark("promoted")


def switchover(gdb: GlobalDatabase, target: Region) -> dict[str, Any]:
    new = _target_head(gdb, target)
    old_region = gdb.regions[gdb.primary_region]
    old = gdb.writer
    began = time.monotonic()
    timeline: dict[str, Any] = {
        "kind": "switchover",
        "old_writer": old.id,
        "new_writer": new.id,
        "old_region": old_region.name,
        "new_region": target.name,
    }

    def mark(step: str) -> None:
        timeline[step] = round(time.monotonic() - began, 4)

    assert old.sim is not None
    old.sim.refuse(True)
    timeline["killed_connections"] = old.sim.drop_all(silent=False)
    old.role = DOWN
    mark("kill")
    end_lsn = _shut_down(old)
    mark("writer_down")
    for instance in target.live:
        if instance.replay_paused:
            gdb.resume_replay(instance.id)
    ai.wait_until(lambda: _replayed(new, end_lsn), 30, "%s replaying the old writer's WAL" % new.id)
    mark("caught_up")
    _promote(new, mark)
    for instance in [i for i in target.live if i is not new] + old_region.live:  # every reader: the new writer's
        if instance.replay_paused:
            gdb.resume_replay(instance.id)
        ai.follow(instance, new.pg_port)
    timeline["dns_due"] = gdb.publish(delay=gdb.dns_delay)
    _rebuild(gdb, old, new)
    mark("old_writer_back")
    gdb.wait_streaming()
    logger.info("global database %s: switchover %s -> %s: %s", gdb.name, old.id, new.id, timeline)
    return timeline


def failover(gdb: GlobalDatabase, target: Region, lose_unshipped: bool) -> dict[str, Any]:
    new = _target_head(gdb, target)
    lost = gdb.regions[gdb.primary_region]
    old = gdb.writer
    began = time.monotonic()
    timeline: dict[str, Any] = {
        "kind": "failover",
        "old_writer": old.id,
        "new_writer": new.id,
        "old_region": lost.name,
        "new_region": target.name,
    }

    def mark(step: str) -> None:
        timeline[step] = round(time.monotonic() - began, 4)

    for instance in lost.live:
        assert instance.sim is not None
        instance.sim.refuse(True)
        instance.sim.drop_all(silent=False)
    mark("kill")
    for instance in [old] + [i for i in lost.live if i is not old]:
        instance.server.stop("immediate" if lose_unshipped else "fast")
        instance.role = DOWN
    mark("region_down")
    for instance in target.live:
        if instance.replay_paused:
            gdb.resume_replay(instance.id)
    _promote(new, mark)
    for instance in target.live:
        if instance is not new:
            ai.follow(instance, new.pg_port)
    lost.detached = True
    gdb.install_functions()  # the detached region is no longer part of the global database
    timeline["dns_due"] = gdb.publish(delay=gdb.dns_delay)
    gdb.wait_streaming()
    logger.info("global database %s: failover %s -> %s: %s", gdb.name, old.id, new.id, timeline)
    return timeline


def _rebuild(gdb: GlobalDatabase, instance: Instance, writer: Instance) -> None:
    """Replace ``instance``'s server by a fresh standby of ``writer`` on the same port."""
    old_server = instance.server
    server = ai.new_reader(writer.server, instance.id, port=old_server.port)
    gdb._reaper.register(server.base, server.bin, server.as_postgres)
    old_server.destroy()
    server.start()
    moved = server.port != old_server.port
    instance.server = server
    instance.replay_paused = False
    assert instance.sim is not None
    if moved:
        instance.sim.stop()
        instance.sim = AuroraSimulator(
            upstream=("127.0.0.1", server.port), listen=[(instance.address, gdb.port)]
        ).start()
    else:
        instance.sim.reset()
    instance.role = READER
    if moved:
        gdb.install_functions()
