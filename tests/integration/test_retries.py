"""Retries and router timeouts, in-process against demoapp upstreams, checked against the golden
captures of Envoy 1.40 (``golden/envoy-part1-2/retries/retry_timeout_edge_cases.json``) and
asserted through the cluster stats as Envoy's integration tests do."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness import GoldenDemoApp, _http_date, assert_binomial, free_port

from sluice.config.loader import load_bootstrap
from sluice.lab.apps.demoapp import App, Recorded
from sluice.server import Server

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "golden/envoy-part1-2/retries/retry_timeout_edge_cases.json").read_text())

CONFIG = """
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
static_resources:
  listeners:
  - name: l0
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: backend
              domains: ["*"]
              include_request_attempt_count: true
              include_attempt_count_in_response: true
              routes:
              - match: {{prefix: /r5xx3/}}
                route: {{cluster: probe, prefix_rewrite: /, retry_policy: {{retry_on: 5xx, num_retries: 3}}}}
              - match: {{prefix: /noretry/}}
                route: {{cluster: probe, prefix_rewrite: /}}
              - match: {{prefix: /pertry/}}
                route: {{cluster: probe, prefix_rewrite: /, timeout: 3s,
                        retry_policy: {{retry_on: 5xx, num_retries: 2, per_try_timeout: 0.1s}}}}
              - match: {{prefix: /pertry-connfail-only/}}
                route: {{cluster: probe, prefix_rewrite: /, timeout: 3s,
                        retry_policy: {{retry_on: connect-failure, num_retries: 2, per_try_timeout: 0.1s}}}}
              - match: {{prefix: /pertry-gt-timeout/}}
                route: {{cluster: probe, prefix_rewrite: /, timeout: 0.15s,
                        retry_policy: {{retry_on: 5xx, num_retries: 5, per_try_timeout: 0.1s}}}}
              - match: {{prefix: /idle/}}
                route: {{cluster: probe, prefix_rewrite: /, timeout: 3s,
                        retry_policy: {{retry_on: 5xx, num_retries: 1, per_try_idle_timeout: 0.1s}}}}
              - match: {{prefix: /timeout0/}}
                route: {{cluster: probe, prefix_rewrite: /, timeout: 0s}}
              - match: {{prefix: /gw/}}
                route: {{cluster: probe, prefix_rewrite: /, retry_policy: {{retry_on: gateway-error, num_retries: 2}}}}
              - match: {{prefix: /codes/}}
                route: {{cluster: probe, prefix_rewrite: /,
                        retry_policy: {{retry_on: retriable-status-codes, num_retries: 2, retriable_status_codes: [418]}}}}
              - match: {{prefix: /hdrs/}}
                route:
                  cluster: probe
                  prefix_rewrite: /
                  retry_policy:
                    retry_on: retriable-headers
                    num_retries: 2
                    retriable_headers: [{{name: x-retry-me}}]
                    retriable_request_headers: [{{name: x-may-retry}}]
              - match: {{prefix: /closed/}}
                route: {{cluster: closed}}
              - match: {{prefix: /closed-retry/}}
                route: {{cluster: closed, retry_policy: {{retry_on: connect-failure, num_retries: 2}}}}
              - match: {{prefix: /pair/}}
                route:
                  cluster: pair
                  prefix_rewrite: /
                  retry_policy:
                    retry_on: 5xx
                    num_retries: 1
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config: {{"@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}
                    host_selection_retry_max_attempts: 30
              - match: {{prefix: /}}
                route: {{cluster: probe, prefix_rewrite: /, retry_policy: {{retry_on: 5xx, num_retries: 3}}}}
            - name: plain
              domains: ["plain"]
              retry_policy: {{retry_on: 5xx, num_retries: 3, retry_back_off: {{base_interval: 0.001s}}}}
              routes:
              - match: {{prefix: /}}
                route: {{cluster: probe}}
          http_filters: [{{name: envoy.filters.http.router}}]
  clusters:
  - name: probe
    connect_timeout: 0.25s
    type: STATIC
    load_assignment:
      cluster_name: probe
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]
  - name: closed
    connect_timeout: 0.25s
    type: STATIC
    load_assignment:
      cluster_name: closed
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {closed}}}}}}}}}]}}]
  - name: pair
    connect_timeout: 0.25s
    type: STATIC
    lb_policy: RANDOM
    load_assignment:
      cluster_name: pair
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {bad}}}}}}}
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
"""


class ScriptedApp(GoldenDemoApp):
    """demoapp (with the golden apps' header order) whose ``/script`` answers come from a list (then 200), with extra headers."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.script: list[tuple[int, list[tuple[str, str]]]] = []

    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        if rec.path.split("?", 1)[0] == "/script":
            status, extra = self.script.pop(0) if self.script else (200, [])
            body = f"status {status}\n".encode()
            head = [("Server", "Werkzeug/1.0.1 Python/3.8.3"), ("Date", _http_date()), ("Content-Type", "text/plain")]
            return status, [*head, ("Content-Length", str(len(body))), *extra], body, 0.0
        return super().respond(rec, local_ip)


class BadApp(App):
    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        return 503, [("Content-Length", "0")], b"", 0.0


class Resp:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, elapsed: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


async def request(port: int, path: str, headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> Resp:
    t0 = time.monotonic()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    host = "plain" if path.startswith("/plain") else "front.example"
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers or [])
    method = "POST" if body else "GET"
    length = f"content-length: {len(body)}\r\n" if body else ""
    w.write(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}{length}\r\n".encode() + body)
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = [(k.lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line)]
    n = int(next((v for k, v in hdrs if k == "content-length"), "0"))
    data = await asyncio.wait_for(r.readexactly(n), 10)
    elapsed = time.monotonic() - t0
    w.close()
    return Resp(status, hdrs, data, elapsed)


def run(body: Callable[[Server, ScriptedApp], Awaitable[None]]) -> None:
    async def main() -> None:
        app = ScriptedApp("up")
        await app.start("127.0.0.1", 0)
        bad = BadApp("bad")
        await bad.start("127.0.0.1", 0)
        cfg = CONFIG.format(port=app.port, closed=free_port(), bad=bad.port)
        server = Server(load_bootstrap(config_yaml=cfg))
        await server.start()
        try:
            await body(server, app)
        finally:
            await server.stop()
            await app.stop()
            await bad.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def stat(server: Server, name: str) -> int:
    return int(server.store.value(name) or 0)


def attempts(app: App) -> list[str | None]:
    return [r.header("x-envoy-attempt-count") for r in app.requests]


def case(group: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = GOLDEN[group][name]
    return got


def test_route_retry_5xx_exhausted_matches_envoy() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        resp = await request(port, "/r5xx3/status/503")
        want = case("route_retry_policy", "full response after retries exhausted (503 from upstream)")
        assert resp.status == want["status"]
        assert [k for k, _ in resp.headers] == [k for k, _ in want["headers"]]
        assert resp.header("x-envoy-attempt-count") == "4"
        assert resp.body == b"status 503\n"
        assert attempts(app) == ["1", "2", "3", "4"]
        # Upstream headers of each attempt: same names in the same order as Envoy's.
        golden_attempts = case("route_retry_policy", "upstream request headers of each attempt")
        for rec, g in zip(app.requests, golden_attempts, strict=True):
            assert [k for k, _ in rec.headers] == [k for k, _ in g]
        expected = [int(r.header("x-envoy-expected-rq-timeout-ms") or 0) for r in app.requests]
        assert expected[0] == 15000
        assert all(14000 < e <= 15000 for e in expected)
        assert expected == sorted(expected, reverse=True)
        c = "cluster.probe."
        assert stat(server, c + "upstream_rq_retry") == 3
        assert stat(server, c + "upstream_rq_retry_backoff_exponential") == 3
        assert stat(server, c + "upstream_rq_retry_limit_exceeded") == 1
        assert stat(server, c + "upstream_rq_retry_success") == 0
        assert stat(server, c + "upstream_rq_503") == 1  # only the final response is charged
        assert stat(server, c + "retry.upstream_rq_503") == 3
        assert stat(server, c + "upstream_rq_total") == 4

    run(body)


def test_retry_on_conditions_match_envoy_attempt_counts() -> None:
    cases = [
        ("/r5xx3/status/200", "route retry 5xx x3, upstream 200"),
        ("/r5xx3/status/404", "route retry 5xx x3, upstream 404 (not retried)"),
        ("/r5xx3/status/500", "route retry 5xx x3, upstream 500"),
        ("/gw/status/500", "gateway-error x2, upstream 500 (not retried)"),
        ("/gw/status/502", "gateway-error x2, upstream 502"),
        ("/gw/status/504", "gateway-error x2, upstream 504"),
        ("/codes/status/418", "retriable-status-codes [418] x2, upstream 418"),
        ("/codes/status/503", "retriable-status-codes [418] x2, upstream 503 (not retried)"),
        ("/noretry/status/503", "no retry policy, upstream 503"),
    ]

    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        for path, name in cases:
            app.requests.clear()
            resp = await request(port, path)
            want = case("retry_request_headers" if name.startswith("no retry") else "route_retry_policy", name)
            assert resp.status == want["status"], name
            assert len(app.requests) == want["upstream_attempts"], name
            assert attempts(app) == want["upstream_x-envoy-attempt-count"], name
            assert resp.header("x-envoy-attempt-count") == want["response_x-envoy-attempt-count"], name

    run(body)


def test_external_requests_ignore_retry_headers() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        hdrs = [("x-envoy-retry-on", "5xx"), ("x-envoy-max-retries", "2"), ("x-envoy-upstream-rq-timeout-ms", "1")]
        resp = await request(port, "/noretry/status/503", hdrs)
        assert resp.status == 503 and len(app.requests) == 1
        names = [k for k, _ in app.requests[0].headers]
        assert "x-envoy-retry-on" not in names and "x-envoy-max-retries" not in names
        assert app.requests[0].header("x-envoy-expected-rq-timeout-ms") == "15000"
        app.requests.clear()
        resp = await request(port, "/r5xx3/status/503", [("x-envoy-max-retries", "1")])
        assert len(app.requests) == 4  # the header is ignored, the route's 3 retries apply

    run(body)


def test_retry_then_success_counts_retry_success() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        app.script = [(503, []), (502, [])]
        resp = await request(port, "/script")
        assert resp.status == 200
        assert resp.header("x-envoy-attempt-count") == "3"
        c = "cluster.probe."
        assert stat(server, c + "upstream_rq_retry") == 2
        assert stat(server, c + "upstream_rq_retry_success") == 1
        assert stat(server, c + "upstream_rq_200") == 1
        assert stat(server, c + "upstream_rq_503") == 0

    run(body)


def test_request_body_is_replayed_on_retry() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        app.script = [(503, [])]
        resp = await request(port, "/script", body=b"hello body")
        assert resp.status == 200
        assert [r.body for r in app.requests] == [b"hello body", b"hello body"]

    run(body)


def test_connect_failure_bodies_match_envoy() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        resp = await request(port, "/closed/x")
        want = case("upstream_failures", "cluster endpoint port closed: full response")
        assert (resp.status, resp.body.decode()) == (503, want["body"])
        assert [k for k, _ in resp.headers] == [k for k, _ in want["headers"]]
        resp = await request(port, "/closed-retry/x")
        want = case("upstream_failures", "closed port + retry_on connect-failure x2: full response")
        assert (resp.status, resp.body.decode()) == (503, want["body"])
        assert resp.header("x-envoy-attempt-count") == "3"
        assert stat(server, "cluster.closed.upstream_rq_retry") == 2
        assert stat(server, "cluster.closed.upstream_cx_connect_fail") == 4

    run(body)


def test_connection_termination_is_retried_under_5xx() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        resp = await request(port, "/r5xx3/close")
        want = case("upstream_failures", "upstream closes connection, route 5xx x3")
        assert (resp.status, resp.body.decode()) == (503, want["body"])
        assert resp.header("x-envoy-attempt-count") == "4"
        resp = await request(port, "/noretry/close")
        want = case("upstream_failures", "upstream closes connection without response: full response")
        assert resp.body.decode() == want["body"]

    run(body)


def test_per_try_timeout_retries_under_5xx_then_504() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        resp = await request(port, "/pertry/delay/1000")
        want = case("timeouts", "per_try_timeout full 504 response")
        assert (resp.status, resp.body.decode()) == (504, want["body"])
        assert [k for k, _ in resp.headers] == [k for k, _ in want["headers"]]
        assert resp.header("x-envoy-attempt-count") == "3"
        assert 0.3 <= resp.elapsed < 0.8
        assert [r.header("x-envoy-expected-rq-timeout-ms") for r in app.requests] == ["100"] * 3
        assert stat(server, "cluster.probe.upstream_rq_per_try_timeout") == 3
        assert stat(server, "cluster.probe.upstream_rq_timeout") == 0
        app.requests.clear()
        resp = await request(port, "/pertry-connfail-only/delay/1000")
        assert resp.status == 504 and len(app.requests) == 1 and resp.elapsed < 0.5
        app.requests.clear()
        resp = await request(port, "/pertry/delay/20")
        assert resp.status == 200 and len(app.requests) == 1

    run(body)


def test_route_timeout_caps_retries() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        resp = await request(port, "/pertry-gt-timeout/delay/2000")
        assert resp.status == 504 and resp.body == b"upstream request timeout"
        # per-try 0.1 s, back-off < 25 ms: the second attempt is cut by the 0.15 s route timeout.
        assert 0.14 <= resp.elapsed < 0.5
        assert len(app.requests) == 2
        assert stat(server, "cluster.probe.upstream_rq_timeout") == 1
        assert stat(server, "cluster.probe.upstream_rq_504") == 1

    run(body)


def test_timeout_zero_sends_no_expected_timeout_header() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        await request(port, "/timeout0/echo")
        want = case("timeouts", "route timeout 0s: upstream headers")
        assert [k for k, _ in app.requests[0].headers] == [k for k, _ in want]

    run(body)


def test_per_try_idle_timeout() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        resp = await request(port, "/idle/delay/1000")
        assert resp.status == 504 and len(app.requests) == 2
        assert stat(server, "cluster.probe.upstream_rq_per_try_idle_timeout") == 2

    run(body)


def test_retriable_headers_and_request_headers() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        app.script = [(200, [("x-retry-me", "1")])]
        resp = await request(port, "/hdrs/script", [("x-may-retry", "yes")])
        assert resp.status == 200 and len(app.requests) == 2
        app.requests.clear()
        app.script = [(200, [("x-retry-me", "1")])]
        resp = await request(port, "/hdrs/script")  # no x-may-retry: never retried
        assert len(app.requests) == 1 and resp.header("x-retry-me") == "1"

    run(body)


def test_previous_hosts_predicate_avoids_the_failed_host() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        for _ in range(20):
            resp = await request(port, "/pair/status/200")
            assert resp.status == 200
        assert stat(server, "cluster.pair.upstream_rq_retry_limit_exceeded") == 0

    run(body)


def test_retry_overflow_with_concurrent_requests() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        results = await asyncio.gather(*(request(port, "/r5xx3/status/503") for _ in range(20)))
        assert all(r.status == 503 for r in results)
        overflow = stat(server, "cluster.probe.upstream_rq_retry_overflow")
        assert overflow > 0  # max_retries (3) concurrent retries
        assert (
            stat(server, "cluster.probe.upstream_rq_retry") + overflow + stat(server, "cluster.probe.upstream_rq_retry_limit_exceeded")
            >= 20
        )

    run(body)


def test_fifty_percent_failures_with_three_retries_fail_one_in_sixteen() -> None:
    class Flaky(ScriptedApp):
        def __init__(self) -> None:
            super().__init__("flaky")
            import random

            self.rng = random.Random(7)

        def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
            status = 503 if self.rng.random() < 0.5 else 200
            return status, [("Content-Length", "0")], b"", 0.0

    async def main() -> None:
        app = Flaky()
        await app.start("127.0.0.1", 0)
        server = Server(load_bootstrap(config_yaml=CONFIG.format(port=app.port, closed=free_port(), bad=app.port)))
        await server.start()
        try:
            port = server.listeners[0].port
            n = 600
            codes = [(await request(port, "/plain/x")).status for _ in range(n)]
            assert_binomial(codes.count(503), n, 1 / 16, "503s")
            assert stat(server, "cluster.probe.upstream_rq_retry_overflow") == 0
            assert stat(server, "cluster.probe.upstream_rq_retry_limit_exceeded") == codes.count(503)
        finally:
            await server.stop()
            await app.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_body_over_the_buffer_limit_abandons_retries() -> None:
    async def body(server: Server, app: ScriptedApp) -> None:
        port = server.listeners[0].port
        resp = await request(port, "/r5xx3/status/503", body=b"x" * (1536 * 1024))
        assert resp.status == 503 and len(app.requests) == 1
        assert len(app.requests[0].body) == 1536 * 1024
        assert stat(server, "cluster.probe.retry_or_shadow_abandoned") == 1
        assert stat(server, "cluster.probe.upstream_rq_retry") == 0

    run(body)
