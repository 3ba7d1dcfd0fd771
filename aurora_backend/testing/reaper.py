"""A watchdog that removes a test process's PostgreSQL servers (and silent hosts' network
namespaces, ``silent_host.py``) when that process dies.

``pg_ctl`` daemonizes the servers, so a test process killed by SIGTERM or SIGKILL (no
``atexit``) would leave them running. :class:`Reaper` starts this module as a child in
its own session with a pipe on its stdin; the parent registers each data directory.
When the pipe reaches EOF (the parent closed it or died, however it died) the watchdog
stops every registered server that still runs (``pg_ctl stop -m immediate``) and
removes its directory, then exits. Bounded: each stop waits at most 15 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading


class Reaper:
    """Parent side: ``register(base, bin_dir, as_postgres)``, ``forget(base)``, ``close()``."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "aurora_backend.testing.reaper"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=dict(os.environ),
            )
        return self._proc

    def _send(self, line: str) -> None:
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None
            proc.stdin.write((line + "\n").encode())
            proc.stdin.flush()

    def register(self, base: str, bin_dir: str, as_postgres: bool) -> None:
        self._send("add\t%s\t%s\t%d" % (base, bin_dir, int(as_postgres)))

    def register_netns(self, netns: str, veth: str) -> None:
        """A network namespace and the veth end outside it, deleted if the process dies."""
        self._send("netns\t%s\t%s" % (netns, veth))

    def forget(self, base: str) -> None:
        """Drop a data directory or a namespace the process removed itself."""
        self._send("forget\t%s" % base)

    def close(self, timeout: float = 20.0) -> None:
        """EOF to the watchdog (it cleans what is still registered) and wait for it."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


_shared: Reaper | None = None
_shared_lock = threading.Lock()


def shared_reaper() -> Reaper:
    """One watchdog per process for resources that are not a cluster's (silent hosts)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Reaper()
        return _shared


def _remove_netns(netns: str, veth: str) -> None:
    for args in (("link", "del", veth), ("netns", "del", netns)):
        try:
            subprocess.run(
                ["ip", *args],
                timeout=10,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            pass


def _stop_and_remove(base: str, bin_dir: str, as_postgres: bool) -> None:
    datadir = os.path.join(base, "data")
    if os.path.exists(os.path.join(datadir, "postmaster.pid")):
        cmd = [os.path.join(bin_dir, "pg_ctl"), "-D", datadir, "-m", "immediate", "-w", "-t", "10", "stop"]
        if as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        try:
            subprocess.run(
                cmd, timeout=15, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/"
            )
        except (OSError, subprocess.SubprocessError):
            pass
    shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the parent's group is not ours
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    registered: dict[str, tuple[str, bool]] = {}
    namespaces: dict[str, str] = {}
    for raw in sys.stdin.buffer:
        words = raw.decode("utf-8", "replace").rstrip("\n").split("\t")
        if words[0] == "add" and len(words) == 4:
            registered[words[1]] = (words[2], words[3] == "1")
        elif words[0] == "netns" and len(words) == 3:
            namespaces[words[1]] = words[2]
        elif words[0] == "forget" and len(words) == 2:
            registered.pop(words[1], None)
            namespaces.pop(words[1], None)
    for netns, veth in namespaces.items():
        _remove_netns(netns, veth)
    for base, (bin_dir, as_postgres) in registered.items():
        _stop_and_remove(base, bin_dir, as_postgres)
    return 0


if __name__ == "__main__":
    sys.exit(main())
