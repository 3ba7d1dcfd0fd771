"""What AuroraSimulator's mixins (``faults``, ``rds_proxy``) use of it, for the type checker.

The mixins subclass :class:`SimulatorHost` only under ``TYPE_CHECKING`` (at run time they
subclass ``object``): AuroraSimulator itself cannot be their declared base, it is built
from them. ``proxy.AuroraSimulator`` defines every member here.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:  # pragma: no cover
    from aurora_backend.simulator.session import Session

_T = TypeVar("_T")
Address = tuple[str, int]


class SimulatorHost:
    """The simulator's state and loop-thread helpers that the fault and proxy mixins use.

    A plain class, not a Protocol: mypy cannot infer a Protocol attribute that an ``async``
    closure both reads and assigns (``Cannot determine type``).
    """

    _upstream: Address
    _original_upstream: Address
    _sessions: dict[Session, None]
    _held: deque[Session]
    _timers: list[asyncio.TimerHandle]
    _paused: bool
    _blackholed: bool
    _refusing: bool
    _read_only: bool
    _failover_refusing: bool
    _scale_points: int
    _starting_up_until: float
    _failover_done: threading.Event

    @overload
    def _call(self, fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any) -> _T: ...
    @overload
    def _call(self, fn: Callable[..., _T], *args: Any) -> _T: ...
    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def _count(self, name: str, n: int = 1) -> None:
        raise NotImplementedError

    def _later(self, delay: float, fn: Callable[[], Any]) -> None:
        raise NotImplementedError

    def _kill(self, sessions: Iterable[Session], message: bytes | None) -> int:
        raise NotImplementedError

    async def _sync_listeners(self) -> None:
        raise NotImplementedError
