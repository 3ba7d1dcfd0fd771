"""Failover faster than DNS: the DNS path against the topology path, on a local Aurora cluster.

Two aliases on the same cluster endpoint of ``aurora_backend.testing.AuroraCluster``
(Aurora's timings: DNS TTL 5 s, the record moving 5 s after the promotion): "dns" with
``OPTIONS["aurora"]["topology"] = False`` and "topology" with the default (on). One
thread per alias writes in a loop (``INSERT ... RETURNING aurora_db_instance_identifier()``,
outside any transaction); ``--failovers`` real failovers (``pg_promote()``) follow one
another. Printed per failover and as median / max: the first write acknowledged by the
new writer, in seconds after ``pg_promote()`` was called, and the write errors each alias's
application saw (a plain INSERT in flight when the writer dies is an error on either path:
the ENGINE re-runs reads only).

    python bench/bench_topology.py              # 5 failovers
    python bench/bench_topology.py --quick      # 1 failover, TTL and delay 1 s
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_cluster import Writer, first_write  # noqa: E402
from common import configure_django, median, print_machine  # noqa: E402

from aurora_backend.testing.aurora_cluster import AuroraCluster  # noqa: E402

PATHS = ("dns", "topology")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--dns-delay", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.failovers, args.ttl, args.dns_delay = 1, 1.0, 1.0
    with AuroraCluster(readers=args.readers, ttl=args.ttl, dns_delay=args.dns_delay) as cluster:
        common = {"connect_deadline": 60, "connect_timeout": 2}
        configure_django(
            {
                "default": cluster.database_settings(**common),
                "dns": cluster.database_settings(topology=False, **common),
                "topology": cluster.database_settings(topology=True, **common),
            },
            migrate=(),
        )
        from django.db import connections

        with connections["default"].cursor() as cur:
            cur.execute("CREATE TABLE bench_writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
        connections["default"].close()
        print_machine()
        print(
            "DNS: ttl %.1f s, record moves %.1f s after promotion; %d readers"
            % (args.ttl, args.dns_delay, args.readers)
        )
        writers = {path: Writer(path) for path in PATHS}
        for writer in writers.values():
            writer.start()
        time.sleep(1.0)
        rows: list[dict[str, Any]] = []
        try:
            for _ in range(args.failovers):
                rows.append(one(cluster, writers, args.ttl + args.dns_delay + 30))
                time.sleep(args.ttl + args.dns_delay + 1)  # DNS settled: the next failover starts clean
        finally:
            for writer in writers.values():
                writer.stop.set()
                writer.join(30)
        report(rows)


def one(cluster: AuroraCluster, writers: dict[str, Writer], wait: float) -> dict[str, Any]:
    began = time.monotonic()
    timeline = cluster.failover()
    row: dict[str, Any] = {"old": timeline["old_writer"], "new": timeline["new_writer"], "promote": timeline["promote"]}
    for path, writer in writers.items():
        seen = first_write(writer, timeline["new_writer"], began, wait)
        row[path] = None if seen["first_write"] is None else round(seen["first_write"] - timeline["promote"], 3)
        row[path + "_errors"] = seen["app_errors"]
    return row


def report(rows: list[dict[str, Any]]) -> None:
    print("first write acknowledged by the new writer, seconds after pg_promote() was called:")
    print("  %-3s %-27s %-10s %-12s %-10s %-12s" % ("#", "old -> new", "dns", "dns errors", "topology", "topo errors"))
    for i, row in enumerate(rows, 1):
        print(
            "  %-3d %-27s %-10s %-12d %-10s %-12d"
            % (
                i,
                "%s -> %s" % (row["old"][-10:], row["new"][-10:]),
                row["dns"],
                row["dns_errors"],
                row["topology"],
                row["topology_errors"],
            )
        )
    for path in PATHS:
        values = [r[path] for r in rows if r[path] is not None]
        print(
            "%-8s path: median %.3f s, max %.3f s after the promotion call (%d/%d failovers); app errors %d"
            % (
                path,
                median(values),
                max(values) if values else 0.0,
                len(values),
                len(rows),
                sum(r[path + "_errors"] for r in rows),
            )
        )


if __name__ == "__main__":
    main()
