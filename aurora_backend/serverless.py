"""AWS Lambda: close database connections at the end of every invocation.

Lambda freezes the execution environment between invocations and may thaw it
minutes later or never. A connection left open across the freeze keeps Aurora
Serverless from pausing or scaling, and is often dead after the thaw. Close them
when an invocation ends; the next invocation opens fresh ones (with connect retry
across a resume).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:  # pragma: no cover
    from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper

F = TypeVar("F", bound=Callable[..., Any])


def close_all(aliases: Sequence[str] | None = None) -> None:
    """Close the connections of ``aliases`` (default: every one opened in this thread).

    With Django's pool (``OPTIONS["pool"]``) closing only returns a connection to the pool,
    so the pool of each alias is closed too: its idle connections are truly closed, and
    the next use opens a new pool. (Lambda runs one invocation at a time per process.)
    """
    from django.db import connections

    targets = [connections[a] for a in aliases] if aliases else connections.all(initialized_only=True)
    for connection in targets:
        connection.close()
        if connection.alias in getattr(connection, "_connection_pools", ()):
            cast("PostgresWrapper", connection).close_pool()  # a pool: Django's postgresql wrapper


@contextmanager
def close_connections(aliases: Sequence[str] | None = None) -> Iterator[None]:
    """Run a block, then close the database connections, whatever the block raised."""
    try:
        yield
    finally:
        close_all(aliases)


def lambda_handler(func: F) -> F:
    """Decorate a Lambda handler so that its connections are closed when it returns."""

    @functools.wraps(func)
    def handler(*args: Any, **kwargs: Any) -> Any:
        with close_connections():
            return func(*args, **kwargs)

    return cast(F, handler)
