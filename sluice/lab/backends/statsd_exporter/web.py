"""The exporter's HTTP side, as ``main.go`` serves it: the telemetry path (``/metrics``) in the
text format (gzip when asked, as ``promhttp``), ``/-/healthy`` and ``/-/ready`` (a line on GET),
``/-/reload`` and ``/-/quit`` with ``--web.enable-lifecycle``, and a small HTML page for every
other path (Go's ``/`` pattern). HTTP/1.1 keep-alive; request bodies are read and dropped."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httptools

from sluice.lab.backends.statsd_exporter.exposition import CONTENT_TYPE, render
from sluice.lab.backends.statsd_exporter.registry import Registry

MAX_HEAD = 1 << 20
"""A request line and headers larger than this close the connection."""
IDLE_TIMEOUT = 300.0

_REASONS = {200: "OK", 400: "Bad Request"}


class Web:
    def __init__(self, registry: Registry, *, telemetry_path: str = "/metrics", lifecycle: bool = False) -> None:
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.lifecycle = lifecycle
        self.quit = asyncio.Event()
        self.log: Callable[[str], None] = lambda message: None

    def index(self) -> bytes:
        return (
            "<html>\n\t\t\t<head><title>StatsD Exporter</title></head>\n\t\t\t<body>\n"
            "\t\t\t<h1>StatsD Exporter</h1>\n"
            f'\t\t\t<p><a href="{self.telemetry_path}">Metrics</a></p>\n'
            "\t\t\t</body>\n\t\t\t</html>"
        ).encode()

    def respond(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        if path == self.telemetry_path:
            body = render(self.registry.collect())
            out = [("Content-Type", CONTENT_TYPE)]
            if "gzip" in headers.get("accept-encoding", ""):
                body = gzip.compress(body, compresslevel=1)
                out.append(("Content-Encoding", "gzip"))
            return 200, out, body
        text = "text/plain; charset=utf-8"
        if path == "/-/healthy":
            return 200, [("Content-Type", text)], b"Statsd Exporter is Healthy.\n" if method == "GET" else b""
        if path == "/-/ready":
            return 200, [("Content-Type", text)], b"Statsd Exporter is Ready.\n" if method == "GET" else b""
        if self.lifecycle and path in ("/-/reload", "/-/quit"):
            if method not in ("PUT", "POST"):
                return 200, [("Content-Type", text)], b""
            if path == "/-/quit":
                self.quit.set()
                return 200, [("Content-Type", text)], b"Requesting termination... Goodbye!"
            self.log('level=warn msg="Received lifecycle api reload but no mapping config to reload"')
            return 200, [("Content-Type", text)], b"Requesting reload"
        return 200, [("Content-Type", "text/html; charset=utf-8")], self.index()

    async def serve(self, host: str | None, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _HTTPConnection(self), host, port, reuse_address=True)


class _HTTPConnection(asyncio.Protocol):
    def __init__(self, web: Web) -> None:
        self.web = web
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.head_size = 0
        self.in_head = False
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.transport = None

    def _arm(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._close)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._arm()
        if self.in_head:
            self.head_size += len(data)
            if self.head_size > MAX_HEAD:
                self._close()
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._close()
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"
                )
            self._close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.in_head = True
        self.head_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.in_head = False

    def on_message_complete(self) -> None:
        if self.transport is None:
            return
        method = self.parser.get_method().decode("latin-1")
        try:
            path = httptools.parse_url(self.url).path.decode("latin-1")
        except httptools.HttpParserInvalidURLError:
            path = self.url.decode("latin-1").split("?", 1)[0]
        status, headers, body = self.web.respond(method, path, self.headers)
        keep = self.parser.should_keep_alive()
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
        head += [f"{k}: {v}" for k, v in headers]
        head.append(f"Date: {formatdate(time.time(), usegmt=True)}")
        head.append(f"Content-Length: {len(body)}")
        if not keep:
            head.append("Connection: close")
        self.transport.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + (b"" if method == "HEAD" else body))
        if not keep:
            self.transport.close()
