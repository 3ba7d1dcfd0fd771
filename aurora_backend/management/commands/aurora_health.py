"""``manage.py aurora_health``: the database behind each aurora_backend alias, as Aurora sees it.

Exit code 0 healthy, 1 degraded (warnings), 2 unreachable: usable as a container probe.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.management.color import no_style

from aurora_backend.connection.connect import Attempt
from aurora_backend.health import report as health
from aurora_backend.health.render import render

_THRESHOLD_OPTIONS = (
    ("long_transaction_seconds", "a transaction open this long is a scaling blocker"),
    ("idle_in_transaction_seconds", "a session idle in transaction this long is a scaling blocker"),
    ("capacity_warn_percent", "warn when connections in use reach this percent of max_connections"),
    ("cold_start_seconds", "a connect slower than this looks like a cold start (resume)"),
    ("recent_restart_seconds", "a server up for less than this has recently restarted"),
    ("replica_lag_warn_ms", "warn when an Aurora reader lags more than this (ms)"),
)


class Command(BaseCommand):
    help = (
        "Check the database behind every aurora_backend alias: endpoint, connect latency, "
        "server, capacity, scaling blockers, readers. Exit 0 healthy, 1 degraded, 2 unreachable."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="Alias to check (repeatable). Default: every alias using aurora_backend.",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON (health/schema.json).")
        parser.add_argument(
            "--wait",
            type=_seconds,
            metavar="SECONDS",
            help="Keep trying to connect this long (wakes a paused cluster), showing progress.",
        )
        parser.add_argument("--watch", type=_seconds, metavar="N", help="Repeat the report every N seconds.")
        parser.add_argument("--count", type=int, metavar="K", help="With --watch: stop after K reports.")
        defaults = health.Thresholds()
        for name, text in _THRESHOLD_OPTIONS:
            parser.add_argument(
                "--" + name.replace("_", "-"),
                dest=name,
                type=_seconds,
                metavar="N",
                help="%s (default %g, or settings.AURORA_HEALTH)." % (text, getattr(defaults, name)),
            )

    def handle(self, *args: Any, **options: Any) -> None:
        aliases = self._aliases(options["databases"])
        try:
            thresholds = health.Thresholds.from_settings({name: options[name] for name, _ in _THRESHOLD_OPTIONS})
        except ImproperlyConfigured as err:
            raise CommandError(str(err)) from err
        if options["count"] is not None and options["count"] < 1:
            raise CommandError("--count must be 1 or more.")
        code, reports = 0, 0
        try:
            while True:
                code = self._report_once(aliases, thresholds, options)
                reports += 1
                if options["watch"] is None or (options["count"] is not None and reports >= options["count"]):
                    break
                time.sleep(options["watch"])
        except KeyboardInterrupt:
            pass
        if code:
            sys.exit(code)

    def _aliases(self, requested: list[str] | None) -> list[str]:
        from django.db import connections

        if not requested:
            aliases = health.aurora_aliases()
            if not aliases:
                raise CommandError("No alias in settings.DATABASES uses ENGINE 'aurora_backend'.")
            return aliases
        for alias in requested:
            if alias not in connections.settings:
                raise CommandError(
                    "Unknown database alias %r; settings.DATABASES has: %s." % (alias, ", ".join(connections.settings))
                )
            if not health.uses_aurora(connections.settings[alias]):
                raise CommandError(
                    "Database alias %r does not use aurora_backend (ENGINE %r)."
                    % (alias, connections.settings[alias].get("ENGINE"))
                )
        return list(dict.fromkeys(requested))

    def _report_once(self, aliases: list[str], thresholds: health.Thresholds, options: dict[str, Any]) -> int:
        wait = options["wait"]
        if wait is not None:
            self.stderr.write("waiting up to %g s for %s to accept a connection" % (wait, ", ".join(aliases)))
        report = health.collect(aliases, thresholds, wait=wait, on_retry=self._progress if wait is not None else None)
        if options["json"]:
            self.stdout.write(json.dumps(report.to_dict(), indent=2, sort_keys=False))
        else:
            self.stdout.write(render(report, self._painter()))
        return report.exit_code

    def _progress(self, alias: str, attempt: Attempt) -> None:
        """One line per failed attempt while --wait rides out a resume."""
        self.stderr.write(
            "  %s: attempt %d failed after %.1f s elapsed (%s); retrying in %.1f s"
            % (alias, attempt.number, attempt.elapsed, _first_line(attempt.error), attempt.delay)
        )

    def _painter(self) -> Any:
        style = self.style if self.stdout.isatty() else no_style()
        roles = {
            "healthy": style.SUCCESS,
            "degraded": style.WARNING,
            "warning": style.WARNING,
            "unreachable": style.ERROR,
            "error": style.ERROR,
            "title": style.MIGRATE_HEADING,
        }
        return lambda text, role: roles.get(role, str)(text)


def _seconds(value: str) -> float:
    import argparse

    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % value) from None
    if number < 0:
        raise argparse.ArgumentTypeError("%r must be >= 0" % value)
    return number


def _first_line(exc: BaseException) -> str:
    return "%s: %s" % (type(exc).__name__, (str(exc).strip().splitlines() or [""])[0])
