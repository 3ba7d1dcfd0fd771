"""aurora_backend: a Django database ENGINE for Amazon Aurora PostgreSQL.

Set ``"ENGINE": "aurora_backend"``; see README.md for the settings under
``OPTIONS["aurora"]``. Public API (imported lazily, so importing the package needs
no configured Django): ``retry_atomic``, ``retrying``, ``close_connections``,
``lambda_handler``, and the exceptions ``CommitOutcomeUnknown`` and ``ClusterUnavailable``.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "retry_atomic": "aurora_backend.transactions.retry",
    "retrying": "aurora_backend.transactions.retry",
    "CommitOutcomeUnknown": "aurora_backend.transactions.retry",
    "close_connections": "aurora_backend.serverless",
    "lambda_handler": "aurora_backend.serverless",
    "ClusterUnavailable": "aurora_backend.connection.connect",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'aurora_backend' has no attribute %r" % name)
    import importlib

    return getattr(importlib.import_module(module), name)
