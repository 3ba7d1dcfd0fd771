"""Run a transaction again from the start when the database rolled it back: ``retry_atomic``.

A serialization failure (40001), a deadlock (40P01), a connection lost mid transaction
(scale event, failover, terminated backend), a write on a demoted writer (25006) or a
connect failure that passes (53300, resume) leave nothing committed: the cure is to run
the whole block again in a new transaction. Integrity, data and SQL errors, and every
application exception, are raised at once. See docs/retry_atomic.md.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast, overload

from django.db import DEFAULT_DB_ALIAS, Error, connections, transaction

from aurora_backend import signals, stats
from aurora_backend.bluegreen import tokens as commit_tokens
from aurora_backend.errors import TRANSACTION_RETRYABLE, ErrorKind, classify, driver_error
from aurora_backend.exceptions import CommitOutcomeUnknown, NestedRetryWarning
from aurora_backend.runtime import Runtime, jittered_delays
from aurora_backend.transactions.commit_outcome import (
    COMMITTED,
    commit_outcome_unrecorded,
    current_txid,
    resolve_lost_commit,
)
from aurora_backend.transactions.options import (
    Callsite,
    RetryOptions,
    callsite_of,
    first_line,
    warn_nested,
)
from aurora_backend.transactions.server_identity import ServerIdentity

__all__ = [
    "retry_atomic",
    "retrying",
    "Attempt",
    "Retrying",
    "RetryOptions",
    "CommitOutcomeUnknown",
    "NestedRetryWarning",
]

logger = logging.getLogger("aurora_backend")

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULT_RUNTIME = Runtime()
_LOST_COMMIT_KINDS = frozenset({ErrorKind.DISCONNECT, ErrorKind.CONNECT_RETRYABLE})


# ----- public API ---------------------------------------------------------------------


@overload
def retry_atomic(func: F) -> F: ...
@overload
def retry_atomic(func: str | None = None, **options: Any) -> Callable[[F], F]: ...


def retry_atomic(func: F | str | None = None, **options: Any) -> F | Callable[[F], F]:
    """Decorate ``func`` to run in ``atomic()``, re-run from the start when the database rolled it back.

    ``@retry_atomic``, ``@retry_atomic(using="other", max_attempts=3)`` or ``@retry_atomic("other")``.
    Options: ``using``, ``savepoint``, ``durable`` (as ``transaction.atomic``), ``max_attempts``
    (5), ``max_time`` (30 s), ``backoff_base`` (0.05 s), ``backoff_max`` (2 s),
    ``commit_check_time`` (5 s), ``record_txid`` (True).
    """
    if isinstance(func, str):
        options.setdefault("using", func)
        func = None
    settings = RetryOptions.from_keywords("retry_atomic", options)

    def decorate(function: F) -> F:
        if not callable(function):
            raise TypeError("retry_atomic decorates a function, not %r." % (function,))
        callsite = callsite_of(function)

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            for attempt in Retrying(settings, callsite):
                with attempt:
                    attempt.result = function(*args, **kwargs)
            return attempt.result

        return cast(F, run)

    return decorate(func) if func is not None else decorate


def retrying(using: str | None = None, **options: Any) -> Retrying:
    """Attempts of a block of code: ``for attempt in retrying(): with attempt: ...``.

    Each ``with attempt:`` is one ``atomic()`` transaction; a retryable failure is swallowed
    and the loop runs the block again after a backoff; the last failure is raised. Put
    nothing but the ``with`` statement in the loop body.
    """
    frame = sys._getframe(1)
    return Retrying(
        RetryOptions.from_keywords("retrying", {"using": using, **options}), (frame.f_code.co_filename, frame.f_lineno)
    )


# ----- attempts -------------------------------------------------------------------------


class Retrying:
    """The iterable of attempts behind ``retry_atomic`` and ``retrying()``."""

    def __init__(self, options: RetryOptions, callsite: Callsite) -> None:
        self.options = options
        self.callsite = callsite
        self.alias = options.using or DEFAULT_DB_ALIAS

    def __iter__(self) -> Iterator[Attempt]:
        connection = connections[self.alias]
        if connection.in_atomic_block:
            yield from self._nested(connection)
            return
        runtime = getattr(connection, "aurora_runtime", None) or _DEFAULT_RUNTIME
        self._start = runtime.clock()
        self._runtime = runtime
        self._delays = jittered_delays(self.options.backoff_base, self.options.backoff_max, runtime.random)
        number = 0
        while True:
            number += 1
            attempt = Attempt(self, connection, number)
            if self._connect(attempt):
                yield attempt
                if attempt.succeeded:
                    if number > 1:
                        self._finished(attempt, "committed")
                    return
                if attempt.delay is None:
                    raise RuntimeError("retrying(): use each attempt as `with attempt:` inside the loop.")
            self._announce(attempt)
            runtime.sleep(cast(float, attempt.delay))  # set by the failed attempt (fail()) or its connect

    def _nested(self, connection: Any) -> Iterator[Attempt]:
        warn_nested(self.callsite, self.alias)
        attempt = Attempt(self, connection, 1, nested=True)
        yield attempt

    def _connect(self, attempt: Attempt) -> bool:
        """Connect before the attempt, so a connect failure is retried like any other."""
        connection = attempt.connection
        try:
            connection.ensure_connection()
        except Exception as exc:
            if not attempt.fail(exc, retryable=_is_database_error(exc) and classify(exc) in TRANSACTION_RETRYABLE):
                raise
            return False
        if not connection.autocommit:
            raise transaction.TransactionManagementError(
                "retry_atomic cannot retry on %r: autocommit is off, so the transaction belongs to "
                "whoever turned it off. Turn autocommit back on, or use atomic()." % self.alias
            )
        return True

    def next_delay(self, attempt: Attempt) -> float | None:
        """The wait before the next attempt, or None when attempts or time are used up."""
        delay = next(self._delays)
        if attempt.number >= self.options.max_attempts:
            return None
        elapsed = self._runtime.clock() - self._start
        if self.options.max_time is not None and elapsed + delay > self.options.max_time:
            return None
        return delay

    def _finished(self, attempt: Attempt, outcome: str) -> None:
        signals.transaction_finished.send(
            sender=type(attempt.connection),
            alias=self.alias,
            connection=attempt.connection,
            attempts=attempt.number,
            outcome=outcome,
        )

    def _announce(self, attempt: Attempt) -> None:
        error = attempt.error
        assert error is not None and attempt.delay is not None
        name = type(driver_error(error)).__name__
        logger.info(
            "retrying transaction on %r: attempt %d failed with %s (%s); next attempt in %.3fs",
            self.alias,
            attempt.number,
            name,
            first_line(error),
            attempt.delay,
        )
        stats.incr(self.alias, "transactions_retried")
        signals.transaction_retry.send(
            sender=type(attempt.connection),
            alias=self.alias,
            connection=attempt.connection,
            attempt=attempt.number,
            error=error,
            delay=attempt.delay,
        )


class Attempt:
    """One run of the block, in its own ``atomic()``; use it as ``with attempt:``."""

    def __init__(self, retrying: Retrying, connection: Any, number: int, nested: bool = False) -> None:
        #: 1 for the first run, 2 for the first retry, ...
        self.number = number
        self.connection = connection
        #: The failure that ended this attempt (when it is retried), else None.
        self.error: BaseException | None = None
        #: The wait before the next attempt when this one is retried, else None.
        self.delay: float | None = None
        self.succeeded = False
        self.result: Any = None
        self._retrying = retrying
        self._nested = nested
        self._raw: Any = None
        self._commit_token: str | None = None
        options = retrying.options
        self._atomic = transaction.atomic(using=retrying.alias, savepoint=options.savepoint, durable=options.durable)

    def __enter__(self) -> Attempt:
        self._atomic.__enter__()
        self._raw = self.connection.connection
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> bool:
        if self._nested:
            self._atomic.__exit__(exc_type, exc, traceback)
            self.succeeded = exc is None
            return False
        if exc is None:
            return self._commit()
        retryable = self._is_retryable(exc)
        self._atomic.__exit__(exc_type, exc, traceback)
        return self.fail(exc, retryable)

    def fail(self, exc: BaseException, retryable: bool) -> bool:
        """Record a failure; True when another attempt will follow (the error is swallowed)."""
        if not retryable or not isinstance(exc, Exception):
            if self.number > 1:
                self._retrying._finished(self, "failed")
            return False
        delay = self._retrying.next_delay(self)
        if delay is None:
            logger.warning(
                "giving up transaction on %r after %d attempt(s): %s",
                self._retrying.alias,
                self.number,
                type(driver_error(exc)).__name__,
            )
            self._retrying._finished(self, "gave_up")
            return False
        self.error, self.delay = exc, delay
        return True

    def _is_retryable(self, exc: BaseException) -> bool:
        if not _is_database_error(exc):
            return False
        if self.connection.closed_in_transaction:
            # The connection died in this transaction: the server rolled it back, whatever
            # error the block raised afterwards (e.g. "Cannot open a new connection").
            return isinstance(exc, Error)
        return classify(exc, self._raw) in TRANSACTION_RETRYABLE

    def _commit(self) -> bool:
        """Commit this attempt; resolve a lost COMMIT; run the on_commit callbacks once."""
        connection = self.connection
        if connection.needs_rollback or connection.closed_in_transaction:
            self._atomic.__exit__(None, None, None)  # Django rolls back, as atomic() does
            self.succeeded = True
            return False
        try:
            txid, server = current_txid(connection) if self._retrying.options.record_txid else (None, None)
            self._commit_token = commit_tokens.write(connection, txid)  # Blue/Green: opt-in, see tokens.py
        except Exception as exc:
            if self._exit_failed(exc):
                return True
            raise
        # Django drops the on_commit callbacks when COMMIT fails; keep them for a COMMIT
        # that is lost but turns out to have committed.
        callbacks, connection.run_on_commit = connection.run_on_commit, []
        raw = connection.connection
        try:
            self._atomic.__exit__(None, None, None)
        except Exception as exc:
            if self._commit_failed(exc, raw, txid, server, callbacks):
                return True
            raise
        self._succeed(callbacks)
        return False

    def _exit_failed(self, exc: BaseException) -> bool:
        retryable = self._is_retryable(exc)
        self._atomic.__exit__(type(exc), exc, exc.__traceback__)
        return self.fail(exc, retryable)

    def _commit_failed(
        self,
        exc: BaseException,
        raw: Any,
        txid: int | None,
        server: ServerIdentity | None,
        callbacks: list[tuple[set[str], Callable[[], None]]],
    ) -> bool:
        """True to retry; False to raise ``exc``; the lost-COMMIT verdict may raise instead."""
        kind = classify(exc, raw)
        if kind not in _LOST_COMMIT_KINDS:
            # The server answered COMMIT with an error (e.g. 40001 under SERIALIZABLE): rolled back.
            return self.fail(exc, _is_database_error(exc) and kind in TRANSACTION_RETRYABLE)
        alias = self._retrying.alias
        options = self._retrying.options
        logger.warning(
            "COMMIT on %r got no answer (%s); transaction id %s", alias, type(driver_error(exc)).__name__, txid
        )
        if not options.record_txid:
            self._verdict("unknown", txid)
            raise commit_outcome_unrecorded(alias, exc)
        if txid is None:
            self._verdict("no_writes", txid)
            self._succeed(callbacks)  # it wrote nothing: committed or not, the outcome is the same
            return True
        try:
            status = commit_tokens.settle(
                self.connection,
                self._commit_token,
                lambda: resolve_lost_commit(
                    self.connection,
                    txid,
                    self._retrying._runtime,
                    options.commit_check_time,
                    exc,
                    server,
                ),
            )
        except CommitOutcomeUnknown:
            self._verdict("unknown", txid)
            raise
        self._verdict(status, txid)
        if status == COMMITTED:
            self._succeed(callbacks)
            return True
        return self.fail(exc, True)

    def _verdict(self, verdict: str, txid: int | None) -> None:
        signals.lost_commit.send(
            sender=type(self.connection),
            alias=self._retrying.alias,
            connection=self.connection,
            verdict=verdict,
            txid=txid,
        )

    def _succeed(self, callbacks: list[tuple[set[str], Callable[[], None]]]) -> None:
        self.succeeded = True
        if callbacks:
            self.connection.run_on_commit = callbacks
            self.connection.run_and_clear_commit_hooks()


# ----- helpers --------------------------------------------------------------------------


def _is_database_error(exc: BaseException) -> bool:
    """A Django database error, or a driver error that escaped Django's translation."""
    if isinstance(exc, Error):
        return True
    from aurora_backend.drivers import Error as DriverError

    return isinstance(exc, DriverError)
