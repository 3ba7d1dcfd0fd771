"""Parsers of the Global Database settings in OPTIONS["aurora"] (wired in options.py).

- ``home_region``: the app's own AWS region (``"us-east-1"``); its reader alias reads there.
- ``global_instance_templates``: ``{region: "{instance}.<suffix>"}``, each region's instance
  endpoint name; needed to find the primary's writer faster than DNS.
- ``cross_region_reads``: a reader alias may fall back to another region's reader when its
  home region has none (default False: only by choice).
- ``write_forwarding``: None, ``"error"`` or ``"route"``: what to do with the statements
  Aurora write forwarding refuses on this alias (docs/global_database.md).
- ``primary_alias``: the alias on the global writer endpoint that ``"route"`` sends them to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

REGION = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
FORWARDING_MODES = ("error", "route")


def _error(key: str, value: Any, accepted: str) -> ImproperlyConfigured:
    return ImproperlyConfigured("%s = %r is invalid: it accepts %s." % (key, value, accepted))


def home_region(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not REGION.match(value):
        raise _error(key, value, "None or an AWS region name such as 'us-east-1'")
    return value


def instance_templates(key: str, value: Any) -> dict[str, str] | None:
    accepted = (
        "None or a dict {region: instance endpoint template}, e.g. "
        "{'us-east-1': '{instance}.abc123.us-east-1.rds.amazonaws.com'}"
    )
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise _error(key, value, accepted)
    for region, template in value.items():
        if (
            not isinstance(region, str)
            or not REGION.match(region)
            or not isinstance(template, str)
            or "{instance}" not in template
            or template.count("{") != 1
        ):
            raise _error(key, value, accepted)
    return dict(value)


def write_forwarding(key: str, value: Any) -> str | None:
    if value is None or value is False:
        return None
    if value not in FORWARDING_MODES:
        raise _error(
            key,
            value,
            "None, 'error' (refused statements raise before they are sent) or "
            "'route' (they run on OPTIONS['aurora']['primary_alias'])",
        )
    return str(value)


def primary_alias(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _error(key, value, "None or the name of the alias on the global writer endpoint")
    return value


def check(where: str, options: Any) -> None:
    """Settings that only make sense together."""
    if options.write_forwarding == "route" and not options.primary_alias:
        raise ImproperlyConfigured(
            "%s['write_forwarding'] = 'route' needs %s['primary_alias']: the alias on the global writer "
            "endpoint that runs the statements write forwarding refuses (or use 'error')." % (where, where)
        )
    if options.cross_region_reads and not options.global_instance_templates:
        raise ImproperlyConfigured(
            "%s['cross_region_reads'] = True needs %s['global_instance_templates'] ({region: "
            "'{instance}.<suffix>'}): the other regions' readers are reached by their instance endpoints."
            % (where, where)
        )
    if (
        options.home_region
        and options.global_instance_templates
        and options.home_region not in options.global_instance_templates
    ):
        raise ImproperlyConfigured(
            "%s['home_region'] = %r is not a region of %s['global_instance_templates'] (%s)."
            % (where, options.home_region, where, ", ".join(sorted(options.global_instance_templates)))
        )
