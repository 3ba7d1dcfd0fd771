"""One client connection through the simulator: startup phase, then two byte pumps.

The startup phase is parsed (SSL/GSSENC answered 'N', CancelRequest forwarded, the
StartupMessage checked against the simulator's faults); after it, bytes are forwarded
in whole chunks. The server stream's framing is tracked by lengths only so that an
injected error always lands between two messages.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING

from aurora_backend.simulator import protocol as p

if TYPE_CHECKING:  # pragma: no cover
    from aurora_backend.simulator.proxy import AuroraSimulator
    from aurora_backend.simulator.rds_proxy import SessionPins

logger = logging.getLogger("aurora_backend")

CHUNK = 256 * 1024
#: Seconds a killed connection may take to flush before it is aborted.
CLOSE_GRACE = 2.0
_READY_TAIL = b"Z\x00\x00\x00\x05"


class Session:
    """A client connection; ``state`` is new, held, blackholed, startup, established or closed."""

    def __init__(
        self, sim: AuroraSimulator, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.sim = sim
        self.index = index
        self.reader = reader
        self.writer = writer
        self.state = "new"
        self.framer = p.Framer()
        self.client_framer = p.Framer()
        self.up_writer: asyncio.StreamWriter | None = None
        self.pending: bytes | None = None  # error to inject at the next boundary (b"": none)
        self.idle = True  # the server's last chunk ended with ReadyForQuery
        self._release: asyncio.Future[str] | None = None
        self._kill_message: bytes | None = None
        self.pins: SessionPins | None = None  # RDS Proxy mode's tracker of this session

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # never let one connection's surprise kill the server
            logger.exception("simulator: unexpected error in a client connection")
        finally:
            self._close_all()
            self.sim._forget(self)

    async def _run(self) -> None:
        sim = self.sim
        if sim._blackholed:
            self.state = "blackholed"
            sim._count("blackholed")
            while await self.reader.read(CHUNK):
                pass
            return
        fail: bytes | None = None
        if sim._paused:
            self.state = "held"
            sim._count("held")
            self._release = asyncio.get_running_loop().create_future()
            sim._held.append(self)
            verdict = await self._release
            if verdict == "killed":
                return
            if verdict == "fail":
                fail = self._kill_message or p.fatal(p.STARTING_UP)
        self.state = "startup"
        packet = await self._read_startup()
        if packet is None:
            return
        sim._count("startups")
        fail = fail or sim._startup_fault()
        if fail:
            self.writer.write(fail)
            return
        await self._connect_upstream(packet)

    async def _read_startup(self) -> bytes | None:
        """Answer SSL/GSSENC requests with 'N' and return the StartupMessage (None if handled)."""
        for _ in range(3):
            header = await self.reader.readexactly(4)
            length = struct.unpack("!I", header)[0]
            if not 8 <= length <= p.MAX_STARTUP_PACKET:
                logger.warning("simulator: invalid startup packet length %d", length)
                return None
            body = await self.reader.readexactly(length - 4)
            code = p.startup_code(body)
            if code in (p.SSL_REQUEST, p.GSSENC_REQUEST):
                self.writer.write(b"N")
                continue
            if code == p.CANCEL_REQUEST:
                self.sim._count("cancels")
                await self.sim._forward_cancel(header + body)
                return None
            return header + body
        return None

    async def _connect_upstream(self, packet: bytes) -> None:
        host, port = self.sim._upstream
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout=self.sim.upstream_timeout
            )
        except (OSError, asyncio.TimeoutError) as exc:
            self.sim._count("upstream_failures")
            logger.warning("simulator: upstream %s:%d unreachable: %s", host, port, exc)
            return
        self.up_writer = up_writer
        up_writer.write(packet)
        self.state = "established"
        peer = self.writer.get_extra_info("peername") or ("?", 0)
        self.pins = self.sim._track_session("%s:%s" % peer[:2], p.startup_parameters(packet[4:]))
        pump = asyncio.ensure_future(self._client_to_server())
        try:
            await self._server_to_client(up_reader)
        finally:
            pump.cancel()

    # -- pumps ---------------------------------------------------------------------

    async def _server_to_client(self, up_reader: asyncio.StreamReader) -> None:
        writer, framer, counters = self.writer, self.framer, self.sim._counters
        while True:
            data = await up_reader.read(CHUNK)
            if not data:
                return
            if self.pending is not None:
                cut = framer.first_boundary(data)
                if cut >= 0:
                    writer.write(data[:cut])
                    self._finish(self.pending)
                    return
            framer.feed(data)
            writer.write(data)
            counters["forwarded_bytes"] += len(data)
            self.idle = data[-6:-1] == _READY_TAIL
            await writer.drain()

    async def _client_to_server(self) -> None:
        reader, up, sim = self.reader, self.up_writer, self.sim
        assert up is not None
        framer, counters = self.client_framer, sim._counters
        buffer = b""
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            self.idle = False
            counters["forwarded_bytes"] += len(data)
            if self.pins is not None:
                sim._inspect(self.pins, data)
            if sim._read_only or buffer:
                data, buffer = self._rewrite_writes(buffer + data)
            framer.feed(data)
            up.write(data)
            await up.drain()
        up.close()

    def _rewrite_writes(self, data: bytes) -> tuple[bytes, bytes]:
        """Replace simple queries that write with one raising 25006; keep a cut message back."""
        framer = self.client_framer
        if not framer.at_boundary:  # finish the message in flight first
            cut = framer.first_boundary(data)
            if cut < 0:
                return data, b""
            framer.feed(data[:cut])
            head, rest = self._rewrite_writes(data[cut:])
            return data[:cut] + head, rest
        out, pos = [], 0
        while pos + 5 <= len(data):
            end = pos + 1 + struct.unpack_from("!I", data, pos + 1)[0]
            if end > len(data):
                break
            verb = write_verb_of(data, pos, end)
            if verb and self.sim._read_only:
                self.sim._count("read_only_rejections")
                out.append(p.read_only_query(verb))
            else:
                out.append(data[pos:end])
            pos = end
        return b"".join(out), bytes(data[pos:])

    # -- faults --------------------------------------------------------------------

    def kill(self, message: bytes | None) -> None:
        """Send ``message`` (an ErrorResponse, or nothing) at the next boundary, then close."""
        if self.state == "closed":
            return
        if self.state == "held" and self._release is not None and not self._release.done():
            if message:
                # As a real server would: the FATAL answers the startup, after the SSL
                # negotiation (libpq 17 discards an error sent in reply to SSLRequest).
                self._kill_message = message
                self._release.set_result("fail")
                return
            self._release.set_result("killed")
        if self.state == "established" and not self.framer.at_boundary:
            self.pending = message or b""
            asyncio.get_running_loop().call_later(CLOSE_GRACE, self._close_all)
            return
        self._finish(message or b"")

    def release(self, fail: bool) -> None:
        """Let a held startup proceed (or fail with 57P03, as some do on a real resume)."""
        if self._release is not None and not self._release.done():
            self._release.set_result("fail" if fail else "go")

    def _finish(self, message: bytes) -> None:
        if message:
            try:
                self.writer.write(message)
            except (OSError, RuntimeError):
                pass
        if self.state == "established" and not self.idle and self.framer.backend_key:
            asyncio.ensure_future(self.sim._forward_cancel(p.build_request(p.CANCEL_REQUEST, self.framer.backend_key)))
        self._close_all()

    def _close_all(self) -> None:
        if self.pins is not None:
            self.pins.open = False
        if self.state == "closed":
            return
        self.state = "closed"
        loop = asyncio.get_running_loop()
        for writer in (self.writer, self.up_writer):
            if writer is not None and not writer.transport.is_closing():
                writer.close()
                if writer.transport.get_write_buffer_size():  # a slow reader: do not wait forever
                    loop.call_later(CLOSE_GRACE, writer.transport.abort)
        if self._release is not None and not self._release.done():
            self._release.set_result("killed")

    def abort(self) -> None:
        """Close both sockets at once (simulator shutdown)."""
        self.state = "closed"
        if self.pins is not None:
            self.pins.open = False
        for writer in (self.writer, self.up_writer):
            if writer is not None:
                writer.transport.abort()
        if self._release is not None and not self._release.done():
            self._release.set_result("killed")


def write_verb_of(data: bytes, start: int, end: int) -> str | None:
    """The write keyword of a simple Query message at data[start:end], else None."""
    if data[start] != 81:  # 'Q'
        return None
    return p.write_verb(bytes(data[start + 5 : end]))
