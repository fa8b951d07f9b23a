"""The HTTP/1.1 side: an ``asyncio.Protocol`` over httptools that reads requests (bodies with
Content-Length or chunked, ``Expect: 100-continue``), hands each to the application in a thread
pool and writes the answers in order (pipelined requests wait their turn; reading pauses while
too many are queued). The event loop itself never touches SQLite, so a long aggregation or a
large bulk never stalls other connections.

Rules ES's Netty transport applies here too: ``http.max_content_length`` (100mb: a larger body
gets 413 and the connection is closed), keep-alive unless the client says ``close``, and every
answer carries ``X-elastic-product: Elasticsearch``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import http
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import httptools

PRODUCT_HEADER = ("X-elastic-product", "Elasticsearch")
MAX_QUEUED = 32
IDLE_TIMEOUT = 600.0


@dataclass(slots=True)
class Request:
    method: str
    target: str
    """The request target as sent (path and query, percent-encoded)."""
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=UTF-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Response]


class HttpServer:
    def __init__(self, handler: Handler, executor: Executor, *, max_content_length: int = 100 * 1024 * 1024) -> None:
        self.handler = handler
        self.executor = executor
        self.max_content_length = max_content_length
        self.connections: set[_Connection] = set()

    async def listen(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True, backlog=1024)


def render_head(status: int, headers: list[tuple[str, str]], length: int, keep_alive: bool) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"content-length: {length}")
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "parser", "transport", "url", "headers", "body", "size", "queue", "busy", "closing", "idle", "paused")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.queue: collections.deque[tuple[Request, bool]] = collections.deque()
        self.busy = False
        self.closing = False
        self.paused = False
        self.idle: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections.add(self)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        self.transport = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        self._arm()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._close()
        except httptools.HttpParserError:
            self._fail(400, b'{"error":"bad request","status":400}')

    # --- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        length = self.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.server.max_content_length:
            self._fail(413, b"")
            return
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.server.max_content_length:
            self._fail(413, b"")
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.transport is None or self.closing:
            return
        method = self.parser.get_method().decode("latin-1")
        req = Request(method, self.url.decode("latin-1"), self.headers, b"".join(self.body))
        self.queue.append((req, self.parser.should_keep_alive()))
        if len(self.queue) > MAX_QUEUED and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._pump()

    # --- dispatch ---------------------------------------------------------------------------------

    def _pump(self) -> None:
        if self.busy or not self.queue or self.transport is None:
            return
        self.busy = True
        req, keep = self.queue.popleft()
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.server.executor, self.server.handler, req)
        fut.add_done_callback(functools.partial(self._done, req=req, keep=keep))

    def _done(self, fut: asyncio.Future[Response], *, req: Request, keep: bool) -> None:
        self.busy = False
        if self.transport is None:
            return
        exc = fut.exception()
        if exc is not None:
            resp = Response(500, b'{"error":"internal server error","status":500}')
        else:
            resp = fut.result()
        headers = [PRODUCT_HEADER, ("content-type", resp.content_type), *resp.headers]
        head = render_head(resp.status, headers, len(resp.body), keep)
        self.transport.write(head if req.method == "HEAD" else head + resp.body)
        if not keep:
            self._close()
            return
        if self.paused and len(self.queue) <= MAX_QUEUED // 2:
            self.paused = False
            self.transport.resume_reading()
        self._pump()

    # --- helpers ----------------------------------------------------------------------------------

    def close_now(self) -> None:
        self._close()

    def _fail(self, status: int, body: bytes) -> None:
        if self.transport is not None and not self.closing:
            head = render_head(status, [PRODUCT_HEADER, ("content-type", "application/json; charset=UTF-8")], len(body), False)
            self.transport.write(head + body)
        self._close()

    def _arm(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._close)

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()
