"""Helpers for testing applications that use aurora_backend.

``PostgresCluster``: a throwaway PostgreSQL server. ``AuroraCluster``: a local Aurora
cluster (a writer, readers, endpoints, real failover; see docs/cluster.md), imported
lazily so that importing this package never starts the simulator machinery.
"""

from typing import Any

from aurora_backend.testing.cluster import (
    PASSWORD,
    SUPERUSER,
    PostgresCluster,
    ServerAddress,
    find_pg_bin,
    free_port,
)

__all__ = [
    "PASSWORD",
    "SUPERUSER",
    "PostgresCluster",
    "ServerAddress",
    "find_pg_bin",
    "free_port",
    "AuroraCluster",
    "ClusterDNS",
    "TestClock",
]

_LAZY = {
    "AuroraCluster": "aurora_backend.testing.aurora_cluster",
    "ClusterDNS": "aurora_backend.testing.aurora_dns",
    "TestClock": "aurora_backend.testing.aurora_dns",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError("module 'aurora_backend.testing' has no attribute %r" % name)
