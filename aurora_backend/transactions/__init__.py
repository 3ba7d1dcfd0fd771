"""Transactions: retry_atomic, its options, and the outcome of a lost COMMIT.

Public: ``retry_atomic``, ``retrying`` (and its ``Retrying``/``Attempt``), ``RetryOptions``,
``CommitOutcomeUnknown`` and ``NestedRetryWarning``; also at the package root
(``from aurora_backend import retry_atomic``). Imported on first use.
"""

from typing import Any, List

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

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))
