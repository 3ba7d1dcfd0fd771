"""aurora_backend: a Django database ENGINE for Amazon Aurora PostgreSQL.

Set ``"ENGINE": "aurora_backend"``; see docs/configuration.md for the settings under
``OPTIONS["aurora"]``. The public API is ``__all__`` below: ``retry_atomic`` and
``retrying`` (with ``RetryOptions``), ``close_connections``, ``close_all`` and
``lambda_handler`` (Lambda), the error classification (``classify``, ``ErrorKind``,
``is_transaction_retryable``), ``AuroraWrapperMixin`` (to compose with another ENGINE),
and every exception (``aurora_backend.exceptions``; errors are ``AuroraBackendError``).
The names are imported on first use, so ``import aurora_backend`` needs no configured
Django and loads no driver.
"""

from typing import TYPE_CHECKING

from aurora_backend._lazy import exports

if TYPE_CHECKING:  # what type checkers see; at run time the names come from _LAZY
    from aurora_backend.errors import ErrorKind, classify, is_transaction_retryable
    from aurora_backend.exceptions import (
        AuroraBackendError,
        AuroraBackendWarning,
        BlueGreenHoldTimeout,
        ClusterUnavailable,
        CommitOutcomeUnknown,
        CredentialsCallableError,
        CredentialsRejected,
        CredentialsUnavailable,
        NestedRetryWarning,
        PinningError,
        PositionUnavailable,
        SecretFormatError,
        SimulatorError,
        WriteForwardingRefused,
    )
    from aurora_backend.mixin import AuroraWrapperMixin
    from aurora_backend.serverless import close_all, close_connections, lambda_handler
    from aurora_backend.transactions.retry import RetryOptions, retry_atomic, retrying

__version__ = "0.1.0"

__all__ = [
    "AuroraBackendError",
    "AuroraBackendWarning",
    "AuroraWrapperMixin",
    "BlueGreenHoldTimeout",
    "ClusterUnavailable",
    "CommitOutcomeUnknown",
    "CredentialsCallableError",
    "CredentialsRejected",
    "CredentialsUnavailable",
    "ErrorKind",
    "NestedRetryWarning",
    "PinningError",
    "PositionUnavailable",
    "RetryOptions",
    "SecretFormatError",
    "SimulatorError",
    "WriteForwardingRefused",
    "__version__",
    "classify",
    "close_all",
    "close_connections",
    "is_transaction_retryable",
    "lambda_handler",
    "retry_atomic",
    "retrying",
]

_EXCEPTIONS = "aurora_backend.exceptions"
_ERRORS = "aurora_backend.errors"
_RETRY = "aurora_backend.transactions.retry"
_SERVERLESS = "aurora_backend.serverless"

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
    "ErrorKind": _ERRORS,
    "NestedRetryWarning": _EXCEPTIONS,
    "PinningError": _EXCEPTIONS,
    "PositionUnavailable": _EXCEPTIONS,
    "RetryOptions": _RETRY,
    "SecretFormatError": _EXCEPTIONS,
    "SimulatorError": _EXCEPTIONS,
    "WriteForwardingRefused": _EXCEPTIONS,
    "classify": _ERRORS,
    "close_all": _SERVERLESS,
    "close_connections": _SERVERLESS,
    "is_transaction_retryable": _ERRORS,
    "lambda_handler": _SERVERLESS,
    "retry_atomic": _RETRY,
    "retrying": _RETRY,
}

__getattr__, __dir__ = exports(__name__, _LAZY)
