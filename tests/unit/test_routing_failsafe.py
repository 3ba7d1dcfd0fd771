"""reader_settings(): shared objects, custom endpoints refused, host case ignored (no server).

The fail-safe routing rule on a real writer + standby: tests/test_routing_failsafe.py.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from aurora_backend.routing import reader_settings


def test_reader_settings_shares_objects_refuses_custom_endpoints_ignores_case():
    import threading

    class Resolver:  # like AuroraCluster's: holds a lock, cannot be copied or pickled
        def __init__(self):
            self.lock = threading.Lock()

        def __call__(self, host, port):
            return [host]

    resolver = Resolver()
    writer = {
        "HOST": "App.Cluster-Abc123.eu-west-1.rds.amazonaws.com",
        "NAME": "app",
        "OPTIONS": {"aurora": {"resolver": resolver, "connect_deadline": 30}},
    }
    reader = reader_settings(writer)
    assert reader["HOST"] == "App.cluster-ro-Abc123.eu-west-1.rds.amazonaws.com"
    assert reader["OPTIONS"]["aurora"]["resolver"] is resolver
    reader["OPTIONS"]["aurora"]["connect_deadline"] = 5  # the dicts are the reader's own
    assert writer["OPTIONS"]["aurora"]["connect_deadline"] == 30
    with pytest.raises(ImproperlyConfigured, match="already a reader endpoint"):
        reader_settings({"HOST": "app.CLUSTER-RO-abc.eu-west-1.rds.amazonaws.com"})
    with pytest.raises(ImproperlyConfigured, match="custom endpoint"):
        reader_settings({"HOST": "analytics.cluster-custom-abc123.eu-west-1.rds.amazonaws.com"})
    assert reader_settings(writer, HOST="x")["OPTIONS"]["aurora"]["resolver"] is resolver
