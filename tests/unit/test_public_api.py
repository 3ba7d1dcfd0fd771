"""The public API: ``__all__`` of the package and of each subpackage users import from.

Pure: no database, no configured Django needed to import any listed name.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
from django.utils.module_loading import import_string

import aurora_backend

PACKAGES = [
    "aurora_backend",
    "aurora_backend.bluegreen",
    "aurora_backend.connection",
    "aurora_backend.credentials",
    "aurora_backend.exceptions",
    "aurora_backend.global_db",
    "aurora_backend.health",
    "aurora_backend.observability",
    "aurora_backend.pool",
    "aurora_backend.proxy",
    "aurora_backend.routing",
    "aurora_backend.simulator",
    "aurora_backend.testing",
    "aurora_backend.topology",
    "aurora_backend.transactions",
]

#: The deep paths the README and docs/ showed, and the public path of the same object.
PUBLIC_PATHS = [
    ("aurora_backend.bluegreen.tokens.create_table", "aurora_backend.bluegreen.create_table"),
    ("aurora_backend.connection.connect.ClusterUnavailable", "aurora_backend.ClusterUnavailable"),
    ("aurora_backend.credentials.CredentialsRejected", "aurora_backend.CredentialsRejected"),
    ("aurora_backend.errors.ErrorKind", "aurora_backend.ErrorKind"),
    ("aurora_backend.errors.classify", "aurora_backend.classify"),
    ("aurora_backend.errors.is_transaction_retryable", "aurora_backend.is_transaction_retryable"),
    ("aurora_backend.global_db.forwarding.WriteForwardingRefused", "aurora_backend.WriteForwardingRefused"),
    ("aurora_backend.mixin.AuroraWrapperMixin", "aurora_backend.AuroraWrapperMixin"),
    ("aurora_backend.routing.middleware.ReadYourWritesMiddleware", "aurora_backend.routing.ReadYourWritesMiddleware"),
    ("aurora_backend.serverless.close_all", "aurora_backend.close_all"),
    ("aurora_backend.serverless.close_connections", "aurora_backend.close_connections"),
    ("aurora_backend.serverless.lambda_handler", "aurora_backend.lambda_handler"),
    ("aurora_backend.simulator.cluster_cli.env_resolver", "aurora_backend.simulator.env_resolver"),
    ("aurora_backend.simulator.rds_proxy.PinningError", "aurora_backend.simulator.PinningError"),
    ("aurora_backend.simulator.wire_client.WireClient", "aurora_backend.simulator.WireClient"),
    ("aurora_backend.testing.bluegreen.BlueGreenDeployment", "aurora_backend.testing.BlueGreenDeployment"),
    ("aurora_backend.testing.global_db.GlobalDatabase", "aurora_backend.testing.GlobalDatabase"),
    ("aurora_backend.transactions.commit_outcome.CommitOutcomeUnknown", "aurora_backend.CommitOutcomeUnknown"),
    ("aurora_backend.transactions.retry.NestedRetryWarning", "aurora_backend.NestedRetryWarning"),
    ("aurora_backend.transactions.retry.RetryOptions", "aurora_backend.RetryOptions"),
    ("aurora_backend.transactions.retry.retry_atomic", "aurora_backend.retry_atomic"),
    ("aurora_backend.transactions.retry.retrying", "aurora_backend.retrying"),
]


def _names():
    return [(package, name) for package in PACKAGES for name in importlib.import_module(package).__all__]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_unique(package):
    names = importlib.import_module(package).__all__
    assert list(names) == sorted(set(names))


@pytest.mark.parametrize("package,name", _names())
def test_every_listed_name_resolves(package, name):
    module = importlib.import_module(package)
    assert getattr(module, name) is not None
    assert name in dir(module)


@pytest.mark.parametrize("package", PACKAGES)
def test_star_import_gives_exactly_all(package):
    namespace: dict = {}
    exec("from %s import *" % package, namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(importlib.import_module(package).__all__)


@pytest.mark.parametrize("package", PACKAGES)
def test_unknown_names_raise_attribute_error(package):
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = importlib.import_module(package).no_such_name


@pytest.mark.parametrize("package,name", _names())
def test_public_classes_report_the_public_module(package, name):
    value = getattr(importlib.import_module(package), name)
    if isinstance(value, type) and issubclass(value, BaseException):
        assert value.__module__ == "aurora_backend"
        assert getattr(aurora_backend, name) is value


@pytest.mark.parametrize("deep,public", PUBLIC_PATHS)
def test_documented_deep_paths_and_public_paths_are_the_same_object(deep, public):
    # import_string is how Django reads dotted paths in settings (MIDDLEWARE, "resolver").
    assert import_string(public) is import_string(deep)
    package, name = public.rsplit(".", 1)
    assert name in importlib.import_module(package).__all__


@pytest.mark.parametrize(
    "package",
    [
        "aurora_backend",
        "aurora_backend.routing",
        "aurora_backend.transactions",
        "aurora_backend.health",
        "aurora_backend.observability",
    ],
)
def test_importing_the_package_loads_neither_django_nor_a_driver(package):
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import sys, %s; loaded = sorted(m for m in ('django', 'psycopg', 'psycopg2') if m in sys.modules); "
        "print(','.join(loaded))" % package
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert done.stdout.strip() == ""
