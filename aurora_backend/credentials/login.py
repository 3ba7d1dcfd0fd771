"""The credential of each connection attempt, and one fresh try after a refused login.

:class:`Login` is used by ``connect_with_retry`` once per physical connection (also the
ones Django's pool opens): it puts the cached user and password into the attempt's
parameters; when the server refuses them (28P01/28000) it drops them from the cache,
and the next attempt, made at once, logs in with a credential fetched afresh. A second
refusal is reported as :class:`CredentialsRejected`.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from aurora_backend import drivers
from aurora_backend.credentials import custom, iam, secretsmanager
from aurora_backend.credentials.cache import DROPPED, KEPT, Credential, CredentialCache, cache_for, peek
from aurora_backend.credentials.config import CredentialsConfig
from aurora_backend.errors import driver_error, sqlstate
from aurora_backend.exceptions import CredentialsRejected, CredentialsUnavailable
from aurora_backend.runtime import Runtime

logger = logging.getLogger("aurora_backend")

_REJECTED_CODES = ("28P01", "28000")
_REJECTED_MESSAGES = (
    "password authentication failed",
    "pam authentication failed",  # RDS: a wrong or expired IAM token
    "authentication failed for user",
)


def is_rejection(exc: BaseException) -> bool:
    """The server refused the login (SQLSTATE class 28; connect errors have no code in psycopg2)."""
    exc = driver_error(exc)
    if sqlstate(exc) in _REJECTED_CODES:
        return True
    message = str(exc).lower()
    return any(needle in message for needle in _REJECTED_MESSAGES)


def cache_key(config: CredentialsConfig, host: str | None, port: Any, user: str | None) -> Hashable:
    if config.source == "iam":
        return ("iam", iam.region_for(config, host), config.profile, host, int(port or 5432), config.user or user)
    if config.source == "secretsmanager":
        return ("secretsmanager", config.secret_id, config.region, config.profile, config.endpoint_url)
    func: Hashable = config.func
    try:
        hash(func)
    except TypeError:
        func = id(func)
    return ("callable", config.func_name, func)


def cache(config: CredentialsConfig, host: str | None, port: Any, user: str | None) -> CredentialCache:
    """The process's cache for this source (and, for IAM, this endpoint and user)."""

    def fetch(rejected: Credential | None) -> Credential:
        if config.source == "iam":
            login_user = config.user or user
            if not host or not login_user:
                raise ValueError("IAM authentication needs HOST (the endpoint name) and USER")
            return iam.token(config, host, int(port or 5432), login_user)
        if config.source == "secretsmanager":
            return secretsmanager.fetch(config, rejected)
        return custom.fetch(config, rejected)

    return cache_for(cache_key(config, host, port, user), lambda: CredentialCache(fetch, config.refresh))


def status(config: CredentialsConfig, host: str | None, port: Any, user: str | None) -> dict[str, Any]:
    """Source and age of the cached credential, for health output (never the credential)."""
    found = peek(cache_key(config, host, port, user))
    state = found.status() if found is not None else None
    return {
        "source": config.source,
        "description": config.describe(),
        "fetches": state.fetches if state else 0,
        "age_seconds": state.age_seconds if state else None,
        "refresh_in_seconds": state.refresh_in_seconds if state else None,
        "label": state.label if state else None,
    }


class Login:
    """The credentials side of one ``connect_with_retry`` call."""

    def __init__(self, config: CredentialsConfig, runtime: Runtime, operational_error: type, endpoint: str) -> None:
        self.config = config
        self.runtime = runtime
        self.operational_error = operational_error
        self.endpoint = endpoint
        self.credential: Credential | None = None
        self.user: str | None = None
        self.renewed = False
        self._cache: CredentialCache | None = None

    def apply(self, params: dict[str, Any]) -> None:
        """Put the current user and password into this attempt's parameters."""
        if self._cache is None:
            self._cache = cache(self.config, params.get("host"), params.get("port"), params.get("user"))
        try:
            self.credential = self._cache.get(self.runtime)
        except ImproperlyConfigured:
            raise
        except Exception as exc:
            raise self._unavailable(exc) from exc
        if self.credential.user:
            params["user"] = self.credential.user
        params["password"] = self.credential.password
        self.user = params.get("user")

    def retry_now(self, exc: BaseException) -> bool:
        """True when ``exc`` refused our credential for the first time: try again at once."""
        if self.credential is None or self._cache is None or not is_rejection(exc):
            return False
        if self.renewed:
            raise self._rejected(exc) from exc
        self.renewed = True
        outcome = self._cache.reject(self.credential, self.runtime)
        if outcome == KEPT:  # refetched after a refusal moments ago: nothing newer to try
            raise self._rejected(exc) from exc
        if outcome == DROPPED:
            logger.warning(
                "%s refused the %s from %s; fetching it afresh and trying again",
                self.endpoint,
                self.credential.label or "credential",
                self.config.describe(),
            )
        return True

    def _rejected(self, exc: BaseException) -> Exception:
        from aurora_backend.connection.connect import describe_error

        assert self.credential is not None
        message = (
            "aurora_backend: %s refused the login of user %r with a credential from %s, also "
            "after fetching it afresh (%s). Check that the source holds the database's current "
            "password (IAM: that the user has the rds_iam role and the rds-db:connect "
            "permission). Last error: %s"
            % (self.endpoint, self.user, self.config.describe(), self.credential.label, describe_error(exc))
        )
        logger.error("%s", message)
        return drivers.operational_error_class(CredentialsRejected, self.operational_error)(message)

    def _unavailable(self, exc: BaseException) -> Exception:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        message = "aurora_backend: could not get the credentials for %s from %s: %s: %s" % (
            self.endpoint,
            self.config.describe(),
            type(exc).__name__,
            first_line,
        )
        logger.error("%s", message)
        return drivers.operational_error_class(CredentialsUnavailable, self.operational_error)(message)
