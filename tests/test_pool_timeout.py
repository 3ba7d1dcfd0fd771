"""Django's pool: the checkout timeout is the app's (issue 25).

psycopg_pool's ``timeout`` (30 s unless the app sets one) bounds a checkout from a busy
pool, as with Django's own backend; only a checkout that meets a connect riding out a
resuming cluster waits longer, up to ``connect_deadline``.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.test_pool import _pooled, _query, needs_psycopg3

pytestmark = [pytest.mark.django_db(transaction=True), needs_psycopg3, pytest.mark.timeout(60)]


def test_the_pools_timeout_is_psycopg_pools_default_or_the_apps():
    import inspect

    from psycopg_pool import ConnectionPool

    default = inspect.signature(ConnectionPool.__init__).parameters["timeout"].default
    assert default == 30.0  # psycopg_pool's own default
    assert _pooled(alias="t-default").pool.timeout == default
    assert _pooled(alias="t-app", pool={"timeout": 2.5}).pool.timeout == 2.5


def test_a_busy_pool_times_out_after_the_apps_timeout():
    from django.db import OperationalError
    from psycopg_pool import PoolTimeout

    wrapper = _pooled(alias="t-busy", pool={"max_size": 1, "timeout": 0.5})
    held = _pooled(alias="t-busy", pool={"max_size": 1, "timeout": 0.5})  # the same pool, by alias
    held.ensure_connection()
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError) as raised:
            wrapper.ensure_connection()
        assert isinstance(raised.value.__cause__, PoolTimeout)
        assert time.monotonic() - started < 5.0  # not connect_deadline + connect_timeout
    finally:
        held.close()
        wrapper.close_pool()


def test_a_checkout_meeting_a_resuming_server_waits_for_the_connect():
    from tests.pg import cluster

    pg = cluster()
    if pg is None:
        pytest.skip("needs the throwaway cluster (AURORA_TEST_DSN names an external server)")
    wrapper = _pooled(alias="t-resume", pool={"min_size": 0, "max_size": 2, "timeout": 0.5})
    try:
        assert _query(wrapper) > 0
        wrapper.close_pool()
        pg.stop("fast")
        restarter = threading.Timer(2.0, pg.start)  # down four times the pool's timeout
        restarter.start()
        try:
            assert _query(wrapper) > 0  # the connect's retry rode it out; the checkout waited
        finally:
            restarter.join()
    finally:
        wrapper.close_pool()
