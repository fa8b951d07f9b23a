"""HTTP/1.1 upgrades (issue 9): ``upgrade_configs``, differentially. One config runs on the real
Envoy and on Sluice, both in front of one small WebSocket echo upstream (frames written by hand:
RFC 6455 framing is a few lines, and the upstream must record the exact bytes it got):

- listener ``ws``: the HCM's ``upgrade_configs: [websocket]``; route ``/nows`` disables it, route
  ``/short`` has a 1 s route timeout;
- listener ``plain``: no ``upgrade_configs``; route ``/onlyroute`` enables websocket itself.

Per case and proxy the test keeps the handshake answer's head (``date`` normalised), what came
after it (echoed frames or the answer's body), whether the proxy closed the connection, the
exact bytes the upstream received (``x-request-id`` normalised), whether the upstream saw the
end, and the deltas of the stats below (after both sides settled). Sluice's must equal Envoy's.
Both close a finished connection only after the client did or their 1 s
``delayed_close_timeout`` (``downstream_cx_destroy_local``/``_remote``,
``downstream_cx_delayed_close_timeout``, compared too)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from harness import DATE_RE, UUID_RE, LoopThread, ProxyProcess, ScriptedUpstream, free_port, wait_until

pytestmark = pytest.mark.envoy

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x01\x02\x03\x04"
TEXT, CLOSE = 0x1, 0x8


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (a fixed key: the upstream's bytes must be the same for both)."""
    assert len(payload) < 126
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + masked


def server_frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    return bytes([0x80 | opcode, len(payload)]) + payload


def parse_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete frames in ``buf`` (masked or not; short lengths only), and the rest."""
    frames = []
    while len(buf) >= 2:
        opcode, n, masked = buf[0] & 0x0F, buf[1] & 0x7F, buf[1] & 0x80
        need = 2 + (4 if masked else 0) + n
        if len(buf) < need:
            break
        payload = buf[need - n : need]
        if masked:
            key = buf[2:6]
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        frames.append((opcode, payload))
        buf = buf[need:]
    return frames, buf


def accept_value(key: bytes) -> str:
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()


def handshake(path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY.decode()}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://ws.example\r\n\r\n"
    ).encode()


# ------------------------------------------------------------------------------------------
# the echo upstream
# ------------------------------------------------------------------------------------------
@dataclass
class UpstreamConn:
    data: bytes = b""
    eof: bool = False


class EchoUpstream:
    """``/status/<code>``: that answer (body ``no``), then only records. ``/bye``: a 101, one
    text frame ``bye``, then it closes. Anything else: a real handshake (101 with the accept
    value), then every frame echoed; a close frame is answered with one and the upstream waits
    for the end. Every byte received is recorded per connection, and whether it saw the end."""

    def __init__(self, loop: LoopThread) -> None:
        self.conns: list[UpstreamConn] = []
        ids = itertools.count()

        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            next(ids)
            rec = UpstreamConn()
            self.conns.append(rec)
            buf = b""
            with contextlib.suppress(Exception):
                while b"\r\n\r\n" not in buf:
                    chunk = await reader.read(65536)
                    if not chunk:
                        rec.eof = True
                        return
                    rec.data += chunk
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                if path.startswith(b"/status/"):
                    if b"upgrade:" not in head.lower():
                        # An ordinary request: answered, then closed (nothing stays pooled).
                        writer.write(b"HTTP/1.1 " + path[8:11] + b" Whatever\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno")
                        await writer.drain()
                        return
                    writer.write(b"HTTP/1.1 " + path[8:11] + b" Whatever\r\ncontent-length: 2\r\n\r\nno")
                    buf = b""
                else:
                    key = re.search(rb"(?im)^sec-websocket-key: *([^\r\n]*)", head)
                    accept = accept_value(key.group(1) if key else b"")
                    writer.write(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
                    )
                    if path == b"/bye":
                        writer.write(server_frame(TEXT, b"bye"))
                        await writer.drain()
                        return
                await writer.drain()
                echo = not path.startswith(b"/status/")
                while True:
                    if echo:
                        frames, buf = parse_frames(buf)
                        for opcode, payload in frames:
                            writer.write(server_frame(opcode, payload))
                        await writer.drain()
                    chunk = await asyncio.wait_for(reader.read(65536), timeout=30)
                    if not chunk:
                        rec.eof = True
                        return
                    rec.data += chunk
                    buf += chunk

        self.server = ScriptedUpstream(loop, script)
        self.port = self.server.port

    def stop(self) -> None:
        self.server.stop()


# ------------------------------------------------------------------------------------------
# config and proxies
# ------------------------------------------------------------------------------------------
def _hcm(prefix: str, routes: list[dict[str, Any]], upgrades: bool) -> dict[str, Any]:
    hcm: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": prefix,
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    if upgrades:
        hcm["upgrade_configs"] = [{"upgrade_type": "websocket"}]
    return hcm


def config(app_port: int) -> dict[str, Any]:
    def listener(name: str, hcm: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
        }

    ws_routes = [
        # (the type in another case: Envoy compares upgrade types case-insensitively)
        {"match": {"prefix": "/nows"}, "route": {"cluster": "app", "upgrade_configs": [{"upgrade_type": "WebSocket", "enabled": False}]}},
        {"match": {"prefix": "/short"}, "route": {"cluster": "app", "timeout": "1s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "app"}},
    ]
    plain_routes = [
        {"match": {"prefix": "/onlyroute"}, "route": {"cluster": "app", "upgrade_configs": [{"upgrade_type": "websocket"}]}},
        {"match": {"prefix": "/"}, "route": {"cluster": "app"}},
    ]
    endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": app_port}}}}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
        "static_resources": {
            "listeners": [listener("ws", _hcm("ws", ws_routes, True)), listener("plain", _hcm("plain", plain_routes, False))],
            "clusters": [
                {
                    "name": "app",
                    "connect_timeout": "0.25s",
                    "type": "STATIC",
                    "load_assignment": {"cluster_name": "app", "endpoints": [{"lb_endpoints": [endpoint]}]},
                }
            ],
        },
    }


@dataclass
class Side:
    proxy: ProxyProcess
    upstream: EchoUpstream
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def sides(loop: LoopThread) -> Iterator[dict[str, Side]]:
    out: dict[str, Side] = {}
    try:
        for kind in ("envoy", "sluice"):
            upstream = EchoUpstream(loop)
            out[kind] = Side(ProxyProcess(kind, config(upstream.port)).start(), upstream)
        yield out
    finally:
        for side in out.values():
            side.proxy.stop()
            side.upstream.stop()


# ------------------------------------------------------------------------------------------
# the client side
# ------------------------------------------------------------------------------------------
class WsClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.closed = False

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def head(self) -> str:
        """The answer's head (its bytes; the rest stays in the buffer)."""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in self.buf and not self.closed and time.monotonic() < deadline:
            self._fill(0.5)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return DATE_RE.sub(r"\1<volatile>", head.decode("latin-1"))

    def frames(self, count: int) -> list[tuple[int, bytes]]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            frames, _ = parse_frames(self.buf)
            if len(frames) >= count or self.closed:
                break
            self._fill(0.5)
        frames, self.buf = parse_frames(self.buf)
        return frames

    def rest(self, wait: float) -> bytes:
        """Whatever else arrives within ``wait`` seconds of quiet (or until the close)."""
        while not self.closed and self._fill(wait):
            pass
        data, self.buf = self.buf, b""
        return data

    def wait_closed(self, timeout: float = 2.5) -> bool:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            if self._fill(0.1):
                pass
        return self.closed

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


STATS = (
    "downstream_cx_destroy_local",
    "downstream_cx_destroy_remote",
    "downstream_cx_delayed_close_timeout",
    "downstream_cx_upgrades_total",
    "downstream_rq_1xx",
    "downstream_rq_2xx",
    "downstream_rq_4xx",
    "downstream_rq_5xx",
    "downstream_rq_completed",
    "downstream_rq_total",
    "downstream_rq_ws_on_non_ws_route",
    "downstream_rq_response_before_rq_complete",
    "downstream_rq_rx_reset",
    "downstream_rq_tx_reset",
)
GAUGES = ("downstream_cx_upgrades_active", "downstream_rq_active")
CLUSTER_STATS = (
    "upstream_rq_total",
    "upstream_rq_101",
    "upstream_rq_1xx",
    "upstream_rq_200",
    "upstream_rq_2xx",
    "upstream_rq_404",
    "upstream_rq_4xx",
    "upstream_rq_completed",
    "upstream_rq_tx_reset",
    "upstream_cx_total",
    "upstream_cx_destroy_local_with_active_rq",
    "upstream_cx_destroy_remote_with_active_rq",
)
CLUSTER_GAUGES = ("upstream_cx_active", "upstream_rq_active")


def _settled(proxy: ProxyProcess, prefix: str) -> dict[str, int]:
    """The stats once the case's connections are gone (gauges back to rest)."""
    stats: dict[str, int] = {}

    def done() -> bool:
        nonlocal stats
        stats = proxy.stats()
        return (
            stats.get(f"http.{prefix}.downstream_cx_active", 0) == 0
            and stats.get("cluster.app.upstream_cx_active", 0) == 0
            and stats.get("cluster.app.upstream_rq_active", 0) == 0
            and stats.get(f"http.{prefix}.downstream_cx_upgrades_active", 0) == 0
        )

    wait_until(done, timeout=5.0)
    return stats


def observe(side: Side, listener: int, script: Any) -> dict[str, Any]:
    proxy = side.proxy
    prefix = ("ws", "plain")[listener]
    _settled(proxy, prefix)
    before = proxy.stats()
    mark = len(side.upstream.conns)
    client = WsClient(proxy.listener_ports[listener])
    try:
        seen = script(client)
    finally:
        client.close()
    after = _settled(proxy, prefix)
    conns = side.upstream.conns[mark:]
    # (Every case ends with the client gone: the upstream's end follows, give it time to arrive.)
    wait_until(lambda: all(c.eof for c in conns), timeout=2.0)
    upstream = UUID_RE.sub("<uuid>", b"".join(c.data for c in conns).decode("latin-1"))
    stats = {n: after.get(f"http.{prefix}.{n}", 0) - before.get(f"http.{prefix}.{n}", 0) for n in STATS}
    stats |= {n: after.get(f"http.{prefix}.{n}", 0) for n in GAUGES}
    stats |= {f"cluster.{n}": after.get(f"cluster.app.{n}", 0) - before.get(f"cluster.app.{n}", 0) for n in CLUSTER_STATS}
    stats |= {f"cluster.{n}": after.get(f"cluster.app.{n}", 0) for n in CLUSTER_GAUGES}
    return {"client": seen, "upstream": upstream, "upstream_eof": [c.eof for c in conns], "stats": stats}


# ------------------------------------------------------------------------------------------
# the cases: each returns what the client saw
# ------------------------------------------------------------------------------------------
def echo(path: str) -> Any:
    def run(c: WsClient) -> dict[str, Any]:
        c.send(handshake(path))
        head = c.head()
        c.send(client_frame(TEXT, b"hello"))
        c.send(client_frame(TEXT, b"world"))
        echoed = c.frames(2)
        c.send(client_frame(CLOSE, b"\x03\xe8"))
        closing = c.frames(1)
        return {"head": head, "frames": echoed + closing, "closed_by_proxy": c.closed}

    return run


def data_with_the_handshake(c: WsClient) -> dict[str, Any]:
    c.send(handshake("/chat") + client_frame(TEXT, b"early"))
    head = c.head()
    return {"head": head, "frames": c.frames(1), "closed_by_proxy": c.closed}


def client_closes_first(c: WsClient) -> dict[str, Any]:
    c.send(handshake("/chat"))
    head = c.head()
    c.send(client_frame(TEXT, b"one"))
    frames = c.frames(1)
    c.sock.shutdown(socket.SHUT_WR)
    # (Envoy's HTTP/1 connection does not half-close: the client's end closes both sides.)
    return {"head": head, "frames": frames, "closed_after_client_fin": c.wait_closed(), "rest": c.rest(0.1)}


def upstream_closes_first(c: WsClient) -> dict[str, Any]:
    c.send(handshake("/bye"))
    head = c.head()
    frames = c.frames(1)
    return {"head": head, "frames": frames, "closed": c.wait_closed(), "rest": c.rest(0.1)}


def refused(path: str) -> Any:
    def run(c: WsClient) -> dict[str, Any]:
        c.send(handshake(path))
        head = c.head()
        return {"head": head, "closed": c.wait_closed(), "rest": c.rest(0.1)}

    return run


def not_switched(code: int) -> Any:
    def run(c: WsClient) -> dict[str, Any]:
        c.send(handshake(f"/status/{code}"))
        head = c.head()
        closed = c.wait_closed()
        return {"head": head, "closed": closed, "body": c.rest(0.1)}

    return run


def outlives_the_route_timeout(c: WsClient) -> dict[str, Any]:
    c.send(handshake("/short"))
    head = c.head()
    time.sleep(1.3)  # (past the route's 1 s timeout)
    c.send(client_frame(TEXT, b"late"))
    return {"head": head, "frames": c.frames(1), "closed_by_proxy": c.closed}


def ordinary_request(c: WsClient) -> dict[str, Any]:
    c.send(b"GET /status/200 HTTP/1.1\r\nHost: h\r\n\r\n")
    head = re.sub(r"x-envoy-upstream-service-time: \d+", "x-envoy-upstream-service-time: <n>", c.head())
    return {"head": head, "body": c.rest(0.2), "closed": c.closed}


CASES: dict[str, tuple[int, Any]] = {
    "echo-and-close-frame": (0, echo("/chat")),
    "data-in-the-handshake-packet": (0, data_with_the_handshake),
    "client-closes-first": (0, client_closes_first),
    "upstream-closes-first": (0, upstream_closes_first),
    "route-disables-upgrade": (0, refused("/nows")),
    "listener-without-upgrade-configs": (1, refused("/chat")),
    "route-enables-upgrade-on-plain-listener": (1, echo("/onlyroute")),
    "answer-200-instead-of-101": (0, not_switched(200)),
    "answer-404-instead-of-101": (0, not_switched(404)),
    "tunnel-outlives-route-timeout": (0, outlives_the_route_timeout),
    "ordinary-request-on-upgrade-listener": (0, ordinary_request),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_as_envoy(sides: dict[str, Side], case: str) -> None:
    listener, script = CASES[case]
    seen = {kind: observe(side, listener, script) for kind, side in sides.items()}
    assert seen["sluice"] == seen["envoy"]


@pytest.mark.parametrize("kind", ["envoy", "sluice"])
def test_a_real_handshake_and_the_upgrade_gauge(sides: dict[str, Side], kind: str) -> None:
    """The echo upstream's answer reaches the client as a WebSocket client checks it, and the
    ``downstream_cx_upgrades_active`` gauge is 1 while the tunnel is open, 0 after."""
    proxy = sides[kind].proxy
    c = WsClient(proxy.port)
    try:
        c.send(handshake("/chat"))
        lines = c.head().split("\r\n")
        assert lines[0] == "HTTP/1.1 101 Switching Protocols"
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
        assert headers["sec-websocket-accept"] == accept_value(KEY)
        assert headers["upgrade"].lower() == "websocket" and headers["connection"].lower() == "upgrade"
        c.send(client_frame(TEXT, b"ping"))
        assert c.frames(1) == [(TEXT, b"ping")]
        assert proxy.stats()["http.ws.downstream_cx_upgrades_active"] == 1
    finally:
        c.close()
    assert wait_until(lambda: proxy.stats()["http.ws.downstream_cx_upgrades_active"] == 0)
