"""Shared pieces of the credentials tests: offline AWS, the test role, a threaded workload."""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg2
import pytest
from django.db import connections

from aurora_backend import credentials
from aurora_backend.base import DatabaseWrapper
from aurora_backend.credentials import aws
from aurora_backend.testing.drivers import pool_enabled
from tests.pg import server
from tests.settings import TEST_AURORA_OPTIONS

ROLE = "rotating_app"
ALIAS = "rotating"
ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def offline_aws(monkeypatch):
    """Fixed AWS credentials from the environment; no config files, no instance metadata."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    credentials.clear()
    aws.clear()
    yield
    credentials.clear()
    aws.clear()


def sql(statement: str, *args: Any) -> list[Any]:
    """Run one statement as the superuser on the test server's ``postgres`` database."""
    srv = server()
    conn = psycopg2.connect(host=srv.host, port=srv.port, user=srv.user, password=srv.password, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(statement, args or None)
            return cursor.fetchall() if cursor.description else []
    finally:
        conn.close()


def create_role(password: str) -> None:
    drop_role()
    sql("CREATE ROLE %s LOGIN PASSWORD %%s" % ROLE, password)


def drop_role() -> None:
    sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", ROLE)
    sql("DROP ROLE IF EXISTS %s" % ROLE)


def settings_for(creds: Any, **aurora: Any) -> dict[str, Any]:
    """An aurora_backend alias on the test server, logging in as ROLE through ``creds``."""
    srv = server()
    options: dict[str, Any] = {"aurora": {**TEST_AURORA_OPTIONS, "credentials": creds, **aurora}}
    if pool_enabled():
        # Connections live 0.3 s, so the pool keeps opening new ones through the rotation.
        options["pool"] = {"min_size": 2, "max_size": 12, "max_lifetime": 0.3, "timeout": 10}
    return {
        **connections["default"].settings_dict,
        "NAME": "postgres",
        "USER": ROLE,
        "PASSWORD": "",
        "HOST": srv.host,
        "PORT": str(srv.port),
        "OPTIONS": options,
    }


class Workload:
    """Threads running ``SELECT current_user`` through the ENGINE; each query on a new
    connection (with Django's pool: on a pooled one, which lives 0.3 s)."""

    def __init__(self, settings_dict: dict[str, Any], threads: int = 6) -> None:
        self.settings_dict = settings_dict
        self.done = 0
        #: Backend pids (physical connections) in the order first seen.
        self.pids: dict[int, None] = {}
        self.errors: list[str] = []
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Workload:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self) -> None:
        wrapper = DatabaseWrapper(self.settings_dict, alias=ALIAS)
        try:
            while not self.stop.is_set():
                try:
                    with wrapper.cursor() as cursor:
                        cursor.execute("SELECT current_user, pg_backend_pid()")
                        user, pid = cursor.fetchone()
                    if user != ROLE:
                        self.errors.append("logged in as %r" % user)
                except Exception as exc:
                    self.errors.append("%s: %s" % (type(exc).__name__, exc))
                finally:
                    wrapper.close()  # the next query opens a new physical connection
                with self.cond:
                    self.done += 1
                    if not self.errors:
                        self.pids.setdefault(pid, None)
                    self.cond.notify_all()
        finally:
            wrapper.close()

    def wait_for(self, queries: int, logins: int = 0, timeout: float = 30) -> None:
        """Block until ``queries`` further queries completed and ``logins`` new physical
        connections served one (bounded)."""
        with self.cond:
            done, seen = self.done + queries, len(self.pids) + logins
            assert self.cond.wait_for(lambda: self.done >= done and len(self.pids) >= seen, timeout), (
                "workload stalled: %s" % self.errors[:3]
            )


def close_pool() -> None:
    """Close the pools (AURORA_TEST_DRIVER=pool) of the aliases these tests make."""
    pools = DatabaseWrapper._connection_pools  # type: ignore[attr-defined]
    for alias in [a for a in list(pools) if a.startswith((ALIAS, "iam"))]:
        pool = pools.pop(alias, None)
        if pool is not None:
            pool.close()
