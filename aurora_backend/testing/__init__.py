"""Helpers for testing applications that use aurora_backend.

``PostgresCluster``: a throwaway PostgreSQL server. ``AuroraCluster``: a local Aurora
cluster (a writer, readers, endpoints, real failover; see docs/cluster.md), imported
lazily so that importing this package never starts the simulator machinery; so are
``GlobalDatabase`` (docs/global_database.md) and ``BlueGreenDeployment`` (docs/bluegreen.md).
"""

from typing import Any, List

from aurora_backend.testing.cluster import (
    PASSWORD,
    SUPERUSER,
    PostgresCluster,
    ServerAddress,
    find_pg_bin,
    free_port,
)

_LAZY = {
    "AuroraCluster": "aurora_backend.testing.aurora_cluster",
    "BlueGreenDeployment": "aurora_backend.testing.bluegreen",
    "ClusterDNS": "aurora_backend.testing.aurora_dns",
    "GlobalDatabase": "aurora_backend.testing.global_db",
    "TestClock": "aurora_backend.testing.aurora_dns",
}

__all__ = [
    "AuroraCluster", "BlueGreenDeployment", "ClusterDNS", "GlobalDatabase", "PASSWORD", "PostgresCluster", "SUPERUSER",
    "ServerAddress", "TestClock", "find_pg_bin", "free_port",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))
