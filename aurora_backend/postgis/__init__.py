"""``"ENGINE": "aurora_backend.postgis"``: GeoDjango's PostGIS backend, Aurora-aware."""
