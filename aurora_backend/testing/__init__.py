"""Helpers for testing applications that use aurora_backend.

``PostgresCluster``: a throwaway PostgreSQL server. ``AuroraCluster``: a local Aurora
cluster (a writer, readers, endpoints, real failover; see docs/cluster.md), imported
lazily so that importing this package never starts the simulator machinery; so are
``GlobalDatabase`` (docs/global_database.md) and ``BlueGreenDeployment`` (docs/bluegreen.md).
"""

from typing import TYPE_CHECKING

from aurora_backend._lazy import exports
from aurora_backend.testing.cluster import (
    PASSWORD,
    SUPERUSER,
    PostgresCluster,
    ServerAddress,
    find_pg_bin,
    free_port,
)

if TYPE_CHECKING:
    from aurora_backend.testing.aurora_cluster import AuroraCluster
    from aurora_backend.testing.aurora_dns import ClusterDNS, TestClock
    from aurora_backend.testing.bluegreen import BlueGreenDeployment
    from aurora_backend.testing.global_db import GlobalDatabase

_LAZY = {
    "AuroraCluster": "aurora_backend.testing.aurora_cluster",
    "BlueGreenDeployment": "aurora_backend.testing.bluegreen",
    "ClusterDNS": "aurora_backend.testing.aurora_dns",
    "GlobalDatabase": "aurora_backend.testing.global_db",
    "TestClock": "aurora_backend.testing.aurora_dns",
}

__all__ = [
    "AuroraCluster",
    "BlueGreenDeployment",
    "ClusterDNS",
    "GlobalDatabase",
    "PASSWORD",
    "PostgresCluster",
    "SUPERUSER",
    "ServerAddress",
    "TestClock",
    "find_pg_bin",
    "free_port",
]

__getattr__, __dir__ = exports(__name__, _LAZY)
