"""Transparent re-run of a statement whose connection died, where that is safe.

The rule (README, "Which statements are re-run"): outside a transaction (autocommit,
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
  locks, ...), and calls no function outside the known built-ins (session_sql.py).

Anything else, a write whose fate is unknown above all, is never re-run: the caller
gets the error, and the connection has already been replaced for the next call. Nothing
is re-run while the connection holds session state the app set (``session.py``): a new
connection would run the statement without it. That includes state the text cannot show
(a DO block, CALL, a user function, a temporary function or type: "unknown" and
"temp_object" in session_sql.py): what cannot be ruled out lets the error through.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.db import Error as DjangoDatabaseError
from django.db.backends.utils import CursorWrapper

from aurora_backend.connection.session_state import effects, seen, statement_text
from aurora_backend.drivers import OPEN, is_named_cursor, refused_before_sending, status_of
from aurora_backend.errors import ErrorKind, classify, driver_error

logger = logging.getLogger("aurora_backend")

if TYPE_CHECKING:  # pragma: no cover
    # Checked as what it is mixed into; at run time a plain mixin (see retrying_cursor_class).
    _CursorBase = CursorWrapper
else:
    _CursorBase = object

_LEADING_COMMENTS = re.compile(r"^\s*(?:(?:/\*.*?\*/|--[^\n]*(?:\n|$))\s*)*", re.S)
_READ_START = re.compile(r"(?:SELECT|WITH|VALUES|TABLE|SHOW|EXPLAIN)\b", re.I)
_WRITE_WORDS = re.compile(
    r"\b(?:INSERT|UPDATE|DELETE|MERGE|INTO|TRUNCATE|CREATE|DROP|ALTER|GRANT|REVOKE|COPY|CALL|"
    r"LOCK|ANALYZE|ANALYSE|NEXTVAL|SETVAL|SET_CONFIG|PG_ADVISORY_\w+|PG_TRY_ADVISORY_\w+|"
    r"PG_TERMINATE_BACKEND|PG_CANCEL_BACKEND|PG_NOTIFY|LO_\w+|DBLINK\w*|TXID_CURRENT)\b",
    re.I,
)


def is_read(sql: Any) -> bool:
    """True when ``sql`` cannot have changed anything (see the module docstring)."""
    if isinstance(sql, bytes):
        sql = sql.decode("utf-8", "replace")
    if not isinstance(sql, str):
        sql = str(sql)
    body = _LEADING_COMMENTS.sub("", sql, count=1)
    if not _READ_START.match(body) or _WRITE_WORDS.search(body):
        return False
    # A function outside the known built-ins may write, SET or lock: not a read (fail-safe).
    return "(" not in body or not any(effect.name == "unknown" for effect in effects(body))


def provably_not_sent(exc: BaseException) -> bool:
    """The driver refused the statement before sending it: the connection was closed."""
    return refused_before_sending(driver_error(exc))


class RetryingCursorMixin(_CursorBase):
    """Mixed into Django's CursorWrapper classes by the ENGINE (see ``make_cursor``)."""

    cursor: Any
    db: Any

    # The hot path is one try block with no Python call but the wrapped _execute (the status
    # read is one C call): everything else happens only after an error. The _execute of each
    # class is made by _execute_over() with the next _execute in the MRO bound in it.
    _aurora_next_execute: Any
    _aurora_next_executemany: Any
    _execute: Any

    def _executemany(self, sql: Any, param_list: Any, *ignored: Any) -> Any:
        db = self.db
        clock = db.aurora_runtime.clock
        db._aurora_last_used = clock()
        idle_before = status_of(self.cursor.connection) not in OPEN
        try:
            result = self._aurora_next_executemany(sql, param_list, *ignored)
        except DjangoDatabaseError as exc:
            if not self._prepare_rerun(exc, sql, idle_before, many=True):
                raise
        else:
            found = effects(sql) if sql.__class__ is str else effects(statement_text(sql, self.cursor.connection))
            if found:  # parameters may have been an iterator, consumed: keys stay unresolved
                db._aurora_session.apply(found)
            return result
        finally:
            db._aurora_last_used = clock()
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
            self.db._aurora_session.apply(found, params)

    # COPY goes around execute() (and so around Django's execute wrappers): a write all the
    # same, reported to the wrappers that ask for it (the router's write tracker) once it is
    # done. Driver methods, unwrapped, as Django's __getattr__ would return them.
    def copy_expert(self, *args: Any, **kwargs: Any) -> Any:  # psycopg2
        try:
            return self.cursor.copy_expert(*args, **kwargs)
        finally:
            note_write(self.db)

    def copy_from(self, *args: Any, **kwargs: Any) -> Any:  # psycopg2
        try:
            return self.cursor.copy_from(*args, **kwargs)
        finally:
            note_write(self.db)

    @contextlib.contextmanager
    def copy(self, *args: Any, **kwargs: Any) -> Iterator[Any]:  # psycopg 3
        try:
            with self.cursor.copy(*args, **kwargs) as copy:
                yield copy
        finally:
            note_write(self.db)

    def __iter__(self) -> Any:
        # Until the loop ends, its cursor holds the connection even after the last row: the
        # loop's final next() must find the cursor open (session.py).
        cursor, iterating = self.cursor, self.db._aurora_iterating
        iterating[id(cursor)] = weakref.ref(cursor)
        try:
            yield from super().__iter__()
        finally:
            iterating.pop(id(cursor), None)

    def close(self) -> None:
        # Django's CursorWrapper has no close() (its __getattr__ finds the driver's): the
        # same, and the cursor's unread rows no longer hold the connection.
        cursor = self.cursor
        self.db._aurora_readers.pop(id(cursor), None)
        return cursor.close()

    def _reopen(self, exc: BaseException, sql: Any) -> None:
        """Replace the dead driver cursor with one on a new connection."""
        logger.info("re-running a statement on a new connection after %s", type(driver_error(exc)).__name__)
        self.db._aurora_statement_retried(sql, exc)
        self.db.ensure_connection()
        with self.db.wrap_database_errors:
            self.cursor = self.db.create_cursor()
        self.db._aurora_note_cursor(self.cursor)


def note_write(db: Any) -> None:
    """Tell ``db``'s execute wrappers that care (``aurora_note_write``) that a COPY ran."""
    for wrapper in db.execute_wrappers:
        note = getattr(wrapper, "aurora_note_write", None)
        if note is not None:
            note(db)


#: ``_aurora_last_used`` while a statement runs: the idle reaper (``now - last_used <
#: idle_timeout``) stays away, as it would with the clock read at the start, without the read.
IN_USE = math.inf


def _execute_over(next_execute: Any) -> Any:
    """The ``_execute`` of a cursor class whose next ``_execute`` in the MRO is ``next_execute``."""

    def _execute(self: Any, sql: Any, params: Any, *ignored: Any) -> Any:
        db, cursor = self.db, self.cursor  # (each self.X goes through CursorWrapper.__getattr__'s hook)
        db._aurora_last_used = IN_USE  # in use: the idle reaper stays away
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
                db._aurora_session.apply(found, params)
            return result
        finally:
            db._aurora_last_used = db.aurora_runtime.clock()  # e.g. before a fetch
        result = next_execute(self, sql, params, *ignored)
        self._after_rerun(sql, params)
        return result

    return _execute


def _direct_execute_over(next_execute: Any) -> Any:
    """Django's CursorWrapper.execute, with our ``_execute`` in place of its wrapper loop.

    Django's ``execute`` calls ``_execute_with_wrappers``, which only builds a context and
    wraps the executor in each of ``db.execute_wrappers``; with none, it calls
    ``self._execute(sql, params, many, context)``, which ignores the last two. With wrappers,
    Django's path runs; without, the body of our ``_execute`` (a copy of the one above, for
    one Python frame less per statement: keep the two the same) runs here.
    """

    def execute(self: Any, sql: Any, params: Any = None) -> Any:
        db = self.db
        if db.execute_wrappers:
            return self._execute_with_wrappers(sql, params, many=False, executor=self._execute)
        cursor = self.cursor
        db._aurora_last_used = IN_USE
        idle_before = status_of(cursor.connection) not in OPEN
        try:
            result = next_execute(self, sql, params)
        except DjangoDatabaseError as exc:
            if not self._prepare_rerun(exc, sql, idle_before, many=False):
                raise
        else:
            found = seen.get(sql) if sql.__class__ is str else None
            if found is None:
                found = effects(sql if sql.__class__ is str else statement_text(sql, cursor.connection))
            if found:
                db._aurora_session.apply(found, params)
            return result
        finally:
            db._aurora_last_used = db.aurora_runtime.clock()
        result = next_execute(self, sql, params)
        self._after_rerun(sql, params)
        return result

    return execute


_cursor_classes: dict[type, type[Any]] = {}


def _direct_executemany(self: Any, sql: Any, param_list: Any) -> Any:
    if self.db.execute_wrappers:
        return self._execute_with_wrappers(sql, param_list, many=True, executor=self._executemany)
    return self._executemany(sql, param_list)


def retrying_cursor_class(wrapper_class: type[CursorWrapper]) -> type[Any]:
    """``wrapper_class`` (a Django CursorWrapper class) with statement re-run mixed in."""
    if issubclass(wrapper_class, RetryingCursorMixin):
        return wrapper_class
    klass = _cursor_classes.get(wrapper_class)
    if klass is None:
        # Django's private methods, which django-stubs does not declare.
        parent_execute = wrapper_class._execute  # type: ignore[attr-defined]
        parent_executemany = wrapper_class._executemany  # type: ignore[attr-defined]
        with_wrappers = wrapper_class._execute_with_wrappers  # type: ignore[attr-defined]
        namespace: dict[str, Any] = {
            # What super()._execute would find, bound once here (the per-statement path).
            "_aurora_next_execute": parent_execute,
            "_execute": _execute_over(parent_execute),
            "_aurora_next_executemany": parent_executemany,
        }
        # Django's own execute() in front of its own _execute_with_wrappers(): the statement
        # path can skip two frames (our execute does what our _execute does). Any other execute() (the
        # debug wrapper's, another library's) is kept as it is.
        if (
            wrapper_class.execute is CursorWrapper.execute
            and wrapper_class.executemany is CursorWrapper.executemany
            and with_wrappers is CursorWrapper._execute_with_wrappers  # type: ignore[attr-defined]
        ):
            namespace.update(execute=_direct_execute_over(parent_execute), executemany=_direct_executemany)
        klass = type("Aurora" + wrapper_class.__name__, (RetryingCursorMixin, wrapper_class), namespace)
        _cursor_classes[wrapper_class] = klass
    return klass
