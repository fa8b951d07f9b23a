"""Clusters: STATIC, STRICT_DNS and LOGICAL_DNS discovery, hosts, pools and stats."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from sluice.errors import ConfigError, UnsupportedError
from sluice.stats.blocks import ClusterStats, DnsResolverStats
from sluice.stats.store import Store
from sluice.tasks import spawn
from sluice.upstream import circuit_breaker
from sluice.upstream.conn_pool import HostPool
from sluice.upstream.health_check import HealthCheckConfig, HealthChecker, HealthCheckStats
from sluice.upstream.host import Host
from sluice.upstream.load_balancer import POLICIES, LoadBalancer
from sluice.upstream.outlier import OutlierConfig, OutlierDetector, OutlierStats
from sluice.upstream.resolver import is_ip, local_alias, resolve

log = logging.getLogger("sluice.upstream")

STATIC, STRICT_DNS, LOGICAL_DNS = 0, 1, 2
TYPE_NAMES = {0: "STATIC", 1: "STRICT_DNS", 2: "LOGICAL_DNS", 3: "EDS", 4: "ORIGINAL_DST"}
LB_NAMES = {
    0: "ROUND_ROBIN",
    1: "LEAST_REQUEST",
    2: "RING_HASH",
    3: "RANDOM",
    5: "MAGLEV",
    6: "CLUSTER_PROVIDED",
    7: "LOAD_BALANCING_POLICY_CONFIG",
}


def _duration(d: Any) -> float:
    return float(d.seconds + d.nanos / 1e9)


class EndpointSpec:
    """One configured ``lb_endpoint``: a name or IP, a port and a weight."""

    __slots__ = ("address", "port", "weight", "hostname")

    def __init__(self, address: str, port: int, weight: int, hostname: str) -> None:
        self.address = address
        self.port = port
        self.weight = weight
        self.hostname = hostname


class Cluster:
    def __init__(self, c: Any, path: str, store: Store, rng: random.Random, runtime: Any = None) -> None:
        self.name: str = c.name
        self.path = path
        self.type: int = c.type
        if self.type not in (STATIC, STRICT_DNS, LOGICAL_DNS):
            raise UnsupportedError(
                f"{path}.type: cluster type {TYPE_NAMES.get(self.type, self.type)} is not implemented"
            )
        if c.lb_policy not in POLICIES:
            raise UnsupportedError(
                f"{path}.lb_policy: {LB_NAMES.get(c.lb_policy, c.lb_policy)} is not implemented "
                "(ROUND_ROBIN, LEAST_REQUEST and RANDOM are)"
            )
        self.lb_policy_name = LB_NAMES[c.lb_policy]
        self.lb: LoadBalancer = POLICIES[c.lb_policy](rng)
        self.connect_timeout = _duration(c.connect_timeout) if c.HasField("connect_timeout") else 5.0
        self.dns_refresh_rate = _duration(c.dns_refresh_rate) if c.HasField("dns_refresh_rate") else 5.0
        self.lookup_family: int = c.dns_lookup_family
        self.dns_stats: DnsResolverStats | None = None
        """The shared resolver's ``dns.cares.*`` (set by the cluster manager for DNS clusters)."""
        self.stats = ClusterStats.declare(store, f"cluster.{self.name}.")
        self.stats_prefix = f"cluster.{self.name}."
        self.store = store
        self.resources, self.resources_high = circuit_breaker.build(
            c.circuit_breakers if c.HasField("circuit_breakers") else None, self.stats
        )
        """Circuit breakers of the DEFAULT and HIGH priorities (``circuit_breaker.py``)."""
        self.lb.panic_counter = self.stats.lb_healthy_panic
        if c.common_lb_config.HasField("healthy_panic_threshold"):
            self.lb.panic_threshold = c.common_lb_config.healthy_panic_threshold.value
        self._rng = rng
        self.outlier: OutlierDetector | None = None
        """Outlier detection when ``outlier_detection`` is set; the router reports results to it."""
        if c.HasField("outlier_detection"):
            self.outlier = OutlierDetector(
                OutlierConfig(c.outlier_detection),
                OutlierStats.declare(store, f"cluster.{self.name}.outlier_detection."),
                runtime,
                time.monotonic,
                lambda delay, cb: asyncio.get_event_loop().call_later(delay, cb),
                self._on_health_change,
                rng,
            )
        self.health_checker: HealthChecker | None = None
        self._hc_config: HealthCheckConfig | None = None
        if len(c.health_checks) > 0:
            hc = c.health_checks[0]
            if hc.WhichOneof("health_checker") != "http_health_check":
                raise UnsupportedError(f"{path}.health_checks[0]: only http_health_check is implemented")
            self._hc_config = HealthCheckConfig(hc, self.name)
            self._hc_stats = HealthCheckStats.declare(store, f"cluster.{self.name}.health_check.")
        self.endpoints: list[EndpointSpec] = []
        for i, group in enumerate(c.load_assignment.endpoints):
            for j, e in enumerate(group.lb_endpoints):
                p = f"{path}.load_assignment.endpoints[{i}].lb_endpoints[{j}]"
                sa = e.endpoint.address.socket_address
                if not e.endpoint.address.HasField("socket_address"):
                    raise UnsupportedError(f"{p}.endpoint.address: only socket_address is implemented")
                if sa.WhichOneof("port_specifier") == "named_port":
                    raise UnsupportedError(f"{p}.endpoint.address.socket_address.named_port: not implemented")
                if self.type == STATIC and not is_ip(sa.address):
                    raise ConfigError(
                        f"{p}.endpoint.address.socket_address.address: STATIC cluster needs an IP "
                        f"address, got '{sa.address}'"
                    )
                weight = e.load_balancing_weight.value if e.HasField("load_balancing_weight") else 1
                address = local_alias(sa.address) if self.type == STATIC else sa.address
                self.endpoints.append(EndpointSpec(address, sa.port_value, weight, e.endpoint.hostname))
        if self.type == LOGICAL_DNS and len(self.endpoints) != 1:
            raise ConfigError(f"{path}.load_assignment: LOGICAL_DNS clusters must have a single host")
        self.hosts: list[Host] = []
        self.pools: dict[str, HostPool] = {}
        self._refresh: asyncio.TimerHandle | None = None
        if self.type == STRICT_DNS:
            # Envoy sets it from each DNS resolution's hosts; STATIC and LOGICAL_DNS clusters
            # leave it at 0 (checked with Envoy 1.40).
            self.stats.max_host_weight.set(max((e.weight for e in self.endpoints), default=0))
        if self.type == STATIC:
            self._set_hosts([Host(e.address, e.port, e.hostname, e.weight) for e in self.endpoints])

    def __repr__(self) -> str:
        return f"<Cluster {self.name} hosts={len(self.hosts)}>"

    # -- discovery ----------------------------------------------------------------------
    async def initialize(self) -> None:
        """Resolve DNS clusters once; later refreshes run every ``dns_refresh_rate``."""
        resolved = True
        if self.type != STATIC:
            resolved = await self._resolve_all()
            self._schedule_refresh()
        if self.outlier is not None:
            self.outlier.start()
        if self._hc_config is not None:
            self.health_checker = HealthChecker(
                self._hc_config, self._hc_stats, self.stats.upstream_cx_total, self._on_health_change, self.name, self._rng
            )
            self.health_checker.set_hosts(self.hosts)
            self._on_health_change()
            # Envoy's cluster warming: one round of health checks before the cluster is ready.
            await self.health_checker.first_round()
        if self.type != STATIC and resolved:
            # One per completed resolution; a STATIC cluster's hosts are never "updated".
            self.stats.update_success.inc()

    async def _resolve_all(self) -> bool:
        """One resolution of every endpoint; False when it failed (LOGICAL_DNS only: it keeps
        its last address). A STRICT_DNS name with no address is a completed resolution with no
        host for it, as Envoy's c-ares answer is (update_success, not update_failure)."""
        self.stats.update_attempt.inc()
        hosts: list[Host] = []
        for e in self.endpoints:
            try:
                addrs = await resolve(e.address, self.lookup_family, self.dns_stats)
            except (OSError, UnicodeError) as exc:
                log.warning("cluster %s: cannot resolve %s: %s", self.name, e.address, exc)
                if self.type == LOGICAL_DNS:
                    self.stats.update_failure.inc()
                    return False
                continue
            if self.type == LOGICAL_DNS:
                addrs = addrs[:1]
            for a in addrs:
                hosts.append(Host(a, e.port, e.hostname or e.address, e.weight))
        if not self._set_hosts(hosts):
            self.stats.update_no_rebuild.inc()
        return True

    def _schedule_refresh(self) -> None:
        loop = asyncio.get_event_loop()
        self._refresh = loop.call_later(
            self.dns_refresh_rate,
            lambda: spawn(self._refresh_once(), name=f"dns:{self.name}"),
        )

    async def _refresh_once(self) -> None:
        try:
            if await self._resolve_all():
                self.stats.update_success.inc()
        finally:
            self._schedule_refresh()

    def _set_hosts(self, hosts: list[Host]) -> bool:
        """Install ``hosts``; whether the membership changed."""
        # Keep existing Host objects (and their stats) for addresses that stay. Several
        # endpoints may share an address: each stays its own host, matched in order.
        old: dict[str, list[Host]] = {}
        for h in self.hosts:
            old.setdefault(h.address, []).append(h)
        old_addrs = set(old)
        new_hosts = [old[h.address].pop(0) if old.get(h.address) else h for h in hosts]
        # Envoy makes a host description for every address of every resolution (a DNS
        # cluster's refresh too, hosts unchanged or not), and each resolves its transport
        # socket through the default matcher: one default.total_match_count (checked with
        # Envoy 1.40: STATIC 1 per host; STRICT/LOGICAL_DNS +1 per address per refresh).
        self.stats.default_total_match_count.inc(len(hosts))
        new_addrs = {h.address for h in new_hosts}
        changed = new_addrs != old_addrs
        for addr, pool in list(self.pools.items()):
            if addr not in new_addrs:
                pool.close_all()
                del self.pools[addr]
        self.hosts = new_hosts
        if changed:
            self.stats.membership_change.inc()
        self.stats.membership_total.set(len(new_hosts))
        if self.outlier is not None:
            self.outlier.set_hosts(new_hosts)
        if self.health_checker is not None:
            self.health_checker.set_hosts(new_hosts)
        self._on_health_change()
        return changed

    def _on_health_change(self) -> None:
        """A host's health changed in place: the balancer recomputes, the gauge follows."""
        self.lb.invalidate()
        self.stats.membership_healthy.set(sum(1 for h in self.hosts if h.healthy))

    def stop(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        if self.outlier is not None:
            self.outlier.stop()
        if self.health_checker is not None:
            self.health_checker.stop()
        for pool in self.pools.values():
            pool.close_all()

    # -- request path -------------------------------------------------------------------
    def choose_host(self) -> Host | None:
        return self.lb.choose(self.hosts)

    def pool_for(self, host: Host) -> HostPool:
        pool = self.pools.get(host.address)
        if pool is None:
            pool = self.pools[host.address] = HostPool(
                host, self.stats, self.connect_timeout, self.name, self.resources
            )
            # Envoy checks the connection-pool resource of both priorities when it makes the
            # first pool (observed on 1.40: default's and high's cx_pool_open become used).
            st = self.stats
            st.circuit_breakers_default_cx_pool_open.used = True
            st.circuit_breakers_high_cx_pool_open.used = True
        return pool
