"""Helpers for testing applications that use aurora_backend."""

from aurora_backend.testing.cluster import (
    PASSWORD,
    SUPERUSER,
    PostgresCluster,
    ServerAddress,
    find_pg_bin,
    free_port,
)

__all__ = ["PASSWORD", "SUPERUSER", "PostgresCluster", "ServerAddress", "find_pg_bin", "free_port"]
