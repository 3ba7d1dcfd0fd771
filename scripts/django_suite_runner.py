"""A Django test runner that also writes each test's outcome to a JSON file.

Used by ``scripts/run_django_suite.py`` as ``TEST_RUNNER`` of the generated settings,
so that the runs of Django's own test suite under two ENGINEs can be compared test
by test. The file is named by the ``DJANGO_SUITE_RESULTS`` environment variable.
"""

from __future__ import annotations

import json
import os
import time
import unittest
from typing import Any

from django.test.runner import DiscoverRunner

RESULTS_ENV = "DJANGO_SUITE_RESULTS"
#: ``host:port`` of an RDS Proxy-mode simulator's control endpoint (run_django_suite --rds-proxy-sim).
SIM_CONTROL_ENV = "DJANGO_SUITE_SIM_CONTROL"


class RecordingResult(unittest.TextTestResult):
    """TextTestResult that keeps ``{test id: outcome}`` and the failure texts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, str] = {}
        self.details: dict[str, str] = {}
        self.durations: dict[str, float] = {}
        self.started = time.monotonic()
        self._test_started = 0.0

    def startTest(self, test: Any) -> None:
        self._test_started = time.monotonic()
        super().startTest(test)

    def stopTest(self, test: Any) -> None:
        super().stopTest(test)
        self.durations[test.id()] = round(time.monotonic() - self._test_started, 4)

    def _record(self, test: Any, outcome: str, detail: str = "") -> None:
        test_id = test.id()
        # A test with a failed subtest and a passing body stays failed.
        if self.outcomes.get(test_id) in ("failure", "error") and outcome == "ok":
            return
        self.outcomes[test_id] = outcome
        if detail:
            self.details[test_id] = (self.details.get(test_id, "") + detail)[-6000:]

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._record(test, "ok")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skip", reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "expected_failure")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "unexpected_success")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record(
                test,
                "failure" if failed else "error",
                "[%s]\n%s" % (subtest._subDescription(), self._exc_info_to_string(err, test)),
            )

    def stopTestRun(self) -> None:
        super().stopTestRun()
        path = os.environ.get(RESULTS_ENV)
        if not path:
            return
        summary: dict[str, Any] = {
            "tests_run": self.testsRun,
            "failures": len(self.failures),
            "errors": len(self.errors),
            "skips": len(self.skipped),
            "expected_failures": len(self.expectedFailures),
            "unexpected_successes": len(self.unexpectedSuccesses),
            "seconds": round(time.monotonic() - self.started, 1),
            "driver": _driver(),
        }
        with open(path, "w") as fh:
            json.dump(
                {"summary": summary, "outcomes": self.outcomes, "details": self.details, "durations": self.durations},
                fh,
                indent=1,
            )


def _driver() -> str:
    """The driver the ``default`` alias used: ``psycopg2``, ``psycopg`` or ``psycopg+pool``."""
    from django.db import connection

    name = connection.Database.__name__
    return name + "+pool" if connection.settings_dict.get("OPTIONS", {}).get("pool") else name


class RecordingRunner(DiscoverRunner):
    """DiscoverRunner whose result class records outcomes (see the module docstring).

    Behind an RDS Proxy-mode simulator it also splits the pinning report: once the test
    databases exist it closes every connection, saves what the setup (migrate, post_migrate
    signals) pinned to ``<results>.setup_pinning.json`` and clears the report, so what is
    left at the end is the tests' own traffic.
    """

    def setup_databases(self, **kwargs: Any) -> Any:
        config = super().setup_databases(**kwargs)
        control = os.environ.get(SIM_CONTROL_ENV)
        if control:
            from django.db import connections

            from aurora_backend.simulator.control import ControlClient, parse_address

            connections.close_all()
            with ControlClient(parse_address(control, SIM_CONTROL_ENV)) as client:
                setup = client.command("pinning")["result"]
                client.command("clear_pinning")
            with open(os.environ[RESULTS_ENV] + ".setup_pinning.json", "w") as fh:
                json.dump(setup, fh, indent=1)
        return config

    def get_resultclass(self) -> Any:
        base = super().get_resultclass()
        if base is None:
            return RecordingResult
        return type("Recording" + base.__name__, (RecordingResult, base), {})


__all__: list[str] = ["RecordingResult", "RecordingRunner", "RESULTS_ENV"]
