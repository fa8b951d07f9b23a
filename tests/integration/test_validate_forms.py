"""``sluice --mode validate`` against ``envoy --mode validate`` on the same inputs.

Three kinds of case, each run through both binaries:
- Envoy accepts: Sluice accepts (single values where lists go, durations as objects, duplicate
  listener names, an empty mapping, Envoy's deepest nesting, a large file);
- Envoy refuses: Sluice refuses with exit 1 and a ``FILE: ...`` line naming the problem, never a
  traceback (wrong types, empty and binary files, nesting past the limit, a listener without an
  address, an internal listener without its extension, a UDP listener with filter chains);
- Envoy accepts, Sluice does not run it: exit 1, and every line names a missing feature
  ("not implemented yet", "not known to this version's schema") — never an error.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from harness import REPO, envoy_binary  # noqa: E402

pytestmark = pytest.mark.envoy

ROUTER = {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
UDP_PROXY = "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3"
BASE: dict[str, Any] = {
    "static_resources": {
        "listeners": [{
            "name": "l0",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18080}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM,
                    "stat_prefix": "ingress",
                    "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": ROUTER}],
                },
            }]}],
        }],
        "clusters": [{
            "name": "c",
            "connect_timeout": "1s",
            "type": "STATIC",
            "load_assignment": {"cluster_name": "c", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 18081}}}}]}]},
        }],
    }
}  # fmt: skip


def listener(d: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = d["static_resources"]["listeners"][0]
    return found


def hcm(d: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = listener(d)["filter_chains"][0]["filters"][0]["typed_config"]
    return found


def cluster(d: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = d["static_resources"]["clusters"][0]
    return found


def second_listener(d: dict[str, Any], port: int) -> None:
    extra = copy.deepcopy(listener(d))
    extra["address"]["socket_address"]["port_value"] = port
    d["static_resources"]["listeners"].append(extra)


def lb_endpoints_mapping(d: dict[str, Any]) -> None:
    endpoints = cluster(d)["load_assignment"]["endpoints"][0]
    endpoints["lb_endpoints"] = endpoints["lb_endpoints"][0]


def no_address(d: dict[str, Any], internal: bool, extension: bool) -> None:
    del listener(d)["address"]
    if internal:
        listener(d)["internal_listener"] = {}
    if extension:
        url = "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
        d["bootstrap_extensions"] = [{"name": "envoy.bootstrap.internal_listener", "typed_config": {"@type": url}}]


def udp_listener(d: dict[str, Any]) -> None:
    d["static_resources"]["listeners"].append({
        "name": "udp",
        "address": {"socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": 11053}},
        "listener_filters": [{"name": "envoy.filters.udp_listener.udp_proxy", "typed_config": {
            "@type": f"{UDP_PROXY}.UdpProxyConfig", "stat_prefix": "udp", "matcher": {"on_no_match": {"action": {
                "name": "route", "typed_config": {"@type": f"{UDP_PROXY}.Route", "cluster": "c"}}}}}}],
    })  # fmt: skip


def nested(depth: int) -> str:
    """A runtime layer nesting ``depth`` mappings and lists in all, the top mapping included."""
    inner = depth - 5  # the top mapping, layered_runtime, layers, the layer, static_layer
    return f"layered_runtime: {{layers: [{{name: s, static_layer: {{{'a: {' * inner}b: 1{'}' * inner}}}}}]}}\n"


Mutation = Callable[[dict[str, Any]], object]
CONFIG_CASES: dict[str, tuple[Mutation, str]] = {
    # Envoy accepts: so must Sluice.
    "clusters-as-a-mapping": (lambda d: d["static_resources"].update(clusters=cluster(d)), "accept"),
    "listeners-as-a-mapping": (lambda d: d["static_resources"].update(listeners=listener(d)), "accept"),
    "lb-endpoints-as-a-mapping": (lb_endpoints_mapping, "accept"),
    "http-filters-as-a-mapping": (lambda d: hcm(d).update(http_filters=hcm(d)["http_filters"][0]), "accept"),
    "domains-as-a-scalar": (lambda d: hcm(d)["route_config"]["virtual_hosts"][0].update(domains="*"), "accept"),
    "duration-object": (lambda d: cluster(d).update(connect_timeout={"seconds": 5}), "accept"),
    "duration-object-nanos": (lambda d: cluster(d).update(connect_timeout={"seconds": 1, "nanos": 500_000_000}), "accept"),
    "duplicate-listener-names": (lambda d: second_listener(d, 18082), "accept"),
    "duplicate-listener-names-same-address": (lambda d: second_listener(d, 18080), "accept"),
    # Envoy refuses: so must Sluice.
    "duration-integer": (lambda d: cluster(d).update(connect_timeout=5), "refuse"),
    "scalar-for-a-list-of-messages": (lambda d: hcm(d).update(http_filters="x"), "refuse"),
    "integer-in-a-list-of-strings": (lambda d: hcm(d)["route_config"]["virtual_hosts"][0].update(domains=5), "refuse"),
    "listener-without-address": (lambda d: no_address(d, internal=False, extension=False), "refuse"),
    "internal-listener-without-extension": (lambda d: no_address(d, internal=True, extension=False), "refuse"),
    "udp-listener-with-filter-chains": (lambda d: listener(d)["address"]["socket_address"].update(protocol="UDP"), "refuse"),
    "unknown-field": (lambda d: cluster(d).update(connect_timout="1s"), "refuse"),
    # Envoy accepts, Sluice names what it lacks.
    "internal-listener": (lambda d: no_address(d, internal=True, extension=True), "unimplemented"),
    "udp-listener": (udp_listener, "unimplemented"),
    "field-newer-than-the-schema": (lambda d: cluster(d).update(per_connection_buffer_high_watermark_timeout="1s"), "unimplemented"),
}
RAW_CASES: dict[str, tuple[bytes, str]] = {
    "empty-mapping": (b"{}\n", "accept"),
    "deepest-nesting-envoy-takes": (nested(100).encode(), "accept"),
    "large-file": (f"node: {{id: {'x' * 5_000_000}}}\n".encode(), "accept"),
    "empty-file": (b"", "refuse"),
    "comment-only": (b"# nothing\n", "refuse"),
    "binary": (bytes(range(256)) * 8, "refuse"),
    "top-level-list": (b"- a\n", "refuse"),
    "top-level-scalar": (b"foo\n", "refuse"),
    "nesting-one-past-envoy": (nested(101).encode(), "refuse"),
    "nesting-100000": (b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "refuse"),
    "broken-yaml": (b"static_resources: {listeners: [\n", "refuse"),
}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def validate_both(path: Path) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    envoy = envoy_binary()
    assert envoy is not None
    by_envoy = run([envoy, "--mode", "validate", "-c", str(path), "-l", "critical"])
    by_sluice = run([sys.executable, "-m", "sluice", "--mode", "validate", "-c", str(path), "-l", "error"])
    return by_envoy, by_sluice


def check(path: Path, kind: str) -> None:
    by_envoy, by_sluice = validate_both(path)
    assert "Traceback" not in by_sluice.stderr
    if kind == "accept":
        assert by_envoy.returncode == 0, by_envoy.stdout + by_envoy.stderr
        assert by_sluice.returncode == 0, by_sluice.stderr
        assert by_sluice.stdout.strip() == f"configuration '{path}' OK"
        return
    assert by_sluice.returncode == 1
    problems = [line for line in by_sluice.stderr.splitlines() if line.startswith(str(path))]
    assert problems, by_sluice.stderr
    summary = by_sluice.stderr.splitlines()[-1]
    if kind == "refuse":
        assert by_envoy.returncode == 1, by_envoy.stdout
        assert "error" in summary and "Envoy refuses these too" in summary
    else:
        assert by_envoy.returncode == 0, by_envoy.stdout + by_envoy.stderr
        assert "error" not in summary and "Sluice does not implement yet" in summary
        assert all(("not implemented yet" in p or "not known to this version's schema" in p) for p in problems)


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_config_forms_as_envoy(name: str, tmp_path: Path) -> None:
    mutate, kind = CONFIG_CASES[name]
    data = copy.deepcopy(BASE)
    mutate(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    check(path, kind)


@pytest.mark.parametrize("name", sorted(RAW_CASES))
def test_raw_inputs_as_envoy(name: str, tmp_path: Path) -> None:
    content, kind = RAW_CASES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content)
    check(path, kind)


def test_duplicate_listener_keeps_the_first_and_says_so(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    second_listener(data, 18082)
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(data))
    _, by_sluice = validate_both(path)
    assert "static_resources.listeners[1]: duplicate listener name 'l0'" in by_sluice.stderr
    assert "ignored, as Envoy does" in by_sluice.stderr


def test_the_schema_gap_table_matches_this_envoy_and_this_schema() -> None:
    """``sluice/config/envoy_schema_gaps.json`` is what ``scripts/envoy_schema_gaps.py`` finds in
    the pinned Envoy binary against the installed xds-protos (regenerate it when either changes)."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import envoy_schema_gaps  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(REPO / "scripts"))
    committed = json.loads((REPO / "sluice" / "config" / "envoy_schema_gaps.json").read_text())
    fresh = envoy_schema_gaps.extract(envoy_schema_gaps.envoy_binary())
    assert fresh == committed
    assert committed["envoy"] == "1.40.0" and len(committed["fields"]) > 50
