"""The DNS of a local Aurora cluster, served through the ENGINE's ``resolver`` hook.

Aurora's endpoints are DNS names with a 5 s TTL. After a failover Aurora updates the
cluster endpoint's record a little later (``dns_delay``) and resolvers keep the old
answer until its TTL runs out: a client that reconnects in that window reaches the old
writer. The reader endpoint answers one reader at random per resolution. Both effects
are reproduced here from an injectable clock and random source, so tests are exact:

    dns = ClusterDNS(ttl=5.0, clock=fake_clock)
    OPTIONS = {"aurora": {"resolver": dns}}
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass
class _Record:
    addresses: list[str]
    pick_one: bool  # the reader endpoint: one address at random per resolution


class ClusterDNS:
    """Names -> loopback addresses, with Aurora's TTL and delayed updates; callable as a resolver."""

    def __init__(
        self, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None
    ) -> None:
        if ttl < 0:
            raise ValueError("ClusterDNS(ttl) needs ttl >= 0 seconds, got %r" % ttl)
        self.ttl = float(ttl)
        self.clock = clock
        self.rng = rng or random.Random()
        self._records: dict[str, _Record] = {}
        self._pending: list[tuple[float, str, _Record]] = []
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()
        self.lookups: dict[str, int] = {}

    def set(self, name: str, addresses: Sequence[str], delay: float = 0.0, pick_one: bool = False) -> float:
        """Point ``name`` at ``addresses`` ``delay`` seconds from now; returns when (clock time)."""
        due = self.clock() + max(0.0, delay)
        record = _Record(list(addresses), pick_one)
        with self._lock:
            self._pending = [p for p in self._pending if p[1] != name.lower()]
            self._pending.append((due, name.lower(), record))
            self._apply_due()
        return due

    def remove(self, name: str) -> None:
        """Delete ``name``'s record (and cached answers): it no longer resolves."""
        with self._lock:
            self._records.pop(name.lower(), None)
            self._cache.pop(name.lower(), None)
            self._pending = [p for p in self._pending if p[1] != name.lower()]

    def authoritative(self, name: str) -> list[str]:
        """What the record says now (no resolver cache in between)."""
        with self._lock:
            self._apply_due()
            record = self._records.get(name.lower())
            return list(record.addresses) if record else []

    def pending(self, name: str) -> float | None:
        """Clock time at which a scheduled change of ``name`` takes effect, or None."""
        with self._lock:
            self._apply_due()
            dues = [due for due, pending_name, _ in self._pending if pending_name == name.lower()]
            return min(dues) if dues else None

    def flush(self) -> None:
        """Forget every cached answer (as if every client's resolver cache expired)."""
        with self._lock:
            self._cache.clear()

    def resolve(self, name: str) -> list[str]:
        """The answer a client gets now: cached for ``ttl`` seconds after each real lookup."""
        key = name.lower()
        with self._lock:
            now = self.clock()
            self._apply_due()
            cached = self._cache.get(key)
            if cached is not None and now < cached[0]:
                return list(cached[1])
            record = self._records.get(key)
            if record is None or not record.addresses:
                raise OSError("[Errno -2] Name or service not known: %r" % name)
            answer = [self.rng.choice(record.addresses)] if record.pick_one else list(record.addresses)
            self.lookups[key] = self.lookups.get(key, 0) + 1
            if self.ttl > 0:
                self._cache[key] = (now + self.ttl, answer)
            return list(answer)

    def __call__(self, host: str, port: int) -> list[str]:
        return self.resolve(host)

    def _apply_due(self) -> None:
        now = self.clock()
        keep = []
        for due, name, record in sorted(self._pending, key=lambda p: p[0]):
            if due <= now:
                self._records[name] = record
            else:
                keep.append((due, name, record))
        self._pending = keep


class TestClock:
    """Monotonic time that a test can freeze and move by hand, then let run again.

    ``clock.freeze()``; ``clock.advance(5.0)``; ``clock.release()``: time never goes back.
    """

    def __init__(self, base: Callable[[], float] = time.monotonic) -> None:
        self._base = base
        self._offset = 0.0
        self._frozen: float | None = None
        self._lock = threading.Lock()

    def __call__(self) -> float:
        frozen = self._frozen
        return frozen if frozen is not None else self._base() + self._offset

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def freeze(self) -> float:
        with self._lock:
            if self._frozen is None:
                self._frozen = self._base() + self._offset
            return self._frozen

    def advance(self, seconds: float) -> float:
        """Move a frozen clock forward (a running one: shift it forward)."""
        if seconds < 0:
            raise ValueError("TestClock.advance() goes forward only, got %r" % seconds)
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
                return self._frozen
            self._offset += seconds
            return self._base() + self._offset

    def advance_to(self, when: float) -> float:
        """Freeze the clock at ``when`` exactly (never earlier than it stands)."""
        with self._lock:
            now = self._frozen if self._frozen is not None else self._base() + self._offset
            self._frozen = max(now, float(when))
            return self._frozen

    def release(self) -> None:
        """Let the clock run again from where it stands."""
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - self._base()
                self._frozen = None
