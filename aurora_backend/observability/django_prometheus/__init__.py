"""``"ENGINE": "aurora_backend.observability.django_prometheus"``: django-prometheus's
PostgreSQL ENGINE (query counts and durations), Aurora-aware."""
