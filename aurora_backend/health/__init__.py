"""Health: the report behind manage.py aurora_health, its SQL, rendering, JSON schema and system checks."""
