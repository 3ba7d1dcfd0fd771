"""Failover faster than DNS: find the new writer from the cluster's topology.

After an Aurora failover the cluster endpoint's DNS names the old writer until Aurora
updates the record and the TTL runs out; a reconnect meanwhile is refused or lands on a
reader (25006). This module learns the cluster's instances from
``aurora_replica_status()`` (at connect time, at most every ``topology_refresh`` seconds:
never on the statement path) and, after a writer disconnect, a refused connect or a
25006, connects to the instance endpoints directly, in parallel, and keeps the one
connection whose server says ``pg_is_in_recovery() = false``. Each candidate is a real
connection with the app's parameters and ``host`` = the instance endpoint's name, so TLS
still verifies a name the certificate holds.

Safety: a connection is handed over only after its own server said it is the writer (a
reader alias: a reader). No instance, no answer, an unknown topology (plain PostgreSQL,
no permission) or two instances claiming to be the writer (split brain: never guess)
fall back silently to the DNS path, exactly as without this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aurora_backend import signals
from aurora_backend.connection.resolve import default_resolver, resolvable_host
from aurora_backend.errors import ErrorKind, classify
from aurora_backend.topology import probe
from aurora_backend.topology.state import (
    AURORA_ENDPOINT,
    Failover,
    Topology,
    describe,
    instance_template,
    reset,
    snapshot,
    topology_for,
)

__all__ = ["Failover", "Router", "Topology", "describe", "reset", "router_for", "snapshot"]

logger = logging.getLogger("aurora_backend")

TOPOLOGY_SQL = (
    "SELECT server_id::text, session_id::text = 'MASTER_SESSION_ID' FROM aurora_replica_status() ORDER BY 2 DESC, 1"
)
PROBE_TIMEOUT = 2  # libpq's minimum connect_timeout: a probe never waits longer per instance
FORGET_AFTER = 10  # an instance missing from this many refresh periods is dropped
DECISION_TTL = 1.0  # seconds a full probe round's choice of writer is reused (then: all again)


class Router:
    """Topology routing of one DatabaseWrapper's connects (``wrap(parent)`` is the connect function)."""

    def __init__(self, wrapper: Any, host: str, port: int, template: str, want_writer: bool) -> None:
        self.wrapper = wrapper
        self.host = host
        self.port = port
        self.template = template
        self.want_writer = want_writer
        self.routed: tuple[str, str] | None = None  # (instance, address) of the last routed connect
        self.current: str | None = None

    @property
    def topology(self) -> Topology:
        return topology_for(self.template, self.port)

    @property
    def options(self) -> Any:
        return self.wrapper.aurora_options

    def clock(self) -> float:
        return self.wrapper.aurora_runtime.clock()

    # -- suspicion ---------------------------------------------------------------------

    def suspect(self, reason: str) -> None:
        """A sign that the instance behind the endpoint changed role: route the next connects."""
        now = self.clock()
        with self.topology.lock:
            # The clock of "first sign to new writer" is the writer's: a reader alias's sign
            # (its reader restarted, went away) routes connects but says nothing of the
            # writer; and a sign whose window ran out without a failover is old news. Either
            # would start the next failover's clock seconds early.
            topology = self.topology
            if self.want_writer and (topology.suspect_since is None or now > topology.suspect_until):
                topology.suspect_since = now
            topology.suspect_until = now + self.options.topology_refresh
            topology.last_sign = now
        logger.debug("topology of %s: suspecting a failover (%s)", self.host, reason)

    def suspected(self) -> bool:
        topo = self.topology
        if not topo.instances or self.clock() > topo.suspect_until:
            return False
        # The writer alias: a round since the last sign found the writer unchanged and the
        # endpoint's DNS naming it (a scale event, an idle kill): the DNS path is as good.
        return not (self.want_writer and topo.dns_confirmed >= topo.last_sign)

    # -- connecting --------------------------------------------------------------------

    def wrap(self, parent: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        def connect(params: dict[str, Any]) -> Any:
            self.routed = None
            if self.suspected():
                found = self._route(parent, params)
                if found is not None:
                    return found
            try:
                return parent(params)
            except Exception as exc:
                if classify(exc) in (ErrorKind.CONNECT_RETRYABLE, ErrorKind.DISCONNECT):
                    self.suspect("connect failed")
                raise

        return connect

    def _route(self, parent: Callable[[dict[str, Any]], Any], params: dict[str, Any]) -> Any:
        """Probe the instances (bounded rounds) for the one to use; None: take the DNS path."""
        began = self.clock()
        budget = float(min(self.options.connect_timeout, 5))
        avoid = None if self.want_writer else self.wrapper.aurora_address
        decided = self.topology.decided
        if self.want_writer and decided is not None and began - decided[1] < DECISION_TTL:
            # A full round chose this writer a moment ago (no second writer then): the many
            # connects of a pool after a failover probe one instance each, not all of them.
            instance, conn, recovering, address = self._probe(parent, params, decided[0])
            if conn is not None and recovering is False:
                self._found(instance, address or "", began)
                return conn
            if conn is not None:
                _close(conn)
        while True:
            results = self._race(parent, params, avoid)
            choice = self._choose(results, avoid)
            for _instance, conn, _, _ in results:
                if conn is not None and (choice is None or conn is not choice[1]):
                    _close(conn)
            if choice is not None:
                instance, conn, address = choice
                if self.want_writer:
                    self.topology.decided = (instance, self.clock())
                self._found(instance, address, began)
                return conn
            answered = [r for r in results if r[2] is not None]
            writers = [r for r in answered if r[2] is False]
            if not answered or len(writers) > 1 or self.clock() - began >= budget:
                if len(writers) > 1:
                    self._split_brain([w[0] for w in writers])
                return None
            self.wrapper.aurora_runtime.sleep(0.05)  # a promotion in progress: no writer yet

    def _choose(self, results: list[probe.Result], avoid: str | None) -> tuple[str, Any, str] | None:
        if self.want_writer:
            writers = [r for r in results if r[2] is False]
            return (writers[0][0], writers[0][1], writers[0][3] or "") if len(writers) == 1 else None
        readers = [r for r in results if r[2] is True]
        others = [r for r in readers if r[3] != avoid] or readers
        if not others:
            return None
        pick = others[self.wrapper.aurora_runtime.random.randrange(len(others))]
        return pick[0], pick[1], pick[3] or ""

    def _race(
        self, parent: Callable[[dict[str, Any]], Any], params: dict[str, Any], avoid: str | None
    ) -> list[probe.Result]:
        """One round over every instance (topology/probe.py)."""
        return self._race_among(parent, params, avoid, list(self.topology.instances))

    def _race_among(
        self, parent: Callable[[dict[str, Any]], Any], params: dict[str, Any], avoid: str | None, instances: list[str]
    ) -> list[probe.Result]:
        """One round over ``instances``; those that did not answer in it are remembered as hung."""
        topo = self.topology
        with topo.lock:
            names = probe.candidates(instances, topo.hung, self.clock())

        def accept(result: probe.Result) -> bool:
            return result[2] is (not self.want_writer) and (self.want_writer or result[3] != avoid)

        results, silent = probe.race(names, lambda name: self._probe(parent, params, name), accept, self._late)
        if silent:
            with topo.lock:
                until = self.clock() + probe.HUNG_SECONDS
                for name in silent:
                    topo.hung[name] = until
            logger.info(
                "topology of %s: %s did not answer a probe round: left out of the rounds for %gs",
                self.host,
                ", ".join(silent),
                probe.HUNG_SECONDS,
            )
        return results

    def _late(self, result: probe.Result) -> None:
        """A probe that finished after its round's grace (in the probing thread): its answer
        may describe a later moment than the round's, so it is only closed. A second writer
        slower than the grace is looked for again by the next full round (DECISION_TTL)."""
        if result[1] is not None:
            _close(result[1])

    def _split_brain(self, writers: list[str]) -> None:
        logger.warning(
            "topology of %s: %d instances claim to be the writer (%s): not guessing, using DNS",
            self.host,
            len(writers),
            ", ".join(writers),
        )

    def _probe(self, parent: Callable[[dict[str, Any]], Any], params: dict[str, Any], instance: str) -> probe.Result:
        """Connect to one instance endpoint; (instance, connection or None, in_recovery, address)."""
        host = self.template.format(instance=instance)
        attempt = dict(params, host=host, connect_timeout=PROBE_TIMEOUT)
        attempt.pop("hostaddr", None)
        try:
            addresses = list((self.options.resolver or default_resolver)(host, self.port))
        except (OSError, UnicodeError) as exc:
            logger.debug("topology: %s does not resolve (%s)", host, exc)
            return instance, None, None, None
        if not addresses:
            return instance, None, None, None
        attempt["hostaddr"] = addresses[0]
        began = self.clock()
        try:
            conn = parent(attempt)
        except Exception as exc:
            logger.debug("topology: %s (%s) did not answer: %s", instance, addresses[0], exc)
            if self.clock() - began >= PROBE_TIMEOUT - 0.1 or "timeout" in str(exc).lower():
                with self.topology.lock:  # hung (no answer at all): left out of the rounds a while
                    self.topology.hung[instance] = self.clock() + probe.HUNG_SECONDS
            return instance, None, None, addresses[0]
        recovering = _ask(conn, "SELECT pg_is_in_recovery()")
        if recovering is None:
            _close(conn)
            return instance, None, None, addresses[0]
        with self.topology.lock:
            self.topology.hung.pop(instance, None)
        return instance, conn, bool(recovering[0][0]), addresses[0]

    def _found(self, instance: str, address: str, began: float) -> None:
        self.routed = (instance, address)
        self.current = instance
        if not self.want_writer:
            return
        now = self.clock()
        with self.topology.lock:
            old = self.topology.writer
            since = self.topology.suspect_since
            self.topology.writer = instance
            self.topology.suspect_since = None  # routing stays on; the next sign starts a new clock
        if old != instance:
            self._record(Failover(old, instance, "topology", None if since is None else round(now - since, 3)))
        elif address in self._dns_addresses():
            self.topology.dns_confirmed = now
        logger.info("topology of %s: writer is %s (%s), found in %.3fs", self.host, instance, address, now - began)

    def _dns_addresses(self) -> list[str]:
        try:
            return list((self.options.resolver or default_resolver)(self.host, self.port))
        except (OSError, UnicodeError):
            return []

    def _record(self, failover: Failover) -> None:
        self.topology.last_failover = failover
        logger.warning(
            "failover on %r: writer %s -> %s (found by %s%s)",
            self.wrapper.alias,
            failover.old_writer,
            failover.new_writer,
            failover.how,
            "" if failover.seconds is None else ", %.3fs after the first sign" % failover.seconds,
        )
        signals.topology_failover.send(
            sender=type(self.wrapper),
            alias=self.wrapper.alias,
            connection=self.wrapper,
            old_writer=failover.old_writer,
            new_writer=failover.new_writer,
            how=failover.how,
            seconds=failover.seconds,
        )

    # -- learning ----------------------------------------------------------------------

    def learn(self, conn: Any) -> None:
        """Refresh the instance list from ``conn`` (a new raw connection) when it is stale."""
        now = self.clock()
        topo = self.topology
        fresh = topo.learned_at is not None and now - topo.learned_at < self.options.topology_refresh
        if fresh or now < topo.unknown_until:
            return
        rows = self._read_topology(conn)
        with topo.lock:
            if rows is None:  # not Aurora, or no permission: the DNS path only, ask later
                topo.unknown_until = now + self.options.topology_refresh
                return
            old = topo.writer
            # A reader reconnecting (e.g. just after a promotion) is briefly missing from the
            # answer: keep what was seen recently; an instance that is gone costs one probe.
            for row in rows:
                self._remember(topo, row, now)
            keep = FORGET_AFTER * self.options.topology_refresh
            topo.seen = {name: at for name, at in topo.seen.items() if now - at < keep}
            topo.instances = sorted(topo.seen, key=lambda name: (name not in [r[0] for r in rows], name))
            topo.writer = next((row[0] for row in rows if row[1]), None)
            topo.learned_at = now
            new = topo.writer
        if self.want_writer and old is not None and new is not None and old != new and self.routed is None:
            since = topo.suspect_since
            self._record(Failover(old, new, "dns", None if since is None else round(now - since, 3)))

    def _read_topology(self, conn: Any) -> list[tuple[Any, ...]] | None:
        """Rows (server_id, is_writer, ...) from ``conn``; None: no topology to learn."""
        return _ask(conn, TOPOLOGY_SQL)

    def _remember(self, topo: Topology, row: tuple[Any, ...], now: float) -> None:
        """One row of the answer, under ``topo.lock``: the instance was seen now."""
        topo.seen[row[0]] = now


def _ask(conn: Any, sql: str) -> list[tuple[Any, ...]] | None:
    """Run ``sql`` on a raw connection Django has not set up yet; leave no transaction open."""
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            rows = [tuple(row) for row in cursor.fetchall()]
    except Exception:
        rows = None
    try:
        conn.rollback()
    except Exception:
        return None
    return rows


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        pass


def router_for(wrapper: Any, params: dict[str, Any], own: bool = False) -> Router | None:
    """A Router when topology routing applies to this alias's connects, else None.

    ``own``: a Router for one connect only (a pool's connects run in its worker threads at
    once; the wrapper's Router keeps the last routed connect of the wrapper's own thread).
    Every Router of a cluster shares its Topology: a sign seen by one routes all.
    """
    options = wrapper.aurora_options
    if not options.topology:
        return None
    host = resolvable_host(params)
    if host is None:
        return None
    template = instance_template(host, options.topology_template)
    if template is None:
        return None
    match = AURORA_ENDPOINT.match(host)
    kind = ((match.group("kind") if match else None) or "").lower()
    if kind == "custom-":
        return None  # a custom endpoint's members are the user's choice: nothing to infer
    want_writer = kind != "ro-"
    if own:
        return Router(wrapper, host, int(params.get("port") or 5432), template, want_writer)
    router = wrapper.aurora.router
    if router is None or router.host != host or router.template != template:
        router = Router(wrapper, host, int(params.get("port") or 5432), template, want_writer)
        wrapper.aurora.router = router
    return router
