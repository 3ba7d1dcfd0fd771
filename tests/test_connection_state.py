"""One typed state object per connection: ``wrapper.aurora`` (connection/state.py).

Created with the wrapper, the same object for the wrapper's life, its per-connection part
started afresh by each new connection; what the cursors, the idle reaper and the routers
read of it (their Protocols); one per thread, shared with a wrapper that is shared. Real
PostgreSQL, an injected clock; the state is read through its public fields only.
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any

import pytest
from django.db import OperationalError, connection, connections

from aurora_backend import signals
from aurora_backend.base import DatabaseWrapper
from aurora_backend.connection.lifetime import reaper
from aurora_backend.connection.state import ConnectionState, ReaperState, RouterState, StatementState, state_of
from aurora_backend.observability import catalog
from aurora_backend.runtime import Runtime
from tests.test_session_state import FakeClock
from tests.test_statement_path import wait_until_running

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

ALIAS = "state"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_wrapper(clock: FakeClock, alias: str = ALIAS, **aurora: Any) -> Any:
    settings_dict = {**connection.settings_dict}
    settings_dict["OPTIONS"] = {"aurora": {"idle_timeout": 1, "max_age": (10, 20), "ping_after": None, **aurora}}
    db = DatabaseWrapper(settings_dict, alias=alias)
    db.aurora_runtime = Runtime(clock=clock, random=random.Random(0))
    return db


@pytest.fixture
def wrapper(clock):
    db = make_wrapper(clock)
    connections[ALIAS] = db
    yield db
    db.close()
    del connections[ALIAS]


@pytest.fixture
def reconnected():
    seen: list[dict] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    signals.reconnected.connect(receiver, weak=False, dispatch_uid="test-state-reconnected")
    yield seen
    signals.reconnected.disconnect(dispatch_uid="test-state-reconnected")


def pid_of(db: Any) -> int:
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_each_wrapper_has_its_own_typed_state_and_no_private_attributes(wrapper, clock):
    other = make_wrapper(clock, alias="state_other")
    assert isinstance(wrapper.aurora, ConnectionState) and isinstance(other.aurora, ConnectionState)
    assert wrapper.aurora is not other.aurora
    assert state_of(wrapper) is wrapper.aurora and state_of(object()) is None
    with pytest.raises(AttributeError):
        wrapper.aurora.last_use = 1.0  # a misspelt field is an error (__slots__)
    # A life: connect, session state, a cursor left unread, a close on purpose, a reconnect.
    with wrapper.cursor() as cursor:
        cursor.execute("SET search_path TO public")
        cursor.execute("SELECT generate_series(1, 3)")
    wrapper._aurora_close("stale")
    pid_of(wrapper)
    assert [name for name in vars(wrapper) if name.startswith("_aurora")] == []


def test_a_new_connection_starts_afresh_on_the_same_state_object(wrapper, clock):
    state = wrapper.aurora
    pid = pid_of(wrapper)
    first_expiry = state.expires_at
    assert state.connected_at == clock.now and 10 <= first_expiry - clock.now <= 20
    cursor = wrapper.cursor()
    cursor.execute("SET search_path TO public")
    cursor.execute("SELECT generate_series(1, 3)")  # rows unread: the cursor holds the connection
    assert wrapper.aurora_session_state() == ["set search_path", "cursor with unread rows"]
    assert state.readers
    wrapper.close()
    clock.now += 100
    assert pid_of(wrapper) != pid
    assert wrapper.aurora is state
    assert wrapper.aurora_session_state() == [] and not state.session.held
    assert state.connected_at == clock.now and 10 <= state.expires_at - clock.now <= 20
    assert state.last_used == clock.now and not math.isinf(state.last_used)


def test_the_reason_of_a_close_is_told_by_the_next_connect_once(wrapper, clock, reconnected):
    pid = pid_of(wrapper)
    clock.now += 2  # idle past idle_timeout
    assert reaper.reap() == 1
    assert wrapper.aurora.close_reason == "idle"
    assert pid_of(wrapper) != pid
    assert [k["reason"] for k in reconnected] == ["idle"] and wrapper.aurora.close_reason is None
    pid_of(wrapper)
    assert len(reconnected) == 1


def test_each_collaborator_finds_what_its_protocol_names(wrapper):
    state = wrapper.aurora
    for protocol in (StatementState, ReaperState, RouterState):
        assert isinstance(state, protocol), protocol.__name__
    assert state.router is None  # a host that is no Aurora endpoint: no topology router


def test_the_reaper_never_waits_for_the_owner_holding_the_state_lock(wrapper, clock):
    pid = pid_of(wrapper)
    clock.now += 2
    with wrapper.aurora.lock:  # the owner is in its pre-use check (a ping that may hang)
        assert reaper.reap() == 0
    assert reaper.reap() == 1
    assert pid_of(wrapper) != pid


def test_a_forked_child_gets_a_lock_nobody_holds(wrapper):
    state = wrapper.aurora
    state.lock.acquire()  # held by a thread of the parent at the fork
    state.after_fork()
    assert state.lock.acquire(blocking=False)
    state.lock.release()


def test_a_statement_counts_as_in_use_while_it_runs(wrapper, clock):
    catalog.track(wrapper)
    pid = pid_of(wrapper)
    assert catalog.connection_counts()[(ALIAS, "used")] == 0
    wrapper.inc_thread_sharing()
    errors: list[BaseException] = []

    def sleep() -> None:
        try:
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(30) /* in-use probe */")
        except OperationalError as exc:  # cancelled below, once seen
            errors.append(exc)

    worker = threading.Thread(target=sleep)
    worker.start()
    try:
        with connection.cursor() as cursor:  # until the statement runs on the server
            wait_until_running(cursor, pid, "in-use probe", worker)
        assert math.isinf(wrapper.aurora.last_used)
        assert catalog.connection_counts()[(ALIAS, "used")] == 1
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_cancel_backend(%s)", [pid])
    finally:
        worker.join()
        wrapper.dec_thread_sharing()
    assert "canceling statement" in str(errors[0])
    assert wrapper.aurora.last_used == clock.now
    assert catalog.connection_counts()[(ALIAS, "used")] == 0


def test_each_thread_has_its_own_state_and_a_shared_wrapper_shares_it(wrapper, clock):
    mine = connections["default"].aurora
    theirs: list[Any] = []
    worker = threading.Thread(target=lambda: theirs.append(connections["default"].aurora))
    worker.start()
    worker.join()
    assert isinstance(theirs[0], ConnectionState) and theirs[0] is not mine
    # A wrapper shared with another thread: one connection, one state.
    pid_of(wrapper)
    wrapper.inc_thread_sharing()
    try:
        clock.now += 0.5

        def other_thread() -> None:
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(11)")

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
    finally:
        wrapper.dec_thread_sharing()
    assert wrapper.aurora.last_used == clock.now
    assert wrapper.aurora_session_state() == ["advisory_lock 11"]
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(11)")
    assert wrapper.aurora_session_state() == []
