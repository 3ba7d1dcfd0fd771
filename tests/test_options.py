"""OPTIONS["aurora"]: parsed once, validated with errors that name the key and the fix."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from aurora_backend.base import DatabaseWrapper
from aurora_backend.options import AuroraOptions


def parse(**aurora):
    return AuroraOptions.from_settings("default", {"aurora": aurora})


def test_defaults_come_from_the_facts():
    options = parse()
    assert options.connect_deadline == 60.0  # > a 30 s+ resume after a day asleep
    assert options.connect_timeout == 10
    assert options.max_age == (300.0, 600.0)  # the Rails fix's 5-10 minutes
    assert options.idle_timeout == 120.0
    assert options.retry_reads is True


def test_valid_values_are_normalised():
    options = parse(max_age=[60, 90], idle_timeout=None, ping_after=5, connect_timeout=3)
    assert (options.max_age, options.idle_timeout, options.ping_after, options.connect_timeout) == (
        (60.0, 90.0),
        None,
        5.0,
        3,
    )
    assert parse(max_age=45).max_age == (45.0, 45.0)
    assert parse(max_age=None).max_age is None


def test_libpq_connect_timeout_is_the_default_attempt_timeout():
    options = AuroraOptions.from_settings("default", {"connect_timeout": "7"})
    assert options.connect_timeout == 7


@pytest.mark.parametrize(
    "key,value,accepted",
    [
        ("connect_deadline", 0, "a number of seconds > 0"),
        ("connect_deadline", "60", "a number of seconds > 0"),
        ("connect_deadline", True, "a number of seconds > 0"),
        ("connect_timeout", 1, "whole number of seconds >= 2"),
        ("connect_timeout", 2.5, "whole number of seconds >= 2"),
        ("max_age", [10, 5], "[min, max] pair"),
        ("max_age", [1, 2, 3], "[min, max] pair"),
        ("max_age", -1, "[min, max] pair"),
        ("idle_timeout", 0, "or None to disable it"),
        ("ping_after", "soon", "or None to disable it"),
        ("retry_reads", "yes", "True or False"),
        ("resolver", 42, "a callable(host, port)"),
        ("resolver", "no.such.module.resolve", "a callable(host, port)"),
    ],
)
def test_bad_values_name_the_key_and_what_it_accepts(key, value, accepted):
    with pytest.raises(ImproperlyConfigured) as err:
        parse(**{key: value})
    message = str(err.value)
    assert "DATABASES['default']['OPTIONS']['aurora'][%r]" % key in message
    assert accepted in message


def test_unknown_keys_are_an_error_listing_the_accepted_ones():
    with pytest.raises(ImproperlyConfigured, match=r"unknown key\(s\) 'max_ages'; accepted keys are: .*max_age"):
        parse(max_ages=5)


def test_not_a_dict():
    with pytest.raises(ImproperlyConfigured, match="must be a dict"):
        AuroraOptions.from_settings("default", {"aurora": [1]})


def test_backoff_base_above_max():
    with pytest.raises(ImproperlyConfigured, match="backoff_base"):
        parse(backoff_base=10, backoff_max=1)


def test_the_engine_refuses_bad_settings_when_the_alias_is_built():
    settings_dict = {
        "ENGINE": "aurora_backend",
        "NAME": "x",
        "USER": "",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        "OPTIONS": {"aurora": {"idle_timeout": -5}},
        "TIME_ZONE": None,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False,
        "TEST": {},
    }
    with pytest.raises(ImproperlyConfigured, match=r"\['idle_timeout'\] = -5"):
        DatabaseWrapper(settings_dict, alias="broken")


def test_resolver_dotted_path():
    options = parse(resolver="aurora_backend.connection.resolve.default_resolver")
    assert options.resolver("localhost", 5432)
