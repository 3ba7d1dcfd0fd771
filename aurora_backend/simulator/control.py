"""A line-based control endpoint on loopback, and its client, to drive a running simulator.

One command per line (``scale``, ``pause force``, ``failover 2 refuse 127.0.0.1:5433``...),
one JSON object per answer: ``{"ok": true, "result": ..., "status": {...}}`` or
``{"ok": false, "error": "..."}``. Commands run in a worker thread through the public
API, so a slow one never blocks the proxy's loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from aurora_backend.simulator.proxy import AuroraSimulator

Address = tuple[str, int]
HELP = (
    "status | scale | scale_point [N] | pause [force] | resume [FAIL] | pause_for S [FAIL] | "
    "failover [WINDOW] [starting_up|refuse] [HOST:PORT] | refuse on|off | blackhole on|off | "
    "read_only on|off | drop [N] [message] | drop_all [message] | reset | rds_proxy on|off | "
    "pinning [pinned] | clear_pinning"
)


def parse_address(text: str, argument: str) -> Address:
    """'host:port' -> (host, port), with an error naming ``argument`` if it is malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("%s expects HOST:PORT such as 127.0.0.1:6543, got %r" % (argument, text))
    return host, int(port)


def require_loopback(host: str, argument: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError("%s must be a loopback address (127.0.0.0/8 or ::1), got %r" % (argument, host))


def status(sim: AuroraSimulator) -> dict[str, Any]:
    return {
        "counters": sim.counters,
        "connections": {"%s:%d" % a: n for a, n in sim.connection_counts().items()},
        "addresses": ["%s:%d" % a for a in sim.addresses],
        "upstream": "%s:%d" % sim.upstream,
        "rds_proxy": sim.rds_proxy_mode,
    }


def _on(word: str) -> bool:
    if word not in ("on", "off"):
        raise ValueError("expected on or off, got %r" % word)
    return word == "on"


def _commands(sim: AuroraSimulator) -> dict[str, Callable[..., Any]]:
    return {
        "status": lambda: None,
        "scale": sim.scale_event,
        "scale_point": lambda n="1": sim.scale_point_on_connect(int(n)),
        "pause": lambda force="": sim.pause(force=force == "force"),
        "resume": lambda fail="0": sim.resume(int(fail)),
        "pause_for": lambda s, fail="0": sim.pause_for(float(s), fail=int(fail)),
        "failover": lambda window="1", mode="starting_up", up=None: sim.failover(
            parse_address(up, "failover HOST:PORT") if up else None, float(window), mode
        ),
        "refuse": lambda on="on": sim.refuse(_on(on)),
        "blackhole": lambda on="on": sim.blackhole(_on(on)),
        "read_only": lambda on="on": sim.read_only(_on(on)),
        "drop": lambda n="1", how="": sim.drop(int(n), silent=how != "message"),
        "drop_all": lambda how="": sim.drop_all(silent=how != "message"),
        "reset": sim.reset,
        "rds_proxy": lambda on="on": sim.rds_proxy(_on(on)),
        "pinning": lambda which="all": sim.pinning(only_pinned=_pinned_only(which)),
        "clear_pinning": sim.clear_pinning,
    }


def _pinned_only(word: str) -> bool:
    if word not in ("all", "pinned"):
        raise ValueError("expected all or pinned, got %r" % word)
    return word == "pinned"


def execute(sim: AuroraSimulator, line: str) -> dict[str, Any]:
    """Run one command line against ``sim`` and return the JSON-able answer."""
    words = line.split()
    if not words:
        return {"ok": False, "error": "empty command; commands: " + HELP}
    command = _commands(sim).get(words[0])
    if command is None:
        return {"ok": False, "error": "unknown command %r; commands: %s" % (words[0], HELP)}
    try:
        result = command(*words[1:])
    except (TypeError, ValueError, RuntimeError) as exc:
        return {"ok": False, "error": "%s: %s" % (words[0], exc)}
    return {"ok": True, "result": result, "status": status(sim)}


async def _handle(sim: AuroraSimulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            answer = await loop.run_in_executor(None, execute, sim, line.decode("utf-8", "replace"))
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass  # the client went away, or the simulator is stopping
    finally:
        writer.close()


def serve_control(sim: AuroraSimulator, host: str = "127.0.0.1", port: int = 0) -> Address:
    """Open the control endpoint in ``sim``'s loop; returns the address actually bound."""
    require_loopback(host, "control address")

    async def start() -> Address:
        server = await asyncio.start_server(lambda r, w: _handle(sim, r, w), host, port)
        sim._aux_servers.append(server)
        return server.sockets[0].getsockname()[:2]

    return sim._call(start)


class ControlClient:
    """Talks to a control endpoint: ``ControlClient(addr).command("scale")`` -> answer dict."""

    def __init__(self, address: Address, timeout: float = 30.0) -> None:
        self.address = (address[0], int(address[1]))
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    def command(self, line: str) -> dict[str, Any]:
        """Send one command; returns the answer, raises RuntimeError if it says ok: false."""
        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=self.timeout)
        self._sock.sendall(line.strip().encode() + b"\n")
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("control endpoint %s:%d closed the connection" % self.address)
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\n")
        answer = json.loads(raw)
        if not answer.get("ok"):
            raise RuntimeError(answer.get("error", "command failed"))
        return answer

    def status(self) -> dict[str, Any]:
        return self.command("status")["status"]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
