"""Differential: the golden route-features config through the real Envoy and Sluice.

Envoy is first checked against its own capture (so the harness reproduces the capture's
conditions); then Sluice must produce exactly what Envoy produced on the same request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import LoopThread, Req, RouteFeatures, golden_route_feature, route_feature_cases

pytestmark = pytest.mark.envoy

CASES = route_feature_cases()


@pytest.fixture(scope="module")
def proxies(loop: LoopThread) -> Iterator[tuple[RouteFeatures, RouteFeatures]]:
    envoy = RouteFeatures(loop, "envoy")
    try:
        sluice = RouteFeatures(loop, "sluice")
    except BaseException:
        envoy.stop()
        raise
    yield envoy, sluice
    sluice.stop()
    envoy.stop()


@pytest.mark.parametrize("name", list(CASES))
def test_case(proxies: tuple[RouteFeatures, RouteFeatures], name: str) -> None:
    envoy, sluice = proxies
    from_envoy = envoy.run(name, CASES[name])
    assert from_envoy == golden_route_feature(name, CASES[name]), "the harness does not reproduce the capture"
    assert sluice.run(name, CASES[name]) == from_envoy


# Requests beyond the capture, on the same config: Sluice must answer exactly as Envoy does.
EXTRA = [
    Req("GET", "/redirect/x?y=1", [("Host", "127.0.0.1")]),
    Req("GET", "/redirect/x", [("Host", "foo:8080")]),
    Req("POST", "/redirect/x", [("Content-Type", "text/plain")], b"abc"),
    Req("GET", "/https/x?q=1", [("Host", "127.0.0.1:80")]),
    Req("GET", "/https/x", [("Host", "foo:443")]),
    Req("GET", "/https/x", [("Host", "[::1]:8443")]),
    Req("GET", "/https/x", [("Host", "foo")]),
    Req("HEAD", "/direct"),
    Req("POST", "/direct", body=b"ignored"),
    Req("GET", "/direct/more?x=1"),
    Req("GET", "/CASE/Upper"),
    Req("GET", "/rewrite"),
    Req("GET", "/rewrite/?only=query"),
    Req("GET", "/hostrw/x", [("Host", "Example.com:1234")]),
    Req("GET", "/hdrs/x", [("User-Agent", "ua"), ("x-dup-overwrite", "a"), ("x-dup-overwrite", "b")]),
    Req("GET", "/hdrs/x", [("X-Request-Id", "client-id-1")]),
    Req("GET", "/api/x", [("x-canary", "2")]),
    Req("GET", "/api/x", [("x-canary", "1"), ("x-canary", "1")]),
    Req("GET", "/api/x", [("x-canary", "2"), ("x-canary", "1")]),
    Req("GET", "/api/x", [("x-canary", "1,1")]),
    Req("GET", "/api/x", [("x-canary", " 1 \t")]),
    Req("GET", "/api/x", [("x-canary", "")]),
    Req("PUT", "/api/x"),
    Req("PATCH", "/api/x", [("Content-Type", "text/plain")], b"patch"),
    Req("GET", "/anything", [("Host", "b.a.wild.example.com")]),
    Req("GET", "/anything", [("Host", "wild.example.com")]),
    Req("DELETE", "/api/x"),
    Req("OPTIONS", "/api/x"),
    Req("HEAD", "/api/status/404"),
    Req("GET", "/re/0123456789"),
]


@pytest.mark.parametrize("req", EXTRA, ids=[repr(r) for r in EXTRA])
def test_extra_request(proxies: tuple[RouteFeatures, RouteFeatures], req: Req) -> None:
    envoy, sluice = proxies
    assert sluice.send(req) == envoy.send(req)
