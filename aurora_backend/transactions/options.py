"""Settings of a retry_atomic block, validated when it is created, and the nested-use warning."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aurora_backend.exceptions import NestedRetryWarning

logger = logging.getLogger("aurora_backend")

Callsite = tuple[str, int]


@dataclass(frozen=True)
class RetryOptions:
    """How one retry_atomic / retrying() block runs; validated when it is created."""

    using: str | None = None
    savepoint: bool = True
    durable: bool = False
    max_attempts: int = 5
    max_time: float | None = 30.0
    backoff_base: float = 0.05
    backoff_max: float = 2.0
    commit_check_time: float = 5.0
    record_txid: bool = True

    @classmethod
    def from_keywords(cls, caller: str, options: dict[str, Any]) -> RetryOptions:
        """Build from a caller's keyword arguments; an unknown one is named with the valid ones."""
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(
                "%s() got an unexpected keyword argument %r; its options are: %s."
                % (caller, unknown[0], ", ".join(known))
            )
        return cls(**options)

    def __post_init__(self) -> None:
        for name in ("savepoint", "durable", "record_txid"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError("retry_atomic(%s=%r): give True or False." % (name, getattr(self, name)))
        if self.using is not None and not isinstance(self.using, str):
            raise TypeError("retry_atomic(using=%r): using must be a database alias (str) or None." % (self.using,))
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(
                "retry_atomic(max_attempts=%r): give an int >= 1 (1 never retries)." % (self.max_attempts,)
            )
        _check_seconds("max_time", self.max_time, allow_none=True)
        for name in ("backoff_base", "backoff_max", "commit_check_time"):
            _check_seconds(name, getattr(self, name), allow_none=False)
        if self.backoff_base > self.backoff_max:
            raise ValueError(
                "retry_atomic(backoff_base=%r) must not exceed backoff_max=%r." % (self.backoff_base, self.backoff_max)
            )


def _check_seconds(name: str, value: Any, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        accepted = "a finite number of seconds >= 0" + (" or None (no time limit)" if allow_none else "")
        raise ValueError("retry_atomic(%s=%r): give %s." % (name, value, accepted))


def callsite_of(function: Callable[..., Any]) -> Callsite:
    code = getattr(function, "__code__", None)
    if code is None:
        return (repr(function), 0)
    return (code.co_filename, code.co_firstlineno)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_warned: set[tuple[str, int]] = set()
_warned_lock = threading.Lock()


def warn_nested(callsite: Callsite, alias: str) -> None:
    """Warn once per call site (and process) that an enclosing atomic() disables the retry."""
    with _warned_lock:
        if callsite in _warned:
            return
        _warned.add(callsite)
    message = (
        "retry_atomic at %s:%d runs inside an enclosing atomic() on %r: it cannot re-run the "
        "outer transaction, so it acts as a plain atomic() and a retryable error goes to the "
        "owner of the outer transaction. Move retry_atomic outermost." % (callsite[0], callsite[1], alias)
    )
    logger.warning("%s", message)
    warnings.warn(message, NestedRetryWarning, stacklevel=4)
