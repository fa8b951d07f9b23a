"""Envoy's stat blocks, one class per subsystem, names exactly as Envoy 1.40 spells them.

Each class is the Python twin of an Envoy ``ALL_*_STATS`` macro. Envoy creates every stat of
a block when the subsystem is created, so ``/stats`` lists them (zeros included) from the start;
we do the same by declaring the block at config time.
"""

from __future__ import annotations

from sluice.stats.store import Counter, Histogram, StatsBlock, Store


class ClusterStats(StatsBlock):
    """``cluster.<name>.*`` (ALL_CLUSTER_STATS, circuit breakers, http1 codec, LB)."""

    COUNTERS = (
        "assignment_stale",
        "assignment_timeout_received",
        "assignment_use_cached",
        "bind_errors",
        "http1.dropped_headers_with_underscores",
        "http1.metadata_not_supported_error",
        "http1.requests_rejected_with_underscores_in_headers",
        "http1.response_flood",
        "lb_healthy_panic",
        "lb_local_cluster_not_ok",
        "lb_recalculate_zone_structures",
        "lb_subsets_created",
        "lb_subsets_fallback",
        "lb_subsets_fallback_panic",
        "lb_subsets_removed",
        "lb_subsets_selected",
        "lb_zone_cluster_too_small",
        "lb_zone_no_capacity_left",
        "lb_zone_routing_all_directly",
        "lb_zone_routing_cross_zone",
        "lb_zone_routing_sampled",
        "membership_change",
        "original_dst_host_invalid",
        "retry_or_shadow_abandoned",
        "update_attempt",
        "update_empty",
        "update_failure",
        "update_no_rebuild",
        "update_success",
        "upstream_cx_close_notify",
        "upstream_cx_connect_attempts_exceeded",
        "upstream_cx_connect_fail",
        "upstream_cx_connect_timeout",
        "upstream_cx_connect_with_0_rtt",
        "upstream_cx_destroy",
        "upstream_cx_destroy_local",
        "upstream_cx_destroy_local_with_active_rq",
        "upstream_cx_destroy_remote",
        "upstream_cx_destroy_remote_with_active_rq",
        "upstream_cx_destroy_with_active_rq",
        "upstream_cx_http1_total",
        "upstream_cx_http2_total",
        "upstream_cx_http3_total",
        "upstream_cx_idle_timeout",
        "upstream_cx_max_duration_reached",
        "upstream_cx_max_requests",
        "upstream_cx_none_healthy",
        "upstream_cx_overflow",
        "upstream_cx_pool_overflow",
        "upstream_cx_preconnect_skipped",
        "upstream_cx_protocol_error",
        "upstream_cx_rx_bytes_total",
        "upstream_cx_total",
        "upstream_cx_tx_bytes_total",
        "upstream_flow_control_backed_up_total",
        "upstream_flow_control_drained_total",
        "upstream_flow_control_paused_reading_total",
        "upstream_flow_control_resumed_reading_total",
        "upstream_http3_broken",
        "upstream_internal_redirect_failed_total",
        "upstream_internal_redirect_succeeded_total",
        "upstream_queue_overloaded",
        "upstream_rq_0rtt",
        "upstream_rq_active_overflow",
        "upstream_rq_cancelled",
        "upstream_rq_maintenance_mode",
        "upstream_rq_max_duration_reached",
        "upstream_rq_pending_failure_eject",
        "upstream_rq_pending_overflow",
        "upstream_rq_pending_total",
        "upstream_rq_per_try_idle_timeout",
        "upstream_rq_per_try_timeout",
        "upstream_rq_retry",
        "upstream_rq_retry_backoff_exponential",
        "upstream_rq_retry_backoff_ratelimited",
        "upstream_rq_retry_limit_exceeded",
        "upstream_rq_retry_overflow",
        "upstream_rq_retry_success",
        "upstream_rq_rx_reset",
        "upstream_rq_rx_reset_no_error",
        "upstream_rq_timeout",
        "upstream_rq_total",
        "upstream_rq_tx_reset",
    )
    GAUGES = (
        "circuit_breakers.default.cx_open",
        "circuit_breakers.default.cx_pool_open",
        "circuit_breakers.default.rq_open",
        "circuit_breakers.default.rq_pending_open",
        "circuit_breakers.default.rq_retry_open",
        "circuit_breakers.high.cx_open",
        "circuit_breakers.high.cx_pool_open",
        "circuit_breakers.high.rq_open",
        "circuit_breakers.high.rq_pending_open",
        "circuit_breakers.high.rq_retry_open",
        "lb_subsets_active",
        "max_host_weight",
        "membership_degraded",
        "membership_excluded",
        "membership_healthy",
        "membership_total",
        "upstream_cx_active",
        "upstream_cx_rx_bytes_buffered",
        "upstream_cx_tx_bytes_buffered",
        "upstream_rq_active",
        "upstream_rq_pending_active",
        "version",
        "warming_state",
    )
    HISTOGRAMS = (
        "upstream_cx_connect_ms",
        "upstream_cx_length_ms",
        "upstream_rq_per_cx",
        "upstream_rq_time",
    )


    def response_code_stats(self, code: int) -> tuple[tuple[Counter, ...], tuple[Counter, ...], Histogram]:
        """The counters one response charges — ``upstream_rq_<code>``, ``upstream_rq_<N>xx``,
        ``upstream_rq_completed`` and their ``external.`` twins — created on first use, as
        Envoy does, then served from a per-code cache."""
        cached = self._code_cache.get(code)
        if cached is None:
            group = f"{code // 100}xx"
            names = (f"upstream_rq_{code}", f"upstream_rq_{group}", "upstream_rq_completed")
            cached = (
                tuple(self.dynamic_counter(n) for n in names),
                tuple(self.dynamic_counter(f"external.{n}") for n in names),
                self._store.histogram(f"{self._prefix}external.upstream_rq_time"),
            )
            self._code_cache[code] = cached
        return cached

    def __init__(self, store: Store, prefix: str) -> None:
        super().__init__(store, prefix)
        self._code_cache: dict[int, tuple[tuple[Counter, ...], tuple[Counter, ...], Histogram]] = {}

class HttpConnManagerStats(StatsBlock):
    """``http.<stat_prefix>.*`` (ALL_HTTP_CONN_MAN_STATS, router and tracing stats)."""

    COUNTERS = (
        "downstream_cx_delayed_close_timeout",
        "downstream_cx_destroy",
        "downstream_cx_destroy_active_rq",
        "downstream_cx_destroy_local",
        "downstream_cx_destroy_local_active_rq",
        "downstream_cx_destroy_remote",
        "downstream_cx_destroy_remote_active_rq",
        "downstream_cx_drain_close",
        "downstream_cx_http1_soft_drain",
        "downstream_cx_http1_total",
        "downstream_cx_http2_total",
        "downstream_cx_http3_total",
        "downstream_cx_idle_timeout",
        "downstream_cx_max_duration_reached",
        "downstream_cx_max_requests_reached",
        "downstream_cx_overload_disable_keepalive",
        "downstream_cx_protocol_error",
        "downstream_cx_rx_bytes_total",
        "downstream_cx_ssl_total",
        "downstream_cx_total",
        "downstream_cx_tx_bytes_total",
        "downstream_cx_upgrades_total",
        "downstream_flow_control_paused_reading_total",
        "downstream_flow_control_resumed_reading_total",
        "downstream_rq_1xx",
        "downstream_rq_2xx",
        "downstream_rq_3xx",
        "downstream_rq_4xx",
        "downstream_rq_5xx",
        "downstream_rq_completed",
        "downstream_rq_failed_path_normalization",
        "downstream_rq_header_timeout",
        "downstream_rq_http1_total",
        "downstream_rq_http2_total",
        "downstream_rq_http3_total",
        "downstream_rq_idle_timeout",
        "downstream_rq_max_duration_reached",
        "downstream_rq_non_relative_path",
        "downstream_rq_overload_close",
        "downstream_rq_redirected_with_normalized_path",
        "downstream_rq_rejected_via_ip_detection",
        "downstream_rq_response_before_rq_complete",
        "downstream_rq_rx_reset",
        "downstream_rq_timeout",
        "downstream_rq_too_large",
        "downstream_rq_too_many_premature_resets",
        "downstream_rq_total",
        "downstream_rq_tx_reset",
        "downstream_rq_ws_on_non_ws_route",
        "no_cluster",
        "no_route",
        "passthrough_internal_redirect_bad_location",
        "passthrough_internal_redirect_no_route",
        "passthrough_internal_redirect_predicate",
        "passthrough_internal_redirect_too_many_redirects",
        "passthrough_internal_redirect_unsafe_scheme",
        "rq_direct_response",
        "rq_overload_local_reply",
        "rq_redirect",
        "rq_reset_after_downstream_response_started",
        "rq_total",
        "rs_too_large",
        "tracing.client_enabled",
        "tracing.health_check",
        "tracing.not_traceable",
        "tracing.random_sampling",
        "tracing.service_forced",
    )
    GAUGES = (
        "downstream_cx_active",
        "downstream_cx_http1_active",
        "downstream_cx_http2_active",
        "downstream_cx_http3_active",
        "downstream_cx_rx_bytes_buffered",
        "downstream_cx_ssl_active",
        "downstream_cx_tx_bytes_buffered",
        "downstream_cx_upgrades_active",
        "downstream_rq_active",
    )
    HISTOGRAMS = (
        "downstream_cx_length_ms",
        "downstream_rq_time",
    )


class ListenerStats(StatsBlock):
    """``listener.<address>.*`` (ALL_LISTENER_STATS)."""

    COUNTERS = (
        "downstream_cx_destroy",
        "downstream_cx_overflow",
        "downstream_cx_overload_reject",
        "downstream_cx_total",
        "downstream_cx_transport_socket_connect_timeout",
        "downstream_global_cx_overflow",
        "downstream_listener_filter_error",
        "downstream_listener_filter_remote_close",
        "downstream_pre_cx_timeout",
        "extension_config_missing",
        "network_extension_config_missing",
        "no_filter_chain_match",
    )
    GAUGES = (
        "downstream_cx_active",
        "downstream_pre_cx_active",
    )
    HISTOGRAMS = (
        "connections_accepted_per_socket_event",
        "downstream_cx_length_ms",
    )


class ServerStats(StatsBlock):
    """``server.*``."""

    COUNTERS = (
        "debug_assertion_failures",
        "dropped_stat_flushes",
        "dynamic_unknown_fields",
        "envoy_bug_failures",
        "envoy_notifications",
        "main_thread.watchdog_mega_miss",
        "main_thread.watchdog_miss",
        "static_unknown_fields",
        "wip_protos",
        "worker_0.watchdog_mega_miss",
        "worker_0.watchdog_miss",
    )
    GAUGES = (
        "compilation_settings.fips_mode",
        "concurrency",
        "days_until_first_cert_expiring",
        "hot_restart_epoch",
        "hot_restart_generation",
        "live",
        "memory_allocated",
        "memory_heap_size",
        "memory_physical_size",
        "parent_connections",
        "seconds_until_first_ocsp_response_expiring",
        "state",
        "stats_recent_lookups",
        "total_connections",
        "uptime",
        "version",
    )
    HISTOGRAMS = (
        "initialization_time_ms",
    )


class RuntimeStats(StatsBlock):
    """``runtime.*``."""

    COUNTERS = (
        "deprecated_feature_use",
        "load_error",
        "load_success",
        "override_dir_exists",
        "override_dir_not_exists",
    )
    GAUGES = (
        "admin_overrides_active",
        "deprecated_feature_seen_since_process_start",
        "num_keys",
        "num_layers",
    )
    HISTOGRAMS = (
    )


class ClusterManagerStats(StatsBlock):
    """``cluster_manager.*``."""

    COUNTERS = (
        "cluster_added",
        "cluster_modified",
        "cluster_removed",
        "cluster_updated",
        "cluster_updated_via_merge",
        "update_merge_cancelled",
        "update_out_of_merge_window",
    )
    GAUGES = (
        "active_clusters",
        "warming_clusters",
    )
    HISTOGRAMS = (
    )


class ListenerManagerStats(StatsBlock):
    """``listener_manager.*``."""

    COUNTERS = (
        "listener_added",
        "listener_create_failure",
        "listener_create_success",
        "listener_in_place_updated",
        "listener_modified",
        "listener_removed",
        "listener_stopped",
        "workers_pinned",
    )
    GAUGES = (
        "total_filter_chains_draining",
        "total_listeners_active",
        "total_listeners_draining",
        "total_listeners_warming",
        "workers_started",
    )
    HISTOGRAMS = (
    )
