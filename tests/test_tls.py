"""TLS host verification survives our own address selection (resolve.py).

aurora_backend resolves HOST itself and gives libpq ``host=<name>`` plus ``hostaddr=<ip>``.
With ``sslmode=verify-full`` libpq must check the server certificate against the name,
not the address. A throwaway CA and a cluster with TLS on, for the name
``db.aurora-test.invalid``, prove it both ways: the right name connects to the address our
resolver chose, a wrong name or an untrusted CA fails at once (not retried until the
deadline).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from django.db import OperationalError, connections

from aurora_backend import drivers
from aurora_backend.base import DatabaseWrapper
from aurora_backend.errors import ErrorKind, classify
from aurora_backend.runtime import Runtime
from aurora_backend.testing import PostgresCluster
from aurora_backend.testing.cluster import PASSWORD, SUPERUSER

if shutil.which("openssl") is None:
    pytest.skip("needs the openssl command line to make a throwaway CA", allow_module_level=True)

NAME = "db.aurora-test.invalid"
OTHER_NAME = "other.aurora-test.invalid"
ADDRESS = "127.0.0.2"
#: Our connect_deadline for these tests; a failure that is not retried returns far sooner.
DEADLINE = 5


def _openssl(workdir: str, *args: str) -> None:
    result = subprocess.run(
        ["openssl", *args],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=30,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], result.stdout))


def _make_ca(workdir: str, stem: str) -> tuple[str, str]:
    """A self-signed CA (EC P-256, valid 2 days); returns (cert, key) paths."""
    key, cert = stem + ".key", stem + ".crt"
    _openssl(workdir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    _openssl(
        workdir,
        "req",
        "-x509",
        "-new",
        "-key",
        key,
        "-sha256",
        "-days",
        "2",
        "-subj",
        "/CN=aurora_backend test CA %s" % stem,
        "-out",
        cert,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return os.path.join(workdir, cert), os.path.join(workdir, key)


def _make_server_cert(workdir: str, ca: tuple[str, str], dns_name: str) -> tuple[str, str]:
    """A server certificate for ``dns_name`` (subjectAltName) signed by ``ca``."""
    _openssl(workdir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key")
    _openssl(workdir, "req", "-new", "-key", "server.key", "-subj", "/CN=%s" % dns_name, "-out", "server.csr")
    with open(os.path.join(workdir, "server.ext"), "w") as fh:
        fh.write("subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n" % dns_name)
    _openssl(
        workdir,
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        ca[0],
        "-CAkey",
        ca[1],
        "-CAcreateserial",
        "-days",
        "1",
        "-sha256",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    )
    return os.path.join(workdir, "server.crt"), os.path.join(workdir, "server.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Our CA, a server certificate for NAME it signed, and a second CA that signed nothing."""
    workdir = str(tmp_path_factory.mktemp("tls-pki"))
    ca = _make_ca(workdir, "ca")
    rogue_ca = _make_ca(workdir, "rogue-ca")
    server = _make_server_cert(workdir, ca, NAME)
    return {"ca": ca[0], "rogue_ca": rogue_ca[0], "server_cert": server[0], "server_key": server[1]}


def _install(cluster: PostgresCluster, source: str, name: str, mode: int) -> None:
    """Copy a certificate file into the data directory, readable by the server's OS user."""
    target = os.path.join(cluster.datadir, name)
    shutil.copyfile(source, target)
    os.chmod(target, mode)
    if cluster.as_postgres:
        shutil.chown(target, user="postgres", group="postgres")


@pytest.fixture(scope="module")
def tls_cluster(pki):
    """A throwaway cluster with ssl=on and the certificate for NAME, on 127.0.0.1-3."""
    try:
        # Relative paths are read from the data directory, which initdb creates in __init__.
        cluster = PostgresCluster(settings={"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"})
    except RuntimeError as err:  # no PostgreSQL binaries here (external AURORA_TEST_DSN)
        pytest.skip("needs local PostgreSQL binaries for a TLS cluster: %s" % err)
    try:
        _install(cluster, pki["server_cert"], "server.crt", 0o644)
        _install(cluster, pki["server_key"], "server.key", 0o600)
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(autouse=True)
def db_access(django_db_blocker):
    """Our wrappers talk to the TLS cluster's ``postgres`` database, not the test database."""
    with django_db_blocker.unblock():
        yield


class RecordingResolver:
    """A DNS stand-in: every name resolves to ``addresses``; the calls are recorded."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return list(self.addresses)


def _wrapper(cluster, rootcert, host, resolver, alias):
    """An aurora_backend DatabaseWrapper for the TLS cluster with sslmode=verify-full."""
    settings_dict = {
        **connections["default"].settings_dict,
        "HOST": host,
        "PORT": str(cluster.port),
        "NAME": "postgres",
        "USER": SUPERUSER,
        "PASSWORD": PASSWORD,
        "OPTIONS": {
            "sslmode": "verify-full",
            "sslrootcert": rootcert,
            "aurora": {"resolver": resolver, "connect_deadline": DEADLINE, "connect_timeout": 2},
        },
    }
    wrapper = DatabaseWrapper(settings_dict, alias=alias)
    sleeps: list[float] = []
    # Backoff sleeps are recorded, not slept, and advance the clock: a retry loop (the bug
    # the negative tests look for) reaches the deadline at once instead of spinning.
    wrapper.aurora_runtime = Runtime(clock=lambda: time.monotonic() + sum(sleeps), sleep=sleeps.append)
    return wrapper, sleeps


def _fails_at_once(wrapper, sleeps) -> OperationalError:
    """Connect, expecting a failure that is raised at once, not retried; returns it."""
    start = time.monotonic()
    try:
        with pytest.raises(OperationalError) as err:
            wrapper.ensure_connection()
    finally:
        wrapper.close()
    elapsed = time.monotonic() - start
    assert sleeps == [], "the failure was retried (backoff sleeps %r): %s" % (sleeps, err.value)
    assert elapsed < 2.0, "took %.2fs of a %ds connect_deadline" % (elapsed, DEADLINE)
    assert classify(err.value) is ErrorKind.NEVER_RETRY, str(err.value)
    return err.value


def test_verify_full_checks_the_name_while_connecting_to_the_chosen_address(tls_cluster, pki):
    resolver = RecordingResolver(ADDRESS)
    wrapper, sleeps = _wrapper(tls_cluster, pki["ca"], NAME, resolver, alias="tls")
    try:
        with wrapper.cursor() as cur:
            cur.execute("SELECT ssl, host(inet_server_addr()) FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (True, ADDRESS)
        assert wrapper.aurora_address == ADDRESS
        assert resolver.calls == [(NAME, tls_cluster.port)]
        # What libpq was given: the name to verify and the address to dial.
        params = drivers.connection_parameters(wrapper.connection)
        assert (params["host"], params["hostaddr"], params["sslmode"]) == (NAME, ADDRESS, "verify-full")
        assert drivers.ssl_in_use(wrapper.connection)
        assert sleeps == []
    finally:
        wrapper.close()


def test_certificate_for_another_name_fails_at_once(tls_cluster, pki):
    """The address is right and the CA trusted, but the name differs: no connection, no retry."""
    resolver = RecordingResolver(ADDRESS)
    wrapper, sleeps = _wrapper(tls_cluster, pki["ca"], OTHER_NAME, resolver, alias="tls-other-name")
    error = _fails_at_once(wrapper, sleeps)
    assert 'server certificate for "%s" does not match host name "%s"' % (NAME, OTHER_NAME) in str(error)
    assert resolver.calls == [(OTHER_NAME, tls_cluster.port)]


def test_certificate_from_an_untrusted_ca_fails_at_once(tls_cluster, pki):
    resolver = RecordingResolver(ADDRESS)
    wrapper, sleeps = _wrapper(tls_cluster, pki["rogue_ca"], NAME, resolver, alias="tls-rogue-ca")
    error = _fails_at_once(wrapper, sleeps)
    assert "certificate verify failed" in str(error)


def test_ip_address_as_host_is_verified_as_libpq_does_without_our_resolver(tls_cluster, pki):
    """Documents libpq: with HOST an IP, verify-full compares the IP to the certificate's names."""
    resolver = RecordingResolver("127.0.0.3")
    wrapper, sleeps = _wrapper(tls_cluster, pki["ca"], ADDRESS, resolver, alias="tls-ip-host")
    error = _fails_at_once(wrapper, sleeps)
    # No IP subjectAltName, so libpq also tries the CN: 'for "db..." (and 1 other name) does not match'.
    assert 'server certificate for "%s"' % NAME in str(error)
    assert 'does not match host name "%s"' % ADDRESS in str(error)
    assert resolver.calls == []
