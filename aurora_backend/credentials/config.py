"""``OPTIONS["aurora"]["credentials"]``: where the user and password of each login come from.

Parsed once with the other options into a :class:`CredentialsConfig`; nothing is fetched
here. The credential itself is resolved when a physical connection opens (login.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

#: ``fn() -> (user, password)``; user may be None to keep the alias's USER.
CredentialsCallable = Callable[[], tuple[str | None, str]]

SOURCES = ("iam", "secretsmanager", "callable")
#: An IAM token is valid 15 minutes; we never hand out one older than this.
IAM_TOKEN_LIFETIME = 900.0
IAM_SAFETY_MARGIN = 60.0
#: Default time between fetches, per source (a rejected login fetches at once anyway).
DEFAULT_REFRESH = {"iam": 600.0, "secretsmanager": 3600.0, "callable": None}
#: sslmode values that guarantee TLS (an IAM token must never travel in clear text).
TLS_SSLMODES = ("require", "verify-ca", "verify-full")
EXTRA_HINT = "pip install 'aurora_backend[iam]'"

_KEYS = {
    "iam": ("source", "region", "user", "profile", "refresh"),
    "secretsmanager": ("source", "secret_id", "region", "endpoint_url", "profile", "refresh"),
    "callable": ("source", "callable", "refresh"),
}


@dataclass(frozen=True)
class CredentialsConfig:
    """A validated credentials source (no secret in it: those are fetched per connection)."""

    source: str
    #: IAM: the region (None: from the endpoint name); Secrets Manager: the client's region.
    region: str | None = None
    #: IAM: the database user to sign for (None: the alias's USER).
    user: str | None = None
    #: boto3 profile name (None: the default credential chain).
    profile: str | None = None
    secret_id: str | None = None
    endpoint_url: str | None = None
    func: CredentialsCallable | None = field(default=None, compare=False)
    #: The dotted path or repr of ``func``: part of the cache key and of what health shows.
    func_name: str | None = None
    #: Seconds between fetches (jittered, refreshed ahead of time); None: until rejected.
    refresh: float | None = None

    def describe(self) -> str:
        """What health and errors show: the source, never a secret."""
        if self.source == "iam":
            return "IAM auth token (region %s)" % (self.region or "from the endpoint name")
        if self.source == "secretsmanager":
            return "Secrets Manager secret %r" % self.secret_id
        return "callable %s" % self.func_name


def parse(key: str, value: Any) -> CredentialsConfig | None:
    """Validate the option ``key`` (its full name, for messages); None means USER/PASSWORD."""
    if value is None:
        return None
    if callable(value) or isinstance(value, str):
        value = {"source": "callable", "callable": value}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(
            "%s = %r is invalid: it accepts None, a callable returning (user, password), its "
            "dotted path, or a dict with 'source': one of %s." % (key, value, ", ".join(map(repr, SOURCES)))
        )
    source = value.get("source")
    if source not in SOURCES:
        raise ImproperlyConfigured(
            "%s['source'] = %r is invalid: it accepts %s." % (key, source, ", ".join(map(repr, SOURCES)))
        )
    unknown = sorted(set(value) - set(_KEYS[source]))
    if unknown:
        raise ImproperlyConfigured(
            "%s has unknown key(s) %s for source %r; accepted keys are: %s."
            % (key, ", ".join(map(repr, unknown)), source, ", ".join(_KEYS[source]))
        )
    texts = ("region", "user", "profile", "secret_id", "endpoint_url")
    values: dict[str, Any] = {name: _text(key, name, value[name]) for name in texts if name in value}
    refresh = _refresh(key, source, value.get("refresh", DEFAULT_REFRESH[source]))
    if source == "callable":
        func, name = _callable(key, value.get("callable"))
        return CredentialsConfig("callable", func=func, func_name=name, refresh=refresh)
    _require_boto3(key, source)
    if source == "secretsmanager" and not values.get("secret_id"):
        raise ImproperlyConfigured(
            '%s needs \'secret_id\': the name or ARN of the secret holding {"username": ..., "password": ...}.' % key
        )
    return CredentialsConfig(source, refresh=refresh, **values)


def check_sslmode(key: str, config: CredentialsConfig | None, sslmode: Any) -> None:
    """IAM tokens are bearer credentials: refuse any sslmode that allows clear text."""
    if config is None or config.source != "iam" or sslmode in TLS_SSLMODES:
        return
    raise ImproperlyConfigured(
        "%s uses IAM authentication, which requires TLS, but OPTIONS['sslmode'] is %r: set "
        "OPTIONS['sslmode'] to 'require', 'verify-ca' or 'verify-full' (with sslrootcert, "
        "the RDS CA bundle)." % (key, sslmode)
    )


def _text(key: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured("%s[%r] = %r is invalid: it accepts a non-empty string." % (key, name, value))
    return value


def _refresh(key: str, source: str, value: Any) -> float | None:
    limit = IAM_TOKEN_LIFETIME - IAM_SAFETY_MARGIN
    if value is None and source != "iam":
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if ok and source == "iam" and value > limit:
        ok = False
    if not ok:
        accepted = (
            "a number of seconds > 0 and <= %g (a token is valid 15 minutes)" % limit
            if source == "iam"
            else "a number of seconds > 0, or None to keep it until a login is rejected"
        )
        raise ImproperlyConfigured("%s['refresh'] = %r is invalid: it accepts %s." % (key, value, accepted))
    return float(value)


def _callable(key: str, value: Any) -> tuple[CredentialsCallable, str]:
    accepted = "a callable returning (user, password), or the dotted path of one"
    name = (
        value
        if isinstance(value, str)
        else "%s.%s" % (getattr(value, "__module__", "?"), getattr(value, "__qualname__", type(value).__name__))
    )
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as err:
            raise ImproperlyConfigured(
                "%s['callable'] = %r is invalid: it accepts %s." % (key, name, accepted)
            ) from err
    if not callable(value):
        raise ImproperlyConfigured("%s['callable'] = %r is invalid: it accepts %s." % (key, value, accepted))
    return value, name


def _require_boto3(key: str, source: str) -> None:
    try:
        found = importlib.util.find_spec("boto3") is not None
    except ValueError:  # sys.modules["boto3"] is None: hidden on purpose
        found = False
    if not found:
        raise ImproperlyConfigured("%s: source %r needs boto3, which is not installed: %s." % (key, source, EXTRA_HINT))
