"""Every problem at once: schema errors, PGV rules, cross-checks and unimplemented features
collected in one pass, each ``SOURCE: PATH: message``; Envoy's input limits; the single-value
forms Envoy 1.40 reads as lists; fields newer than the loaded schema.

(What Envoy itself says about the same inputs is checked in tests/integration/test_validate_forms.py.)
"""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sluice.config import schema_gaps
from sluice.config.loader import MAX_NESTING, inspect, load_bootstrap
from sluice.errors import ConfigErrors, Problem

from .test_loader import HCM_PATH, cluster, config, hcm, listener, route0, vhost


def texts(problems: list[Problem]) -> list[str]:
    return [p.text for p in problems]


# --- every problem in one pass -----------------------------------------------------------------


def test_schema_errors_are_all_reported_in_order_with_their_paths() -> None:
    def mutate(d: dict[str, Any]) -> None:
        cluster(d).update(lb_polcy="ROUND_ROBIN", connect_timeout="5x")
        listener(d)["address"]["socket_address"]["protocol"] = "SCTP"
        hcm(d)["stat_prefx"] = "x"

    found = inspect(config_yaml=config(mutate))
    assert texts(found.errors) == [  # In the file's order (config() writes keys sorted).
        "static_resources.clusters[0].connect_timeout: invalid duration '5x'",
        "static_resources.clusters[0].lb_polcy: unknown field",
        "static_resources.listeners[0].address.socket_address.protocol: unknown enum value 'SCTP' (expected one of TCP, UDP)",
        f"{HCM_PATH}.stat_prefx: unknown field",
    ]
    assert found.bootstrap is not None  # The rest of the config was still parsed.


def test_schema_pgv_cross_checks_and_unimplemented_together(tmp_path: Path) -> None:
    def mutate(d: dict[str, Any]) -> None:
        cluster(d)["typo"] = 1  # schema
        cluster(d)["connect_timeout"] = "-1s"  # PGV: gt 0
        route0(d)["route"]["cluster"] = "nope"  # cross-check
        cluster(d)["lb_policy"] = "MAGLEV"  # valid, not implemented

    path = tmp_path / "envoy.yaml"
    path.write_text(config(mutate))
    found = inspect(str(path))
    assert [str(p) for p in found.errors] == [
        f"{path}: static_resources.clusters[0].typo: unknown field",
        f"{path}: static_resources.clusters[0].connect_timeout: value must be greater than 0s",
        f"{path}: {HCM_PATH}.route_config.virtual_hosts[0].routes[0].route.cluster: unknown cluster 'nope'",
    ]
    assert len(found.unsupported) == 1 and "lb_policy" in found.unsupported[0].text
    with pytest.raises(ConfigErrors) as info:
        load_bootstrap(str(path))
    assert len(info.value.problems) == 3 and str(info.value).count("\n") == 2


def test_every_bad_item_of_a_list_is_reported_and_later_paths_stay_true() -> None:
    def mutate(d: dict[str, Any]) -> None:
        second, third = copy.deepcopy(cluster(d)), copy.deepcopy(cluster(d))
        second.update(name="c1", bogus=True)
        third["name"] = "c0"  # a duplicate of clusters[0]: found by the cross-check after parsing
        d["static_resources"]["clusters"] += [second, third, "not a cluster"]

    found = inspect(config_yaml=config(mutate))
    assert texts(found.errors) == [
        "static_resources.clusters[1].bogus: unknown field",
        "static_resources.clusters[3]: expected a mapping, got 'not a cluster'",
        "static_resources.clusters[2].name: duplicate cluster 'c0'",
    ]


def test_a_pruned_value_reports_once_not_its_consequences() -> None:
    def mutate(d: dict[str, Any]) -> None:
        hcm(d)["http_filters"].insert(0, {"name": "x", "typed_config": {"@type": "type.googleapis.com/acme.Magic"}})
        route0(d)["match"] = 5  # pruned: the PGV "match is required" that follows is the same mistake

    found = inspect(config_yaml=config(mutate))
    assert texts(found.errors) == [
        f"{HCM_PATH}.http_filters[0].typed_config: unknown extension type 'type.googleapis.com/acme.Magic'",
        f"{HCM_PATH}.route_config.virtual_hosts[0].routes[0].match: expected a mapping, got 5",
    ]
    assert found.unsupported == []


def test_one_of_a_oneof_is_kept_and_the_rest_still_checked() -> None:
    found = inspect(config_yaml=config(lambda d: route0(d).update(redirect={"path_redirect": "/x"}, nonsense=1)))
    assert texts(found.errors) == [
        f"{HCM_PATH}.route_config.virtual_hosts[0].routes[0].nonsense: unknown field",
        f"{HCM_PATH}.route_config.virtual_hosts[0].routes[0]: only one of route, redirect may be set",
    ]


def test_problems_name_their_source(tmp_path: Path) -> None:
    path = tmp_path / "base.yaml"
    path.write_text(config(lambda d: cluster(d).update(bad_in_file=1)))
    found = inspect(str(path), "static_resources: {clusters: [{name: c9, bad_in_yaml: 1}]}")
    assert [str(p) for p in found.errors] == [
        f"{path}: static_resources.clusters[0].bad_in_file: unknown field",
        "--config-yaml: static_resources.clusters[0].bad_in_yaml: unknown field",
    ]


# --- any input: a clear message, never a traceback -----------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the configuration is empty (Envoy: Unable to convert YAML as JSON)"),
        (b"# only a comment\n", "the configuration is empty (Envoy: Unable to convert YAML as JSON)"),
        (b"- a\n", "expected a mapping at the top level, got a list"),
        (b"foo\n", "expected a mapping at the top level, got 'foo'"),
        (b"\xcd\x00\xff binary", "not UTF-8 text (a binary file?): byte 0 is 0xcd"),
        (b"a: [1, 2\n", "invalid YAML"),
        (b"admin: 5\n", "admin: expected a mapping, got 5"),
    ],
    ids=["empty", "comment-only", "list", "scalar", "binary", "bad-yaml", "wrong-type"],
)
def test_bad_input_gets_one_clear_problem(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "in.yaml"
    path.write_bytes(content)
    found = inspect(str(path))
    assert len(found.errors) == 1 and expected in str(found.errors[0]) and str(found.errors[0]).startswith(str(path))


def test_an_empty_mapping_is_a_valid_empty_bootstrap() -> None:
    found = inspect(config_yaml="{}")
    assert found.errors == [] and found.bootstrap is not None and not found.bootstrap.static_resources.listeners


def nested(depth: int, kind: str = "list") -> str:
    """A bootstrap whose node metadata nests ``depth`` mappings and lists in all, the top included."""
    inner = depth - 3  # the top mapping, node and metadata
    opening, closing = ("[" * inner, "]" * inner) if kind == "list" else ("{a: " * inner, "}" * inner)
    return f"node: {{metadata: {{a: {opening}{closing}}}}}\n"


@pytest.mark.parametrize("kind", ["list", "map"])
def test_nesting_is_limited_where_envoy_limits_it(kind: str) -> None:
    assert inspect(config_yaml=nested(MAX_NESTING, kind)).errors == []
    (problem,) = inspect(config_yaml=nested(MAX_NESTING + 1, kind)).errors
    assert str(problem).startswith("--config-yaml:1:") and "nested deeper than 100 levels" in str(problem)


def test_very_deep_nesting_is_refused_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    (problem,) = inspect(str(path)).errors
    assert str(problem).startswith(f"{path}:1:")


def test_alias_bombs_are_refused_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "node:\n  metadata:\n" + "".join(f"    {line}\n" for line in lines)
    started = time.monotonic()
    (problem,) = inspect(config_yaml=text).errors
    assert "YAML aliases expand this document past" in str(problem)
    assert time.monotonic() - started < 30  # refused before expanding 10^9 values (a bound, not a benchmark)


def test_a_large_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(f"node: {{id: {'x' * 5_000_000}}}\n")
    found = inspect(str(path))
    assert found.errors == [] and found.bootstrap is not None and len(found.bootstrap.node.id) == 5_000_000


# --- forms Envoy 1.40 reads ------------------------------------------------------------------


def test_a_single_mapping_is_a_one_item_list() -> None:
    def mutate(d: dict[str, Any]) -> None:
        hcm(d)["http_filters"] = hcm(d)["http_filters"][0]
        d["static_resources"]["listeners"] = listener(d)
        endpoints = cluster(d)["load_assignment"]["endpoints"][0]
        endpoints["lb_endpoints"] = endpoints["lb_endpoints"][0]

    bootstrap = load_bootstrap(config_yaml=config(mutate))
    assert len(bootstrap.static_resources.listeners) == 1
    assert len(bootstrap.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints) == 1


def test_a_scalar_is_a_one_item_list_of_scalars() -> None:
    bootstrap = load_bootstrap(config_yaml=config(lambda d: vhost(d).update(domains="*")))
    from sluice.config.compat import unpack_any

    hcm_config: Any = unpack_any(bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config)
    assert list(hcm_config.route_config.virtual_hosts[0].domains) == ["*"]


def test_wrong_lone_values_are_still_errors() -> None:
    assert texts(inspect(config_yaml=config(lambda d: hcm(d).update(http_filters="x"))).errors) == [
        f"{HCM_PATH}.http_filters: expected a list, got 'x'"
    ]
    assert texts(inspect(config_yaml=config(lambda d: vhost(d).update(domains={"a": "b"}))).errors) == [
        f"{HCM_PATH}.route_config.virtual_hosts[0].domains: expected a list, got a mapping"
    ]


@pytest.mark.parametrize(
    ("written", "seconds", "nanos"),
    [({"seconds": 5}, 5, 0), ({"seconds": 1, "nanos": 500_000_000}, 1, 500_000_000), ({"nanos": 250_000_000}, 0, 250_000_000)],
)
def test_a_duration_written_as_an_object(written: dict[str, int], seconds: int, nanos: int) -> None:
    timeout = load_bootstrap(config_yaml=config(lambda d: cluster(d).update(connect_timeout=written))).static_resources.clusters[0].connect_timeout
    assert (timeout.seconds, timeout.nanos) == (seconds, nanos)


def test_a_duration_object_with_other_keys_is_an_error() -> None:
    (problem,) = inspect(config_yaml=config(lambda d: cluster(d).update(connect_timeout={"secs": 5}))).errors
    assert problem.text == "static_resources.clusters[0].connect_timeout: expected a duration like '0.25s', got a mapping"


# --- listeners Envoy accepts that Sluice does not run ------------------------------------------


def test_an_internal_listener_is_not_implemented_not_invalid() -> None:
    def mutate(d: dict[str, Any]) -> None:
        del listener(d)["address"]
        listener(d)["internal_listener"] = {}
        url = "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
        d["bootstrap_extensions"] = [{"name": "envoy.bootstrap.internal_listener", "typed_config": {"@type": url}}]

    found = inspect(config_yaml=config(mutate))
    assert found.errors == []
    assert any(p.path == "static_resources.listeners[0].internal_listener" for p in found.unsupported)


def test_an_internal_listener_without_its_extension_is_invalid_as_in_envoy() -> None:
    def mutate(d: dict[str, Any]) -> None:
        del listener(d)["address"]
        listener(d)["internal_listener"] = {}

    assert "InternalListener bootstrap extension is mandatory" in str(inspect(config_yaml=config(mutate)).errors[0])


def test_a_listener_without_an_address_is_invalid_as_in_envoy() -> None:
    (problem,) = inspect(config_yaml=config(lambda d: listener(d).pop("address"))).errors
    assert problem.text == "static_resources.listeners[0].address: a listener needs an address (Envoy: address is necessary)"


UDP_PROXY = "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3"
UDP_LISTENER = {
    "name": "udp",
    "address": {"socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": 11053}},
    "listener_filters": [{
        "name": "envoy.filters.udp_listener.udp_proxy",
        "typed_config": {"@type": f"{UDP_PROXY}.UdpProxyConfig", "stat_prefix": "udp", "matcher": {"on_no_match": {
            "action": {"name": "route", "typed_config": {"@type": f"{UDP_PROXY}.Route", "cluster": "c0"}}}}},
    }],
}  # fmt: skip


def test_a_udp_listener_is_not_implemented() -> None:
    found = inspect(config_yaml=config(lambda d: d["static_resources"]["listeners"].append(UDP_LISTENER)))
    assert found.errors == []
    assert [p.path for p in found.unsupported] == [
        "static_resources.listeners[1].address.socket_address.protocol",
        "static_resources.listeners[1].listener_filters",
    ]


def test_a_udp_listener_with_filter_chains_is_invalid_as_in_envoy() -> None:
    found = inspect(config_yaml=config(lambda d: listener(d)["address"]["socket_address"].update(protocol="UDP")))
    assert texts(found.errors) == [
        "static_resources.listeners[0].filter_chains: 1 filter chain(s) specified for connection-less UDP listener "
        "(Envoy: error adding listener '127.0.0.1:18080/udp')"
    ]


# --- fields newer than the loaded schema -----------------------------------------------------


@pytest.mark.parametrize("key", ["per_connection_buffer_high_watermark_timeout", "perConnectionBufferHighWatermarkTimeout"])
def test_a_field_newer_than_the_schema_is_a_named_limitation(key: str) -> None:
    assert schema_gaps.newer_field("envoy.config.cluster.v3.Cluster", key) == "per_connection_buffer_high_watermark_timeout"
    found = inspect(config_yaml=config(lambda d: cluster(d).update({key: "1s"})))
    assert found.errors == []
    (gap,) = found.unsupported
    assert gap.text.startswith(
        "static_resources.clusters[0].per_connection_buffer_high_watermark_timeout: "
        "field 'per_connection_buffer_high_watermark_timeout' is in Envoy 1.40.0's API but not known to this version's schema"
    )


def test_a_typo_is_still_an_unknown_field() -> None:
    assert schema_gaps.newer_field("envoy.config.cluster.v3.Cluster", "connect_timout") is None
    (problem,) = inspect(config_yaml=config(lambda d: cluster(d).update(connect_timout="1s"))).errors
    assert problem.text == "static_resources.clusters[0].connect_timout: unknown field"


def test_an_extension_type_newer_than_the_schema_is_a_named_limitation() -> None:
    newer = "envoy.extensions.access_loggers.dynamic_modules.v3.DynamicModuleAccessLog"
    assert schema_gaps.is_newer_type(newer)
    log = {"name": "dm", "typed_config": {"@type": f"type.googleapis.com/{newer}"}}
    found = inspect(config_yaml=config(lambda d: hcm(d).update(access_log=[log])))
    assert found.errors == []
    assert any("not known to this version's schema" in p.text and p.path == f"{HCM_PATH}.access_log[0].typed_config" for p in found.unsupported)


# --- the command line ------------------------------------------------------------------------


def run_validate(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "sluice", "--mode", "validate", "-l", "error", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_validate_prints_every_problem_then_a_summary(tmp_path: Path) -> None:
    def mutate(d: dict[str, Any]) -> None:
        cluster(d)["typo"] = 1
        route0(d)["route"]["cluster"] = "nope"
        cluster(d)["lb_policy"] = "MAGLEV"

    path = tmp_path / "envoy.yaml"
    path.write_text(config(mutate))
    result = run_validate("-c", str(path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}: static_resources.clusters[0].typo: unknown field"
    assert lines[1] == f"{path}: {HCM_PATH}.route_config.virtual_hosts[0].routes[0].route.cluster: unknown cluster 'nope'"
    assert lines[2].startswith(f"{path}: static_resources.clusters[0].lb_policy: ")
    assert lines[3] == f"configuration '{path}' not loaded: 2 errors (Envoy refuses these too), 1 feature Sluice does not implement yet"
    assert "Traceback" not in result.stderr


def test_validate_accepts_a_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(config())
    result = run_validate("-c", str(path))
    assert (result.returncode, result.stdout.strip()) == (0, f"configuration '{path}' OK")


@pytest.mark.parametrize("content", [b"", b"{", b"\x00\x01\x02", b"a: " + b"[" * 5000 + b"]" * 5000], ids=["empty", "broken", "binary", "deep"])
def test_validate_never_prints_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "in.yaml"
    path.write_bytes(content)
    result = run_validate("-c", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr and str(path) in result.stderr
