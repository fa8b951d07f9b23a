"""What Sluice implements, as tables, and the walk that names everything else in a bootstrap.

A valid Envoy config may use fields and extensions Sluice does not implement yet. They are never
dropped silently: ``unsupported_features`` returns one line per set field or extension outside
these tables, with its path, and the caller decides (warn, or refuse with ``UnsupportedError``).

When a feature lands, extend the tables here in the same change:

* ``SUPPORTED_FIELDS``: protobuf full message name → the fields Sluice reads. A set field not
  listed is reported; ``"*"`` means every field. A message reached through a supported field but
  missing from the table has no supported fields.
* ``SUPPORTED_VALUES``: an enum field → the values Sluice implements (the rest are reported).
* ``SUPPORTED_EXTENSIONS``: the typed_config ``@type`` URLs Sluice implements; every other
  extension (HTTP filter, access logger, tracer, stats sink...) is reported by kind and name.

``validate(path, config_yaml)`` (the loader's, re-exported) loads and returns both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

# xds-protos ships no stubs or py.typed marker (import-untyped): its modules are Any to mypy.
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from sluice.config.compat import ANY, enum_type, is_map, is_repeated, join_path, type_url_for_name, unpack_any
from sluice.config.loader import validate

__all__ = [
    "ALL_FIELDS",
    "EXTENSION_KINDS",
    "SUPPORTED_EXTENSIONS",
    "SUPPORTED_FIELDS",
    "SUPPORTED_PER_FILTER_CONFIGS",
    "SUPPORTED_VALUES",
    "unsupported_features",
    "validate",
]

ALL_FIELDS: Final = "*"

assert previous_hosts_pb2  # registers PreviousHostsPredicate (a retry host predicate Sluice implements)
assert http_protocol_options_pb2  # registers a cluster's upstream HttpProtocolOptions

_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_UPSTREAM_HTTP = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_FAULT = "envoy.extensions.filters.http.fault.v3.HTTPFault"
_CORS_FIELDS = ("allow_origin_string_match", "allow_methods", "allow_headers", "expose_headers", "max_age",
                "allow_credentials", "filter_enabled", "shadow_enabled", "allow_private_network_access",
                "forward_not_matching_preflights")
_HEADER_FIELDS = (
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
)

# The protocol messages a cluster shares with the HCM, as the upstream side implements them (the
# walk takes these for any path under static_resources.clusters): HTTP/1 options none of
# (header_key_format, enable_trailers... upstream are not implemented); HTTP/2 the settings the
# client codec applies (sluice/codec/http2_client.py); the common options the pool applies.
# fmt: off
_CLUSTER_PATH: Final = "static_resources.clusters["
_CLUSTER_FIELDS: Final[Mapping[str, frozenset[str]]] = {name: frozenset(fields) for name, fields in {
    "envoy.config.core.v3.HttpProtocolOptions": {"idle_timeout", "max_requests_per_connection"},
    "envoy.config.core.v3.Http1ProtocolOptions": set(),
    "envoy.config.core.v3.Http2ProtocolOptions": {"max_concurrent_streams", "initial_stream_window_size",
                                                  "initial_connection_window_size"},
}.items()}
# (a message reached only from a cluster has an entry, empty, in SUPPORTED_FIELDS too)

# fmt: off
SUPPORTED_FIELDS: Final[Mapping[str, frozenset[str]]] = {name: frozenset(fields) for name, fields in {
    **dict.fromkeys(_CLUSTER_FIELDS, ()),
    # bootstrap, admin, runtime
    "envoy.config.bootstrap.v3.Bootstrap": {"node", "static_resources", "admin", "layered_runtime",
                                            "stats_sinks", "stats_flush_interval", "stats_flush_on_admin",
                                            "stats_config"},
    "envoy.config.bootstrap.v3.Bootstrap.StaticResources": {"listeners", "clusters"},
    "envoy.config.core.v3.Node": {"id", "cluster"},
    "envoy.config.bootstrap.v3.Admin": {"address", "access_log_path", "access_log", "profile_path"},
    "envoy.config.bootstrap.v3.LayeredRuntime": {"layers"},
    "envoy.config.bootstrap.v3.RuntimeLayer": {"name", "static_layer", "disk_layer", "admin_layer"},
    "envoy.config.bootstrap.v3.RuntimeLayer.DiskLayer": {"symlink_root", "subdirectory", "append_service_cluster"},
    "envoy.config.bootstrap.v3.RuntimeLayer.AdminLayer": set(),
    # stats_config: tag extraction (sluice/stats/tags.py), stats_matcher (sluice/stats/matcher.py)
    "envoy.config.metrics.v3.StatsConfig": {"stats_tags", "use_all_default_tags", "stats_matcher"},
    "envoy.config.metrics.v3.TagSpecifier": {"tag_name", "regex", "fixed_value"},
    "envoy.config.metrics.v3.StatsMatcher": {"reject_all", "exclusion_list", "inclusion_list"},
    "envoy.type.matcher.v3.ListStringMatcher": {"patterns"},
    # stats sinks (sluice/stats/sinks/)
    "envoy.config.metrics.v3.StatsSink": {"name", "typed_config"},
    "envoy.config.metrics.v3.StatsdSink": {"address", "tcp_cluster_name", "prefix"},
    # listeners
    "envoy.config.listener.v3.Listener": {"name", "address", "filter_chains", "access_log", "traffic_direction"},
    "envoy.config.listener.v3.FilterChain": {"filters"},
    "envoy.config.listener.v3.Filter": {"name", "typed_config"},
    "envoy.config.core.v3.Address": {"socket_address"},
    "envoy.config.core.v3.SocketAddress": {"address", "port_value", "protocol"},
    # http connection manager
    _HCM: {"stat_prefix", "codec_type", "route_config", "http_filters", "generate_request_id",
           "preserve_external_request_id", "use_remote_address", "server_name",
           "xff_num_trusted_hops", "skip_xff_append", "stream_idle_timeout",
           "request_timeout", "request_headers_timeout", "drain_timeout", "delayed_close_timeout",
           "common_http_protocol_options",
           "internal_address_config", "add_user_agent", "max_request_headers_kb", "http_protocol_options",
           "normalize_path", "merge_slashes", "path_with_escaped_slashes_action", "upgrade_configs",
           # HTTP/1 codec errors close the connection whatever it says (checked with Envoy
           # 1.40); on HTTP/2 it decides between a stream reset and the connection's GOAWAY.
           "stream_error_on_invalid_http_message", "http2_protocol_options", "access_log", "access_log_options",
           # tracing: the decision and the Zipkin tracer (sluice/tracing/)
           "tracing", "request_id_extension", "always_set_request_id_in_response"},
    _HCM + ".Tracing": {"client_sampling", "random_sampling", "overall_sampling", "verbose", "max_path_tag_length",
                        "spawn_upstream_span", "custom_tags", "provider"},
    "envoy.config.trace.v3.Tracing.Http": {"name", "typed_config"},
    "envoy.config.trace.v3.ZipkinConfig": {"collector_cluster", "collector_endpoint", "trace_id_128bit",
                                           "shared_span_context", "collector_endpoint_version", "collector_hostname",
                                           "split_spans_for_request", "collector_service", "trace_context_option"},
    "envoy.config.core.v3.HttpService": {"http_uri", "request_headers_to_add"},
    "envoy.config.core.v3.HttpUri": {"uri", "cluster", "timeout"},
    "envoy.type.tracing.v3.CustomTag": {"tag", "literal", "environment", "request_header", "metadata"},
    "envoy.type.tracing.v3.CustomTag.Metadata": {"kind", "metadata_key", "default_value"},
    "envoy.type.metadata.v3.MetadataKind": {"request", "cluster", "host", "route"},
    "envoy.type.metadata.v3.MetadataKind.Request": set(),
    "envoy.type.metadata.v3.MetadataKind.Cluster": set(),
    "envoy.type.metadata.v3.MetadataKind.Host": set(),
    "envoy.type.metadata.v3.MetadataKind.Route": set(),
    "envoy.type.metadata.v3.MetadataKey": {"key", "path"},
    "envoy.type.metadata.v3.MetadataKey.PathSegment": {"key"},
    "envoy.type.tracing.v3.CustomTag.Literal": {"value"},
    "envoy.type.tracing.v3.CustomTag.Environment": {"name", "default_value"},
    "envoy.type.tracing.v3.CustomTag.Header": {"name", "default_value"},
    "envoy.extensions.filters.network.http_connection_manager.v3.RequestIDExtension": {"typed_config"},
    "envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig": {"pack_trace_reason", "use_request_id_for_trace_sampling"},
    _HCM + ".HcmAccessLogOptions": {"access_log_flush_interval", "flush_access_log_on_new_request",
                                    "flush_log_on_tunnel_successfully_established"},
    # access logs (sluice/access_log/, sluice/formatter/)
    "envoy.config.accesslog.v3.AccessLog": {"name", "filter", "typed_config"},
    "envoy.config.accesslog.v3.AccessLogFilter": {
        "status_code_filter", "duration_filter", "not_health_check_filter", "traceable_filter", "runtime_filter",
        "and_filter", "or_filter", "header_filter", "response_flag_filter", "grpc_status_filter", "metadata_filter",
        "log_type_filter"},
    "envoy.config.accesslog.v3.StatusCodeFilter": {"comparison"},
    "envoy.config.accesslog.v3.DurationFilter": {"comparison"},
    "envoy.config.accesslog.v3.ComparisonFilter": {"op", "value"},
    "envoy.config.core.v3.RuntimeUInt32": {"default_value", "runtime_key"},
    "envoy.config.accesslog.v3.RuntimeFilter": {"runtime_key", "percent_sampled", "use_independent_randomness"},
    "envoy.config.accesslog.v3.AndFilter": {"filters"},
    "envoy.config.accesslog.v3.OrFilter": {"filters"},
    "envoy.config.accesslog.v3.HeaderFilter": {"header"},
    "envoy.config.accesslog.v3.ResponseFlagFilter": {"flags"},
    "envoy.config.accesslog.v3.GrpcStatusFilter": {"statuses", "exclude"},
    # (no filter sets dynamic metadata: the matcher's key is never found)
    "envoy.config.accesslog.v3.MetadataFilter": {"matcher", "match_if_key_not_found"},
    "envoy.type.matcher.v3.MetadataMatcher": {"filter", "path", "value", "invert"},
    "envoy.type.matcher.v3.MetadataMatcher.PathSegment": {"key"},
    "envoy.type.matcher.v3.ValueMatcher": {"null_match", "double_match", "string_match", "bool_match", "present_match",
                                           "list_match", "or_match"},
    "envoy.type.matcher.v3.ValueMatcher.NullMatch": set(),
    "envoy.type.matcher.v3.DoubleMatcher": {"range", "exact"},
    "envoy.type.v3.DoubleRange": {"start", "end"},
    "envoy.type.matcher.v3.ListMatcher": {"one_of"},
    "envoy.type.matcher.v3.OrMatcher": {"value_matchers"},
    "envoy.config.accesslog.v3.NotHealthCheckFilter": set(),
    "envoy.config.accesslog.v3.TraceableFilter": set(),
    "envoy.config.accesslog.v3.LogTypeFilter": {"types", "exclude"},
    "envoy.extensions.access_loggers.file.v3.FileAccessLog": {"path", "format", "json_format", "typed_json_format",
                                                              "log_format"},
    "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog": {"log_format"},
    "envoy.extensions.access_loggers.stream.v3.StderrAccessLog": {"log_format"},
    # ("formatters" extensions are reported)
    "envoy.config.core.v3.SubstitutionFormatString": {"text_format", "json_format", "text_format_source",
                                                      "omit_empty_values", "content_type"},

    _HCM.rsplit(".", 1)[0] + ".HttpFilter": {"name", "typed_config"},
    # (clusters do not take common_http_protocol_options: only the HCM's reaches this table)
    "envoy.config.core.v3.HttpProtocolOptions": {"idle_timeout", "max_stream_duration", "max_headers_count",
                                                 "headers_with_underscores_action"},
    "envoy.config.core.v3.Http1ProtocolOptions": {"accept_http_10", "default_host_for_http_10",
                                                  "allow_absolute_url", "allow_chunked_length", "header_key_format",
                                                  "enable_trailers"},
    "envoy.config.core.v3.Http1ProtocolOptions.HeaderKeyFormat": {"proper_case_words"},
    # HTTP/2 (sluice/codec/http2.py): the settings Sluice's codec applies
    "envoy.config.core.v3.Http2ProtocolOptions": {"max_concurrent_streams", "initial_stream_window_size",
                                                  "initial_connection_window_size", "allow_connect",
                                                  "override_stream_error_on_invalid_http_message"},
    "envoy.config.core.v3.Http1ProtocolOptions.HeaderKeyFormat.ProperCaseWords": set(),
    "envoy.extensions.filters.http.router.v3.Router": set(),
    # fault filter (filter_metadata: Sluice has no dynamic metadata)
    _FAULT: {"delay", "abort", "upstream_cluster", "headers", "downstream_nodes", "max_active_faults",
             "response_rate_limit", "delay_percent_runtime", "abort_percent_runtime", "delay_duration_runtime",
             "abort_http_status_runtime", "max_active_faults_runtime", "response_rate_limit_percent_runtime",
             "abort_grpc_status_runtime", "disable_downstream_cluster_stats"},
    "envoy.extensions.filters.http.fault.v3.FaultAbort": {"http_status", "grpc_status", "header_abort", "percentage"},
    "envoy.extensions.filters.http.fault.v3.FaultAbort.HeaderAbort": set(),
    "envoy.extensions.filters.common.fault.v3.FaultDelay": {"fixed_delay", "header_delay", "percentage"},
    "envoy.extensions.filters.common.fault.v3.FaultDelay.HeaderDelay": set(),
    "envoy.extensions.filters.common.fault.v3.FaultRateLimit": {"fixed_limit", "header_limit", "percentage"},
    "envoy.extensions.filters.common.fault.v3.FaultRateLimit.FixedLimit": {"limit_kbps"},
    "envoy.extensions.filters.common.fault.v3.FaultRateLimit.HeaderLimit": set(),
    # cors filter: the filter config has no fields, the policies are on routes and virtual hosts
    "envoy.extensions.filters.http.cors.v3.Cors": set(),
    "envoy.extensions.filters.http.cors.v3.CorsPolicy": set(_CORS_FIELDS),
    "envoy.config.route.v3.CorsPolicy": set(_CORS_FIELDS),
    # routes
    "envoy.config.route.v3.RouteConfiguration": {"name", "virtual_hosts", "typed_per_filter_config", *_HEADER_FIELDS},
    "envoy.config.route.v3.VirtualHost": {"name", "domains", "routes", "cors", "typed_per_filter_config", *_HEADER_FIELDS,
                                          "retry_policy", "include_request_attempt_count",
                                          "include_attempt_count_in_response"},
    "envoy.config.route.v3.Route": {"name", "match", "route", "redirect", "direct_response", "typed_per_filter_config",
                                    "tracing", "decorator", *_HEADER_FIELDS},
    "envoy.config.route.v3.Decorator": {"operation", "propagate"},
    "envoy.config.route.v3.Tracing": {"client_sampling", "random_sampling", "overall_sampling"},
    # typed_per_filter_config map entries (their values: SUPPORTED_PER_FILTER_CONFIGS)
    **{f"envoy.config.route.v3.{m}.TypedPerFilterConfigEntry": {"key", "value"}
       for m in ("RouteConfiguration", "VirtualHost", "Route")},
    "envoy.config.route.v3.RouteMatch": {"prefix", "path", "safe_regex", "path_separated_prefix",
                                         "case_sensitive", "headers", "query_parameters", "runtime_fraction"},
    "envoy.config.route.v3.HeaderMatcher": {"name", "exact_match", "prefix_match", "suffix_match",
                                            "contains_match", "safe_regex_match", "present_match",
                                            "range_match", "invert_match", "string_match"},
    "envoy.config.route.v3.QueryParameterMatcher": {"name", "string_match", "present_match"},
    "envoy.type.matcher.v3.StringMatcher": {"exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"},
    "envoy.type.matcher.v3.RegexMatcher": {"google_re2", "regex"},
    "envoy.type.matcher.v3.RegexMatcher.GoogleRE2": set(),
    "envoy.type.matcher.v3.RegexMatchAndSubstitute": {"pattern", "substitution"},
    "envoy.type.v3.Int64Range": {"start", "end"},
    "envoy.config.route.v3.RouteAction": {"cluster", "cluster_header", "weighted_clusters",
                                          "request_mirror_policies", "prefix_rewrite", "regex_rewrite",
                                          "host_rewrite_literal", "auto_host_rewrite", "timeout", "idle_timeout", "cors",
                                          "retry_policy", "upgrade_configs",
                                          # gRPC timeouts: router/timeouts.py (legacy), http/active_stream.py
                                          "max_grpc_timeout", "grpc_timeout_offset", "max_stream_duration"},
    "envoy.config.route.v3.RouteAction.MaxStreamDuration": {"max_stream_duration", "grpc_timeout_header_max",
                                                            "grpc_timeout_header_offset"},
    # upgrades (sluice/http/upgrade.py): not connect_config (CONNECT), nor upgrade filters
    "envoy.config.route.v3.RouteAction.UpgradeConfig": {"upgrade_type", "enabled"},
    f"{_HCM}.UpgradeConfig": {"upgrade_type", "enabled"},
    # retries (sluice/route/retry_policy.py, sluice/router/retry.py); not retry_priority,
    # retry_options_predicates, rate_limited_retry_back_off
    "envoy.config.route.v3.RetryPolicy": {"retry_on", "num_retries", "per_try_timeout", "per_try_idle_timeout",
                                          "retry_host_predicate", "host_selection_retry_max_attempts",
                                          "retriable_status_codes", "retry_back_off", "retriable_headers",
                                          "retriable_request_headers"},
    "envoy.config.route.v3.RetryPolicy.RetryBackOff": {"base_interval", "max_interval"},
    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate": set(),
    f"{_HCM}.InternalAddressConfig": {"cidr_ranges"},
    "envoy.config.core.v3.CidrRange": {"address_prefix", "prefix_len"},
    "envoy.config.route.v3.RetryPolicy.RetryHostPredicate": {"name", "typed_config"},
    "envoy.config.route.v3.WeightedCluster": {"clusters", "total_weight", "runtime_key_prefix"},
    "envoy.config.route.v3.WeightedCluster.ClusterWeight": {"name", "weight", *_HEADER_FIELDS},
    "envoy.config.route.v3.RouteAction.RequestMirrorPolicy": {"cluster", "runtime_fraction"},
    "envoy.config.core.v3.RuntimeFractionalPercent": {"default_value", "runtime_key"},
    "envoy.type.v3.FractionalPercent": {"numerator", "denominator"},
    "envoy.config.route.v3.DirectResponseAction": {"status", "body"},
    "envoy.config.core.v3.DataSource": {"inline_string", "inline_bytes", "filename"},
    "envoy.config.route.v3.RedirectAction": {ALL_FIELDS},
    "envoy.config.core.v3.HeaderValueOption": {"header", "append", "append_action", "keep_empty_value"},
    "envoy.config.core.v3.HeaderValue": {"key", "value"},
    # clusters
    "envoy.config.cluster.v3.Cluster": {"name", "type", "connect_timeout", "lb_policy", "load_assignment",
                                        "dns_refresh_rate", "dns_lookup_family", "circuit_breakers",
                                        "outlier_detection", "health_checks", "common_lb_config",
                                        # upstream protocol options (upstream/cluster.py protocol_options)
                                        "typed_extension_protocol_options", "http2_protocol_options",
                                        "common_http_protocol_options", "max_requests_per_connection"},
    "envoy.config.cluster.v3.Cluster.TypedExtensionProtocolOptionsEntry": {"key", "value"},
    # (upstream_http_protocol_options, http_filters, header_validation_config... are not implemented;
    # auto_config needs ALPN, http3 QUIC)
    _UPSTREAM_HTTP: {"common_http_protocol_options", "explicit_http_config", "use_downstream_protocol_config"},
    f"{_UPSTREAM_HTTP}.ExplicitHttpConfig": {"http_protocol_options", "http2_protocol_options"},
    f"{_UPSTREAM_HTTP}.UseDownstreamHttpConfig": {"http_protocol_options", "http2_protocol_options"},
    "envoy.config.cluster.v3.Cluster.CommonLbConfig": {"healthy_panic_threshold"},
    "envoy.type.v3.Percent": {"value"},
    # circuit breakers, outlier detection, health checks (sluice/upstream/)
    "envoy.config.cluster.v3.CircuitBreakers": {"thresholds"},
    "envoy.config.cluster.v3.CircuitBreakers.Thresholds": {"priority", "max_connections", "max_pending_requests",
                                                           "max_requests", "max_retries", "retry_budget"},
    "envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget": {"budget_percent", "min_retry_concurrency"},
    "envoy.config.cluster.v3.OutlierDetection": {
        "consecutive_5xx", "consecutive_gateway_failure", "consecutive_local_origin_failure", "interval",
        "base_ejection_time", "max_ejection_time", "max_ejection_percent", "enforcing_consecutive_5xx",
        "enforcing_consecutive_gateway_failure", "enforcing_consecutive_local_origin_failure",
        "split_external_local_origin_errors", "successful_active_health_check_uneject_host"},
    "envoy.config.core.v3.HealthCheck": {
        "timeout", "interval", "initial_jitter", "interval_jitter", "interval_jitter_percent",
        "unhealthy_threshold", "healthy_threshold", "reuse_connection", "http_health_check",
        "no_traffic_interval", "no_traffic_healthy_interval", "unhealthy_interval", "unhealthy_edge_interval",
        "healthy_edge_interval"},
    "envoy.config.core.v3.HealthCheck.HttpHealthCheck": {"host", "path", "expected_statuses"},
    "envoy.config.endpoint.v3.ClusterLoadAssignment": {"cluster_name", "endpoints"},
    "envoy.config.endpoint.v3.LocalityLbEndpoints": {"lb_endpoints", "load_balancing_weight"},
    "envoy.config.endpoint.v3.LbEndpoint": {"endpoint", "load_balancing_weight", "metadata"},
    # Endpoint metadata is read by %UPSTREAM_METADATA% (no subset load balancer reads it yet).
    "envoy.config.core.v3.Metadata": {"filter_metadata"},
    "envoy.config.core.v3.Metadata.FilterMetadataEntry": {"key", "value"},
    "envoy.config.endpoint.v3.Endpoint": {"address", "hostname"},
}.items()}

SUPPORTED_VALUES: Final[Mapping[str, frozenset[str]]] = {
    "envoy.config.cluster.v3.Cluster.type": frozenset({"STATIC", "STRICT_DNS", "LOGICAL_DNS"}),
    "envoy.config.cluster.v3.Cluster.lb_policy": frozenset({"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"}),
    "envoy.config.core.v3.SocketAddress.protocol": frozenset({"TCP"}),
    "envoy.config.cluster.v3.CircuitBreakers.Thresholds.priority": frozenset({"DEFAULT", "HIGH"}),
}
# Values allowed under one top-level field only: a StatsD sink's address may be UDP (the walk
# enters stats_sinks only for a sink Sluice implements).
_SUPPORTED_VALUES_UNDER: Final[Mapping[str, Mapping[str, frozenset[str]]]] = {
    "stats_sinks": {"envoy.config.core.v3.SocketAddress.protocol": frozenset({"TCP", "UDP"})},
}

SUPPORTED_EXTENSIONS: Final[frozenset[str]] = frozenset({
    type_url_for_name("envoy.filters.network.http_connection_manager") or "",
    type_url_for_name("envoy.filters.http.router") or "",
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
    type_url_for_name("envoy.filters.http.fault") or "",
    type_url_for_name("envoy.filters.http.cors") or "",
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
    "type.googleapis.com/envoy.config.metrics.v3.StatsdSink",
    f"type.googleapis.com/{_UPSTREAM_HTTP}",  # a cluster's typed_extension_protocol_options
    "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
    "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
})

# The typed_per_filter_config values (route, virtual host, route configuration) Sluice applies;
# any other (a per-route HTTPFault, a FilterConfig wrapper...) is reported.
SUPPORTED_PER_FILTER_CONFIGS: Final[frozenset[str]] = frozenset({
    "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
})
# fmt: on

# Messages that wrap one extension (name + typed_config): reported as "<kind> '<name>'".
EXTENSION_KINDS: Final[Mapping[str, str]] = {
    "envoy.config.listener.v3.Filter": "network filter",
    _HCM.rsplit(".", 1)[0] + ".HttpFilter": "HTTP filter",
    "envoy.config.accesslog.v3.AccessLog": "access logger",
    "envoy.config.metrics.v3.StatsSink": "stats sink",
    "envoy.config.trace.v3.Tracing.Http": "tracer",
    "envoy.config.route.v3.RetryPolicy.RetryHostPredicate": "retry host predicate",
    "envoy.config.route.v3.RetryPolicy.RetryPriority": "retry priority",
}

# Unsupported fields better summed up in one line than field by field: full field name → summary.
_FIELD_SUMMARIES: Final[Mapping[str, Callable[[Any], str]]] = {
    # (the filters are implemented ones, mostly: what is missing is a filter chain per upgrade)
    f"{_HCM}.UpgradeConfig.filters": lambda f: "an upgrade's own HTTP filter chain (filters)",
}


def unsupported_features(bootstrap: bootstrap_pb2.Bootstrap) -> list[str]:
    """One ``path: what`` line per set field, value or extension Sluice does not implement."""
    found: list[str] = []
    _visit(bootstrap, "", found)
    return found


def _visit(message: Message, path: str, found: list[str]) -> None:
    name = message.DESCRIPTOR.full_name
    kind = EXTENSION_KINDS.get(name)
    if kind is not None and not _extension_supported(message):
        found.append(f"{path}: {kind} '{_extension_name(message)}' is not implemented yet")
        return
    supported = SUPPORTED_FIELDS.get(name, frozenset())
    if path.startswith(_CLUSTER_PATH):
        supported = _CLUSTER_FIELDS.get(name, supported)
    for field, value in message.ListFields():
        field_path = join_path(path, field.name)
        if field.name in supported or ALL_FIELDS in supported:
            _visit_field(field, value, field_path, found)
        else:
            found.extend(_describe_unsupported(field, value, field_path))


def _extension_supported(extension: Message) -> bool:
    type_url: str = getattr(extension, "typed_config").type_url  # noqa: B009 - not on Message's type
    return type_url in SUPPORTED_EXTENSIONS


def _extension_name(extension: Message) -> str:
    name: str = getattr(extension, "name")  # noqa: B009 - not on Message's type
    return name


def _visit_field(field: FieldDescriptor, value: Any, path: str, found: list[str]) -> None:
    if field.type == FieldDescriptor.TYPE_ENUM:
        _check_value(field, value, path, found)
    elif field.type != FieldDescriptor.TYPE_MESSAGE:
        return
    elif field.name == "typed_per_filter_config":
        for key, item in value.items():
            if item.type_url not in SUPPORTED_PER_FILTER_CONFIGS:
                found.append(f'{path}["{key}"]: per-route config \'{item.type_url}\' is not implemented yet')
                continue
            inner = unpack_any(item)
            if inner is not None:
                _visit(inner, f'{path}["{key}"]', found)
    elif is_map(field):
        for key, item in value.items():
            if isinstance(item, Message):
                _visit_message(item, f'{path}["{key}"]', found)
    elif is_repeated(field):
        for index, item in enumerate(value):
            _visit_message(item, f"{path}[{index}]", found)
    else:
        _visit_message(value, path, found)


def _check_value(field: FieldDescriptor, value: Any, path: str, found: list[str]) -> None:
    under = _SUPPORTED_VALUES_UNDER.get(path.split("[", 1)[0].split(".", 1)[0])
    allowed = (under or {}).get(field.full_name) or SUPPORTED_VALUES.get(field.full_name)
    if allowed is None:
        return
    values = value if is_repeated(field) else [value]
    for number in values:
        enum_value = enum_type(field).values_by_number.get(number)  # An enum field (see _visit_field).
        shown = enum_value.name if enum_value else str(number)
        if shown not in allowed:
            choices = ", ".join(sorted(allowed))
            found.append(f"{path}: {field.name} {shown} is not implemented yet (supported: {choices})")


def _visit_message(message: Message, path: str, found: list[str]) -> None:
    name = message.DESCRIPTOR.full_name
    if name == ANY:
        _visit_any(message, path, found)
    elif not name.startswith("google.protobuf."):  # Durations, wrappers, Structs are plain values.
        _visit(message, path, found)


def _visit_any(message: Any, path: str, found: list[str]) -> None:
    # An extension wrapper has vouched for its own typed_config already; elsewhere, check the type.
    if message.type_url and message.type_url not in SUPPORTED_EXTENSIONS:
        found.append(f"{path}: extension type '{message.type_url}' is not implemented yet")
        return
    inner = unpack_any(message)
    if inner is not None:
        _visit(inner, path, found)


def _describe_unsupported(field: FieldDescriptor, value: Any, path: str) -> Iterable[str]:
    summary = _FIELD_SUMMARIES.get(field.full_name)
    if summary is not None:
        return [f"{path}: {summary(value)} is not implemented yet"]
    element = field.message_type.full_name if field.message_type else None
    kind = EXTENSION_KINDS.get(element or "")
    if kind is None:
        return [f"{path}: field '{field.name}' is not implemented yet"]
    items = list(enumerate(value)) if is_repeated(field) else [(None, value)]
    return [
        f"{path if i is None else f'{path}[{i}]'}: {kind} '{item.name}' is not implemented yet" for i, item in items
    ]
