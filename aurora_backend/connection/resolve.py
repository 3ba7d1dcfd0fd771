"""Resolve the endpoint at connect time and pick the address a connection goes to.

Aurora's endpoints are DNS names with a 5 s TTL; the reader endpoint returns one
reader per resolution. Resolving ourselves (instead of letting libpq take the first
address) lets every new connection see the current DNS answer, spreads connections
over all the addresses it lists, and records where each connection went. libpq keeps
``host`` for TLS verification (sslmode=verify-full checks the name) and connects to
``hostaddr``.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
from collections.abc import Sequence
from typing import Any

from aurora_backend.options import Resolver

logger = logging.getLogger("aurora_backend")


def default_resolver(host: str, port: int) -> list[str]:
    """Addresses of ``host`` in the order the system resolver returns them, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolvable_host(params: dict[str, Any]) -> str | None:
    """The host name to resolve, or None when libpq must be left alone.

    Left alone: a hostaddr already given, several hosts (libpq's own failover list),
    a Unix socket directory, or an IP address.
    """
    host = params.get("host")
    if not host or params.get("hostaddr") or "," in str(host):
        return None
    host = str(host)
    if host.startswith("/") or host.startswith("@") or _is_ip(host):
        return None
    return host


def choose_address(
    params: dict[str, Any],
    resolver: Resolver | None,
    rng: random.Random,
    avoid: str | None = None,
) -> str | None:
    """Resolve ``params['host']`` and set ``params['hostaddr']`` to one of its addresses.

    Picks at random among the addresses (avoiding ``avoid``, the address whose attempt
    just failed, when there is another). Returns the address, or None when the host
    is not resolved here (libpq then resolves it and reports any error itself).
    """
    host = resolvable_host(params)
    if host is None:
        return None
    port = int(params.get("port") or 5432)
    try:
        addresses: Sequence[str] = list((resolver or default_resolver)(host, port))
    except (OSError, UnicodeError) as err:
        logger.debug("resolving %s failed (%s); leaving it to libpq", host, err)
        return None
    if not addresses:
        return None
    candidates = [a for a in addresses if a != avoid] or list(addresses)
    address = candidates[rng.randrange(len(candidates))]
    params["hostaddr"] = address
    return address
