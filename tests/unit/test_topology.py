"""Topology routing settings: instance templates and which endpoints are routed (no cluster).

The new writer found on the local Aurora cluster: tests/test_topology.py.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("value", ["abc.example.com", "{instance}.{region}.example.com", 42])
def test_a_bad_instance_template_names_the_setting(value):
    from django.core.exceptions import ImproperlyConfigured

    from aurora_backend.options import AuroraOptions

    with pytest.raises(ImproperlyConfigured, match=r"\['topology_template'\].*\{instance\}"):
        AuroraOptions.from_settings("default", {"aurora": {"topology_template": value}})


def test_only_aurora_endpoints_are_routed():
    from aurora_backend.topology.state import instance_template

    suffix = "abc123.us-east-1.rds.amazonaws.com"
    assert instance_template("prod.cluster-" + suffix, None) == "{instance}." + suffix
    assert instance_template("prod.cluster-ro-" + suffix, None) == "{instance}." + suffix
    assert instance_template("db.example.com", None) is None
    assert instance_template("db.example.com", "{instance}.internal") == "{instance}.internal"
