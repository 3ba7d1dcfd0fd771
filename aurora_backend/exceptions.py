"""Every exception and warning aurora_backend raises, in one module.

Each error is an :class:`AuroraBackendError`, and keeps the standard base an ``except``
clause written before this module existed relies on: ``CommitOutcomeUnknown`` and
``BlueGreenHoldTimeout`` are ``django.db.OperationalError``, ``WriteForwardingRefused`` is
``django.db.NotSupportedError``, ``SecretFormatError`` a ``ValueError`` and so on.

``ClusterUnavailable``, ``CredentialsRejected`` and ``CredentialsUnavailable`` end a
connect, inside the driver's ``connect()``: what is raised there is a subclass that is also
the driver's ``OperationalError`` (``drivers.operational_error_class``), so Django re-raises
it as ``django.db.OperationalError`` with it as ``__cause__``; ``except ClusterUnavailable``
catches it either way.

The classes report ``__module__ = "aurora_backend"`` (as psycopg_pool's do): a traceback
names the public path, and an instance pickles by it. Import them from ``aurora_backend``;
the older deep paths (``aurora_backend.connection.connect.ClusterUnavailable``, ...) still
work.
"""

from __future__ import annotations

from typing import Any

from django.db import NotSupportedError, OperationalError

__all__ = [
    "AuroraBackendError",
    "AuroraBackendWarning",
    "BlueGreenHoldTimeout",
    "ClusterUnavailable",
    "CommitOutcomeUnknown",
    "CredentialsCallableError",
    "CredentialsRejected",
    "CredentialsUnavailable",
    "NestedRetryWarning",
    "PinningError",
    "PositionUnavailable",
    "SecretFormatError",
    "SimulatorError",
    "WriteForwardingRefused",
]


class AuroraBackendError(Exception):
    """The base of every error aurora_backend raises (``except AuroraBackendError``)."""


class AuroraBackendWarning(Warning):
    """The base of every warning aurora_backend issues (``filterwarnings(..., category=...)``)."""


# ##### Connecting #####


class ClusterUnavailable(AuroraBackendError):
    """No connection could be made within ``connect_deadline``.

    The error raised is also the driver's ``OperationalError`` (psycopg2's, or psycopg's),
    so Django raises it as ``django.db.OperationalError`` (with this as ``__cause__``) and
    existing ``except`` clauses keep working.
    """


class CredentialsRejected(AuroraBackendError):
    """The server refused the cached credential and one fetched afresh (also the driver's
    OperationalError, like :class:`ClusterUnavailable`)."""


class CredentialsUnavailable(AuroraBackendError):
    """The credentials source failed (AWS error, malformed secret, callable error); also the
    driver's OperationalError, like :class:`ClusterUnavailable`."""


class CredentialsCallableError(AuroraBackendError, TypeError):
    """The callable returned something other than (user, password); never shows the value."""


class SecretFormatError(AuroraBackendError, ValueError):
    """The secret is not JSON with a "password" (its content is never in the message)."""


class BlueGreenHoldTimeout(AuroraBackendError, OperationalError):
    """A new connection or transaction waited ``blue_green['hold']`` seconds for a switchover."""


# ##### Transactions #####


class CommitOutcomeUnknown(AuroraBackendError, OperationalError):
    """The connection died during COMMIT and the server could not say whether it committed.

    A ``django.db.OperationalError`` so that existing handlers still catch it; never retried,
    because running the transaction again could apply it twice. The lost COMMIT's error is
    chained as ``__cause__``.

    Attributes: ``alias``; ``txid`` (the transaction id, or None when it was not recorded);
    ``status``, the server's last answer: 'in progress' (still committing after the
    re-check window), None (id too old, or no answer: ``__cause__`` says why).
    """

    def __init__(self, message: str, *, alias: str, txid: int | None, status: str | None) -> None:
        super().__init__(message)
        self.alias = alias
        self.txid = txid
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only attributes are not in args: rebuild with them (pickle, copy).
        return (_commit_outcome_unknown, (self.args, self.alias, self.txid, self.status), self.__dict__)


def _commit_outcome_unknown(
    args: tuple[Any, ...], alias: str, txid: int | None, status: str | None
) -> CommitOutcomeUnknown:
    return CommitOutcomeUnknown(*args, alias=alias, txid=txid, status=status)


class NestedRetryWarning(AuroraBackendWarning, RuntimeWarning):
    """retry_atomic ran inside an enclosing transaction, where it cannot retry."""


# ##### Reader routing and Global Database #####


class PositionUnavailable(AuroraBackendError):
    """The position could not be read; ``cause`` is the driver's error, if any."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class WriteForwardingRefused(AuroraBackendError, NotSupportedError):
    """A statement Aurora write forwarding does not run, stopped before it was sent."""


# ##### The simulator (tests) #####


class SimulatorError(AuroraBackendError, RuntimeError):
    """A simulator method was called in a state where it cannot do what was asked."""


class PinningError(AuroraBackendError, AssertionError):
    """A block that had to pin nothing pinned at least one session."""


for _name in __all__:
    globals()[_name].__module__ = "aurora_backend"
del _name
