"""HTTP/1.1 responses at the upstream side, differentially (issue 9, point 4): each case is the
raw bytes a scripted upstream answers one request with (and what it does after: close, keep the
connection, reset it), served to the real Envoy and to Sluice on the same config (one listener,
a catch-all route with a 1 s timeout and no retry policy, one STATIC cluster on the upstream).

Per proxy and case the test keeps the client's answer (``date`` and
``x-envoy-upstream-service-time`` normalised), whether the proxy closed the client connection,
and the counters and gauges of ``cluster.app.*`` and ``http.ingress.*`` that changed while the
case ran (byte counts excluded: the forwarded request heads are not the subject here).

Both proxies run each case at the same time, each with its own upstream (threads), so the suite
costs one case's waits per case. Between cases the upstreams drop every connection they hold,
so that each case starts on a fresh upstream connection (that close is not in the case's delta).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from harness import LoopThread, ProxyProcess, ScriptedUpstream, free_port, normalise_raw

pytestmark = pytest.mark.envoy

CONFIG = """
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          delayed_close_timeout: 0.6s  # (both proxies; the reset cases wait it out; longer than the early case's 0.3 s pause)
          route_config:
            virtual_hosts:
            - {{name: all, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: app, timeout: 1s}}}}]}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - {{name: app, connect_timeout: 0.25s, type: STATIC, load_assignment: {{cluster_name: app, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {app}}}}}}}}}]}}]}}}}
"""

KB = 1024
OK = b"content-length: 2\r\n\r\nok"


@dataclass(frozen=True)
class Case:
    name: str
    response: bytes
    after: str = "close"
    """What the upstream does once it wrote ``response``: ``close``, ``keep`` (the connection
    stays open; the next request on it is answered by the next case), ``reset`` (RST)."""
    request: str = "get"
    """``get``, ``post`` (5-byte body), ``head``, or ``early`` (a POST whose body the client
    sends 0.3 s after its head; the upstream answers as soon as it has the head)."""


def r(*lines: bytes, body: bytes = b"") -> bytes:
    """A response: its lines, each ended by CRLF, a blank line, then ``body``."""
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


S200 = b"HTTP/1.1 200 OK"
CL2 = b"content-length: 2"
CHUNKED = b"transfer-encoding: chunked"
MANY = [f"x-h{i}: v".encode() for i in range(100)]

CASES: list[Case] = [
    # ------------------------------------------------------------------------- status line
    Case("baseline", r(S200, CL2, body=b"ok"), "keep"),
    Case("baseline-post", r(S200, CL2, body=b"ok"), "keep", "post"),
    Case("baseline-head", r(S200, b"content-length: 10"), "keep", "head"),
    Case("status-no-reason", r(b"HTTP/1.1 200", CL2, body=b"ok"), "keep"),
    Case("status-no-reason-space", r(b"HTTP/1.1 200 ", CL2, body=b"ok"), "keep"),
    Case("status-two-digits", r(b"HTTP/1.1 20 OK", CL2, body=b"ok")),
    Case("status-four-digits", r(b"HTTP/1.1 2000 OK", CL2, body=b"ok")),
    Case("status-099", r(b"HTTP/1.1 099 Low", CL2, body=b"ok")),
    Case("status-600", r(b"HTTP/1.1 600 High", CL2, body=b"ok"), "keep"),
    Case("status-five-digits", r(b"HTTP/1.1 20000 Big", CL2, body=b"ok"), "keep"),
    Case("status-999", r(b"HTTP/1.1 999 Top", CL2, body=b"ok"), "keep"),
    Case("http10-with-cl", r(b"HTTP/1.0 200 OK", CL2, body=b"ok"), "keep"),
    Case("http10-keep-alive", r(b"HTTP/1.0 200 OK", CL2, b"connection: keep-alive", body=b"ok"), "keep"),
    Case("http10-close-delimited", r(b"HTTP/1.0 200 OK", body=b"ok")),
    Case("http20-version", r(b"HTTP/2.0 200 OK", CL2, body=b"ok")),
    Case("http12-version", r(b"HTTP/1.2 200 OK", CL2, body=b"ok")),
    Case("lowercase-version", r(b"http/1.1 200 OK", CL2, body=b"ok")),
    Case("garbage-status-line", r(b"FOO BAR BAZ", CL2, body=b"ok")),
    Case("connection-close-header", r(S200, CL2, b"connection: close", body=b"ok"), "keep"),
    # ------------------------------------------------------------------------- header syntax
    Case("space-before-colon", r(S200, CL2, b"x-a : b", body=b"ok")),
    Case("space-in-name", r(S200, CL2, b"x a: b", body=b"ok")),
    Case("empty-name", r(S200, CL2, b": b", body=b"ok")),
    Case("no-colon", r(S200, CL2, b"x-a", body=b"ok")),
    Case("nul-in-value", r(S200, CL2, b"x-a: a\x00b", body=b"ok")),
    Case("ctl-in-value", r(S200, CL2, b"x-a: a\x01b", body=b"ok")),
    Case("del-in-value", r(S200, CL2, b"x-a: a\x7fb", body=b"ok"), "keep"),
    Case("high-byte-value", r(S200, CL2, b"x-a: caf\xe9", body=b"ok"), "keep"),
    Case("obs-fold", r(S200, CL2, b"x-a: a", b" b", body=b"ok")),
    Case("bare-lf", b"HTTP/1.1 200 OK\ncontent-length: 2\nx-a: b\n\nok", "keep"),
    Case("bare-cr-in-value", r(S200, CL2, b"x-a: a\rb", body=b"ok")),
    Case("trailing-space-value", r(S200, CL2, b"x-a: b  ", body=b"ok"), "keep"),
    # ------------------------------------------------------------------------- framing
    Case("cl-and-te", r(S200, CL2, CHUNKED, body=b"2\r\nok\r\n0\r\n\r\n")),
    Case("two-different-cl", r(S200, CL2, b"content-length: 3", body=b"ok!")),
    Case("two-same-cl", r(S200, CL2, CL2, body=b"ok"), "keep"),
    Case("cl-list-same", r(S200, b"content-length: 2, 2", body=b"ok")),
    Case("cl-plus-sign", r(S200, b"content-length: +2", body=b"ok")),
    Case("cl-negative", r(S200, b"content-length: -1", body=b"ok")),
    Case("cl-garbage", r(S200, b"content-length: 2x", body=b"ok")),
    Case("cl-empty", r(S200, b"content-length:", body=b"ok")),
    Case("te-gzip", r(S200, b"transfer-encoding: gzip", body=b"ok")),
    Case("te-gzip-chunked", r(S200, b"transfer-encoding: gzip, chunked", body=b"2\r\nok\r\n0\r\n\r\n")),
    Case("te-chunked-gzip", r(S200, b"transfer-encoding: chunked, gzip", body=b"ok")),
    Case("te-two-headers", r(S200, b"transfer-encoding: gzip", CHUNKED, body=b"2\r\nok\r\n0\r\n\r\n")),
    Case("te-chunked-uppercase", r(S200, b"transfer-encoding: CHUNKED", body=b"2\r\nok\r\n0\r\n\r\n"), "keep"),
    Case("chunked-ok", r(S200, CHUNKED, body=b"2\r\nok\r\n0\r\n\r\n"), "keep"),
    Case("chunk-bad-size", r(S200, CHUNKED, body=b"zz\r\nok\r\n0\r\n\r\n")),
    Case("chunk-size-overflow", r(S200, CHUNKED, body=b"fffffffffffffffff\r\nok\r\n0\r\n\r\n")),
    Case("chunk-extension", r(S200, CHUNKED, body=b"2;ext=1\r\nok\r\n0\r\n\r\n"), "keep"),
    Case("chunk-missing-crlf", r(S200, CHUNKED, body=b"2\r\nokX0\r\n\r\n")),
    Case("chunk-missing-final-close", r(S200, CHUNKED, body=b"2\r\nok\r\n")),
    Case("chunk-trailers", r(S200, CHUNKED, body=b"2\r\nok\r\n0\r\nx-t: v\r\n\r\n"), "keep"),
    Case("cl-truncated-close", r(S200, b"content-length: 10", body=b"ok")),
    Case("cl-truncated-reset", r(S200, b"content-length: 10", body=b"ok"), "reset"),
    Case("close-delimited", r(S200, body=b"ok")),
    Case("close-delimited-post", r(S200, body=b"ok"), "close", "post"),
    # ------------------------------------------------------------------------- 1xx, no-body codes
    Case("100-then-200", r(b"HTTP/1.1 100 Continue") + r(S200, CL2, body=b"ok"), "keep"),
    Case("102-then-200", r(b"HTTP/1.1 102 Processing") + r(S200, CL2, body=b"ok"), "keep"),
    Case("103-then-200", r(b"HTTP/1.1 103 Early Hints", b"link: </a>; rel=preload") + r(S200, CL2, body=b"ok"), "keep"),
    Case("100-with-cl", r(b"HTTP/1.1 100 Continue", b"content-length: 5") + r(S200, CL2, body=b"ok"), "keep"),
    Case("101-no-upgrade", r(b"HTTP/1.1 101 Switching Protocols", b"upgrade: foo", b"connection: upgrade")),
    Case("204-with-body", r(b"HTTP/1.1 204 No Content", CL2, body=b"ok")),
    Case("204-with-te", r(b"HTTP/1.1 204 No Content", CHUNKED, body=b"2\r\nok\r\n0\r\n\r\n")),
    Case("204-clean", r(b"HTTP/1.1 204 No Content"), "keep"),
    Case("304-with-cl", r(b"HTTP/1.1 304 Not Modified", b"content-length: 10"), "keep"),
    Case("304-clean", r(b"HTTP/1.1 304 Not Modified"), "keep"),
    Case("304-with-body", r(b"HTTP/1.1 304 Not Modified", body=b"ok")),
    Case("head-with-body", r(S200, CL2, body=b"ok"), "keep", "head"),
    # ------------------------------------------------------------------------- limits
    # (Envoy 1.40 takes response heads up to 80 KiB, not the request side's 60: 61k and 79k
    # pass, 81k is a 502; and up to 100 headers.)
    Case("headers-59k", r(S200, CL2, b"x-big: " + b"a" * 59 * KB, body=b"ok"), "keep"),
    Case("headers-61k", r(S200, CL2, b"x-big: " + b"a" * 61 * KB, body=b"ok")),
    Case("headers-79k", r(S200, CL2, b"x-big: " + b"a" * 79 * KB, body=b"ok")),
    Case("headers-81k", r(S200, CL2, b"x-big: " + b"a" * 81 * KB, body=b"ok")),
    Case("headers-100k", r(S200, CL2, b"x-big: " + b"a" * 100 * KB, body=b"ok")),
    Case("headers-100", r(S200, CL2, *MANY[:99], body=b"ok"), "keep"),
    Case("headers-101", r(S200, CL2, *MANY, body=b"ok")),
    # ------------------------------------------------------------------------- timing, extra bytes
    Case("early-response", r(S200, CL2, body=b"ok"), "keep", "early"),
    Case("early-response-close", r(S200, CL2, b"connection: close", body=b"ok"), "keep", "early"),
    Case("smuggled-second-response", r(S200, CL2, body=b"ok") + r(S200, CL2, body=b"XX"), "keep"),
    Case("extra-bytes-then-close", r(S200, CL2, body=b"okEXTRA")),
    Case("reset-mid-headers", b"HTTP/1.1 200 OK\r\ncontent-len", "reset"),
    Case("close-mid-headers", b"HTTP/1.1 200 OK\r\ncontent-len"),
    Case("reset-mid-body", r(S200, b"content-length: 10", body=b"ok"), "reset"),
    Case("reset-mid-chunked", r(S200, CHUNKED, body=b"2\r\nok\r\n"), "reset"),
    Case("empty-close", b""),
    Case("empty-reset", b"", "reset"),
]

# Where Sluice may differ from Envoy, and how. Each is a "Divergence from Envoy:" outside the
# upstream codec (the downstream connection manager and encoder, not edited by this suite).
#
# Divergence from Envoy: a reset after the response started. Envoy's HCM counts the stream as
# a completed 2xx with a received reset and waits out its delayed close; Sluice's counts a
# local reset only (downstream_rq_tx_reset, which both count). The client sees the same bytes.
RESET_AFTER_START_STATS = frozenset(
    {
        "http.ingress.downstream_cx_delayed_close_timeout",
        "http.ingress.downstream_rq_2xx",
        "http.ingress.downstream_rq_completed",
        "http.ingress.downstream_rq_rx_reset",
    }
)
RESET_AFTER_START = frozenset(
    {"chunk-missing-final-close", "cl-truncated-close", "cl-truncated-reset", "reset-mid-body", "reset-mid-chunked"}
)
# Divergence from Envoy: a chunked body refused in the read that brought the head. Envoy has
# written the head (half-framed: no chunk follows) when it resets; Sluice's reset drops the head
# that was still queued, so the client gets nothing at all. Stricter, never half-framed.
REFUSED_WITH_THE_HEAD = frozenset({"chunk-bad-size", "chunk-size-overflow", "chunk-missing-crlf"})
# Divergence from Envoy: a response that ends before the request did. Envoy's HCM counts the
# client's close (after ``connection: close``) as a received reset; Sluice closes first.
EARLY_RESPONSE_STATS = frozenset(
    {"http.ingress.downstream_cx_destroy_local", "http.ingress.downstream_cx_destroy_remote", "http.ingress.downstream_rq_rx_reset"}
)
EARLY_RESPONSE = frozenset({"early-response", "early-response-close"})
# Divergence from Envoy: a 304 without content-length gets ``content-length: 0`` from Sluice's
# response encoder (sluice/http/http1.py); Envoy sends none.
CL0_ADDED = frozenset({"304-with-body", "304-clean"})


def comparable(case: Case, kind: str, got: dict[str, Any]) -> dict[str, Any]:
    """``got`` with what :data:`RESET_AFTER_START` and the others allow to differ taken out."""
    out = dict(got)
    skip: frozenset[str] = frozenset()
    if case.name in RESET_AFTER_START or case.name in REFUSED_WITH_THE_HEAD:
        skip = RESET_AFTER_START_STATS
    elif case.name in EARLY_RESPONSE:
        skip = EARLY_RESPONSE_STATS
    out["stats"] = {k: v for k, v in got["stats"].items() if k not in skip}
    if case.name in REFUSED_WITH_THE_HEAD:
        out["answer"] = "<refused>"
    if case.name in CL0_ADDED and kind == "sluice":
        out["answer"] = got["answer"].replace("content-length: 0\r\n", "")
    return out


# ------------------------------------------------------------------------------------------
# the upstream
# ------------------------------------------------------------------------------------------


class Upstream:
    """Answers each request with the current case's bytes; drops its connections on ``reset()``."""

    def __init__(self, loop: LoopThread) -> None:
        self.case: Case = CASES[0]
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = loop

        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.add(writer)
            try:
                while True:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
                    case = self.case
                    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    if m and case.request != "early":
                        await asyncio.wait_for(reader.readexactly(int(m.group(1))), timeout=5)
                    if case.response:
                        writer.write(case.response)
                        await writer.drain()
                    if case.after == "reset":
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return
                    if case.after == "close":
                        return
                    if case.request == "early" and m:
                        await asyncio.wait_for(reader.readexactly(int(m.group(1))), timeout=5)
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, asyncio.LimitOverrunError):
                return
            finally:
                self.writers.discard(writer)

        self.server = ScriptedUpstream(loop, script)
        self.port = self.server.port

    def drop_all(self) -> None:
        async def drop() -> None:
            for w in list(self.writers):
                w.close()

        self.loop.run(drop())

    def stop(self) -> None:
        self.server.stop()


# ------------------------------------------------------------------------------------------
# the client
# ------------------------------------------------------------------------------------------
REQUESTS = {
    "get": b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n",
    "head": b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n",
    "post": b"POST /x HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhello",
}
EARLY_HEAD = b"POST /x HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\n"


def _complete(buf: bytes, head_request: bool) -> bool:
    """Whether ``buf`` holds one complete final response (as the proxies frame theirs)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = buf[: end + 4]
        m = re.match(rb"HTTP/1\.1 (\d{3})", head)
        if not m:
            return False
        code = int(m.group(1))
        if 100 <= code < 200 and code != 101:
            buf = buf[end + 4 :]
            continue
        body = buf[end + 4 :]
        if head_request or code in (101, 204, 304):
            return True
        cl = re.search(rb"(?im)^content-length: (\d+)", head)
        if cl:
            return len(body) >= int(cl.group(1))
        if re.search(rb"(?im)^transfer-encoding: chunked", head):
            return body.endswith(b"0\r\n\r\n")
        return False


def send(port: int, kind: str) -> tuple[bytes, bool]:
    """The request of ``kind`` on a fresh connection; the bytes read and whether the proxy
    closed (or reset) the connection. After a complete answer with ``connection: close`` the
    client half-closes (Envoy otherwise delays its close by up to a second)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        if kind == "early":
            s.sendall(EARLY_HEAD)
            time.sleep(0.3)
            with contextlib.suppress(OSError):
                s.sendall(b"hello")
        else:
            s.sendall(REQUESTS[kind])
        buf = b""
        start = time.monotonic()
        half_closed = False
        while True:
            left = 2.5 - (time.monotonic() - start)
            if left <= 0:
                return buf, False
            wait = left
            if _complete(buf, kind == "head"):
                if re.search(rb"(?im)^connection: close\r$", buf) and not half_closed:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_WR)
                    half_closed = True
                if not half_closed:
                    wait = min(left, 0.3)
            s.settimeout(wait)
            try:
                chunk = s.recv(1 << 17)
            except TimeoutError:
                return buf, False
            except OSError:
                return buf, True
            if not chunk:
                return buf, True
            buf += chunk


SERVICE_TIME = re.compile(r"(?im)^(x-envoy-upstream-service-time: )\d+")
STAT_PREFIXES = ("cluster.app.", "http.ingress.")


class Proxy:
    def __init__(self, kind: str, loop: LoopThread) -> None:
        self.kind = kind
        self.up = Upstream(loop)
        text = CONFIG.format(admin=free_port(), port=free_port(), app=self.up.port)
        self.proc = ProxyProcess(kind, yaml.safe_load(text)).start()

    def stats(self) -> dict[str, int]:
        return {k: v for k, v in self.proc.stats().items() if k.startswith(STAT_PREFIXES) and "bytes" not in k and not k.endswith("_ms")}

    def run(self, case: Case) -> dict[str, Any]:
        self.up.drop_all()
        time.sleep(0.1)
        self.up.case = case
        before = self.stats()
        raw, closed = send(self.proc.port, case.request)
        time.sleep(0.3)  # connection closes and stream destruction are counted after the answer
        after = self.stats()
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(before) | set(after))}
        answer = SERVICE_TIME.sub(r"\1<volatile>", normalise_raw(raw))
        return {"answer": answer, "closed": closed, "stats": {k: v for k, v in delta.items() if v}}

    def stop(self) -> None:
        self.proc.stop()
        self.up.stop()


@pytest.fixture(scope="module")
def proxies(loop: LoopThread) -> Iterator[dict[str, Proxy]]:
    started: dict[str, Proxy] = {}
    try:
        for kind in ("envoy", "sluice"):
            started[kind] = Proxy(kind, loop)
        yield started
    finally:
        for p in started.values():
            p.stop()


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as ex:
        yield ex


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_upstream_response_as_envoy(proxies: dict[str, Proxy], pool: ThreadPoolExecutor, case: Case) -> None:
    futures = {kind: pool.submit(p.run, case) for kind, p in proxies.items()}
    got = {kind: f.result(timeout=20) for kind, f in futures.items()}
    if os.environ.get("UPSTREAM_EDGE_DUMP"):
        with open(os.environ["UPSTREAM_EDGE_DUMP"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"case": case.name, **got}) + "\n")
    if case.name in REFUSED_WITH_THE_HEAD:
        # Envoy: the head, then the reset; Sluice: the reset alone (nothing half-framed).
        assert got["envoy"]["answer"].startswith("HTTP/1.1 200 OK") and got["envoy"]["closed"]
        assert got["sluice"]["answer"] == "" and got["sluice"]["closed"]
    assert comparable(case, "sluice", got["sluice"]) == comparable(case, "envoy", got["envoy"]), case.name
