"""Circuit breakers end to end: an in-process Sluice over loopback, then the same scenario side
by side with the real Envoy (``@pytest.mark.envoy``).

Envoy 1.40's HTTP/1.1 pool at ``max_connections: 1, max_pending_requests: 1`` with four
concurrent slow requests: the first takes the connection, the second waits as pending (no new
connection, ``upstream_cx_overflow``), the third and fourth overflow pending and get
``503`` with ``x-envoy-overloaded: true`` (flag UO)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from harness import Client, InProcessSluice, LoopThread, ProxyProcess, Response, free_port, http

from sluice.lab.apps.demoapp import App

OVERFLOW_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: overflow"
STATS = (
    "upstream_cx_overflow",
    "upstream_rq_pending_overflow",
    "upstream_rq_active_overflow",
    "upstream_rq_pending_total",
    "upstream_cx_total",
    "upstream_rq_total",
    "upstream_rq_503",
    "circuit_breakers.default.cx_open",
    "circuit_breakers.default.rq_pending_open",
    "circuit_breakers.default.rq_open",
)


def config(upstream_port: int, thresholds: dict[str, Any]) -> dict[str, Any]:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "l",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "ingress_http",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "a",
                                                    "domains": ["*"],
                                                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"}}],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "c",
                    "connect_timeout": "1s",
                    "type": "STATIC",
                    "circuit_breakers": {"thresholds": [thresholds]},
                    "load_assignment": {
                        "cluster_name": "c",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}}}
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def burst(port: int, n: int, path: str) -> list[Response]:
    """``n`` concurrent requests, started 30 ms apart so that their order is fixed."""

    def one(i: int) -> Response:
        time.sleep(0.03 * i)
        with Client(port) as c:
            return c.get(path)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


@pytest.fixture(scope="module")
def app(loop: LoopThread) -> Any:
    a = App("cb")
    loop.run(a.start("127.0.0.1", 0))
    yield a
    loop.run(a.stop())


def test_pending_overflow_gives_503_uo(loop: LoopThread, app: App) -> None:
    cfg = config(app.port, {"max_connections": 1, "max_pending_requests": 1})
    sluice = InProcessSluice(loop, yaml.safe_dump(cfg))
    try:
        resps = burst(sluice.port, 4, "/delay/400")
        assert [r.status for r in resps] == [200, 200, 503, 503]
        for r in resps[2:]:
            assert r.body == OVERFLOW_BODY
            assert r.names[:3] == ["x-envoy-overloaded", "content-length", "content-type"]
            assert r.header("x-envoy-overloaded") == "true"
        values = {name: sluice.stat(f"cluster.c.{name}") for name in STATS}
        assert values == {
            "upstream_cx_overflow": 1,
            "upstream_rq_pending_overflow": 2,
            "upstream_rq_active_overflow": 0,
            "upstream_rq_pending_total": 2,
            "upstream_cx_total": 1,
            "upstream_rq_total": 2,
            "upstream_rq_503": 2,
            "circuit_breakers.default.cx_open": 1,
            "circuit_breakers.default.rq_pending_open": 0,
            "circuit_breakers.default.rq_open": 0,
        }
        clusters = http(sluice.admin_port, "GET", "/clusters").text
        assert "c::default_priority::max_connections::1\n" in clusters
        assert "c::default_priority::max_pending_requests::1\n" in clusters
        assert "c::high_priority::max_connections::1024\n" in clusters
    finally:
        sluice.stop()


def test_max_requests_overflow(loop: LoopThread, app: App) -> None:
    cfg = config(app.port, {"max_requests": 1})
    sluice = InProcessSluice(loop, yaml.safe_dump(cfg))
    try:
        resps = burst(sluice.port, 3, "/delay/300")
        assert sorted(r.status for r in resps) == [200, 503, 503]
        assert sluice.stat("cluster.c.upstream_rq_active_overflow") == 2
        assert sluice.stat("cluster.c.upstream_rq_pending_overflow") == 0
        # once the request is done, the breaker closes
        assert sluice.stat("cluster.c.circuit_breakers.default.rq_open") == 0
    finally:
        sluice.stop()


@pytest.mark.envoy
@pytest.mark.parametrize(("thresholds", "n"), [({"max_connections": 1, "max_pending_requests": 1}, 4), ({"max_requests": 1}, 3)])
def test_same_as_envoy(loop: LoopThread, app: App, thresholds: dict[str, int], n: int) -> None:
    results = {}
    for kind in ("envoy", "sluice"):
        proc = ProxyProcess(kind, config(app.port, thresholds)).start()
        try:
            resps = burst(proc.port, n, "/delay/400")
            stats = proc.stats()
            results[kind] = (
                [(r.status, r.header("x-envoy-overloaded"), r.body if r.status == 503 else b"") for r in resps],
                {name: stats.get(f"cluster.c.{name}") for name in STATS},
            )
        finally:
            proc.stop()
    assert results["sluice"] == results["envoy"]
