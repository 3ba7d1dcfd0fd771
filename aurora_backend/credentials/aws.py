"""One boto3 client per (service, region, profile, endpoint) per process, made on first use.

Making a boto3 session and client costs tens of milliseconds and a credential-chain
lookup; doing it per connection (as django-iam-dbauth does) also hits IAM's rate limits.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from aurora_backend.credentials.config import EXTRA_HINT

_clients: dict[tuple[str, str | None, str | None, str | None], Any] = {}
_lock = threading.Lock()


def client(service: str, region: str | None, profile: str | None = None, endpoint_url: str | None = None) -> Any:
    """The shared boto3 client for ``service`` (boto3 clients are thread-safe)."""
    key = (service, region, profile, endpoint_url)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            session = _boto3().session.Session(profile_name=profile)
            found = _clients[key] = session.client(service, region_name=region, endpoint_url=endpoint_url)
    return found


def clear() -> None:
    """Forget the clients (tests)."""
    with _lock:
        _clients.clear()


def _boto3() -> Any:
    try:
        import boto3
        import boto3.session
    except ImportError as err:
        raise ImproperlyConfigured(
            "aurora_backend's IAM and Secrets Manager credentials need boto3: %s." % EXTRA_HINT
        ) from err
    return boto3
