"""Differential: Envoy's local replies to a gRPC request (``content-type: application/grpc``)
are trailers-only responses — ``:status 200``, ``content-type: application/grpc``,
``grpc-status`` (mapped from the HTTP status), ``grpc-message`` (the body, percent-encoded), no
body — over HTTP/1.1 too. The Envoy side pins the wire form that
``sluice.http.grpc.local_reply_headers`` builds; the Sluice side waits for the connection
manager to call it.

Also here: the router's gRPC retry conditions on a trailers-only upstream answer (Sluice and
Envoy compared: attempts, final answer, retry stats)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from harness import ROUTER_TYPED_CONFIG, Client, LoopThread, ProxyProcess, free_port, stats_delta

from sluice.http.grpc import local_reply_headers
from sluice.lab.apps.demoapp import App, Recorded

pytestmark = pytest.mark.envoy

# Bodies that exercise the percent-encoding: '%', '~' (Envoy encodes it), a newline, UTF-8.
ODD_BODY = "50% off ~ caf\u00e9\nline two"


class GrpcApp(App):
    """An upstream answering each request trailers-only with the next ``grpc-status`` of
    :attr:`script` (then 0), over HTTP/1.1."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.script: list[str] = []

    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        code = self.script.pop(0) if self.script else "0"
        return 200, [("content-type", "application/grpc"), ("grpc-status", code), ("content-length", "0")], b"", 0.0


def _cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "connect_timeout": "0.25s",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def _config(app_port: int) -> dict[str, Any]:
    def direct(path: str, status: int, body: str | None = None) -> dict[str, Any]:
        action: dict[str, Any] = {"status": status}
        if body is not None:
            action["body"] = {"inline_string": body}
        return {"match": {"path": path}, "direct_response": action}

    routes = [
        direct("/direct-503", 503, "no way"),
        direct("/direct-404-empty", 404),
        direct("/direct-200", 200, "fine"),
        direct("/direct-429", 429, "slow down"),
        direct("/direct-odd", 500, ODD_BODY),
        {"match": {"path": "/unreachable"}, "route": {"cluster": "dead"}},
        # No x-cluster header: no cluster (503 NC).
        {"match": {"path": "/no-cluster"}, "route": {"cluster_header": "x-cluster"}},
        {
            "match": {"prefix": "/retry-unavailable"},
            "route": {"cluster": "grpc", "retry_policy": {"retry_on": "unavailable,cancelled", "num_retries": 2}},
        },
        {
            "match": {"prefix": "/retry-5xx"},
            "route": {"cluster": "grpc", "retry_policy": {"retry_on": "5xx", "num_retries": 2}},
        },
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {
            "name": "local",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": ROUTER_TYPED_CONFIG}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "main",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
                }
            ],
            "clusters": [_cluster("dead", free_port()), _cluster("grpc", app_port)],
        },
    }


# path, method, the HTTP status and body Envoy's local reply starts from (the body for
# /unreachable is the router's reset text, read from Envoy's answer).
CASES = [
    ("/direct-503", "POST", 503, "no way"),
    ("/direct-404-empty", "POST", 404, ""),
    ("/direct-200", "POST", 200, "fine"),
    ("/direct-429", "POST", 429, "slow down"),
    ("/direct-odd", "POST", 500, ODD_BODY),
    ("/no-cluster", "POST", 503, ""),
    ("/nowhere", "POST", 404, ""),
    ("/direct-503", "HEAD", 503, "no way"),
]
GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers")]


@pytest.fixture(scope="module")
def app(loop: LoopThread) -> Iterator[GrpcApp]:
    up = GrpcApp("grpc")
    loop.run(up.start("127.0.0.1", 0))
    yield up
    loop.run(up.stop())


@pytest.fixture(scope="module")
def envoy(app: GrpcApp) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess("envoy", _config(app.port)).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def sluice(app: GrpcApp) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess("sluice", _config(app.port)).start()
    yield proxy
    proxy.stop()


def _observe(proxy: ProxyProcess, path: str, method: str, content_type: str = "application/grpc") -> dict[str, Any]:
    with Client(proxy.port) as c:
        resp = c.request(method, path, [("content-type", content_type), ("te", "trailers")], b"" if method == "POST" else None)
    return {
        "status": resp.status,
        # date is the only value that moves; server is the proxy's name (Sluice says envoy too).
        "headers": [(k.lower(), "<date>" if k.lower() == "date" else v) for k, v in resp.headers],
        "body": resp.body,
    }


def _expected(status: int, body: str, method: str) -> dict[str, Any]:
    """The wire form of ``local_reply_headers``, as the HTTP/1.1 codec writes a headers-only
    response after the connection manager adds date and server."""
    h = local_reply_headers(status, body, None, is_head=method == "HEAD")
    headers = [(k, v) for k, v in h.entries]
    # Envoy's HTTP/1 framing of a headers-only response: an empty length, except that a HEAD
    # response without a length is marked chunked (its length is unknown to the codec).
    framing = ("transfer-encoding", "chunked") if method == "HEAD" else ("content-length", "0")
    return {
        "status": h.status,
        "headers": [*headers, ("date", "<date>"), ("server", "envoy"), framing],
        "body": b"",
    }


@pytest.mark.parametrize(("path", "method", "status", "body"), CASES, ids=[f"{m} {p}" for p, m, _, _ in CASES])
def test_envoy_answers_what_local_reply_headers_builds(envoy: ProxyProcess, path: str, method: str, status: int, body: str) -> None:
    assert _observe(envoy, path, method) == _expected(status, body, method)


def test_envoy_reset_reply_is_trailers_only_with_the_reset_text(envoy: ProxyProcess) -> None:
    got = _observe(envoy, "/unreachable", "POST")
    message = dict(got["headers"])["grpc-message"]
    assert message.startswith("upstream connect error or disconnect/reset before headers.")
    assert got == _expected(503, _unpercent(message), "POST")


def test_grpc_web_is_not_grpc(envoy: ProxyProcess) -> None:
    """``application/grpc-web`` is not gRPC (Envoy's hasGrpcContentType): a plain local reply."""
    got = _observe(envoy, "/direct-503", "POST", content_type="application/grpc-web")
    assert got["status"] == 503 and got["body"] == b"no way"


def _unpercent(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


@pytest.mark.parametrize(("path", "method"), [(p, m) for p, m, _, _ in CASES] + [("/unreachable", "POST")])
def test_sluice_same_as_envoy(envoy: ProxyProcess, sluice: ProxyProcess, path: str, method: str) -> None:
    assert _observe(sluice, path, method) == _observe(envoy, path, method)


RETRY_STATS = [
    f"cluster.grpc.{n}" for n in ("upstream_rq_retry", "upstream_rq_retry_success", "upstream_rq_retry_limit_exceeded", "upstream_rq_total")
]
RETRY_CASES = [
    ("/retry-unavailable", ["14", "14"], []),  # retried twice, the third answer (0) goes back
    ("/retry-unavailable", ["14", "14", "14"], []),  # the budget is spent: the last 14 goes back
    ("/retry-unavailable", ["1"], []),  # cancelled
    ("/retry-unavailable", ["13"], []),  # internal: not asked for
    ("/retry-unavailable", ["14x"], []),  # not a status
    ("/retry-5xx", ["14"], []),  # an HTTP condition does not read grpc-status
    ("/retry-5xx", ["13", "4"], [("x-envoy-retry-grpc-on", "internal,deadline-exceeded")]),
]


def _observe_retry(app: GrpcApp, proxy: ProxyProcess, path: str, script: list[str], headers: list[tuple[str, str]]) -> dict[str, Any]:
    app.requests.clear()
    app.script = list(script)
    before = proxy.stats()
    with Client(proxy.port) as c:
        resp = c.request("POST", path, [*GRPC_HEADERS, *headers], b"")
    return {
        "status": resp.status,
        "headers": [k.lower() for k, _ in resp.headers],
        "grpc-status": resp.header("grpc-status"),
        "attempts": len(app.requests),
        "stats": stats_delta(before, proxy.stats(), RETRY_STATS),
    }


@pytest.mark.parametrize(("path", "script", "headers"), RETRY_CASES, ids=[f"{p} {s} {h}" for p, s, h in RETRY_CASES])
def test_grpc_retry_same_as_envoy(
    app: GrpcApp, envoy: ProxyProcess, sluice: ProxyProcess, path: str, script: list[str], headers: list[tuple[str, str]]
) -> None:
    want = _observe_retry(app, envoy, path, script, headers)
    got = _observe_retry(app, sluice, path, script, headers)
    assert got == want
