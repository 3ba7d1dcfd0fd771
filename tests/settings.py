"""Django settings for the test suite: testproject's apps on the test server."""

from tests.pg import server

_srv = server()

SECRET_KEY = "aurora-backend-tests"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "testproject.urls"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "aurora_backend",
    "ledger",
]
MIDDLEWARE: list[str] = []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "aurora_backend",
        "NAME": "aurora_tests",
        "USER": _srv.user,
        "PASSWORD": _srv.password,
        "HOST": _srv.host,
        "PORT": str(_srv.port),
        "TEST": {"NAME": "test_aurora_tests"},
        "OPTIONS": {
            "aurora": {"connect_deadline": 10, "connect_timeout": 2},
        },
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"aurora_backend": {"handlers": ["null"], "level": "DEBUG"}},
}
