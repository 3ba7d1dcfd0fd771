"""Credentials that rotate: IAM auth tokens, Secrets Manager secrets, or a callable.

``OPTIONS["aurora"]["credentials"]`` (config.py) names the source. The credential is
resolved per physical connection (login.py, called by ``connect_with_retry``) from one
cache per process (cache.py) that a single thread refreshes ahead of expiry; a refused
login drops it and tries once more with a fresh one. See docs/credentials.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from aurora_backend.credentials import aws, cache
from aurora_backend.credentials.cache import Credential
from aurora_backend.credentials.client import credentials_client
from aurora_backend.credentials.config import CredentialsConfig, parse
from aurora_backend.credentials.iam import region_from_host
from aurora_backend.credentials.login import Login, is_rejection, status
from aurora_backend.exceptions import (
    CredentialsCallableError,
    CredentialsRejected,
    CredentialsUnavailable,
    SecretFormatError,
)

__all__ = [
    "Credential",
    "CredentialsCallableError",
    "CredentialsConfig",
    "CredentialsRejected",
    "CredentialsUnavailable",
    "Login",
    "SecretFormatError",
    "check_settings",
    "clear",
    "credentials_client",
    "is_rejection",
    "parse",
    "status",
]


def clear() -> None:
    """Forget every cached credential and boto3 client (tests; a forked child)."""
    cache.clear()
    aws.clear()


def check_settings(alias: str, settings_dict: Mapping[str, Any], config: CredentialsConfig | None) -> None:
    """What OPTIONS alone cannot tell: PASSWORD left beside a source, IAM without a region."""
    if config is None:
        return
    key = "DATABASES[%r]['OPTIONS']['aurora']['credentials']" % alias
    if settings_dict.get("PASSWORD"):
        raise ImproperlyConfigured(
            "DATABASES[%r] sets both PASSWORD and %s; the password comes from the credentials "
            "source: remove PASSWORD." % (alias, key)
        )
    if config.source != "iam":
        return
    host = settings_dict.get("HOST") or ""
    if not host or host.startswith("/") or "," in host:
        raise ImproperlyConfigured(
            "%s uses IAM authentication: set DATABASES[%r]['HOST'] to the cluster's endpoint "
            "name (the token is signed for it)." % (key, alias)
        )
    if not config.region and region_from_host(host) is None:
        raise ImproperlyConfigured(
            "%s uses IAM authentication but HOST %r is not an RDS endpoint name "
            "(<name>.<id>.<region>.rds.amazonaws.com): add 'region' (e.g. 'eu-west-1') to it." % (key, host)
        )
    if not (config.user or settings_dict.get("USER")):
        raise ImproperlyConfigured(
            "%s uses IAM authentication: set DATABASES[%r]['USER'] (or 'user' in it) to the "
            "database user the token is for." % (key, alias)
        )
