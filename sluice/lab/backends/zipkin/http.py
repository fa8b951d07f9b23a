"""The HTTP/1.1 side, the shape of the Elasticsearch stand-in's ``web.py`` (an
``asyncio.Protocol`` over httptools; bodies with Content-Length or chunked, as Envoy's Zipkin
reporter sends them; each request handed to the application on the store's thread; answers
written in order, reading paused while too many wait). That module stamps Elasticsearch's product
header on every answer, so this is its product-neutral sibling rather than an import.

Armeria's rules that matter to clients: a body above the maximum request length (10 MiB,
``Flags.defaultMaxRequestLength``) gets ``413 Request Entity Too Large`` and the connection is
closed; a request head httptools refuses gets 400; keep-alive unless the client says ``close``.
"""

from __future__ import annotations

import asyncio
import collections
import http
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

import httptools

MAX_REQUEST_LENGTH = 10 * 1024 * 1024
MAX_QUEUED = 32
IDLE_TIMEOUT = 600.0
DRAIN_SECONDS = 0.005
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


@dataclass(slots=True)
class Request:
    method: str
    path: str
    """Percent-decoded path."""
    query: str
    """The raw query string (without ``?``)."""
    headers: dict[str, str]
    body: bytes
    peer: str = ""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Response]


def text(status: int, message: str) -> Response:
    return Response(status, message.encode(), TEXT)


class HttpServer:
    def __init__(self, handler: Handler, executor: Executor, *, max_request_length: int = MAX_REQUEST_LENGTH,
                 server_header: str | None = None) -> None:
        self.handler = handler
        self.executor = executor
        self.max_request_length = max_request_length
        self.server_header = server_header
        self.connections: set[_Connection] = set()
        self._pending: collections.deque[tuple[_Connection, Request]] = collections.deque()
        self._draining = False

    # Requests go to the store's thread in batches: each hand-off (executor queue, then
    # call_soon_threadsafe back) costs two thread wake-ups and GIL hand-overs — measured at about
    # 250 µs of CPU per request, more than storing 5 spans. One job runs every request waiting
    # (at most one per connection, which keeps answers in order) and hands the answers back at once;
    # it stops taking more after DRAIN_SECONDS so a long search does not hold back earlier answers.

    def _dispatch(self, conn: _Connection, req: Request) -> None:
        self._pending.append((conn, req))
        if not self._draining:
            self._draining = True
            fut = asyncio.get_running_loop().run_in_executor(self.executor, self._drain)
            fut.add_done_callback(self._drained)

    def _drain(self) -> list[tuple[_Connection, Request, Response | BaseException]]:
        """On the store's thread: run waiting requests (deque pops are atomic under the GIL)."""
        out: list[tuple[_Connection, Request, Response | BaseException]] = []
        started = time.monotonic()
        while self._pending and time.monotonic() - started < DRAIN_SECONDS:
            conn, req = self._pending.popleft()
            try:
                out.append((conn, req, self.handler(req)))
            except BaseException as exc:  # as the executor's future would carry it
                out.append((conn, req, exc))
        return out

    def _drained(self, fut: asyncio.Future[list[tuple[_Connection, Request, Response | BaseException]]]) -> None:
        self._draining = False
        exc = fut.exception()
        if exc is not None:  # the job itself failed (the handler's errors are in the list): the loop logs it
            raise exc
        for conn, req, result in fut.result():
            conn._done(req, result)
        if self._pending:
            # what arrived after the job's last look (appends happen only on this thread)
            self._draining = True
            again = asyncio.get_running_loop().run_in_executor(self.executor, self._drain)
            again.add_done_callback(self._drained)

    async def listen(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True, backlog=1024)

    def close_connections(self) -> None:
        for conn in list(self.connections):
            conn.close()


def render_head(status: int, headers: list[tuple[str, str]], length: int, keep_alive: bool) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    if status == 413:
        reason = "Request Entity Too Large"  # Armeria's (and Go's) wording, not RFC 9110's
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    lines.append(f"date: {formatdate(time.time(), usegmt=True)}")
    lines.append(f"content-length: {length}")
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "parser", "transport", "url", "headers", "body", "size", "queue", "busy", "closing", "idle",
                 "paused", "peer", "keep")

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
        self.peer = ""
        self.keep = True
        """Keep-alive of the request being handled."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
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
            self.close()
        except httptools.HttpParserError:
            self._fail(400, b"400 Bad Request")

    # --- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {val}" if key in self.headers else val

    def on_headers_complete(self) -> None:
        length = self.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.server.max_request_length:
            self._fail(413, b"413 Request Entity Too Large")
            return
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.closing:
            return
        self.size += len(body)
        if self.size > self.server.max_request_length:
            self._fail(413, b"413 Request Entity Too Large")
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.transport is None or self.closing:
            return
        method = self.parser.get_method().decode("latin-1")
        try:
            url = httptools.parse_url(self.url)
            path = (url.path or b"/").decode("latin-1")
            query = (url.query or b"").decode("latin-1")
        except httptools.HttpParserInvalidURLError:
            self._fail(400, b"400 Bad Request")
            return
        req = Request(method, unquote(path), query, self.headers, b"".join(self.body), self.peer)
        self.queue.append((req, self.parser.should_keep_alive()))
        if len(self.queue) > MAX_QUEUED and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._pump()

    # --- dispatch ------------------------------------------------------------------------------------

    def _pump(self) -> None:
        if self.busy or not self.queue or self.transport is None:
            return
        self.busy = True
        req, self.keep = self.queue.popleft()
        self.server._dispatch(self, req)

    def _done(self, req: Request, result: Response | BaseException) -> None:
        self.busy = False
        if self.transport is None:
            return
        keep = self.keep
        resp = text(500, f"{type(result).__name__}: {result}") if isinstance(result, BaseException) else result
        headers = list(resp.headers)
        if resp.content_type is not None:
            headers.insert(0, ("content-type", resp.content_type))
        if self.server.server_header:
            headers.append(("server", self.server.server_header))
        head = render_head(resp.status, headers, len(resp.body), keep)
        self.transport.write(head if req.method == "HEAD" else head + resp.body)
        if not keep:
            self.close()
            return
        if self.paused and len(self.queue) <= MAX_QUEUED // 2:
            self.paused = False
            self.transport.resume_reading()
        self._pump()

    def _fail(self, status: int, body: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(render_head(status, [("content-type", TEXT)], len(body), False) + body)
        self.close()

    def _arm(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self.close)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()
