"""One thread per watched endpoint: the Blue/Green phase, the hold, and where green is.

The thread keeps one connection to the endpoint and reads
``pg_catalog.get_blue_green_fast_switchover_metadata()`` every ``poll`` seconds, every
``poll_deployed`` once a deployment exists, every ``poll_fast`` seconds from PREPARATION
until the switchover has ended (the AWS wrappers' three rates). It learns green's addresses
while green still has its own names. It holds
(``holding``) during IN_PROGRESS, and also when the endpoint stops answering after
PREPARATION (RDS drops every connection then), until POST, COMPLETED or a rollback; from
POST on, blue's addresses are replaced by green's in every resolution (``resolve``), so
no connection of this process goes to old blue, whatever a stale DNS cache says.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from aurora_backend import drivers, signals, stats
from aurora_backend.bluegreen.config import BlueGreenConfig

logger = logging.getLogger("aurora_backend")

#: The phases, numbered as the AWS wrappers number them (BlueGreenPhase).
PHASES = ("NOT_CREATED", "CREATED", "PREPARATION", "IN_PROGRESS", "POST", "COMPLETED")
_OF_STATUS = {
    "AVAILABLE": "CREATED",
    "SWITCHOVER_INITIATED": "PREPARATION",
    "SWITCHOVER_IN_PROGRESS": "IN_PROGRESS",
    "SWITCHOVER_IN_POST_PROCESSING": "POST",
    "SWITCHOVER_COMPLETED": "COMPLETED",
}
_SOURCE, _TARGET = "BLUE_GREEN_DEPLOYMENT_SOURCE", "BLUE_GREEN_DEPLOYMENT_TARGET"
QUERY = (
    "SELECT endpoint, role, status FROM pg_catalog.get_blue_green_fast_switchover_metadata('aurora_backend') "
    "WHERE to_regprocedure('pg_catalog.get_blue_green_fast_switchover_metadata(text)') IS NOT NULL"
)
EXISTS = "SELECT to_regprocedure('pg_catalog.get_blue_green_fast_switchover_metadata(text)') IS NOT NULL"

Resolver = Callable[[str, int], Sequence[str]]


class Watcher:
    """The phase of the deployment behind ``host``, for every alias of this process on it."""

    def __init__(
        self,
        alias: str,
        params: dict[str, Any],
        resolver: Resolver,
        config: BlueGreenConfig,
        runtime: Any,
        sender: type,
    ) -> None:
        self.alias = alias
        self.host = str(params["host"])
        self.port = int(params.get("port") or 5432)
        self.params = {
            k: params[k]
            for k in ("host", "port", "dbname", "user", "password", "sslmode", "sslrootcert")
            if params.get(k) is not None
        }
        self.resolver = resolver
        self.config = config
        self.runtime = runtime
        self.sender = sender
        self.phase = "NOT_CREATED"
        self.holding = False
        self.switched = False
        self.blue_addresses: list[str] = []
        self.green_addresses: list[str] = []
        self._reader = ".cluster-ro-" in self.host.lower()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._conn: Any = None
        self.polls = 0
        #: Set on every use of the alias (bluegreen._hold); while no deployment exists, a poll
        #: is skipped when the process has not used the alias since the last one and no
        #: connection is kept between polls, so an idle process lets Serverless v2 pause.
        self.active = True
        #: The last slow poll was skipped (nobody used the alias): the phase may be stale.
        self.idle = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aurora-bluegreen %s" % self.host, daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._close()

    # -- what the ENGINE asks ------------------------------------------------------------

    def resolve(self, host: str, port: int) -> list[str]:
        """The resolver's answer, blue's addresses replaced by green's once switched."""
        answer = list(self.resolver(host, port))
        if not self.switched or not self.green_addresses:
            return answer
        out: list[str] = []
        for address in answer:
            for new in self.green_addresses if address in self.blue_addresses else [address]:
                if new not in out:
                    out.append(new)
        return out

    def wait(self) -> float:
        """Block while holding, at most ``hold`` seconds; seconds held. TimeoutError past it."""
        if not self.holding:
            return 0.0
        clock = self.runtime.clock
        began = clock()
        deadline = began + self.config.hold
        with self._cond:
            while self.holding and not self._stop.is_set():
                left = deadline - clock()
                if left <= 0:
                    raise TimeoutError(clock() - began)
                self._cond.wait(min(left, self.config.poll_fast))
        return clock() - began

    def fresh(self) -> None:
        """Wait (briefly: one poll, its connect included) for a poll that starts after now.

        In PREPARATION a failed connection may be RDS dropping them all (IN_PROGRESS);
        after an idle spell the phase is as old as the last poll: let the watcher look
        before deciding to connect or to hold.
        """
        with self._cond:
            # A poll under way may have started before now; an idle thread is asleep.
            target = self.polls + (1 if self.idle else 2)
            self._wake.set()
            deadline = self.runtime.clock() + 2 * self.config.poll_fast + 2.5
            while self.polls < target and not self._stop.is_set():
                left = deadline - self.runtime.clock()
                if left <= 0:
                    return
                self._cond.wait(min(left, self.config.poll_fast))

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # never let the watcher die: log, poll again
                logger.warning("blue/green watcher of %s: %s", self.host, exc)
            with self._cond:
                self.polls += 1
                self._cond.notify_all()
            self._wake.wait(self._interval())
            self._wake.clear()

    def _interval(self) -> float:
        if self.holding or self.phase in ("PREPARATION", "IN_PROGRESS", "POST"):
            return self.config.poll_fast
        return self.config.poll if self.phase == "NOT_CREATED" else self.config.poll_deployed

    def _step(self) -> None:
        quiet = self.phase == "NOT_CREATED" and not self.holding  # no deployment: the 60 s polls
        if quiet:
            if not self.active:
                self.idle = True
                return
            self.active = False
        self.idle = False
        rows = self._poll()
        if quiet:
            self._close()  # between them the watcher holds no connection
        if rows is None:  # no answer: after PREPARATION, RDS has dropped connections (IN_PROGRESS)
            if self.phase == "PREPARATION":
                self._set("IN_PROGRESS", how="no answer")
            return
        statuses = [_OF_STATUS.get(str(status).upper()) for _, _, status in rows]
        phase = max((s for s in statuses if s), key=PHASES.index, default="NOT_CREATED")
        if phase in ("CREATED", "PREPARATION") and not self.switched:
            self._learn(rows)
        self._set(phase, how="metadata")

    def _poll(self) -> list[tuple[Any, ...]] | None:
        try:
            if self._conn is None:
                self._conn = self._connect()
            with self._conn.cursor() as cursor:
                cursor.execute(QUERY)
                return list(cursor.fetchall())
        except Exception as exc:
            logger.debug("blue/green watcher of %s: no answer (%s)", self.host, exc)
            self._close()
            return None

    def _connect(self) -> Any:
        addresses = self.resolve(self.host, self.port)
        params = dict(self.params, connect_timeout=2, application_name="aurora_backend blue/green watcher")
        if addresses:
            params["hostaddr"] = addresses[0]
        conn = drivers.connect(**params)
        conn.autocommit = True
        return conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _learn(self, rows: list[tuple[Any, ...]]) -> None:
        """Blue's and green's addresses, while both still have their own names."""
        mine = ".cluster-ro-" if self._reader else ".cluster-"
        blue, green = [], []
        for endpoint, role, _ in rows:
            name = str(endpoint)
            try:
                addresses = list(self.resolver(name, self.port))
            except OSError:
                continue
            if role == _SOURCE:
                blue += addresses
            elif role == _TARGET and mine in name.lower() and (self._reader or ".cluster-ro-" not in name.lower()):
                green += addresses
        self.blue_addresses = sorted(set(blue) - set(green))
        self.green_addresses = green

    def _set(self, phase: str, how: str) -> None:
        previous = self.phase
        if phase == previous:
            return
        with self._cond:
            self.phase = phase
            self.holding = phase == "IN_PROGRESS"
            if phase in ("POST", "COMPLETED") and self.green_addresses:
                self.switched = True
            self._cond.notify_all()
        stats.set_gauge(self.alias, "blue_green_phase", PHASES.index(phase))
        if self.switched and previous not in ("POST", "COMPLETED"):
            stats.incr(self.alias, "blue_green_switchovers")
        logger.info(
            "blue/green %s: %s -> %s (%s)%s",
            self.host,
            previous,
            phase,
            how,
            "; now connecting to %s" % ", ".join(self.green_addresses) if self.switched else "",
        )
        signals.blue_green_phase.send(
            sender=self.sender, alias=self.alias, connection=None, phase=phase, previous=previous
        )
