"""Open a connection, riding out a resume, a failover or a scale point.

Retryable failures (refused, timed out, "starting up", "past serverless scale point",
too many clients, a dropped startup) are retried with exponential backoff and full
jitter until ``connect_deadline``; anything else (bad password, missing database)
is raised at once. Every failed attempt is logged on the ``aurora_backend`` logger.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aurora_backend import drivers
from aurora_backend.connection.resolve import choose_address
from aurora_backend.credentials.login import Login
from aurora_backend.errors import classify, is_connect_retryable, sqlstate
from aurora_backend.options import AuroraOptions
from aurora_backend.runtime import Runtime, jittered_delays

logger = logging.getLogger("aurora_backend")

Conn = TypeVar("Conn")


class ClusterUnavailable(Exception):
    """No connection could be made within ``connect_deadline``.

    The error raised is also the driver's ``OperationalError`` (psycopg2's, or psycopg's),
    so Django raises it as ``django.db.OperationalError`` (with this as ``__cause__``) and
    existing ``except`` clauses keep working.
    """


_unavailable_classes: dict[type, type] = {}


def _unavailable_class(operational_error: type) -> type:
    """ClusterUnavailable that is also the driver's OperationalError."""
    klass = _unavailable_classes.get(operational_error)
    if klass is None:
        klass = type("ClusterUnavailable", (ClusterUnavailable, operational_error), {"__module__": __name__})
        _unavailable_classes[operational_error] = klass
    return klass


@dataclass
class Attempt:
    """What :func:`connect_with_retry` reports to ``on_retry`` after a failed attempt."""

    number: int
    error: BaseException
    delay: float
    elapsed: float
    address: str | None


def describe_error(exc: BaseException) -> str:
    """Class, SQLSTATE and first line of an error: enough to log, never a password."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    code = sqlstate(exc)
    return "%s%s: %s" % (type(exc).__name__, "[%s]" % code if code else "", first_line)


def connect_with_retry(
    connect: Callable[[dict[str, Any]], Conn],
    params: dict[str, Any],
    options: AuroraOptions,
    runtime: Runtime,
    on_retry: Callable[[Attempt], None] | None = None,
    endpoint: str = "database",
    operational_error: type | None = None,
) -> tuple[Conn, str | None]:
    """Call ``connect(params)`` until it succeeds, fails for good, or the deadline passes.

    Returns the connection and the address chosen for it (None when libpq resolved
    the host itself).
    """
    start = runtime.clock()
    delays = jittered_delays(options.backoff_base, options.backoff_max, runtime.random)
    address: str | None = None
    number = 0
    login = None
    if options.credentials is not None:
        login = Login(options.credentials, runtime, operational_error or drivers.OperationalError, endpoint)
    while True:
        number += 1
        attempt_params = dict(params)
        elapsed = runtime.clock() - start
        remaining = max(options.connect_deadline - elapsed, 0.0)
        attempt_params["connect_timeout"] = max(2, min(options.connect_timeout, math.ceil(remaining)))
        if options.spread_addresses:
            address = choose_address(attempt_params, options.resolver, runtime.random, avoid=address)
        if login:
            login.apply(attempt_params)  # per attempt: a rotated secret, a token near expiry
        try:
            return connect(attempt_params), address
        except Exception as exc:
            if login and login.retry_now(exc):
                drivers.release_failed_attempt(exc)
                continue  # refused: once more, at once, with a credential fetched afresh
            elapsed = runtime.clock() - start
            if not is_connect_retryable(exc):
                logger.warning(
                    "connect to %s failed (attempt %d, %.2fs, not retryable: %s): %s",
                    endpoint,
                    number,
                    elapsed,
                    classify(exc).value,
                    describe_error(exc),
                )
                raise
            delay = next(delays)
            if elapsed + delay >= options.connect_deadline:
                drivers.release_failed_attempt(exc)  # given up for good: no socket left behind
                raise _deadline_error(
                    endpoint, number, elapsed, options, exc, operational_error or drivers.OperationalError
                ) from exc
            logger.warning(
                "connect to %s%s failed (attempt %d, %.2fs elapsed): %s; retrying in %.2fs",
                endpoint,
                " (%s)" % address if address else "",
                number,
                elapsed,
                describe_error(exc),
                delay,
            )
            if on_retry is not None:
                on_retry(Attempt(number, exc, delay, elapsed, address))
            drivers.release_failed_attempt(exc)  # swallowed: its socket must not outlive it
            runtime.sleep(delay)


def _deadline_error(
    endpoint: str,
    attempts: int,
    elapsed: float,
    options: AuroraOptions,
    exc: BaseException,
    operational_error: type,
) -> Exception:
    message = (
        "aurora_backend: %s did not accept a connection in %.1f seconds (%d attempts, "
        "connect_deadline=%gs); last error: %s. If the cluster was paused or failing over, "
        "it may need longer: raise OPTIONS['aurora']['connect_deadline']."
        % (endpoint, elapsed, attempts, options.connect_deadline, describe_error(exc))
    )
    logger.error("%s", message)
    return _unavailable_class(operational_error)(message)
