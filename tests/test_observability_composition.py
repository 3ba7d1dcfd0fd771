"""Composition with other instrumentation: OpenTelemetry's Django and psycopg/psycopg2
instrumentors, and django-prometheus's ENGINE composed with AuroraWrapperMixin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from ledger.models import Account

from aurora_backend.serverless import close_all
from aurora_backend.testing.fixtures import register_alias, unregister_alias

db = pytest.mark.django_db(transaction=True, databases=["default"])


def driver_instrumentor() -> Any:
    if connections["default"].settings_dict["ENGINE"] and _is_psycopg3():
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        return PsycopgInstrumentor()
    from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor

    return Psycopg2Instrumentor()


def _is_psycopg3() -> bool:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3


@pytest.fixture
def traced(settings: Any) -> Iterator[Any]:
    """OpenTelemetry's Django and driver instrumentors on an in-memory exporter."""
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings.MIDDLEWARE = list(settings.MIDDLEWARE)
    django_instrumentor, db_instrumentor = DjangoInstrumentor(), driver_instrumentor()
    django_instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
    db_instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
    close_all(["default"])  # the next connections are made through the instrumented driver
    try:
        yield exporter
    finally:
        db_instrumentor.uninstrument()
        django_instrumentor.uninstrument()
        close_all(["default"])


@db
def test_one_span_per_query_inside_the_request_span(traced):
    Account.objects.create(name="a", balance=1)
    Account.objects.create(name="b", balance=2)
    traced.clear()
    response = Client().get("/accounts/")
    assert response.status_code == 200 and len(response.json()["accounts"]) == 2
    spans = traced.get_finished_spans()
    (request,) = [s for s in spans if s.kind.name == "SERVER"]
    queries = [s for s in spans if s.kind.name == "CLIENT"]
    statements = [s.attributes.get("db.statement") or s.attributes.get("db.query.text") for s in queries]
    assert len(queries) == 1, statements
    assert "ledger_account" in statements[0]
    assert queries[0].parent.span_id == request.context.span_id


@db
def test_one_span_per_statement_outside_requests(traced):
    connections["default"].ensure_connection()  # (connecting runs Django's own setup statements)
    traced.clear()
    with connections["default"].cursor() as cursor:
        for n in range(3):
            cursor.execute("SELECT %s", [n])
            assert cursor.fetchone() == (n,)
    statements = [
        s.attributes.get("db.statement") or s.attributes.get("db.query.text")
        for s in traced.get_finished_spans()
        if s.kind.name == "CLIENT"
    ]
    assert statements == ["SELECT %s"] * 3


# ----- django-prometheus's ENGINE, Aurora-aware ----------------------------------------------


@pytest.fixture
def prom_alias() -> Iterator[Any]:
    """A wrapper of django-prometheus's ENGINE, Aurora-aware, on the test database (alias
    "prom", built outside ``connections``: the test's connection checks stay as they are)."""
    import copy

    pytest.importorskip("django_prometheus", reason="django-prometheus is not installed (its 2.5.0 refuses Django 6.1)")

    from aurora_backend.observability.django_prometheus.base import DatabaseWrapper

    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    settings_dict["ENGINE"] = "aurora_backend.observability.django_prometheus"
    wrapper = DatabaseWrapper(connections.configure_settings({"default": settings_dict})["default"], alias="prom")
    try:
        yield wrapper
    finally:
        wrapper.close()
        close_all_pools_of(wrapper)


def close_all_pools_of(wrapper: Any) -> None:
    pool = getattr(type(wrapper), "_connection_pools", {}).pop("prom", None)
    if pool is not None:
        pool.close()


def executions() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("django_db_execute_total", {"alias": "prom", "vendor": "postgresql"}) or 0


@db
def test_django_prometheus_engine_counts_and_heals(prom_alias):
    from django_prometheus.db.common import DatabaseWrapperMixin

    from aurora_backend import stats
    from aurora_backend.mixin import AuroraWrapperMixin

    assert isinstance(prom_alias, AuroraWrapperMixin) and isinstance(prom_alias, DatabaseWrapperMixin)
    prom_alias.ensure_connection()  # (connecting may run Django's own setup statements)
    before = executions()
    with prom_alias.cursor() as cursor:
        for n in range(3):
            cursor.execute("SELECT %s", [n])
            assert cursor.fetchone() == (n,)
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    assert executions() == before + 4
    with connections["default"].cursor() as cursor:  # the backend dies between two statements
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
    reconnects = stats.snapshot("prom")["reconnects"]
    with prom_alias.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledger_account")
        assert cursor.fetchone() == (Account.objects.count(),)
    assert stats.snapshot("prom")["reconnects"] == reconnects + 1
    assert executions() >= before + 5


# ----- credential fetches -------------------------------------------------------------------


def test_credential_fetches_are_counted_by_source(django_db_setup, django_db_blocker):
    import copy

    from prometheus_client import CollectorRegistry

    from aurora_backend import credentials
    from aurora_backend.observability import catalog, prometheus
    from tests.pg import server

    srv = server()
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    settings_dict.update(NAME="postgres", PASSWORD="")
    settings_dict["OPTIONS"]["aurora"]["credentials"] = lambda: (srv.user, srv.password)
    registry = CollectorRegistry()
    credentials.clear()
    prometheus.register(registry)
    register_alias("credobs", settings_dict)
    try:
        assert catalog.credential_fetches().get("callable", 0) == 0
        with django_db_blocker.unblock():
            with connections["credobs"].cursor() as cursor:
                cursor.execute("SELECT current_user")
                assert cursor.fetchone() == (srv.user,)
        assert registry.get_sample_value("aurora_credential_fetches_total", {"source": "callable"}) == 1
    finally:
        unregister_alias("credobs")
        prometheus.unregister(registry)
        credentials.clear()
