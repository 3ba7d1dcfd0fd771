"""pytest fixtures for rehearsing Aurora failovers in your own tests.

Enable them in your top-level ``conftest.py``::

    pytest_plugins = ["aurora_backend.testing.fixtures"]

``aurora_cluster`` (session): a started :class:`AuroraCluster` with timings scaled down
(TTL and DNS delay 0.5 s instead of Aurora's 5 s; override the ``aurora_cluster_options``
fixture to change them) and a :class:`TestClock` as its DNS clock.
``aurora_databases`` (session): the aliases "aurora" (cluster endpoint) and "aurora_ro"
(reader endpoint) registered in ``django.db.connections`` for the session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from aurora_backend.testing.aurora_cluster import AuroraCluster
from aurora_backend.testing.aurora_dns import TestClock


def register_alias(alias: str, settings_dict: Mapping[str, Any]) -> None:
    """Add a database alias to ``django.db.connections`` at run time (tests only)."""
    from django.db import connections

    configured = connections.configure_settings({"default": {}, alias: dict(settings_dict)})[alias]
    connections.settings[alias] = configured


def unregister_alias(alias: str) -> None:
    """Close and remove an alias added by :func:`register_alias`."""
    from django.db import connections

    try:
        connections[alias].close()
    except Exception:
        pass
    with contextlib.suppress(AttributeError, KeyError):
        del connections[alias]
    connections.settings.pop(alias, None)


@contextlib.contextmanager
def cluster_aliases(
    cluster: AuroraCluster, writer: str = "aurora", reader: str = "aurora_ro", **aurora: Any
) -> Iterator[dict[str, str]]:
    """Register ``writer`` (cluster endpoint) and ``reader`` (reader endpoint) aliases."""
    register_alias(writer, cluster.database_settings(**aurora))
    register_alias(reader, cluster.database_settings(cluster.reader_endpoint, **aurora))
    try:
        yield {"writer": writer, "reader": reader}
    finally:
        unregister_alias(writer)
        unregister_alias(reader)


@pytest.fixture(scope="session")
def aurora_cluster_options() -> dict[str, Any]:
    """Keyword arguments of the session's AuroraCluster; override to change them."""
    return {"readers": 2, "ttl": 0.5, "dns_delay": 0.5}


@pytest.fixture(scope="session")
def aurora_cluster(aurora_cluster_options: dict[str, Any]) -> Iterator[AuroraCluster]:
    """A running local Aurora cluster for the whole session (stopped at the end)."""
    options = dict(aurora_cluster_options)
    options.setdefault("clock", TestClock())
    try:
        cluster = AuroraCluster(**options).start()
    except RuntimeError as err:  # no PostgreSQL binaries on this machine
        pytest.skip(str(err))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def aurora_databases(aurora_cluster: AuroraCluster, django_db_blocker: Any) -> Iterator[dict[str, str]]:
    """Aliases "aurora" and "aurora_ro" on the session's cluster (scaled-down connect options)."""
    options: dict[str, Any] = {"connect_deadline": 10, "connect_timeout": 2, "backoff_base": 0.02, "backoff_max": 0.2}
    with cluster_aliases(aurora_cluster, **options) as aliases:
        yield aliases
        with django_db_blocker.unblock():
            from django.db import connections

            for alias in aliases.values():
                connections[alias].close()
