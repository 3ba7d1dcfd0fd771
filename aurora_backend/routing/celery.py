"""Read-your-writes through Celery tasks (optional; Celery is not a dependency).

A task published after a write carries the writer's position in a message header; the
worker routes the task's reads as if it had written itself. Wire it once, e.g. in your
celery.py::

    from aurora_backend.routing import celery as aurora_celery
    aurora_celery.connect()            # uses celery.signals

Or call :func:`task_headers` yourself: ``task.apply_async(args, headers=task_headers())``.
"""

from __future__ import annotations

import importlib
from typing import Any

from aurora_backend.routing import token
from aurora_backend.routing.carry import dump_token, load_token

HEADER = "aurora_ryw"


def task_headers() -> dict[str, str]:
    """Headers carrying this context's writes (empty when it wrote nothing)."""
    text = dump_token()
    return {} if text is None else {HEADER: text}


def before_task_publish(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """celery.signals.before_task_publish: add the header (never overwrites one set by hand)."""
    if headers is not None and HEADER not in headers:
        headers.update(task_headers())


def task_prerun(task: Any = None, **kwargs: Any) -> None:
    """celery.signals.task_prerun: start the task with the publisher's writes, or none."""
    token.clear()
    request = getattr(task, "request", None)
    value = _header(request)
    if value:
        load_token(value)


def task_postrun(**kwargs: Any) -> None:
    """celery.signals.task_postrun: the worker thread's next task starts clean."""
    token.clear()


def connect(signals: Any = None) -> None:
    """Connect the three handlers to ``signals`` (default: ``celery.signals``)."""
    if signals is None:
        signals = importlib.import_module("celery.signals")
    signals.before_task_publish.connect(before_task_publish, weak=False)
    signals.task_prerun.connect(task_prerun, weak=False)
    signals.task_postrun.connect(task_postrun, weak=False)


def _header(request: Any) -> str | None:
    """Celery puts custom headers on the task request as attributes (and in ``headers``
    with some protocols): look in both."""
    if request is None:
        return None
    value = getattr(request, HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None) or {}
        value = headers.get(HEADER) if isinstance(headers, dict) else None
    return value if isinstance(value, str) else None
