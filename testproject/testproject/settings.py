"""testproject: a ledger on aurora_backend. The database comes from AURORA_DSN
(postgresql://user:password@host:port/dbname); ``python testproject/run.py`` sets it
to a throwaway local cluster."""

import os

from aurora_backend.testing import ServerAddress
from aurora_backend.testing.drivers import select_driver

select_driver()  # AURORA_TEST_DRIVER=psycopg2 hides psycopg 3 (the test suite runs this too)

_db = ServerAddress.from_dsn(os.environ.get("AURORA_DSN", "postgresql://postgres@127.0.0.1:5432/ledger"))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "testproject-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "aurora_backend",
    "ledger",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]

DATABASES = {
    "default": {
        "ENGINE": "aurora_backend",
        "NAME": _db.dbname,
        "USER": _db.user,
        "PASSWORD": _db.password,
        "HOST": _db.host,
        "PORT": str(_db.port),
        "CONN_MAX_AGE": None,
        "OPTIONS": {
            "aurora": {"max_age": [300, 600], "idle_timeout": 120},
            "keepalives": 1,
            "keepalives_idle": 1,
            "keepalives_interval": 1,
            "keepalives_count": 5,
        },
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"aurora_backend": {"handlers": ["console"], "level": "INFO"}},
}
