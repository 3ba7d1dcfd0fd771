"""One cache per credentials source per process, refreshed ahead of expiry by one thread.

Every physical connection asks the cache; only a due refresh, an expiry or a rejected
login reaches the source (an AWS call). A due refresh is done by the one thread that
gets the lock while the others keep using the still-valid credential; with nothing
valid cached, the others wait for that one fetch instead of making their own.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import NamedTuple

from aurora_backend.runtime import Runtime

logger = logging.getLogger("aurora_backend")

#: A failed background refresh is tried again after this long (the old credential still works).
REFRESH_RETRY = 30.0
#: Refresh at a random point between these fractions of the refresh interval.
JITTER = (0.8, 1.0)
#: A credential fetched because a login was refused, refused in turn within this many
#: seconds, is not fetched again: a wrong secret costs one source call per pause, not
#: one per connection attempt (a pool retries in the background).
REFETCH_PAUSE = 5.0

#: What :meth:`CredentialCache.reject` did: dropped the credential (the next get() fetches),
#: found it already replaced by another thread, or kept it (refetched moments ago).
DROPPED, REPLACED, KEPT = "dropped", "replaced", "kept"


@dataclass(frozen=True, eq=False)
class Credential:
    """A user and password from a source. ``repr()`` and ``str()`` never show the password."""

    user: str | None
    password: str = field(repr=False)
    #: Where it came from, for logs and health: "token", "AWSCURRENT", "AWSPENDING", "callable".
    label: str = ""
    #: Seconds after fetching when it stops working (an IAM token); None: until rotated.
    lifetime: float | None = None

    def __repr__(self) -> str:
        return "Credential(user=%r, password='********', label=%r)" % (self.user, self.label)

    __str__ = __repr__


#: ``fetch(rejected)``: a new credential; ``rejected`` is the one a server just refused, if any.
Fetch = Callable[[Credential | None], Credential]


@dataclass
class CacheStatus:
    """What health shows about a cache (never the credential)."""

    fetches: int
    age_seconds: float | None
    refresh_in_seconds: float | None
    label: str | None


class _State(NamedTuple):
    """Replaced whole, so that a reader never sees one credential with another's times."""

    value: Credential | None = None
    fetched_at: float = 0.0
    refresh_at: float = 0.0
    expires_at: float = 0.0
    #: Fetched because a login with the previous credential was refused.
    after_rejection: bool = False


class CredentialCache:
    """The current credential of one source; thread-safe."""

    def __init__(self, fetch: Fetch, refresh: float | None) -> None:
        self._fetch = fetch
        self._refresh = refresh
        self._lock = threading.Lock()
        self._state = _State()
        self._rejected: Credential | None = None
        self._clock: Callable[[], float] = Runtime().clock
        self.fetches = 0

    def get(self, runtime: Runtime) -> Credential:
        """The credential to log in with now, fetching only when due."""
        self._clock = runtime.clock
        state, now = self._state, runtime.clock()
        if state.value is not None and now < state.refresh_at:
            return state.value
        if state.value is not None and now < state.expires_at:
            # Due but still valid: one thread refreshes, the others go on with this one.
            if self._lock.acquire(blocking=False):
                try:
                    if self._state is state:
                        self._refresh_ahead(runtime, state)
                finally:
                    self._lock.release()
            return self._state.value or state.value
        with self._lock:
            current, now = self._state, runtime.clock()
            if current is not state and current.value is not None and now < current.expires_at:
                return current.value  # another thread fetched while we waited
            return self._store(runtime, self._fetch(self._rejected))

    def fetch_now(self, runtime: Runtime) -> Credential:
        """Fetch afresh whatever is cached (dbshell: psql cannot retry a refused login)."""
        with self._lock:
            return self._store(runtime, self._fetch(self._rejected))

    def reject(self, credential: Credential, runtime: Runtime) -> str:
        """A server refused ``credential``: forget it so the next get() fetches afresh.

        DROPPED when this call dropped it; REPLACED when another thread already did (so
        that 50 refused logins make one fetch); KEPT when it was itself fetched after a
        refusal less than REFETCH_PAUSE ago (the source has nothing newer yet).
        """
        with self._lock:
            state = self._state
            if state.value is not credential:
                return REPLACED
            if state.after_rejection and runtime.clock() - state.fetched_at < REFETCH_PAUSE:
                return KEPT
            self._state, self._rejected = _State(), credential
            return DROPPED

    def status(self) -> CacheStatus:
        state, now = self._state, self._clock()
        if state.value is None:
            return CacheStatus(self.fetches, None, None, None)
        refresh_in = None if state.refresh_at == math.inf else round(max(state.refresh_at - now, 0.0), 3)
        return CacheStatus(self.fetches, round(now - state.fetched_at, 3), refresh_in, state.value.label)

    def _refresh_ahead(self, runtime: Runtime, state: _State) -> None:
        try:
            self._store(runtime, self._fetch(None))
        except Exception as exc:  # the cached credential is still valid: use it, try later
            now = runtime.clock()
            retry_at = now + min(REFRESH_RETRY, max(state.expires_at - now, 0.0) / 2)
            self._state = state._replace(refresh_at=retry_at)
            logger.warning(
                "refreshing credentials failed (%s); using the cached %s until it expires",
                type(exc).__name__,
                state.value.label if state.value else "credential",
            )

    def _store(self, runtime: Runtime, value: Credential) -> Credential:
        now = runtime.clock()
        self.fetches += 1
        interval = self._refresh
        if value.lifetime is not None:
            interval = value.lifetime if interval is None else min(interval, value.lifetime)
        refresh_at = math.inf if interval is None else now + interval * runtime.random.uniform(*JITTER)
        expires_at = math.inf if value.lifetime is None else now + value.lifetime
        self._state = _State(value, now, refresh_at, expires_at, self._rejected is not None)
        self._rejected = None
        return value


_caches: dict[Hashable, CredentialCache] = {}
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


def peek(key: Hashable) -> CredentialCache | None:
    return _caches.get(key)


def clear() -> None:
    """Forget every cached credential (tests; a forked worker may call it too)."""
    with _caches_lock:
        _caches.clear()
