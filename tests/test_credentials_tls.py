"""IAM end to end through the ENGINE: a TLS server whose role's password is the token RDS
would accept (signed by a separate botocore client with the same fixed credentials and clock).

The login only succeeds if the ENGINE sends the token signed for the endpoint name (while
connecting to the address its resolver chose), over TLS, and a fresh one after 10 minutes.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import boto3
import psycopg2
import pytest
from django.db import connections

from aurora_backend.base import DatabaseWrapper
from aurora_backend.runtime import Runtime
from aurora_backend.testing import PostgresCluster
from aurora_backend.testing.cluster import PASSWORD, SUPERUSER
from tests.credentials_support import offline_aws
from tests.test_credentials_iam import ENDPOINT, clock  # noqa: F401 (fixture)

__all__ = ["offline_aws"]
ROLE = "iam_app"

if shutil.which("openssl") is None:
    pytest.skip("needs the openssl command line for a server certificate", allow_module_level=True)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("iam-tls"))
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-subj",
            "/CN=" + ENDPOINT,
        ],
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        cluster = PostgresCluster(settings={"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"})
    except RuntimeError as err:
        pytest.skip("needs local PostgreSQL binaries: %s" % err)
    try:
        for name, mode in (("server.crt", 0o644), ("server.key", 0o600)):
            target = os.path.join(cluster.datadir, name)
            shutil.copyfile(os.path.join(workdir, name), target)
            os.chmod(target, mode)
            if cluster.as_postgres:
                shutil.chown(target, user="postgres", group="postgres")
        cluster.start()
        admin(cluster, "CREATE ROLE %s LOGIN" % ROLE)
        yield cluster
    finally:
        cluster.destroy()


def admin(cluster: PostgresCluster, statement: str, *args: object) -> None:
    conn = psycopg2.connect(host="127.0.0.1", port=cluster.port, user=SUPERUSER, password=PASSWORD, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(statement, args or None)
    finally:
        conn.close()


def accept_token_at(cluster: PostgresCluster, clock) -> None:
    """What RDS does, reduced: the role accepts exactly the token valid now for ENDPOINT."""
    rds = boto3.client("rds", region_name="eu-west-1")  # not the ENGINE's shared client
    token = rds.generate_db_auth_token(DBHostname=ENDPOINT, Port=cluster.port, DBUsername=ROLE)
    admin(cluster, "ALTER ROLE %s PASSWORD %%s" % ROLE, token)


@pytest.mark.usefixtures("offline_aws")
def test_iam_login_over_tls_with_a_token_for_the_endpoint_name(tls_server, clock, django_db_blocker):
    settings_dict = {
        **connections["default"].settings_dict,
        "HOST": ENDPOINT,
        "PORT": str(tls_server.port),
        "NAME": "postgres",
        "USER": ROLE,
        "PASSWORD": "",
        "OPTIONS": {
            "sslmode": "require",
            "aurora": {
                "resolver": lambda host, port: ["127.0.0.1"],
                "connect_deadline": 5,
                "connect_timeout": 2,
                "credentials": {"source": "iam"},
                "max_age": None,
                "idle_timeout": None,
                "ping_after": None,
            },
        },
    }
    first, later = DatabaseWrapper(settings_dict, alias="iam"), DatabaseWrapper(settings_dict, alias="iam")
    for wrapper in (first, later):
        wrapper.aurora_runtime = Runtime(clock=clock, random=random.Random(5))
    query = "SELECT current_user, ssl, pid FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    with django_db_blocker.unblock():
        try:
            accept_token_at(tls_server, clock)
            with first.cursor() as cursor:
                cursor.execute(query)
                user, ssl, pid = cursor.fetchone()
                assert (user, ssl) == (ROLE, True)
            assert first.aurora_address == "127.0.0.1"  # connected to the address, signed for the name
            clock.now = 601.0  # past the refresh point (<= 600 s): the old token is not used again
            accept_token_at(tls_server, clock)
            with later.cursor() as cursor:
                cursor.execute(query)
                assert cursor.fetchone()[:2] == (ROLE, True)
            with first.cursor() as cursor:  # the first connection lives on
                cursor.execute(query)
                assert cursor.fetchone() == (ROLE, True, pid)
        finally:
            first.close()
            later.close()
