"""aurora_backend.exceptions: one hierarchy, public names, picklable, driver subclasses built once.

Pure: no database. The driver classes are the real psycopg2 / psycopg ones.
"""

from __future__ import annotations

import importlib
import pickle
import warnings

import pytest
from django.db import NotSupportedError, OperationalError

import aurora_backend
from aurora_backend import drivers, exceptions
from aurora_backend.exceptions import (
    AuroraBackendError,
    AuroraBackendWarning,
    ClusterUnavailable,
    CommitOutcomeUnknown,
    CredentialsRejected,
    CredentialsUnavailable,
    NestedRetryWarning,
    PositionUnavailable,
)

ERRORS = [name for name in exceptions.__all__ if issubclass(getattr(exceptions, name), AuroraBackendError)]
WARNINGS = [name for name in exceptions.__all__ if issubclass(getattr(exceptions, name), Warning)]

#: The base each class had before the module existed: ``except`` clauses written for it still work.
KEPT_BASES = {
    "BlueGreenHoldTimeout": OperationalError,
    "CommitOutcomeUnknown": OperationalError,
    "CredentialsCallableError": TypeError,
    "NestedRetryWarning": RuntimeWarning,
    "PinningError": AssertionError,
    "SecretFormatError": ValueError,
    "SimulatorError": RuntimeError,
    "WriteForwardingRefused": NotSupportedError,
}

#: Where each class was defined before; those imports keep working.
OLD_PATHS = [
    ("aurora_backend.bluegreen", "BlueGreenHoldTimeout"),
    ("aurora_backend.connection.connect", "ClusterUnavailable"),
    ("aurora_backend.credentials", "CredentialsRejected"),
    ("aurora_backend.credentials", "CredentialsUnavailable"),
    ("aurora_backend.credentials.custom", "CredentialsCallableError"),
    ("aurora_backend.credentials.login", "CredentialsRejected"),
    ("aurora_backend.credentials.login", "CredentialsUnavailable"),
    ("aurora_backend.credentials.secretsmanager", "SecretFormatError"),
    ("aurora_backend.global_db.forwarding", "WriteForwardingRefused"),
    ("aurora_backend.routing.position", "PositionUnavailable"),
    ("aurora_backend.simulator", "SimulatorError"),
    ("aurora_backend.simulator.faults", "SimulatorError"),
    ("aurora_backend.simulator.rds_proxy", "PinningError"),
    ("aurora_backend.transactions.commit_outcome", "CommitOutcomeUnknown"),
    ("aurora_backend.transactions.options", "NestedRetryWarning"),
    ("aurora_backend.transactions.retry", "CommitOutcomeUnknown"),
    ("aurora_backend.transactions.retry", "NestedRetryWarning"),
]


def _driver_operational_errors():
    """The OperationalError of each installed driver (psycopg2 and psycopg 3 here)."""
    found = []
    for module in ("psycopg2", "psycopg"):
        try:
            found.append(importlib.import_module(module).OperationalError)
        except ImportError:
            pass
    return found


def test_every_class_is_listed_once_and_is_an_error_or_a_warning():
    assert exceptions.__all__ == sorted(set(exceptions.__all__))
    assert sorted(ERRORS + WARNINGS) == exceptions.__all__
    assert set(ERRORS) & set(WARNINGS) == set()


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_has_the_common_base(name):
    assert issubclass(getattr(exceptions, name), AuroraBackendError)


@pytest.mark.parametrize("name", WARNINGS)
def test_every_warning_has_the_common_warning_base(name):
    assert issubclass(getattr(exceptions, name), AuroraBackendWarning)


@pytest.mark.parametrize("name", exceptions.__all__)
def test_classes_report_the_public_package(name):
    klass = getattr(exceptions, name)
    assert klass.__module__ == "aurora_backend"
    assert getattr(aurora_backend, name) is klass
    assert name in aurora_backend.__all__


@pytest.mark.parametrize("name,base", sorted(KEPT_BASES.items()))
def test_classes_keep_their_standard_base(name, base):
    assert issubclass(getattr(exceptions, name), base)


@pytest.mark.parametrize("module,name", OLD_PATHS)
def test_old_import_paths_give_the_same_class(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(exceptions, name)


def _instance(name):
    klass = getattr(exceptions, name)
    if klass is CommitOutcomeUnknown:
        return klass("lost", alias="default", txid=42, status="in progress")
    if klass is PositionUnavailable:
        return klass("no answer", ValueError("cause"))
    return klass("message of %s" % name)


@pytest.mark.parametrize("name", exceptions.__all__)
def test_instances_pickle(name):
    error = _instance(name)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.args == error.args
    assert str(copy) == str(error)


def test_pickling_keeps_the_attributes():
    copy = pickle.loads(pickle.dumps(_instance("CommitOutcomeUnknown")))
    assert (copy.alias, copy.txid, copy.status) == ("default", 42, "in progress")
    position = pickle.loads(pickle.dumps(_instance("PositionUnavailable")))
    assert isinstance(position.cause, ValueError) and position.cause.args == ("cause",)


def test_warning_filters_by_the_common_base():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", AuroraBackendWarning)
        warnings.warn("nested", NestedRetryWarning, stacklevel=1)
    assert [w.category for w in caught] == [NestedRetryWarning]


# ##### Driver subclasses: drivers.operational_error_class #####


@pytest.mark.parametrize("driver_error", _driver_operational_errors())
@pytest.mark.parametrize("base", [ClusterUnavailable, CredentialsRejected, CredentialsUnavailable])
def test_driver_subclass_is_built_once_and_is_both(base, driver_error):
    klass = drivers.operational_error_class(base, driver_error)
    assert drivers.operational_error_class(base, driver_error) is klass
    assert issubclass(klass, base) and issubclass(klass, driver_error) and issubclass(klass, AuroraBackendError)
    assert (klass.__name__, klass.__qualname__, klass.__module__) == (base.__name__, base.__name__, "aurora_backend")
    error = klass("gave up")
    assert isinstance(error, base) and isinstance(error, driver_error)
    with pytest.raises(base):
        raise error
    with pytest.raises(driver_error):
        raise error


def test_driver_subclass_defaults_to_the_active_driver():
    klass = drivers.operational_error_class(ClusterUnavailable)
    assert klass is drivers.operational_error_class(ClusterUnavailable, drivers.OperationalError)


def test_driver_subclasses_differ_per_base_and_per_driver():
    classes = {
        drivers.operational_error_class(base, driver_error)
        for base in (ClusterUnavailable, CredentialsRejected)
        for driver_error in _driver_operational_errors()
    }
    assert len(classes) == 2 * len(_driver_operational_errors())


@pytest.mark.parametrize("driver_error", _driver_operational_errors())
def test_driver_subclass_instances_pickle_to_the_same_class(driver_error):
    klass = drivers.operational_error_class(ClusterUnavailable, driver_error)
    copy = pickle.loads(pickle.dumps(klass("gave up after 3 attempts")))
    assert type(copy) is klass
    assert copy.args == ("gave up after 3 attempts",)


def test_a_failing_credentials_source_raises_the_shared_driver_subclass():
    from aurora_backend import credentials
    from aurora_backend.credentials.login import Login
    from aurora_backend.runtime import Runtime

    def source():
        raise RuntimeError("vault sealed")

    config = credentials.parse("OPTIONS['aurora']['credentials']", source)
    driver_error = _driver_operational_errors()[0]
    login = Login(config, Runtime(), driver_error, "database 'default'")
    try:
        with pytest.raises(CredentialsUnavailable, match="vault sealed") as raised:
            login.apply({"host": "localhost", "port": 5432, "user": "app"})
    finally:
        credentials.clear()
    assert type(raised.value) is drivers.operational_error_class(CredentialsUnavailable, driver_error)
    assert isinstance(raised.value, driver_error)
