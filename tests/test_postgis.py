"""ENGINE "aurora_backend.postgis" on a real PostGIS: geometry round trip, spatial query, scale event.

Runs against its own database (``aurora_gis_tests``) on the test server, where the
ENGINE's own ``prepare_database()`` (what ``migrate`` calls) creates the postgis
extension; the "gis_sim" alias reaches the same database through the session's
Aurora simulator. Skips only when GDAL/GEOS cannot be loaded or the server has no
postgis extension to create (Debian: postgresql-NN-postgis-3 and gdal-bin; .ci/run
installs them).
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

try:
    from django.contrib.gis.db import models
    from django.contrib.gis.db.models.functions import Distance
    from django.contrib.gis.geos import Point, Polygon
    from django.contrib.gis.measure import D

    import aurora_backend.postgis.base  # noqa: F401 (loads GDAL through GeoDjango)
except (ImportError, OSError, ImproperlyConfigured) as exc:  # pragma: no cover - depends on the machine
    pytest.skip("GeoDjango cannot load GDAL/GEOS (%s): apt-get install gdal-bin" % exc, allow_module_level=True)

from django.apps.registry import Apps
from django.db import connections

from aurora_backend import stats
from tests.pg import server
from tests.settings import SIM_PORT, TEST_AURORA_OPTIONS

pytestmark = pytest.mark.timeout(60)

DB_NAME = "aurora_gis_tests"
ALIASES = ("gis", "gis_sim")


class City(models.Model):
    name = models.CharField(max_length=40)
    point = models.PointField(srid=4326)
    area = models.PolygonField(srid=4326, null=True)

    class Meta:
        apps = Apps()  # a registry of its own: the project's apps never see this model
        app_label = "aurora_gis_tests"
        db_table = "aurora_gis_city"


def _alias_settings(host: str, port: int) -> dict:
    srv = server()
    return {
        "ENGINE": "aurora_backend.postgis",
        "NAME": DB_NAME,
        "USER": srv.user,
        "PASSWORD": srv.password,
        "HOST": host,
        "PORT": str(port),
        "OPTIONS": {"aurora": dict(TEST_AURORA_OPTIONS)},
    }


def _admin_sql(statement: str) -> None:
    """Run ``statement`` on the server's maintenance database (CREATE/DROP DATABASE)."""
    with connections["default"]._nodb_cursor() as cursor:
        cursor.execute(statement)


@pytest.fixture(scope="module")
def gis(django_db_blocker):
    """The "gis" alias on a fresh PostGIS database, with the City table; removed afterwards."""
    srv = server()
    with django_db_blocker.unblock():
        with connections["default"]._nodb_cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")
            if cursor.fetchone() is None:
                pytest.skip(
                    "the PostgreSQL server has no postgis extension: apt-get install postgresql-<major>-postgis-3"
                )
        _admin_sql("DROP DATABASE IF EXISTS %s" % DB_NAME)
        _admin_sql("CREATE DATABASE %s" % DB_NAME)
        added = {"gis": _alias_settings(srv.host, srv.port), "gis_sim": _alias_settings("127.0.0.1", SIM_PORT)}
        connections.settings.update(
            connections.configure_settings({"default": connections.settings["default"], **added})
        )
        try:
            connection = connections["gis"]
            connection.prepare_database()  # the PostGIS ENGINE's CREATE EXTENSION IF NOT EXISTS postgis
            with connection.schema_editor() as editor:
                editor.create_model(City)
            yield connection
        finally:
            for alias in ALIASES:
                connections[alias].close()
                del connections[alias]
                connections.settings.pop(alias, None)
            _admin_sql("DROP DATABASE IF EXISTS %s" % DB_NAME)


@pytest.fixture
def cities(gis):
    City.objects.using("gis").all().delete()
    City.objects.using("gis").bulk_create(
        [
            City(name="Paris", point=Point(2.3522, 48.8566, srid=4326)),
            City(name="Lyon", point=Point(4.8357, 45.7640, srid=4326)),
            City(name="Berlin", point=Point(13.4050, 52.5200, srid=4326)),
        ]
    )
    return gis


def test_engine_is_postgis_with_the_mixin(gis):
    from django.contrib.gis.db.backends.postgis.base import DatabaseWrapper as PostGIS

    from aurora_backend.mixin import AuroraWrapperMixin

    mro = type(gis).__mro__
    assert mro.index(AuroraWrapperMixin) < mro.index(PostGIS)
    assert gis.features.gis_enabled and gis.ops.spatial_version >= (3, 0)
    with gis.cursor() as cursor:
        cursor.execute("SELECT extname FROM pg_extension WHERE extname = 'postgis'")
        assert cursor.fetchone() == ("postgis",)


def test_geometry_round_trip(gis):
    square = Polygon(((0, 0), (0, 1), (1, 1), (1, 0), (0, 0)), srid=4326)
    saved = City.objects.using("gis").create(name="Null Island", point=Point(0.5, 0.25, srid=4326), area=square)
    loaded = City.objects.using("gis").get(pk=saved.pk)
    assert loaded.point.coords == (0.5, 0.25) and loaded.point.srid == 4326
    assert loaded.area.equals_exact(square) and loaded.area.srid == 4326
    with gis.cursor() as cursor:  # what the server stored, in its own words
        cursor.execute("SELECT ST_AsText(point), ST_SRID(point) FROM aurora_gis_city WHERE id = %s", [saved.pk])
        assert cursor.fetchone() == ("POINT(0.5 0.25)", 4326)


def test_spatial_query(cities):
    france = Polygon(((-5, 42), (-5, 51.5), (8.5, 51.5), (8.5, 42), (-5, 42)), srid=4326)
    inside = City.objects.using("gis").filter(point__within=france).order_by("name")
    assert [c.name for c in inside] == ["Lyon", "Paris"]
    paris = Point(2.3522, 48.8566, srid=4326)
    near = City.objects.using("gis").filter(point__distance_lte=(paris, D(km=500)))
    assert sorted(c.name for c in near) == ["Lyon", "Paris"]
    by_distance = City.objects.using("gis").annotate(d=Distance("point", paris)).order_by("d")
    names_km = [(c.name, round(c.d.km)) for c in by_distance]
    assert [n for n, _ in names_km] == ["Paris", "Lyon", "Berlin"]
    assert names_km[0][1] == 0 and 380 < names_km[1][1] < 400 and 870 < names_km[2][1] < 890


def test_scale_event_is_healed_on_postgis(cities, simulator):
    sim_alias = connections["gis_sim"]
    assert City.objects.using("gis_sim").count() == 3
    before = stats.snapshot("gis_sim")
    assert simulator.scale_event() >= 1
    # The next query sees neither the dead connection nor the FATAL.
    paris = Point(2.3522, 48.8566, srid=4326)
    nearest = City.objects.using("gis_sim").annotate(d=Distance("point", paris)).order_by("d").first()
    assert nearest.name == "Paris"
    after = stats.snapshot("gis_sim")
    # Seen before use (the FATAL waiting on the socket): one reconnect, nothing re-run.
    assert {k: after[k] - before[k] for k in ("connections", "reconnects", "scale_events", "statements_retried")} == {
        "connections": 1,
        "reconnects": 1,
        "scale_events": 1,
        "statements_retried": 0,
    }
    sim_alias.close()
