"""Transparent re-run of a statement whose connection died, where that is safe.

The rule (docs/healing.md, "Which statements are re-run"): outside a transaction (autocommit,
not in ``atomic()``), on an unnamed cursor, after a *disconnect*, a statement is re-run
once on a new connection when

- it provably never reached the server: the driver refused it because the connection
  was already closed (psycopg2 ``InterfaceError: connection already closed``, psycopg 3
  ``OperationalError: the connection is closed``); or
- the server rejected it as a write on a read-only server (SQLSTATE 25006, a demoted
  writer after failover): it changed nothing, and a new connection reaches the new writer; or
- it is a read (``retry_reads``, on by default): it starts with SELECT, WITH, VALUES,
  TABLE, SHOW or EXPLAIN (not EXPLAIN ANALYZE), and names none of the words that make
  a SELECT write (INSERT, UPDATE, DELETE, MERGE, INTO, nextval, setval, advisory
  locks, ...), and calls no function outside the known built-ins (``aurora_backend.sql.reads``).

Anything else, a write whose fate is unknown above all, is never re-run: the caller
gets the error, and the connection has already been replaced for the next call. Nothing
is re-run while the connection holds session state the app set (``session.py``): a new
connection would run the statement without it. That includes state the text cannot show
(a DO block, CALL, a user function, a temporary function or type: ``Kind.UNKNOWN`` and
``Kind.TEMP_OBJECT`` in ``aurora_backend.sql``): what cannot be ruled out lets the error through.
"""

from __future__ import annotations

import contextlib
import logging
import math
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

from django.db import Error as DjangoDatabaseError
from django.db.backends.utils import CursorWrapper

from aurora_backend.connection.session_state import effects, seen, statement_text
from aurora_backend.connection.state import StatementState
from aurora_backend.drivers import OPEN, is_named_cursor, refused_before_sending, status_of
from aurora_backend.errors import ErrorKind, classify, driver_error
from aurora_backend.proxy.mode import server_instants
from aurora_backend.sql.reads import is_read

logger = logging.getLogger("aurora_backend")


def provably_not_sent(exc: BaseException) -> bool:
    """The driver refused the statement before sending it: the connection was closed."""
    return refused_before_sending(driver_error(exc))


class _CursorDB(Protocol):
    """What a cursor class needs of its wrapper (``self.db``)."""

    aurora: StatementState
    aurora_runtime: Any
    aurora_options: Any
    execute_wrappers: list[Any]
    in_atomic_block: bool
    autocommit: bool
    connection: Any


class RetryingCursorMixin:
    """Mixed into Django's CursorWrapper classes by the ENGINE (see ``make_cursor``)."""

    cursor: Any
    db: Any  # a _CursorDB (Any: Django's own wrapper type is what type checkers know it as)

    # One statement path (see _execute_over): the hot path is one try block with no Python
    # call but the wrapped _execute (the status read is one C call); everything else happens
    # only after an error. The _execute of each class is made by _execute_over() with the next
    # _execute in the MRO bound in it; in a class whose execute() is Django's own, the same
    # function is execute() too (see retrying_cursor_class).
    _aurora_next_execute: Any
    _aurora_next_executemany: Any
    _execute: Any

    def _executemany(self, sql: Any, param_list: Any, *ignored: Any) -> Any:
        """Django's ``_executemany`` (``ignored``: Django's wrapper loop passes ``many`` and
        its context), and, in a class whose ``executemany()`` is Django's own, that too: with
        execute wrappers and no ``ignored``, it is the app's call, and the wrappers run first."""
        db = self.db
        if ignored:
            if len(ignored) != 2:  # Django's wrapper loop passes exactly many and context
                raise _signature_error("executemany", "3", 3 + len(ignored))
        elif db.execute_wrappers:
            return self._execute_with_wrappers(sql, param_list, many=True, executor=self._executemany)  # type: ignore[attr-defined]
        state = db.aurora
        clock = db.aurora_runtime.clock
        state.last_used = IN_USE  # in use: the idle reaper stays away, as from execute()
        idle_before = status_of(self.cursor.connection) not in OPEN
        try:
            result = self._aurora_next_executemany(sql, param_list, *ignored)
        except DjangoDatabaseError as exc:
            if not self._prepare_rerun(exc, sql, idle_before, many=True):
                raise
        else:
            found = effects(sql) if sql.__class__ is str else effects(statement_text(sql, self.cursor.connection))
            if found:  # parameters may have been an iterator, consumed: keys stay unresolved
                state.session.apply(found)
            return result
        finally:
            state.last_used = clock()
        result = self._aurora_next_executemany(sql, param_list, *ignored)
        self._after_rerun(sql, None)
        return result

    def _prepare_rerun(self, exc: BaseException, sql: Any, idle_before: bool, many: bool) -> bool:
        """True (with a new driver cursor in place) when the failed statement may run again."""
        # Healing closed the Django connection but left the transaction flags and the
        # dead driver cursor (with its connection) as they were when the statement failed.
        db = self.db
        if db.in_atomic_block or not db.autocommit or not idle_before or is_named_cursor(self.cursor):
            return False
        if not self._may_rerun(exc, sql, getattr(self.cursor, "connection", None), many):
            return False
        if db._aurora_state_blocks_rerun(exc):
            return False  # the app's session state died with the connection: it gets the error
        self._reopen(exc, sql)
        return True

    def _may_rerun(self, exc: BaseException, sql: Any, raw_connection: Any, many: bool) -> bool:
        kind = classify(exc, raw_connection)
        if many:
            # A batch may have been partly applied: only a batch that never left is re-run.
            return kind is ErrorKind.DISCONNECT and provably_not_sent(exc)
        if kind is ErrorKind.READ_ONLY:
            # Re-run only when healing found a demoted writer and dropped the connection.
            return self.db.connection is None
        if kind is not ErrorKind.DISCONNECT:
            return False
        return provably_not_sent(exc) or (self.db.aurora_options.retry_reads and is_read(sql))

    def _after_rerun(self, sql: Any, params: Any) -> None:
        """What the hot path of _execute does after a statement, for a re-run one."""
        cursor = self.cursor  # (registered by _reopen: see session.py)
        found = effects(statement_text(sql, cursor.connection))
        if found:  # a statement that never left the first time may be a SET
            self.db.aurora.session.apply(found, params)

    def callproc(self, procname: Any, params: Any = None, kparams: Any = None) -> Any:
        """Django's ``callproc`` (around ``execute()``: no execute wrapper sees it), with what
        the statement path does for ``SELECT procname(params)``: in use while it runs, and its
        effects on session state (``callproc("pg_advisory_lock", [1])`` takes a session lock).
        Never re-run: a function's fate is unknown once its connection died."""
        db = self.db
        state = db.aurora
        state.last_used = IN_USE
        try:
            result = super().callproc(procname, params, kparams)  # type: ignore[misc]
        finally:
            state.last_used = db.aurora_runtime.clock()
        arguments = len(params) if isinstance(params, (list, tuple)) else 0
        found = effects("SELECT %s(%s)" % (procname, ", ".join(["%s"] * arguments)))
        if found:
            state.session.apply(found, list(params) if arguments else None)
        return result

    # COPY goes around execute() (and so around Django's execute wrappers): a write all the
    # same, reported to the wrappers that ask for it (the router's write tracker) once it is
    # done. What runs is what Django would run: the next class's method where one defines it
    # (Django's debug cursor logs copy_expert and copy into connection.queries), else the
    # driver's, as Django's __getattr__ would return it.
    def _aurora_copy_method(self, name: str) -> Any:
        return getattr(super(), name, None) or getattr(self.cursor, name)

    def copy_expert(self, *args: Any, **kwargs: Any) -> Any:  # psycopg2
        try:
            return self._aurora_copy_method("copy_expert")(*args, **kwargs)
        finally:
            note_write(self.db)

    def copy_from(self, *args: Any, **kwargs: Any) -> Any:  # psycopg2
        try:
            return self._aurora_copy_method("copy_from")(*args, **kwargs)
        finally:
            note_write(self.db)

    @contextlib.contextmanager
    def copy(self, *args: Any, **kwargs: Any) -> Iterator[Any]:  # psycopg 3
        try:
            with self._aurora_copy_method("copy")(*args, **kwargs) as copy:
                yield copy
        finally:
            note_write(self.db)

    def __iter__(self) -> Any:
        # Until the loop ends, its cursor holds the connection even after the last row: the
        # loop's final next() must find the cursor open (session.py).
        cursor, iterating = self.cursor, self.db.aurora.iterating
        iterating[id(cursor)] = weakref.ref(cursor)
        try:
            yield from super().__iter__()  # type: ignore[misc]
        finally:
            iterating.pop(id(cursor), None)

    def close(self) -> None:
        # Django's CursorWrapper has no close() (its __getattr__ finds the driver's): the
        # same, and the cursor's unread rows no longer hold the connection.
        cursor = self.cursor
        self.db.aurora.readers.pop(id(cursor), None)
        return cursor.close()

    def _reopen(self, exc: BaseException, sql: Any) -> None:
        """Replace the dead driver cursor with one on a new connection."""
        logger.info("re-running a statement on a new connection after %s", type(driver_error(exc)).__name__)
        self.db._aurora_statement_retried(sql, exc)
        self.db.ensure_connection()
        with self.db.wrap_database_errors:
            self.cursor = self.db.create_cursor()
        state = self.db.aurora
        state.note_cursor(self.cursor)
        if state.tz_differs:
            server_instants(self.db, self.cursor)


def note_write(db: Any) -> None:
    """Tell ``db``'s execute wrappers that care (``aurora_note_write``) that a COPY ran."""
    for wrapper in db.execute_wrappers:
        note = getattr(wrapper, "aurora_note_write", None)
        if note is not None:
            note(db)


#: ``aurora.last_used`` while a statement runs: the idle reaper (``now - last_used <
#: idle_timeout``) stays away, as it would with the clock read at the start, without the read.
IN_USE = math.inf


def _signature_error(name: str, takes: str, given: int) -> TypeError:
    """The TypeError Django's ``CursorWrapper.<name>()`` raises for a call with too many arguments."""
    return TypeError("%s() takes %s positional arguments but %d were given" % (name, takes, given))


def _execute_over(next_execute: Any) -> Any:
    """The one statement path: the ``_execute`` of a cursor class whose next ``_execute`` in
    the MRO is ``next_execute`` and, where that class's ``execute()`` is Django's own, its
    ``execute()`` as well (one function: no copy to keep in step).

    Called as ``_execute`` by Django's wrapper loop (``_execute_with_wrappers``), it gets
    ``many`` and the context in ``ignored``, and runs the statement. Called as ``execute``
    by the app (no ``ignored``), it does what Django's ``execute`` does: with execute
    wrappers, their loop first (which calls this again as ``_execute``); without, the
    statement at once, two frames fewer than Django's path.
    """

    def _execute(self: Any, sql: Any, params: Any = None, *ignored: Any) -> Any:
        db = self.db  # (each self.X goes through CursorWrapper.__getattr__'s hook on a miss)
        if ignored:
            if len(ignored) != 2:  # Django's wrapper loop passes exactly many and context
                raise _signature_error("execute", "from 2 to 3", 3 + len(ignored))
        elif db.execute_wrappers:
            return self._execute_with_wrappers(sql, params, many=False, executor=self._execute)
        state, cursor = db.aurora, self.cursor
        state.last_used = IN_USE  # in use: the idle reaper stays away
        idle_before = status_of(cursor.connection) not in OPEN
        try:
            result = next_execute(self, sql, params, *ignored) if ignored else next_execute(self, sql, params)
        except DjangoDatabaseError as exc:
            if not self._prepare_rerun(exc, sql, idle_before, many=False):
                raise
        else:
            # Session state (session.py), inlined: this runs for every statement. (Unread rows
            # need nothing here: the cursor was registered when it was made.)
            found = seen.get(sql) if sql.__class__ is str else None  # effects(sql), seen before
            if found is None:
                found = effects(sql if sql.__class__ is str else statement_text(sql, cursor.connection))
            if found:
                state.session.apply(found, params)
            return result
        finally:
            state.last_used = db.aurora_runtime.clock()  # e.g. before a fetch
        result = next_execute(self, sql, params, *ignored)
        self._after_rerun(sql, params)
        return result

    return _execute


_cursor_classes: dict[type, type[Any]] = {}


def retrying_cursor_class(wrapper_class: type) -> type[Any]:
    """``wrapper_class`` (a Django CursorWrapper class) with statement re-run mixed in."""
    if issubclass(wrapper_class, RetryingCursorMixin):
        return wrapper_class
    klass = _cursor_classes.get(wrapper_class)
    if klass is None:
        execute = _execute_over(wrapper_class._execute)  # type: ignore[attr-defined]
        namespace: dict[str, Any] = {
            # What super()._execute would find, bound once here (the per-statement path).
            "_aurora_next_execute": wrapper_class._execute,  # type: ignore[attr-defined]
            "_execute": execute,
            "_aurora_next_executemany": wrapper_class._executemany,  # type: ignore[attr-defined]
        }
        # Django's own execute() in front of its own _execute_with_wrappers(): the same function
        # is execute() (it runs the wrappers itself when there are any), two frames fewer per
        # statement. Any other execute() (the debug wrapper's, another library's) is kept.
        if (
            wrapper_class.execute is CursorWrapper.execute  # type: ignore[attr-defined]
            and wrapper_class.executemany is CursorWrapper.executemany  # type: ignore[attr-defined]
            and wrapper_class._execute_with_wrappers is CursorWrapper._execute_with_wrappers  # type: ignore[attr-defined]
        ):
            namespace.update(execute=execute, executemany=RetryingCursorMixin._executemany)
        klass = type("Aurora" + wrapper_class.__name__, (RetryingCursorMixin, wrapper_class), namespace)
        _cursor_classes[wrapper_class] = klass
    return klass
