"""sluice.config.loader (with compat and checks): what loads, and the path every error names.

Every error case here was also run through the real Envoy 1.40 (`envoy --mode validate`), which
rejects it too, unless the test says otherwise.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.config import compat
from sluice.config.loader import inspect, load_bootstrap, parse_yaml
from sluice.errors import ConfigError, ConfigErrors

REPO = Path(__file__).resolve().parents[3]
LABS = REPO / "labs"
GOLDEN = REPO / "tests" / "golden"
HCM_PATH = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
ROUTE0 = f"{HCM_PATH}.route_config.virtual_hosts[0].routes[0]"
ROUTER_URL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def envoy_configs() -> list[Path]:
    """Every Envoy bootstrap the course and the golden captures hold."""
    seeds = [p for p in LABS.rglob("*") if p.is_file() and _is_bootstrap(p)]
    golden = [p for d in GOLDEN.rglob("configs") for p in d.iterdir() if _is_bootstrap(p)]
    return sorted(seeds + golden)


def _is_bootstrap(path: Path) -> bool:
    try:
        return "static_resources" in path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, IsADirectoryError):
        return False


BASE: dict[str, Any] = yaml.safe_load(
    """
static_resources:
  listeners:
  - name: l0
    address: {socket_address: {address: 127.0.0.1, port_value: 18080}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: auto
          route_config:
            name: local_route
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: c0}
          http_filters:
          - name: envoy.filters.http.router
  clusters:
  - name: c0
    connect_timeout: 0.25s
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: c0
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18081}}}
"""
)


def config(mutate: Callable[[dict[str, Any]], object] | None = None) -> str:
    """BASE, changed by ``mutate``, as YAML text."""
    data = copy.deepcopy(BASE)
    if mutate is not None:
        mutate(data)
    return yaml.safe_dump(data)


def listener(d: dict[str, Any], i: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = d["static_resources"]["listeners"][i]
    return result


def cluster(d: dict[str, Any], i: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = d["static_resources"]["clusters"][i]
    return result


def hcm(d: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = listener(d)["filter_chains"][0]["filters"][0]["typed_config"]
    return result


def vhost(d: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = hcm(d)["route_config"]["virtual_hosts"][0]
    return result


def route0(d: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = vhost(d)["routes"][0]
    return result


def error_of(text: str) -> str:
    """Every problem of ``text`` (a --config-yaml), one ``path: message`` line each."""
    with pytest.raises(ConfigErrors) as info:
        load_bootstrap(config_yaml=text)
    return "\n".join(p.text for p in info.value.problems)


# --- the course's configs ---------------------------------------------------------------------


def test_the_course_configs_are_there() -> None:
    assert len(envoy_configs()) >= 60, f"expected the course's configs under {LABS} and {GOLDEN}"


@pytest.mark.parametrize("path", envoy_configs(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_course_config_loads(path: Path) -> None:
    bootstrap = load_bootstrap(str(path))
    assert bootstrap.static_resources.listeners


# --- compat pre-pass ----------------------------------------------------------------------------


def test_lowercase_enums_are_accepted() -> None:
    def lower(d: dict[str, Any]) -> None:
        cluster(d).update(type="strict_dns", lb_policy="round_robin")
        route0(d)["match"]["runtime_fraction"] = {"default_value": {"numerator": 5, "denominator": "hundred"}}

    bootstrap = load_bootstrap(config_yaml=config(lower))
    c0 = bootstrap.static_resources.clusters[0]
    assert (c0.type, c0.lb_policy) == (c0.STRICT_DNS, c0.ROUND_ROBIN)


def test_only_enum_fields_are_upper_cased() -> None:
    data = compat.modernize(parse_yaml(config(lambda d: cluster(d).update(type="strict_dns")), "t"))
    assert cluster(data)["type"] == "STRICT_DNS"
    assert hcm(data)["codec_type"] == "AUTO"  # Inside typed_config, via the @type's descriptor.
    assert cluster(data)["name"] == "c0" and hcm(data)["stat_prefix"] == "ingress_http"


def test_unknown_enum_value_names_path_and_value() -> None:
    message = error_of(config(lambda d: cluster(d).update(type="strict_dnss")))
    assert message.startswith("static_resources.clusters[0].type: unknown enum value 'strict_dnss'")


def test_router_by_name_gets_its_type() -> None:
    bootstrap = load_bootstrap(config_yaml=config())
    data = compat.modernize(BASE)
    assert hcm(data)["http_filters"][0]["typed_config"] == {"@type": ROUTER_URL}
    assert bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.type_url


def test_empty_typed_config_is_dropped_then_typed_by_name() -> None:
    data = compat.modernize(config_data(lambda d: hcm(d)["http_filters"][0].update(typed_config={})))
    assert hcm(data)["http_filters"][0]["typed_config"] == {"@type": ROUTER_URL}


def test_unknown_name_without_typed_config_is_an_error() -> None:
    def add(d: dict[str, Any]) -> None:
        hcm(d)["http_filters"].insert(0, {"name": "acme.filters.http.magic", "typed_config": {}})

    message = error_of(config(add))
    assert message.startswith(f"{HCM_PATH}.http_filters[0]: no typed_config for extension 'acme.filters.http.magic'")


@pytest.mark.parametrize(
    ("name", "type_name"),
    [
        ("envoy.filters.http.router", "envoy.extensions.filters.http.router.v3.Router"),
        ("envoy.statsd", "envoy.config.metrics.v3.StatsdSink"),
        ("envoy.stat_sinks.statsd", "envoy.config.metrics.v3.StatsdSink"),
        ("envoy.zipkin", "envoy.config.trace.v3.ZipkinConfig"),
        ("envoy.file_access_log", "envoy.extensions.access_loggers.file.v3.FileAccessLog"),
        ("envoy.access_loggers.stdout", "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"),
    ],
)
def test_type_url_for_name(name: str, type_name: str) -> None:
    assert compat.type_url_for_name(name) == f"type.googleapis.com/{type_name}"


def test_type_url_for_unknown_name_is_none() -> None:
    assert compat.type_url_for_name("acme.magic") is None


def test_filter_chains_mapping_is_wrapped_in_a_list() -> None:
    bootstrap = load_bootstrap(
        config_yaml=config(lambda d: listener(d).update(filter_chains=listener(d)["filter_chains"][0]))
    )
    assert len(bootstrap.static_resources.listeners[0].filter_chains) == 1


def test_any_list_given_a_single_mapping_is_a_one_item_list() -> None:
    # As Envoy 1.40, which takes a lone value for any repeated field (tests/integration/test_validate_forms.py).
    bootstrap = load_bootstrap(config_yaml=config(lambda d: d["static_resources"].update(clusters=cluster(d))))
    assert [c.name for c in bootstrap.static_resources.clusters] == ["c0"]


def test_bool_written_as_a_string_is_accepted() -> None:
    bootstrap = load_bootstrap(config_yaml=config(lambda d: hcm(d).update(use_remote_address="true")))
    typed_config = bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    assert compat.unpack_any(typed_config).use_remote_address.value is True  # type: ignore[union-attr]


def test_modernize_leaves_its_input_alone() -> None:
    data = config_data(lambda d: cluster(d).update(type="strict_dns"))
    compat.modernize(data)
    assert cluster(data)["type"] == "strict_dns"


def config_data(mutate: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    mutate(data)
    return data


# --- schema errors --------------------------------------------------------------------------------


def test_misspelled_field_names_its_path() -> None:
    message = error_of(config(lambda d: cluster(d).update(lb_polcy="ROUND_ROBIN")))
    assert message.startswith("static_resources.clusters[0].lb_polcy: unknown field")


def test_misspelled_field_inside_typed_config() -> None:
    message = error_of(config(lambda d: hcm(d).update(stat_prefx="x")))
    assert message.startswith(f"{HCM_PATH}.stat_prefx: unknown field")


def test_camel_case_json_names_are_accepted() -> None:
    bootstrap = load_bootstrap(
        config_yaml=config(lambda d: cluster(d).update(connectTimeout=cluster(d).pop("connect_timeout")))
    )
    assert bootstrap.static_resources.clusters[0].connect_timeout.ToMilliseconds() == 250


def test_bad_duration() -> None:
    message = error_of(config(lambda d: cluster(d).update(connect_timeout="5x")))
    assert message.startswith("static_resources.clusters[0].connect_timeout: invalid duration '5x'")


def test_integer_duration_is_refused_clearly() -> None:
    message = error_of(config(lambda d: cluster(d).update(connect_timeout=5)))
    assert message == "static_resources.clusters[0].connect_timeout: expected a duration like '0.25s', got 5"


def test_unknown_type_url() -> None:
    def add(d: dict[str, Any]) -> None:
        hcm(d)["http_filters"].insert(0, {"name": "x", "typed_config": {"@type": "type.googleapis.com/acme.Magic"}})

    message = error_of(config(add))
    assert (
        message == f"{HCM_PATH}.http_filters[0].typed_config: unknown extension type 'type.googleapis.com/acme.Magic'"
    )


def test_number_in_a_string_field() -> None:
    message = error_of(config(lambda d: vhost(d).update(request_headers_to_add=[{"header": {"key": "x", "value": 5}}])))
    assert message.startswith(
        f"{HCM_PATH}.route_config.virtual_hosts[0].request_headers_to_add[0].header.value: expected a string"
    )


def test_two_members_of_a_oneof() -> None:
    message = error_of(config(lambda d: route0(d).update(redirect={"path_redirect": "/x"})))
    assert message.startswith(f"{ROUTE0}: only one of route, redirect may be set")


def test_an_extension_envoy_knows_but_sluice_does_not_import_still_parses() -> None:
    # Resolved by importing its package on demand; support.py then reports it as not implemented.
    url = "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck"
    filt = {"name": "envoy.filters.http.health_check", "typed_config": {"@type": url, "pass_through_mode": False}}
    bootstrap = load_bootstrap(config_yaml=config(lambda d: hcm(d)["http_filters"].insert(0, filt)))
    assert bootstrap.static_resources.listeners


def test_parse_dict_errors_are_translated_too() -> None:
    # An Any holding a well-known type is left to ParseDict; its error still gets a path.
    any_duration = {"@type": "type.googleapis.com/google.protobuf.Duration", "value": 5}
    message = error_of(
        config(lambda d: listener(d)["filter_chains"][0]["filters"][0].update(typed_config=any_duration))
    )
    assert message.startswith("static_resources.listeners[0].filter_chains[0].filters[0].typed_config.value: ")


# --- YAML ------------------------------------------------------------------------------------------


def test_yaml_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("static_resources:\n  clusters:\n  - name: [a\n")
    with pytest.raises(ConfigError, match=rf"^{path}:4:1: invalid YAML"):
        load_bootstrap(str(path))


def test_repeated_key_last_wins() -> None:
    text = config().replace("stat_prefix: ingress_http", "stat_prefix: first\n          stat_prefix: second")
    assert "second" in text
    hcm_any = load_bootstrap(config_yaml=text).static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    assert b"second" in hcm_any.value and b"first" not in hcm_any.value


def test_yaml_1_1_base_60_and_dates_stay_strings() -> None:
    assert parse_yaml("a: 1:30\nb: 2001-12-14\nc: 12\n", "t") == {"a": "1:30", "b": "2001-12-14", "c": 12}


def test_json_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(BASE))
    assert load_bootstrap(str(path)).static_resources.clusters[0].name == "c0"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unable to read file"):
        load_bootstrap(str(tmp_path / "nope.yaml"))


def test_needs_a_source() -> None:
    with pytest.raises(ConfigError):
        load_bootstrap()


# --- --config-yaml merge ---------------------------------------------------------------------------


def test_config_yaml_merges_like_protobuf_merge_from(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(
        config(lambda d: d.update(admin={"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}}))
    )
    override = """
admin: {address: {socket_address: {port_value: 9902}}}
static_resources:
  clusters:
  - name: c1
    load_assignment: {cluster_name: c1}
"""
    bootstrap = load_bootstrap(str(path), override)
    assert [c.name for c in bootstrap.static_resources.clusters] == ["c0", "c1"]  # Appended.
    socket = bootstrap.admin.address.socket_address
    assert (socket.address, socket.port_value) == ("127.0.0.1", 9902)  # Merged, scalar overwritten.


def test_checks_run_on_the_merged_bootstrap(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(config(lambda d: route0(d)["route"].update(cluster="late")))
    with pytest.raises(ConfigError, match="unknown cluster 'late'"):
        load_bootstrap(str(path))
    bootstrap = load_bootstrap(str(path), "static_resources: {clusters: [{name: late}]}")
    assert len(bootstrap.static_resources.clusters) == 2


# --- checks (protoc-gen-validate rules and Envoy's own) ---------------------------------------------


def endpoint_socket(d: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = cluster(d)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    return result["address"]["socket_address"]  # type: ignore[no-any-return]


ENDPOINT = "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint"
VHOST0 = f"{HCM_PATH}.route_config.virtual_hosts[0]"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            lambda d: cluster(d).update(name=""),
            "static_resources.clusters[0].name: value length must be at least 1",
            id="cluster-name",
        ),
        pytest.param(
            lambda d: cluster(d).update(connect_timeout="0s"),
            "static_resources.clusters[0].connect_timeout: value must be greater than 0s",
            id="connect-timeout",
        ),
        pytest.param(
            lambda d: listener(d).pop("address"),
            "static_resources.listeners[0].address: a listener needs an address",
            id="listener-address",
        ),
        pytest.param(
            lambda d: listener(d).update(filter_chains=[]),
            "static_resources.listeners[0].filter_chains: no filter chains specified",
            id="filter-chains",
        ),
        pytest.param(
            lambda d: vhost(d).update(domains=[]),
            f"{VHOST0}.domains: value must contain at least 1 item(s)",
            id="domains",
        ),
        pytest.param(
            lambda d: route0(d).pop("route"),
            f"{ROUTE0}: one of route, redirect, direct_response",
            id="route-action",
        ),
        pytest.param(
            lambda d: route0(d).update(match={}),
            f"{ROUTE0}.match: one of prefix, path, safe_regex",
            id="path-specifier",
        ),
        pytest.param(
            lambda d: hcm(d).update(stat_prefix=""),
            f"{HCM_PATH}.stat_prefix: value length must be at least 1",
            id="stat-prefix",
        ),
        pytest.param(
            lambda d: endpoint_socket(d).update(port_value=70000),
            f"{ENDPOINT}.address.socket_address.port_value: value must be less than or equal to 65535",
            id="port",
        ),
        pytest.param(
            lambda d: endpoint_socket(d).pop("port_value"),
            f"{ENDPOINT}.address.socket_address: one of port_value, named_port is required",
            id="no-port",
        ),
    ],
)
def test_constraint_errors(mutate: Callable[[dict[str, Any]], object], expected: str) -> None:
    assert error_of(config(mutate)).startswith(expected)


def test_fractional_percent_above_denominator_is_not_an_error() -> None:
    # Envoy clamps it to 100%.
    fraction = {"default_value": {"numerator": 500, "denominator": "HUNDRED"}}
    load_bootstrap(config_yaml=config(lambda d: route0(d)["match"].update(runtime_fraction=fraction)))


def test_duplicate_cluster() -> None:
    message = error_of(config(lambda d: d["static_resources"]["clusters"].append(copy.deepcopy(cluster(d)))))
    assert message == "static_resources.clusters[1].name: duplicate cluster 'c0'"


def test_duplicate_listener_name_keeps_the_first_with_a_warning() -> None:
    # As Envoy 1.40: "duplicate/locked listener 'l0'. no add/update" (a debug line there).
    def add(d: dict[str, Any]) -> None:
        second = copy.deepcopy(listener(d))
        second["address"]["socket_address"]["port_value"] = 18090
        d["static_resources"]["listeners"].append(second)

    found = inspect(config_yaml=config(add))
    assert found.errors == [] and found.bootstrap is not None
    assert [lst.address.socket_address.port_value for lst in found.bootstrap.static_resources.listeners] == [18080]
    (warning,) = found.warnings
    assert str(warning).startswith("--config-yaml: static_resources.listeners[1]: duplicate listener name 'l0'")
    assert "ignored, as Envoy does" in str(warning)


def test_duplicate_listener_address() -> None:
    def add(d: dict[str, Any]) -> None:
        d["static_resources"]["listeners"].append(dict(copy.deepcopy(listener(d)), name="l1"))

    assert error_of(config(add)) == (
        "static_resources.listeners[1].address: listener 'l1' has duplicate address '127.0.0.1:18080' "
        "as existing listener 'l0'"
    )


def test_route_to_missing_cluster() -> None:
    message = error_of(config(lambda d: route0(d)["route"].update(cluster="nope")))
    assert message == f"{ROUTE0}.route.cluster: unknown cluster 'nope'"


def test_validate_clusters_false_skips_the_cluster_check() -> None:
    def change(d: dict[str, Any]) -> None:
        route0(d)["route"]["cluster"] = "nope"
        hcm(d)["route_config"]["validate_clusters"] = False

    load_bootstrap(config_yaml=config(change))


def test_weighted_and_shadow_clusters_must_exist() -> None:
    weighted = {"weighted_clusters": {"clusters": [{"name": "nope", "weight": 1}]}}
    message = error_of(config(lambda d: route0(d).update(route=weighted)))
    assert message == f"{ROUTE0}.route.weighted_clusters.clusters[0].name: unknown weighted cluster 'nope'"
    mirror = {"cluster": "c0", "request_mirror_policies": [{"cluster": "gone"}]}
    message = error_of(config(lambda d: route0(d).update(route=mirror)))
    assert message == f"{ROUTE0}.route.request_mirror_policies[0].cluster: unknown shadow cluster 'gone'"


def test_weights_summing_to_zero() -> None:
    weighted = {"weighted_clusters": {"clusters": [{"name": "c0", "weight": 0}]}}
    message = error_of(config(lambda d: route0(d).update(route=weighted)))
    assert message.startswith(f"{ROUTE0}.route.weighted_clusters: sum of weights")


@pytest.mark.parametrize(
    ("match", "problem"),
    [
        ({"safe_regex": {"regex": "(abc"}}, "missing )"),
        ({"safe_regex": {"regex": "a(?=b)"}}, "invalid perl operator: (?="),
        (
            {"headers": [{"name": "x", "string_match": {"safe_regex": {"regex": "*a"}}}], "prefix": "/"},
            "nothing to repeat",
        ),
    ],
)
def test_bad_regex(match: dict[str, Any], problem: str) -> None:
    message = error_of(config(lambda d: route0(d).update(match=match)))
    assert message.startswith(f"{ROUTE0}.match.")
    assert ".regex: invalid regex" in message and problem in message


@pytest.mark.parametrize("regex", [r"\pL+\z", "[[:alpha:]]+", "(?P<x>a)(?<y>b)", "^/re/[0-9]+$"])
def test_re2_syntax_python_lacks_is_accepted(regex: str) -> None:
    load_bootstrap(config_yaml=config(lambda d: route0(d).update(match={"safe_regex": {"regex": regex}})))


def test_duplicate_domains() -> None:
    def add(d: dict[str, Any]) -> None:
        vhosts = hcm(d)["route_config"]["virtual_hosts"]
        vhosts.append(dict(copy.deepcopy(vhost(d)), name="vh2", domains=["a.com", "A.com"]))

    message = error_of(config(add))
    assert message.startswith(f"{HCM_PATH}.route_config.virtual_hosts[1].domains[1]: duplicate domain 'A.com'")


def test_router_must_be_last() -> None:
    cors = {"name": "envoy.filters.http.cors"}
    message = error_of(config(lambda d: hcm(d)["http_filters"].append(cors)))
    assert message.startswith(
        f"{HCM_PATH}.http_filters[0]: terminal filter 'envoy.filters.http.router' must be the last"
    )
    message = error_of(config(lambda d: hcm(d).update(http_filters=[cors])))
    assert message.startswith(f"{HCM_PATH}.http_filters[0]: non-terminal filter 'envoy.filters.http.cors' is the last")


def test_host_names_only_in_dns_clusters() -> None:
    def hostname(d: dict[str, Any]) -> None:
        endpoint = cluster(d)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        endpoint["address"]["socket_address"]["address"] = "backend"

    message = error_of(config(hostname))
    assert "socket_address.address: malformed IP address 'backend'" in message
    load_bootstrap(config_yaml=config(lambda d: (hostname(d), cluster(d).update(type="STRICT_DNS"))))
    message = error_of(config(lambda d: listener(d)["address"]["socket_address"].update(address="localhost")))
    assert message.startswith("static_resources.listeners[0].address.socket_address.address: malformed IP address")


def test_zipkin_collector_cluster_must_exist() -> None:
    tracing = {
        "provider": {
            "name": "envoy.tracers.zipkin",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                "collector_cluster": "zipkin",
                "collector_endpoint": "/api/v2/spans",
            },
        }
    }
    message = error_of(config(lambda d: hcm(d).update(tracing=tracing)))
    assert message == f"{HCM_PATH}.tracing.provider.typed_config.collector_cluster: unknown cluster 'zipkin'"
