"""Differential: ``/stats/prometheus`` of the real Envoy and of Sluice after the same requests on
the same config (successes, a 404 without a route, a 503 from a dead upstream, a retried 503).

Both expositions are parsed with ``prometheus_client``'s text parser and compared family by
family: the type, the label sets of the samples, and the values of the request-driven families
(:data:`COMPARED_VALUES`). Families only one side has, and the few whose labels differ, are the
gaps of Sluice's stat catalogue listed in :data:`CATALOGUE_GAPS` (not of the Prometheus output);
the test fails when a new gap appears and when a listed one closes. Sluice's families are also
checked against the golden ``front-envoy.prometheus.txt``: same type, same label names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import ROUTER_TYPED_CONFIG, Client, LoopThread, ProxyProcess, free_port
from prometheus_client.parser import text_string_to_metric_families
from test_retries import ScriptedApp

pytestmark = pytest.mark.envoy

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "envoy-part3-5" / "stats" / "front-envoy.prometheus.txt"

CONFIG = """
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
stats_config:
  stats_tags:
  - tag_name: lab
    fixed_value: prom
  - tag_name: cx_kind
    regex: "^cluster\\\\.[^.]+\\\\.upstream_cx_((\\\\w+?)_)total$"
  stats_matcher:
    exclusion_list:
      patterns:
      - prefix: cluster.dead.upstream_cx_connect_
static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listener}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: {{prefix: /status}}
                route: {{cluster: app}}
              - match: {{prefix: /script}}
                route:
                  cluster: app
                  retry_policy: {{retry_on: 5xx, num_retries: 2}}
              - match: {{prefix: /dead}}
                route: {{cluster: dead}}
          http_filters:
          - name: envoy.filters.http.router
  clusters:
  - name: app
    connect_timeout: 0.25s
    type: STATIC
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {app}}}}}}}
  - name: dead
    connect_timeout: 0.25s
    type: STATIC
    load_assignment:
      cluster_name: dead
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {dead}}}}}}}
"""

# (path, status): 3 successes, a 404 (no route), a 503 (connection refused), a 503 retried to a 200.
REQUESTS = [
    ("/status/200", 200),
    ("/status/200", 200),
    ("/status/201", 201),
    ("/nothing-here", 404),
    ("/dead/x", 503),
    ("/script", 200),
]

# The families whose samples (labels and values) must be equal: what the requests drive.
COMPARED_VALUES = {
    f"envoy_{n}"
    for n in (
        "cluster_upstream_rq", "cluster_upstream_rq_xx", "cluster_upstream_rq_total", "cluster_upstream_rq_completed",
        "cluster_upstream_rq_retry", "cluster_upstream_rq_retry_success", "cluster_retry_upstream_rq",
        "cluster_retry_upstream_rq_xx", "cluster_external_upstream_rq",
        "cluster_external_upstream_rq_xx", "cluster_external_upstream_rq_completed", "cluster_upstream_cx_connect_fail",
        "cluster_upstream_cx_total", "cluster_membership_total", "cluster_membership_healthy",
        "http_downstream_rq_xx", "http_downstream_rq_completed", "http_downstream_rq_total",
        "listener_downstream_cx_total", "listener_http_downstream_rq_xx", "listener_http_downstream_rq_completed",
        "cluster_manager_cluster_added", "server_live",
    )
}  # fmt: skip

# Families Envoy prints and Sluice does not (or with another type, or other label sets): gaps in
# Sluice's stat catalogue (sluice/stats/blocks.py) or in what Sluice implements, not in the
# exposition. Each is named with the reason.
CATALOGUE_GAPS: dict[str, str] = {}
# Families both print whose label sets differ (none left: the admin HCM has no router or tracing
# stats and Envoy's async client has its own, as in Envoy; upstream_rq_time exists once a
# response completed).
LABEL_GAPS: dict[str, str] = {}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _config(app_port: int) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(CONFIG.format(admin=free_port(), listener=free_port(), app=app_port, dead=free_port()))
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0]["typed_config"] = ROUTER_TYPED_CONFIG
    return cfg


def _parse(text: str) -> dict[str, tuple[str, Samples]]:
    """family (as its ``# TYPE`` line names it) → (type, {(sample name, labels): value}).

    Each family is parsed on its own: ``prometheus_client`` names a counter's samples
    ``<family>_total``, so ``envoy_cluster_upstream_rq`` and ``envoy_cluster_upstream_rq_total``
    would otherwise collide."""
    out: dict[str, tuple[str, Samples]] = {}
    for block in re.split(r"(?m)^(?=# TYPE )", text):
        if not block:
            continue
        name = block.split(None, 3)[2]
        (fam,) = text_string_to_metric_families(block)
        out[name] = (fam.type, {(s.name, frozenset(s.labels.items())): s.value for s in fam.samples})
    return out


@pytest.fixture(scope="module")
def expositions(loop: LoopThread) -> Iterator[tuple[str, str]]:
    app = ScriptedApp("app")
    loop.run(app.start("127.0.0.1", 0))
    texts = []
    try:
        config = _config(app.port)  # one after the other on the same ports: the same listener labels
        for kind in ("envoy", "sluice"):
            proxy = ProxyProcess(kind, config).start()
            try:
                for path, status in REQUESTS:
                    if path == "/script":
                        app.script = [(503, [])]
                    with Client(proxy.port) as c:
                        assert c.get(path).status == status, (kind, path)
                resp = proxy.admin("GET", "/stats/prometheus")
                assert resp.status == 200 and resp.header("content-type") == "text/plain; charset=UTF-8"
                texts.append(resp.text)
            finally:
                proxy.stop()
    finally:
        loop.run(app.stop())
    yield texts[0], texts[1]


def test_families_and_types_match(expositions: tuple[str, str]) -> None:
    envoy, sluice = (_parse(t) for t in expositions)
    only = {name for name in set(envoy) ^ set(sluice)}
    retyped = {name for name in set(envoy) & set(sluice) if envoy[name][0] != sluice[name][0]}
    assert only | retyped == set(CATALOGUE_GAPS)


def test_label_sets_match(expositions: tuple[str, str]) -> None:
    envoy, sluice = (_parse(t) for t in expositions)
    differing = set()
    for name in set(envoy) & set(sluice):
        if envoy[name][0] != sluice[name][0]:
            continue
        if set(envoy[name][1]) != set(sluice[name][1]):
            differing.add(name)
    assert differing == set(LABEL_GAPS)


def test_request_driven_values_match(expositions: tuple[str, str]) -> None:
    envoy, sluice = (_parse(t) for t in expositions)
    for name in sorted(COMPARED_VALUES):
        assert name in envoy, name
        assert sluice[name] == envoy[name], name
    # Where only the async-client/admin samples differ, the listener's own samples must agree.
    for name in ("envoy_http_no_route", "envoy_http_rq_total", "envoy_http_rq_direct_response"):

        def ingress(samples: Samples) -> Samples:
            return {k: v for k, v in samples.items() if ("envoy_http_conn_manager_prefix", "ingress_http") in k[1]}

        assert ingress(sluice[name][1]) == ingress(envoy[name][1]) != {}, name


def test_tags_from_stats_config_and_the_matcher(expositions: tuple[str, str]) -> None:
    for text in expositions:
        fams = _parse(text)
        # The fixed tag is on every sample but server.hot_restart_generation and Envoy's
        # filesystem.* (made before stats_config is read); the custom regex names the connection kind.
        for name, (_, samples) in fams.items():
            for _, labels in samples:
                early = name == "envoy_server_hot_restart_generation" or name.startswith("envoy_filesystem_")
                assert dict(labels).get("lab") == (None if early else "prom"), name
        cx = fams["envoy_cluster_upstream_cx_total"][1]
        assert {dict(labels).get("cx_kind") for (_, labels) in cx} == {None, "http1", "http2", "http3", "rx_bytes", "tx_bytes"}
        # cluster.dead.upstream_cx_connect_* are excluded: neither its counter nor its histogram exists.
        for family in ("envoy_cluster_upstream_cx_connect_fail", "envoy_cluster_upstream_cx_connect_ms"):
            assert {dict(labels)["envoy_cluster_name"] for (_, labels) in fams[family][1]} == {"app"}, family


def test_histogram_samples_have_envoys_shape(expositions: tuple[str, str]) -> None:
    envoy, sluice = (_parse(t) for t in expositions)
    for name, (kind, samples) in sluice.items():
        if kind != "histogram":
            continue
        les = sorted({dict(labels)["le"] for (sample, labels) in samples if sample.endswith("_bucket")}, key=float)
        assert les[-1] == "+Inf" and len(les) == 20, name
        if name in envoy:
            assert {s for s, _ in samples} == {s for s, _ in envoy[name][1]}, name
    # The request-time histogram counts the same requests (26 of 27 in the golden run: not the
    # retried attempt, not the failed connect).
    key = ("envoy_cluster_upstream_rq_time_count", frozenset({("lab", "prom"), ("envoy_cluster_name", "app")}))
    assert sluice["envoy_cluster_upstream_rq_time"][1][key] == envoy["envoy_cluster_upstream_rq_time"][1][key]


def test_sluice_families_have_the_golden_types_and_label_names(expositions: tuple[str, str]) -> None:
    golden = _parse(GOLDEN.read_text())
    sluice = _parse(expositions[1])
    for name, (kind, samples) in sluice.items():
        if name not in golden or name in CATALOGUE_GAPS:
            continue
        assert kind == golden[name][0], name

        def label_names(s: Samples) -> set[frozenset[str]]:
            return {frozenset(k for k, _ in labels if k not in ("le", "lab", "cx_kind")) for _, labels in s}

        assert label_names(samples) <= label_names(golden[name][1]) | {frozenset()}, name


def test_lines_are_envoys(expositions: tuple[str, str]) -> None:
    for text in expositions:
        for line in text.splitlines():
            assert re.fullmatch(r'# TYPE envoy_\w+ (counter|gauge|histogram)|envoy_\w+\{([\w]+="[^"]*"(,[\w]+="[^"]*")*)?\} \S+', line), (
                line
            )


# Stat prefixes and cluster alt_stat_names shaped to reach the default extractors Sluice's own
# stats never reach (gRPC bridge, health check name, TLS certificate, ext_authz, user agent,
# DynamoDB, RDS, scoped RDS, RBAC, fault downstream cluster): Envoy makes the names, and Sluice's
# extraction of each must give the family and labels Envoy printed.
CRAFTED_HCM_PREFIXES = (
    "p.user_agent.ios", "q.dynamodb.table.t1", "r.dynamodb.operation.Query", "s.ext_authz.ea", "t.rds.rc.one",
    "u.scoped_rds.sc1", "w.rbac.rp", "x.fault.dc", "y.dynamodb.error.t2",
)  # fmt: skip
CRAFTED_ALT_STAT_NAMES = ("c0.grpc.svc.Method", "c1.health_check.name.hc1", "c2.ssl.certificate.cert1", "c3.ext_authz.ea", "c4.grpc.svc2")


def _crafted_config() -> dict[str, Any]:
    router = {"name": "envoy.filters.http.router", "typed_config": ROUTER_TYPED_CONFIG}
    listeners = []
    for i, prefix in enumerate(CRAFTED_HCM_PREFIXES):
        cluster = f"c{i % len(CRAFTED_ALT_STAT_NAMES)}"
        routes = [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": prefix,
            "route_config": {"virtual_hosts": [{"name": f"vh{i}", "domains": ["*"], "routes": routes}]},
            "http_filters": [router],
        }
        address = {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}
        chain = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        listeners.append({"name": f"l{i}", "address": address, "filter_chains": [chain]})
    clusters = []
    for i, alt in enumerate(CRAFTED_ALT_STAT_NAMES):
        endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}}}
        assignment = {"cluster_name": f"c{i}", "endpoints": [{"lb_endpoints": [endpoint]}]}
        clusters.append(
            {"name": f"c{i}", "alt_stat_name": alt, "connect_timeout": "0.25s", "type": "STATIC", "load_assignment": assignment}
        )
    admin = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}}
    return {"admin": admin, "static_resources": {"listeners": listeners, "clusters": clusters}}


def test_tag_extraction_matches_envoy_on_crafted_names() -> None:
    from sluice.stats.tags import TagProducer

    envoy = ProxyProcess("envoy", _crafted_config()).start()
    try:
        for port in envoy.listener_ports:
            with Client(port) as c:
                assert c.get("/x").status == 503  # each cluster's request stats come to exist
        names = [line.split(":", 1)[0] for line in envoy.admin("GET", "/stats").text.splitlines()]
        exposition = _parse(envoy.admin("GET", "/stats/prometheus").text)
    finally:
        envoy.stop()
    printed = set()
    for family, (_, samples) in exposition.items():
        for _, labels in samples:
            printed.add((family, frozenset((k, v) for k, v in labels if k not in ("le", "quantile"))))
    producer = TagProducer.from_config()
    ours = {(t.prometheus_name, frozenset((k.replace(".", "_"), v) for k, v in t.tags)) for t in map(producer.extract, names)}
    assert ours == printed
    # The crafted names did reach the extractors they were made for.
    tag_names = {k for _, labels in ours for k, _ in labels}
    assert {
        "envoy_grpc_bridge_method", "envoy_grpc_bridge_service", "envoy_health_check_name", "envoy_tls_certificate",
        "envoy_ext_authz_prefix", "envoy_http_user_agent", "envoy_dynamo_table", "envoy_dynamo_operation",
        "envoy_rds_route_config", "envoy_scoped_rds_config", "envoy_rbac_http_prefix", "envoy_fault_downstream_cluster",
    } <= tag_names  # fmt: skip
