"""A raw-socket PostgreSQL client that shows the exact bytes a server (or the simulator) sends.

It performs a real startup (SCRAM-SHA-256, MD5, cleartext or trust) so tests can read
what an established connection receives when a fault hits it, byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct

from aurora_backend.simulator import protocol as p

Address = tuple[str, int]


class WireClient:
    """One raw connection: ``startup()``, ``send_query()``, ``read_message()``, ``read_to_eof()``."""

    def __init__(self, address: Address, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------

    def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection after %r" % self._buffer[:64])
            self._buffer += chunk

    def read_exact(self, n: int) -> bytes:
        self._fill(n)
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read_message(self) -> tuple[bytes, bytes]:
        """The next typed message as (type, body)."""
        header = self.read_exact(5)
        body = self.read_exact(struct.unpack("!I", header[1:])[0] - 4)
        return header[:1], body

    def read_to_eof(self) -> bytes:
        """Everything left until the server closes the socket."""
        chunks = [self._buffer]
        self._buffer = b""
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    # -- writing -------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_message(self, kind: bytes, body: bytes) -> None:
        self.sock.sendall(kind + struct.pack("!I", len(body) + 4) + body)

    def send_query(self, sql: str) -> None:
        self.send_message(b"Q", sql.encode() + b"\0")

    def ssl_request(self) -> bytes:
        """Send SSLRequest; returns the one-byte answer (b'N' means plaintext)."""
        self.send(p.build_request(p.SSL_REQUEST))
        return self.read_exact(1)

    def send_startup(self, user: str, dbname: str) -> None:
        self.send(p.build_startup({"user": user, "database": dbname}))

    def startup(self, user: str, password: str, dbname: str = "postgres") -> bytes | None:
        """Authenticate and read up to ReadyForQuery; returns the BackendKeyData body."""
        self.send_startup(user, dbname)
        key = None
        while True:
            kind, body = self.read_message()
            if kind == b"R":
                self._authenticate(struct.unpack("!I", body[:4])[0], body[4:], user, password)
            elif kind == b"K":
                key = body
            elif kind == b"E":
                raise ConnectionError("startup failed: %r" % body)
            elif kind == b"Z":
                return key

    def _authenticate(self, code: int, data: bytes, user: str, password: str) -> None:
        if code in (0, 12):  # AuthenticationOk, SASLFinal
            return
        if code == 3:
            self.send_message(b"p", password.encode() + b"\0")
        elif code == 5:
            inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
            self.send_message(b"p", b"md5" + hashlib.md5(inner + data[:4]).hexdigest().encode() + b"\0")
        elif code == 10:
            self._scram(password)
        else:
            raise ConnectionError("unsupported authentication request %d" % code)

    def _scram(self, password: str) -> None:
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = "n=,r=" + nonce
        first = ("n,," + first_bare).encode()
        self.send_message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
        kind, body = self.read_message()
        server_first = body[4:].decode()
        fields = dict(item.split("=", 1) for item in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        without_proof = "c=biws,r=" + fields["r"]
        auth_message = ",".join((first_bare, server_first, without_proof)).encode()
        signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.send_message(b"p", (without_proof + ",p=" + base64.b64encode(proof).decode()).encode())
