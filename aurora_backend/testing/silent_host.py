"""A host that can go silent for real: a network namespace reached over a veth pair.

When an Aurora instance's host dies or its Availability Zone is partitioned, no FIN and
no RST reach the client: its packets vanish. A user-space proxy that stops forwarding
does not reproduce that (the client's kernel still gets ACKs, so TCP keepalive never
fires). Here the instance's endpoint lives in its own network namespace, reached from
the test process over a veth pair; :meth:`SilentHost.silence` sets the namespace's end of
the link down, and from then on every packet to it is dropped by the kernel: no ACK, no
FIN, no RST, no ICMP. :meth:`SilentHost.restore` sets it up again.

Addresses: each host takes its own /30 of the link-local range 169.254.0.0/16 (never
169.254.169.0/24, the cloud metadata service's), ``.1`` on the test process's side and
``.2`` (:attr:`SilentHost.address`) in the namespace. Link-local addresses are never
routed off a link, and both ends are on this machine: nothing leaves it. (127.0.0.0/8
cannot be used: loopback is per namespace.) The neighbour entries are permanent, so a
silent host never even answers ARP: a new connect to it times out, as on a VPC.

Names are unique per process (``aurora-silent-<pid>-<n>``, veth ``as<pid hex><n>``) and
everything is removed by :meth:`close`, at interpreter exit, and by the test reaper
(``reaper.py``) if the process is killed. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)
and ``ip`` (iproute2): :func:`unavailable` says why not, for a test to skip.

Sockets are bound inside the namespace by a short-lived thread that joins it
(``setns(2)`` changes only the calling thread's namespace); a socket stays in the
namespace it was made in, so the rest of the process is untouched.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import errno
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger("aurora_backend")

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
#: /30 blocks of 169.254.0.0/16 (skipping 169.254.0.0/24, 169.254.169.0/24 and 169.254.255.0/24).
_BLOCKS = [(x, y) for x in range(1, 255) if x != 169 for y in range(0, 256, 4)]

_counter = 0
_counter_lock = threading.Lock()
_open: list[SilentHost] = []


def unavailable() -> str | None:
    """Why a silent host cannot be made here (a reason to skip a test), or None."""
    if shutil.which("ip") is None:
        return "no 'ip' command (install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    probe = None
    try:
        probe = SilentHost().start()
    except (OSError, subprocess.SubprocessError) as exc:
        return "the kernel refused a network namespace with a veth pair: %s" % exc
    finally:
        if probe is not None:
            probe.close()
    return None


class SilentHost:
    """A network namespace with a veth pair to it; ``silence()`` drops every packet."""

    def __init__(self) -> None:
        global _counter
        with _counter_lock:
            _counter += 1
            number = _counter
        pid = os.getpid()
        self.netns = "aurora-silent-%d-%d" % (pid, number)
        self.outside = "as%x%x" % (pid, number)  # IFNAMSIZ: 15 characters at most
        self.inside = self.outside + "n"
        if len(self.inside) > 15:
            self.outside = "as%x" % ((pid << 8 | number) & 0xFFFFFFFFFF)
            self.inside = self.outside + "n"
        self.gateway = ""  # the test process's side (.1)
        self.address = ""  # the namespace's side (.2)
        self.silent = False
        self._started = False
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> SilentHost:
        try:
            _ip("netns", "add", self.netns)
            self._started = True
            _open.append(self)
            _reaper_register(self)
            _ip("link", "add", self.outside, "type", "veth", "peer", "name", self.inside)
            _ip("link", "set", self.inside, "netns", self.netns)
            self._assign_block()
            _ip("-n", self.netns, "link", "set", "lo", "up")
            _ip("link", "set", self.outside, "up")
            _ip("-n", self.netns, "link", "set", self.inside, "up")
            # No ARP to a silent host (a VPC never answers for a dead one either), and the
            # route to it stays in use while its link is down: packets are dropped, not rerouted.
            self._neighbours()
            _sysctl("net.ipv4.conf.%s.ignore_routes_with_linkdown" % self.outside, "0")
        except BaseException:
            self.close()
            raise
        logger.info("silent host %s: %s (namespace %s, veth %s)", self.netns, self.address, self.netns, self.outside)
        return self

    def _assign_block(self) -> None:
        used = _addresses_in_use()
        pid = os.getpid()
        start = (pid * 61 + len(_open)) % len(_BLOCKS)
        for k in range(len(_BLOCKS)):
            x, y = _BLOCKS[(start + k) % len(_BLOCKS)]
            if any("169.254.%d.%d" % (x, y + j) in used for j in range(4)):
                continue
            gateway, address = "169.254.%d.%d" % (x, y + 1), "169.254.%d.%d" % (x, y + 2)
            try:
                _ip("addr", "add", gateway + "/30", "dev", self.outside)
            except subprocess.CalledProcessError:
                used = _addresses_in_use()  # another process took it meanwhile
                continue
            _ip("-n", self.netns, "addr", "add", address + "/30", "dev", self.inside)
            self.gateway, self.address = gateway, address
            return
        raise OSError(errno.EADDRNOTAVAIL, "no free /30 in 169.254.0.0/16 for a silent host")

    def _neighbours(self) -> None:
        outside_mac = _mac(self.outside)
        inside_mac = _mac(self.inside, self.netns)
        _ip("neigh", "replace", self.address, "lladdr", inside_mac, "dev", self.outside, "nud", "permanent")
        _ip(
            "-n",
            self.netns,
            "neigh",
            "replace",
            self.gateway,
            "lladdr",
            outside_mac,
            "dev",
            self.inside,
            "nud",
            "permanent",
        )

    def close(self) -> None:
        """Remove the namespace and the veth pair; safe to call twice."""
        with self._lock:
            if not self._started:
                return
            self._started = False
        for args in (("link", "del", self.outside), ("netns", "del", self.netns)):
            try:
                _ip(*args)
            except (OSError, subprocess.SubprocessError):
                pass  # already gone (deleting one end of a veth pair deletes both)
        if self in _open:
            _open.remove(self)
        _reaper_forget(self)

    def __enter__(self) -> SilentHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the fault ---------------------------------------------------------------------

    def silence(self) -> None:
        """From now on every packet to or from the host is dropped (no FIN, no RST)."""
        _ip("-n", self.netns, "link", "set", self.inside, "down")
        self.silent = True
        logger.info("silent host %s: link down", self.address)

    def restore(self) -> None:
        """The host answers again (connections that outlived the silence resume)."""
        _ip("-n", self.netns, "link", "set", self.inside, "up")
        self._neighbours()  # a link set down may have flushed the namespace's entry
        self.silent = False
        logger.info("silent host %s: link up", self.address)

    # -- sockets in the namespace --------------------------------------------------------

    def run_inside(self, function: Callable[[], T]) -> T:
        """``function()`` run by a thread that joined the namespace (sockets it makes live there)."""
        result: list[T] = []
        failure: list[BaseException] = []

        def target() -> None:
            try:
                _setns(os.path.join(NETNS_DIR, self.netns))
                result.append(function())
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=target, name="aurora-netns-%s" % self.netns, daemon=True)
        thread.start()
        thread.join(10)
        if failure:
            raise failure[0]
        if not result:
            raise OSError("silent host %s: the namespace thread did not finish" % self.netns)
        return result[0]

    def listen_socket(self, host: str, port: int) -> socket.socket:
        """A listening TCP socket on ``host:port`` inside the namespace (``host`` must be :attr:`address`)."""

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(128)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            return sock

        return self.run_inside(make)


# -- helpers ----------------------------------------------------------------------------


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(
            done.returncode, ["ip", *args], done.stdout, done.stderr.decode(errors="replace").strip()
        )
    return done.stdout.decode()


def _mac(device: str, netns: str | None = None) -> str:
    prefix = ("-n", netns) if netns else ()
    words = _ip(*prefix, "-o", "link", "show", device).split()
    return words[words.index("link/ether") + 1]


def _sysctl(name: str, value: str) -> None:
    path = "/proc/sys/" + name.replace(".", "/")
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError:
        pass  # an older kernel without the knob: its default is to keep using the route


def _addresses_in_use() -> set[str]:
    used: set[str] = set()
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        words = line.split()
        if "inet" in words:
            net = ipaddress.ip_interface(words[words.index("inet") + 1]).network
            if net.prefixlen >= 24:
                used.update(str(a) for a in net)
    return used


_libc: ctypes.CDLL | None = None


def _setns(path: str) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns(%s): %s" % (path, os.strerror(err)))
    finally:
        os.close(fd)


def _reaper_register(host: SilentHost) -> None:
    from aurora_backend.testing.reaper import shared_reaper

    shared_reaper().register_netns(host.netns, host.outside)


def _reaper_forget(host: SilentHost) -> None:
    from aurora_backend.testing.reaper import shared_reaper

    shared_reaper().forget(host.netns)


@atexit.register
def _close_all() -> None:
    for host in list(_open):
        host.close()


class SilentServer:
    """A PostgreSQL server's endpoint on a silent host, usable alone.

    An :class:`~aurora_backend.simulator.AuroraSimulator` in front of ``upstream``,
    listening on :attr:`address`:``port`` inside its own namespace (so Aurora's other
    faults work too); :meth:`silence` / :meth:`restore` as :class:`SilentHost`'s.
    """

    def __init__(self, upstream: tuple[str, int], port: int = 5432) -> None:
        self.upstream = upstream
        self.port = port
        self.host = SilentHost()
        self.sim: Any | None = None

    @property
    def address(self) -> str:
        return self.host.address

    def start(self) -> SilentServer:
        from aurora_backend.simulator import AuroraSimulator

        self.host.start()
        try:
            self.sim = AuroraSimulator(
                upstream=self.upstream, listen=[(self.host.address, self.port)], listen_socket=self.host.listen_socket
            ).start()
        except BaseException:
            self.host.close()
            raise
        return self

    def silence(self) -> None:
        self.host.silence()

    def restore(self) -> None:
        self.host.restore()

    def close(self) -> None:
        if self.sim is not None:
            self.sim.stop()
        self.host.close()

    def __enter__(self) -> SilentServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
