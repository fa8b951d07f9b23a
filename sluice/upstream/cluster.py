"""Clusters: STATIC, STRICT_DNS and LOGICAL_DNS discovery, hosts, pools and stats."""

from __future__ import annotations

import logging
import random
from typing import Any

from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from sluice.clock import REAL, TimerHandle, TimeSource
from sluice.codec.http2 import DEFAULT_SETTINGS, Http2Settings
from sluice.codec.http2_client import Http2ClientStats
from sluice.errors import ConfigError, UnsupportedError
from sluice.stats.blocks import ClusterStats, DnsResolverStats
from sluice.stats.store import Store
from sluice.tasks import spawn
from sluice.upstream import circuit_breaker
from sluice.upstream.backend import DEFAULT_BACKEND, NetworkBackend
from sluice.upstream.conn_pool import HTTP1, HTTP2, HostPool, PoolOptions
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


HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
"""The ``typed_extension_protocol_options`` key (and type) of a cluster's HTTP protocol options."""


def endpoint_metadata(e: Any) -> dict[str, dict[str, object]]:
    """An ``LbEndpoint``'s ``metadata.filter_metadata`` as plain values."""
    from google.protobuf import json_format

    return {ns: json_format.MessageToDict(struct) for ns, struct in e.metadata.filter_metadata.items()}


def _http2_settings(h2: Any) -> Http2Settings:
    d = DEFAULT_SETTINGS
    return Http2Settings(
        max_concurrent_streams=h2.max_concurrent_streams.value if h2.HasField("max_concurrent_streams") else d.max_concurrent_streams,
        initial_stream_window_size=(
            h2.initial_stream_window_size.value if h2.HasField("initial_stream_window_size") else d.initial_stream_window_size
        ),
        initial_connection_window_size=(
            h2.initial_connection_window_size.value
            if h2.HasField("initial_connection_window_size")
            else d.initial_connection_window_size
        ),
    )


def protocol_options(c: Any, path: str) -> tuple[PoolOptions, PoolOptions | None]:
    """A cluster's upstream HTTP options: those of its pools, and (``use_downstream_protocol_config``
    with ``http2_protocol_options``) those for requests that came in over HTTP/2, else None.
    Read from ``typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]``
    or the legacy cluster fields (``http2_protocol_options``, ``common_http_protocol_options``,
    ``max_requests_per_connection``); the fields Sluice does not implement are refused by
    ``config/support.py``."""
    common = c.common_http_protocol_options if c.HasField("common_http_protocol_options") else None
    h2 = c.http2_protocol_options if c.HasField("http2_protocol_options") else None
    use_downstream = False
    packed = c.typed_extension_protocol_options.get(HTTP_PROTOCOL_OPTIONS)
    if packed is not None:
        key = f'{path}.typed_extension_protocol_options["{HTTP_PROTOCOL_OPTIONS}"]'
        # With the extension, Envoy ignores the cluster's deprecated protocol fields (checked
        # with 1.40: both set is accepted, the extension wins).
        h2 = common = None
        msg = http_protocol_options_pb2.HttpProtocolOptions()
        if not packed.Unpack(msg):
            raise ConfigError(f"{key}: expected a {HTTP_PROTOCOL_OPTIONS}, got '{packed.type_url}'")
        if msg.HasField("common_http_protocol_options"):
            common = msg.common_http_protocol_options
        which = msg.WhichOneof("upstream_protocol_options")
        if which == "explicit_http_config":
            if msg.explicit_http_config.HasField("http2_protocol_options"):
                h2 = msg.explicit_http_config.http2_protocol_options
        elif which == "use_downstream_protocol_config":
            use_downstream = True
            if msg.use_downstream_protocol_config.HasField("http2_protocol_options"):
                h2 = msg.use_downstream_protocol_config.http2_protocol_options
        elif which is not None:
            raise UnsupportedError(f"{key}.{which}: not implemented (explicit_http_config and use_downstream_protocol_config are)")
    max_requests = 0
    idle_timeout, idle_timer = 3600.0, False
    if common is not None:
        if common.HasField("max_requests_per_connection"):
            if c.HasField("max_requests_per_connection"):
                raise ConfigError(
                    f"{path}: Only one of max_requests_per_connection from Cluster or HttpProtocolOptions can be specified"
                )
            max_requests = common.max_requests_per_connection.value
        if common.HasField("idle_timeout"):
            idle_timeout = _duration(common.idle_timeout)
            idle_timer = idle_timeout > 0
    if c.HasField("max_requests_per_connection"):
        max_requests = c.max_requests_per_connection.value
    settings = _http2_settings(h2) if h2 is not None else DEFAULT_SETTINGS
    base = PoolOptions(HTTP1, settings, max_requests, idle_timeout, idle_timer)
    if h2 is None:
        return base, None
    as_h2 = PoolOptions(HTTP2, settings, max_requests, idle_timeout, idle_timer)
    return (base, as_h2) if use_downstream else (as_h2, None)


class EndpointSpec:
    """One configured ``lb_endpoint``: a name or IP, a port, a weight and its metadata."""

    __slots__ = ("address", "port", "weight", "hostname", "metadata")

    def __init__(self, address: str, port: int, weight: int, hostname: str,
                 metadata: dict[str, dict[str, object]] | None = None) -> None:
        self.address = address
        self.port = port
        self.weight = weight
        self.hostname = hostname
        self.metadata = metadata
        """``filter_metadata`` as plain values (namespace → Struct), or None when unset."""


class Cluster:
    def __init__(
        self,
        c: Any,
        path: str,
        store: Store,
        rng: random.Random,
        runtime: Any = None,
        backend: NetworkBackend = DEFAULT_BACKEND,
        clock: TimeSource = REAL,
    ) -> None:
        self.name: str = c.name
        self.path = path
        self.backend = backend
        self.clock = clock
        self.pool_options, self.http2_downstream_options = protocol_options(c, path)
        """The pools' protocol options; with ``use_downstream_protocol_config`` (and HTTP/2
        options), those of the pools that serve requests that came in over HTTP/2."""
        self._http2_stats: Http2ClientStats | None = None
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
                clock.monotonic,
                clock.call_later,
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
                metadata = endpoint_metadata(e) if e.HasField("metadata") else None
                self.endpoints.append(EndpointSpec(address, sa.port_value, weight, e.endpoint.hostname, metadata))
        if self.type == LOGICAL_DNS and len(self.endpoints) != 1:
            raise ConfigError(f"{path}.load_assignment: LOGICAL_DNS clusters must have a single host")
        self.hosts: list[Host] = []
        self.pools: dict[str, HostPool] = {}
        self.http2_pools: dict[str, HostPool] = {}
        """``use_downstream_protocol_config``: the HTTP/2 pools of requests that came in over HTTP/2."""
        self._refresh: TimerHandle | None = None
        if self.type == STRICT_DNS:
            # Envoy sets it from each DNS resolution's hosts; STATIC and LOGICAL_DNS clusters
            # leave it at 0 (checked with Envoy 1.40).
            self.stats.max_host_weight.set(max((e.weight for e in self.endpoints), default=0))
        if self.type == STATIC:
            self._set_hosts([Host(e.address, e.port, e.hostname, e.weight, e.metadata) for e in self.endpoints])

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
                hosts.append(Host(a, e.port, e.hostname or e.address, e.weight, e.metadata))
        if not self._set_hosts(hosts):
            self.stats.update_no_rebuild.inc()
        return True

    def _schedule_refresh(self) -> None:
        self._refresh = self.clock.call_later(self.dns_refresh_rate, self._start_refresh)

    def _start_refresh(self) -> None:
        spawn(self._refresh_once(), name=f"dns:{self.name}")

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
        for pools in (self.pools, self.http2_pools):
            for addr, pool in list(pools.items()):
                if addr not in new_addrs:
                    # Envoy drains a removed host's connections: requests in flight finish.
                    pool.drain()
                    del pools[addr]
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
        for pool in [*self.pools.values(), *self.http2_pools.values()]:
            pool.close_all()

    # -- request path -------------------------------------------------------------------
    def choose_host(self) -> Host | None:
        return self.lb.choose(self.hosts)

    def _make_http2_stats(self) -> Http2ClientStats:
        if self._http2_stats is None:
            self._http2_stats = Http2ClientStats.declare(self.store, f"cluster.{self.name}.http2.")
        return self._http2_stats

    def pool_for(self, host: Host, downstream_protocol: str = HTTP1) -> HostPool:
        """The host's pool for a request that came in over ``downstream_protocol`` (it matters
        only with ``use_downstream_protocol_config``)."""
        if downstream_protocol == HTTP2 and self.http2_downstream_options is not None:
            pool = self.http2_pools.get(host.address)
            if pool is None:
                pool = self.http2_pools[host.address] = self._make_pool(host, self.http2_downstream_options)
            return pool
        pool = self.pools.get(host.address)
        if pool is None:
            pool = self.pools[host.address] = self._make_pool(host, self.pool_options)
        return pool

    def _make_pool(self, host: Host, options: PoolOptions) -> HostPool:
        pool = HostPool(
            host,
            self.stats,
            self.connect_timeout,
            self.name,
            self.resources,
            options,
            self.backend,
            self.clock,
            self._make_http2_stats if options.protocol == HTTP2 else None,
        )
        # Envoy checks the connection-pool resource of both priorities when it makes the
        # first pool (observed on 1.40: default's and high's cx_pool_open become used).
        st = self.stats
        st.circuit_breakers_default_cx_pool_open.used = True
        st.circuit_breakers_high_cx_pool_open.used = True
        return pool
