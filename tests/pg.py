"""The PostgreSQL server the tests run against.

``AURORA_TEST_DSN`` names an existing server (``postgresql://user:pw@host:port/db``);
otherwise a throwaway cluster is started once per test process, its DSN exported
to child processes through the same variable, and removed at exit.
"""

from __future__ import annotations

import atexit
import os

from aurora_backend.testing import PostgresCluster, ServerAddress

_cluster: PostgresCluster | None = None
_owner_pid: int | None = None


def cluster() -> PostgresCluster | None:
    """The throwaway cluster this process started, or None when the DSN came from outside."""
    server()
    return _cluster


def server() -> ServerAddress:
    global _cluster, _owner_pid
    if _cluster is None and not os.environ.get("AURORA_TEST_DSN"):
        _cluster = PostgresCluster().start()
        _owner_pid = os.getpid()
        os.environ["AURORA_TEST_DSN"] = _cluster.address.dsn
        atexit.register(_destroy)
    return ServerAddress.from_dsn(os.environ["AURORA_TEST_DSN"])


def _destroy() -> None:
    if _cluster is not None and os.getpid() == _owner_pid:
        _cluster.destroy()
