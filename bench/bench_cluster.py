"""A local Aurora cluster: its start time and the timeline of real failovers under the ENGINE.

Starts ``aurora_backend.testing.AuroraCluster`` (a writer and ``--readers`` readers in
streaming replication, each behind its simulator; Aurora's DNS with ``--ttl`` and
``--dns-delay``), points Django's "default" alias (ENGINE aurora_backend) at the cluster
endpoint, and keeps one thread writing (``INSERT ... RETURNING
aurora_db_instance_identifier()``, one statement at a time, outside any transaction: the
ENGINE's own healing only). For each of ``--failovers`` failovers it prints, in seconds
after the writer's connections were killed: the old writer down, the reader caught up,
promoted, the DNS record moving, the old writer back as a reader, and the first write
acknowledged by the new writer, with the write errors the application saw meanwhile.

    python bench/bench_cluster.py                 # Aurora's timings: TTL 5 s, DNS delay 5 s, 3 failovers
    python bench/bench_cluster.py --quick         # TTL and delay 0.5 s, 1 failover
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import configure_django, median, print_machine  # noqa: E402

from aurora_backend.testing.aurora_cluster import AuroraCluster  # noqa: E402


class Writer(threading.Thread):
    """Writes in a loop; records (time, instance) of each acknowledged write and each error."""

    def __init__(self, alias: str = "default") -> None:
        super().__init__(daemon=True)
        self.alias = alias
        self.acks: list[tuple[float, str]] = []
        self.errors: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from django.db import Error, connections

        while not self.stop.is_set():
            try:
                with connections[self.alias].cursor() as cur:
                    cur.execute("INSERT INTO bench_writes DEFAULT VALUES RETURNING aurora_db_instance_identifier()")
                    self.acks.append((time.monotonic(), cur.fetchone()[0]))
            except Error as exc:
                self.errors.append((time.monotonic(), type(exc).__name__))
                connections[self.alias].close()
                time.sleep(0.01)
            time.sleep(0.005)
        connections[self.alias].close()


def one_failover(cluster: AuroraCluster, writer: Writer, wait: float) -> dict[str, Any]:
    began = time.monotonic()
    timeline = cluster.failover()
    timeline["dns_move"] = round(timeline["promoted"] + timeline["dns_moves_after_promotion"], 3)
    timeline.update(first_write(writer, timeline["new_writer"], began, wait))
    return timeline


def first_write(writer: Writer, new: str, began: float, wait: float) -> dict[str, Any]:
    """When ``writer`` first got a write acknowledged by ``new`` after ``began``, and its errors."""
    deadline = time.monotonic() + wait
    first: float | None = None
    while first is None and time.monotonic() < deadline:
        first = next((t for t, who in list(writer.acks) if t >= began and who == new), None)
        time.sleep(0.01)
    return {
        "first_write": None if first is None else round(first - began, 3),
        "app_errors": sum(1 for t, _ in writer.errors if t >= began),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--dns-delay", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="TTL and DNS delay 0.5 s, 1 failover")
    args = parser.parse_args()
    if args.quick:
        args.ttl, args.dns_delay, args.failovers = 0.5, 0.5, 1
    cluster = AuroraCluster(readers=args.readers, ttl=args.ttl, dns_delay=args.dns_delay)
    began = time.monotonic()
    with cluster:
        started = time.monotonic() - began
        aurora = {"connect_deadline": 60, "connect_timeout": 2}
        configure_django({"default": cluster.database_settings(**aurora)}, migrate=())
        from django.db import connections

        with connections["default"].cursor() as cur:
            cur.execute("CREATE TABLE bench_writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
        print_machine()
        print(
            "cluster start: %.2f s (writer + %d readers, pg_basebackup each, simulators, Aurora functions)"
            % (started, args.readers)
        )
        print("DNS: ttl %.1f s, record moves %.1f s after promotion" % (args.ttl, args.dns_delay))
        writer = Writer()
        writer.start()
        time.sleep(0.5)
        rows = []
        try:
            for _ in range(args.failovers):
                rows.append(one_failover(cluster, writer, wait=args.ttl + args.dns_delay + 30))
                time.sleep(0.5)
        finally:
            writer.stop.set()
            writer.join(30)
        report(rows)


def report(rows: list[dict[str, Any]]) -> None:
    steps = ("writer_down", "caught_up", "promoted", "dns_move", "old_writer_back", "first_write")
    print("failover timeline (seconds after the writer's connections were killed):")
    print("  %-3s %-27s " % ("#", "old -> new") + " ".join("%-15s" % s for s in steps) + " app_errors")
    for i, row in enumerate(rows, 1):
        cells = " ".join("%-15s" % ("-" if row.get(s) is None else "%.3f" % row[s]) for s in steps)
        print(
            "  %-3d %-27s %s %d"
            % (i, "%s -> %s" % (row["old_writer"][-10:], row["new_writer"][-10:]), cells, row["app_errors"])
        )
    firsts = [r["first_write"] for r in rows if r["first_write"] is not None]
    print(
        "first successful write after the kill: median %.3f s, max %.3f s (%d/%d failovers)"
        % (median(firsts), max(firsts) if firsts else 0.0, len(firsts), len(rows))
    )


if __name__ == "__main__":
    main()
