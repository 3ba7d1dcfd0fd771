"""One cache per credentials source per process, refreshed ahead of expiry by one thread.

Every physical connection asks the cache; only a due refresh, an expiry or a rejected
login reaches the source (an AWS call). A due refresh is done by the one thread that
gets the lock while the others keep using the still-valid credential; with nothing
valid cached, the others wait for that one fetch instead of making their own.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, Hashable, Optional

from aurora_backend.runtime import Runtime

logger = logging.getLogger("aurora_backend")

#: A failed background refresh is tried again after this long (the old credential still works).
REFRESH_RETRY = 30.0
#: Refresh at a random point between these fractions of the refresh interval.
JITTER = (0.8, 1.0)


@dataclass(frozen=True, eq=False)
class Credential:
    """A user and password from a source. ``repr()`` and ``str()`` never show the password."""

    user: Optional[str]
    password: str = field(repr=False)
    #: Where it came from, for logs and health: "token", "AWSCURRENT", "AWSPENDING", "callable".
    label: str = ""
    #: Seconds after fetching when it stops working (an IAM token); None: until rotated.
    lifetime: Optional[float] = None

    def __repr__(self) -> str:
        return "Credential(user=%r, password='********', label=%r)" % (self.user, self.label)

    __str__ = __repr__


#: ``fetch(rejected)``: a new credential; ``rejected`` is the one a server just refused, if any.
Fetch = Callable[[Optional[Credential]], Credential]


@dataclass
class CacheStatus:
    """What health shows about a cache (never the credential)."""

    fetches: int
    age_seconds: Optional[float]
    refresh_in_seconds: Optional[float]
    label: Optional[str]


class CredentialCache:
    """The current credential of one source; thread-safe."""

    def __init__(self, fetch: Fetch, refresh: Optional[float]) -> None:
        self._fetch = fetch
        self._refresh = refresh
        self._lock = threading.Lock()
        self._value: Optional[Credential] = None
        self._rejected: Optional[Credential] = None
        self._fetched_at = 0.0
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._clock: Callable[[], float] = Runtime().clock
        self.fetches = 0

    def get(self, runtime: Runtime) -> Credential:
        """The credential to log in with now, fetching only when due."""
        self._clock = runtime.clock
        value, now = self._value, runtime.clock()
        if value is not None and now < self._refresh_at:
            return value
        if value is not None and now < self._expires_at:
            # Due but still valid: one thread refreshes, the others go on with this one.
            if self._lock.acquire(blocking=False):
                try:
                    if self._value is value:
                        self._refresh_ahead(runtime, value)
                finally:
                    self._lock.release()
            return self._value or value
        with self._lock:
            current, now = self._value, runtime.clock()
            if current is not None and now < self._expires_at and (current is not value or now < self._refresh_at):
                return current  # another thread fetched while we waited
            return self._store(runtime, self._fetch(self._rejected))

    def fetch_now(self, runtime: Runtime) -> Credential:
        """Fetch afresh whatever is cached (dbshell: psql cannot retry a refused login)."""
        with self._lock:
            return self._store(runtime, self._fetch(self._rejected))

    def reject(self, credential: Credential) -> bool:
        """A server refused ``credential``: forget it so the next get() fetches afresh.

        True when this call dropped it; False when it was already replaced (another
        thread saw the rejection first), so that 50 refused logins make one fetch.
        """
        with self._lock:
            if self._value is not credential:
                return False
            self._value, self._rejected = None, credential
            return True

    def status(self) -> CacheStatus:
        value, now = self._value, self._clock()
        if value is None:
            return CacheStatus(self.fetches, None, None, None)
        refresh_in = None if self._refresh_at == float("inf") else round(max(self._refresh_at - now, 0.0), 3)
        return CacheStatus(self.fetches, round(now - self._fetched_at, 3), refresh_in, value.label)

    def _refresh_ahead(self, runtime: Runtime, value: Credential) -> None:
        try:
            self._store(runtime, self._fetch(None))
        except Exception as exc:  # the cached credential is still valid: use it, try later
            self._refresh_at = runtime.clock() + min(REFRESH_RETRY, max(self._expires_at - runtime.clock(), 0) / 2)
            logger.warning("refreshing credentials failed (%s); using the cached %s until it expires",
                           type(exc).__name__, value.label or "credential")

    def _store(self, runtime: Runtime, value: Credential) -> Credential:
        now = runtime.clock()
        self.fetches += 1
        interval = self._refresh
        if value.lifetime is not None:
            interval = min(interval if interval is not None else value.lifetime, value.lifetime)
        self._fetched_at = now
        self._refresh_at = now + interval * runtime.random.uniform(*JITTER) if interval is not None else float("inf")
        self._expires_at = now + value.lifetime if value.lifetime is not None else float("inf")
        self._value, self._rejected = value, None
        return value


_caches: Dict[Hashable, CredentialCache] = {}
_caches_lock = threading.Lock()


def cache_for(key: Hashable, make: Callable[[], CredentialCache]) -> CredentialCache:
    """The process's one cache for ``key`` (made on first use)."""
    cache = _caches.get(key)
    if cache is None:
        with _caches_lock:
            cache = _caches.get(key)
            if cache is None:
                cache = _caches[key] = make()
    return cache


def peek(key: Hashable) -> Optional[CredentialCache]:
    return _caches.get(key)


def clear() -> None:
    """Forget every cached credential (tests; a forked worker may call it too)."""
    with _caches_lock:
        _caches.clear()
