"""Baseline routers to compare reader routing against (tests, bench/bench_routing.py).

- :class:`NaiveReaderRouter`: every read to the reader, as most home-made routers.
- :class:`FixedWindowRouter`: after a write, this context's reads go to the writer for a
  fixed time (django-multidb-router pins for 15 s), then to the reader whatever its lag.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import Any

_last_write: contextvars.ContextVar[float | None] = contextvars.ContextVar("baseline_write", default=None)


class NaiveReaderRouter:
    def __init__(self, writer: str = "default", reader: str = "reader") -> None:
        self.writer, self.reader = writer, reader

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return self.reader

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return self.writer

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True


class FixedWindowRouter(NaiveReaderRouter):
    def __init__(
        self,
        writer: str = "default",
        reader: str = "reader",
        window: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(writer, reader)
        self.window, self.clock = window, clock

    def db_for_read(self, model: Any, **hints: Any) -> str:
        wrote = _last_write.get()
        if wrote is not None and self.clock() - wrote < self.window:
            return self.writer
        return self.reader

    def db_for_write(self, model: Any, **hints: Any) -> str:
        _last_write.set(self.clock())
        return self.writer

    @staticmethod
    def forget() -> None:
        _last_write.set(None)
