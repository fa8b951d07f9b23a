"""Envoy's stat blocks, one class per subsystem, names and kinds exactly as Envoy 1.40 has them.

Each class is the Python twin of an Envoy ``ALL_*_STATS`` macro: one annotated field per stat
(``Counter``, ``Gauge`` or ``Histogram``), so mypy checks every handle the hot path bumps. Envoy
creates every stat of a block when the subsystem is created, so ``/stats`` lists them (zeros
included) from the start; ``declare`` does the same at config time. ``TAGS`` are the tags Envoy's
default extractors take from the block's prefix.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, ClassVar

from sluice.stats.store import Counter, Gauge, Histogram, StatsBlock, block

CodeStats = tuple[tuple[Counter, ...], tuple[Counter, ...]]


@block
class ClusterStats(StatsBlock):
    """``cluster.<name>.*`` (ALL_CLUSTER_STATS, circuit breakers, http1 codec, LB)."""

    TAGS: ClassVar[tuple[str, ...]] = ("envoy.cluster_name",)
    # Set when the cluster is built (Envoy 1.40). The circuit breakers' open gauges become used as
    # their resources are first taken (upstream/circuit_breaker.py, cluster.py's pool_for).
    USED_AT_CREATION: ClassVar[frozenset[str]] = frozenset({"membership_degraded", "membership_excluded", "warming_state"})

    # counters
    assignment_stale: Counter
    assignment_timeout_received: Counter
    assignment_use_cached: Counter
    bind_errors: Counter
    default_total_match_count: Annotated[Counter, "default.total_match_count"]
    http1_dropped_headers_with_underscores: Annotated[Counter, "http1.dropped_headers_with_underscores"]
    http1_metadata_not_supported_error: Annotated[Counter, "http1.metadata_not_supported_error"]
    http1_requests_rejected_with_underscores_in_headers: Annotated[Counter, "http1.requests_rejected_with_underscores_in_headers"]
    http1_response_flood: Annotated[Counter, "http1.response_flood"]
    lb_healthy_panic: Counter
    lb_local_cluster_not_ok: Counter
    lb_recalculate_zone_structures: Counter
    lb_subsets_created: Counter
    lb_subsets_fallback: Counter
    lb_subsets_fallback_panic: Counter
    lb_subsets_removed: Counter
    lb_subsets_selected: Counter
    lb_zone_cluster_too_small: Counter
    lb_zone_no_capacity_left: Counter
    lb_zone_routing_all_directly: Counter
    lb_zone_routing_cross_zone: Counter
    lb_zone_routing_sampled: Counter
    membership_change: Counter
    original_dst_host_invalid: Counter
    retry_or_shadow_abandoned: Counter
    update_attempt: Counter
    update_empty: Counter
    update_failure: Counter
    update_no_rebuild: Counter
    update_success: Counter
    upstream_cx_close_notify: Counter
    upstream_cx_connect_attempts_exceeded: Counter
    upstream_cx_connect_fail: Counter
    upstream_cx_connect_timeout: Counter
    upstream_cx_connect_with_0_rtt: Counter
    upstream_cx_destroy: Counter
    upstream_cx_destroy_local: Counter
    upstream_cx_destroy_local_with_active_rq: Counter
    upstream_cx_destroy_remote: Counter
    upstream_cx_destroy_remote_with_active_rq: Counter
    upstream_cx_destroy_with_active_rq: Counter
    upstream_cx_http1_total: Counter
    upstream_cx_http2_total: Counter
    upstream_cx_http3_total: Counter
    upstream_cx_idle_timeout: Counter
    upstream_cx_max_duration_reached: Counter
    upstream_cx_max_requests: Counter
    upstream_cx_none_healthy: Counter
    upstream_cx_overflow: Counter
    upstream_cx_pool_overflow: Counter
    upstream_cx_preconnect_skipped: Counter
    upstream_cx_protocol_error: Counter
    upstream_cx_rx_bytes_total: Counter
    upstream_cx_total: Counter
    upstream_cx_tx_bytes_total: Counter
    upstream_flow_control_backed_up_total: Counter
    upstream_flow_control_drained_total: Counter
    upstream_flow_control_paused_reading_total: Counter
    upstream_flow_control_resumed_reading_total: Counter
    upstream_http3_broken: Counter
    upstream_internal_redirect_failed_total: Counter
    upstream_internal_redirect_succeeded_total: Counter
    upstream_rq_0rtt: Counter
    upstream_rq_active_overflow: Counter
    upstream_rq_cancelled: Counter
    upstream_rq_maintenance_mode: Counter
    upstream_rq_max_duration_reached: Counter
    upstream_rq_pending_failure_eject: Counter
    upstream_rq_pending_overflow: Counter
    upstream_rq_pending_total: Counter
    upstream_rq_per_try_idle_timeout: Counter
    upstream_rq_per_try_timeout: Counter
    upstream_rq_retry: Counter
    upstream_rq_retry_backoff_exponential: Counter
    upstream_rq_retry_backoff_ratelimited: Counter
    upstream_rq_retry_limit_exceeded: Counter
    upstream_rq_retry_overflow: Counter
    upstream_rq_retry_success: Counter
    upstream_rq_rx_reset: Counter
    upstream_rq_rx_reset_no_error: Counter
    upstream_rq_timeout: Counter
    upstream_rq_total: Counter
    upstream_rq_tx_reset: Counter
    # gauges
    circuit_breakers_default_cx_open: Annotated[Gauge, "circuit_breakers.default.cx_open"]
    circuit_breakers_default_cx_pool_open: Annotated[Gauge, "circuit_breakers.default.cx_pool_open"]
    circuit_breakers_default_rq_open: Annotated[Gauge, "circuit_breakers.default.rq_open"]
    circuit_breakers_default_rq_pending_open: Annotated[Gauge, "circuit_breakers.default.rq_pending_open"]
    circuit_breakers_default_rq_retry_open: Annotated[Gauge, "circuit_breakers.default.rq_retry_open"]
    circuit_breakers_high_cx_open: Annotated[Gauge, "circuit_breakers.high.cx_open"]
    circuit_breakers_high_cx_pool_open: Annotated[Gauge, "circuit_breakers.high.cx_pool_open"]
    circuit_breakers_high_rq_open: Annotated[Gauge, "circuit_breakers.high.rq_open"]
    circuit_breakers_high_rq_pending_open: Annotated[Gauge, "circuit_breakers.high.rq_pending_open"]
    circuit_breakers_high_rq_retry_open: Annotated[Gauge, "circuit_breakers.high.rq_retry_open"]
    lb_subsets_active: Gauge
    max_host_weight: Gauge
    membership_degraded: Gauge
    membership_excluded: Gauge
    membership_healthy: Gauge
    membership_total: Gauge
    upstream_cx_active: Gauge
    upstream_cx_rx_bytes_buffered: Gauge
    upstream_cx_tx_bytes_buffered: Gauge
    upstream_queue_overloaded: Gauge
    upstream_rq_active: Gauge
    upstream_rq_pending_active: Gauge
    version: Gauge
    warming_state: Gauge
    # histograms
    upstream_cx_connect_ms: Histogram
    upstream_cx_length_ms: Histogram
    upstream_rq_per_cx: Histogram
    _code_cache: dict[int, CodeStats] = field(init=False, default_factory=dict)
    _retry_cache: dict[int, tuple[Counter, ...]] = field(init=False, default_factory=dict)
    upstream_rq_time: Histogram | None = field(init=False, default=None)
    """Made with the first completed response (Envoy's CodeStats makes it then): read it, and
    call :meth:`rq_time` when it is None."""
    _external_time: Histogram | None = field(init=False, default=None)
    _code_scopes: dict[str, PrefixCodeStats] = field(init=False, default_factory=dict)

    def circuit_breaker_gauges(self, priority: str) -> dict[str, Gauge]:
        """``circuit_breakers.<priority>.*`` by short name (``cx_open``), for one ResourceManager."""
        if priority == "high":
            return {"cx_open": self.circuit_breakers_high_cx_open, "cx_pool_open": self.circuit_breakers_high_cx_pool_open,
                    "rq_open": self.circuit_breakers_high_rq_open, "rq_pending_open": self.circuit_breakers_high_rq_pending_open,
                    "rq_retry_open": self.circuit_breakers_high_rq_retry_open}  # fmt: skip
        return {"cx_open": self.circuit_breakers_default_cx_open, "cx_pool_open": self.circuit_breakers_default_cx_pool_open,
                "rq_open": self.circuit_breakers_default_rq_open, "rq_pending_open": self.circuit_breakers_default_rq_pending_open,
                "rq_retry_open": self.circuit_breakers_default_rq_retry_open}  # fmt: skip

    def response_code_stats(self, code: int) -> CodeStats:
        """The counters one response charges — ``upstream_rq_<code>``, ``upstream_rq_<N>xx``,
        ``upstream_rq_completed`` and their ``external.`` twins — created on first use, as
        Envoy does, then served from a per-code cache."""
        cached = self._code_cache.get(code)
        if cached is None:
            names = _code_names(code)
            cached = (
                tuple(self.dynamic_counter(n) for n in names),
                tuple(self.dynamic_counter(f"external.{n}") for n in names),
            )
            self._code_cache[code] = cached
        return cached

    def retry_code_stats(self, code: int) -> tuple[Counter, ...]:
        """``retry.upstream_rq_<code>``, ``retry.upstream_rq_<N>xx`` and
        ``retry.upstream_rq_completed``: what a retried response charges (chargeBasicResponseStat)."""
        cached = self._retry_cache.get(code)
        if cached is None:
            cached = self._retry_cache[code] = tuple(self.dynamic_counter(f"retry.{n}") for n in _code_names(code))
        return cached

    def rq_time(self) -> Histogram:
        """``upstream_rq_time``, created with the first completed response."""
        h = self.upstream_rq_time
        if h is None:
            h = self.upstream_rq_time = self._store.histogram(f"{self._prefix}upstream_rq_time")
        return h

    def external_rq_time(self) -> Histogram:
        """``external.upstream_rq_time``, created with the first external response (as Envoy)."""
        h = self._external_time
        if h is None:
            h = self._external_time = self._store.histogram(f"{self._prefix}external.upstream_rq_time")
        return h

    def code_scope(self, prefix: str) -> PrefixCodeStats:
        """The response-code and timing stats under ``prefix`` of this cluster's scope: ``""``
        for its own ``internal.`` stats, ``"<alt>."`` for an ``x-envoy-upstream-alt-stat-name``
        tree. Made once per prefix (as many prefixes as the trusted callers send, like Envoy)."""
        scope = self._code_scopes.get(prefix)
        if scope is None:
            scope = self._code_scopes[prefix] = PrefixCodeStats(self, prefix)
        return scope


class PrefixCodeStats:
    """Envoy's ``CodeStatsImpl`` under one prefix of a cluster's scope: the counters
    ``chargeResponseStat`` charges (``<prefix>[<category>.]upstream_rq_<code>``, ``_<N>xx``,
    ``_completed``; a code outside 100-599 is ``upstream_rq_unknown`` without a class) and the
    histograms of ``chargeResponseTiming`` (``<prefix>[<category>.]upstream_rq_time``). Each stat
    is made on first use, as Envoy makes them, then served from a cache."""

    __slots__ = ("_block", "_prefix", "_counters", "_times")

    def __init__(self, owner: StatsBlock, prefix: str) -> None:
        self._block = owner
        self._prefix = prefix
        self._counters: dict[tuple[int, str], tuple[Counter, ...]] = {}
        self._times: dict[str, Histogram] = {}

    def counters(self, code: int, category: str) -> tuple[Counter, ...]:
        """``category``: ``""`` (the prefix's own), ``"internal."`` or ``"external."``; ``code``
        0 for a code outside 100-599."""
        key = (code, category)
        found = self._counters.get(key)
        if found is None:
            base = self._prefix + category
            names = _code_names(code) if code else ("upstream_rq_unknown", "upstream_rq_completed")
            found = self._counters[key] = tuple(self._block.dynamic_counter(base + n) for n in names)
        return found

    def rq_time(self, category: str) -> Histogram:
        found = self._times.get(category)
        if found is None:
            b = self._block
            found = self._times[category] = b.store.histogram(f"{b.prefix}{self._prefix}{category}upstream_rq_time")
        return found

    def __repr__(self) -> str:
        return f"<PrefixCodeStats {self._block.prefix}{self._prefix}*>"


def _code_names(code: int) -> tuple[str, str, str]:
    return f"upstream_rq_{code}", f"upstream_rq_{code // 100}xx", "upstream_rq_completed"


@block
class HttpConnManagerStats(StatsBlock):
    """``http.<stat_prefix>.*`` (ALL_HTTP_CONN_MAN_STATS): every HCM has them, the admin one too."""

    TAGS: ClassVar[tuple[str, ...]] = ("envoy.http_conn_manager_prefix",)

    # counters
    downstream_cx_delayed_close_timeout: Counter
    downstream_cx_destroy: Counter
    downstream_cx_destroy_active_rq: Counter
    downstream_cx_destroy_local: Counter
    downstream_cx_destroy_local_active_rq: Counter
    downstream_cx_destroy_remote: Counter
    downstream_cx_destroy_remote_active_rq: Counter
    downstream_cx_drain_close: Counter
    downstream_cx_http1_total: Counter
    downstream_cx_http2_total: Counter
    downstream_cx_http3_total: Counter
    downstream_cx_idle_timeout: Counter
    downstream_cx_max_duration_reached: Counter
    downstream_cx_max_requests_reached: Counter
    downstream_cx_overload_disable_keepalive: Counter
    downstream_cx_protocol_error: Counter
    downstream_cx_rx_bytes_total: Counter
    downstream_cx_ssl_total: Counter
    downstream_cx_total: Counter
    downstream_cx_tx_bytes_total: Counter
    downstream_cx_upgrades_total: Counter
    downstream_flow_control_paused_reading_total: Counter
    downstream_flow_control_resumed_reading_total: Counter
    downstream_rq_1xx: Counter
    downstream_rq_2xx: Counter
    downstream_rq_3xx: Counter
    downstream_rq_4xx: Counter
    downstream_rq_5xx: Counter
    downstream_rq_completed: Counter
    downstream_rq_failed_path_normalization: Counter
    downstream_rq_header_timeout: Counter
    downstream_rq_http1_total: Counter
    downstream_rq_http2_total: Counter
    downstream_rq_http3_total: Counter
    downstream_rq_idle_timeout: Counter
    downstream_rq_max_duration_reached: Counter
    downstream_rq_non_relative_path: Counter
    downstream_rq_overload_close: Counter
    downstream_rq_redirected_with_normalized_path: Counter
    downstream_rq_rejected_via_ip_detection: Counter
    downstream_rq_response_before_rq_complete: Counter
    downstream_rq_rx_reset: Counter
    downstream_rq_timeout: Counter
    downstream_rq_too_large: Counter
    downstream_rq_too_many_premature_resets: Counter
    downstream_rq_total: Counter
    downstream_rq_tx_reset: Counter
    downstream_rq_ws_on_non_ws_route: Counter
    rs_too_large: Counter
    # gauges
    downstream_cx_active: Gauge
    downstream_cx_http1_active: Gauge
    downstream_cx_http1_soft_drain: Gauge
    downstream_cx_http2_active: Gauge
    downstream_cx_http3_active: Gauge
    downstream_cx_rx_bytes_buffered: Gauge
    downstream_cx_ssl_active: Gauge
    downstream_cx_tx_bytes_buffered: Gauge
    downstream_cx_upgrades_active: Gauge
    downstream_rq_active: Gauge
    # histograms
    downstream_cx_length_ms: Histogram
    downstream_rq_time: Histogram


@block
class HcmTracingStats(StatsBlock):
    """``http.<stat_prefix>.tracing.*`` (ALL_HTTP_CONN_MAN_TRACING_STATS): made for each listener's
    HCM whether or not it traces (not for the admin one)."""

    TAGS: ClassVar[tuple[str, ...]] = ("envoy.http_conn_manager_prefix",)

    # counters
    client_enabled: Counter
    health_check: Counter
    not_traceable: Counter
    random_sampling: Counter
    service_forced: Counter


@block
class ZipkinTracerStats(StatsBlock):
    """``tracing.zipkin.*`` (ZIPKIN_TRACER_STATS): one set for the server, whatever number of
    Zipkin providers its connection managers have."""

    TAGS: ClassVar[tuple[str, ...]] = ()

    # counters
    reports_dropped: Counter
    reports_failed: Counter
    reports_sent: Counter
    reports_skipped_no_cluster: Counter
    spans_sent: Counter
    timer_flushed: Counter


@block
class RouterStats(StatsBlock):
    """``http.<stat_prefix>.*`` of the router filter (ALL_ROUTER_STATS), made with each router
    filter's config; Envoy's async client (health checks, StatsD over TCP...) has its own under
    ``http.async-client.``."""

    TAGS: ClassVar[tuple[str, ...]] = ("envoy.http_conn_manager_prefix",)

    # counters
    no_cluster: Counter
    no_route: Counter
    passthrough_internal_redirect_bad_location: Counter
    passthrough_internal_redirect_no_route: Counter
    passthrough_internal_redirect_predicate: Counter
    passthrough_internal_redirect_too_many_redirects: Counter
    passthrough_internal_redirect_unsafe_scheme: Counter
    rq_direct_response: Counter
    rq_overload_local_reply: Counter
    rq_redirect: Counter
    rq_reset_after_downstream_response_started: Counter
    rq_total: Counter


@block
class Http1CodecStats(StatsBlock):
    """``http1.*`` (ALL_HTTP1_CODEC_STATS) of the downstream HTTP/1 codecs, one set per server;
    each cluster has its own under ``cluster.<name>.http1.``."""

    TAGS: ClassVar[tuple[str, ...]] = ()

    # counters
    dropped_headers_with_underscores: Counter
    metadata_not_supported_error: Counter
    requests_rejected_with_underscores_in_headers: Counter
    response_flood: Counter


@block
class AdminListenerStats(StatsBlock):
    """``listener.admin.*``: ALL_LISTENER_STATS less the extension-config counters, which Envoy's
    admin listener (no filter chain discovery) does not make. ``admin`` is no listener address:
    the extractor's negative match leaves it untagged."""

    TAGS: ClassVar[tuple[str, ...]] = ()

    # counters
    downstream_cx_destroy: Counter
    downstream_cx_overflow: Counter
    downstream_cx_overload_reject: Counter
    downstream_cx_total: Counter
    downstream_cx_transport_socket_connect_timeout: Counter
    downstream_global_cx_overflow: Counter
    downstream_listener_filter_error: Counter
    downstream_listener_filter_remote_close: Counter
    downstream_pre_cx_timeout: Counter
    no_filter_chain_match: Counter
    # gauges
    downstream_cx_active: Gauge
    downstream_pre_cx_active: Gauge
    # histograms
    connections_accepted_per_socket_event: Histogram
    downstream_cx_length_ms: Histogram


@block
class ListenerStats(AdminListenerStats):
    """``listener.<address>.*`` (ALL_LISTENER_STATS)."""

    TAGS: ClassVar[tuple[str, ...]] = ("envoy.listener_address",)

    # counters
    extension_config_missing: Counter
    network_extension_config_missing: Counter


@block
class DnsResolverStats(StatsBlock):
    """``dns.cares.*``: the DNS resolver the DNS clusters share, made with the first of them.
    Each query is one ``resolve_total`` (a family fallback is a second query); a name with no
    address is one ``not_found`` per query."""

    TAGS: ClassVar[tuple[str, ...]] = ()

    # counters
    get_addr_failure: Counter
    not_found: Counter
    reinits: Counter
    resolve_total: Counter
    timeouts: Counter
    # gauges
    pending_resolutions: Gauge


@block
class OverloadManagerStats(StatsBlock):
    """Envoy's overload manager with no ``overload_manager`` configured (Sluice refuses one):
    it makes these and never moves them (no resource monitor, no action)."""

    TAGS: ClassVar[tuple[str, ...]] = ()

    # counters
    reset_high_memory_stream_count: Annotated[Counter, "envoy.overload_actions.reset_high_memory_stream.count"]
    # histograms
    refresh_interval_delay: Annotated[Histogram, "overload.refresh_interval_delay"]


@block
class ServerStats(StatsBlock):
    """``server.*``."""

    TAGS: ClassVar[tuple[str, ...]] = ()
    # Added 0 (the config validation counters) or set at start (memory, version, lookups).
    USED_AT_CREATION: ClassVar[frozenset[str]] = frozenset(
        {
            "dynamic_unknown_fields",
            "static_unknown_fields",
            "wip_protos",
            "memory_allocated",
            "memory_heap_size",
            "stats_recent_lookups",
            "version",
        }
    )

    # counters
    debug_assertion_failures: Counter
    dropped_stat_flushes: Counter
    dynamic_unknown_fields: Counter
    envoy_bug_failures: Counter
    envoy_notifications: Counter
    main_thread_watchdog_mega_miss: Annotated[Counter, "main_thread.watchdog_mega_miss"]
    main_thread_watchdog_miss: Annotated[Counter, "main_thread.watchdog_miss"]
    static_unknown_fields: Counter
    wip_protos: Counter
    worker_0_watchdog_mega_miss: Annotated[Counter, "worker_0.watchdog_mega_miss"]
    worker_0_watchdog_miss: Annotated[Counter, "worker_0.watchdog_miss"]
    # gauges
    compilation_settings_fips_mode: Annotated[Gauge, "compilation_settings.fips_mode"]
    concurrency: Gauge
    days_until_first_cert_expiring: Gauge
    hot_restart_epoch: Gauge
    hot_restart_generation: Gauge
    live: Gauge
    memory_allocated: Gauge
    memory_heap_size: Gauge
    memory_physical_size: Gauge
    parent_connections: Gauge
    seconds_until_first_ocsp_response_expiring: Gauge
    state: Gauge
    stats_recent_lookups: Gauge
    total_connections: Gauge
    uptime: Gauge
    version: Gauge
    # histograms
    initialization_time_ms: Histogram


@block
class RuntimeStats(StatsBlock):
    """``runtime.*``."""

    TAGS: ClassVar[tuple[str, ...]] = ()

    # counters
    deprecated_feature_use: Counter
    load_error: Counter
    load_success: Counter
    override_dir_exists: Counter
    override_dir_not_exists: Counter
    # gauges
    admin_overrides_active: Gauge
    deprecated_feature_seen_since_process_start: Gauge
    num_keys: Gauge
    num_layers: Gauge


@block
class ClusterManagerStats(StatsBlock):
    """``cluster_manager.*``."""

    TAGS: ClassVar[tuple[str, ...]] = ()
    # Set when the cluster manager starts.
    USED_AT_CREATION: ClassVar[frozenset[str]] = frozenset({"warming_clusters"})

    # counters
    cluster_added: Counter
    cluster_modified: Counter
    cluster_removed: Counter
    cluster_updated: Counter
    cluster_updated_via_merge: Counter
    update_merge_cancelled: Counter
    update_out_of_merge_window: Counter
    # gauges
    active_clusters: Gauge
    warming_clusters: Gauge


@block
class ThreadLocalClusterManagerStats(StatsBlock):
    """``thread_local_cluster_manager.<thread>.*``: each thread's copy of the clusters (the main
    thread's and ``worker_0``'s)."""

    TAGS: ClassVar[tuple[str, ...]] = ()

    # gauges
    clusters_inflated: Gauge


@block
class WatchdogStats(StatsBlock):
    """``main_thread.*`` and ``workers.*`` (Envoy's guard dogs). Sluice has no watchdog: they stay
    0, as the ``server.<thread>.watchdog_*`` twins do."""

    TAGS: ClassVar[tuple[str, ...]] = ()

    # counters
    watchdog_mega_miss: Counter
    watchdog_miss: Counter


@block
class ListenerManagerStats(StatsBlock):
    """``listener_manager.*``."""

    TAGS: ClassVar[tuple[str, ...]] = ()
    # Set when the listener manager starts.
    USED_AT_CREATION: ClassVar[frozenset[str]] = frozenset({"total_listeners_warming"})

    # counters
    listener_added: Counter
    listener_create_failure: Counter
    listener_create_success: Counter
    listener_in_place_updated: Counter
    listener_modified: Counter
    listener_removed: Counter
    listener_stopped: Counter
    # gauges
    total_filter_chains_draining: Gauge
    total_listeners_active: Gauge
    total_listeners_draining: Gauge
    total_listeners_warming: Gauge
    workers_pinned: Gauge
    workers_started: Gauge


@block
class ListenerHttpStats(StatsBlock):
    """``listener.<address>.http.<stat_prefix>.*`` (ALL_HTTP_CONN_MAN_LISTENER_STATS)."""

    TAGS: ClassVar[tuple[str, ...]] = ("envoy.listener_address", "envoy.http_conn_manager_prefix")

    # counters
    downstream_rq_1xx: Counter
    downstream_rq_2xx: Counter
    downstream_rq_3xx: Counter
    downstream_rq_4xx: Counter
    downstream_rq_5xx: Counter
    downstream_rq_completed: Counter


@block
class PerHandlerListenerStats(StatsBlock):
    """``listener.<address>.<worker>.*`` (ALL_PER_HANDLER_LISTENER_STATS): each worker's copy of
    the listener's connection counts (``worker_0``; ``main_thread`` for the admin listener)."""

    TAGS: ClassVar[tuple[str, ...]] = ("envoy.listener_address", "envoy.worker_id")

    # counters
    downstream_cx_total: Counter
    # gauges
    downstream_cx_active: Gauge


class ListenerConnections:
    """A listener's connection accounting, as Envoy's ActiveTcpListener does it: the listener's
    stats and its (one) handler's copy move together; each closed connection records its length.

    # Divergence from Envoy: asyncio hands over accepted connections one at a time, so
    # ``connections_accepted_per_socket_event`` records 1 per connection (Envoy records how many
    # one wakeup accepted: also 1 unless connections arrive together).
    """

    __slots__ = ("listener", "handler")

    def __init__(self, listener: AdminListenerStats, handler: PerHandlerListenerStats) -> None:
        self.listener = listener
        self.handler = handler

    def opened(self) -> None:
        ls, hs = self.listener, self.handler
        ls.downstream_cx_total.inc()
        ls.downstream_cx_active.inc()
        # Envoy counts the connection in downstream_pre_cx_active while listener filters run
        # (none here): up and down at once, which marks it used.
        ls.downstream_pre_cx_active.used = True
        ls.connections_accepted_per_socket_event.record(1)
        hs.downstream_cx_total.inc()
        hs.downstream_cx_active.inc()

    def closed(self, length_ms: float) -> None:
        ls = self.listener
        ls.downstream_cx_active.dec()
        ls.downstream_cx_destroy.inc()
        ls.downstream_cx_length_ms.record(length_ms)
        self.handler.downstream_cx_active.dec()
