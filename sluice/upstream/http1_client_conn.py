"""One HTTP/1.1 connection to an upstream host, and its one upstream stream.

The response rules are the codec's (``sluice/codec/http1_client.py``); this class is the I/O,
the accounting and both sides of the pool's interface: towards the pool a client connection
that reports its capacity (``available_streams`` is 1 while idle, ``remaining_requests`` counts
down ``max_requests_per_connection``), towards the router the upstream stream of its current
request (``encode_headers/encode_data/encode_trailers/reset``): HTTP/1.1 carries one request at
a time, so the connection *is* the stream (no object per request on the hot path).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, cast

from sluice import logs
from sluice.clock import REAL
from sluice.codec.http1_client import ClientCodec
from sluice.http import http1

if TYPE_CHECKING:
    from sluice.http.headers import HeaderMap, RequestHeaders
    from sluice.upstream.conn_pool import HostPool, ResponseHandler

log = logging.getLogger("sluice.upstream")

UNLIMITED = 1 << 62


class UpstreamConnection(asyncio.Protocol):
    """One HTTP/1.1 connection (see the module docstring)."""

    __slots__ = (
        "pool",
        "transport",
        "codec",
        "handler",
        "_keep_alive",
        "_request_done",
        "_response_done",
        "_closed",
        "_chunked",
        "created",
        "requests",
        "remaining_requests",
        "rq_counted",
        "draining",
        "idle_since",
        "local_address",
        "cid",
    )

    multiplexed = False
    protocol = "HTTP/1.1"

    def __init__(self, pool: HostPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.codec = ClientCodec(self)
        self.handler: ResponseHandler | None = None
        self._keep_alive = True
        self._request_done = False
        self._response_done = False
        self._closed = False
        self._chunked = False
        self.created = REAL.monotonic()
        self.requests = 0
        limit = pool.options.max_requests_per_connection
        self.remaining_requests = limit or UNLIMITED
        """``max_requests_per_connection`` left (Envoy's ``remaining_streams_``)."""
        self.rq_counted = False
        """This connection's request holds a ``max_requests`` circuit-breaker slot."""
        self.draining = False
        """No new request: it closes once the current one is done."""
        self.idle_since = 0.0
        self.local_address: tuple[str, int] | None = None
        """This connection's own end (``%UPSTREAM_LOCAL_ADDRESS%``)."""
        self.cid = next(logs.connection_ids)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("busy" if self.handler else "draining" if self.draining else "idle")
        return f"<UpstreamConnection {self.pool.host.address} {state}>"

    # -- the pool's view ----------------------------------------------------------------
    @property
    def available_streams(self) -> int:
        return 0 if self.handler is not None or self.draining or not self.is_open else 1

    @property
    def active_streams(self) -> int:
        return 0 if self.handler is None else 1

    @property
    def is_open(self) -> bool:
        return not self._closed and self.transport is not None and not self.transport.is_closing()

    def mark_closed(self) -> None:
        """Its transport is closing (the upstream's FIN was read) before ``connection_lost``."""
        self._closed = True

    def new_stream(self, handler: ResponseHandler) -> UpstreamConnection:
        """Bind a request (the pool's assignment): the connection is its stream."""
        self.handler = handler
        self.requests += 1
        self.remaining_requests -= 1
        self._request_done = False
        self._response_done = False
        self._keep_alive = True
        return self

    def release_unused(self) -> None:
        """The request given this connection had already gone: nothing was written."""
        self.handler = None
        self.requests -= 1
        self.remaining_requests += 1
        self.pool.release(self)

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses (no isinstance check).
        self.transport = cast(asyncio.Transport, transport)
        # Envoy accounts each read buffer's bytes in this gauge, which marks it used.
        self.pool.stats.upstream_cx_rx_bytes_buffered.used = True
        name = transport.get_extra_info("sockname")
        self.local_address = (name[0], name[1]) if name else None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        self.pool.stats.upstream_cx_rx_bytes_total.inc(len(data))
        if self._closed:
            return
        try:
            error = self.codec.feed(data)
        except Exception:  # noqa: BLE001 - a bug must not take the process down
            log.exception("internal error on an upstream connection")
            self._fail("internal error")
            return
        if error is not None:
            # Also bytes with no request outstanding (a second response after a complete one,
            # a HEAD response's body): Envoy's codec refuses them and closes the connection.
            self.pool.stats.upstream_cx_protocol_error.inc()
            self._fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            # (After a local close the pool has already let the connection go: nothing to count.)
            self.pool.on_connection_closed(self, local=False, active=False)
            return
        self._closed = True
        codec = self.codec
        waiting = self.handler is not None and not self._response_done
        # A body delimited by the close is complete now: no request was active at the close.
        self.pool.on_connection_closed(self, local=False, active=waiting and not codec.until_close)
        error = codec.eof() if waiting else None
        if error is not None:
            # A close with part of a response read (a truncated head or body): Envoy counts a
            # protocol error, answers 502 before the response started, resets after.
            self.pool.stats.upstream_cx_protocol_error.inc()
            self._fail(error)
        elif self.handler is not None and not self._response_done:
            self._fail("connection termination")

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.on_upstream_writable(False)

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.on_upstream_writable(True)

    # -- codec callbacks ----------------------------------------------------------------
    def on_informational(self, status: int, headers: list[list[str]]) -> None:
        if self.handler is not None:
            self.handler.on_response_informational(status)

    def on_headers(self, status: int, headers: list[list[str]], end_stream: bool) -> None:
        codec = self.codec
        self._keep_alive = codec.keep_alive
        if codec.close_notify:
            self.pool.stats.upstream_cx_close_notify.inc()
        handler = self.handler
        if end_stream:
            self._response_done = True
        if handler is not None:
            handler.on_response_headers(status, headers, end_stream)
        if end_stream:
            self._finish()

    def on_body(self, data: bytes, end_stream: bool) -> None:
        handler = self.handler
        if end_stream:
            self._response_done = True
            if handler is not None:
                handler.on_response_data(data, True)
            self._finish()
        elif handler is not None:
            handler.on_response_data(data, False)

    # -- the upstream stream (used by the router) ---------------------------------------
    def encode_headers(self, headers: RequestHeaders, end_stream: bool, upgrade: bool = False, body: bytes = b"") -> None:
        """The request head, with ``body`` (what arrived before the connection) in the same
        write; ``end_stream`` ends the request after it."""
        self.codec.expect(headers.method == "HEAD", upgrade)
        head, self._chunked = http1.encode_request_head(headers, end_stream and not body, upgrade)
        if body:
            if self._chunked:
                out = head + http1.encode_chunk(body)
                self.write(out + http1.LAST_CHUNK if end_stream else out)
            else:
                self.write(head + body)
        else:
            self.write(head)
        if end_stream:
            self.request_complete()

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        if self._request_done:
            return
        if self._chunked:
            out = http1.encode_chunk(data) if data else b""
            if end_stream:
                out += http1.LAST_CHUNK
            if out:
                self.write(out)
        elif data:
            self.write(data)
        if end_stream:
            self.request_complete()

    def encode_trailers(self, trailers: HeaderMap) -> None:
        # Envoy's HTTP/1 codec sends request trailers only with ``enable_trailers`` (refused in
        # config as not implemented): the body ends, the trailers are dropped.
        self.encode_data(b"", True)

    def reset(self) -> None:
        """The request gave up on this connection (timeout, downstream reset): it cannot be
        reused."""
        self.handler = None
        self._close(active=True)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._closed:
            self.pool.stats.upstream_cx_tx_bytes_total.inc(len(data))
            self.transport.write(data)

    def request_complete(self) -> None:
        self._request_done = True
        if self._response_done:
            self._finish()

    def close(self) -> None:
        self._close(active=self.handler is not None)

    def _close(self, active: bool) -> None:
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()
            self.pool.on_connection_closed(self, local=True, active=active)

    def pause_reading(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def _finish(self) -> None:
        if not (self._response_done and self._request_done):
            return
        self.handler = None
        if self._keep_alive and self.is_open:
            # The finished request's back-pressure may have paused reading (its whole response
            # arrived in the read that crossed a high watermark): a pooled connection reads.
            self.resume_reading()
            self.pool.release(self)
        else:
            self.close()

    def _fail(self, reason: str) -> None:
        handler = self.handler
        active = handler is not None and not self._response_done
        self.handler = None
        self._close(active=active)
        if handler is not None:
            handler.on_upstream_reset(reason)
