"""Differential: ``request_headers_to_add`` / ``response_headers_to_add`` values with
substitution commands, through the real Envoy and Sluice on one config and one upstream.

Envoy formats header values with its access-log formatter (omit_empty_values on, legacy
``UPSTREAM_METADATA([...])`` and ``PER_REQUEST_STATE`` forms translated); the headers the app
receives and the headers the client gets back must be the same from both proxies, on a
proxied request, a direct response and an upstream connect failure."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from harness import LoopThread, ProxyProcess, free_port
from http_client import Client

from sluice.lab.apps.demoapp import App

pytestmark = pytest.mark.envoy

REQUEST_ADDS = [
    ("x-r-ua", "%REQ(user-agent)%"), ("x-r-alt", "%REQ(x-missing?x-in)%"), ("x-r-missing", "%REQ(x-missing)%"),
    ("x-r-trunc", "%REQ(x-in):2%"), ("x-r-mix", "a-%PROTOCOL%-%%-%REQ(x-missing)%-z"),
    ("x-r-addr", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"), ("x-r-local", "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%"),
    ("x-r-year", "%START_TIME(%Y)%"), ("x-r-route", "%ROUTE_NAME%"), ("x-r-cluster", "%UPSTREAM_CLUSTER%"),
    ("x-r-code", "%RESPONSE_CODE%"), ("x-r-flags", "%RESPONSE_FLAGS%"), ("x-r-details", "%RESPONSE_CODE_DETAILS%"),
    ("x-r-meta-json", '%UPSTREAM_METADATA(["envoy.lb", "canary"])%'), ("x-r-meta", "%UPSTREAM_METADATA(envoy.lb:canary)%"),
    ("x-r-dyn", '%DYNAMIC_METADATA(["ns", "k"])%'), ("x-r-state", "%PER_REQUEST_STATE(foo)%"),
    ("x-r-uhost", "%UPSTREAM_HOST%"), ("x-r-bytes", "%BYTES_RECEIVED%"), ("x-r-env", "%ENVIRONMENT(SLUICE_HDR_TEST)%"),
    ("x-r-env-missing", "%ENVIRONMENT(SLUICE_HDR_TEST_UNSET)%"), ("x-r-hostname", "%HOSTNAME%"),
    ("x-r-vcluster", "%VIRTUAL_CLUSTER_NAME%"), ("x-r-attempts", "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"),
    ("x-r-proto", "%PROTOCOL%"), ("x-r-sni", "%REQUESTED_SERVER_NAME%"), ("x-r-tls", "%DOWNSTREAM_TLS_VERSION%"),
]  # fmt: skip
RESPONSE_ADDS = [
    ("x-p-server", "%RESP(server)%"), ("x-p-ctype", "%RESP(content-type)%"), ("x-p-code", "%RESPONSE_CODE%"),
    ("x-p-details", "%RESPONSE_CODE_DETAILS%"), ("x-p-flags", "%RESPONSE_FLAGS%"), ("x-p-uhost", "%UPSTREAM_HOST%"),
    ("x-p-path", "%REQ(:path)%"), ("x-p-in", "%REQ(x-in)%"), ("x-p-meta", "%UPSTREAM_METADATA(envoy.lb:canary)%"),
    ("x-p-attempts", "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"), ("x-p-missing", "%RESP(x-missing)%"),
    ("x-p-cluster", "%UPSTREAM_CLUSTER%"),
]  # fmt: skip


def _adds(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"header": {"key": k, "value": v}} for k, v in pairs]


def _config(port: int, admin: int, app: int, dead: int) -> dict[str, Any]:
    route_adds = _adds(REQUEST_ADDS) + [
        {"header": {"key": "x-r-keep", "value": "%REQ(x-missing)%"}, "keep_empty_value": True},
        {"header": {"key": "x-in", "value": "%REQ(x-in)%-over"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-in", "value": "never"}, "append_action": "ADD_IF_ABSENT"},
        {"header": {"key": "x-absent", "value": "never"}, "append_action": "OVERWRITE_IF_EXISTS"},
        {"header": {"key": "x-added", "value": "%REQ(x-in)%"}, "append_action": "ADD_IF_ABSENT"},
    ]
    vhost = {
        "name": "all", "domains": ["*"],
        "request_headers_to_add": [{"header": {"key": "x-vh", "value": "%REQ(x-in)%|%REQ(x-missing)%|%%"}}],
        "response_headers_to_add": [{"header": {"key": "x-vh-code", "value": "%RESPONSE_CODE%/%RESP(server)%"}}],
        "routes": [
            {"name": "to-app", "match": {"prefix": "/headers"}, "route": {"cluster": "app"},
             "request_headers_to_add": route_adds, "response_headers_to_add": _adds(RESPONSE_ADDS)},
            {"name": "direct", "match": {"prefix": "/direct"}, "direct_response": {"status": 202, "body": {"inline_string": "d"}},
             "response_headers_to_add": _adds(RESPONSE_ADDS)},
            {"name": "to-dead", "match": {"prefix": "/dead"}, "route": {"cluster": "dead"},
             "request_headers_to_add": route_adds, "response_headers_to_add": _adds(RESPONSE_ADDS)},
        ],
    }  # fmt: skip
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "hdr",
        "route_config": {"name": "rc", "virtual_hosts": [vhost],
                         "request_headers_to_add": [{"header": {"key": "x-rc", "value": "rc-%PROTOCOL%"}}],
                         "response_headers_to_add": [{"header": {"key": "x-rc-resp", "value": "%RESP(content-length)%"}}]},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }  # fmt: skip

    def cluster(name: str, p: int) -> dict[str, Any]:
        endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}},
                    "metadata": {"filter_metadata": {"envoy.lb": {"canary": "yes"}}}}
        return {"name": name, "connect_timeout": "0.25s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]}}  # fmt: skip

    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": [cluster("app", app), cluster("dead", dead)],
        },
    }  # fmt: skip


VOLATILE = {"date", "x-envoy-upstream-service-time", "x-request-id", "content-length"}


def _exchange(port: int, app: App, path: str) -> dict[str, Any]:
    app.requests.clear()
    with Client(port) as c:
        resp = c.request("GET", path, headers=[("user-agent", "ua/1"), ("x-in", "hello"), ("x-in", "again")])
    view: dict[str, Any] = {"status": resp.status,
                            "response": [(k.lower(), v) for k, v in resp.headers if k.lower() not in VOLATILE]}
    if app.requests:
        rec = app.requests[0]
        rid = rec.header("x-request-id")
        view["upstream"] = [(k, "<rid>" if v == rid else "<listener>" if k == "host" else v)
                            for k, v in rec.headers if k != "x-request-id"]
        view["body"] = json.loads(resp.body)["path"]
    else:
        view["body"] = resp.body.decode()
    return view


@pytest.fixture(scope="module")
def views() -> Iterator[dict[str, list[dict[str, Any]]]]:
    loop = LoopThread()
    app = App("app")
    loop.run(app.start("127.0.0.1", 0))
    os.environ["SLUICE_HDR_TEST"] = "from-env"
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        dead = free_port()
        for kind in ("envoy", "sluice"):
            proxy = ProxyProcess(kind, _config(free_port(), free_port(), app.port, dead)).start()
            try:
                out[kind] = [_exchange(proxy.port, app, p) for p in ("/headers", "/direct", "/dead")]
            finally:
                proxy.stop()
    finally:
        del os.environ["SLUICE_HDR_TEST"]
        loop.run(app.stop())
        loop.close()
    yield out


@pytest.mark.parametrize("case", [0, 1, 2], ids=["proxied", "direct_response", "connect_failure"])
def test_header_values_as_envoy_formats_them(views: dict[str, list[dict[str, Any]]], case: int) -> None:
    envoy, sluice = views["envoy"][case], views["sluice"][case]
    if case == 0:
        # (The request's headers are formatted before a host is chosen: no UPSTREAM_* values
        # there in Envoy either; the response sees them.)
        sent, back = dict(envoy["upstream"]), dict(envoy["response"])
        assert sent["x-r-env"] == "from-env" and "x-r-missing" not in sent and "x-r-meta-json" not in sent, envoy
        assert back["x-p-meta"] == "yes" and back["x-p-code"] == "200", envoy
    assert sluice == envoy
