"""AWS Secrets Manager: username and password from a secret's JSON, rotation-aware.

A rotation Lambda puts the new password under the AWSPENDING label, sets it on the
database (ALTER ROLE), then moves AWSCURRENT to it. Between the last two steps the
database already refuses AWSCURRENT's password: after a rejected login we read
AWSCURRENT and, if it is still the refused one, AWSPENDING.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aurora_backend.credentials import aws
from aurora_backend.credentials.cache import Credential
from aurora_backend.credentials.config import CredentialsConfig

logger = logging.getLogger("aurora_backend")

CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"


class SecretFormatError(ValueError):
    """The secret is not JSON with a "password" (its content is never in the message)."""


def region_for(config: CredentialsConfig) -> str | None:
    """The explicit region, else the one in the secret's ARN, else boto3's default."""
    if config.region:
        return config.region
    parts = (config.secret_id or "").split(":")
    if len(parts) > 4 and parts[0] == "arn" and parts[2] == "secretsmanager":
        return parts[3] or None
    return None


def fetch(config: CredentialsConfig, rejected: Credential | None) -> Credential:
    """AWSCURRENT; after a rejected login, AWSPENDING when AWSCURRENT is what was refused."""
    current = _read(config, CURRENT)
    if rejected is None or current is None or current.password != rejected.password:
        if current is None:
            raise SecretFormatError("secret %r has no %s version" % (config.secret_id, CURRENT))
        return current
    pending = _read(config, PENDING)
    if pending is not None and pending.password != rejected.password:
        logger.info("secret %r: %s was refused; using %s (a rotation is under way)", config.secret_id, CURRENT, PENDING)
        return pending
    return current


def _read(config: CredentialsConfig, stage: str) -> Credential | None:
    client = aws.client("secretsmanager", region_for(config), config.profile, config.endpoint_url)
    try:
        response = client.get_secret_value(SecretId=config.secret_id, VersionStage=stage)
    except client.exceptions.ResourceNotFoundException:
        if stage == PENDING:
            return None  # no rotation under way
        raise
    return _parse(config, response, stage)


def _parse(config: CredentialsConfig, response: Any, stage: str) -> Credential:
    try:
        data = json.loads(response["SecretString"])
        password = data["password"]
    except (KeyError, TypeError, ValueError):
        raise SecretFormatError(
            'secret %r (%s) must be a JSON SecretString with "username" and "password" keys' % (config.secret_id, stage)
        ) from None  # the parse error would quote the secret
    if not isinstance(password, str) or not password:
        raise SecretFormatError('secret %r (%s): "password" must be a non-empty string' % (config.secret_id, stage))
    user = data.get("username")
    return Credential(user if isinstance(user, str) and user else None, password, stage)
