"""sluice.config.support: the "what Sluice implements" tables and the lines they produce."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from sluice.config import support
from sluice.config.compat import descriptor_for_type_url
from sluice.config.loader import load_bootstrap
from sluice.config.support import (
    ALL_FIELDS,
    SUPPORTED_EXTENSIONS,
    SUPPORTED_FIELDS,
    SUPPORTED_VALUES,
    unsupported_features,
    validate,
)

from .test_loader import HCM_PATH, LABS, ROUTER_URL, cluster, config, hcm, route0


def lines_for(path: Path) -> list[str]:
    return unsupported_features(load_bootstrap(str(path)))


@pytest.mark.parametrize("lab", ["http-traffic-shifting", "http-traffic-splitting", "http-request-mirror"])
def test_part_one_labs_need_nothing_more(lab: str) -> None:
    assert lines_for(LABS / lab / "front-envoy.yaml") == []


def test_fault_injection_is_fully_supported() -> None:
    for name in ("service-envoy-fault-injection-abort.yaml", "service-envoy-fault-injection-delay.yaml"):
        assert lines_for(LABS / "fault-injection" / name) == []


@pytest.mark.parametrize("lab", ["zipkin-tracing", "jaeger-tracing"])
@pytest.mark.parametrize("service", ["front_envoy", "service_a", "service_b", "service_c"])
def test_the_tracing_labs_zipkin_tracer_is_supported(lab: str, service: str) -> None:
    assert lines_for(LABS / lab / service / "envoy-config.yaml") == []


@pytest.mark.parametrize(
    "path",
    ["statsd-sink-and-prometheus/front-envoy.yaml", "statsd-sink-and-prometheus/service_blue/service-envoy.yaml",
     "monitoring/front_envoy/envoy-config.yaml", "monitoring/service_a/envoy-config.yaml"],
)
def test_statsd_sink_and_add_user_agent_are_supported(path: str) -> None:
    assert lines_for(LABS / path) == []


def _with_sink(sink: dict[str, Any]) -> str:
    return config(lambda d: d.update(stats_sinks=[sink], stats_flush_interval="1s"))


def test_a_udp_statsd_address_is_supported_but_not_other_sinks() -> None:
    udp = {"socket_address": {"address": "127.0.0.1", "port_value": 9125, "protocol": "UDP"}}
    statsd = {"name": "envoy.stat_sinks.statsd",
              "typed_config": {"@type": "type.googleapis.com/envoy.config.metrics.v3.StatsdSink", "address": udp}}
    assert unsupported_features(load_bootstrap(config_yaml=_with_sink(statsd))) == []
    dog = {"name": "envoy.stat_sinks.dog_statsd",
           "typed_config": {"@type": "type.googleapis.com/envoy.config.metrics.v3.DogStatsdSink", "address": udp}}
    assert unsupported_features(load_bootstrap(config_yaml=_with_sink(dog))) == [
        "stats_sinks[0]: stats sink 'envoy.stat_sinks.dog_statsd' is not implemented yet"
    ]


@pytest.mark.parametrize("name", ["front-envoy.yaml", "front-envoy.yaml.2"])
def test_the_access_log_labs_configs_are_supported(name: str) -> None:
    assert lines_for(LABS / "access-log" / name) == []


def test_an_access_logger_sluice_lacks_is_named() -> None:
    from envoy.extensions.access_loggers.grpc.v3 import als_pb2  # noqa: F401 (registers the type)

    grpc_logger = {"name": "envoy.access_loggers.http_grpc", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
        "common_config": {"log_name": "x", "transport_api_version": "V3",
                          "grpc_service": {"envoy_grpc": {"cluster_name": "c"}}}}}  # fmt: skip
    bootstrap = load_bootstrap(config_yaml=config(lambda d: hcm(d).update(access_log=[grpc_logger])))
    assert unsupported_features(bootstrap) == [
        f"{HCM_PATH}.access_log[0]: access logger 'envoy.access_loggers.http_grpc' is not implemented yet"
    ]


def test_unsupported_enum_value_is_reported() -> None:
    bootstrap = load_bootstrap(config_yaml=config(lambda d: cluster(d).update(lb_policy="MAGLEV")))
    assert unsupported_features(bootstrap) == [
        "static_resources.clusters[0].lb_policy: lb_policy MAGLEV is not implemented yet "
        "(supported: LEAST_REQUEST, RANDOM, ROUND_ROBIN)"
    ]
    bootstrap = load_bootstrap(config_yaml=config(lambda d: cluster(d).update(lb_policy="LEAST_REQUEST")))
    assert unsupported_features(bootstrap) == []


def test_unsupported_field_is_reported_once_not_descended() -> None:
    hedge = {"initial_requests": 2, "hedge_on_per_try_timeout": True}
    bootstrap = load_bootstrap(config_yaml=config(lambda d: route0(d)["route"].update(hedge_policy=hedge)))
    prefix = f"{HCM_PATH}.route_config.virtual_hosts[0].routes[0].route.hedge_policy"
    assert unsupported_features(bootstrap) == [f"{prefix}: field 'hedge_policy' is not implemented yet"]


def test_retry_policy_reports_only_what_is_not_implemented() -> None:
    retry = {
        "retry_on": "5xx",
        "num_retries": 3,
        "retry_host_predicate": [{"name": "x"}],
        "retry_priority": {"name": "envoy.retry_priorities.previous_priorities"},
        "per_try_timeout": "1s",
    }
    bootstrap = load_bootstrap(config_yaml=config(lambda d: route0(d)["route"].update(retry_policy=retry)))
    prefix = f"{HCM_PATH}.route_config.virtual_hosts[0].routes[0].route.retry_policy"
    assert unsupported_features(bootstrap) == [
        f"{prefix}.retry_priority: retry priority 'envoy.retry_priorities.previous_priorities' is not implemented yet",
        f"{prefix}.retry_host_predicate[0]: retry host predicate 'x' is not implemented yet",
    ]


def test_unsupported_hcm_field() -> None:
    bootstrap = load_bootstrap(config_yaml=config(lambda d: hcm(d).update(via="edge")))
    assert unsupported_features(bootstrap) == [
        f"{HCM_PATH}.via: field 'via' is not implemented yet"
    ]


def test_upgrade_configs_are_supported_but_not_upgrade_filters_nor_connect_config() -> None:
    ws = [{"upgrade_type": "websocket"}, {"upgrade_type": "h2c", "enabled": False}]
    route_ws = [{"upgrade_type": "WebSocket", "enabled": False}]

    def plain(d: dict[str, Any]) -> None:
        hcm(d)["upgrade_configs"] = ws
        route0(d)["route"]["upgrade_configs"] = route_ws

    assert unsupported_features(load_bootstrap(config_yaml=config(plain))) == []
    router = {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_URL}}

    def unimplemented(d: dict[str, Any]) -> None:
        hcm(d)["upgrade_configs"] = [{"upgrade_type": "websocket", "filters": [router]}]
        route0(d)["route"]["upgrade_configs"] = [{"upgrade_type": "CONNECT", "connect_config": {}}]

    assert unsupported_features(load_bootstrap(config_yaml=config(unimplemented))) == [
        f"{HCM_PATH}.route_config.virtual_hosts[0].routes[0].route.upgrade_configs[0].connect_config: "
        "field 'connect_config' is not implemented yet",
        f"{HCM_PATH}.upgrade_configs[0].filters: an upgrade's own HTTP filter chain (filters) is not implemented yet",
    ]


def test_header_key_format_takes_proper_case_words_but_not_a_stateful_formatter() -> None:
    def fmt(key_format: dict[str, Any]) -> list[str]:
        def edit(d: dict[str, Any]) -> None:
            hcm(d)["http_protocol_options"] = {"header_key_format": key_format, "enable_trailers": True}

        return unsupported_features(load_bootstrap(config_yaml=config(edit)))

    assert fmt({"proper_case_words": {}}) == []
    formatter = {"name": "preserve_case", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.http.header_formatters.preserve_case.v3.PreserveCaseFormatterConfig"}}
    assert fmt({"stateful_formatter": formatter}) == [
        f"{HCM_PATH}.http_protocol_options.header_key_format.stateful_formatter: "
        "field 'stateful_formatter' is not implemented yet"
    ]


def test_redirect_action_supports_all_fields() -> None:
    redirect = {"https_redirect": True, "host_redirect": "a.example", "response_code": "FOUND", "strip_query": True}

    def to_redirect(d: dict[str, Any]) -> None:
        del route0(d)["route"]
        route0(d)["redirect"] = redirect

    bootstrap = load_bootstrap(config_yaml=config(to_redirect))
    assert unsupported_features(bootstrap) == []


def test_validate_returns_bootstrap_and_lines() -> None:
    bootstrap, lines = validate(config_yaml=config(lambda d: cluster(d).update(lb_policy="MAGLEV")))
    assert bootstrap.static_resources.clusters[0].name == "c0"
    assert len(lines) == 1 and support.validate is validate


# --- the tables themselves ----------------------------------------------------------------------------


def _descriptor(name: str) -> Descriptor:
    return descriptor_pool.Default().FindMessageTypeByName(name)


@pytest.mark.parametrize("message", sorted(SUPPORTED_FIELDS))
def test_supported_fields_exist(message: str) -> None:
    fields = set(_descriptor(message).fields_by_name)
    assert SUPPORTED_FIELDS[message] - {ALL_FIELDS} <= fields


@pytest.mark.parametrize("message", sorted(SUPPORTED_FIELDS))
def test_every_message_a_supported_field_leads_to_has_a_table_entry(message: str) -> None:
    """Else everything set in it would be reported: a missing line, not a missing feature."""
    descriptor = _descriptor(message)
    names = SUPPORTED_FIELDS[message]
    fields = descriptor.fields if ALL_FIELDS in names else [descriptor.fields_by_name[n] for n in names]
    for field in fields:
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        target = field.message_type.full_name
        if target.startswith("google.protobuf."):
            continue
        assert target in SUPPORTED_FIELDS, f"{message}.{field.name} leads to {target}, not in SUPPORTED_FIELDS"


def test_supported_values_name_enum_values() -> None:
    for full_name, values in SUPPORTED_VALUES.items():
        message, field_name = full_name.rsplit(".", 1)
        enum = _descriptor(message).fields_by_name[field_name].enum_type
        assert values <= set(enum.values_by_name), full_name


def test_supported_extensions_resolve() -> None:
    for type_url in SUPPORTED_EXTENSIONS:
        descriptor = descriptor_for_type_url(type_url)
        assert descriptor is not None and descriptor.full_name in SUPPORTED_FIELDS
