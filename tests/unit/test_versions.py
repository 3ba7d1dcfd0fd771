"""The Django under test is the one the tox environment names (``AURORA_EXPECT_DJANGO``).

pip resolves an extra's requirements after tox's ``deps`` and may downgrade Django to
satisfy one of them (django-prometheus 2.5.0 refuses Django 6.1): an environment named
``django61`` would then quietly test Django 6.0.
"""

from __future__ import annotations

import os

import django
import pytest


@pytest.mark.skipif(not os.environ.get("AURORA_EXPECT_DJANGO"), reason="only under tox (AURORA_EXPECT_DJANGO)")
def test_the_django_under_test_is_the_one_the_environment_names() -> None:
    expected = tuple(int(part) for part in os.environ["AURORA_EXPECT_DJANGO"].split("."))
    assert django.VERSION[: len(expected)] == expected, (
        "this environment asks for Django %s but has Django %s installed"
        % (".".join(map(str, expected)), django.__version__)
    )
