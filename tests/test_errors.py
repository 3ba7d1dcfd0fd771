"""Error classification of errors made by a real server, with the driver under test.

The tables (every message and SQLSTATE of docs/aurora_facts.md): tests/unit/test_errors.py.
"""

import pytest

from aurora_backend import drivers
from aurora_backend.errors import (
    classify,
    sqlstate,
)
from tests.pg import server
from tests.unit.test_errors import C, D, N, R

# ----- errors made by a real server, with the driver we ship -----


def _connect(**overrides):
    srv = server()
    params = dict(host=srv.host, port=srv.port, user=srv.user, password=srv.password, dbname="postgres")
    params.update(overrides)
    return drivers.connect(**params)


def test_real_bad_password_and_missing_database_are_never_retried():
    with pytest.raises(drivers.OperationalError) as bad_password:
        _connect(password="wrong")
    assert classify(bad_password.value) is N
    with pytest.raises(drivers.OperationalError) as missing:
        _connect(dbname="no_such_database")
    assert classify(missing.value) is N


def test_real_refused_connection_is_retryable():
    from aurora_backend.testing import free_port

    with pytest.raises(drivers.OperationalError) as refused:
        _connect(port=free_port())
    assert classify(refused.value) is C


def test_real_terminated_backend_is_a_disconnect():
    victim, killer = _connect(), _connect()
    victim.autocommit = killer.autocommit = True
    with killer.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", [drivers.backend_pid(victim)])
    with pytest.raises(drivers.Error) as dead:
        victim.cursor().execute("SELECT 1")
    # libpq 17 reports it without SQLSTATE; an older libpq as AdminShutdown (57P01).
    assert sqlstate(dead.value) in (None, "57P01")
    assert classify(dead.value, victim) is D
    with pytest.raises(drivers.Error) as closed:  # psycopg2: InterfaceError, psycopg 3: OperationalError
        victim.cursor().execute("SELECT 1")
    assert classify(closed.value, victim) is D
    killer.close()


def test_real_read_only_serialization_and_integrity_errors():
    conn = _connect()
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS aurora_errors_t")
    cur.execute("CREATE TABLE aurora_errors_t (id int PRIMARY KEY)")
    cur.execute("INSERT INTO aurora_errors_t VALUES (1)")
    with pytest.raises(drivers.Error) as dup:
        cur.execute("INSERT INTO aurora_errors_t VALUES (1)")
    assert (sqlstate(dup.value), classify(dup.value, conn)) == ("23505", N)
    cur.execute("SET default_transaction_read_only = on")
    with pytest.raises(drivers.Error) as read_only:
        cur.execute("INSERT INTO aurora_errors_t VALUES (2)")
    assert (sqlstate(read_only.value), classify(read_only.value, conn)) == ("25006", R)
    with pytest.raises(drivers.Error) as syntax:
        cur.execute("SELEC 1")
    assert classify(syntax.value, conn) is N
    cur.execute("SET default_transaction_read_only = off")
    cur.execute("DROP TABLE aurora_errors_t")
    conn.close()
