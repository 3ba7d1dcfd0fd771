"""A credentials callable of the user's (or its dotted path): ``fn() -> (user, password)``.

Whatever it reads (a vault, a file a sidecar rewrites, another AWS API), it is called
only when the cache needs a credential: at the first connection, when the refresh
interval passes, and after a server refused the cached one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_backend.credentials.cache import Credential
from aurora_backend.credentials.config import CredentialsConfig


class CredentialsCallableError(TypeError):
    """The callable returned something other than (user, password); never shows the value."""


def fetch(config: CredentialsConfig, rejected: Credential | None) -> Credential:
    assert config.func is not None
    result: Any = config.func()
    if isinstance(result, Mapping):
        result = (result.get("username", result.get("user")), result.get("password"))
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CredentialsCallableError(
            "credentials callable %s returned a %s; it must return (user, password)"
            % (config.func_name, type(result).__name__)
        )
    user, password = result
    if (user is not None and not isinstance(user, str)) or not isinstance(password, str) or not password:
        raise CredentialsCallableError(
            "credentials callable %s must return (user or None, a non-empty password string)" % config.func_name
        )
    return Credential(user or None, password, "callable")
