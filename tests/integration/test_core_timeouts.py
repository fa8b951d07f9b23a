"""Stream idle timeout (HCM and route), auto_host_rewrite, and crash isolation, in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sluice.config.loader import load_bootstrap
from sluice.lab.apps.demoapp import App
from sluice.server import Server

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
          stream_idle_timeout: {hcm_idle}
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {{prefix: "/route-idle/"}}
                route: {{cluster: dns, prefix_rewrite: "/", idle_timeout: 0.2s}}
              - match: {{prefix: "/auto/"}}
                route: {{cluster: dns, prefix_rewrite: "/", auto_host_rewrite: true}}
              - match: {{prefix: "/"}}
                route: {{cluster: dns}}
          http_filters: [{{name: envoy.filters.http.router}}]
  clusters:
  - name: dns
    connect_timeout: 1s
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    load_assignment:
      cluster_name: dns
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: localhost, port_value: {port}}}}}}}
"""


def run(hcm_idle: str, body: Callable[[Server, App], Awaitable[None]]) -> None:
    async def main() -> None:
        app = App("up")
        await app.start("127.0.0.1", 0)
        server = Server(load_bootstrap(config_yaml=CONFIG.format(port=app.port, hcm_idle=hcm_idle)))
        await server.start()
        try:
            await body(server, app)
        finally:
            await server.stop()
            await app.stop()

    asyncio.run(asyncio.wait_for(main(), 20))


async def request(port: int, path: str, host: str = "front.example") -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await w.drain()
    data = await asyncio.wait_for(r.read(), 5)  # until the proxy closes
    w.close()
    return data


def test_route_idle_timeout_gives_504_stream_timeout_when_waiting_on_upstream() -> None:
    # Observed with Envoy 1.40: 504, "stream timeout", no connection: close.
    async def body(server: Server, app: App) -> None:
        resp = await request(server.listeners[0].port, "/route-idle/delay/2000")
        assert resp.startswith(b"HTTP/1.1 504 Gateway Timeout\r\ncontent-length: 14\r\ncontent-type: text/plain\r\n")
        assert resp.endswith(b"\r\n\r\nstream timeout")
        assert server.store.value("http.ingress_http.downstream_rq_idle_timeout") == 1

    run("300s", body)


def test_hcm_stream_idle_timeout_applies_without_route_override() -> None:
    async def body(server: Server, app: App) -> None:
        resp = await request(server.listeners[0].port, "/delay/2000")
        assert resp.startswith(b"HTTP/1.1 504 ")
        fast = await request(server.listeners[0].port, "/hostname")
        assert fast.startswith(b"HTTP/1.1 200 OK")

    run("0.3s", body)


def test_auto_host_rewrite_uses_the_dns_name() -> None:
    async def body(server: Server, app: App) -> None:
        await request(server.listeners[0].port, "/auto/echo")
        rec = app.requests[-1]
        assert rec.header("host") == "localhost"
        assert rec.header("x-envoy-original-host") == "front.example"

    run("300s", body)


def test_a_bug_in_one_request_does_not_stop_the_proxy(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sluice.router import router_filter

    original = router_filter.Router.decode_headers

    def flaky(self, headers, end_stream):  # type: ignore[no-untyped-def]
        if headers.path == "/boom":
            raise RuntimeError("injected bug")
        return original(self, headers, end_stream)

    monkeypatch.setattr(router_filter.Router, "decode_headers", flaky)

    async def body(server: Server, app: App) -> None:
        broken = await request(server.listeners[0].port, "/boom")
        assert broken == b""  # that connection is dropped...
        ok = await request(server.listeners[0].port, "/hostname")
        assert ok.startswith(b"HTTP/1.1 200 OK")  # ...and the proxy keeps serving

    run("300s", body)


def test_close_delimited_upstream_body_is_delivered_whole() -> None:
    async def body(server: Server, app: App) -> None:
        resp = await request(server.listeners[0].port, "/unframed")
        assert resp.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"transfer-encoding: chunked\r\n" in resp
        assert resp.endswith(b"c\r\nuntil close\n\r\n0\r\n\r\n")
        again = await request(server.listeners[0].port, "/hostname")  # the pool dropped that connection
        assert again.startswith(b"HTTP/1.1 200 OK")

    run("300s", body)
