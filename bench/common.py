"""Shared set-up of the benchmarks: a server, Django configured in-process, the machine.

Every benchmark is one command (``python bench/<name>.py [--quick]``). With
``AURORA_TEST_DSN`` unset it starts a throwaway PostgreSQL cluster
(``aurora_backend.testing.PostgresCluster``) and removes it at the end; with it set it
creates a database of its own on that server and drops it at the end. Only loopback
addresses are used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import statistics
import sys
from collections.abc import Iterator, Sequence
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (ROOT, os.path.join(ROOT, "testproject")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from aurora_backend.testing import PostgresCluster, ServerAddress  # noqa: E402
from aurora_backend.testing.drivers import select_driver  # noqa: E402

#: AURORA_TEST_DRIVER (psycopg2, psycopg, pool) applies to the benchmarks too.
DRIVER = select_driver()
#: AURORA_TEST_DRIVER=pool: benchmarks that support it put Django's pool on their aliases.
POOL = DRIVER == "pool"


def _require_loopback(host: str) -> None:
    if not host.startswith("127."):
        raise SystemExit(
            "AURORA_TEST_DSN points at %r: the benchmarks only talk to 127.0.0.0/8; "
            "unset it to use a throwaway cluster." % host
        )


@contextlib.contextmanager
def bench_server(dbname: str | None = None) -> Iterator[ServerAddress]:
    """A server and a fresh database on it, both gone when the block ends."""
    cluster: PostgresCluster | None = None
    if os.environ.get("AURORA_TEST_DSN"):
        base = ServerAddress.from_dsn(os.environ["AURORA_TEST_DSN"])
    else:
        cluster = PostgresCluster().start()
        base = cluster.address
    _require_loopback(base.host)
    name = dbname or "aurora_bench_%d" % os.getpid()
    try:
        _admin(base, "DROP DATABASE IF EXISTS %s" % name)
        _admin(base, "CREATE DATABASE %s" % name)
        yield ServerAddress(base.host, base.port, base.user, base.password, name)
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        try:
            if cluster is None:
                _admin(base, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        finally:
            if cluster is not None:
                cluster.destroy()


def _admin(srv: ServerAddress, sql: str) -> None:
    from aurora_backend import drivers

    conn = drivers.connect(srv.dsn, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def database(
    srv: ServerAddress,
    engine: str,
    host: str | None = None,
    port: int | None = None,
    conn_max_age: int | None = None,
    aurora: dict[str, Any] | None = None,
    pool: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A DATABASES entry on ``srv`` (``host``/``port`` override, e.g. a simulator's); with
    ``pool``, Django's pool (``OPTIONS["pool"]``, CONN_MAX_AGE 0 as Django requires)."""
    entry: dict[str, Any] = {
        "ENGINE": engine,
        "NAME": srv.dbname,
        "USER": srv.user,
        "PASSWORD": srv.password,
        "HOST": host or srv.host,
        "PORT": str(port or srv.port),
        "CONN_MAX_AGE": conn_max_age,
        "OPTIONS": {},
    }
    if aurora is not None:
        entry["OPTIONS"]["aurora"] = aurora
    if pool is not None:
        entry["OPTIONS"]["pool"] = pool
        entry["CONN_MAX_AGE"] = 0
    return entry


def configure_django(databases: dict[str, dict[str, Any]], migrate: Sequence[str] = ("default",)) -> None:
    """settings.configure() with testproject's ledger app, then create its tables."""
    import django
    from django.conf import settings

    if "default" not in databases:
        databases = {"default": databases[next(iter(databases))], **databases}
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        SECRET_KEY="aurora-backend-bench",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "ledger"],
        DATABASES=databases,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    # aurora_backend logs every failed connect attempt; a benchmark prints figures instead.
    quiet = logging.getLogger("aurora_backend")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    from django.core.management import call_command

    for alias in migrate:
        call_command("migrate", database=alias, run_syncdb=True, verbosity=0)


def machine() -> dict[str, str]:
    """nproc, CPU model and the versions that matter for the figures."""
    import django

    from aurora_backend import drivers

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "django": django.get_version(),
        "driver": "%s %s%s" % (drivers.NAME, drivers.version(), " + Django's pool" if DRIVER == "pool" else ""),
        "libpq": str(drivers.libpq_version()),
    }


def server_version(alias: str = "default") -> str:
    from django.db import connections

    with connections[alias].cursor() as cur:
        cur.execute("SHOW server_version")
        return str(cur.fetchone()[0])


def print_machine(alias: str = "default") -> None:
    info = machine()
    info["postgresql"] = server_version(alias)
    print("machine: nproc=%(nproc)s cpu=%(cpu)s" % info)
    print(
        "versions: Python %(python)s, Django %(django)s, %(driver)s (libpq %(libpq)s), PostgreSQL %(postgresql)s" % info
    )
    print("command: python %s" % " ".join(sys.argv))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank); 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
