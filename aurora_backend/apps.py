from django.apps import AppConfig


class AuroraBackendConfig(AppConfig):
    """Add "aurora_backend" to INSTALLED_APPS for ``manage.py aurora_health`` and the system checks."""

    name = "aurora_backend"
    verbose_name = "Aurora backend"

    def ready(self) -> None:
        from aurora_backend.health import checks  # noqa: F401  (registers the system checks)
        from aurora_backend.routing import checks as routing_checks  # noqa: F401
