"""aurora_backend: a Django database ENGINE for Amazon Aurora PostgreSQL.

Set ``"ENGINE": "aurora_backend"``; see README.md for the settings under
``OPTIONS["aurora"]``. The public API is ``__all__`` below: ``retry_atomic`` and
``retrying``, ``close_connections``, ``close_all`` and ``lambda_handler`` (Lambda), the
error classification (``classify``, ``ErrorKind``, ``is_transaction_retryable``),
``AuroraWrapperMixin`` (to compose with another ENGINE), and every exception
(``aurora_backend.exceptions``, all ``AuroraBackendError``). The names are imported on
first use, so ``import aurora_backend`` needs no configured Django and loads no driver.
"""

from typing import Any

__version__ = "0.1.0"

_EXCEPTIONS = "aurora_backend.exceptions"

_LAZY = {
    "AuroraBackendError": _EXCEPTIONS,
    "AuroraBackendWarning": _EXCEPTIONS,
    "AuroraWrapperMixin": "aurora_backend.mixin",
    "BlueGreenHoldTimeout": _EXCEPTIONS,
    "ClusterUnavailable": _EXCEPTIONS,
    "CommitOutcomeUnknown": _EXCEPTIONS,
    "CredentialsCallableError": _EXCEPTIONS,
    "CredentialsRejected": _EXCEPTIONS,
    "CredentialsUnavailable": _EXCEPTIONS,
    "ErrorKind": "aurora_backend.errors",
    "NestedRetryWarning": _EXCEPTIONS,
    "PinningError": _EXCEPTIONS,
    "PositionUnavailable": _EXCEPTIONS,
    "RetryOptions": "aurora_backend.transactions.retry",
    "SecretFormatError": _EXCEPTIONS,
    "SimulatorError": _EXCEPTIONS,
    "WriteForwardingRefused": _EXCEPTIONS,
    "classify": "aurora_backend.errors",
    "close_all": "aurora_backend.serverless",
    "close_connections": "aurora_backend.serverless",
    "is_transaction_retryable": "aurora_backend.errors",
    "lambda_handler": "aurora_backend.serverless",
    "retry_atomic": "aurora_backend.transactions.retry",
    "retrying": "aurora_backend.transactions.retry",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'aurora_backend' has no attribute %r" % name)
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_LAZY))
