"""argparse types for the simulator's command lines: each bad value is a usage error that
names the option and what it accepts (never a traceback, never a value that misbehaves later).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from aurora_backend.simulator.control import Address, parse_address, require_loopback


def seconds(option: str, *, positive: bool) -> Callable[[str], float]:
    """A finite number of seconds: > 0 when ``positive``, else >= 0."""
    bound = "> 0" if positive else ">= 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError("%s expects a finite number of seconds %s, got %r" % (option, bound, text))
        return value

    return parse


def count(option: str) -> Callable[[str], int]:
    """A whole number >= 0."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError("%s expects a whole number >= 0, got %r" % (option, text))
        return value

    return parse


def port(option: str) -> Callable[[str], int]:
    """A TCP port, 1-65535."""

    def parse(text: str) -> int:
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            raise argparse.ArgumentTypeError("%s expects a TCP port 1-65535, got %r" % (option, text))
        return int(text)

    return parse


def address(option: str, *, loopback: bool, any_port: bool = False) -> Callable[[str], Address]:
    """HOST:PORT; a loopback host when ``loopback``; port 0 (any free one) when ``any_port``."""

    def parse(text: str) -> Address:
        try:
            host, number = parse_address(text, option)
            if loopback:
                require_loopback(host, option)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if not (0 if any_port else 1) <= number <= 65535:
            raise argparse.ArgumentTypeError(
                "%s expects a TCP port %s-65535, got %r" % (option, 0 if any_port else 1, text)
            )
        return host, number

    return parse
