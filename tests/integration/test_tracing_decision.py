"""Differential: the tracing decision (issue 12, point 1 and the sampling of point 2) through the
real Envoy 1.40 and Sluice, with HCM ``tracing`` blocks that have no provider (Envoy's null
tracer: the decision is made, packed into the x-request-id and counted, but no span is made).

Per request, compared: the x-request-id the upstream received and the one in the response (a
generated UUID masked but for its character 14, the trace status; a supplied one as it is),
the response's header names in order, and the ``tracing.*`` counters it moved. Listeners:
``tracing: {}`` with ``always_set_request_id_in_response`` and routes with their own
``tracing`` (random 0 %, client 0 %); random sampling at 50 % (decided on the id's first 8 hex
digits, so supplied ids are deterministic cases); overall sampling 0 %; ``pack_trace_reason:
false``; no tracing at all; and an internal client (loopback in ``internal_address_config``),
with and without tracing, whose ``x-envoy-force-trace`` is kept (a forced trace, and the
x-request-id in the response even without tracing); and route ``decorator`` operations, ingress
(the caller's operation from the header, the decorator's back in the response) and egress
(``traffic_direction: OUTBOUND``: the decorator's operation sent upstream). Then the runtime keys ``tracing.random_sampling``, ``tracing.global_enabled``
and ``tracing.client_enabled`` through ``/runtime_modify``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from harness import LoopThread, ProbeApp, ProxyProcess, free_port, http

pytestmark = pytest.mark.envoy

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-([0-9a-f])[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")

INTERNAL = "use_remote_address: true\ninternal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.0, prefix_len: 8}]}"
LISTENERS = {
    "default": "tracing: {}\nalways_set_request_id_in_response: true",
    "half": "tracing: {random_sampling: {value: 50}}",
    "overall0": "tracing: {overall_sampling: {value: 0}, client_sampling: {value: 100}}",
    "nopack": "tracing: {}\nrequest_id_extension: {typed_config: {'@type': type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig, pack_trace_reason: false}}",
    "notracing": "",
    # The loopback client is internal here: x-envoy-force-trace is kept, forces the trace and
    # (tracing or not) puts the x-request-id in the response.
    "internal": f"tracing: {{}}\n{INTERNAL}",
    "internal_notracing": INTERNAL,
    "egress": "tracing: {}",  # (traffic_direction OUTBOUND: see DIRECTIONS)
}
DIRECTIONS = {"egress": "OUTBOUND", "internal": "INBOUND"}

LISTENER = """
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
{direction}    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
{extra}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {{match: {{prefix: /rs0}}, route: {{cluster: app}}, tracing: {{random_sampling: {{numerator: 0}}}}}}
              - {{match: {{prefix: /client0}}, route: {{cluster: app}}, tracing: {{client_sampling: {{numerator: 0}}}}}}
              - {{match: {{prefix: /decorated}}, route: {{cluster: app}}, decorator: {{operation: checkAvailability}}}}
              - {{match: {{prefix: /quiet}}, route: {{cluster: app}}, decorator: {{operation: q, propagate: false}}}}
              - {{match: {{prefix: /}}, route: {{cluster: app}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"""

CONFIG = """
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
layered_runtime:
  layers:
  - {{name: admin, admin_layer: {{}}}}
static_resources:
  listeners:
{listeners}
  clusters:
  - {{name: app, connect_timeout: 1s, type: STATIC, load_assignment: {{cluster_name: app, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {app}}}}}}}}}]}}]}}}}
"""

RID = "11111111-2222-4333-8444-555555555555"
REQUESTS: list[tuple[str, list[tuple[str, str]]]] = [
    ("/", []),
    ("/", [("x-client-trace-id", "abc")]),
    ("/", [("x-envoy-force-trace", "1")]),  # external: removed before the decision
    ("/", [("x-envoy-force-trace", "1"), ("x-forwarded-for", "10.0.0.1")]),  # internal: kept
    ("/", [("x-request-id", RID)]),
    ("/", [("x-request-id", "11111111-2222-b333-8444-555555555555")]),
    ("/", [("x-request-id", "11111111-2222-a333-8444-555555555555")]),
    ("/", [("x-request-id", "notauuid")]),
    ("/", [("x-request-id", "abc")]),
    ("/", [("x-request-id", "1111111-2222-4333-8444-555555555555")]),  # first 8 not hex
    ("/", [("x-request-id", "ffffffff-2222-4333-8444-55555555555")]),  # 35 characters
    ("/", [("x-request-id", "00000000-0000-4000-8000-000000000000")]),  # 0 % 10000
    ("/", [("x-request-id", "00001387-0000-4000-8000-000000000000")]),  # 4999
    ("/", [("x-request-id", "00001388-0000-4000-8000-000000000000")]),  # 5000
    ("/rs0", []),
    ("/rs0", [("x-client-trace-id", "abc")]),
    ("/client0", [("x-client-trace-id", "abc")]),
    # route decorators: x-envoy-decorator-operation upstream (egress) or back (ingress)
    ("/decorated", []),
    ("/decorated", [("x-envoy-decorator-operation", "fromclient")]),
    ("/decorated", [("x-envoy-decorator-operation", "")]),
    ("/decorated/resp-op", []),  # (the upstream answers with its own operation)
    ("/quiet", [("x-envoy-decorator-operation", "fromclient")]),
    ("/plain/resp-op", [("x-envoy-decorator-operation", "x")]),
]


class DecoratingApp(ProbeApp):
    """The probe app, answering ``x-envoy-decorator-operation: upop`` on paths with ``resp-op``."""

    def respond(self, rec: Any, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        status, headers, body, delay = super().respond(rec, local_ip)
        if "resp-op" in rec.path:
            headers = [*headers, ("X-Envoy-Decorator-Operation", "upop")]
        return status, headers, body, delay


def _mask(value: str | None, supplied: str | None) -> str | None:
    if value is None or value == supplied:
        return value
    m = UUID.fullmatch(value)
    return f"<uuid, 14={m.group(1)}>" if m else value


class Proxy:
    def __init__(self, kind: str, app_port: int) -> None:
        self.ports = {name: free_port() for name in LISTENERS}
        listeners = "".join(
            LISTENER.format(
                name=name, port=self.ports[name], extra="".join(f"          {line}\n" for line in extra.splitlines()),
                direction=f"    traffic_direction: {DIRECTIONS[name]}\n" if name in DIRECTIONS else "",
            )
            for name, extra in LISTENERS.items()
        )
        self.proc = ProxyProcess(kind, yaml.safe_load(CONFIG.format(admin=free_port(), listeners=listeners, app=app_port))).start()

    def tracing_stats(self) -> dict[str, int]:
        return {k: v for k, v in self.proc.stats().items() if ".tracing." in k}

    def exchange(self, listener: str, path: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
        before = self.tracing_stats()
        resp = http(self.ports[listener], "GET", path, headers=headers)
        after = self.tracing_stats()
        supplied = dict(headers).get("x-request-id")
        upstream = dict((k.lower(), v) for k, v in json.loads(resp.body)["headers"]) if resp.status == 200 else {}
        return {
            "status": resp.status,
            "upstream_rid": _mask(upstream.get("x-request-id"), supplied),
            "upstream_trace_headers": sorted((k, v) for k, v in upstream.items() if "trace" in k or "decorator" in k),
            "response_rid": _mask(resp.header("x-request-id"), supplied),
            "response_names": [k.lower() for k, _ in resp.headers],
            "response_decorator": resp.header("x-envoy-decorator-operation"),
            "tracing": {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)},
        }


@pytest.fixture(scope="module")
def proxies(loop: LoopThread) -> Iterator[dict[str, Proxy]]:
    app = DecoratingApp("probe", plain=True)
    loop.run(app.start("127.0.0.1", 0))
    started: dict[str, Proxy] = {}
    try:
        for kind in ("envoy", "sluice"):
            started[kind] = Proxy(kind, app.port)
        yield started
    finally:
        for p in started.values():
            p.proc.stop()
        loop.run(app.stop())


def _both(proxies: dict[str, Proxy], listener: str, path: str, headers: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    with ThreadPoolExecutor(2) as pool:
        jobs = {kind: pool.submit(p.exchange, listener, path, headers) for kind, p in proxies.items()}
        return {kind: j.result() for kind, j in jobs.items()}


@pytest.mark.parametrize("listener", list(LISTENERS))
def test_the_decision_ids_and_counters_are_envoys(proxies: dict[str, Proxy], listener: str) -> None:
    for path, headers in REQUESTS:
        if listener == "half" and not path.startswith("/rs0") and not ({"x-request-id", "x-client-trace-id"} & dict(headers).keys()):
            continue  # (sampled at random on a random id: the ids given are the cases here)
        got = _both(proxies, listener, path, headers)
        assert got["envoy"]["status"] == 200, got["envoy"]
        assert got["sluice"] == got["envoy"], (listener, path, headers)


def test_the_runtime_keys_as_envoy_reads_them(proxies: dict[str, Proxy]) -> None:
    steps: list[tuple[dict[str, str], str, list[tuple[str, str]]]] = [
        ({"tracing.random_sampling": "0"}, "/", []),
        ({"tracing.random_sampling": "0"}, "/", [("x-client-trace-id", "abc")]),
        ({"tracing.random_sampling": "", "tracing.global_enabled": "0"}, "/", []),
        ({"tracing.global_enabled": "", "tracing.client_enabled": "0"}, "/", [("x-client-trace-id", "abc")]),
        ({"tracing.client_enabled": ""}, "/", [("x-client-trace-id", "abc")]),
    ]
    try:
        for values, path, headers in steps:
            for p in proxies.values():
                assert p.proc.runtime_modify(**values).status == 200
            got = _both(proxies, "default", path, headers)
            assert got["sluice"] == got["envoy"], (values, headers)
    finally:
        for p in proxies.values():
            p.proc.runtime_modify(**{"tracing.random_sampling": "", "tracing.global_enabled": "", "tracing.client_enabled": ""})


def test_the_tracing_counters_match_in_total(proxies: dict[str, Proxy]) -> None:
    """(After the other tests, or alone: either way the two proxies saw the same requests.)"""
    e, s = (p.tracing_stats() for p in (proxies["envoy"], proxies["sluice"]))
    assert s == e
    assert any(k.startswith("http.notracing.tracing.") for k in e)  # made for every listener's HCM
