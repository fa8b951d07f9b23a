"""HTTP/1.1 at the edge (issue 9, point 3): a seeded fuzz run of malformed requests, then the
stats are checked to be still true.

A deterministic generator (``random.Random(SEED)``) turns a few valid requests (GET, POST with a
``content-length`` body, chunked POST, pipelined pairs, with and without ``Host``, ...) into
more than 10 000 distinct inputs: byte flips, inserted CR/LF/NUL/space/colon/comma, duplicated
and dropped lines, truncation, random header names and values, random methods, targets and
versions, bogus ``Transfer-Encoding``/``Content-Length`` combinations, bad chunk sizes, and a
small share of huge inputs (a value over 60 KiB, more than 100 headers). Each input goes to one
Sluice process on a connection of its own, 50 connections in flight; the client either reads
until the proxy closes (or goes quiet for a short while), half-closes after sending, or resets
the connection right away.

Afterwards: the process is alive and serves a normal request; every activity gauge of
``/stats?type=Gauges`` is back to 0 (the idle pooled upstream connections excepted: they must
match the connections the upstream has open); the counters agree with each other and with what
the client saw (and, on a replay of the inputs a codec refused, every refusal is one
``downstream_cx_protocol_error``); the log has no traceback; the RSS after the run is within a
bound of the RSS after a warm-up run. The invariants were checked against the real Envoy 1.40
on the same inputs (every charged response, a 100 Continue included, is one
``downstream_rq_completed``; every codec refusal, a 426 included, is one protocol error)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httptools
import pytest
import yaml
from harness import LoopThread, ProxyProcess, free_port, http, wait_until

from sluice.codec import http1
from sluice.http.headers import RequestHeaders

SEED = 20260909
N_INPUTS = 10_000
N_WARMUP = 1_000
CONCURRENCY = 50
REPLAY_CONCURRENCY = 100
"""The replay of refused inputs counts errors only (no RSS measured after it): more at once, a
shorter run (each refused input waits QUIET_TIMEOUT for a close the proxy delays)."""
FIRST_BYTE_TIMEOUT = 0.3
"""Seconds a connection waits for the proxy's first byte before the client closes it (an
incomplete request keeps the proxy waiting for the rest: the client, not the proxy's own
timeouts, ends those)."""
QUIET_TIMEOUT = 0.1
"""Seconds without new bytes, once the proxy has answered something, before the client closes."""
RUN_BUDGET_S = 60.0
RSS_GROWTH_LIMIT = 15 * 1024 * 1024

OK_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

CONFIG = """
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: edge
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          route_config:
            virtual_hosts:
            - {{name: all, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: app}}}}]}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - {{name: app, connect_timeout: 0.25s, type: STATIC, load_assignment: {{cluster_name: app, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {app}}}}}}}}}]}}]}}}}
"""


# ------------------------------------------------------------------------------------------
# the upstream: answers every request it can frame, pipelined ones in order
# ------------------------------------------------------------------------------------------
class FastUpstream:
    """``HTTP/1.1 200 OK`` with body ``ok`` for every request (no body for HEAD); a request it
    cannot parse closes the connection. Counts requests and the connections open right now."""

    def __init__(self, loop: LoopThread) -> None:
        self.requests = 0
        self.open = 0
        self.connections = 0
        outer = self

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                outer.open += 1
                outer.connections += 1
                self.transport: asyncio.Transport = transport  # type: ignore[assignment]
                self.parser = httptools.HttpRequestParser(self)

            def on_message_complete(self) -> None:
                outer.requests += 1
                head = self.parser.get_method() == b"HEAD"
                self.transport.write(OK_RESPONSE[:-2] if head else OK_RESPONSE)

            def data_received(self, data: bytes) -> None:
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserError:
                    self.transport.close()

            def connection_lost(self, exc: Exception | None) -> None:
                outer.open -= 1

        async def start() -> asyncio.AbstractServer:
            return await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", 0)

        self.loop = loop
        self.server = loop.run(start())
        self.port = int(self.server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.loop.loop.call_soon_threadsafe(self.server.close)


# ------------------------------------------------------------------------------------------
# the generator
# ------------------------------------------------------------------------------------------
KB = 1024
CRLF = b"\r\n"

TEMPLATES: list[bytes] = [
    b"GET / HTTP/1.1\r\nHost: fuzz.example\r\n\r\n",
    b"GET /a/b?q=1&r=2 HTTP/1.1\r\nHost: fuzz.example\r\nUser-Agent: fuzz/1\r\nAccept: */*\r\n\r\n",
    b"GET / HTTP/1.1\r\nUser-Agent: no-host\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: fuzz.example\r\n\r\n",
    b"POST /submit HTTP/1.1\r\nHost: fuzz.example\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /empty HTTP/1.1\r\nHost: fuzz.example\r\nContent-Length: 0\r\n\r\n",
    b"POST /chunked HTTP/1.1\r\nHost: fuzz.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"PUT /t HTTP/1.1\r\nHost: fuzz.example\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: fuzz.example\r\n\r\nGET /2 HTTP/1.1\r\nHost: fuzz.example\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: fuzz.example\r\nContent-Length: 3\r\n\r\nabcGET /after HTTP/1.1\r\nHost: fuzz.example\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: fuzz.example\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nGET /n HTTP/1.1\r\nHost: fuzz.example\r\n\r\n",
    b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nHost: fuzz.example\r\n\r\n",
    b"GET http://fuzz.example/abs HTTP/1.1\r\nHost: other.example\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET /c HTTP/1.1\r\nHost: fuzz.example\r\nConnection: close\r\n\r\n",
    b"POST /e HTTP/1.1\r\nHost: fuzz.example\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    b"OPTIONS * HTTP/1.1\r\nHost: fuzz.example\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: fuzz.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"CONNECT fuzz.example:443 HTTP/1.1\r\nHost: fuzz.example:443\r\n\r\n",
    b"DELETE /d HTTP/1.1\r\nHost: fuzz.example\r\nConnection: keep-alive, x-drop\r\nX-Drop: 1\r\n\r\n",
]

METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT", b"PRI",
           b"get", b"G ET", b"GET\x00", b"", b"ACL", b"MKCOL", b"PURGE", b"X" * 40, b"\xff\xfe", b"GE\tT"]  # fmt: skip
TARGETS = [b"/", b"*", b"", b"//", b"/%", b"/%zz", b"/?", b"/#frag", b"a b", b"/\x00", b"/\x7f", b"/..", b"/../../etc",
           b"http://h/p", b"https://h:99999/", b"http://", b"http:///x", b"h:80", b"/" + b"p" * 3000, b"/\xc3\xa9",
           b"/a?b=c d", b"ftp://h/", b"/;x", b"\\"]  # fmt: skip
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2", b"HTTP/1.1x", b"http/1.1", b"HTTP/11",
            b"HTTP/", b"", b"HTTP/1.1 ", b"HTTP/9.9", b"ICE/1.0"]  # fmt: skip
HEADER_NAMES = [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"Upgrade", b"TE",
                b"Keep-Alive", b"X-Forwarded-For", b"Cookie", b"X-A", b"x-envoy-original-path", b":authority",
                b"Bad Name", b"", b"X\x00", b"\xe9t\xe9", b"x-" + b"n" * 200, b"Proxy-Connection"]  # fmt: skip
SPECIAL = [b"\r", b"\n", b"\x00", b" ", b":", b",", b"\t", b"\r\n", b"\x7f", b"\xff", b";", b'"']
TE_CL_COMBOS = [
    [b"Transfer-Encoding: chunked", b"Content-Length: 5"],
    [b"Content-Length: 5", b"Content-Length: 6"],
    [b"Content-Length: 5, 5"],
    [b"Content-Length: -1"],
    [b"Content-Length: 1e3"],
    [b"Content-Length: 99999999999999999999999"],
    [b"Content-Length: 0x10"],
    [b"Content-Length:  7 "],
    [b"Content-Length: 100"],
    [b"Transfer-Encoding: gzip, chunked"],
    [b"Transfer-Encoding: chunked, gzip"],
    [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
    [b"Transfer-Encoding: identity"],
    [b"Transfer-Encoding: xchunked"],
    [b"Transfer-Encoding:\tchunked"],
    [b"Transfer-Encoding : chunked"],
    [b" Transfer-Encoding: chunked"],
    [b"Transfer-Encoding: chunked\r\n X-Folded: yes"],
    [b"Transfer-Encoding: CHUNKED"],
    [b"Transfer-Encoding:"],
]
CHUNK_SIZES = [b"zz", b"-1", b"ffffffffffffffffff", b"5;ext", b"5 ", b" 5", b"0x5", b"", b"5\x00", b"FFFFFFF", b"1" * 30]


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    return head.split(CRLF), (sep + body if sep else b"")


def _join(lines: list[bytes], rest: bytes) -> bytes:
    return CRLF.join(lines) + (rest or CRLF + CRLF)


def _pos(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


def _flip(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]


def _insert(rng: random.Random, data: bytes) -> bytes:
    i = _pos(rng, data)
    return data[:i] + rng.choice(SPECIAL) * rng.choice((1, 1, 1, 2, 5)) + data[i:]


def _delete(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.choice((1, 1, 2, 4)) :]


def _dup_line(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _lines(data)
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return _join(lines, rest)


def _drop_line(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _lines(data)
    if len(lines) > 1:
        del lines[rng.randrange(len(lines))]
    return _join(lines, rest)


def _swap_lines(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _lines(data)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return _join(lines, rest)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(1, len(data))] if len(data) > 1 else data


def _random_token(rng: random.Random, alphabet: bytes, lo: int, hi: int) -> bytes:
    return bytes(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


TOKEN = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~"
ANY_BYTE = bytes(range(256))


def _random_header(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.4:
        name = rng.choice(HEADER_NAMES)
    elif r < 0.8:
        name = _random_token(rng, TOKEN, 1, 20)
    else:
        name = _random_token(rng, ANY_BYTE, 0, 12)
    value = _random_token(rng, TOKEN + b' ,;=/"' if rng.random() < 0.7 else ANY_BYTE, 0, 40)
    sep = rng.choice((b": ", b": ", b": ", b":", b" : ", b":\t", b""))
    return name + sep + value


def _add_header(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _lines(data)
    lines.insert(rng.randint(1, len(lines)), _random_header(rng))
    return _join(lines, rest)


def _te_cl(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _lines(data)
    lines = [ln for ln in lines if not ln.lower().startswith((b"content-length", b"transfer-encoding"))] if rng.random() < 0.5 else lines
    for h in rng.choice(TE_CL_COMBOS):
        lines.insert(rng.randint(1, len(lines)), h)
    body = rng.choice((b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n", b"abc"))
    return _join(lines, (rest or CRLF + CRLF) + body if rest else CRLF + CRLF + body)


def _chunk_size(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _lines(data)
    if not any(ln.lower().startswith(b"transfer-encoding") for ln in lines):
        lines.insert(1, b"Transfer-Encoding: chunked")
    chunks = [rng.choice(CHUNK_SIZES) + CRLF + b"hello" + rng.choice((CRLF, b"", b"\n", b"xx")) for _ in range(rng.randint(1, 2))]
    tail = rng.choice((b"0\r\n\r\n", b"0\r\n", b"", b"0\r\nT: x\r\n\r\n", b"0;x\r\n\r\n"))
    return _join(lines, b"\r\n\r\n" + b"".join(chunks) + tail)


def _request_line(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _lines(data)
    parts = lines[0].split(b" ")
    method, target, version = (parts + [b"", b"", b""])[:3]
    pick = rng.randrange(3)
    if pick == 0:
        method = rng.choice(METHODS) if rng.random() < 0.8 else _random_token(rng, TOKEN, 1, 12)
    elif pick == 1:
        target = rng.choice(TARGETS)
    else:
        version = rng.choice(VERSIONS)
    lines[0] = b" ".join((method, target, version)) if rng.random() < 0.9 else method + b"  " + target + b" " + version
    return _join(lines, rest)


def _huge_value(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _lines(data)
    lines.insert(1, b"X-Huge: " + b"v" * rng.randint(61 * KB, 70 * KB))
    return _join(lines, rest)


def _many_headers(rng: random.Random, data: bytes) -> bytes:
    lines, rest = _lines(data)
    lines[1:1] = [b"X-M%d: %d" % (i, i) for i in range(rng.randint(99, 130))]
    return _join(lines, rest)


CHEAP_MUTATIONS = [_flip, _flip, _insert, _insert, _delete, _dup_line, _drop_line, _swap_lines, _truncate, _add_header, _add_header,
                   _te_cl, _te_cl, _chunk_size, _request_line, _request_line]  # fmt: skip


def _structured(rng: random.Random) -> bytes:
    """A request built from random parts (method, target, version, headers, body)."""
    line = b" ".join((rng.choice(METHODS), rng.choice(TARGETS), rng.choice(VERSIONS)))
    headers = [b"Host: fuzz.example"] if rng.random() < 0.8 else []
    headers += [_random_header(rng) for _ in range(rng.randint(0, 6))]
    body = rng.choice((b"", b"", b"hello", b"0\r\n\r\n"))
    return CRLF.join([line, *headers]) + CRLF + CRLF + body


@dataclass(frozen=True)
class FuzzInput:
    data: bytes
    mode: str
    """``read`` (read until the proxy closes or goes quiet), ``half`` (half-close after
    sending, then read) or ``reset`` (close with RST right after sending)."""
    pieces: int
    """The input is written in this many parts, 2 ms apart."""


def generate(seed: int, n: int) -> list[FuzzInput]:
    """``n`` distinct inputs, the same for the same seed."""
    rng = random.Random(seed)
    seen: dict[bytes, None] = {}
    for t in TEMPLATES:  # the valid requests themselves come first
        seen[t] = None
    while len(seen) < n:
        data = _structured(rng) if rng.random() < 0.1 else rng.choice(TEMPLATES)
        r = rng.random()
        if r < 0.01:
            data = _huge_value(rng, data)
        elif r < 0.02:
            data = _many_headers(rng, data)
        for _ in range(1 + min(int(rng.expovariate(1.0)), 3)):
            data = rng.choice(CHEAP_MUTATIONS)(rng, data)
        if data:
            seen.setdefault(data, None)
    out = []
    for data in seen:
        r = rng.random()
        mode = "read" if r < 0.8 else "half" if r < 0.9 else "reset"
        pieces = rng.choice((2, 3, 4)) if rng.random() < 0.15 else 1
        out.append(FuzzInput(data, mode, pieces))
    return out


# ------------------------------------------------------------------------------------------
# the client
# ------------------------------------------------------------------------------------------
RESPONSE_HEAD_RE = re.compile(rb"HTTP/1\.[01] (\d{3}) ?([^\r\n]*)\r\n((?:[^\r\n]+\r\n)*)\r\n")
CONTENT_LENGTH_RE = re.compile(rb"(?im)^content-length:[ \t]*(\d+)[ \t]*\r?$")
# Envoy's codec refusals (``sendProtocolError``) answer with the reason phrase as the body; its
# connection manager's own local replies (no Host, no route, ...) have an empty body.
CODEC_REPLIES = {400: b"Bad Request", 426: b"Upgrade Required", 431: b"Request Header Fields Too Large", 501: b"Not Implemented"}


@dataclass
class Outcome:
    connections: int = 0
    responses: Counter[int] = field(default_factory=Counter)  # status → responses the client saw
    answered: int = 0  # connections that got at least one response
    codec_refused: int = 0  # connections answered with a codec refusal (see CODEC_REPLIES)
    closed_by_proxy: int = 0
    timed_out: int = 0
    reset_by_client: int = 0
    connect_errors: int = 0
    refused_inputs: list[FuzzInput] = field(default_factory=list)  # the inputs codec_refused counts


def responses(buf: bytes) -> list[tuple[int, bytes]]:
    """Status and the first bytes after the head of each response in ``buf`` (the bodies
    Sluice sends here, ``ok`` and its local replies' reason phrases, hold no status line)."""
    out = []
    for m in RESPONSE_HEAD_RE.finditer(buf):
        cl = CONTENT_LENGTH_RE.search(m.group(3))
        n = int(cl.group(1)) if cl else 0
        out.append((int(m.group(1)), buf[m.end() : m.end() + min(n, 64)]))
    return out


async def _one(port: int, item: FuzzInput, out: Outcome) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        out.connect_errors += 1
        return
    out.connections += 1
    sock = writer.get_extra_info("socket")
    buf = b""
    try:
        data = item.data
        cuts = sorted({len(data) * k // item.pieces for k in range(1, item.pieces)})
        start = 0
        for cut in [*cuts, len(data)]:
            writer.write(data[start:cut])
            start = cut
            if cut != len(data):
                await asyncio.sleep(0.002)
        await writer.drain()
        if item.mode == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            out.reset_by_client += 1
            return
        if item.mode == "half":
            writer.write_eof()
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), QUIET_TIMEOUT if buf else FIRST_BYTE_TIMEOUT)
            except TimeoutError:
                out.timed_out += 1
                break
            if not chunk:
                out.closed_by_proxy += 1
                break
            buf += chunk
    except (ConnectionError, OSError):
        out.closed_by_proxy += 1
    finally:
        got = responses(buf)
        out.responses.update(status for status, _ in got)
        out.answered += bool(got)
        if any(CODEC_REPLIES.get(status) == body for status, body in got):
            out.codec_refused += 1
            out.refused_inputs.append(item)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _drive(port: int, inputs: list[FuzzInput], concurrency: int) -> Outcome:
    out = Outcome()
    queue = iter(inputs)

    async def worker() -> None:
        for item in queue:
            await _one(port, item, out)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def drive(port: int, inputs: list[FuzzInput], concurrency: int = CONCURRENCY) -> Outcome:
    return asyncio.run(_drive(port, inputs, concurrency))


# ------------------------------------------------------------------------------------------
# stats
# ------------------------------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def gauges(proxy: ProxyProcess) -> dict[str, int]:
    resp = proxy.admin("GET", "/stats?type=Gauges")
    assert resp.status == 200, resp
    out = {}
    for line in resp.text.splitlines():
        name, _, value = line.partition(": ")
        out[name] = int(value)
    return out


ACTIVITY = re.compile(r"(_active|_buffered|_open|_overloaded|_soft_drain|\.total_connections|\.parent_connections)$")
# Gauges that end like activity gauges but count configuration, not traffic.
CONFIGURATION_GAUGES = {"listener_manager.total_listeners_active", "runtime.admin_overrides_active"}


def activity_gauges(all_gauges: dict[str, int]) -> dict[str, int]:
    """Everything that counts something in progress, except the admin's own request (the one
    reading ``/stats``) and ``upstream_cx_active`` (idle pooled connections stay open: compared
    with what the upstream has open instead)."""
    return {
        k: v
        for k, v in all_gauges.items()
        if ACTIVITY.search(k)
        and k not in CONFIGURATION_GAUGES
        and not k.startswith(("http.admin.", "listener.admin."))
        and k != "cluster.app.upstream_cx_active"
    }


REQUIRED_GAUGES = [
    "http.edge.downstream_rq_active",
    "http.edge.downstream_cx_active",
    "http.edge.downstream_cx_http1_active",
    "http.edge.downstream_cx_rx_bytes_buffered",
    "http.edge.downstream_cx_tx_bytes_buffered",
    "cluster.app.upstream_rq_active",
    "cluster.app.upstream_rq_pending_active",
    "cluster.app.upstream_cx_rx_bytes_buffered",
    "cluster.app.upstream_cx_tx_bytes_buffered",
    "cluster.app.circuit_breakers.default.rq_open",
    "cluster.app.circuit_breakers.default.cx_open",
]

COUNTERS = [
    "downstream_cx_total",
    "downstream_cx_destroy",
    "downstream_cx_destroy_local",
    "downstream_cx_destroy_remote",
    "downstream_cx_http1_total",
    "downstream_cx_protocol_error",
    "downstream_rq_total",
    "downstream_rq_http1_total",
    "downstream_rq_completed",
    "downstream_rq_1xx",
    "downstream_rq_2xx",
    "downstream_rq_3xx",
    "downstream_rq_4xx",
    "downstream_rq_5xx",
    "downstream_rq_rx_reset",
    "downstream_rq_tx_reset",
]


# ------------------------------------------------------------------------------------------
# the test
# ------------------------------------------------------------------------------------------
@dataclass
class Result:
    """One fuzz run and what the proxy looked like after it."""

    proxy: ProxyProcess
    up: FastUpstream
    inputs: list[FuzzInput]
    out: Outcome
    elapsed: float
    alive: bool
    delta: dict[str, int]
    settled: bool
    gauges: dict[str, int]
    log: str
    rss_warm: int
    rss_after: int
    replay: Outcome
    replay_protocol_errors: int


def _counters(proxy: ProxyProcess, listener_stat: str) -> dict[str, int]:
    s = proxy.stats()
    out = {n: s.get(f"http.edge.{n}", 0) for n in COUNTERS}
    out["listener.downstream_cx_total"] = s.get(f"{listener_stat}.downstream_cx_total", 0)
    out["listener.downstream_cx_destroy"] = s.get(f"{listener_stat}.downstream_cx_destroy", 0)
    return out


def _settle(proxy: ProxyProcess, up: FastUpstream, timeout: float = 10.0) -> tuple[bool, dict[str, int]]:
    """Wait until every activity gauge is 0 and the pool holds exactly the connections the
    upstream has open; whether that happened, and the gauges then."""
    last: dict[str, int] = {}

    def idle() -> bool:
        nonlocal last
        last = gauges(proxy)
        return not any(activity_gauges(last).values()) and last.get("cluster.app.upstream_cx_active") == up.open

    return wait_until(idle, timeout, interval=0.1), last


def _normal_request(port: int) -> tuple[int, bytes]:
    resp = http(port, "GET", "/normal")
    return resp.status, resp.body


@pytest.fixture(scope="module")
def result(loop: LoopThread) -> Iterator[Result]:
    up = FastUpstream(loop)
    proxy = ProxyProcess("sluice", yaml.safe_load(CONFIG.format(admin=free_port(), port=free_port(), app=up.port))).start()
    try:
        assert proxy.proc is not None
        pid = proxy.proc.pid
        listener_stat = f"listener.127.0.0.1_{proxy.port}"
        inputs = generate(SEED, N_INPUTS + N_WARMUP)
        warmup, fuzz = inputs[:N_WARMUP], inputs[N_WARMUP:]
        huge = sum(len(i.data) > 60 * KB for i in fuzz)
        many = sum(i.data.count(b"\r\nX-M") > 90 for i in fuzz)
        print(f"\nseed={SEED}: {len(warmup)} warm-up inputs, then {len(fuzz)} fuzz inputs ({huge} over 60 KiB, "
              f"{many} with over 90 extra headers; modes {dict(Counter(i.mode for i in fuzz))})")  # fmt: skip

        # Warm-up: the same kind of traffic, so the RSS measured after it has the caches and pools.
        drive(proxy.port, warmup)
        assert _normal_request(proxy.port) == (200, b"ok")
        assert _settle(proxy, up)[0], "not idle after the warm-up"
        rss_warm = rss_bytes(pid)
        before = _counters(proxy, listener_stat)

        t0 = time.monotonic()
        out = drive(proxy.port, fuzz)
        elapsed = time.monotonic() - t0
        alive = proxy.proc.poll() is None
        print(f"fuzz run: {elapsed:.1f}s over {out.connections} connections ({CONCURRENCY} at once): answered={out.answered} "
              f"codec_refused={out.codec_refused} closed_by_proxy={out.closed_by_proxy} client_timeout={out.timed_out} "
              f"client_reset={out.reset_by_client} connect_errors={out.connect_errors}; "
              f"statuses={dict(sorted(out.responses.items()))}")  # fmt: skip
        settled, final = _settle(proxy, up) if alive else (False, {})
        after = _counters(proxy, listener_stat) if alive else before
        delta = {k: after[k] - before[k] for k in after}
        print(f"stats delta: {delta}")
        print(f"upstream: {up.requests} requests over {up.connections} connections, {up.open} open; "
              f"upstream_cx_active={final.get('cluster.app.upstream_cx_active')}")  # fmt: skip
        rss_after = rss_bytes(pid) if alive else 0
        print(f"RSS after warm-up {rss_warm / 2**20:.1f} MiB, after the fuzz run {rss_after / 2**20:.1f} MiB "
              f"({(rss_after - rss_warm) / 2**20:+.1f} MiB)")  # fmt: skip
        # The inputs a codec refused, again, each read to the end: one protocol error apiece.
        replay_inputs = [FuzzInput(i.data, "read", 1) for i in out.refused_inputs]
        before_replay = _counters(proxy, listener_stat) if alive else before
        replay = drive(proxy.port, replay_inputs, REPLAY_CONCURRENCY) if alive else Outcome()
        replay_errors = _counters(proxy, listener_stat)["downstream_cx_protocol_error"] - before_replay["downstream_cx_protocol_error"]
        print(f"replay of {len(replay_inputs)} refused inputs: {replay.codec_refused} refused again, {replay_errors} protocol errors")
        log = proxy.log_path.read_text(encoding="utf-8", errors="replace")
        yield Result(proxy, up, fuzz, out, elapsed, alive, delta, settled, final, log, rss_warm, rss_after, replay, replay_errors)
    finally:
        proxy.stop()
        up.stop()


def test_run_is_bounded_and_the_proxy_survives(result: Result) -> None:
    assert len(result.inputs) >= 10_000
    assert result.elapsed < RUN_BUDGET_S, f"fuzz run took {result.elapsed:.1f}s"
    assert result.out.connect_errors == 0
    assert result.alive, f"sluice died:\n{result.log[-4000:]}"
    assert _normal_request(result.proxy.port) == (200, b"ok")


def test_every_gauge_returns_to_zero(result: Result) -> None:
    """Every activity gauge back to 0 (the admin's own request excepted). ``upstream_cx_active``
    counts idle pooled connections too, so it is not 0: it must equal the connections the
    upstream has open, and stay within what was ever in flight at once."""
    g = result.gauges
    assert result.settled, (
        f"gauges not back to 0: { ({k: v for k, v in activity_gauges(g).items() if v}) }; "
        f"upstream_cx_active={g.get('cluster.app.upstream_cx_active')} but the upstream has {result.up.open} open"
    )
    missing = [k for k in REQUIRED_GAUGES if k not in activity_gauges(g)]
    assert not missing, f"gauges not in /stats: {missing}"
    assert any(k.startswith("listener.127.0.0.1_") and k.endswith(".downstream_cx_active") for k in activity_gauges(g))
    assert g["cluster.app.upstream_cx_active"] <= CONCURRENCY + 2


def test_connection_counters(result: Result) -> None:
    """Every connection the client opened is counted once, destroyed once, by one side."""
    d, out = result.delta, result.out
    n = out.connections
    assert d["downstream_cx_total"] == d["listener.downstream_cx_total"] == n
    assert d["downstream_cx_destroy"] == d["listener.downstream_cx_destroy"] == n
    assert d["downstream_cx_destroy_local"] + d["downstream_cx_destroy_remote"] == n
    # An HTTP/1 codec on every connection that delivered bytes (a client's reset may beat them).
    assert n - out.reset_by_client <= d["downstream_cx_http1_total"] <= n
    # At most one protocol error per connection (the codec takes no more bytes after one).
    assert 0 < d["downstream_cx_protocol_error"] <= n


def test_request_counters(result: Result) -> None:
    d, out = result.delta, result.out
    assert d["downstream_rq_http1_total"] == d["downstream_rq_total"]
    # Every final response the client saw belongs to a counted request, and was charged to its
    # class (the client closes only after the proxy closed or went quiet: it read them whole).
    finals = sum(c for s, c in out.responses.items() if s >= 200)
    assert d["downstream_rq_total"] >= finals
    for k in range(1, 6):
        seen = sum(c for s, c in out.responses.items() if s // 100 == k)
        assert d[f"downstream_rq_{k}xx"] >= seen, f"{k}xx: stats say {d[f'downstream_rq_{k}xx']}, the client saw {seen}"
    # Each request ends with a response or a reset (Envoy counts some both ways: a codec
    # refusal's stream is reset when its connection closes), and no request gets two final
    # responses charged.
    resets = d["downstream_rq_rx_reset"] + d["downstream_rq_tx_reset"]
    assert d["downstream_rq_total"] <= d["downstream_rq_completed"] + resets
    assert d["downstream_rq_completed"] - d["downstream_rq_1xx"] <= d["downstream_rq_total"]


def test_completed_counts_every_charged_response(result: Result) -> None:
    """Envoy's ``chargeStats``: every response code charged (the 100 Continue it answers an
    ``Expect`` with included) is one ``downstream_rq_completed``."""
    d = result.delta
    assert d["downstream_rq_1xx"] > 0  # the run did send Expect: 100-continue
    assert d["downstream_rq_completed"] == sum(d[f"downstream_rq_{k}xx"] for k in range(1, 6))


def test_every_codec_refusal_is_a_protocol_error(result: Result) -> None:
    """A codec refusal (400/426/431/501 with the reason phrase as body) is Envoy's
    ``sendProtocolError``: its connection counts one ``downstream_cx_protocol_error``. Checked
    on the replay of the refused inputs (in the fuzz run itself, connections the client reset
    count errors it never saw)."""
    replay = result.replay
    assert replay.codec_refused > 0
    assert replay.codec_refused <= result.replay_protocol_errors <= replay.connections


LOG_PROBLEM = re.compile(r"(?i)traceback|internal error|exception|unhandled|critical")


def test_no_traceback_in_the_log(result: Result) -> None:
    problems = [line for line in result.log.splitlines() if LOG_PROBLEM.search(line)]
    assert not problems, f"sluice logged {len(problems)} problem lines, e.g. {problems[:5]}:\n{result.log[-4000:]}"


def test_rss_stays_flat(result: Result) -> None:
    growth = result.rss_after - result.rss_warm
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB ({result.rss_warm} -> {result.rss_after})"


def test_the_codec_frames_every_input_however_tcp_splits_it() -> None:
    """The same inputs straight into the HTTP/1 server codec, each cut at random points (as TCP
    may deliver it), asking after every read what the connection manager asks when the client
    closes: the codec re-frames the reads' data then, and must never fail to (a run here once
    logged ``a completed request's head end was not found`` for a blank line split by a read)."""
    rng = random.Random(SEED + 1)
    failures: list[tuple[list[bytes], str]] = []
    for inp in generate(SEED, N_INPUTS + N_WARMUP):
        data = inp.data
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 4)))) if len(data) > 1 else []
        reads = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        codec = http1.ServerCodec(_NullConnection(), 60 * KB, 100)
        try:
            for piece in reads:
                codec.feed(piece)
                codec.message_begun()
        except http1.InternalError as exc:
            failures.append((reads, str(exc)))
    assert not failures, f"{len(failures)} inputs, e.g. {failures[:3]}"


class _NullStream:
    def on_request_body(self, data: bytes, end_stream: bool) -> None:
        pass


class _NullConnection:
    """The connection manager's side of the codec, accepting every request."""

    def on_message_begin(self) -> None:
        pass

    def new_stream(self, headers: RequestHeaders, end_stream: bool) -> _NullStream:
        return _NullStream()
