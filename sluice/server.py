"""The server: builds the runtime graph from a Bootstrap, starts listeners and admin, drains.

Order at start (as Envoy): runtime and stats → cluster manager (DNS clusters resolved once)
→ listeners → admin. Stop: listeners stop accepting, in-flight requests get up to the drain
time to finish, then everything closes and the process exits 0.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import functools
import logging
import os
import random
import signal
from typing import Any, TypedDict, cast

from google.protobuf.any_pb2 import Any as AnyMessage

from sluice import __version__
from sluice.access_log import AccessLogInstance
from sluice.access_log.config import build_access_logs
from sluice.access_log.file_sink import DEFAULT_FLUSH_INTERVAL, AccessLogFileManager
from sluice.clock import REAL, TimerHandle, TimeSource
from sluice.config.compat import unpack_any
from sluice.errors import ConfigError, UnsupportedError
from sluice.filters import registry as filter_registry
from sluice.filters.registry import FilterContext
from sluice.formatter.context import FormatContext
from sluice.http.conn_manager import (
    ConnectionManager,
    DownstreamConnection,
    HcmConfig,
    header_limits,
    http1_settings,
    http2_settings,
    internal_networks,
    make_connection,
    path_options,
)
from sluice.http.upgrade import upgrade_map
from sluice.network_util import listener_stat_name, local_address
from sluice.options import lab_options
from sluice.route.table import RouteTable
from sluice.runtime import Runtime
from sluice.stats.blocks import (
    ListenerConnections,
    ListenerManagerStats,
    ListenerStats,
    OverloadManagerStats,
    PerHandlerListenerStats,
    RuntimeStats,
    ServerStats,
    WatchdogStats,
    ZipkinTracerStats,
)
from sluice.stats.matcher import store_for
from sluice.stats.sinks import Sink
from sluice.stats.sinks.fanout import HistogramFanout
from sluice.stats.sinks.snapshot import take_snapshot
from sluice.stats.sinks.statsd import StatsdSinkConfig, TcpStatsdSink, UdpStatsdSink, parse_config
from sluice.tasks import sleep, spawn
from sluice.tracing.decision import Sampling, TracingConfig
from sluice.tracing.http_span import custom_tags
from sluice.tracing.request_id import UuidRequestId
from sluice.tracing.zipkin_driver import ZipkinDriver
from sluice.upstream.cluster_manager import ClusterManager
from sluice.upstream.resolver import local_alias
from sluice.version import version_int

log = logging.getLogger("sluice")
# Envoy's loggers for the start-up and shutdown lines (``[config]``, ``[upstream]``, ``[admin]``).
config_log = logging.getLogger("sluice.config")
upstream_log = logging.getLogger("sluice.upstream")
admin_log = logging.getLogger("sluice.admin")

HCM_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
STATSD_TYPE = "envoy.config.metrics.v3.StatsdSink"
NO_CERT_DAYS = 4294967295
"""``server.days_until_first_cert_expiring`` without any certificate, as Envoy 1.40 reports it."""
SINK_CLOSE_TIMEOUT_S = 1.0
"""How long shutdown waits for the final flush to leave a TCP sink (a dead target costs this)."""


def _type_name(any_msg: AnyMessage) -> str:
    return any_msg.type_url.rsplit("/", 1)[-1]


class Options:
    """Command-line options that reach the server (Envoy's ``Server::Options``)."""

    def __init__(
        self,
        service_cluster: str = "",
        service_node: str = "",
        drain_time_s: float = 600.0,
        concurrency: int = 1,
        admin_address_path: str | None = None,
        file_flush_interval_s: float = DEFAULT_FLUSH_INTERVAL,
        config_path: str = "",
        config_yaml: str = "",
        log_level: str = "info",
        base_id: int = 0,
        parent_shutdown_time_s: float = 900.0,
        mode: str = "serve",
    ) -> None:
        self.config_path = config_path
        self.config_yaml = config_yaml
        self.log_level = log_level
        self.base_id = base_id
        self.parent_shutdown_time_s = parent_shutdown_time_s
        self.mode = mode
        self.service_cluster = service_cluster
        self.service_node = service_node
        self.drain_time_s = drain_time_s
        self.concurrency = concurrency
        self.admin_address_path = admin_address_path
        self.file_flush_interval_s = file_flush_interval_s
        """``--file-flush-interval-msec``: how often access-log files are written."""


class Listener:
    def __init__(self, name: str, ip: str, port: int, hcm: HcmConfig, stats: ListenerStats,
                 access_logs: tuple[AccessLogInstance, ...] = ()) -> None:
        self.name = name
        self.ip = ip
        self.port = port
        self.hcm = hcm
        self.stats = stats
        self.access_logs = access_logs
        """The listener's own access logs: one line per connection when it closes (Envoy's)."""
        self.accounting = ListenerConnections(stats, PerHandlerListenerStats.declare(stats.store, f"{stats.prefix}worker_0."))
        """The listener's and its one worker's connection stats (Envoy's ``worker_0`` copy)."""
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[DownstreamConnection] = set()

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip


try:
    _MALLINFO2: Any = ctypes.CDLL(None).mallinfo2
    _MALLINFO2.restype = _MallInfo2
except (OSError, AttributeError):  # not glibc >= 2.33
    _MALLINFO2 = None


def malloc_heap() -> tuple[int, int] | None:
    """(bytes allocated, heap size) from glibc's ``mallinfo2`` - what ``server.memory_allocated``
    and ``server.memory_heap_size`` report (tcmalloc's current allocated bytes and heap size in
    Envoy); None where there is no ``mallinfo2``."""
    if _MALLINFO2 is None:
        return None
    m = _MALLINFO2()
    return int(m.uordblks + m.hblkhd), int(m.arena + m.hblkhd)


def _seconds(d: Any) -> float:
    return float(d.seconds + d.nanos / 1e9)


class _HcmTimeouts(TypedDict):
    """:func:`_hcm_timeouts`, as :class:`HcmConfig` keywords."""

    request_timeout: float
    request_headers_timeout: float
    max_stream_duration: float
    idle_timeout: float
    drain_timeout: float
    delayed_close_timeout: float


def _codec_type(msg: Any, path: str) -> str:
    """The HCM's ``codec_type`` (AUTO, HTTP1, HTTP2); HTTP3 needs QUIC, which Sluice lacks."""
    name = ("AUTO", "HTTP1", "HTTP2", "HTTP3")[msg.codec_type]
    if name == "HTTP3":
        raise UnsupportedError(f"{path}.codec_type: HTTP3 is not implemented (Sluice has no QUIC listener)")
    return name


def _hcm_timeouts(msg: Any) -> _HcmTimeouts:
    """The HCM's request/connection timeouts with Envoy's defaults (idle 1 h, drain 5 s,
    delayed close 1 s)."""
    opts = msg.common_http_protocol_options
    has_opts = msg.HasField("common_http_protocol_options")
    return {
        "request_timeout": _seconds(msg.request_timeout),
        "request_headers_timeout": _seconds(msg.request_headers_timeout),
        "max_stream_duration": _seconds(opts.max_stream_duration) if has_opts else 0.0,
        "idle_timeout": _seconds(opts.idle_timeout) if has_opts and opts.HasField("idle_timeout") else 3600.0,
        "drain_timeout": _seconds(msg.drain_timeout) if msg.HasField("drain_timeout") else 5.0,
        "delayed_close_timeout": _seconds(msg.delayed_close_timeout) if msg.HasField("delayed_close_timeout") else 1.0,
    }


class Server:
    def __init__(self, bootstrap: Any, options: Options | None = None, clock: TimeSource = REAL) -> None:
        self.bootstrap = bootstrap
        self.options = options or Options()
        self.clock = clock
        """Time and timers for the server's own work (uptime, flush timer, drain, the admin
        server's connections); a test injects a ``SimTime``."""
        log.info("initializing epoch 0 (base id=%d, hot restart version=disabled)", self.options.base_id)
        self.store = store_for(bootstrap)  # stats_config.stats_matcher: rejected stats are null
        self.rng = random.Random()
        self.start_time = clock.wall()
        self.draining = False
        self.state = "PRE_INITIALIZING"
        self.local_ip = local_address()
        self.server_stats = ServerStats.declare(self.store, "server.")
        # The guard dogs' own counters (no watchdog: they stay 0), as Envoy makes them at start.
        self.watchdog_stats = (WatchdogStats.declare(self.store, "main_thread."), WatchdogStats.declare(self.store, "workers."))
        self.server_stats.concurrency.set(self.options.concurrency)
        self.server_stats.live.set(1)
        self.server_stats.hot_restart_generation.set(1)
        # Set once at start by Envoy 1.40 (so flushed as used): no hot restart epoch, no FIPS.
        self.server_stats.hot_restart_epoch.set(0)
        self.server_stats.compilation_settings_fips_mode.set(0)
        override = bootstrap.stats_server_version_override.value if bootstrap.HasField("stats_server_version_override") else None
        self.server_stats.version.set(version_int(override))
        service_cluster = self.options.service_cluster or bootstrap.node.cluster
        self.service_cluster = service_cluster
        """The local cluster name (``--service-cluster`` or ``node.cluster``)."""
        self.service_node = self.options.service_node or bootstrap.node.id
        """The node name (``--service-node`` or ``node.id``)."""
        self.runtime = Runtime.from_config(
            bootstrap.layered_runtime if bootstrap.HasField("layered_runtime") else None,
            service_cluster,
        )
        self.runtime_stats = RuntimeStats.declare(self.store, "runtime.")
        self.overload_stats = OverloadManagerStats.declare(self.store, "")
        # Envoy 1.40 loads two snapshots before it serves (observed: load_success 2): one when
        # the loader is created (LoaderImpl::initLayers), one more during server start-up.
        self.runtime_loaded()
        self.runtime_loaded()
        config_log.info("loading %d cluster(s)", len(bootstrap.static_resources.clusters))
        self.cluster_manager = ClusterManager(bootstrap.static_resources.clusters, self.store, self.rng, self.runtime)
        self.listener_manager_stats = ListenerManagerStats.declare(self.store, "listener_manager.")
        if bootstrap.stats_flush_on_admin and bootstrap.HasField("stats_flush_interval"):
            raise ConfigError("Only one of stats_flush_interval or stats_flush_on_admin should be set!")
        interval = bootstrap.stats_flush_interval
        self.stats_flush_interval_s = _seconds(interval) if bootstrap.HasField("stats_flush_interval") else 5.0
        """``stats_flush_interval`` (Envoy's default 5 s); unused with ``stats_flush_on_admin``."""
        self.sinks: list[Sink] = self._build_sinks()
        self._histogram_fanout = HistogramFanout(self.sinks, clock)
        if self.sinks:
            self._histogram_fanout.attach(self.store)
        self.access_log_files = AccessLogFileManager(self.store, self.options.file_flush_interval_s)
        """Every access-log file, one per path, shared by the loggers that name it."""
        self.tracers: dict[bytes, ZipkinDriver] = {}
        """The Zipkin drivers, one per distinct provider config (Envoy's tracer manager)."""
        self.zipkin_stats: ZipkinTracerStats | None = None
        self.listeners: list[Listener] = []
        config_log.info("loading %d listener(s)", len(bootstrap.static_resources.listeners))
        self._build_listeners()
        self.admin: Any = None
        self._stopped: asyncio.Event | None = None  # created in start(), inside the loop
        self._stream_observers: list[Any] = []
        self._flush_handle: TimerHandle | None = None
        self._built_at = clock.monotonic()

    # -- construction -------------------------------------------------------------------
    def _build_sinks(self) -> list[Sink]:
        """``stats_sinks``: StatsD only (the config walk reports every other sink as unsupported)."""
        sinks: list[Sink] = []
        for i, entry in enumerate(self.bootstrap.stats_sinks):
            path = f"stats_sinks[{i}].typed_config"
            if not entry.HasField("typed_config") or _type_name(entry.typed_config) != STATSD_TYPE:
                raise UnsupportedError(f"stats_sinks[{i}]: stats sink '{entry.name}' is not implemented yet")
            config = parse_config(unpack_any(entry.typed_config))
            sinks.append(self._statsd_sink(config, path))
        return sinks

    def _statsd_sink(self, config: StatsdSinkConfig, path: str) -> Sink:
        if config.address is not None:
            ip, port = config.address
            return UdpStatsdSink(config.prefix, (local_alias(ip), port))
        if not self.service_node or not self.service_cluster:
            raise ConfigError(
                f"{path}: tcp statsd: node 'id' and 'cluster' are required. Set it either in 'node' config "
                "or via --service-node and --service-cluster options."
            )
        cluster = self.cluster_manager.get(config.tcp_cluster_name)
        if cluster is None:
            raise ConfigError(f"{path}: tcp statsd: unknown cluster '{config.tcp_cluster_name}'")

        def choose_host() -> tuple[str, int] | None:
            host = cluster.choose_host()
            return None if host is None else (host.ip, host.port)

        return TcpStatsdSink(
            config.prefix,
            choose_host,
            cluster.connect_timeout,
            cluster.stats.upstream_cx_tx_bytes_total,
            self.store.counter("statsd.cx_overflow"),
            clock=self.clock,
        )

    def _build_listeners(self) -> None:
        seen_names: set[str] = set()
        seen_addrs: set[tuple[str, int]] = set()
        for i, lc in enumerate(self.bootstrap.static_resources.listeners):
            path = f"static_resources.listeners[{i}]"
            name = lc.name or f"listener_{i}"
            if name in seen_names:
                raise ConfigError(f"{path}.name: duplicate listener name '{name}'")
            seen_names.add(name)
            sa = lc.address.socket_address
            if not lc.address.HasField("socket_address"):
                raise ConfigError(f"{path}.address: a socket_address is required")
            ip = self._bind_ip(sa.address)
            port = sa.port_value
            if port and (ip, port) in seen_addrs:
                raise ConfigError(f"{path}.address: duplicate listener address {ip}:{port}")
            seen_addrs.add((ip, port))
            if len(lc.filter_chains) != 1:
                raise UnsupportedError(
                    f"{path}.filter_chains: exactly one filter chain is implemented, got {len(lc.filter_chains)}"
                )
            fc = lc.filter_chains[0]
            if len(fc.filters) != 1:
                raise UnsupportedError(f"{path}.filter_chains[0].filters: only a single http_connection_manager is implemented")
            f = fc.filters[0]
            fpath = f"{path}.filter_chains[0].filters[0]"
            if f.HasField("typed_config") and _type_name(f.typed_config) != HCM_TYPE:
                raise UnsupportedError(f"{fpath}: network filter '{f.name}' is not implemented")
            if not f.HasField("typed_config"):
                raise ConfigError(f"{fpath}.typed_config: http_connection_manager needs a typed_config")
            # xds-protos ships no stubs or py.typed marker (import-untyped): the message is Any to mypy.
            from envoy.extensions.filters.network.http_connection_manager.v3 import (
                http_connection_manager_pb2 as hcm_pb2,
            )

            hcm_msg = hcm_pb2.HttpConnectionManager()
            f.typed_config.Unpack(hcm_msg)
            lstats = ListenerStats.declare(self.store, listener_stat_name(ip, port))
            hcm = self._build_hcm(hcm_msg, f"{fpath}.typed_config", listener_stat_name(ip, port))
            # (traffic_direction OUTBOUND makes the HCM's spans egress: see TracingConfig)
            if hcm.tracing is not None:
                hcm.tracing.egress = lc.traffic_direction == 2
            access_logs = build_access_logs(
                lc.access_log, f"{path}.access_log", files=self.access_log_files, runtime=self.runtime, rng=self.rng
            )
            self.listeners.append(Listener(name, ip, port, hcm, lstats, access_logs))
            self.listener_manager_stats.listener_added.inc()

    @staticmethod
    def _bind_ip(address: str) -> str:
        # The lab runner gives each service its own loopback address; a config that listens on
        # all interfaces then listens on that one address only, as a container would.
        override = lab_options().bind_address
        if override and address in ("0.0.0.0", "::", ""):
            return override
        return local_alias(address) or "0.0.0.0"

    def _build_hcm(self, msg: Any, path: str, listener_prefix: str) -> HcmConfig:
        if msg.WhichOneof("route_specifier") != "route_config":
            raise UnsupportedError(f"{path}: only a static route_config is implemented (not rds/scoped_routes)")
        route_table = RouteTable(msg.route_config, f"{path}.route_config", self.runtime)
        for rpath, cluster in route_table.clusters_referenced():
            if self.cluster_manager.get(cluster) is None:
                raise ConfigError(f"{path}.route_config.{rpath}: route: unknown cluster '{cluster}'")
        hcm = HcmConfig(
            stat_prefix=msg.stat_prefix,
            store=self.store,
            route_table=route_table,
            filter_factories=[],
            server_name=msg.server_name or "envoy",
            # add_user_agent: Envoy's user agent is the local cluster name (HCM config.cc).
            user_agent=self.service_cluster if msg.add_user_agent.value else None,
            service_node=self.service_node,
            generate_request_id=msg.generate_request_id.value if msg.HasField("generate_request_id") else True,
            preserve_external_request_id=msg.preserve_external_request_id,
            use_remote_address=msg.use_remote_address.value if msg.HasField("use_remote_address") else False,
            xff_num_trusted_hops=msg.xff_num_trusted_hops,
            skip_xff_append=msg.skip_xff_append,
            listener_stats_prefix=listener_prefix,
            rng=self.rng,
            server=self,
            local_address_ip=self.local_ip,
            stream_idle_timeout=(
                msg.stream_idle_timeout.seconds + msg.stream_idle_timeout.nanos / 1e9
                if msg.HasField("stream_idle_timeout")
                else 300.0
            ),
            **_hcm_timeouts(msg),
            # header_limits gives dict[str, int], which mypy checks against every keyword's type.
            **cast(dict[str, Any], header_limits(msg)),
            http1_settings=http1_settings(msg),
            **path_options(msg),
            upgrade_configs=upgrade_map(msg.upgrade_configs),
            codec_type=_codec_type(msg, path),
            http2_settings=http2_settings(msg),
            clock=self.clock,
            access_logs=build_access_logs(
                msg.access_log, f"{path}.access_log", files=self.access_log_files, runtime=self.runtime, rng=self.rng
            ),
            access_log_flush_interval=(
                msg.access_log_options.access_log_flush_interval.seconds
                + msg.access_log_options.access_log_flush_interval.nanos / 1e9
            ),
            access_log_on_new_request=msg.access_log_options.flush_access_log_on_new_request,
            access_log_on_tunnel=msg.access_log_options.flush_log_on_tunnel_successfully_established,
        )
        hcm.internal_networks = internal_networks(msg)
        request_id = UuidRequestId.from_proto(msg, path)
        if msg.HasField("tracing"):
            hcm.tracing = TracingConfig(Sampling.from_hcm(msg.tracing), request_id)
            hcm.runtime = self.runtime
            self._tracing_provider(msg.tracing, hcm.tracing, f"{path}.tracing")
        hcm.always_set_request_id = msg.always_set_request_id_in_response
        ctx = FilterContext(
            store=self.store,
            runtime=self.runtime,
            cluster_manager=self.cluster_manager,
            route_table=route_table,
            stat_prefix=msg.stat_prefix,
            local_ip=self.local_ip,
            rng=self.rng,
        )
        factories = []
        last_terminal = False
        for j, hf in enumerate(msg.http_filters):
            fpath = f"{path}.http_filters[{j}]"
            type_url = hf.typed_config.type_url if hf.HasField("typed_config") else ""
            entry = filter_registry.lookup(type_url, hf.name)
            if entry is None:
                raise UnsupportedError(f"{fpath}: HTTP filter '{hf.name or type_url}' is not implemented yet")
            if entry.terminal and j != len(msg.http_filters) - 1:
                raise ConfigError(f"{fpath}: the terminal filter '{hf.name}' must be the last HTTP filter")
            config = None
            if type_url:
                config = unpack_any(hf.typed_config)
            factories.append(entry.factory(config, f"{fpath}.typed_config", dataclasses.replace(ctx, filter_name=hf.name)))
            last_terminal = entry.terminal
        if not last_terminal:
            raise ConfigError(f"{path}.http_filters: the last HTTP filter must be a terminal filter (the router)")
        hcm.filter_factories = factories
        return hcm

    # -- lifecycle ----------------------------------------------------------------------
    def _tracing_provider(self, t: Any, tracing: TracingConfig, path: str) -> None:
        """An HCM's span settings and its provider's driver, shared by equal provider configs."""
        if t.HasField("max_path_tag_length"):
            tracing.max_path_tag_length = t.max_path_tag_length.value
        tracing.custom_tags = custom_tags(t.custom_tags, f"{path}.custom_tags")
        if not t.HasField("provider"):
            return  # (Envoy's null tracer: the decision only)
        tracing.verbose = t.verbose
        tracing.spawn_upstream = t.spawn_upstream_span.value
        if not t.provider.typed_config.type_url.endswith("/envoy.config.trace.v3.ZipkinConfig"):
            raise UnsupportedError(f"{path}.provider: tracer '{t.provider.name}' is not implemented yet")
        key = t.provider.SerializeToString(deterministic=True)
        driver = self.tracers.get(key)
        if driver is None:
            if self.zipkin_stats is None:
                self.zipkin_stats = ZipkinTracerStats.declare(self.store, "tracing.zipkin.")
            driver = ZipkinDriver.from_proto(
                unpack_any(t.provider.typed_config), f"{path}.provider.typed_config",
                get_cluster=self.cluster_manager.get, runtime=self.runtime, stats=self.zipkin_stats, rng=self.rng,
                clock=self.clock, node_id=self.service_node, service_cluster=self.service_cluster, local_ip=self.local_ip,
            )  # fmt: skip
            self.tracers[key] = driver
        tracing.driver = driver

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.state = "INITIALIZING"
        if not self.bootstrap.stats_flush_on_admin:
            # As Envoy: the flush timer is armed at start, before the clusters initialize.
            self._flush_handle = self.clock.call_later(self.stats_flush_interval_s, self._flush_timer)
        for driver in self.tracers.values():
            driver.reporter.start(self.clock.call_later)
        await self.cluster_manager.initialize()
        upstream_log.info("cm init: all clusters initialized")
        log.info("all clusters initialized. initializing init manager")
        for lst in self.listeners:
            lst.hcm.bind_loop(loop)
            lst.server = await loop.create_server(
                functools.partial(self._connection, lst), lst.ip, lst.port, reuse_address=True, backlog=1024
            )
            sock = lst.server.sockets[0]
            lst.port = sock.getsockname()[1]
            self.listener_manager_stats.listener_create_success.inc()
            # (Envoy says this at debug; at info a user sees where each listener is.)
            config_log.info("add active listener: name=%s, address=%s", lst.name, lst.address)
        self.listener_manager_stats.total_listeners_active.set(len(self.listeners))
        self.listener_manager_stats.workers_started.set(1)
        if self.bootstrap.HasField("admin") and self.bootstrap.admin.HasField("address"):
            from sluice.admin.server import AdminServer

            self.admin = AdminServer(self, self.bootstrap.admin)
            await self.admin.start()
            log.info("Starting admin HTTP server at %s", self.admin.address)
            admin_log.info("admin address: %s", self.admin.address)
            if self.options.admin_address_path:
                with open(self.options.admin_address_path, "w", encoding="utf-8") as f:
                    f.write(self.admin.address)
        self.state = "LIVE"
        self.server_stats.initialization_time_ms.record((self.clock.monotonic() - self._built_at) * 1000)
        self._update_server_stats()
        config_log.info("all dependencies initialized. starting workers")
        log.info("starting main dispatch loop (sluice %s)", __version__)

    def runtime_loaded(self) -> None:
        """A new runtime snapshot, as Envoy's ``loadNewSnapshot`` counts it (at start, and at
        each ``/runtime_modify``)."""
        stats = self.runtime_stats
        layers = self.runtime.layers
        stats.num_layers.set(len(layers))
        entries = self.runtime.snapshot_json()["entries"]
        stats.num_keys.set(len(entries) if isinstance(entries, dict) else 0)
        stats.load_success.inc()
        # As Envoy's createNewSnapshot: "exists" only with more than one disk layer loaded.
        if sum(1 for layer in layers if layer.kind == "disk") > 1:
            stats.override_dir_exists.inc()
        else:
            stats.override_dir_not_exists.inc()

    _STATES = {"LIVE": 0, "DRAINING": 1, "PRE_INITIALIZING": 2, "INITIALIZING": 3}

    def _update_server_stats(self) -> None:
        """The ``server.*`` gauges Envoy refreshes at each stats flush (``updateServerStats``)."""
        st = self.server_stats
        st.uptime.set(self.uptime())
        st.state.set(self._STATES.get("DRAINING" if self.draining else self.state, 0))
        st.total_connections.set(sum(len(lst.connections) for lst in self.listeners))
        st.parent_connections.set(0)  # no hot restart, no parent
        st.days_until_first_cert_expiring.set(NO_CERT_DAYS)
        try:
            with open("/proc/self/statm", encoding="ascii") as f:
                rss_pages = int(f.read().split()[1])
            st.memory_physical_size.set(rss_pages * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, IndexError):
            pass
        heap = malloc_heap()
        if heap is not None:
            # Divergence from Envoy: glibc malloc's figures stand for tcmalloc's.
            st.memory_allocated.set(heap[0])
            st.memory_heap_size.set(heap[1])

    def flush_stats(self) -> None:
        """Envoy's ``flushStats``: server gauges, then each histogram's new samples become its
        interval (``/stats`` shows them), then counter deltas and gauges go to every sink.
        Without sinks there is nothing to latch for, so the snapshot is skipped."""
        self._update_server_stats()
        if self.state in ("LIVE", "DRAINING"):  # as Envoy: no merge before initialization completes
            for h in self.store.histograms.values():
                h.merge()
        if self.sinks:
            self._histogram_fanout.drain()  # samples recorded before the flush go first
            snapshot = take_snapshot(self.store)
            for sink in self.sinks:
                sink.flush(snapshot)

    def _flush_timer(self) -> None:
        self.flush_stats()
        # Re-armed after the flush, as Envoy's timer (intervals are the interval plus the flush).
        if self._stopped is not None and not self._stopped.is_set() and self._flush_handle is not None:
            self._flush_handle = self.clock.call_later(self.stats_flush_interval_s, self._flush_timer)

    def _connection(self, lst: Listener) -> DownstreamConnection:
        accounting = lst.accounting
        accounting.opened()
        monotonic = self.clock.monotonic
        opened = monotonic()

        def closed(conn: DownstreamConnection) -> None:
            lst.connections.discard(conn)
            accounting.closed((monotonic() - opened) * 1000)
            if lst.access_logs:
                ctx = FormatContext(cast("ConnectionManager", conn.handler).connection_info())
                for logger in lst.access_logs:
                    logger.log(ctx)

        conn = make_connection(lst.hcm, closed)
        lst.connections.add(conn)
        return conn

    def on_stream_complete(self, stream: Any) -> None:
        for obs in self._stream_observers:
            obs(stream)

    async def wait_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()

    def request_stop(self, signum: int | None = None) -> None:
        """``/quitquitquit``, SIGTERM, SIGINT: drain and stop (idempotent). A signal handler that
        passes its signal number gets Envoy's ``caught ENVOY_SIGTERM`` / ``caught SIGINT`` line."""
        if self._stopped is None or self._stopped.is_set() or self.state == "DRAINING":
            return
        if signum is not None:
            log.warning("caught %s", "ENVOY_SIGTERM" if signum == signal.SIGTERM else signal.Signals(signum).name)
        log.info("shutting down server instance")
        spawn(self.stop(), name="server:stop")

    async def stop(self) -> None:
        if self._stopped is None or self._stopped.is_set():
            return
        self.state = "DRAINING"
        self.draining = True
        for lst in self.listeners:
            if lst.server is not None:
                lst.server.close()
        for lst in self.listeners:
            for c in lst.connections:
                # (HTTP/2 connections say GOAWAY; HTTP/1 responses carry connection: close.)
                cast(ConnectionManager, c.handler).drain()
        busy = [c for lst in self.listeners for c in lst.connections if cast(ConnectionManager, c.handler).busy]
        # Divergence from Envoy: Envoy exits on SIGTERM at once; Sluice lets requests finish.
        log.info("draining listeners: %d request(s) in flight, waiting up to %gs", len(busy), self.options.drain_time_s)
        clock = self.clock
        deadline = clock.monotonic() + self.options.drain_time_s
        while busy and clock.monotonic() < deadline:
            await sleep(clock, 0.05)
            busy = [c for lst in self.listeners for c in lst.connections if cast(ConnectionManager, c.handler).busy]
        if busy:
            log.warning("drain time over: closing %d connection(s) with a request in flight", len(busy))
        for lst in self.listeners:
            for c in list(lst.connections):
                c.close()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        # Divergence from Envoy (which exits with its span buffer): buffered spans go out, and
        # the collector gets up to 1 s to take them. (One loop turn first: the connections just
        # closed end their streams, and so their spans, from connection_lost.)
        await asyncio.sleep(0)
        for driver in self.tracers.values():
            driver.reporter.stop_timer()
            driver.reporter.flush()
        deadline = clock.monotonic() + 1.0
        while any(d.reporter.in_flight for d in self.tracers.values()) and clock.monotonic() < deadline:
            await sleep(clock, 0.02)
        for driver in self.tracers.values():
            driver.reporter.stop()
        self.cluster_manager.stop()
        if self.admin is not None:
            await self.admin.stop()
        # As Envoy: one last flush at shutdown, so the sinks see the final deltas; last, so that
        # the samples of closing connections go out before it. A closed sink drops what follows.
        self.flush_stats()
        self._histogram_fanout.sinks = ()  # what is recorded from here on is dropped
        for sink in self.sinks:
            await sink.close(SINK_CLOSE_TIMEOUT_S)
        # As Envoy: what the access logs hold is written at shutdown (in a thread: a slow
        # disk must not hold the loop).
        await asyncio.get_running_loop().run_in_executor(None, self.access_log_files.close)
        log.info("main dispatch loop exited")
        log.info("exiting")
        self._stopped.set()

    def reopen_access_logs(self) -> None:
        """SIGUSR1 and admin ``/reopen_logs``: every access-log file is reopened before its
        next write (log rotation)."""
        self.access_log_files.reopen()

    def uptime(self) -> int:
        return int(self.clock.wall() - self.start_time)
