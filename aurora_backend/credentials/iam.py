"""IAM database authentication: a 15-minute token signed by botocore for the endpoint name.

The token is a SigV4 presigned URL for ``<host>:<port>/?Action=connect&DBUser=<user>``.
RDS checks it against the name the client asked for, so it is signed for the endpoint
name even when the connection goes to an address we resolved (``hostaddr``).
"""

from __future__ import annotations

import re

from aurora_backend.credentials import aws
from aurora_backend.credentials.cache import Credential
from aurora_backend.credentials.config import IAM_SAFETY_MARGIN, IAM_TOKEN_LIFETIME, CredentialsConfig

#: ``<name>.<id>.<region>.rds.amazonaws.com`` (also .com.cn, and the ``rds-`` variants).
_RDS_NAME = re.compile(r"\.([a-z]{2}(?:-[a-z]+)+-\d+)\.rds\.amazonaws\.com(?:\.cn)?\.?$", re.IGNORECASE)


def region_from_host(host: str | None) -> str | None:
    """The AWS region in an RDS endpoint name, e.g. eu-west-1 in
    mycluster.cluster-abc.eu-west-1.rds.amazonaws.com; None for any other name."""
    match = _RDS_NAME.search(host or "")
    return match.group(1).lower() if match else None


def region_for(config: CredentialsConfig, host: str | None) -> str | None:
    return config.region or region_from_host(host)


def token(config: CredentialsConfig, host: str, port: int, user: str) -> Credential:
    """A fresh token for ``user`` at ``host:port`` (no network: signing is local)."""
    region = region_for(config, host)
    rds = aws.client("rds", region, config.profile)
    signed = rds.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region)
    return Credential(user, signed, "token", IAM_TOKEN_LIFETIME - IAM_SAFETY_MARGIN)
