"""Aurora Global Database: settings, global writer endpoints, write-forwarding refusals (no server).

The local global database (aurora_backend/testing/global_db.py): tests/test_global_db.py.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from aurora_backend.global_db.endpoint import is_global_endpoint
from aurora_backend.global_db.forwarding import refused
from aurora_backend.options import AuroraOptions


@pytest.mark.parametrize(
    "host, expected",
    [
        ("app.global-a1b2c3d4e5.global.rds.amazonaws.com", True),
        ("App.GLOBAL-A1B2C3D4E5.Global.RDS.AmazonAWS.com.", True),
        ("gdb.global-0123456789ab.global.rds.localhost", True),
        ("app.cluster-abc123.us-east-1.rds.amazonaws.com", False),
        ("app.global-abc.rds.amazonaws.com", False),
        ("db.example.com", False),
        ("", False),
    ],
)
def test_global_writer_endpoints_are_recognised(host, expected):
    assert is_global_endpoint(host) is expected


@pytest.mark.parametrize(
    "aurora, match",
    [
        ({"home_region": "US East"}, r"\['home_region'\].*AWS region"),
        (
            {"global_instance_templates": {"us-east-1": "abc.example.com"}},
            r"\['global_instance_templates'\].*\{instance\}",
        ),
        ({"write_forwarding": "maybe"}, r"\['write_forwarding'\].*'error'.*'route'"),
        ({"write_forwarding": "route"}, r"\['write_forwarding'\] = 'route' needs .*\['primary_alias'\]"),
        ({"cross_region_reads": True}, r"\['cross_region_reads'\] = True needs .*\['global_instance_templates'\]"),
        (
            {"home_region": "eu-west-1", "global_instance_templates": {"us-east-1": "{instance}.a.example.com"}},
            r"\['home_region'\] = 'eu-west-1' is not a region of",
        ),
    ],
)
def test_bad_global_settings_name_the_key(aurora, match):
    with pytest.raises(ImproperlyConfigured, match=match):
        AuroraOptions.from_settings("reader", {"aurora": aurora})


@pytest.mark.parametrize(
    "sql, kind",
    [
        ('SAVEPOINT "s1_x"', "SAVEPOINT"),
        ('RELEASE SAVEPOINT "s1_x"', "RELEASE"),
        ('ROLLBACK TO SAVEPOINT "s1_x"', "ROLLBACK TO"),
        ("CREATE TABLE t (v int)", "CREATE"),
        ("  -- note\n lock table t in exclusive mode", "LOCK"),
        ("TRUNCATE t", "TRUNCATE"),
        ("SELECT nextval('s')", "nextval()"),
        ("SELECT * INTO t2 FROM t", "SELECT INTO"),
        ("INSERT INTO t VALUES (1)", None),
        ("SELECT * FROM t WHERE v = 1", None),
        ("UPDATE t SET v = 2", None),
    ],
)
def test_statements_write_forwarding_refuses(sql, kind):
    assert refused(sql) == kind
