"""SimulatorProcess: the simulator in a child process, driven through its control endpoint."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from aurora_backend.simulator.control import ControlClient, parse_address

Address = tuple[str, int]


class SimulatorProcess:
    """``python -m aurora_backend.simulator`` as a subprocess; ``command("scale")`` drives it."""

    def __init__(
        self,
        upstream: Address,
        listen: Sequence[Address] = (("127.0.0.1", 0),),
        extra_args: Sequence[str] = (),
        startup_timeout: float = 15.0,
    ) -> None:
        self.upstream = (upstream[0], int(upstream[1]))
        self.listen = [(h, int(p)) for h, p in listen]
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.addresses: list[Address] = []
        self.control: ControlClient | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> Address:
        return self.addresses[0]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> SimulatorProcess:
        cmd = [
            sys.executable,
            "-m",
            "aurora_backend.simulator",
            "--upstream",
            "%s:%d" % self.upstream,
            "--control",
            "127.0.0.1:0",
        ]
        for host, port in self.listen:
            cmd += ["--listen", "%s:%d" % (host, port)]
        self._proc = subprocess.Popen(
            cmd + self.extra_args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=dict(os.environ)
        )
        ready = self._read_ready()
        self.addresses = [parse_address(a, "address") for a in ready["addresses"]]
        self.control = ControlClient(parse_address(ready["control"], "control"))
        return self

    def _read_ready(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._proc.stdout], [], [], left)[0]:
                self.stop()
                raise TimeoutError("the simulator process did not start in %.0f s" % self.startup_timeout)
            byte = os.read(self._proc.stdout.fileno(), 1)
            if not byte:
                code = self._proc.wait(5)
                raise RuntimeError("the simulator process exited with code %s at startup" % code)
            line += byte
        return json.loads(line)

    def command(self, line: str) -> dict[str, Any]:
        """Send one control command (see control.HELP); returns its JSON answer."""
        if self.control is None:
            raise RuntimeError("SimulatorProcess.command(): call start() first")
        return self.control.command(line)

    def status(self) -> dict[str, Any]:
        return self.command("status")["status"]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; idempotent."""
        if self.control is not None:
            self.control.close()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
