"""HTTP/1.1 at the edge (issue 9, first increment): request header limits and the stats of
codec-level errors, differentially — the same raw bytes to the real Envoy and to Sluice on the
same config, both answers and both sets of HCM stats compared.

- ``max_request_headers_kb`` (default 60) and ``common_http_protocol_options.max_headers_count``
  (default 100): Envoy answers 431 ``Request Header Fields Too Large`` and closes; the upstream
  sees nothing; the ``configured`` listener sets 8 KiB and 10 headers.
- A malformed request (400) or a 431 is a request for the HCM stats: ``downstream_rq_total``,
  ``downstream_rq_4xx``, ``downstream_rq_completed`` count it, ``downstream_cx_protocol_error``
  too, and ``downstream_rq_active`` is back to 0."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from harness import LoopThread, ProxyProcess, ScriptedUpstream, free_port, normalise_raw, read_request_head

pytestmark = pytest.mark.envoy

LISTENER = """
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          delayed_close_timeout: 0.2s
{extra}          route_config:
            virtual_hosts:
            - {{name: all, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: app}}}}]}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"""

CONFIG = """
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
{listeners}
  clusters:
  - {{name: app, connect_timeout: 0.25s, type: STATIC, load_assignment: {{cluster_name: app, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {app}}}}}}}}}]}}]}}}}
"""


# Envoy 1.40's answer to headers over a limit (captured from it): 431, the reason phrase as
# body, and the connection closed.
ENVOY_431 = (
    "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 31\r\ncontent-type: text/plain\r\n"
    "date: <volatile>\r\nserver: envoy\r\nconnection: close\r\n\r\nRequest Header Fields Too Large"
)
ENVOY_501 = (
    "HTTP/1.1 501 Not Implemented\r\ncontent-length: 15\r\ncontent-type: text/plain\r\ndate: <volatile>\r\n"
    "server: envoy\r\nconnection: close\r\n\r\nNot Implemented"
)
ENVOY_400 = (
    "HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\ncontent-type: text/plain\r\ndate: <volatile>\r\n"
    "server: envoy\r\nconnection: close\r\n\r\nBad Request"
)

CONFIGURED = "          max_request_headers_kb: 8\n          common_http_protocol_options: {max_headers_count: 10}\n"

STATS = (
    "downstream_rq_total",
    "downstream_rq_4xx",
    "downstream_rq_5xx",
    "downstream_rq_completed",
    "downstream_cx_protocol_error",
    "downstream_rq_active",
    "downstream_rq_http1_total",
)


class Upstream:
    """Counts the requests that reach it; answers 200."""

    def __init__(self, loop: LoopThread) -> None:
        self.requests = 0

        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while True:
                    await read_request_head(reader)
                    self.requests += 1
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    await writer.drain()

        self.server = ScriptedUpstream(loop, script)
        self.port = self.server.port


class Proxy:
    def __init__(self, kind: str, app_port: int) -> None:
        ports = {"default": free_port(), "configured": free_port()}
        listeners = LISTENER.format(name="default", port=ports["default"], extra="") + LISTENER.format(
            name="configured", port=ports["configured"], extra=CONFIGURED
        )
        text = CONFIG.format(admin=free_port(), listeners=listeners.rstrip("\n"), app=app_port)
        self.kind = kind
        self.proc = ProxyProcess(kind, yaml.safe_load(text)).start()
        self.ports = ports

    def stats(self, prefix: str) -> dict[str, int]:
        all_stats = self.proc.stats()
        return {n: all_stats.get(f"http.{prefix}.{n}", 0) for n in STATS}


@pytest.fixture(scope="module")
def proxies(loop: LoopThread) -> Iterator[tuple[Upstream, dict[str, Proxy]]]:
    up = Upstream(loop)
    started: dict[str, Proxy] = {}
    try:
        for kind in ("envoy", "sluice"):
            started[kind] = Proxy(kind, up.port)
        yield up, started
    finally:
        for p in started.values():
            p.proc.stop()
        up.server.stop()


SERVICE_TIME = re.compile(r"(?im)^(x-envoy-upstream-service-time: )\d+")


def exchange(port: int, data: bytes) -> tuple[str, bool]:
    """Send ``data``; return the normalised response and whether the proxy then closed the
    connection (within 0.6 s: both proxies delay their close after a ``connection: close``
    reply by the listeners' ``delayed_close_timeout``, 0.2 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            s.sendall(data)
        out = b""
        closed = False
        s.settimeout(3)
        deadline = time.monotonic() + 5
        with contextlib.suppress(ConnectionResetError):
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    closed = True
                    break
                out += chunk
                head, sep, body = out.partition(b"\r\n\r\n")
                if sep and b"content-length: " in head.lower():
                    n = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                    if len(body) >= n:
                        s.settimeout(0.6)
                        try:
                            closed = s.recv(65536) == b""
                        except TimeoutError:
                            closed = False
                        break
        if not out:
            closed = True
        # The date and the upstream's service time (0 or 1 ms, by chance) vary between runs.
        return SERVICE_TIME.sub(r"\1<volatile>", normalise_raw(out)), closed


def request(path: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: x", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


KB = 1024
OVER_LIMIT = [
    ("one-70k-header", "default", request("/", [("x-big", "a" * 70 * KB)])),
    ("70k-in-many-headers", "default", request("/", [(f"x-h{i}", "b" * 1000) for i in range(72)])),
    ("101-headers", "default", request("/", [(f"x-h{i}", "v") for i in range(100)])),
    ("64k-request-line", "default", request("/" + "p" * 64 * KB, [])),
    ("configured-9k-header", "configured", request("/", [("x-big", "a" * 9 * KB)])),
    ("configured-9k-request-line", "configured", request("/" + "p" * 9 * KB, [])),
    ("configured-11-headers", "configured", request("/", [(f"x-h{i}", "v") for i in range(10)])),
]
UNDER_LIMIT = [
    ("59k-header", "default", request("/", [("x-big", "a" * 59 * KB)])),
    ("100-headers", "default", request("/", [(f"x-h{i}", "v") for i in range(99)])),
    ("configured-7k-header", "configured", request("/", [("x-big", "a" * 7 * KB)])),
    ("configured-10-headers", "configured", request("/", [(f"x-h{i}", "v") for i in range(9)])),
]


def _differential(proxies: tuple[Upstream, dict[str, Proxy]], listener: str, data: bytes) -> dict[str, Any]:
    up, ps = proxies
    results: dict[str, Any] = {}
    for kind, p in ps.items():
        before = p.stats(listener)
        seen = up.requests
        raw, closed = exchange(p.ports[listener], data)
        time.sleep(0.2)  # the stream's stats are written when it is destroyed
        after = p.stats(listener)
        delta = {n: after[n] - before[n] for n in STATS if n != "downstream_rq_active"}
        results[kind] = {
            "raw": raw,
            "closed": closed,
            "upstream": up.requests - seen,
            "delta": delta,
            "active": after["downstream_rq_active"],
        }
    assert results["sluice"] == results["envoy"]
    return results["envoy"]


@pytest.mark.parametrize(("listener", "data"), [c[1:] for c in OVER_LIMIT], ids=[c[0] for c in OVER_LIMIT])
def test_headers_over_the_limits_get_431(proxies: tuple[Upstream, dict[str, Proxy]], listener: str, data: bytes) -> None:
    got = _differential(proxies, listener, data)
    assert got["raw"] == ENVOY_431
    assert got["closed"] and got["upstream"] == 0 and got["active"] == 0
    assert got["delta"]["downstream_rq_total"] == got["delta"]["downstream_rq_4xx"] == 1


@pytest.mark.parametrize(("listener", "data"), [c[1:] for c in UNDER_LIMIT], ids=[c[0] for c in UNDER_LIMIT])
def test_headers_within_the_limits_are_forwarded(proxies: tuple[Upstream, dict[str, Proxy]], listener: str, data: bytes) -> None:
    got = _differential(proxies, listener, data)
    assert got["raw"].startswith("HTTP/1.1 200 OK\r\n") and got["upstream"] == 1


MALFORMED = [
    ("bad-header-name", b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n"),
    ("invalid-chunk-size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
    ("xchunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"),
]


def test_codec_errors_are_counted_as_envoy_counts_them(proxies: tuple[Upstream, dict[str, Proxy]]) -> None:
    """Each is one request: total, completed and protocol_error +1, active back to 0. A bad
    header name is a 400 before anything is forwarded; an invalid chunk size comes after the
    headers, which Envoy has already forwarded (the upstream sees the request, then the reset);
    ``Transfer-Encoding: xchunked`` is refused at the end of the headers with 501."""
    up, ps = proxies
    totals = {kind: p.stats("default") for kind, p in ps.items()}
    expected = {
        "bad-header-name": (ENVOY_400, 0, "downstream_rq_4xx"),
        "invalid-chunk-size": (ENVOY_400, 1, "downstream_rq_4xx"),
        "xchunked": (ENVOY_501, 0, "downstream_rq_5xx"),
    }
    for name, data in MALFORMED:
        got = _differential(proxies, "default", data)
        raw, upstream, xx = expected[name]
        assert (got["raw"], got["closed"], got["upstream"], got["active"]) == (raw, True, upstream, 0), name
        assert got["delta"] == {
            "downstream_rq_total": 1, "downstream_rq_4xx": int(xx == "downstream_rq_4xx"),
            "downstream_rq_5xx": int(xx == "downstream_rq_5xx"), "downstream_rq_completed": 1,
            "downstream_cx_protocol_error": 1, "downstream_rq_http1_total": 1,
        }, name  # fmt: skip
    after = {kind: p.stats("default") for kind, p in ps.items()}
    deltas = {kind: {n: after[kind][n] - totals[kind][n] for n in STATS} for kind in ps}
    assert deltas["sluice"] == deltas["envoy"]
    assert after["sluice"]["downstream_rq_active"] == after["envoy"]["downstream_rq_active"] == 0
