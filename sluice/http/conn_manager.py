"""The HTTP connection manager (Envoy's HCM): one :class:`ConnectionManager` per downstream
connection, one :class:`~sluice.http.active_stream.ActiveStream` per request.

Theory of operation:
- The connection (:mod:`sluice.network.connection`) hands every read to ``on_data``. With the
  first bytes the codec is chosen as Envoy's ``codec_type`` says: AUTO takes HTTP/2 when the
  bytes start with the connection preface's ``PRI * HTTP/2`` (h2c with prior knowledge; Envoy's
  ``determineNextProtocol``), HTTP/1 otherwise; HTTP1/HTTP2 force one. The per-protocol
  connection stats (``downstream_cx_http1_*``/``downstream_cx_http2_*``) are counted then.
- The codec calls ``new_stream`` with the request headers; the stream checks, mutates and runs
  the filters. HTTP/1 serves one request at a time: a pipelined request waits, its bytes queued,
  until the previous response is complete; a request the codec refuses comes back as a
  ``CodecError`` and is answered with Envoy's local reply, ``connection: close``. HTTP/2 streams
  run concurrently (keyed by stream id); their responses go to the HTTP/2 codec, whose frames
  are pulled by the connection at each flush. A codec error on HTTP/2 is the codec's GOAWAY,
  then the connection closes (``downstream_cx_protocol_error``), resetting its streams.
- Connection timers are here (Envoy's): ``idle_timeout`` (drain, then close), the drain timer,
  ``request_headers_timeout``. Draining an HTTP/2 connection sends GOAWAY.
- Back-pressure: when the client stops reading (the transport's write buffer, or for HTTP/2 a
  stream's send window), the affected streams' watermark callbacks hear it (the router pauses
  its upstream); a stream whose upstream is backed up disables reading (HTTP/1: the connection;
  HTTP/2: that stream's window stays closed).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from h2.errors import ErrorCodes

from sluice import logs
from sluice.codec import http1 as http1_codec
from sluice.codec import http2 as http2_codec
from sluice.http import debug_log
from sluice.http.active_stream import ActiveStream
from sluice.http.hcm_config import (
    HcmConfig,
    header_limits,
    http1_settings,
    http2_settings,
    internal_networks,
    path_options,
)
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.http.stream_info import ResponseFlag, StreamInfo
from sluice.network.connection import Connection

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ActiveStream",
    "ConnectionManager",
    "DownstreamConnection",
    "HcmConfig",
    "header_limits",
    "http1_settings",
    "http2_settings",
    "internal_networks",
    "make_connection",
    "path_options",
]

log = logging.getLogger("sluice.http")

H2_PREFIX = b"PRI * HTTP/2"
"""Envoy's ``Http2::CLIENT_MAGIC_PREFIX``: what AUTO looks for in the first bytes."""


class DownstreamConnection(Connection):
    """A downstream connection served by a :class:`ConnectionManager` for ``config``."""

    __slots__ = ()

    def __init__(self, config: HcmConfig, on_close: Callable[[DownstreamConnection], None] | None = None) -> None:
        super().__init__(lambda c: ConnectionManager(c, config), cast("Callable[[Connection], None] | None", on_close), config.call_soon)


def make_connection(config: HcmConfig, on_close: Callable[[DownstreamConnection], None] | None = None) -> DownstreamConnection:
    """A downstream connection whose handler is a connection manager for ``config``."""
    return DownstreamConnection(config, on_close)


class ConnectionManager:
    """One downstream connection's HTTP: its codec, its streams, its timers."""

    __slots__ = (
        "config", "connection", "remote", "local", "cid", "codec", "h2", "stream", "pending",
        "streams", "_deferred_error", "_created", "msg_begin", "_hdr_timer", "_idle_timer",
        "_idle_since", "draining", "_closing", "_backed_up", "_h2_high", "_end_resets", "rx", "tx", "cx_protocol",
        "cx_protocol_error", "_delay_timer",
    )  # fmt: skip

    def __init__(self, connection: Connection, config: HcmConfig) -> None:
        self.config = config
        self.connection = connection
        self.remote: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.cid = connection.cid
        self.codec: http1_codec.ServerCodec | None = None
        """The HTTP/1 codec (None before the first bytes, and on HTTP/2)."""
        self.h2: http2_codec.ServerCodec | None = None
        """The HTTP/2 codec, when the connection speaks HTTP/2."""
        self._deferred_error: http1_codec.CodecError | None = None
        """A refused pipelined request, answered once the requests before it are."""
        self.stream: ActiveStream | None = None
        """HTTP/1: the request being served."""
        self.pending: list[ActiveStream] = []
        """HTTP/1: pipelined requests waiting for it."""
        self.streams: dict[int, ActiveStream] = {}
        """HTTP/2: the open streams by id."""
        self._closing = False
        self._created = config.clock.monotonic()
        self.msg_begin = 0.0
        """When the current request's first byte arrived (only kept when timers need it)."""
        self._hdr_timer: Any = None
        self._idle_timer: Any = None
        self._idle_since = self._created
        self.draining = False
        """Draining after an idle timeout: responses carry ``connection: close``."""
        self._backed_up: set[ActiveStream] = set()
        """HTTP/2 streams told the client is not reading (above the stream's high watermark)."""
        self._h2_high = 0
        self._end_resets: list[int] | None = None
        """doEndStream resets waiting for the flush (HTTP/2)."""
        self.rx = self.tx = 0
        """The connection's bytes in and out (its own record, for listener access logs)."""
        self.cx_protocol = ""
        """The connection's protocol, known after the first read the codec accepted (Envoy's onData)."""
        self.cx_protocol_error = False
        self._delay_timer: Any = None

    def __repr__(self) -> str:
        proto = "h2" if self.h2 is not None else "http/1.1" if self.codec is not None else "-"
        return f"<ConnectionManager {self.cid} {proto} streams={len(self.streams) or int(self.stream is not None)}>"

    # -- connection events ----------------------------------------------------------------
    def on_connected(self) -> None:
        c = self.connection
        self.remote, self.local = c.remote, c.local
        st = self.config.stats
        st.downstream_cx_total.inc()
        st.downstream_cx_active.inc()
        idle = self.config.idle_timeout
        if idle > 0:
            self._idle_timer = self.config.call_later(idle, self._on_idle_check)
        if logs.http_debug:
            debug_log.new_connection(self)

    def on_data(self, data: bytes) -> None:
        st = self.config.stats
        st.downstream_cx_rx_bytes_total.inc(len(data))
        self.rx += len(data)
        if self.codec is None and self.h2 is None:
            self._create_codec(data)
        if self._closing:
            return
        h2 = self.h2
        if h2 is not None:
            self._feed_h2(h2, data)
            if not self.cx_protocol and not self.cx_protocol_error:
                self.cx_protocol = "HTTP/2"
            return
        codec = self.codec
        assert codec is not None
        try:
            error = codec.feed(data)
        except http1_codec.InternalError as exc:
            # A bug of ours raised inside a codec callback: never let it take the process
            # down; drop this connection and keep serving the others.
            log.error("internal error on a downstream connection: %s", exc, exc_info=exc.__cause__)
            self.reset()
            return
        except Exception:  # noqa: BLE001 - same: one connection's failure stays local
            log.exception("internal error on a downstream connection")
            self.reset()
            return
        if error is not None:
            if codec.in_message is None and (self.stream is not None or self.pending):
                # Pipelined after requests still being served: Envoy's codec parses one
                # request at a time, so it answers those first and then refuses this one.
                self._deferred_error = error
                return
            self._protocol_error(error)
        elif not self.cx_protocol:
            stream = self.stream
            self.cx_protocol = stream.stream_info.protocol if stream is not None else "HTTP/1.1"

    def _create_codec(self, data: bytes) -> None:
        # Envoy (codec_type AUTO) creates the codec, and counts the connection's protocol, when
        # the first bytes arrive: a connection that never sends any has neither.
        cfg = self.config
        st = cfg.stats
        # The codec's read buffer accounts its bytes in this gauge (used from then on).
        st.downstream_cx_rx_bytes_buffered.used = True
        kind = cfg.codec_type
        if kind == "HTTP2" or (kind == "AUTO" and data.startswith(H2_PREFIX)):
            st.downstream_cx_http2_total.inc()
            st.downstream_cx_http2_active.inc()
            settings = cfg.http2_settings
            self.h2 = http2_codec.ServerCodec(self, settings, cfg.http2_stats)
            # Envoy's per-stream buffer limit is the stream window; the low watermark half of it.
            self._h2_high = settings.initial_stream_window_size
            self.connection.pull = self._pull_h2
            self.connection.want_flush()  # (the server preface: SETTINGS, WINDOW_UPDATE)
            return
        st.downstream_cx_http1_total.inc()
        st.downstream_cx_http1_active.inc()
        codec = self.codec = http1_codec.ServerCodec(
            self, cfg.max_headers_bytes, cfg.max_headers_count, cfg.http1_settings, cfg.codec_stats
        )
        codec.notify_begin = cfg.begin_timers

    def on_connection_closed(self) -> None:
        st = self.config.stats
        st.downstream_cx_active.dec()
        if self.h2 is not None:
            st.downstream_cx_http2_active.dec()
        elif self.codec is not None:
            st.downstream_cx_http1_active.dec()
        st.downstream_cx_destroy.inc()
        streams = ([self.stream] if self.stream else []) + self.pending + list(self.streams.values())
        codec = self.codec
        if not streams and not self._closing and codec is not None and self._message_begun(codec):
            # Envoy's parser began a request at its first byte, and the connection manager a
            # stream for it: the client's close resets it (logged 0 DC, counted), as any open
            # stream. (A connection Sluice closes was closing in Envoy before it read more.)
            stream = ActiveStream(self, RequestHeaders("GET", "/", None, [], "http", "1.1"), False)
            stream.headerless = True
            stream.begin_counted()
            streams.append(stream)
        if streams and not self._closing:
            st.downstream_cx_destroy_remote_active_rq.inc()
            st.downstream_cx_destroy_active_rq.inc()
        if not self._closing or self.connection.peer_closed:
            # (The client's close during a delayed close is the client's, as Envoy counts it.)
            st.downstream_cx_destroy_remote.inc()
        else:
            st.downstream_cx_destroy_local.inc()
        st.downstream_cx_length_ms.record((self.config.clock.monotonic() - self._created) * 1000)
        self._closing = True
        self._cancel_timers()
        if self._delay_timer is not None:
            self._delay_timer.cancel()
            self._delay_timer = None
        for s in streams:
            s.on_downstream_reset()
        self.stream = None
        self.pending = []
        self.streams = {}
        self._backed_up = set()
        if self.h2 is not None:
            self.h2.close()

    @staticmethod
    def _message_begun(codec: http1_codec.ServerCodec) -> bool:
        try:
            return codec.message_begun()
        except http1_codec.InternalError as exc:
            # A bug of ours: logged, and the close goes on (the gauges must still come down).
            log.error("internal error closing a downstream connection: %s", exc)
            return False

    def connection_info(self) -> StreamInfo:
        """The connection's own record (Envoy's connection StreamInfo, what listener access logs
        print): its addresses and id, start and duration, bytes, protocol, DPE after a codec error."""
        clock = self.config.clock
        info = StreamInfo(self.remote, self.local, clock, self.cid)
        now = info.start_time
        info.start_time, info.start_wall = self._created, info.start_wall - (now - self._created)
        info.last_downstream_tx = now
        info.bytes_received, info.bytes_sent, info.protocol = self.rx, self.tx, self.cx_protocol
        if self.cx_protocol_error:
            info.set_flag(ResponseFlag.DOWNSTREAM_PROTOCOL_ERROR)
        return info

    def on_write_watermark(self, above: bool) -> None:
        if self.h2 is not None:
            for s in list(self.streams.values()):
                s.on_downstream_writable(not above)
        elif self.stream is not None:
            self.stream.on_downstream_writable(not above)

    # -- HTTP/1 codec callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        # Only called when timers need it (codec.notify_begin = config.begin_timers).
        cfg = self.config
        self.msg_begin = cfg.clock.monotonic()
        if cfg.request_headers_timeout > 0 and self.stream is None:
            # (A pipelined request waits: Envoy's HTTP/1 codec reads it only once the
            # current one is done.)
            self._hdr_timer = cfg.call_later(cfg.request_headers_timeout, self._on_headers_timeout)

    def new_stream(self, headers: RequestHeaders, end_stream: bool) -> ActiveStream:
        h2 = self.h2
        if h2 is not None:
            sid = h2.current_stream_id
            stream = ActiveStream(self, headers, end_stream, sid, h2)
            if self.streams.pop(sid, None) is not None:
                # Begun (and counted) while its HEADERS frame was still arriving: this is
                # that stream, now with its headers (begin_stream).
                stream._started = True
            self.streams[sid] = stream
            if self._idle_timer is not None:
                # (Envoy disables the idle timer while a stream is open.)
                self._idle_timer.cancel()
                self._idle_timer = None
            stream.start()
            return stream
        if self._hdr_timer is not None:
            self._hdr_timer.cancel()
            self._hdr_timer = None
        stream = ActiveStream(self, headers, end_stream)
        if self.draining:
            stream.close_connection = True
        if self.stream is None:
            self.stream = stream
            stream.start()
        else:
            self.pending.append(stream)
        return stream

    # -- used by streams ----------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """HTTP/1 bytes for the client (coalesced by the connection)."""
        if self._closing:
            return
        self.config.stats.downstream_cx_tx_bytes_total.inc(len(data))
        self.tx += len(data)
        # Connection.write, inlined: two writes per request on the HTTP/1 hot path.
        c = self.connection
        if not c.closing:
            c.wbuf.append(data)
            if not c.scheduled:
                c.schedule()

    def flush(self) -> None:
        self.connection.flush()

    def stream_done(self, stream: ActiveStream, close: bool) -> None:
        if self.h2 is not None:
            self._h2_stream_done(stream)
            return
        if self.stream is stream:
            self.stream = None
        if close or self._closing:
            self.close()
            return
        # The finished stream may have paused reading for its back-pressure (a request body
        # waiting for an upstream connection) and ended without resuming it: the connection
        # reads again for its next request.
        c = self.connection
        if c.read_disables:
            c.read_enable_all()
        self._idle_since = self.config.clock.monotonic()
        if self._idle_timer is None and self.config.idle_timeout > 0 and not self.draining:
            # Suspended while a request was in progress: the idle period starts now.
            self._idle_timer = self.config.call_later(self.config.idle_timeout, self._on_idle_check)
        if self.pending:
            nxt = self.pending.pop(0)
            self.stream = nxt
            nxt.start()
        elif self._deferred_error is not None:
            error, self._deferred_error = self._deferred_error, None
            self._protocol_error(error)

    def read_disable_stream(self, stream: ActiveStream, disable: bool) -> None:
        if self.h2 is not None:
            self.h2.read_disable(stream.stream_id, disable)
            self.connection.want_flush()
        else:
            self.connection.read_disable(disable)

    def pause_reading(self) -> None:
        """(For callers holding the connection manager: the HTTP/1 connection stops reading.)"""
        self.connection.read_disable(True)

    def resume_reading(self) -> None:
        self.connection.read_disable(False)

    def close(self, delay: bool = True) -> None:
        """Close once what is written is flushed: Envoy's FlushWriteAndDelay (``delay``, the
        close after a response, a codec error, a drain) waits up to ``delayed_close_timeout``
        for the client to close first; its plain FlushWrite does not."""
        if not self._closing:
            self._closing = True
            self._cancel_timers()
            timeout = self.config.delayed_close_timeout
            if delay and timeout > 0:
                self.connection.close_delayed()
                self._delay_timer = self.config.call_later(timeout, self._on_delayed_close_timeout)
            else:
                self.connection.close()

    def _on_delayed_close_timeout(self) -> None:
        self._delay_timer = None
        if self.connection.delaying:
            self.config.stats.downstream_cx_delayed_close_timeout.inc()
            self.connection.end_delay()

    def reset(self) -> None:
        """Abort the connection (a reset after the response started)."""
        self._closing = True
        self.connection.abort()

    @property
    def busy(self) -> bool:
        """A request is in progress (the server's drain waits for these)."""
        return self.stream is not None or bool(self.streams)

    def drain(self) -> None:
        """The server drains: HTTP/2 says GOAWAY (streams in progress finish); HTTP/1
        responses carry ``connection: close`` (HcmConfig.draining)."""
        h2 = self.h2
        if h2 is not None and not self._closing and h2.goaway_last_stream_id in (None, http2_codec.SHUTDOWN_NOTICE):
            h2.goaway()
            self.connection.want_flush()
            if not self.streams:
                self.close()

    def drain_gracefully(self, counted: bool = True) -> None:
        """The listeners drain gracefully (admin ``/drain_listeners?graceful``): Envoy's drain
        manager tells the connection manager, which on HTTP/2 sends the shutdown notice
        (GOAWAY NO_ERROR, last stream id 2^31-1: streams the client opens meanwhile are still
        served) and counts downstream_cx_drain_close; the final GOAWAY (the highest stream
        received) follows after ``drain_timeout`` (onDrainTimeout), then the connection closes
        once its streams are done. HTTP/1 connections are left alone here. ``counted``: false
        for a connection that drains for its own reason (no downstream_cx_drain_close)."""
        h2 = self.h2
        if h2 is None or self._closing or h2.goaway_last_stream_id is not None:
            return
        if counted:
            self.config.stats.downstream_cx_drain_close.inc()
        h2.goaway(http2_codec.SHUTDOWN_NOTICE)
        self.connection.want_flush()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = self.config.call_later(self.config.drain_timeout, self._on_shutdown_notice_timeout)

    def _on_shutdown_notice_timeout(self) -> None:
        self._idle_timer = None
        h2 = self.h2
        if self._closing or h2 is None:
            return
        h2.goaway(h2.conn.highest_inbound_stream_id)
        self.connection.want_flush()
        if not self.streams:
            self.close()

    # -- HTTP/2 ---------------------------------------------------------------------------
    def new_invalid_stream(self) -> ActiveStream:
        """A stream the HTTP/2 codec refused at its headers (malformed, over a header limit).
        Envoy's codec creates the connection manager's stream at the HEADERS frame
        (onBeginHeaders -> newStream), before any header is checked, so the request is counted
        (downstream_rq_total, _http2_total) and then reset: by the codec's RST_STREAM, or by
        the connection's close (downstream_rq_rx_reset either way). It never starts."""
        h2 = self.h2
        assert h2 is not None
        return self.begin_stream(h2.current_stream_id)

    def begin_stream(self, sid: int) -> ActiveStream:
        """An HTTP/2 stream as Envoy's connection manager has it from the HEADERS frame's start,
        before its headers are known: counted, never started (the codec's ``begin_stream`` for
        a HEADERS frame still arriving; :meth:`new_invalid_stream`). The same stream once it
        was begun."""
        h2 = self.h2
        assert h2 is not None
        early = self.streams.get(sid)
        if early is not None:
            return early
        stream = ActiveStream(self, RequestHeaders("GET", "/", None, [], "http", "2"), False, sid, h2)
        self.streams[sid] = stream
        stream.begin_counted()
        return stream

    def _feed_h2(self, h2: http2_codec.ServerCodec, data: bytes) -> None:
        try:
            error = h2.feed(data)
        except Exception:  # noqa: BLE001 - a bug of ours in a stream: this connection only
            log.exception("internal error on a downstream HTTP/2 connection")
            self.reset()
            return
        self.connection.want_flush()
        if self._backed_up:
            self._check_drained()
        if error is not None:
            # Envoy's handleCodecError: the codec's GOAWAY goes out, then the connection closes.
            self.config.stats.downstream_cx_protocol_error.inc()
            self.cx_protocol_error = True
            if logs.http_debug:
                log.debug("[C%d] dispatch error: %s", self.cid, h2.error_reason)
            for s in list(self.streams.values()):
                s.stream_info.set_flag(ResponseFlag.DOWNSTREAM_PROTOCOL_ERROR)
            self.close()

    def _pull_h2(self) -> bytes:
        h2 = self.h2
        if h2 is None:
            return b""
        resets = self._end_resets
        if resets is not None:
            # Envoy defers doEndStream's reset until the response is flushed; a request that
            # ended meanwhile (its last DATA in the same read) closed the stream: no reset then
            # (the codec sends none for a stream closed both ways, and counts no tx_reset).
            self._end_resets = None
            for sid in resets:
                h2.reset_stream(sid, ErrorCodes.NO_ERROR)
        data = h2.data_to_send()
        if data:
            self.config.stats.downstream_cx_tx_bytes_total.inc(len(data))
            self.tx += len(data)
        return data

    def encode_h2_headers(self, stream_id: int, headers: ResponseHeaders, end_stream: bool) -> None:
        h2 = self.h2
        if h2 is not None:
            h2.encode_headers(stream_id, headers, end_stream)
            self.connection.want_flush()

    def encode_h2_data(self, stream: ActiveStream, data: bytes, end_stream: bool) -> None:
        h2 = self.h2
        if h2 is None:
            return
        sid = stream.stream_id
        h2.encode_data(sid, data, end_stream)
        self.connection.want_flush()
        if not end_stream and h2.buffered_bytes(sid) > self._h2_high and stream not in self._backed_up:
            # The client's window is shut and the body piles up: tell the stream's watermark
            # callbacks (the router stops reading its upstream), as Envoy's stream buffer does.
            self._backed_up.add(stream)
            stream.on_downstream_writable(False)

    def encode_h2_trailers(self, stream_id: int, trailers: HeaderMap) -> None:
        h2 = self.h2
        if h2 is not None:
            h2.encode_trailers(stream_id, trailers)
            self.connection.want_flush()

    def _check_drained(self) -> None:
        h2 = self.h2
        if h2 is None:
            return
        low = self._h2_high // 2
        for s in list(self._backed_up):
            if s.destroyed or h2.buffered_bytes(s.stream_id) <= low:
                self._backed_up.discard(s)
                if not s.destroyed:
                    s.on_downstream_writable(True)

    def reset_h2_stream(self, stream: ActiveStream, code: ErrorCodes = ErrorCodes.INTERNAL_ERROR) -> None:
        """A local reset of one stream (the router gave up mid-response, a stream timer, a
        filter): RST_STREAM INTERNAL_ERROR. Checked against Envoy 1.40 (oghttp2): an upstream
        RST_STREAM mid-response whatever its code, an HTTP/1 upstream closing mid-body, the route
        timeout and the stream idle timeout after the response headers all reach an HTTP/2
        client as INTERNAL_ERROR (the NO_ERROR reset is doEndStream's, :meth:`_h2_stream_done`)."""
        h2 = self.h2
        if h2 is not None:
            h2.reset_stream(stream.stream_id, code)
            self.connection.want_flush()
        self._h2_forget(stream)

    def stream_reset(self, stream: ActiveStream) -> None:
        """The peer reset ``stream`` (it is destroyed already)."""
        self._h2_forget(stream)

    def _h2_stream_done(self, stream: ActiveStream) -> None:
        h2 = self.h2
        if h2 is not None and not stream.request_complete:
            # Envoy's doEndStream: the response is complete and the request is not: the
            # stream is reset (NO_ERROR), the rest of the request is not wanted. Envoy's
            # onResetStream counts that reset as downstream_rq_rx_reset too (a tunnel's
            # stream counts its never-complete request's reset itself, Tunnel.on_destroy).
            if stream.tunnel is None:
                self.config.stats.downstream_rq_rx_reset.inc()
            if self._end_resets is None:
                self._end_resets = [stream.stream_id]
            else:
                self._end_resets.append(stream.stream_id)
            self.connection.want_flush()
        if stream.codec_error:
            # A refused upgrade (the only HTTP/2 stream with codec_error): Envoy sets
            # saw_connection_close_ for it whatever the protocol, and on HTTP/2 that drains the
            # connection with the shutdown notice GOAWAY (checked against 1.40: an extended
            # CONNECT refused by its route; an upstream's non-101 answer drains nothing).
            self.drain_gracefully(counted=False)
        self._h2_forget(stream)

    def _h2_forget(self, stream: ActiveStream) -> None:
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
        self._backed_up.discard(stream)
        if self.streams or self._closing:
            return
        h2 = self.h2
        if self.draining or (h2 is not None and h2.goaway_last_stream_id not in (None, http2_codec.SHUTDOWN_NOTICE)):
            self.close()
            return
        self._idle_since = self.config.clock.monotonic()
        if self._idle_timer is None and self.config.idle_timeout > 0:
            self._idle_timer = self.config.call_later(self.config.idle_timeout, self._on_idle_check)

    # -- connection timers (Envoy's idle, drain and request-headers timers) -----------------
    def _cancel_timers(self) -> None:
        if self._hdr_timer is not None:
            self._hdr_timer.cancel()
            self._hdr_timer = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _on_headers_timeout(self) -> None:
        """``request_headers_timeout``: 408 ``request header timeout``, then close."""
        self._hdr_timer = None
        codec = self.codec
        if self._closing or codec is None or not codec.in_headers or self.stream is not None:
            return
        self.config.stats.downstream_rq_header_timeout.inc()
        stream = ActiveStream(self, RequestHeaders("GET", "/", None, [], "http", "1.1"), False)
        self.stream = stream
        stream.begin_counted()
        stream.close_connection = True
        stream.send_local_reply(408, "request header timeout", "request_header_timeout")

    def _busy(self) -> bool:
        codec = self.codec
        if self.streams:
            return True
        return (
            self.stream is not None
            or bool(self.pending)
            or self._deferred_error is not None
            or (codec is not None and (codec.in_headers or codec.in_message is not None))
        )

    def _on_idle_check(self) -> None:
        """One timer per connection, re-armed for the remaining time when it fires early:
        requests only stamp ``_idle_since`` when they end. While a request is in progress the
        timer is suspended (Envoy disables it) and re-armed when the last stream ends."""
        self._idle_timer = None
        if self._closing or self.draining:
            return
        if self._busy():
            return
        cfg = self.config
        remaining = self._idle_since + cfg.idle_timeout - cfg.clock.monotonic()
        if remaining > 0.001:
            self._idle_timer = cfg.call_later(remaining, self._on_idle_check)
            return
        cfg.stats.downstream_cx_idle_timeout.inc()
        h2 = self.h2
        if h2 is not None:
            # Envoy's HTTP/2 drain: GOAWAY, then close once the drain timer fires.
            self.draining = True
            h2.goaway()
            self.connection.want_flush()
            self._idle_timer = cfg.call_later(cfg.drain_timeout, self._on_drain_timeout)
            return
        codec = self.codec
        if codec is None or not codec.got_request:
            # Envoy has no codec yet: close at once (FlushWrite, no delayed close).
            self.close(delay=False)
            return
        # Envoy starts draining: the connection closes after drain_timeout (HTTP/1 sends nothing).
        self.draining = True
        self._idle_timer = cfg.call_later(cfg.drain_timeout, self._on_drain_timeout)

    def _on_drain_timeout(self) -> None:
        self._idle_timer = None
        if self._closing:
            return
        stream = self.stream
        if stream is not None and not stream.destroyed:
            stream.reset_stream()
            return
        self.close()

    def _protocol_error(self, error: http1_codec.CodecError) -> None:
        """A request Envoy's HTTP/1 codec refuses: its local reply, ``connection: close``."""
        self.config.stats.downstream_cx_protocol_error.inc()
        self.cx_protocol_error = True
        codec = self.codec
        stream = cast("ActiveStream | None", codec.in_message if codec is not None else None) or self.stream
        if stream is not None and stream.response_started:
            self.reset()
            return
        if stream is None:
            stream = ActiveStream(self, RequestHeaders("GET", "/", None, [], "http", "1.1"), False)
            stream.headerless = True
            self.stream = stream
            # Envoy's codec error is a request all the same: counted (total, active, then the
            # response code and completed when it is destroyed).
            stream.begin_counted()
        stream.stream_info.set_flag(ResponseFlag.DOWNSTREAM_PROTOCOL_ERROR)
        stream.close_connection = True
        # The request never completes: the reply counts as a response before the request was
        # complete, and the connection's close then resets the stream (rx_reset), as in Envoy.
        stream.request_complete = False
        stream.codec_error = True
        stream.send_local_reply(error.status, error.body, error.details)
