"""HTTP/2 downstream (h2c), differentially: the same config and the same client actions through the
real Envoy and through Sluice, compared.

One config (:data:`CONFIG`), several listeners (:data:`LISTENERS`: ``codec_type`` AUTO / HTTP2 /
HTTP1 and ``http2_protocol_options`` / header limits), each with the same routes: ``/`` and
``/up/...`` to the recording HTTP/1 upstream (:class:`H1Upstream`), ``/direct`` a
direct_response, ``/dead`` a cluster nobody listens on (503), anything else no route (404).

A case is a script over :class:`h2_peer.H2Peer` (raw frames, so bad input is as easy as good);
per proxy the test keeps the client's view (per stream: headers with ``date`` masked, body,
trailers, RST_STREAM code; GOAWAY code and last stream id; whether the proxy closed), the
requests the upstream received (bytes, ``x-request-id`` masked) and the deltas of the HCM's
HTTP/2 stats from the admin ``/stats``. Envoy runs first; where the expected Envoy outcome was
checked by hand it is asserted (``expect``), so the Envoy side of a case can fail; then Sluice
runs the same and must equal Envoy.

:data:`SLUICE_SERVES_H2` runs the Sluice side (``SLUICE_H2_DIFF=0`` in the environment runs
and checks Envoy only). A case listed in :data:`KNOWN_DIFFERENCES` is an expected failure on
the Sluice side only, strictly: once it matches Envoy it fails until it is removed from there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from h2.errors import ErrorCodes
from h2_peer import CONTINUATION, DATA, HEADERS, SETTINGS, WINDOW_UPDATE, H2Peer, raw_frame, status_of
from harness import LoopThread, ProxyProcess, ScriptedUpstream, free_port, normalise_raw, wait_until
from test_edge_differential import _frame_request, _Incomplete, _Unframeable

pytestmark = pytest.mark.envoy

SLUICE_SERVES_H2 = True
"""Sluice serves HTTP/2 downstream: each case runs through it too. ``SLUICE_H2_DIFF=0`` in the
environment skips the Sluice side (``SLUICE_H2_DIFF=1`` forces it on)."""
if os.environ.get("SLUICE_H2_DIFF") in ("0", "1"):
    SLUICE_SERVES_H2 = os.environ["SLUICE_H2_DIFF"] == "1"

KNOWN_DIFFERENCES: dict[str, str] = {}
"""Cases (by name) where Sluice cannot give Envoy's answer because of the ``h2`` library, with
the reason. Expected failures on the Sluice side only, strict: remove a case once it matches."""

KINDS = ("envoy", "sluice")

# ------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------
LISTENERS: dict[str, str] = {
    "auto": "codec_type: AUTO",
    "h2": "codec_type: HTTP2\nhttp2_protocol_options: {max_concurrent_streams: 3}",
    "h1": "codec_type: HTTP1",
    "override": "codec_type: AUTO\nhttp2_protocol_options: {override_stream_error_on_invalid_http_message: true}",
    "limits": "codec_type: AUTO\nmax_request_headers_kb: 2\ncommon_http_protocol_options: {max_headers_count: 12}",
    "window": "codec_type: HTTP2\nhttp2_protocol_options: {initial_stream_window_size: 65535, initial_connection_window_size: 65535}",
}

LISTENER = """
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          delayed_close_timeout: 0.3s
{extra}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {{match: {{path: /}}, route: {{cluster: app}}}}
              - {{match: {{prefix: /up/}}, route: {{cluster: app}}}}
              - {{match: {{prefix: /direct}}, direct_response: {{status: 200, body: {{inline_string: "direct answer\\n"}}}}}}
              - {{match: {{prefix: /dead}}, route: {{cluster: dead}}}}
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
  - {{name: app, connect_timeout: 0.5s, type: STATIC, load_assignment: {{cluster_name: app, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {app}}}}}}}}}]}}]}}}}
  - {{name: dead, connect_timeout: 0.25s, type: STATIC, load_assignment: {{cluster_name: dead, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {dead}}}}}}}}}]}}]}}}}
"""


def make_config(ports: dict[str, int], app: int, dead: int) -> dict[str, Any]:
    listeners = "".join(
        LISTENER.format(name=name, port=ports[name], extra="".join(f"          {line}\n" for line in extra.splitlines()))
        for name, extra in LISTENERS.items()
    )
    return dict(yaml.safe_load(CONFIG.format(admin=free_port(), listeners=listeners.rstrip("\n"), app=app, dead=dead)))


# ------------------------------------------------------------------------------------------
# the HTTP/1 upstream: records each request's bytes, answers by path
# ------------------------------------------------------------------------------------------
BIG = 50 * 1024 * 1024
CHUNK = 64 * 1024


def answer_for(head: bytes, body: bytes) -> tuple[bytes, int]:
    """(the response head + body, extra body bytes to stream after it) for a request head."""
    line = head.split(b"\r\n", 1)[0]
    method, path = line.split(b" ")[:2]
    head_only = method == b"HEAD"
    if path.startswith(b"/up/chunked"):
        if head_only:
            return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-up: chunked\r\n\r\n", 0
        return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-up: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n", 0
    if path.startswith(b"/up/trailers"):
        return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n2\r\nok\r\n0\r\nx-t: v\r\n\r\n", 0
    if path.startswith(b"/up/echo"):
        return b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body), 0
    if path.startswith(b"/up/status/"):
        code = int(path.rsplit(b"/", 1)[1])
        return b"HTTP/1.1 %d X\r\ncontent-length: 0\r\n\r\n" % code, 0
    if path.startswith(b"/up/big"):
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % BIG, 0 if head_only else BIG
    if path.startswith(b"/up/slow"):
        return b"", -1  # never answers (the client resets it)
    hdrs = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Up: Yes\r\nX-Multi: a\r\nX-Multi: b\r\ncontent-length: 6\r\n\r\n"
    return hdrs + (b"" if head_only else b"hello\n"), 0


class H1Upstream:
    """The recording upstream of the edge tests (``_frame_request``'s framing), answering by
    path (:func:`answer_for`). ``requests``: every complete request (head + body bytes) in
    arrival order; ``partial``: the bytes of requests a closed connection left incomplete;
    ``streamed``: body bytes written for ``/up/big`` (the write waits for the proxy to read)."""

    def __init__(self, loop: LoopThread) -> None:
        self.requests: list[bytes] = []
        self.partial: list[bytes] = []
        self.streamed = 0
        self.last_arrival = 0.0

        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            buf = b""
            try:
                with contextlib.suppress(Exception):
                    while True:
                        data = await asyncio.wait_for(reader.read(65536), timeout=60)
                        if not data:
                            return
                        self.last_arrival = time.monotonic()
                        buf += data
                        while buf:
                            try:
                                n = _frame_request(buf)
                            except _Incomplete:
                                break
                            except _Unframeable:
                                self.partial.append(buf)
                                buf = b""
                                break
                            req, buf = buf[:n], buf[n:]
                            self.requests.append(req)
                            head, _, body = req.partition(b"\r\n\r\n")
                            answer, extra = answer_for(head, body)
                            if extra < 0:
                                continue
                            writer.write(answer)
                            await writer.drain()
                            while extra > 0:
                                n = min(CHUNK, extra)
                                writer.write(b"x" * n)
                                await writer.drain()
                                self.streamed += n
                                extra -= n
            finally:
                if buf:
                    self.partial.append(buf)

        self.server = ScriptedUpstream(loop, script)
        self.port = self.server.port

    def mark(self) -> tuple[int, int]:
        return len(self.requests), len(self.partial)

    def since(self, mark: tuple[int, int]) -> tuple[list[bytes], list[bytes]]:
        return self.requests[mark[0] :], self.partial[mark[1] :]

    def settle(self, quiet: float = 0.05) -> None:
        while (left := quiet - (time.monotonic() - self.last_arrival)) > 0:
            time.sleep(left)

    def stop(self) -> None:
        self.server.stop()


FORWARDED_VOLATILE = re.compile(rb"(?im)^((?:x-request-id|x-envoy-expected-rq-timeout-ms):[ \t]*)[^\r\n]*")


def forwarded_view(data: bytes) -> str:
    return FORWARDED_VOLATILE.sub(rb"\1<volatile>", data).decode("latin-1")


# ------------------------------------------------------------------------------------------
# the proxies
# ------------------------------------------------------------------------------------------
HTTP2_STATS = [
    "downstream_cx_http2_total", "downstream_cx_http2_active", "downstream_cx_http1_total", "downstream_rq_http2_total",
    "downstream_rq_http1_total", "downstream_rq_total", "downstream_rq_2xx", "downstream_rq_4xx", "downstream_rq_5xx",
    "downstream_cx_protocol_error", "downstream_rq_rx_reset", "downstream_rq_tx_reset", "downstream_cx_destroy_remote_active_rq",
]  # fmt: skip
CODEC_STATS = [
    "http2.rx_reset",
    "http2.tx_reset",
    "http2.goaway_sent",
    "http2.header_overflow",
    "http2.rx_messaging_error",
    "http2.trailers",
]


class Proxy:
    def __init__(self, kind: str, app: int, dead: int) -> None:
        self.kind = kind
        ports = {name: free_port() for name in LISTENERS}
        self.proc = ProxyProcess(kind, make_config(ports, app, dead)).start()
        self.ports = dict(zip(LISTENERS, self.proc.listener_ports, strict=True))

    def stats(self, listener: str) -> dict[str, int]:
        s = self.proc.stats()
        names = [f"http.{listener}.{n}" for n in HTTP2_STATS] + CODEC_STATS
        return {n: s.get(n, 0) for n in names}

    def idle(self, listener: str, timeout: float = 5.0) -> None:
        """Wait until the listener has no connection and no request left."""
        names = [f"http.{listener}.downstream_cx_active", f"http.{listener}.downstream_rq_active"]
        ok = wait_until(lambda: all(self.proc.stats().get(n, 0) == 0 for n in names), timeout)
        assert ok, f"{self.kind}: {listener} not idle: {[(n, self.proc.stats().get(n)) for n in names]}"

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid


@dataclass
class Suite:
    loop: LoopThread
    up: H1Upstream
    proxies: dict[str, Proxy] = field(default_factory=dict)
    ups: dict[str, H1Upstream] = field(default_factory=dict)
    """Each proxy's own recording upstream (``up`` is Envoy's), so the two run a case at once."""


@pytest.fixture(scope="module")
def suite(loop: LoopThread) -> Iterator[Suite]:
    up = H1Upstream(loop)
    dead = free_port()  # nobody listens there
    s = Suite(loop, up)
    s.ups["envoy"] = up
    try:
        for kind in KINDS:
            if kind == "sluice" and not SLUICE_SERVES_H2:
                continue
            kind_up = s.ups.setdefault(kind, H1Upstream(loop))
            s.proxies[kind] = Proxy(kind, kind_up.port, dead)
        yield s
    finally:
        for p in s.proxies.values():
            p.proc.stop()
        for u in s.ups.values():
            u.stop()


# ------------------------------------------------------------------------------------------
# one case through one proxy
# ------------------------------------------------------------------------------------------
Script = Callable[[H2Peer], None]


@dataclass
class Outcome:
    client: dict[str, Any]
    forwarded: list[str]
    partial: list[str]
    stats: dict[str, int]
    events: list[tuple[Any, ...]] = field(default_factory=list)
    """Everything the client received, in order (for failure messages; not compared)."""

    def view(self) -> dict[str, Any]:
        return {"client": self.client, "forwarded": self.forwarded, "partial": self.partial, "stats": self.stats}


def run_case(suite: Suite, kind: str, listener: str, script: Script) -> Outcome:
    proxy = suite.proxies[kind]
    proxy.idle(listener)
    before = proxy.stats(listener)
    up = suite.ups[kind]
    mark = up.mark()
    with H2Peer(proxy.ports[listener]) as peer:
        script(peer)
        client = peer.view()
        events = peer.events
    proxy.idle(listener)
    up.settle()
    after = proxy.stats(listener)
    stats = {n.replace(f"http.{listener}.", "http.<l>."): after[n] - before[n] for n in after if after[n] != before[n]}
    requests, partial = up.since(mark)
    # Sorted: which of a connection's concurrent streams reaches the upstream first (and on
    # which pooled connection) is not behaviour.
    fwd = sorted(forwarded_view(r) for r in requests)
    if "raw" in client:
        client["raw"] = normalise_raw(client["raw"])
    return Outcome(client, fwd, sorted(forwarded_view(p) for p in partial), stats, events)


def differential(suite: Suite, listener: str, script: Script, check: Callable[[Outcome], None], name: str | None = None) -> Outcome:
    """Run ``script`` through Envoy, ``check`` Envoy's outcome, then (when Sluice serves h2)
    through Sluice, which must match Envoy's outcome exactly, unless ``name`` is one of the
    :data:`KNOWN_DIFFERENCES` (then it must still differ: strict xfail)."""
    if not SLUICE_SERVES_H2:
        envoy = run_case(suite, "envoy", listener, script)
        check(envoy)
        pytest.skip("Sluice side off (SLUICE_H2_DIFF=0)")
    # Both at once (each proxy has its own upstream and admin): most cases wait out a quiet
    # period or the delayed close, so this halves the module's time.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        jobs = {kind: pool.submit(run_case, suite, kind, listener, script) for kind in ("envoy", "sluice")}
        envoy, sluice = jobs["envoy"].result(), jobs["sluice"].result()
    check(envoy)
    known = KNOWN_DIFFERENCES.get(name or "")
    if known is not None:
        if sluice.view() == envoy.view():
            pytest.fail(f"{name} now matches Envoy: remove it from KNOWN_DIFFERENCES")
        pytest.xfail(known)
    assert sluice.view() == envoy.view(), describe_difference(envoy, sluice)
    return envoy


def describe_difference(envoy: Outcome, sluice: Outcome) -> str:
    """What differs, part by part (per stream for the client's view)."""
    out = ["Sluice differs from Envoy:"]
    e, s = envoy.view(), sluice.view()
    for key in ("forwarded", "partial", "stats"):
        if e[key] != s[key]:
            out.append(f"  {key}:\n    envoy:  {e[key]!r}\n    sluice: {s[key]!r}")
    ec, sc = e["client"], s["client"]
    for key in sorted(set(ec) | set(sc)):
        if key == "streams":
            for sid in sorted(set(ec["streams"]) | set(sc["streams"])):
                a, b = ec["streams"].get(sid), sc["streams"].get(sid)
                if a != b:
                    out.append(f"  stream {sid}:\n    envoy:  {a!r}\n    sluice: {b!r}")
        elif ec.get(key) != sc.get(key):
            out.append(f"  {key}: envoy {ec.get(key)!r}, sluice {sc.get(key)!r}")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------
# the cases: scripts over one connection
# ------------------------------------------------------------------------------------------
A = "h2.example"
MAX31 = 2**31 - 1


SETTLE = 0.9
"""Seconds a bad-input script waits for the proxy's close: both close a connection they gave up
on after the delayed-close timeout (the listeners' 0.3 s here; 1 s by default) unless the client
closes first."""


def _settle(p: H2Peer) -> None:
    """Record everything until the proxy closes, or :data:`SETTLE` seconds."""
    p.collect(until=lambda q: q.closed, timeout=SETTLE)


def _get(path: str = "/", **kw: Any) -> Script:
    def script(p: H2Peer) -> None:
        p.handshake()
        p.request("GET", path, **kw)
        p.collect()

    return script


def _requests(*reqs: dict[str, Any], timeout: float = 3.0) -> Script:
    def script(p: H2Peer) -> None:
        p.handshake()
        for r in reqs:
            p.request(**r)
        p.collect(timeout=timeout)

    return script


def _bad_headers(headers: list[tuple[str, str]], then_good: bool = True) -> Script:
    """A good request on stream 1 (answered), then ``headers`` on stream 3, then (``then_good``)
    another good request on stream 5: which of them survive."""

    def script(p: H2Peer) -> None:
        p.handshake()
        p.request("GET", "/")
        p.collect()
        p.headers(3, headers, end_stream=True)
        p.next_id = 5
        if then_good:
            p.request("GET", "/direct")
        _settle(p)

    return script


GOOD = [(":method", "GET"), (":scheme", "http"), (":authority", A), (":path", "/")]


def _concurrent(p: H2Peer) -> None:
    p.handshake()
    for i in range(40):
        if i % 4 == 3:
            p.request("POST", f"/up/echo/{i}", body=b"b%d" % i)
        else:
            p.request("GET", "/" if i % 2 else f"/up/chunked/{i}")
    p.collect(timeout=5)


def _reset_mid_body(p: H2Peer) -> None:
    p.handshake()
    sid = p.request("POST", "/up/echo/partial", headers=[("content-length", "10")], end_stream=False)
    p.data(sid, b"12345")  # half the body
    other = p.request("POST", "/up/echo/other", body=b"abc")
    p.collect(until=lambda q: q.finished(other))
    p.rst(sid, ErrorCodes.CANCEL)
    p.opened.remove(sid)
    last = p.request("GET", "/")
    p.collect(until=lambda q: q.finished(last))


def _reset_waiting(p: H2Peer) -> None:
    p.handshake()
    slow = p.request("GET", "/up/slow")
    fast = p.request("GET", "/")
    p.collect(until=lambda q: q.finished(fast))
    p.rst(slow, ErrorCodes.CANCEL)
    p.opened.remove(slow)
    p.request("GET", "/direct")
    p.collect()


def _trailers(p: H2Peer) -> None:
    p.handshake()
    p.request("POST", "/up/echo/t", body=b"hi", trailers=[("x-trailer", "v"), ("x-other", "w")])
    p.collect()


def _ping_and_goaway(p: H2Peer) -> None:
    p.handshake()
    p.ping(b"pingpong")
    p.request("GET", "/")
    p.collect()
    p.goaway(ErrorCodes.NO_ERROR, 0)
    p.read_for(0.5)


def _client_goaway_odd_last_id(p: H2Peer) -> None:
    p.handshake()
    p.request("GET", "/")
    p.collect()
    p.goaway(ErrorCodes.NO_ERROR, 1)
    _settle(p)


def _too_many_streams_before_ack(p: H2Peer) -> None:
    p.auto_ack = False
    p.preface()
    slow = [p.request("GET", f"/up/slow/{i}") for i in range(4)]
    p.collect(until=lambda q: q.finished(slow[3]), timeout=2)
    for sid in slow[:3]:
        p.rst(sid, ErrorCodes.CANCEL)
    p.opened = [slow[3]]
    p.request("GET", "/direct")
    _settle(p)


def _reuse_stream_id(p: H2Peer) -> None:
    p.handshake()
    p.request("GET", "/", stream_id=1)
    p.collect()
    p.request("GET", "/direct", stream_id=1)
    _settle(p)


def _lower_stream_id(p: H2Peer) -> None:
    p.handshake()
    p.request("GET", "/", stream_id=5)
    p.collect()
    p.request("GET", "/direct", stream_id=3)
    _settle(p)


def _even_stream_id(p: H2Peer) -> None:
    p.handshake()
    p.request("GET", "/", stream_id=2)
    _settle(p)


def _window_overflow_stream(p: H2Peer) -> None:
    p.handshake()
    slow = p.request("GET", "/up/slow")
    p.window_update(slow, MAX31)
    p.collect()
    p.request("GET", "/direct")
    _settle(p)


def _window_overflow_connection(p: H2Peer) -> None:
    p.handshake()
    p.request("GET", "/")
    p.collect()
    p.window_update(0, MAX31)
    _settle(p)


def _window_zero(p: H2Peer) -> None:
    p.handshake()
    p.request("GET", "/")
    p.collect()
    p.window_update(0, 0)
    _settle(p)


def _data_beyond_window(p: H2Peer) -> None:
    p.handshake()
    sid = p.request("POST", "/up/echo/big", headers=[("content-length", "70000")])
    p.data(sid, b"z" * 70000, end_stream=True)
    _settle(p)


def _too_many_streams(p: H2Peer) -> None:
    p.handshake()
    slow = [p.request("GET", f"/up/slow/{i}") for i in range(4)]
    p.collect(until=lambda q: q.finished(slow[3]), timeout=2)
    for sid in slow[:3]:
        p.rst(sid, ErrorCodes.CANCEL)
    p.opened = [slow[3]]
    p.request("GET", "/direct")
    _settle(p)


def _frame(ftype: int, flags: int, sid: int, payload: bytes, length: int | None = None, request_first: bool = True) -> Script:
    def script(p: H2Peer) -> None:
        p.handshake()
        if request_first:
            p.request("GET", "/")
            p.collect()
        p.send(raw_frame(ftype, flags, sid, payload, length))
        _settle(p)

    return script


def _bad_preface(magic: bytes) -> Script:
    def script(p: H2Peer) -> None:
        p.preface(magic=magic)
        _settle(p)

    return script


def _h1_on(p: H2Peer) -> None:
    p.send(b"GET / HTTP/1.1\r\nHost: h1.example\r\n\r\n")
    _settle(p)


def _big_headers(n_bytes: int) -> list[tuple[str, str]]:
    return [*GOOD, ("x-big", "v" * n_bytes)]


def _many_headers(n: int) -> list[tuple[str, str]]:
    return [*GOOD, *[(f"x-h{i}", "v") for i in range(n)]]


@dataclass
class Case:
    name: str
    listener: str
    script: Script
    expect: dict[str, Any] = field(default_factory=dict)
    """Envoy's outcome as checked by hand: see :func:`check_expect`."""
    note: str = ""


CASES: list[Case] = [
    # -- requests that work
    Case("get-content-length", "auto", _get("/")),
    Case(
        "post-with-content-length",
        "auto",
        _requests({"method": "POST", "path": "/up/echo", "headers": [("content-length", "5")], "body": b"hello"}),
    ),
    Case("post-without-content-length", "auto", _requests({"method": "POST", "path": "/up/echo", "body": b"x" * 40000})),
    Case("get-chunked-response", "auto", _get("/up/chunked")),
    Case("head-content-length-and-chunked", "auto", _requests({"method": "HEAD", "path": "/"}, {"method": "HEAD", "path": "/up/chunked"})),
    Case("no-route-404", "auto", _get("/nope")),
    Case("direct-response", "auto", _get("/direct")),
    Case("unreachable-cluster-503", "auto", _get("/dead")),
    Case("upstream-status-codes", "auto", _requests(*({"path": f"/up/status/{c}"} for c in (204, 304, 404, 500, 503)))),
    Case("authority-and-host", "auto", _get("/up/x", authority="a.example", headers=[("host", "b.example")])),
    Case("host-without-authority", "auto", _get("/up/x", authority=None, headers=[("host", "b.example")])),
    Case("no-authority-no-host", "auto", _get("/up/x", authority=None)),
    Case(
        "forwarded-request-headers",
        "auto",
        _get(
            "/up/x?q=1",
            headers=[
                ("user-agent", "h2-peer"),
                ("accept", "*/*"),
                ("x-multi", "a"),
                ("x-multi", "b"),
                ("cookie", "a=1"),
                ("cookie", "b=2"),
                ("te", "trailers"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-request-id", "abc-123"),
                ("content-type", "text/plain"),
            ],
        ),
    ),  # fmt: skip
    Case("concurrent-streams", "auto", _concurrent),
    Case("reset-mid-body", "auto", _reset_mid_body),
    Case("reset-while-waiting", "auto", _reset_waiting),
    Case("request-trailers", "auto", _trailers),
    Case("response-trailers", "auto", _get("/up/trailers")),
    Case("ping-and-client-goaway", "auto", _ping_and_goaway),
    Case("h2-only-listener", "h2", _get("/")),
    # -- bad frames and prefaces
    Case("settings-bad-length", "auto", _frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00", request_first=True)),
    Case("settings-unknown-flags", "auto", _frame(SETTINGS, 0xFE, 0, b"")),
    Case("settings-on-stream", "auto", _frame(SETTINGS, 0, 1, b"")),
    Case("data-on-stream-0", "auto", _frame(DATA, 0, 0, b"abc")),
    Case("data-on-idle-stream", "auto", _frame(DATA, 1, 7, b"abc")),
    Case("frame-over-max-size", "auto", _frame(DATA, 0, 1, b"x" * 16385)),
    Case("headers-length-lies", "auto", _frame(HEADERS, 5, 3, b"\x82", length=20)),
    Case("continuation-without-headers", "auto", _frame(CONTINUATION, 4, 3, b"\x82")),
    Case("unknown-frame-type", "auto", _frame(0x42, 0, 0, b"whatever")),
    Case("window-update-bad-length", "auto", _frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01")),
    Case("bad-preface-auto", "auto", _bad_preface(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")),
    Case("bad-preface-h2", "h2", _bad_preface(b"PRX * HTTP/2.0\r\n\r\nSM\r\n\r\n")),
    Case("http1-on-h2-listener", "h2", _h1_on),
    Case("h2-preface-on-http1-listener", "h1", _bad_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")),
    # -- header limits
    Case("headers-over-max-request-headers-kb", "limits", _bad_headers(_big_headers(3000))),
    Case("headers-just-under-kb", "limits", _bad_headers(_big_headers(1900))),
    Case("headers-over-max-headers-count", "limits", _bad_headers(_many_headers(12))),
    Case("headers-at-max-headers-count", "limits", _bad_headers(_many_headers(8))),
    Case("headers-over-kb-default-60", "auto", _bad_headers(_big_headers(62 * 1024))),
    # -- stream ids and flow control
    Case("stream-id-reuse", "auto", _reuse_stream_id),
    Case("stream-id-lower", "auto", _lower_stream_id),
    Case("even-stream-id", "auto", _even_stream_id),
    Case("window-update-overflow-stream", "auto", _window_overflow_stream),
    Case("window-update-overflow-connection", "auto", _window_overflow_connection),
    Case("window-update-zero", "auto", _window_zero),
    Case("data-beyond-window", "window", _data_beyond_window),
    Case("max-concurrent-streams-exceeded", "h2", _too_many_streams),
    Case("max-concurrent-streams-exceeded-before-settings-ack", "h2", _too_many_streams_before_ack),
    Case("client-goaway-odd-last-stream-id", "auto", _client_goaway_odd_last_id),
]

MALFORMED: dict[str, list[tuple[str, str]]] = {
    "unknown-pseudo": [*GOOD, (":foo", "x")],
    "pseudo-after-regular": [(":method", "GET"), (":scheme", "http"), ("x-a", "1"), (":authority", A), (":path", "/")],
    "missing-method": [(":scheme", "http"), (":authority", A), (":path", "/")],
    "missing-path": [(":method", "GET"), (":scheme", "http"), (":authority", A)],
    "missing-scheme": [(":method", "GET"), (":authority", A), (":path", "/")],
    "empty-path": [(":method", "GET"), (":scheme", "http"), (":authority", A), (":path", "")],
    "duplicate-pseudo": [*GOOD, (":path", "/again")],
    "uppercase-name": [*GOOD, ("X-Upper", "1")],
    "connection-keep-alive": [*GOOD, ("connection", "keep-alive")],
    "te-gzip": [*GOOD, ("te", "gzip")],
    "te-trailers": [*GOOD, ("te", "trailers")],
    "space-in-name": [*GOOD, ("x a", "1")],
    "newline-in-value": [*GOOD, ("x-a", "1\n2")],
    "response-pseudo-status": [*GOOD, (":status", "200")],
}
for _name, _headers in MALFORMED.items():
    for _listener in ("auto", "override"):
        CASES.append(Case(f"{_name}-{_listener}", _listener, _bad_headers(_headers)))


# ------------------------------------------------------------------------------------------
# Envoy's outcomes, checked by hand (see the module docstring); compact form of :func:`summary`
# ------------------------------------------------------------------------------------------
def summary(o: Outcome) -> dict[str, Any]:
    """Per stream its ``:status`` (or ``RST <code>``, or ``-`` for neither), the GOAWAYs,
    whether the proxy closed, how many requests the upstream got (complete, partial) and the
    stats deltas."""
    streams = {}
    for sid, v in o.client["streams"].items():
        status = status_of(o.client, sid)
        streams[sid] = f"RST {v['reset']}" if v["reset"] else (status or "-")
    out: dict[str, Any] = {"streams": streams, "goaway": o.client["goaway"], "closed": o.client["closed"]}
    out["upstream"] = (len(o.forwarded), len(o.partial))
    out["stats"] = o.stats
    if "raw" in o.client:
        out["raw_status"] = o.client["raw"].split("\r\n", 1)[0]
    return out


# Envoy 1.40's outcome of every case, checked by hand against the events it sent (summary()
# form: stream -> :status or "RST <code>"; GOAWAY (code, last stream id); closed; upstream
# (complete, partial) requests; stats deltas, "http.<l>." = the listener's HCM). Where Envoy
# surprises (source: source/common/http/http2/codec_impl.cc on oghttp2, conn_manager_impl.cc):
#
# - A malformed request (bad pseudo-headers, uppercase or connection-specific names, te other
#   than trailers, a CR/LF in a value, no :authority and no host) with the default
#   override_stream_error_on_invalid_http_message=false sends NOTHING: no RST_STREAM, no
#   GOAWAY. ConnectionImpl::onInvalidFrame counts http2.rx_messaging_error and returns
#   ERR_CALLBACK_FAILURE, dispatch stops, and the HCM's handleCodecError closes with
#   FlushWriteAndDelay (counting downstream_cx_protocol_error); the close comes after the
#   delayed-close timeout (1 s by default). With the override true: RST_STREAM PROTOCOL_ERROR
#   (http2.tx_reset), the other streams go on.
# - The same silent close (no GOAWAY) for: a bad preface, HTTP/1 bytes on an HTTP2 listener,
#   an even client stream id, SETTINGS on a stream, WINDOW_UPDATE overflowing 2^31-1 on a
#   stream (a connection error here, not RST_STREAM FLOW_CONTROL_ERROR) or the connection, a
#   zero WINDOW_UPDATE, `data-beyond-window` (whose HEADERS carry END_STREAM: request()'s
#   default without a body, so the DATA after them is on a half-closed stream; Envoy refuses
#   the END_STREAM with content-length: 70000 as a malformed request, rx_messaging_error, and
#   never forwards it; a body beyond the initial window on an open stream is fine, Envoy
#   refills the windows as it consumes), a client GOAWAY whose last_stream_id is a client (odd) id, and more
#   streams than MAX_CONCURRENT_STREAMS once the client acked the SETTINGS. Only frame-layer
#   errors come with a GOAWAY: FRAME_SIZE_ERROR (bad SETTINGS / WINDOW_UPDATE length, a frame
#   over 16384) and PROTOCOL_ERROR (DATA on stream 0 or an idle stream, CONTINUATION without
#   HEADERS), each with last_stream_id 1 (the last stream it processed).
# - Too many streams before the client acked SETTINGS: RST_STREAM REFUSED_STREAM on the extra
#   stream (http2.tx_reset), the connection lives.
# - HEADERS on an already closed stream id (reuse) or on a lower id than one used: ignored
#   silently (RFC 9113 5.1.1 says PROTOCOL_ERROR); the connection stays up.
# - Over max_request_headers_kb or max_headers_count: RST_STREAM INTERNAL_ERROR on that stream
#   only; http2.header_overflow counts the count limit only (the byte limit is oghttp2's).
# - A HEADERS frame whose length promises more than comes: the stream is counted (oghttp2
#   decodes as bytes arrive) and dies with the client's close (destroy_remote_active_rq).
# - Request trailers to an HTTP/1 upstream are dropped (counted in http2.trailers), the body
#   goes chunked; the upstream's response trailers are dropped too (its `trailer` header kept).
# - Unknown SETTINGS flags and unknown frame types are ignored.
ENVOY_OUTCOMES: dict[str, dict[str, Any]] = {
    'get-content-length': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'post-with-content-length': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'post-without-content-length': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'get-chunked-response': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'head-content-length-and-chunked': {'streams': {1: '200', 3: '200'}, 'goaway': [], 'closed': False, 'upstream': (2, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 2}},
    'no-route-404': {'streams': {1: '404'}, 'goaway': [], 'closed': False, 'upstream': (0, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_4xx': 1}},
    'direct-response': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (0, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'unreachable-cluster-503': {'streams': {1: '503'}, 'goaway': [], 'closed': False, 'upstream': (0, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_5xx': 1}},
    'upstream-status-codes': {'streams': {1: '204', 3: '304', 5: '404', 7: '500', 9: '503'}, 'goaway': [], 'closed': False, 'upstream': (5, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 5, 'http.<l>.downstream_rq_total': 5, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_rq_4xx': 1, 'http.<l>.downstream_rq_5xx': 2}},
    'authority-and-host': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'host-without-authority': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'no-authority-no-host': {'streams': {}, 'goaway': [], 'closed': True, 'upstream': (0, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'forwarded-request-headers': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'concurrent-streams': {'streams': {1: '200', 3: '200', 5: '200', 7: '200', 9: '200', 11: '200', 13: '200', 15: '200', 17: '200', 19: '200', 21: '200', 23: '200', 25: '200', 27: '200', 29: '200', 31: '200', 33: '200', 35: '200', 37: '200', 39: '200', 41: '200', 43: '200', 45: '200', 47: '200', 49: '200', 51: '200', 53: '200', 55: '200', 57: '200', 59: '200', 61: '200', 63: '200', 65: '200', 67: '200', 69: '200', 71: '200', 73: '200', 75: '200', 77: '200', 79: '200'}, 'goaway': [], 'closed': False, 'upstream': (40, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 40, 'http.<l>.downstream_rq_total': 40, 'http.<l>.downstream_rq_2xx': 40}},
    'reset-mid-body': {'streams': {3: '200', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (2, 1), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_reset': 1}},
    'reset-while-waiting': {'streams': {3: '200', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (2, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_reset': 1}},
    'request-trailers': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1, 'http2.trailers': 1}},
    'response-trailers': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'ping-and-client-goaway': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'h2-only-listener': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'settings-bad-length': {'streams': {1: '200'}, 'goaway': [('FRAME_SIZE_ERROR', 1)], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'settings-unknown-flags': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'settings-on-stream': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'data-on-stream-0': {'streams': {1: '200'}, 'goaway': [('PROTOCOL_ERROR', 1)], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'data-on-idle-stream': {'streams': {1: '200'}, 'goaway': [('PROTOCOL_ERROR', 1)], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'frame-over-max-size': {'streams': {1: '200'}, 'goaway': [('FRAME_SIZE_ERROR', 1)], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'headers-length-lies': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http.<l>.downstream_cx_destroy_remote_active_rq': 1}},
    'continuation-without-headers': {'streams': {1: '200'}, 'goaway': [('PROTOCOL_ERROR', 1)], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'unknown-frame-type': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'window-update-bad-length': {'streams': {1: '200'}, 'goaway': [('FRAME_SIZE_ERROR', 1)], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'bad-preface-auto': {'streams': {}, 'goaway': [], 'closed': True, 'upstream': (0, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'bad-preface-h2': {'streams': {}, 'goaway': [], 'closed': True, 'upstream': (0, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'http1-on-h2-listener': {'streams': {}, 'goaway': [], 'closed': True, 'upstream': (0, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'h2-preface-on-http1-listener': {'streams': {}, 'goaway': [], 'closed': True, 'upstream': (0, 0), 'stats': {'http.<l>.downstream_cx_http1_total': 1, 'http.<l>.downstream_rq_http1_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_4xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1}, 'raw_status': 'HTTP/1.1 400 Bad Request'},
    'headers-over-max-request-headers-kb': {'streams': {1: '200', 3: 'RST INTERNAL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1}},
    'headers-just-under-kb': {'streams': {1: '200', 3: '200', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (2, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 3}},
    'headers-over-max-headers-count': {'streams': {1: '200', 3: 'RST INTERNAL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.header_overflow': 1}},
    'headers-at-max-headers-count': {'streams': {1: '200', 3: '200', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (2, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 3}},
    'headers-over-kb-default-60': {'streams': {1: '200', 3: 'RST INTERNAL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1}},
    'stream-id-reuse': {'streams': {1: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'stream-id-lower': {'streams': {5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1}},
    'even-stream-id': {'streams': {}, 'goaway': [], 'closed': True, 'upstream': (0, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'window-update-overflow-stream': {'streams': {}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1}},
    'window-update-overflow-connection': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'window-update-zero': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'data-beyond-window': {'streams': {}, 'goaway': [], 'closed': True, 'upstream': (0, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'max-concurrent-streams-exceeded': {'streams': {}, 'goaway': [], 'closed': True, 'upstream': (3, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 3}},
    'max-concurrent-streams-exceeded-before-settings-ack': {'streams': {7: 'RST REFUSED_STREAM', 9: '200'}, 'goaway': [], 'closed': False, 'upstream': (3, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 4, 'http.<l>.downstream_rq_total': 4, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_rq_rx_reset': 3, 'http2.rx_reset': 3, 'http2.tx_reset': 1}},
    'client-goaway-odd-last-stream-id': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 1, 'http.<l>.downstream_rq_total': 1, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1}},
    'unknown-pseudo-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'unknown-pseudo-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'pseudo-after-regular-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'pseudo-after-regular-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'missing-method-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'missing-method-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'missing-path-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'missing-path-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'missing-scheme-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'missing-scheme-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'empty-path-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'empty-path-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'duplicate-pseudo-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'duplicate-pseudo-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'uppercase-name-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'uppercase-name-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'connection-keep-alive-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'connection-keep-alive-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'te-gzip-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'te-gzip-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'te-trailers-auto': {'streams': {1: '200', 3: '200', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (2, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 3}},
    'te-trailers-override': {'streams': {1: '200', 3: '200', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (2, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 3}},
    'space-in-name-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'space-in-name-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'newline-in-value-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'newline-in-value-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
    'response-pseudo-status-auto': {'streams': {1: '200'}, 'goaway': [], 'closed': True, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 2, 'http.<l>.downstream_rq_total': 2, 'http.<l>.downstream_rq_2xx': 1, 'http.<l>.downstream_cx_protocol_error': 1, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.rx_messaging_error': 1}},
    'response-pseudo-status-override': {'streams': {1: '200', 3: 'RST PROTOCOL_ERROR', 5: '200'}, 'goaway': [], 'closed': False, 'upstream': (1, 0), 'stats': {'http.<l>.downstream_cx_http2_total': 1, 'http.<l>.downstream_rq_http2_total': 3, 'http.<l>.downstream_rq_total': 3, 'http.<l>.downstream_rq_2xx': 2, 'http.<l>.downstream_rq_rx_reset': 1, 'http2.tx_reset': 1, 'http2.rx_messaging_error': 1}},
}  # fmt: skip
EXPECTED = ENVOY_OUTCOMES


def check_expect(case: Case) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        want = EXPECTED.get(case.name)
        got = summary(o)
        if want is None:
            pytest.fail(f"{case.name}: no expected Envoy outcome recorded; Envoy did {got!r}")
        assert got == want, f"{case.name}: Envoy's outcome changed\n{o.events!r}"

    return check


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_as_envoy(suite: Suite, case: Case) -> None:
    differential(suite, case.listener, case.script, check_expect(case), case.name)


# ------------------------------------------------------------------------------------------
# the exact bytes: what the upstream receives, what the client gets, the SETTINGS
# ------------------------------------------------------------------------------------------
ENVOY_FORWARDED_GET = (
    "GET / HTTP/1.1\r\nhost: h2.example\r\nx-forwarded-proto: http\r\nx-request-id: <volatile>\r\n"
    "x-envoy-expected-rq-timeout-ms: <volatile>\r\n\r\n"
)
ENVOY_FORWARDED_HEADERS = (
    "GET /up/x?q=1 HTTP/1.1\r\nhost: h2.example\r\nuser-agent: h2-peer\r\naccept: */*\r\nx-multi: a\r\nx-multi: b\r\n"
    "te: trailers\r\nx-forwarded-for: 203.0.113.9\r\nx-request-id: <volatile>\r\ncontent-type: text/plain\r\n"
    "cookie: a=1; b=2\r\nx-forwarded-proto: http\r\nx-envoy-expected-rq-timeout-ms: <volatile>\r\n\r\n"
)  # the crumbled cookies joined and put last (reconstituteCrumbledCookies), then the proxy's own
ENVOY_RESPONSE_HEAD = [
    (":status", "200"), ("content-type", "text/plain"), ("x-up", "Yes"), ("x-multi", "a"), ("x-multi", "b"),
    ("content-length", "6"), ("x-envoy-upstream-service-time", "<masked>"), ("date", "<masked>"), ("server", "envoy"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "forwarded"),
    [("get-content-length", ENVOY_FORWARDED_GET), ("forwarded-request-headers", ENVOY_FORWARDED_HEADERS)],
)
def test_forwarded_bytes_and_response_head(suite: Suite, name: str, forwarded: str) -> None:
    """An h2 request as the HTTP/1.1 upstream receives it (request line, header names, order
    and values, x-request-id masked) and the client's response headers, in order."""
    case = next(c for c in CASES if c.name == name)

    def check(o: Outcome) -> None:
        assert o.forwarded == [forwarded]
        assert o.client["streams"][1]["headers"] == ENVOY_RESPONSE_HEAD
        assert o.client["streams"][1]["body"] == b"hello\n"

    differential(suite, case.listener, case.script, check)


ENVOY_SETTINGS = {
    # Envoy 1.40's defaults (not protocol.proto's older 2147483647 streams / 256 MiB windows):
    # 1024 streams, a 16 MiB stream window and a 24 MiB connection window (65535 + the
    # WINDOW_UPDATE right after SETTINGS). No MAX_HEADER_LIST_SIZE is advertised.
    "auto": [
        ("settings", {"HEADER_TABLE_SIZE": 4096, "ENABLE_CONNECT_PROTOCOL": 0, "MAX_CONCURRENT_STREAMS": 1024, "INITIAL_WINDOW_SIZE": 16777216}),
        ("settings_ack",),
        ("window_update", 0, 25165824 - 65535),
        ("ping", True, b"pingpong"),
    ],
    "h2": [
        ("settings", {"HEADER_TABLE_SIZE": 4096, "ENABLE_CONNECT_PROTOCOL": 0, "MAX_CONCURRENT_STREAMS": 3, "INITIAL_WINDOW_SIZE": 16777216}),
        ("settings_ack",),
        ("window_update", 0, 25165824 - 65535),
        ("ping", True, b"pingpong"),
    ],
    "window": [
        ("settings", {"HEADER_TABLE_SIZE": 4096, "ENABLE_CONNECT_PROTOCOL": 0, "MAX_CONCURRENT_STREAMS": 1024, "INITIAL_WINDOW_SIZE": 65535}),
        ("settings_ack",),
        ("ping", True, b"pingpong"),
    ],
}  # fmt: skip


@pytest.mark.parametrize("listener", list(ENVOY_SETTINGS))
def test_settings_window_and_ping(suite: Suite, listener: str) -> None:
    """The connection-level frames: the proxy's SETTINGS, its ACK of ours, the connection
    window it opens and its answer to a PING."""
    runs: list[list[tuple[Any, ...]]] = []

    def script(p: H2Peer) -> None:
        p.handshake()
        p.ping(b"pingpong")
        p.collect(until=lambda q: any(e[0] == "ping" for e in q.events), timeout=2)
        runs.append(p.control())

    def check(o: Outcome) -> None:
        assert runs[0] == ENVOY_SETTINGS[listener]

    differential(suite, listener, script, check)
    assert runs[1] == runs[0], "Sluice's connection-level frames differ from Envoy's"


# ------------------------------------------------------------------------------------------
# a client that does not read a 50 MiB response: the proxy's memory stays bounded
# ------------------------------------------------------------------------------------------
RSS_GROWTH_BOUND_KB = 48 * 1024
"""Envoy buffers a stream's unsent response up to its per-stream buffer limit, which its HTTP/2
codec sets to ``initial_stream_window_size`` (16 MiB by default: ``per_stream_buffer_limit_``
in codec_impl.cc), before the watermark stops it reading the upstream: measured, its RSS grows
by ~18 MiB and the upstream gets ~27 MiB out (kernel socket buffers included) of 50. Sluice must
stay under the same bound."""
UPSTREAM_WRITE_BOUND = 40 * 1024 * 1024
STALL_SECONDS = 1.5
"""Long enough: on loopback a proxy that kept reading would take the 50 MiB within it (and its
RSS would pass the bound)."""


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def stalled_big_response(suite: Suite, kind: str, mode: str) -> dict[str, Any]:
    """GET /up/big (50 MiB) and then not read it for :data:`STALL_SECONDS`: ``window`` reads the
    socket but never sends WINDOW_UPDATE (HTTP/2 flow control holds the proxy), ``socket``
    stops reading the socket at all (TCP holds it). Returns the RSS growth (peak over the
    stall), the body bytes the client got and what the upstream managed to write."""
    proxy = suite.proxies[kind]
    proxy.idle("auto")
    base = rss_kb(proxy.pid)
    streamed0 = suite.ups[kind].streamed
    peak = base
    with H2Peer(proxy.ports["auto"], auto_window=False) as p:
        if mode == "socket":
            p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        p.handshake()
        sid = p.request("GET", "/up/big")
        deadline = time.monotonic() + STALL_SECONDS
        while time.monotonic() < deadline:
            if mode == "window":
                p.read_for(0.2)
            else:
                time.sleep(0.2)
            peak = max(peak, rss_kb(proxy.pid))
        got = sum(len(e[2]) for e in p.events if e[0] == "data" and e[1] == sid)
        status = status_of(p.view(), sid)
    proxy.idle("auto", timeout=10)
    return {"growth_kb": peak - base, "client_body": got, "upstream_wrote": suite.ups[kind].streamed - streamed0, "status": status}


@pytest.mark.parametrize("mode", ["window", "socket"])
def test_unread_large_response_keeps_memory_bounded(suite: Suite, mode: str) -> None:
    envoy = stalled_big_response(suite, "envoy", mode)
    assert envoy["growth_kb"] < RSS_GROWTH_BOUND_KB, envoy
    assert envoy["upstream_wrote"] < UPSTREAM_WRITE_BOUND, envoy  # the proxy stopped reading the upstream
    if mode == "window":
        assert envoy["status"] == "200" and envoy["client_body"] == 65535, envoy  # exactly the initial window
    if not SLUICE_SERVES_H2:
        pytest.skip("Sluice side off (SLUICE_H2_DIFF=0)")
    sluice = stalled_big_response(suite, "sluice", mode)
    assert sluice["growth_kb"] < RSS_GROWTH_BOUND_KB, sluice
    assert sluice["upstream_wrote"] < UPSTREAM_WRITE_BOUND, sluice
    if mode == "window":
        assert (sluice["status"], sluice["client_body"]) == (envoy["status"], envoy["client_body"])


# ------------------------------------------------------------------------------------------
# real clients: curl --http2-prior-knowledge, h2load
# ------------------------------------------------------------------------------------------
CURL = shutil.which("curl")
H2LOAD = shutil.which("h2load")

CURL_REQUESTS: list[tuple[list[str], str, str]] = [
    # (curl arguments, Envoy's status, Envoy's body)
    (["/"], "200", "hello\n"),
    (["/up/chunked"], "200", "hello"),
    (["/direct"], "200", "direct answer\n"),
    (["/nope"], "404", ""),
    (["/dead"], "503", "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"),
    (["-X", "POST", "--data-binary", "abc", "/up/echo"], "200", "abc"),
    (["-I", "/"], "200", ""),
]


def curl(port: int, args: list[str]) -> dict[str, Any]:
    *opts, path = args
    assert CURL is not None
    out = subprocess.run(
        [CURL, "--http2-prior-knowledge", "-sS", "-i", "--max-time", "5", *opts, f"http://127.0.0.1:{port}{path}"],
        capture_output=True, timeout=15, check=False,
    )  # fmt: skip
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(": ")
        headers.append((k, "<masked>" if k in ("date", "x-envoy-upstream-service-time") else v))
    return {
        "rc": out.returncode,
        "status_line": lines[0],
        "headers": headers,
        "body": body.decode("latin-1"),
        "stderr": out.stderr.decode(),
    }


@pytest.mark.skipif(CURL is None, reason="curl is not installed (scripts/test.sh installs it)")
@pytest.mark.parametrize(("args", "status", "body"), CURL_REQUESTS, ids=[" ".join(a) for a, _, _ in CURL_REQUESTS])
def test_curl_http2_prior_knowledge(suite: Suite, args: list[str], status: str, body: str) -> None:
    envoy = curl(suite.proxies["envoy"].ports["auto"], args)
    assert envoy["rc"] == 0 and envoy["status_line"].split() == ["HTTP/2", status], envoy
    assert envoy["body"] == body, envoy
    if not SLUICE_SERVES_H2:
        pytest.skip("Sluice side off (SLUICE_H2_DIFF=0)")
    assert curl(suite.proxies["sluice"].ports["auto"], args) == envoy


H2LOAD_N = 2000


def h2load(port: int) -> dict[str, Any]:
    assert H2LOAD is not None
    out = subprocess.run(
        [H2LOAD, "-n", str(H2LOAD_N), "-c", "4", "-m", "10", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    req = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out.stdout
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out.stdout)
    assert req and codes, out.stdout + out.stderr
    return {"rc": out.returncode, "requests": tuple(map(int, req.groups())), "codes": tuple(map(int, codes.groups()))}


@pytest.mark.skipif(H2LOAD is None, reason="h2load is not installed (scripts/test.sh installs nghttp2-client)")
def test_h2load_all_succeed(suite: Suite) -> None:
    n = H2LOAD_N
    envoy = h2load(suite.proxies["envoy"].ports["auto"])
    assert envoy == {"rc": 0, "requests": (n, n, n, n, 0, 0, 0), "codes": (n, 0, 0, 0)}
    suite.proxies["envoy"].idle("auto")
    if not SLUICE_SERVES_H2:
        pytest.skip("Sluice side off (SLUICE_H2_DIFF=0)")
    assert h2load(suite.proxies["sluice"].ports["auto"]) == envoy
    suite.proxies["sluice"].idle("auto")


# ------------------------------------------------------------------------------------------
# drain: the listeners drain (admin /drain_listeners?graceful) with an h2 connection open
# ------------------------------------------------------------------------------------------
def drained_connection(loop: LoopThread, up: H1Upstream, kind: str) -> dict[str, Any]:
    """A fresh proxy; one request on an h2 connection, then a graceful drain of the listeners:
    what the connection gets within 5 s, and whether a request sent after it is still served."""
    proxy = Proxy(kind, up.port, free_port())
    try:
        with H2Peer(proxy.ports["auto"]) as p:
            p.handshake()
            p.request("GET", "/")
            p.collect()
            assert proxy.proc.admin("POST", "/drain_listeners?graceful").status == 200
            p.collect(until=lambda q: q.goaway_seen(), timeout=5, idle=0.05)
            after = p.request("GET", "/direct")
            p.collect(until=lambda q: q.finished(after) or q.closed, timeout=3)
            view = p.view()
        stats = proxy.proc.stats()
        return {"client": view, "drain_close": stats.get("http.auto.downstream_cx_drain_close")}
    finally:
        proxy.proc.stop()


def test_graceful_drain_sends_goaway(suite: Suite) -> None:
    """Envoy's drain sends the shutdown-notice GOAWAY (NO_ERROR, last stream id 2^31-1) and
    keeps serving the connection's new streams meanwhile (the final GOAWAY waits for the drain
    to end); downstream_cx_drain_close counts the connection. (http2.goaway_sent stays 0: it
    counts only GOAWAYs the codec sends for errors.)"""
    envoy = drained_connection(suite.loop, suite.ups["envoy"], "envoy")
    assert envoy["client"]["goaway"] == [("NO_ERROR", 2**31 - 1)], envoy
    assert status_of(envoy["client"], 1) == status_of(envoy["client"], 3) == "200", envoy
    assert envoy["drain_close"] == 1
    if not SLUICE_SERVES_H2:
        pytest.skip("Sluice side off (SLUICE_H2_DIFF=0)")
    assert drained_connection(suite.loop, suite.ups["sluice"], "sluice") == envoy
