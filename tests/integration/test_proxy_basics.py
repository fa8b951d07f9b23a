"""Proxy basics: connection reuse, streaming, big bodies, the HTTP/1 protocol errors and the local
replies for upstream failures, with Envoy's bytes (golden captures ``route_features.json`` and
``retry_timeout_edge_cases.json``).

Every test runs against an in-process Sluice and, as a check that the expectations are Envoy's,
against the real Envoy on the same config (``envoy``-marked parameter)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import yaml
from harness import (
    GOLDEN,
    Client,
    InProcessSluice,
    LoopThread,
    ProxyProcess,
    ScriptedUpstream,
    free_port,
    normalise_headers,
    normalise_raw,
    raw_exchange,
    read_request_head,
)

from sluice.lab.apps.demoapp import App

ROUTE_GOLD = json.loads((GOLDEN / "route_features" / "route_features.json").read_text(encoding="utf-8"))

CONFIG = """
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: listener_0
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listener}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {{match: {{prefix: /timeout/}}, route: {{cluster: app, timeout: 0.2s, prefix_rewrite: /}}}}
              - {{match: {{prefix: /refused/}}, route: {{cluster: refused}}}}
              - {{match: {{prefix: /empty/}}, route: {{cluster: empty}}}}
              - {{match: {{prefix: /ka/}}, route: {{cluster: ka, prefix_rewrite: /}}}}
              - {{match: {{prefix: /stream/}}, route: {{cluster: stream}}}}
              - {{match: {{prefix: /app/}}, route: {{cluster: app, prefix_rewrite: /}}}}
          http_filters:
          - name: envoy.filters.http.router{router_typed_config}
  clusters:
  - {{name: app, connect_timeout: 0.25s, type: STATIC, load_assignment: {{cluster_name: app, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.41, port_value: {app}}}}}}}}}]}}]}}}}
  - {{name: ka, connect_timeout: 0.25s, type: STATIC, load_assignment: {{cluster_name: ka, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.42, port_value: {ka}}}}}}}}}]}}]}}}}
  - {{name: stream, connect_timeout: 0.25s, type: STATIC, load_assignment: {{cluster_name: stream, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {stream}}}}}}}}}]}}]}}}}
  - {{name: refused, connect_timeout: 0.25s, type: STATIC, load_assignment: {{cluster_name: refused, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {refused}}}}}}}}}]}}]}}}}
  - {{name: empty, connect_timeout: 0.25s, type: STATIC, load_assignment: {{cluster_name: empty}}}}
"""

LOCAL_REPLY_HEADERS = [
    ("content-length", None),
    ("content-type", "text/plain"),
    ("date", "<volatile>"),
    ("server", "envoy"),
]


class Streamer:
    """Upstream for ``/stream/``: sends the headers and a first chunk, then waits for the test to
    have seen that chunk through the proxy before it sends the rest."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.received_body = b""

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request_head(reader)
        if b"transfer-encoding: chunked" in head.lower():
            body = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
            self.received_body = body
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.release.wait, 10)
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()  # keep the connection until the proxy closes it


class Env:
    """The upstreams plus one proxy (``kind``) on the same config."""

    def __init__(self, loop: LoopThread, kind: str) -> None:
        self.loop = loop
        self.kind = kind
        self.app = App("basics-app")
        self.ka = App("keepalive-app")
        loop.run(self.app.start("127.0.0.41", 0))
        loop.run(self.ka.start("127.0.0.42", 0))
        self.streamer = Streamer()
        self.stream = ScriptedUpstream(loop, self.streamer)
        ports = {"app": self.app.port, "ka": self.ka.port, "stream": self.stream.port, "refused": free_port()}
        self.sluice: InProcessSluice | None = None
        self.envoy: ProxyProcess | None = None
        if kind == "sluice":
            self.sluice = InProcessSluice(loop, CONFIG.format(admin=0, listener=0, router_typed_config="", **ports))
            self.port = self.sluice.port
        else:
            typed = "\n            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}"
            text = CONFIG.format(admin=free_port(), listener=free_port(), router_typed_config=typed, **ports)
            self.envoy = ProxyProcess("envoy", yaml.safe_load(text)).start()
            self.port = self.envoy.port

    def stat(self, name: str) -> int:
        if self.sluice is not None:
            return self.sluice.stat(name)
        assert self.envoy is not None
        return self.envoy.stats().get(name, 0)

    def stop(self) -> None:
        self.streamer.release.set()
        if self.sluice is not None:
            self.sluice.stop()
        if self.envoy is not None:
            self.envoy.stop()
        self.stream.stop()
        self.loop.run(self.app.stop())
        self.loop.run(self.ka.stop())


@pytest.fixture(scope="module", params=["sluice", pytest.param("envoy", marks=pytest.mark.envoy)])
def env(loop: LoopThread, request: pytest.FixtureRequest) -> Iterator[Env]:
    e = Env(loop, request.param)
    yield e
    e.stop()


def test_keepalive_reuses_one_upstream_connection(env: Env) -> None:
    before = env.stat("cluster.ka.upstream_cx_total")
    with Client(env.port) as c:
        for _ in range(20):
            resp = c.get("/ka/hostname")
            assert (resp.status, resp.body) == (200, b"ServerName: keepalive-app\n")
        assert c.reconnects == 1  # the downstream connection was kept too
    assert env.stat("cluster.ka.upstream_cx_total") - before == 1
    assert env.stat("cluster.ka.upstream_rq_total") >= 20


def test_chunked_request_body_and_streamed_response(env: Env) -> None:
    env.streamer.release.clear()
    with socket.create_connection(("127.0.0.1", env.port), timeout=5) as s:
        s.sendall(b"POST /stream/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
        time.sleep(0.05)
        s.sendall(b"3\r\nefg\r\n0\r\n\r\n")
        got = b""
        while b"5\r\nfirst\r\n" not in got:  # arrives while the upstream still holds "second"
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        head = got.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200 ok") and b"transfer-encoding: chunked" in head
        assert b"second" not in got
        env.streamer.release.set()
        while not got.endswith(b"0\r\n\r\n"):
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
    assert got.split(b"\r\n\r\n", 1)[1] == b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n"
    assert env.streamer.received_body == b"abcdefg"


def test_large_bodies_are_not_corrupted(env: Env) -> None:
    data = os.urandom(5 * 1024 * 1024)
    env.app.requests.clear()
    with Client(env.port, timeout=30) as c:
        resp = c.request("POST", "/app/hostname", headers=[("Content-Type", "application/octet-stream")], body=data)
        assert resp.status == 200
        (rec,) = env.app.requests
        assert hashlib.sha256(rec.body).digest() == hashlib.sha256(data).digest()
        resp = c.get("/app/bytes/5000000")
        assert resp.status == 200 and len(resp.body) == 5_000_000 and resp.body == b"x" * 5_000_000


def test_http10_gets_426(env: Env) -> None:
    raw = raw_exchange(env.port, b"GET /app/hostname HTTP/1.0\r\n\r\n")
    assert normalise_raw(raw) == normalise_raw(ROUTE_GOLD["HTTP/1.0 request without Host (raw response bytes)"].encode())


def test_missing_host_gets_400_and_close(env: Env) -> None:
    raw = raw_exchange(env.port, b"GET /app/hostname HTTP/1.1\r\n\r\n")
    assert normalise_raw(raw) == normalise_raw(ROUTE_GOLD["HTTP/1.1 request without Host (raw response bytes)"].encode())


def test_no_route_is_404_with_empty_body(env: Env) -> None:
    gold = ROUTE_GOLD["no route matches (GET /nomatch)"]["response"]
    with Client(env.port) as c:
        resp = c.get("/nomatch")
        assert (resp.status, resp.body) == (404, b"")
        assert normalise_headers(resp.headers) == [tuple(h) for h in gold["headers"]]
        assert c.get("/app/hostname").status == 200  # same connection still usable
        assert c.reconnects == 1


def _local_reply(env: Env, path: str, status: int, body: bytes) -> None:
    with Client(env.port) as c:
        t0 = time.monotonic()
        resp = c.get(path)
        elapsed = time.monotonic() - t0
        assert (resp.status, resp.body) == (status, body), resp
        expected = [(k, v if v is not None else str(len(body))) for k, v in LOCAL_REPLY_HEADERS]
        assert normalise_headers(resp.headers) == expected
        assert c.get("/app/hostname").status == 200  # the downstream connection survives
        assert c.reconnects == 1
    assert elapsed < 5


def test_connect_refused(env: Env) -> None:
    _local_reply(
        env,
        "/refused/x",
        503,
        b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
    )


def test_upstream_closes_without_response(env: Env) -> None:
    _local_reply(env, "/app/close", 503, b"upstream connect error or disconnect/reset before headers. reset reason: connection termination")


def test_no_healthy_upstream(env: Env) -> None:
    _local_reply(env, "/empty/x", 503, b"no healthy upstream")


def test_route_timeout(env: Env) -> None:
    t0 = time.monotonic()
    _local_reply(env, "/timeout/delay/1000", 504, b"upstream request timeout")
    assert time.monotonic() - t0 < 0.9  # answered at ~0.2 s, not after the upstream's 1 s
    assert env.stat("cluster.app.upstream_rq_timeout") >= 1


CODEC_400 = (
    "HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\ncontent-type: text/plain\r\ndate: <volatile>\r\n"
    "server: envoy\r\nconnection: close\r\n\r\nBad Request"
)
UPGRADE_426 = normalise_raw(ROUTE_GOLD["HTTP/1.0 request without Host (raw response bytes)"].encode())

# Malformed requests and Envoy's answer to each (observed with Envoy 1.40).
MALFORMED = [
    ("not-http", b"GARBAGE\r\n\r\n", CODEC_400),
    ("bad-header-line", b"GET /app/hostname HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", CODEC_400),
    ("space-in-header-name", b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", CODEC_400),
    ("bad-content-length", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", CODEC_400),
    ("two-content-lengths", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", CODEC_400),
    ("control-char-in-path", b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", CODEC_400),
    ("not-a-version", b"GET / HTTP/x.y\r\nHost: x\r\n\r\n", CODEC_400),
    ("http-9.9", b"GET / HTTP/9.9\r\n\r\n", UPGRADE_426),
    ("http-1.2", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", UPGRADE_426),
    ("http-2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", UPGRADE_426),
    ("http-0.9", b"GET /\r\n\r\n", UPGRADE_426),
]


@pytest.mark.parametrize(("garbage", "expected"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_request_is_refused_and_others_are_served(env: Env, garbage: bytes, expected: str) -> None:
    with Client(env.port) as bystander:
        assert bystander.get("/app/hostname").status == 200
        assert normalise_raw(raw_exchange(env.port, garbage)) == expected
        assert bystander.get("/app/hostname").status == 200
        assert bystander.reconnects == 1
    with Client(env.port) as fresh:
        assert fresh.get("/app/hostname").status == 200
