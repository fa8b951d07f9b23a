"""``envoy.tracers.zipkin`` config: what is refused, with Envoy's messages where Envoy refuses
(checked with Envoy 1.40's ``--mode validate``), and the drivers shared by equal providers."""

from __future__ import annotations

import re

import pytest

from sluice.config.loader import load_bootstrap, validate
from sluice.errors import ConfigError
from sluice.server import Server

CONFIG = """
static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l
          tracing:
{tracing}
          route_config: {{virtual_hosts: [{{name: a, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: zipkin}}}}]}}]}}
          http_filters:
          - {{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}
  clusters:
  - {{name: zipkin, load_assignment: {{cluster_name: zipkin, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9411}}}}}}}}]}}]}}}}
"""
PROVIDER = """            provider:
              name: {name}
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
{fields}"""
GOOD = "                collector_cluster: zipkin\n                collector_endpoint: /api/v2/spans\n                collector_endpoint_version: HTTP_JSON\n"


def server(fields: str = GOOD, extra: str = "", name: str = "envoy.tracers.zipkin") -> Server:
    tracing = extra + PROVIDER.format(name=name, fields=fields)
    return Server(load_bootstrap(config_yaml=CONFIG.format(tracing=tracing)))


def problems(config: str) -> list[str]:
    """What ``sluice --mode validate`` and a start would say: the loader's errors, the features
    not implemented, then the server's own refusal."""
    try:
        bootstrap, unsupported = validate(config_yaml=config)
    except ConfigError as e:
        return str(e).splitlines()
    if unsupported:
        return unsupported
    try:
        Server(bootstrap)
    except ConfigError as e:
        return [str(e)]
    return []


def provider_problems(fields: str = GOOD, extra: str = "") -> list[str]:
    return problems(CONFIG.format(tracing=extra + PROVIDER.format(name="envoy.tracers.zipkin", fields=fields)))


def test_a_good_provider_makes_one_driver_with_its_stats() -> None:
    s = server()
    assert len(s.tracers) == 1
    assert "tracing.zipkin.spans_sent" in s.store.counters


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (GOOD.replace("zipkin\n", "nope\n", 1), "collector_cluster: unknown cluster 'nope'"),
        ("                collector_cluster: zipkin\n                collector_endpoint_version: HTTP_JSON\n",
         "collector_cluster and collector_endpoint must be specified when not using collector_service"),
        (GOOD.replace("                collector_endpoint_version: HTTP_JSON\n", ""),
         "Using the default now-deprecated value DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE"),
        (GOOD.replace("HTTP_JSON", "GRPC"), "collector_endpoint_version: GRPC is not implemented"),
    ],
)  # fmt: skip
def test_refused_provider_configs_name_the_field(fields: str, message: str) -> None:
    found = provider_problems(fields)
    assert len(found) == 1 and re.search(message, found[0]), found
    assert "tracing.provider.typed_config" in found[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("            custom_tags: [{tag: m, metadata: {kind: {route: {}}, metadata_key: {key: k, path: [{key: p}]}}}]\n",
         "custom_tags\\[0\\].metadata.kind.route: route metadata is not kept by Sluice"),
    ],
)  # fmt: skip
def test_span_options_not_implemented_are_named(extra: str, message: str) -> None:
    found = provider_problems(extra=extra)
    assert len(found) == 1 and re.search(message, found[0]), found


def test_another_tracer_is_named_as_not_implemented() -> None:
    config = CONFIG.format(tracing="""            provider:
              name: envoy.tracers.opentelemetry
              typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig}
""")
    assert problems(config) == [
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.tracing.provider: "
        "tracer 'envoy.tracers.opentelemetry' is not implemented yet"
    ]
