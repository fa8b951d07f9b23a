"""The admin listener over real HTTP/1.1: status lines, header order, chunked bodies, state changes.

One in-process Server (admin and listener on 127.0.0.1, ephemeral ports, stats flushed every
50 ms) is driven with raw requests; answers are checked against the real Envoy's captures.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from sluice.config.loader import load_bootstrap
from sluice.server import Server

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "envoy-part1-2"

CONFIG = """
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
stats_flush_interval: 0.05s
layered_runtime:
  layers:
  - name: admin
    admin_layer: {}
static_resources:
  listeners:
  - name: listener_0
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: all
              domains: ['*']
              routes:
              - match: {prefix: /}
                route: {cluster: demoappv10}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: demoappv10
    connect_timeout: 0.25s
    type: STATIC
    load_assignment:
      cluster_name: demoappv10
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}
"""

ADMIN_HEADERS = ["content-type", "cache-control", "x-content-type-options", "date", "server", "transfer-encoding"]


class Reply:
    def __init__(self, status_line: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_line = status_line
        self.status = int(status_line.split()[1])
        self.headers = headers
        self.body = body.decode()

    @property
    def names(self) -> list[str]:
        return [k for k, _ in self.headers]

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k == name)


class Conn:
    """One keep-alive HTTP/1.1 connection, read with the framing the server announces."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, path: str, body: bytes = b"", form: bool = False) -> Reply:
        head = f"{method} {path} HTTP/1.1\r\nhost: admin\r\n"
        if body:
            head += f"content-length: {len(body)}\r\n"
        if form:
            head += "content-type: application/x-www-form-urlencoded\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 2)
        status_line, *lines = raw.decode("latin-1").split("\r\n")[:-2]
        headers = [(k.lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines)]
        data = b""
        if method != "HEAD" and ("transfer-encoding", "chunked") in headers:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
        return Reply(status_line, headers, data)

    def close(self) -> None:
        self.writer.close()


def golden(name: str) -> Any:
    path = GOLDEN / name
    assert path.exists(), f"golden capture missing: {path} (it is part of the repository)"
    return json.loads(path.read_text())


def assert_like_envoy(reply: Reply, captured: dict[str, Any]) -> None:
    """Status line, header names in order, header values (but the date) and body as captured."""
    assert reply.status_line == captured["status_line"]
    assert reply.names == [k for k, _ in captured["headers"]]
    for (k, v), (ck, cv) in zip(reply.headers, captured["headers"], strict=True):
        assert k == ck and (v == cv or cv == "<volatile>"), (k, v, cv)
    assert reply.body == captured["body"]


async def scenario() -> None:
    admin = golden("admin/admin.json")
    edge = golden("traffic_shifting/runtime_modify_edge_cases.json")
    server = Server(load_bootstrap(config_yaml=CONFIG))
    await server.start()
    conn = await Conn.open(server.admin.port)
    try:
        assert_like_envoy(await conn.request("GET", "/ready"), admin["GET /ready"])
        head = await conn.request("HEAD", "/ready")
        assert (head.status_line, head.names, head.body) == ("HTTP/1.1 200 OK", ADMIN_HEADERS, "")
        # POST-only endpoints refuse GET and change nothing.
        for path in ("/healthcheck/fail", "/healthcheck/ok", "/runtime_modify?a=b", "/quitquitquit", "/logging"):
            key = f"GET {path} (POST-only endpoint)"
            assert_like_envoy(await conn.request("GET", path), admin[key])
        assert (await conn.request("GET", "/ready")).body == "LIVE\n"
        # The health-check sequence.
        seq = admin["healthcheck_sequence"]
        assert_like_envoy(await conn.request("POST", "/healthcheck/fail"), seq["POST /healthcheck/fail"])
        assert_like_envoy(await conn.request("GET", "/ready"), seq["GET /ready after fail"])
        info = await conn.request("GET", "/server_info")
        assert info.names == ADMIN_HEADERS and info.header("content-type") == "application/json"
        assert json.loads(info.body)["state"] == "DRAINING"
        assert (await conn.request("GET", "/stats?filter=^server.live$")).body == "server.live: 0\n"
        assert_like_envoy(await conn.request("POST", "/healthcheck/ok"), seq["POST /healthcheck/ok"])
        assert_like_envoy(await conn.request("GET", "/ready"), seq["GET /ready after ok"])
        # /runtime_modify: usage text, form body, then /runtime.
        assert_like_envoy(await conn.request("POST", "/runtime_modify"), edge["POST_no_params"]["response"])
        ok = await conn.request("POST", "/runtime_modify", b"routing.traffic_shift.demoapp=20", form=True)
        assert_like_envoy(ok, edge["POST_form_body_value_20"]["response"])
        runtime = json.loads((await conn.request("GET", "/runtime")).body)
        assert runtime["entries"]["routing.traffic_shift.demoapp"] == edge["POST_form_body_value_20"]["runtime_entry_after"]
        # Unknown path: 404 with the help text.
        missing = await conn.request("GET", "/nonexistent")
        assert (missing.status_line, missing.names) == ("HTTP/1.1 404 Not Found", ADMIN_HEADERS)
        assert missing.body.startswith("invalid path. admin commands are:\n  /: Admin home page\n  /certs: print certs")
        # Envoy's config_dump errors carry an extra x-content-type-options header first.
        bogus = await conn.request("GET", "/config_dump?resource=bogus")
        assert bogus.status == 404 and bogus.body == "bogus not found in config dump"
        assert bogus.names == ["x-content-type-options", *ADMIN_HEADERS]
        assert bogus.header("content-type") == "text/plain"
        # The admin's own requests are histogram samples; a flush (every 50 ms here) shows them.
        await asyncio.sleep(0.2)
        stats = await conn.request("GET", "/stats?filter=^http.admin.downstream_rq_time$")
        assert re.fullmatch(r"http\.admin\.downstream_rq_time: (P[0-9.]+\([0-9.na]+,[0-9.]+\) ?){10}\n", stats.body), stats.body
        as_json = json.loads((await conn.request("GET", "/stats?format=json&filter=downstream_rq_time")).body)
        assert as_json["stats"][-1]["histograms"]["computed_quantiles"][0]["name"] == "http.admin.downstream_rq_time"
        # /quitquitquit answers, then the server stops.
        assert (await conn.request("POST", "/quitquitquit")).body == "OK\n"
        await asyncio.wait_for(server.wait_stopped(), 3)
    finally:
        conn.close()
        await server.stop()


def test_admin_over_http() -> None:
    asyncio.run(scenario())
