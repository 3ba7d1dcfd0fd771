"""Command line: ``python -m aurora_backend.simulator --listen H:P --upstream H:P [schedule]``.

``python -m aurora_backend.simulator cluster ...`` runs a local Aurora cluster instead
(aurora_backend/simulator/cluster_cli.py).

Prints one JSON line ``{"addresses": [...], "control": "h:p" or null}`` once it listens
(SimulatorProcess reads it), then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from aurora_backend.simulator import schedule
from aurora_backend.simulator.arguments import address, count, seconds
from aurora_backend.simulator.control import serve_control
from aurora_backend.simulator.proxy import AuroraSimulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aurora_backend.simulator",
        description="PostgreSQL proxy that stages Aurora scale, pause/resume and failover events.",
    )
    parser.add_argument(
        "--listen",
        type=address("--listen", loopback=True, any_port=True),
        action="append",
        required=True,
        help="HOST:PORT to listen on (repeatable: 127.0.0.2:6543, 127.0.0.3:6543...)",
    )
    parser.add_argument(
        "--upstream", type=address("--upstream", loopback=False), required=True, help="the real server, HOST:PORT"
    )
    parser.add_argument(
        "--control",
        type=address("--control", loopback=True, any_port=True),
        default=None,
        help="loopback HOST:PORT of the line-based control endpoint (port 0: any)",
    )
    parser.add_argument(
        "--scale-every",
        type=seconds("--scale-every", positive=True),
        default=None,
        metavar="N",
        help="force a scale event every N seconds",
    )
    parser.add_argument(
        "--pause-after-idle",
        type=seconds("--pause-after-idle", positive=True),
        default=None,
        metavar="N",
        help="pause after N seconds without connections (auto-pause)",
    )
    parser.add_argument(
        "--resume-delay",
        type=seconds("--resume-delay", positive=False),
        default=15.0,
        metavar="S",
        help="with --pause-after-idle: hold a connection attempt S seconds (15)",
    )
    parser.add_argument(
        "--resume-fail",
        type=count("--resume-fail"),
        default=0,
        metavar="K",
        help="with --pause-after-idle: K held attempts fail with 57P03 on resume",
    )
    parser.add_argument(
        "--rds-proxy",
        action="store_true",
        help="RDS Proxy mode: report which sessions RDS Proxy would pin (docs/proxy.md)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log events to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cluster"]:  # a local Aurora cluster: simulator/cluster_cli.py
        from aurora_backend.simulator.cluster_cli import main as cluster_main

        return cluster_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr
    )
    sim = AuroraSimulator(upstream=args.upstream, listen=args.listen, rds_proxy=args.rds_proxy).start()
    control = serve_control(sim, *args.control) if args.control else None
    if args.scale_every:
        schedule.start(sim, schedule.scale_every, args.scale_every)
    if args.pause_after_idle is not None:
        schedule.start(sim, schedule.auto_pause, args.pause_after_idle, args.resume_delay, args.resume_fail)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(
        json.dumps(
            {"addresses": ["%s:%d" % a for a in sim.addresses], "control": "%s:%d" % control if control else None}
        ),
        flush=True,
    )
    try:
        while not done.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0
