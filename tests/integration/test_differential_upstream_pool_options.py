"""Differential: the HTTP/1.1 pool's connection options through the real Envoy and Sluice, on
the same config and the same upstream (the lab's demoapp): ``max_requests_per_connection`` (the
legacy cluster field and common_http_protocol_options) and the upstream ``idle_timeout``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from harness import ROUTER_TYPED_CONFIG, Client, LoopThread, ProxyProcess, free_port, stats_delta

from sluice.lab.apps.demoapp import App

pytestmark = pytest.mark.envoy

HPO = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
CLUSTERS = ("legacy", "common", "idle")
STATS = [
    f"cluster.{c}.{n}"
    for c in CLUSTERS
    for n in (
        "upstream_cx_total",
        "upstream_cx_http1_total",
        "upstream_cx_max_requests",
        "upstream_cx_idle_timeout",
        "upstream_cx_destroy_local",
        "upstream_cx_destroy_remote",
        "upstream_cx_destroy_with_active_rq",
        "upstream_cx_active",
        "upstream_rq_total",
        "upstream_rq_200",
    )
]


def _config(port: int) -> dict[str, Any]:
    def cluster(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}
                ],
            },
            **extra,
        }

    def typed(common: dict[str, Any]) -> dict[str, Any]:
        return {
            HPO: {
                "@type": f"type.googleapis.com/{HPO}",
                "common_http_protocol_options": common,
                "explicit_http_config": {"http_protocol_options": {}},
            }
        }

    routes = [{"match": {"prefix": f"/{c}/"}, "route": {"cluster": c, "prefix_rewrite": "/"}} for c in CLUSTERS]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": ROUTER_TYPED_CONFIG}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "l",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
                }
            ],
            "clusters": [
                cluster("legacy", max_requests_per_connection=2),
                cluster("common", typed_extension_protocol_options=typed({"max_requests_per_connection": 3})),
                cluster("idle", typed_extension_protocol_options=typed({"idle_timeout": "0.3s"})),
            ],
        },
    }


@pytest.fixture()
def setup(loop: LoopThread) -> Iterator[tuple[ProxyProcess, ProxyProcess]]:
    app = App("pool")
    loop.run(app.start("127.0.0.1", 0))
    envoy = ProxyProcess("envoy", _config(app.port)).start()
    try:
        sluice = ProxyProcess("sluice", _config(app.port)).start()
    except BaseException:
        envoy.stop()
        raise
    yield envoy, sluice
    sluice.stop()
    envoy.stop()
    loop.run(app.stop())


def _observe(proxy: ProxyProcess, paths: list[str], wait: float = 0.2) -> dict[str, Any]:
    before = proxy.stats()
    statuses = []
    with Client(proxy.port) as c:
        for p in paths:
            statuses.append(c.get(p).status)
    time.sleep(wait)
    return {"statuses": statuses, "stats": stats_delta(before, proxy.stats(), STATS)}


@pytest.mark.parametrize("cluster", ["legacy", "common"])
def test_max_requests_per_connection_same_as_envoy(setup: tuple[ProxyProcess, ProxyProcess], cluster: str) -> None:
    envoy, sluice = setup
    want = _observe(envoy, [f"/{cluster}/hostname"] * 7)
    got = _observe(sluice, [f"/{cluster}/hostname"] * 7)
    assert got == want
    assert got["stats"][f"cluster.{cluster}.upstream_cx_max_requests"] >= 2


def test_idle_timeout_same_as_envoy(setup: tuple[ProxyProcess, ProxyProcess]) -> None:
    envoy, sluice = setup
    want = _observe(envoy, ["/idle/hostname"], wait=0.8)
    got = _observe(sluice, ["/idle/hostname"], wait=0.8)
    assert got == want
    assert got["stats"]["cluster.idle.upstream_cx_idle_timeout"] == 1
