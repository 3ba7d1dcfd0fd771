"""Write outage through an RDS Blue/Green switchover: aurora_backend against Django's stock backend.

On a local Blue/Green deployment (``aurora_backend.testing.bluegreen``: blue and green are
local Aurora clusters, green fed by logical replication; Aurora's DNS TTL of 5 s), one
writer thread per client writes in a loop, one ``INSERT ... RETURNING`` per transaction,
while ``switchover()`` runs RDS's switchover actions. Printed per client: the write outage
(last write acknowledged by blue to first acknowledged by green), the errors the app saw,
and the time aurora_backend held; the floor is the time both sides are blocked (from
blue stopping writes, at IN_PROGRESS, to green accepting connections).

- ``aurora``: ENGINE aurora_backend, ``blue_green`` on with the AWS wrappers' poll rates
  (1 s with a deployment, 100 ms from PREPARATION), writes through ``retry_atomic``;
- ``stock``: ENGINE django.db.backends.postgresql, the same INSERT in ``atomic()``; on an
  error the app closes the connection and tries again 10 ms later. Its host name is
  resolved through the deployment's DNS with the same TTL, as the OS resolver would.

The AWS Python wrapper is measured only when it is installed (it is not on the machine
the figures in docs/bluegreen.md come from).

    python bench/bench_bluegreen.py            # 3 switchovers, TTL 5 s
    python bench/bench_bluegreen.py --quick    # 1 switchover, TTL 1 s
    AURORA_TEST_DRIVER=psycopg python bench/bench_bluegreen.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import threading
import time
import types
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import POOL, configure_django, median, print_machine  # noqa: E402

from aurora_backend.testing.bluegreen import BlueGreenDeployment  # noqa: E402

CLIENTS = ("aurora", "stock")
TABLE = (
    "CREATE TABLE bench_writes (id bigserial PRIMARY KEY, client text, "
    "on_server text DEFAULT current_setting('cluster_name'), at timestamptz DEFAULT clock_timestamp())"
)
INSERT = "INSERT INTO bench_writes (client) VALUES (%s) RETURNING on_server"


def stock_engine(dns: Any) -> str:
    """Django's postgresql backend, its HOST resolved through ``dns`` (TTL included), nothing else."""
    from django.db.backends.postgresql import base

    class DatabaseWrapper(base.DatabaseWrapper):
        def get_connection_params(self) -> dict[str, Any]:
            params = super().get_connection_params()
            params["hostaddr"] = dns.resolve(params["host"])[0]
            return params

    module = types.ModuleType("bench_stock_dns.base")
    module.DatabaseWrapper = DatabaseWrapper  # type: ignore[attr-defined]
    sys.modules["bench_stock_dns"] = types.ModuleType("bench_stock_dns")
    sys.modules["bench_stock_dns.base"] = module
    return "bench_stock_dns"


class Writer(threading.Thread):
    """Writes until stopped; (time, server) of each acknowledged write, time of each error."""

    def __init__(self, alias: str, client: str) -> None:
        super().__init__(daemon=True)
        self.alias, self.client = alias, client
        self.acks: list[tuple[float, str]] = []
        self.errors: list[float] = []
        self.stop = threading.Event()

    def write(self) -> str:
        from django.db import connections

        with connections[self.alias].cursor() as cursor:
            cursor.execute(INSERT, [self.client])
            return cursor.fetchone()[0]

    def run(self) -> None:
        from django.db import Error, connections, transaction

        from aurora_backend import retry_atomic

        once = (
            retry_atomic(self.write, using=self.alias, max_attempts=1000, max_time=120)
            if self.client == "aurora"
            else transaction.atomic(using=self.alias)(self.write)
        )
        while not self.stop.is_set():
            try:
                on = once()
                self.acks.append((time.monotonic(), on))  # when the app got the answer
            except Error:
                self.errors.append(time.monotonic())
                connections[self.alias].close()
                time.sleep(0.01)
            time.sleep(0.005)
        connections[self.alias].close()


def one_switchover(bg: BlueGreenDeployment, round_no: int, ttl: float) -> dict[str, dict[str, Any]]:
    from aurora_backend import stats
    from aurora_backend.testing.fixtures import register_alias, unregister_alias

    bg.blue.writer.query(TABLE, dbname=bg.database)
    green = bg.create()
    aurora = bg.blue.database_settings(
        blue_green={"poll": 60, "poll_deployed": 1.0, "poll_fast": 0.1, "hold": 60},
        connect_deadline=60,
        connect_timeout=2,
        topology=False,
    )
    stock = dict(aurora, ENGINE=stock_engine(bg.dns), OPTIONS={})
    if POOL:
        for entry in (aurora, stock):
            entry["OPTIONS"]["pool"] = {"min_size": 1, "max_size": 4}
            entry["CONN_MAX_AGE"] = 0
    aliases = {"aurora": "aurora_%d" % round_no, "stock": "stock_%d" % round_no}
    register_alias(aliases["aurora"], aurora)
    register_alias(aliases["stock"], stock)
    writers = {client: Writer(aliases[client], client) for client in CLIENTS}
    for writer in writers.values():
        writer.start()
    time.sleep(2.5)  # the aurora watcher has seen CREATED (1 s polls), both write steadily
    bg.switchover()
    time.sleep(ttl + 2.0)  # every DNS cache has expired: both write to green
    for writer in writers.values():
        writer.stop.set()
        writer.join(30)
    assert bg.blocked is not None
    floor = bg.blocked[1] - bg.blocked[0]
    results = {}
    for client, writer in writers.items():
        blue_acks = [t for t, on in writer.acks if on == bg.blue.writer.id]
        green_acks = [t for t, on in writer.acks if on == green.writer.id]
        outage = min(green_acks) - max(blue_acks) if blue_acks and green_acks else None
        held = stats.snapshot(aliases[client]).get("blue_green_held_ms", 0) / 1000.0
        results[client] = {
            "outage": outage,
            "errors": len(writer.errors),
            "held": held,
            "floor": floor,
            "writes": len(writer.acks),
        }
    for alias in aliases.values():
        unregister_alias(alias)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--preparation", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="1 switchover, TTL 1 s")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.ttl, args.preparation = 1, 1.0, 1.0
    configured = False
    rows: dict[str, list[dict[str, Any]]] = {client: [] for client in CLIENTS}
    for round_no in range(args.rounds):
        with BlueGreenDeployment(ttl=args.ttl, preparation=args.preparation, post=1.0) as bg:
            if not configured:
                configure_django({"default": bg.blue.database_settings(blue_green=False)}, migrate=())
                print_machine()
                print(
                    "Blue/Green: DNS TTL %.1f s, PREPARATION %.1f s, %d switchover(s)%s"
                    % (args.ttl, args.preparation, args.rounds, "; Django's pool" if POOL else "")
                )
                configured = True
            result = one_switchover(bg, round_no, args.ttl)
        for client in CLIENTS:
            rows[client].append(result[client])
            r = result[client]
            print(
                "  round %d %-7s outage %s s  errors %3d  held %.2f s  floor %.2f s  writes %d"
                % (
                    round_no + 1,
                    client,
                    "%.2f" % r["outage"] if r["outage"] is not None else "n/a",
                    r["errors"],
                    r["held"],
                    r["floor"],
                    r["writes"],
                )
            )
    print()
    print(
        "%-8s %14s %12s %12s %12s %12s"
        % ("client", "outage median", "outage max", "app errors", "held (s)", "floor (s)")
    )
    for client in CLIENTS:
        outages = [r["outage"] for r in rows[client] if r["outage"] is not None]
        print(
            "%-8s %14s %12s %12d %12.2f %12.2f"
            % (
                client,
                "%.2f" % median(outages) if outages else "n/a",
                "%.2f" % max(outages) if outages else "n/a",
                sum(r["errors"] for r in rows[client]),
                median([r["held"] for r in rows[client]]),
                median([r["floor"] for r in rows[client]]),
            )
        )
    a = [r["outage"] for r in rows["aurora"] if r["outage"] is not None]
    s = [r["outage"] for r in rows["stock"] if r["outage"] is not None]
    if a and s:
        print("aurora / stock outage: median %.2f, max %.2f" % (median(a) / median(s), max(a) / max(s)))
    if importlib.util.find_spec("aws_advanced_python_wrapper") is None:
        print("AWS Python wrapper: not installed here, not measured")


if __name__ == "__main__":
    main()
