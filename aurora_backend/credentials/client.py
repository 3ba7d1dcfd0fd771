"""``manage.py dbshell`` with a rotating credential: psql gets it in PGPASSWORD, never in argv.

Django's postgresql client already passes PASSWORD through the environment; we hand its
``settings_to_cmd_args_env`` a copy of the settings holding the credential of the moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_backend.credentials import login
from aurora_backend.credentials.config import CredentialsConfig
from aurora_backend.runtime import Runtime

_classes: dict[type, type] = {}


def with_credential(settings_dict: Mapping[str, Any], config: CredentialsConfig, runtime: Runtime) -> dict[str, Any]:
    """A copy of ``settings_dict`` whose USER and PASSWORD are a credential fetched now."""
    cache = login.cache(
        config, settings_dict.get("HOST") or None, settings_dict.get("PORT") or None, settings_dict.get("USER") or None
    )
    credential = cache.fetch_now(runtime)
    return {**settings_dict, "USER": credential.user or settings_dict.get("USER"), "PASSWORD": credential.password}


class _CredentialsClient:
    """Mixed in before the ENGINE's DatabaseClient (Django's postgresql one, PostGIS's...)."""

    connection: Any

    def settings_to_cmd_args_env(
        self, settings_dict: Mapping[str, Any], parameters: list[str]
    ) -> tuple[list[str], dict[str, str] | None]:
        wrapper = self.connection
        fresh = with_credential(settings_dict, wrapper.aurora_options.credentials, wrapper.aurora_runtime)
        # super() is the ENGINE's DatabaseClient, a base only at run time (see credentials_client);
        # Django declares the method a classmethod, so it cannot be the mixin's declared base.
        return super().settings_to_cmd_args_env(fresh, parameters)  # type: ignore[misc]


def credentials_client(wrapper: Any) -> Any:
    """``wrapper.client`` rebuilt so that dbshell logs in with the rotating credential."""
    base = type(wrapper.client)
    klass = _classes.get(base)
    if klass is None:
        klass = _classes[base] = type(base.__name__, (_CredentialsClient, base), {"__module__": __name__})
    return klass(wrapper)
