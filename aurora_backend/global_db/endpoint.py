"""Recognise Aurora Global Database writer endpoints (case-insensitive).

AWS names the global writer endpoint ``<global-cluster>.global-<id>.global.rds.amazonaws.com``
(https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora-global-database-connecting.html).
Any suffix after ``.global-<id>.global.`` is accepted, so a local global database
(``….global.rds.localhost``) is recognised the same way.
"""

from __future__ import annotations

import re

GLOBAL_ENDPOINT = re.compile(
    r"^(?P<name>[a-z0-9-]+)\.global-(?P<id>[a-z0-9]+)\.global\.(?P<suffix>[a-z0-9.-]+)$", re.IGNORECASE
)


def is_global_endpoint(host: str | None) -> bool:
    """True for ``<name>.global-<id>.global.<domain>`` (a trailing dot allowed)."""
    return bool(host) and GLOBAL_ENDPOINT.match(str(host).rstrip(".")) is not None
