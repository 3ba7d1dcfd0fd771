"""Transactions: retry_atomic, its options, and the outcome of a lost COMMIT.

Public: ``retry_atomic``, ``retrying`` (and its ``Retrying``/``Attempt``), ``RetryOptions``,
``CommitOutcomeUnknown`` and ``NestedRetryWarning``; also at the package root
(``from aurora_backend import retry_atomic``). Imported on first use.
"""

from typing import TYPE_CHECKING

from aurora_backend._lazy import exports

if TYPE_CHECKING:
    from aurora_backend.exceptions import CommitOutcomeUnknown, NestedRetryWarning
    from aurora_backend.transactions.retry import Attempt, Retrying, RetryOptions, retry_atomic, retrying

__all__ = [
    "Attempt",
    "CommitOutcomeUnknown",
    "NestedRetryWarning",
    "RetryOptions",
    "Retrying",
    "retry_atomic",
    "retrying",
]

_RETRY = "aurora_backend.transactions.retry"

_LAZY = {
    "Attempt": _RETRY,
    "CommitOutcomeUnknown": "aurora_backend.exceptions",
    "NestedRetryWarning": "aurora_backend.exceptions",
    "RetryOptions": _RETRY,
    "Retrying": _RETRY,
    "retry_atomic": _RETRY,
    "retrying": _RETRY,
}

__getattr__, __dir__ = exports(__name__, _LAZY)
