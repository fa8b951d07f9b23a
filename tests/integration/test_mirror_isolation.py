"""A slow or failing shadow never delays or changes the client's response (golden
mirror_shadow_slow_or_failing.json: Envoy answers from the primary at once)."""

from __future__ import annotations

import asyncio
import socket
import time

from sluice.config.loader import load_bootstrap
from sluice.lab.apps.demoapp import App, Recorded
from sluice.server import Server

CONFIG = """
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
            - name: v
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route:
                  cluster: primary
                  request_mirror_policies: [{{cluster: shadow}}]
          http_filters: [{{name: envoy.filters.http.router}}]
  clusters:
  - name: primary
    connect_timeout: 1s
    load_assignment: {{cluster_name: primary, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {primary}}}}}}}}}]}}]}}
  - name: shadow
    connect_timeout: 0.25s
    load_assignment: {{cluster_name: shadow, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {shadow}}}}}}}}}]}}]}}
"""


class SlowApp(App):
    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        status, headers, body, _delay = super().respond(rec, local_ip)
        return status, headers, body, 2.0


class FailingApp(App):
    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        _status, headers, body, delay = super().respond(rec, local_ip)
        return 503, headers, body, delay


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def timed_get(port: int) -> tuple[bytes, float]:
    t0 = time.monotonic()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /hostname HTTP/1.1\r\nHost: mirror.test\r\nConnection: close\r\n\r\n")
    await w.drain()
    # The response is complete at its content-length: like curl, the client does not
    # wait for the proxy's close, which Envoy delays (delayed_close_timeout, 1 s).
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    data = head + await asyncio.wait_for(r.readexactly(length), 5)
    elapsed = time.monotonic() - t0
    w.close()
    return data, elapsed


def run_with_shadow(shadow_app: App | None) -> list[tuple[bytes, float]]:
    async def main() -> list[tuple[bytes, float]]:
        primary = App("primary")
        await primary.start("127.0.0.1", 0)
        shadow_port = unused_port()
        if shadow_app is not None:
            await shadow_app.start("127.0.0.1", 0)
            shadow_port = shadow_app.port
        server = Server(load_bootstrap(config_yaml=CONFIG.format(primary=primary.port, shadow=shadow_port)))
        await server.start()
        try:
            results = [await timed_get(server.listeners[0].port) for _ in range(3)]
            if shadow_app is not None:
                await asyncio.sleep(0.1)
                assert len(shadow_app.requests) == 3  # the shadows were sent
                assert shadow_app.requests[0].header("host") == "mirror.test-shadow"
            return results
        finally:
            await server.stop()
            await primary.stop()
            if shadow_app is not None:
                await shadow_app.stop()

    return asyncio.run(asyncio.wait_for(main(), 20))


def assert_primary_answers_at_once(results: list[tuple[bytes, float]]) -> None:
    for data, elapsed in results:
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert data.endswith(b"ServerName: primary\n")
        assert elapsed < 1.0  # the 2 s shadow is never waited for


def test_slow_shadow_does_not_delay_the_client() -> None:
    assert_primary_answers_at_once(run_with_shadow(SlowApp("slow")))


def test_failing_shadow_is_invisible_to_the_client() -> None:
    assert_primary_answers_at_once(run_with_shadow(FailingApp("failing")))


def test_unreachable_shadow_is_invisible_to_the_client() -> None:
    assert_primary_answers_at_once(run_with_shadow(None))
