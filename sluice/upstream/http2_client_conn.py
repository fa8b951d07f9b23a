"""One HTTP/2 connection to an upstream host and its streams (Envoy's ``Http2::ActiveClient``
over a ``CodecClient``).

Towards the pool the connection reports its capacity: ``available_streams`` is the lower of the
peer's MAX_CONCURRENT_STREAMS and the cluster's ``max_concurrent_streams``, less the streams
open, and 0 once it drains (a GOAWAY from the peer, ``max_requests_per_connection`` reached, the
host removed) or closed. Each request gets an :class:`Http2Stream`, the router's upstream stream
(``encode_headers/encode_data/encode_trailers/reset``, the same calls as HTTP/1's connection).

The codec (``sluice/codec/http2_client.py``) is sans I/O: every entry point here ends with
:meth:`Http2Connection.flush`, one ``write`` of whatever the codec queued.

Resets are counted as Envoy's ``MultiplexedActiveClientBase::onStreamReset`` counts them: a
remote reset is ``upstream_rq_rx_reset``, a local one (or a protocol error) ``upstream_rq_tx_reset``,
a cut connection ``upstream_rq_pending_failure_eject``; refused streams count nothing there.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, cast

from sluice import logs
from sluice.clock import REAL
from sluice.codec import http2_client
from sluice.codec.http2 import LOCAL_RESET, REMOTE_RESET

if TYPE_CHECKING:
    from sluice.http.headers import HeaderMap, RequestHeaders
    from sluice.upstream.conn_pool import HostPool, ResponseHandler

log = logging.getLogger("sluice.upstream")

UNLIMITED = 1 << 62
WRITE_HIGH_WATERMARK = 1 << 20
"""Request body held for lack of window before the downstream is paused (Envoy's per-stream
buffer limit is the stream window; 1 MiB keeps Sluice's memory bounded the same way HTTP/1 does)."""


class Http2Stream:
    """One request on an :class:`Http2Connection` (the upstream stream the router writes to)."""

    __slots__ = ("conn", "handler", "stream_id", "rq_counted", "request_done", "response_done", "done", "paused")

    multiplexed = True
    protocol = "HTTP/2"

    def __init__(self, conn: Http2Connection, handler: ResponseHandler) -> None:
        self.conn = conn
        self.handler: ResponseHandler | None = handler
        self.stream_id = 0
        """0 until the HEADERS go (stream ids must be sent in increasing order)."""
        self.rq_counted = False
        self.request_done = False
        self.response_done = False
        self.done = False
        self.paused = False
        """The request body is held for window: the downstream was told to pause."""

    def __repr__(self) -> str:
        return f"<Http2Stream {self.conn.pool.host.address} #{self.stream_id} done={self.done}>"

    @property
    def local_address(self) -> tuple[str, int] | None:
        return self.conn.local_address

    @property
    def cid(self) -> int:
        return self.conn.cid

    # -- the router's calls -------------------------------------------------------------
    def encode_headers(self, headers: RequestHeaders, end_stream: bool, upgrade: bool = False, body: bytes = b"") -> None:
        conn = self.conn
        codec = conn.codec
        if self.done or conn.closed:
            return
        conn.unsent -= 1
        self.stream_id = codec.new_stream(self)
        codec.encode_headers(self.stream_id, headers, end_stream and not body)
        if body:
            codec.encode_data(self.stream_id, body, end_stream)
        if end_stream:
            self.request_done = True
        conn.flush()
        self._check_writable()
        self._maybe_done()

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        if self.done or self.request_done or not self.stream_id:
            return
        self.conn.codec.encode_data(self.stream_id, data, end_stream)
        if end_stream:
            self.request_done = True
        self.conn.flush()
        self._check_writable()
        self._maybe_done()

    def encode_trailers(self, trailers: HeaderMap) -> None:
        if self.done or self.request_done or not self.stream_id:
            return
        self.conn.codec.encode_trailers(self.stream_id, trailers)
        self.request_done = True
        self.conn.flush()
        self._maybe_done()

    def reset(self) -> None:
        """A local reset (timeout, downstream reset): RST_STREAM, the connection stays."""
        if self.done:
            return
        self.handler = None
        if self.stream_id:
            self.conn.codec.reset_stream(self.stream_id)
            self.conn.pool.stats.upstream_rq_tx_reset.inc()
            self.conn.flush()
        self._end()

    def release_unused(self) -> None:
        self.handler = None
        self.conn.requests -= 1
        self._end()

    def pause_reading(self) -> None:
        if self.stream_id and not self.done:
            self.conn.codec.read_disable(self.stream_id, True)

    def resume_reading(self) -> None:
        if self.stream_id and not self.done:
            self.conn.codec.read_disable(self.stream_id, False)
            self.conn.flush()

    # -- codec callbacks (ResponseDecoder) ----------------------------------------------
    def on_response_informational(self, status: int, headers: list[list[str]]) -> None:
        if self.handler is not None:
            self.handler.on_response_informational(status)

    def on_response_headers(self, status: int, headers: list[list[str]], end_stream: bool) -> None:
        handler = self.handler
        if end_stream:
            self.response_done = True
        if handler is not None:
            handler.on_response_headers(status, headers, end_stream)
        if end_stream:
            self._maybe_done()

    def on_response_data(self, data: bytes, end_stream: bool) -> None:
        handler = self.handler
        if end_stream:
            self.response_done = True
        if handler is not None:
            handler.on_response_data(data, end_stream)
        if end_stream:
            self._maybe_done()

    def on_response_trailers(self, trailers: HeaderMap) -> None:
        self.response_done = True
        handler = self.handler
        if handler is not None:
            on_trailers = getattr(handler, "on_response_trailers", None)
            if on_trailers is not None:
                on_trailers(trailers)
            else:
                handler.on_response_data(b"", True)
        self._maybe_done()

    def on_reset(self, reason: str) -> None:
        if self.done:
            return
        st = self.conn.pool.stats
        if reason == REMOTE_RESET:
            st.upstream_rq_rx_reset.inc()
        elif reason in (LOCAL_RESET, http2_client.PROTOCOL_ERROR):
            st.upstream_rq_tx_reset.inc()
        elif reason == http2_client.CONNECTION_TERMINATION:
            st.upstream_rq_pending_failure_eject.inc()
        handler = self.handler
        self.handler = None
        self._end()
        if handler is not None:
            handler.on_upstream_reset(reason)

    # -- internals ----------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.handler is None or not self.stream_id:
            return
        held = self.conn.codec.buffered_bytes(self.stream_id)
        if not self.paused and held > WRITE_HIGH_WATERMARK:
            self.paused = True
            self.handler.on_upstream_writable(False)
        elif self.paused and held <= WRITE_HIGH_WATERMARK // 2:
            self.paused = False
            self.handler.on_upstream_writable(True)

    def _maybe_done(self) -> None:
        if self.request_done and self.response_done and not self.done:
            self.handler = None
            self._end()

    def _end(self) -> None:
        if self.done:
            return
        self.done = True
        self.conn.on_stream_done(self)


class Http2Connection(asyncio.Protocol):
    """One HTTP/2 connection (see the module docstring)."""

    __slots__ = (
        "pool", "transport", "codec", "streams", "closed", "created", "requests", "remaining_requests",
        "rq_counted", "draining", "idle_since", "unsent", "dispatching", "local_address", "cid",
    )  # fmt: skip

    multiplexed = True
    protocol = "HTTP/2"

    def __init__(self, pool: HostPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.codec = http2_client.ClientCodec(self, pool.options.http2, pool.http2_stats)
        self.streams: set[Http2Stream] = set()
        self.local_address: tuple[str, int] | None = None
        self.cid = next(logs.connection_ids)
        self.closed = False
        self.dispatching = False
        """Inside ``codec.feed`` (the events of one read are being handed out)."""
        self.created = REAL.monotonic()
        self.requests = 0
        limit = pool.options.max_requests_per_connection
        self.remaining_requests = limit or UNLIMITED
        self.rq_counted = False  # (the pool's breaker slots are per stream: never set here)
        self.draining = False
        self.idle_since = 0.0
        self.unsent = 0
        """Streams assigned whose HEADERS have not been encoded yet."""

    def __repr__(self) -> str:
        state = "closed" if self.closed else "draining" if self.draining else "open"
        return f"<Http2Connection {self.pool.host.address} {state} streams={len(self.streams)}>"

    # -- the pool's view ----------------------------------------------------------------
    @property
    def available_streams(self) -> int:
        if self.closed or self.draining or self.transport is None:
            return 0
        # (Streams assigned whose HEADERS are not out yet hold capacity the codec cannot see.)
        return max(0, min(self.codec.available_streams - self.unsent, self.remaining_requests))

    @property
    def active_streams(self) -> int:
        return len(self.streams)

    @property
    def is_open(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def mark_closed(self) -> None:
        self.closed = True

    def new_stream(self, handler: ResponseHandler) -> Http2Stream:
        stream = Http2Stream(self, handler)
        self.streams.add(stream)
        self.unsent += 1
        self.requests += 1
        self.remaining_requests -= 1
        return stream

    def on_stream_done(self, stream: Http2Stream) -> None:
        self.streams.discard(stream)
        if not stream.stream_id:
            self.unsent -= 1
        self.pool.release(self, stream)  # (also on a closed connection: it frees the breaker slot)

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.pool.stats.upstream_cx_rx_bytes_buffered.used = True
        name = transport.get_extra_info("sockname")
        self.local_address = (name[0], name[1]) if name else None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.flush()  # the preface and our SETTINGS

    def data_received(self, data: bytes) -> None:
        self.pool.stats.upstream_cx_rx_bytes_total.inc(len(data))
        if self.closed:
            return
        self.dispatching = True
        try:
            error = self.codec.feed(data)
        except Exception:  # noqa: BLE001 - a bug must not take the process down
            log.exception("internal error on an upstream HTTP/2 connection")
            self._close(local=True)
            return
        finally:
            self.dispatching = False
        if self.closed:
            return  # (closed by an event of this read: counted in close())
        self.flush()
        if error is not None:
            self.pool.stats.upstream_cx_protocol_error.inc()
            self._close(local=True)
            return
        for stream in list(self.streams):
            if stream.paused:
                stream._check_writable()
        if self.codec.available_streams and self.pool.waiters:
            # The peer's SETTINGS (or a window) may have changed the capacity.
            self.pool.release(self, None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            self.pool.on_connection_closed(self, local=False, active=False)
            return
        self.closed = True
        self.pool.on_connection_closed(self, local=False, active=bool(self.streams))
        self._cut_streams()

    def pause_writing(self) -> None:
        for s in list(self.streams):
            if s.handler is not None:
                s.handler.on_upstream_writable(False)

    def resume_writing(self) -> None:
        for s in list(self.streams):
            if s.handler is not None:
                s.handler.on_upstream_writable(True)

    # -- codec callbacks ----------------------------------------------------------------
    def on_goaway(self, last_stream_id: int, error_code: int) -> None:
        # Envoy's onGoAway: close_notify, then drain (close now if no stream is left).
        self.pool.stats.upstream_cx_close_notify.inc()
        self.draining = True
        if not self.streams or error_code:
            self._close(local=True)
        else:
            self.pool.release(self, None)

    # -- I/O ----------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.codec.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.pool.stats.upstream_cx_tx_bytes_total.inc(len(data))
            self.transport.write(data)

    def close(self) -> None:
        if self.closed:
            return
        if self.dispatching:
            # As Envoy counts it: a connection closed by the events of the read being dispatched
            # (a draining connection whose last stream just ended, e.g. at
            # max_requests_per_connection) makes its codec return "Connection was closed while
            # dispatching frames", and codec_client counts that as upstream_cx_protocol_error.
            self.pool.stats.upstream_cx_protocol_error.inc()
        self.codec.goaway()
        self.flush()
        self._close(local=True)

    def _close(self, local: bool) -> None:
        if self.closed or self.transport is None:
            return
        self.closed = True
        self.transport.close()
        self.pool.on_connection_closed(self, local=local, active=bool(self.streams))
        self._cut_streams()

    def _cut_streams(self) -> None:
        """Every stream still open ends with ``connection termination`` (those whose HEADERS
        were not sent yet too: the codec does not know them)."""
        self.codec.connection_lost()
        for s in list(self.streams):
            s.on_reset(http2_client.CONNECTION_TERMINATION)
        self.streams = set()
