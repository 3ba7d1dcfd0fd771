"""A throwaway PostgreSQL cluster for tests, benchmarks and the demo project.

It runs ``initdb`` and ``pg_ctl`` found on PATH, in ``$PG_BIN`` or under
``/usr/lib/postgresql/*/bin``; as root it runs them as the ``postgres`` OS user
(PostgreSQL refuses to run as root). The server listens on a free port of
127.0.0.1 only, uses password authentication (so a bad password fails as it
does on Aurora) and is removed by :meth:`PostgresCluster.stop`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from urllib.parse import quote

SUPERUSER = "postgres"
PASSWORD = "aurora-test-password"


def find_pg_bin() -> str:
    """Return the directory holding ``pg_ctl`` and ``initdb``."""
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(os.environ["PG_BIN"])
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    candidates.extend(reversed(versions))
    for directory in candidates:
        if all(os.access(os.path.join(directory, tool), os.X_OK) for tool in ("pg_ctl", "initdb")):
            return directory
    raise RuntimeError(
        "No PostgreSQL server found: install one (Debian: apt-get install postgresql), "
        "set PG_BIN to the directory holding pg_ctl, or set AURORA_TEST_DSN to a server's DSN."
    )


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerAddress:
    host: str
    port: int
    user: str
    password: str
    dbname: str = "postgres"

    @property
    def dsn(self) -> str:
        return "postgresql://%s:%s@%s:%d/%s" % (
            quote(self.user),
            quote(self.password),
            self.host,
            self.port,
            self.dbname,
        )

    @classmethod
    def from_dsn(cls, dsn: str) -> ServerAddress:
        from urllib.parse import unquote, urlparse

        url = urlparse(dsn)
        return cls(
            host=url.hostname or "127.0.0.1",
            port=url.port or 5432,
            user=unquote(url.username or SUPERUSER),
            password=unquote(url.password or ""),
            dbname=(url.path or "/postgres").lstrip("/") or "postgres",
        )


class PostgresCluster:
    """initdb + pg_ctl in a temporary directory; ``start()``, ``stop()``, ``restart()``."""

    def __init__(self, port: int | None = None, settings: dict[str, str] | None = None, initdb: bool = True) -> None:
        self.bin = find_pg_bin()
        self.port = port or free_port()
        self.base = tempfile.mkdtemp(prefix="aurora-pg-")
        self.datadir = os.path.join(self.base, "data")
        self.logfile = os.path.join(self.base, "server.log")
        self.settings = {
            "listen_addresses": "127.0.0.1,127.0.0.2,127.0.0.3",
            "unix_socket_directories": self.base,
            "max_connections": "300",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "64MB",
            **(settings or {}),
        }
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            os.chmod(self.base, 0o755)
            shutil.chown(self.base, user="postgres")
        if initdb:
            self._initdb()

    @property
    def address(self) -> ServerAddress:
        return ServerAddress("127.0.0.1", self.port, SUPERUSER, PASSWORD)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        cmd = list(args)
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(
            cmd,
            check=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.base,
        )

    def _initdb(self) -> None:
        pwfile = os.path.join(self.base, "pwfile")
        with open(pwfile, "w") as fh:
            fh.write(PASSWORD + "\n")
        if self.as_postgres:
            shutil.chown(pwfile, user="postgres")
        self._run(
            os.path.join(self.bin, "initdb"),
            "-D",
            self.datadir,
            "-U",
            SUPERUSER,
            "--pwfile",
            pwfile,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        os.unlink(pwfile)

    def _options(self) -> str:
        return " ".join("-c %s=%s" % (k, v) for k, v in self.settings.items()) + " -p %d" % self.port

    def start(self, port_tries: int = 5) -> PostgresCluster:
        """Start the server; if another process took the chosen port meanwhile, pick another."""
        for attempt in range(port_tries):
            try:
                self._run(
                    os.path.join(self.bin, "pg_ctl"),
                    "-D",
                    self.datadir,
                    "-l",
                    self.logfile,
                    "-o",
                    self._options(),
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
                return self
            except subprocess.CalledProcessError:
                if attempt == port_tries - 1 or not self._port_was_taken():
                    raise
                self.port = free_port()
        return self

    def _port_was_taken(self) -> bool:
        try:
            with open(self.logfile) as fh:
                return "could not create any TCP/IP sockets" in fh.read()
        except OSError:
            return False

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast or immediate); the data is kept."""
        self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.datadir, "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def replica(self, port: int | None = None, settings: dict[str, str] | None = None) -> PostgresCluster:
        """A hot standby of this (running) cluster, made with pg_basebackup: a real read-only
        server, where pg_is_in_recovery() is true and writes fail with 25006. Not started."""
        standby = PostgresCluster(port=port, settings=settings, initdb=False)
        pgpass = os.path.join(standby.base, "pgpass")
        with open(pgpass, "w") as fh:
            fh.write("127.0.0.1:%d:*:%s:%s\n" % (self.port, SUPERUSER, PASSWORD))
        os.chmod(pgpass, 0o600)
        if standby.as_postgres:
            shutil.chown(pgpass, user="postgres")
        self.base_backup(standby, pgpass)
        with open(os.path.join(standby.datadir, "postgresql.auto.conf"), "a") as fh:
            fh.write(
                "primary_conninfo = 'host=127.0.0.1 port=%d user=%s passfile=%s'\n" % (self.port, SUPERUSER, pgpass)
            )
        return standby

    def base_backup(self, standby: PostgresCluster, passfile: str, timeout: float = 120) -> None:
        """Copy this running server into ``standby``'s empty data directory: pg_basebackup
        with a fast checkpoint and WAL streamed, ``standby.signal`` written (-R); ``passfile``
        holds the superuser's password."""
        standby._run(
            "env",
            "PGPASSFILE=" + passfile,
            os.path.join(self.bin, "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-D",
            standby.datadir,
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "-c",
            "fast",
            timeout=timeout,
        )

    def is_running(self) -> bool:
        try:
            self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.datadir, "status")
        except subprocess.CalledProcessError:
            return False
        return True

    def destroy(self) -> None:
        """Stop the server if it runs and remove every file of the cluster."""
        try:
            if self.is_running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
