"""Find the global primary's writer (and a home-region reader) faster than DNS.

After a Global Database switchover or failover the global writer endpoint names the old
primary until Aurora updates it and resolvers' TTLs run out. As topology/router.py does
inside one cluster, this learns the global topology from
``aurora_global_db_instance_status()`` (server_id, MASTER_SESSION_ID, aws_region,
visibility_lag_in_msec: the query the AWS wrappers use) at connect time, at most every
``topology_refresh`` seconds, and after a failure sign probes the instance endpoints
(``global_instance_templates``: one template per region) for the one server that says
``pg_is_in_recovery() = false``. The probing, safety rules (one writer or none: never
guess) and signals are topology/router.py's own: :class:`GlobalRouter` subclasses it.

A reader alias with ``home_region`` probes its own region's instances only; with
``cross_region_reads = True`` it tries the other regions' readers when none at home answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aurora_backend.connection.resolve import resolvable_host
from aurora_backend.global_db import state
from aurora_backend.global_db.endpoint import is_global_endpoint
from aurora_backend.topology.router import Router, _ask
from aurora_backend.topology.state import AURORA_ENDPOINT

logger = logging.getLogger("aurora_backend")

GLOBAL_TOPOLOGY_SQL = (
    "SELECT server_id::text, session_id::text = 'MASTER_SESSION_ID', visibility_lag_in_msec::float8, "
    "aws_region::text FROM aurora_global_db_instance_status() ORDER BY 2 DESC, 1"
)

Probe = tuple[str, Any, bool | None, str | None]


class RegionTemplates:
    """``format(instance=...)``: the instance endpoint name from its region's template."""

    def __init__(self, key: str, templates: dict[str, str], topology: Callable[[], state.GlobalTopology]) -> None:
        self.key = key
        self.templates = dict(templates)
        self._topology = topology

    def region(self, instance: str) -> str | None:
        return self._topology().regions.get(instance)

    def format(self, instance: str) -> str:
        template = self.templates.get(self.region(instance) or "")
        return template.format(instance=instance) if template else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegionTemplates) and (self.key, self.templates) == (other.key, other.templates)

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return ", ".join("%s: %s" % item for item in sorted(self.templates.items()))


class GlobalRouter(Router):
    """Topology routing over every region of a global database."""

    def __init__(
        self,
        wrapper: Any,
        host: str,
        port: int,
        templates: dict[str, str],
        want_writer: bool,
        home_region: str | None,
        cross_region: bool,
    ) -> None:
        key = host if want_writer else "%s@%s" % (host, home_region)
        names = RegionTemplates(key, templates, lambda: self.topology)
        # RegionTemplates stands in for Router's template str: format(instance=...), a dict key.
        super().__init__(wrapper, host, port, names, want_writer)  # type: ignore[arg-type]
        self.key = key
        self.templates = dict(templates)
        self.home_region = home_region
        self.cross_region = cross_region

    @property
    def topology(self) -> state.GlobalTopology:
        return state.topology_for(self.key, self.port)

    def _race(self, parent: Callable[[dict[str, Any]], Any], params: dict[str, Any], avoid: str | None) -> list[Probe]:
        """The reader alias with a home region: a round over the home region's instances, then,
        with ``cross_region_reads`` and no home reader answering, one over the other regions."""
        topo = self.topology
        if self.want_writer or self.home_region is None:
            return super()._race(parent, params, avoid)
        home = [i for i in topo.instances if topo.regions.get(i) == self.home_region]
        results = self._race_among(parent, params, avoid, home) if home else []
        if any(r[2] is True for r in results) or not self.cross_region:
            return results
        others = [i for i in topo.instances if topo.regions.get(i) != self.home_region and i != topo.writer]
        logger.warning(
            "global database: no reader of home region %s answers; reading from %s (cross_region_reads)",
            self.home_region,
            ", ".join(others) or "nowhere",
        )
        return results + (self._race_among(parent, params, avoid, others) if others else [])

    def _probe(self, parent: Callable[[dict[str, Any]], Any], params: dict[str, Any], instance: str) -> Probe:
        if not self.template.format(instance=instance):  # no template for its region: cannot reach it
            return instance, None, None, None
        return super()._probe(parent, params, instance)

    def _read_topology(self, conn: Any) -> list[tuple[Any, ...]] | None:
        """The global topology; an empty answer (not a global database) is none: DNS only."""
        return _ask(conn, GLOBAL_TOPOLOGY_SQL) or None

    def _remember(self, topo: state.GlobalTopology, row: tuple[Any, ...], now: float) -> None:  # type: ignore[override]
        """One row, under ``topo.lock``: seen now, in its region, with its lag (None: the writer)."""
        super()._remember(topo, row, now)
        name, _, lag, region = row
        topo.regions[name] = region
        topo.lags[name] = lag


def router_for(wrapper: Any, params: dict[str, Any], own: bool = False) -> GlobalRouter | None:
    """A GlobalRouter for the global writer endpoint, or a reader endpoint with ``home_region``.

    ``own``: a GlobalRouter for one connect only, as topology's ``router_for`` (a pool's
    connects run in its worker threads at once); every GlobalRouter of an endpoint shares its
    GlobalTopology, so a sign seen by the wrapper's routes the pool's connects too.
    """
    options = wrapper.aurora_options
    templates = options.global_instance_templates
    if not options.topology or not templates:
        return None
    host = resolvable_host(params)
    if host is None:
        return None
    if is_global_endpoint(host):
        want_writer = True
    else:
        match = AURORA_ENDPOINT.match(host)
        if options.home_region is None or match is None or (match.group("kind") or "").lower() != "ro-":
            return None
        want_writer = False

    def build() -> GlobalRouter:
        return GlobalRouter(
            wrapper,
            host,
            int(params.get("port") or 5432),
            dict(templates),
            want_writer,
            options.home_region,
            options.cross_region_reads,
        )

    if own:
        return build()
    router = wrapper.aurora.router
    if not isinstance(router, GlobalRouter) or router.host != host or router.templates != templates:
        router = build()
        wrapper.aurora.router = router
    return router


def describe(options: Any, params: dict[str, Any]) -> dict[str, Any] | None:
    """What aurora_health shows of the global database this alias is on (None: not one)."""
    host = resolvable_host(params)
    if host is None or not (is_global_endpoint(host) or options.home_region):
        return None
    port = int(params.get("port") or 5432)
    key = host if is_global_endpoint(host) else "%s@%s" % (host, options.home_region)
    known = state.known(key, port)
    shown = (known or state.GlobalTopology()).snapshot()
    shown.update(
        endpoint=host,
        global_endpoint=is_global_endpoint(host),
        home_region=options.home_region,
        cross_region_reads=options.cross_region_reads,
        write_forwarding=options.write_forwarding,
        templates=dict(options.global_instance_templates or {}),
    )
    return shown
