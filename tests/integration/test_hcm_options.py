"""The HCM's HTTP/1 options (issue 9, point 2), differentially: one config with a listener per
option set, the same raw requests through the real Envoy and through Sluice, and the client's
answer, whether the connection closed, the bytes the upstream received and the HCM's stats
compared.

Options: ``http_protocol_options`` (``accept_http_10``, ``default_host_for_http_10``,
``allow_absolute_url``, ``allow_chunked_length``, ``header_key_format``, ``enable_trailers``),
``headers_with_underscores_action``,
``normalize_path``, ``merge_slashes``, ``path_with_escaped_slashes_action``, and the defaults
(HTTP/1.0 refused, absolute URLs taken, escaped slashes kept)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from harness import LoopThread, ProxyProcess, ScriptedUpstream, free_port, normalise_raw

pytestmark = pytest.mark.envoy

OPTIONS = {
    "defaults": "",
    "http10": "http_protocol_options: {accept_http_10: true, default_host_for_http_10: dflt.example}",
    "http10_nohost": "http_protocol_options: {accept_http_10: true}",
    "strict_url": "http_protocol_options: {allow_absolute_url: false, allow_chunked_length: true}",
    "reject_underscores": "common_http_protocol_options: {headers_with_underscores_action: REJECT_REQUEST}",
    "drop_underscores": "common_http_protocol_options: {headers_with_underscores_action: DROP_HEADER}",
    "normalize": "normalize_path: true\nmerge_slashes: true",
    "reject_slashes": "path_with_escaped_slashes_action: REJECT_REQUEST",
    "redirect_slashes": "path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT",
    "forward_slashes": "path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD\nnormalize_path: true",
    "proper_case": "http_protocol_options: {header_key_format: {proper_case_words: {}}, accept_http_10: true}",
    "trailers": "http_protocol_options: {enable_trailers: true}",
    "trailers_underscores": "http_protocol_options: {enable_trailers: true}\ncommon_http_protocol_options: {headers_with_underscores_action: REJECT_REQUEST, max_headers_count: 10}",
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

HCM_STATS = re.compile(r"^http\.(?!admin\.)[a-z0-9_]+\.(downstream_rq_(?!time)|http1\.|downstream_cx_protocol_error)|^http1\.")


def _raw(*lines: str, body: str = "") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("latin-1")


PAUSE = b"\x00pause\x00"
"""In a case's bytes: the client sends what comes before, waits PAUSE_S, then the rest (so what
the proxies forward before a late refusal does not depend on when their upstream connects)."""
PAUSE_S = 0.2


# (name, listener, raw request)
CASES: list[tuple[str, str, bytes]] = [
    ("http10-refused-by-default", "defaults", _raw("GET /a HTTP/1.0", "Host: x")),
    ("http09-refused-by-default", "defaults", b"GET /\r\n\r\n"),
    ("http10-default-host", "http10", _raw("GET /a HTTP/1.0")),
    ("http10-own-host", "http10", _raw("GET /a HTTP/1.0", "Host: mine")),
    ("http10-keep-alive-pipelined", "http10", _raw("GET /a HTTP/1.0", "Host: x", "Connection: keep-alive") + _raw("GET /b HTTP/1.0", "Host: x")),
    ("http10-chunked-response-closes", "http10", _raw("GET /chunked HTTP/1.0", "Host: x", "Connection: keep-alive")),
    ("http10-post", "http10", _raw("POST /a HTTP/1.0", "Host: h", "Content-Length: 2", body="hi")),
    ("http09-as-http10", "http10", b"GET /\r\n\r\n"),
    ("http10-no-host-no-default", "http10_nohost", _raw("GET /a HTTP/1.0")),
    ("http11-unchanged-with-http10", "http10", _raw("GET /chunked HTTP/1.1", "Host: x")),
    ("absolute-url-default", "defaults", _raw("GET http://other.example:8080/p?q=1 HTTP/1.1", "Host: x")),
    ("absolute-url-refused", "strict_url", _raw("GET http://other.example/p HTTP/1.1", "Host: x")),
    ("chunked-and-length-default", "defaults", _raw("POST /a HTTP/1.1", "Host: x", "Content-Length: 5", "Transfer-Encoding: chunked", body="2\r\nok\r\n0\r\n\r\n")),
    ("chunked-and-length-allowed", "strict_url", _raw("POST /a HTTP/1.1", "Host: x", "Content-Length: 5", "Transfer-Encoding: chunked", body="2\r\nok\r\n0\r\n\r\n")),
    ("underscore-allowed", "defaults", _raw("GET /a HTTP/1.1", "Host: x", "x_under: 1", "x-ok: 2")),
    ("underscore-rejected", "reject_underscores", _raw("GET /a HTTP/1.1", "Host: x", "x_under: 1", "x-ok: 2")),
    ("underscore-dropped", "drop_underscores", _raw("GET /a HTTP/1.1", "Host: x", "x_under: 1", "x-ok: 2")),
    # header_key_format: proper_case_words re-cases every response name (the upstream's, the
    # proxy's own, local replies', the framing headers); the upstream request keeps its case
    ("proper-case-upstream-names", "proper_case", _raw("GET /mixed HTTP/1.1", "Host: x", "x-Up_case: 1")),
    ("proper-case-chunked", "proper_case", _raw("GET /chunked HTTP/1.1", "Host: x")),
    ("proper-case-head", "proper_case", _raw("HEAD /chunked HTTP/1.1", "Host: x")),
    ("proper-case-local-400", "proper_case", _raw("GET /a HTTP/1.1", "Host: a b")),
    ("proper-case-local-431", "proper_case", _raw("GET /a HTTP/1.1", "Host: x", *[f"h{i}: v" for i in range(101)])),
    ("proper-case-expect", "proper_case", _raw("POST /a HTTP/1.1", "Host: x", "Expect: 100-continue", "Content-Length: 2", body="hi")),
    ("proper-case-close", "proper_case", _raw("GET /a HTTP/1.1", "Host: x", "Connection: close")),
    ("proper-case-http10-keep-alive", "proper_case", _raw("GET /a HTTP/1.0", "Host: x", "Connection: keep-alive")),
    ("proper-case-empty-body", "proper_case", _raw("GET /empty HTTP/1.1", "Host: x")),
    # enable_trailers with an HTTP/1 upstream: what each side forwards of the trailers
    ("trailers-request", "trailers", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\nx-t: a\r\n\r\n")),
    ("trailers-request-two", "trailers", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\nx-t1: a\r\nx-t2: b\r\n\r\n")),
    ("trailers-request-underscore", "trailers", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\nx_t: a\r\n\r\n")),
    ("trailers-request-bad-name", "trailers", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\nbad name: a\r\n\r\n")),
    ("trailers-request-no-colon", "trailers", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\nnocolon\r\n\r\n")),
    ("trailers-request-content-length", "trailers", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\ncontent-length: 9\r\n\r\n")),
    ("trailers-request-many", "trailers", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\n" + "".join(f"t{i}: v\r\n" for i in range(120)) + "\r\n")),
    ("trailers-request-large", "trailers", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\nx-big: " + "v" * 70000 + "\r\n\r\n")),
    ("trailers-response", "trailers", _raw("GET /trailers HTTP/1.1", "Host: x")),
    # without enable_trailers Envoy checks trailer names and the block's size, not the header
    # limits (count, bytes left after the headers) nor the underscore rule
    ("trailers-off-many", "defaults", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\n" + "".join(f"t{i}: v\r\n" for i in range(120)) + "\r\n")),
    ("trailers-off-after-big-headers", "defaults", _raw("POST /a HTTP/1.1", "Host: x", "x-big: " + "h" * 40000, "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\nx-t: " + "t" * 30000 + "\r\n\r\n")),
    ("trailers-on-after-big-headers", "trailers", _raw("POST /a HTTP/1.1", "Host: x", "x-big: " + "h" * 40000, "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\nx-t: " + "t" * 30000 + "\r\n\r\n")),
    ("trailers-off-underscore-rejected", "reject_underscores", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\nx_t: a\r\n\r\n")),
    ("trailers-off-underscore-dropped", "drop_underscores", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\nx_t: a\r\n\r\n")),
    ("trailers-on-underscore-rejected", "trailers_underscores", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\nx_t: a\r\n\r\n")),
    ("trailers-on-count-own-budget", "trailers_underscores", _raw("POST /a HTTP/1.1", "Host: x", *[f"h{i}: v" for i in range(8)], "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\n" + "".join(f"t{i}: v\r\n" for i in range(10)) + "\r\n")),
    ("trailers-on-count-over", "trailers_underscores", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n0\r\n" + "".join(f"t{i}: v\r\n" for i in range(11)) + "\r\n")),
    ("trailers-off-too-long", "defaults", _raw("POST /a HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", body="2\r\nhi\r\n\x00pause\x000\r\nx-t: " + "t" * 70000 + "\r\n\r\n")),
    ("trailers-response-default", "defaults", _raw("GET /trailers HTTP/1.1", "Host: x")),
]  # fmt: skip

PATHS = [
    "/a/b/../c", "/a/./b/.", "/..", "/a//b", "/%2e%2E/x", "/a/%7e/%41%2f%2F", "/a%20b/%22q", "/a\\b",
    "/a/b/../../../c?x=/../y", "/a/%5c/b", "/a%2Fb//c?q=%2F", "/a/%zz/%4", "/a/^|/[x]", "/a/%c3%a9",
    "/a/%2e./b", "/a/{b}", "/a/%00", "/a/%2e%2e%2fb",
]  # fmt: skip
for _listener in ("defaults", "normalize", "reject_slashes", "redirect_slashes", "forward_slashes"):
    for _i, _path in enumerate(PATHS):
        CASES.append((f"path{_i}-{_listener}", _listener, _raw(f"GET {_path} HTTP/1.1", "Host: x")))


class RecordingUpstream:
    """Records every byte it receives; answers each request it can frame with ``ok`` (with a
    content-length, or chunked when the path starts with ``/chunked``; ``/trailers``: chunked
    with a trailer; ``/mixed``: mixed-case header names; ``/empty``: a 204)."""

    def __init__(self, loop: LoopThread) -> None:
        self.received = bytearray()

        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            buf = b""
            with contextlib.suppress(Exception):
                while True:
                    data = await asyncio.wait_for(reader.read(65536), 5)
                    if not data:
                        return
                    self.received += data
                    buf += data
                    while b"\r\n\r\n" in buf:
                        head, _, rest = buf.partition(b"\r\n\r\n")
                        low = head.lower()
                        if b"transfer-encoding: chunked" in low:
                            if b"0\r\n\r\n" not in rest:
                                break
                            rest = rest.split(b"0\r\n\r\n", 1)[1]
                        elif b"content-length: " in low:
                            n = int(low.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                            if len(rest) < n:
                                break
                            rest = rest[n:]
                        buf = rest
                        path = head.split(b" ", 2)[1]
                        if path.startswith(b"/chunked"):
                            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
                        elif path == b"/trailers":
                            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n2\r\nok\r\n0\r\nx-t: v\r\n\r\n")
                        elif path == b"/mixed":
                            writer.write(b"HTTP/1.1 200 OK\r\nX-MiXed_case-9z: 1\r\n1abc: x\r\na--b.c~d: y\r\nContent-Length: 2\r\n\r\nok")
                        elif path == b"/empty":
                            writer.write(b"HTTP/1.1 204 No Content\r\nx-e: 1\r\n\r\n")
                        else:
                            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        await writer.drain()

        self.server = ScriptedUpstream(loop, script)
        self.port = self.server.port


class Proxy:
    def __init__(self, kind: str, app_port: int) -> None:
        self.ports = {name: free_port() for name in OPTIONS}
        listeners = "".join(
            LISTENER.format(name=name, port=self.ports[name], extra="".join(f"          {line}\n" for line in extra.splitlines()))
            for name, extra in OPTIONS.items()
        )
        text = CONFIG.format(admin=free_port(), listeners=listeners.rstrip("\n"), app=app_port)
        self.proc = ProxyProcess(kind, yaml.safe_load(text)).start()


@pytest.fixture(scope="module")
def pair(loop: LoopThread) -> Iterator[dict[str, tuple[RecordingUpstream, Proxy]]]:
    """Each proxy with an upstream of its own, so that a case runs through both at once."""
    started: dict[str, tuple[RecordingUpstream, Proxy]] = {}
    ups: list[RecordingUpstream] = []
    try:
        for kind in ("envoy", "sluice"):
            up = RecordingUpstream(loop)
            ups.append(up)
            started[kind] = (up, Proxy(kind, up.port))
        yield started
    finally:
        for _up, p in started.values():
            p.proc.stop()
        for up in ups:
            up.server.stop()


VOLATILE = [
    (re.compile(r"(?im)^(x-envoy-upstream-service-time: )\d+"), r"\1<volatile>"),
    (re.compile(r"(?im)^(x-request-id: )[0-9a-f-]+"), r"\1<volatile>"),
]


def _normalise(text: str) -> str:
    for pattern, repl in VOLATILE:
        text = pattern.sub(repl, text)
    return text


def exchange(port: int, data: bytes) -> tuple[str, bool]:
    """Send ``data``; the normalised answer, and whether the proxy closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with contextlib.suppress(OSError):
            parts = data.split(PAUSE)
            for i, part in enumerate(parts):
                if i:
                    time.sleep(PAUSE_S)
                s.sendall(part)
        out = b""
        closed = half_closed = False
        # Up to 1 s for the first byte; once bytes came, 0.15 s of quiet ends the answer (a
        # kept-alive connection stays open).
        s.settimeout(1.0)
        with contextlib.suppress(ConnectionResetError):
            while True:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    closed = True
                    break
                out += chunk
                s.settimeout(1.0 if half_closed else 0.15)
                if not half_closed and b"\r\nconnection: close\r\n" in out.lower():
                    # Envoy delays its close after a "connection: close" answer until the
                    # client closes or a second passes: half-close so that both close now.
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_WR)
                    half_closed = True
                    s.settimeout(1.0)
        return _normalise(normalise_raw(out)), closed


def _hcm_stats(proc: ProxyProcess) -> dict[str, int]:
    return {n: v for n, v in proc.stats().items() if HCM_STATS.search(n)}


def _through(up: RecordingUpstream, proxy: Proxy, listener: str, data: bytes) -> dict[str, Any]:
    before = _hcm_stats(proxy.proc)
    start = len(up.received)
    answer, closed = exchange(proxy.ports[listener], data)
    time.sleep(0.15)  # the stream's stats are written when it is destroyed
    after = _hcm_stats(proxy.proc)
    delta = {n: v - before.get(n, 0) for n, v in after.items() if v != before.get(n, 0)}
    upstream = _normalise(bytes(up.received[start:]).decode("latin-1"))
    return {"answer": answer, "closed": closed, "upstream": upstream, "stats": delta}


@pytest.mark.parametrize(("listener", "data"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_same_answer_forwarding_and_stats_as_envoy(pair: dict[str, tuple[RecordingUpstream, Proxy]], listener: str, data: bytes) -> None:
    # (both proxies at once: the case's waits for quiet overlap)
    with ThreadPoolExecutor(2) as pool:
        futures = {kind: pool.submit(_through, up, proxy, listener, data) for kind, (up, proxy) in pair.items()}
        seen = {kind: f.result() for kind, f in futures.items()}
    assert seen["envoy"]["answer"], "Envoy answered nothing: the case tests nothing"
    for key in ("answer", "closed", "upstream", "stats"):
        assert seen["sluice"][key] == seen["envoy"][key], key
