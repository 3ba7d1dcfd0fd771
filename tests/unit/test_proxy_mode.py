"""Proxy mode rules: what pins a session behind RDS Proxy, the option, time zone names.

The ENGINE behind the simulator judging its sessions: tests/test_proxy_mode.py.
"""

from __future__ import annotations

import pytest

from aurora_backend.simulator.pinning import query_pins


@pytest.mark.parametrize(
    "sql, reasons",
    [
        ("SELECT 1", []),
        ("SET TIME ZONE 'UTC'", ["SET / set_config (session setting)"]),
        ("SET default_transaction_isolation TO DEFAULT", ["RESET / SET ... TO DEFAULT (session setting)"]),
        ("SET ROLE app_owner", ["SET ROLE"]),
        ("SET LOCAL statement_timeout = 5", []),
        ("BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION READ ONLY", []),
        ("SELECT set_config('TimeZone', 'UTC', false)", ["SET / set_config (session setting)"]),
        ("SELECT set_config('app.user', '7', true)", []),
        ('DECLARE "c" CURSOR WITHOUT HOLD FOR SELECT 1', ["cursor declared (DECLARE)"]),
        ("SELECT nextval('s'), 'setval(' AS text", ["sequence function"]),
        ("SELECT currval('s')", ["sequence function"]),
        ("LOAD 'auto_explain'", ["LOAD (library)"]),
        ("CREATE TEMP TABLE t (a int) ON COMMIT DROP", ["temporary table, sequence or view"]),
        ("DISCARD ALL", ["DISCARD (session state)"]),
        ("CREATE TEMPORARY TABLE t (a int)", ["temporary table, sequence or view"]),
        ("SELECT pg_advisory_xact_lock(1)", []),
        ("SELECT pg_try_advisory_lock(1)", ["session-level advisory lock"]),
        ("/* LISTEN */ UPDATE t SET a = 1 -- SET x", []),
        (
            "SELECT E'it\\'s; SET x = 1', $$; LISTEN y$$, 'a;b'; SET search_path = app",
            ["SET / set_config (session setting)"],
        ),
        (
            "LISTEN jobs; PREPARE p AS SELECT 1; EXECUTE p",
            ["LISTEN", "prepared statement (SQL)", "prepared statement (SQL)"],
        ),
        ("UNLISTEN jobs; CLOSE c; SET CONSTRAINTS ALL IMMEDIATE", []),
        ("SELECT '%s'" % ("x" * 16400), ["statement over 16 KB"]),
    ],
)
def test_pinning_rules(sql, reasons):
    assert [pin.reason for pin in query_pins(sql)] == reasons


def test_proxy_option_auto_true_false_and_the_idle_cap():
    from django.core.exceptions import ImproperlyConfigured

    from aurora_backend.options import AuroraOptions
    from aurora_backend.proxy.mode import PROXY_IDLE_CLOSE, proxy_enabled, proxy_options

    proxy_host = {"HOST": "app.proxy-abc.eu-west-1.rds.amazonaws.com"}
    cluster_host = {"HOST": "app.cluster-abc.eu-west-1.rds.amazonaws.com"}
    auto = AuroraOptions.from_settings("x", {"aurora": {"proxy": "auto"}})
    assert auto == AuroraOptions.from_settings("x", {}) and auto.proxy is None
    assert proxy_enabled(auto, proxy_host) and not proxy_enabled(auto, cluster_host)
    forced = AuroraOptions.from_settings("x", {"aurora": {"proxy": True, "idle_timeout": None}})
    assert proxy_enabled(forced, cluster_host) and proxy_options(forced, cluster_host).idle_timeout == PROXY_IDLE_CLOSE
    assert proxy_options(auto, proxy_host).idle_timeout == 120.0  # already below the proxy's 1,800 s
    off = AuroraOptions.from_settings("x", {"aurora": {"proxy": False, "idle_timeout": None}})
    assert not proxy_enabled(off, proxy_host) and proxy_options(off, proxy_host).idle_timeout is None
    with pytest.raises(ImproperlyConfigured, match=r"\['proxy'\] = 'yes' is invalid: it accepts \"auto\""):
        AuroraOptions.from_settings("x", {"aurora": {"proxy": "yes"}})


@pytest.mark.parametrize(
    "server_zone, django_zone, same",
    [
        ("Etc/UTC", "UTC", True),
        ("UTC", "Etc/UTC", True),
        ("Etc/Universal", "UTC", True),
        ("GMT", "UTC", True),
        ("utc", "UTC", True),
        ("Europe/Paris", "Europe/Paris", True),
        ("Europe/Paris", "UTC", False),
        ("Etc/GMT+1", "UTC", False),
    ],
)
def test_zone_names_of_one_zone_are_the_same_zone(server_zone, django_zone, same):
    from aurora_backend.proxy.mode import same_zone

    assert same_zone(server_zone, django_zone) is same
