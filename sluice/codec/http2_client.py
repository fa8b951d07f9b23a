"""The HTTP/2 client codec, sans I/O: requests in, frames out; frames in, response events out.

Envoy's ``Http2::ClientConnectionImpl`` (``source/common/http/http2/codec_impl.cc``) for the
upstream side of the router, on the ``h2`` state machine (Envoy 1.40 sits on oghttp2). The shape
mirrors the server codec (:mod:`sluice.codec.http2`): :meth:`ClientCodec.new_stream` takes the
:class:`ResponseDecoder` that will get the response and returns the stream id, the
``encode_headers/encode_data/encode_trailers`` methods name it, :meth:`ClientCodec.feed` takes
what the upstream sent and a refusal of the whole connection comes back as a
:class:`~sluice.codec.http1.CodecError`. Bytes to write accumulate until :meth:`data_to_send`.

Rules:
- Request headers become ``:method :scheme :authority :path`` then the entries in order, with
  HTTP/1's connection-specific headers (``connection``, ``keep-alive``, ``proxy-connection``,
  ``transfer-encoding``, ``upgrade``) dropped and ``te`` kept only as ``trailers`` (Envoy's
  ``HeaderUtility`` / the H1→H2 bridge); CONNECT carries ``:method`` and ``:authority`` only.
- Flow control: received DATA is acknowledged (WINDOW_UPDATE) when the consumer has taken it,
  i.e. right after ``on_response_data`` returns, unless the stream is read-disabled
  (:meth:`read_disable`, the router's downstream back-pressure); then it is acknowledged when the
  stream is enabled again, as Envoy's ``readDisable`` holds ``MarkDataConsumedForStream``.
- Request body beyond the peer's windows is held per stream and sent as WINDOW_UPDATEs come
  (:meth:`buffered_bytes` is the caller's back-pressure signal).
- A 1xx (not 101) response is interim: ``on_response_informational``; the final head follows.
- A response header list that oghttp2 calls invalid (no or bad ``:status``, a connection-specific
  header, pseudo-headers in trailers) resets the stream with PROTOCOL_ERROR and reports
  ``protocol error``: Envoy's upstream codec treats a messaging error as a stream error.
- RST_STREAM from the peer reports Envoy's reset reason (``remote reset``,
  ``remote refused stream reset``, ``remote error with CONNECT request``); GOAWAY from the peer
  goes to the callbacks' ``on_goaway(last_stream_id, error_code)``: streams above the last id
  were not processed and are reset with ``remote refused stream reset`` (Envoy retries those
  safely); a GOAWAY with an error code other than NO_ERROR ends every stream.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from sluice.codec.http1 import CodecError
from sluice.codec.http2 import (
    CONNECT_ERROR,
    DEFAULT_SETTINGS,
    LOCAL_RESET,
    REMOTE_REFUSED_STREAM_RESET,
    REMOTE_RESET,
    Http2Settings,
)
from sluice.codec.http2_frames import send_pending
from sluice.codec.http2_hpack import Decoder as HpackDecoder
from sluice.codec.http2_hpack import Encoder as HpackEncoder
from sluice.http.headers import HeaderMap, RequestHeaders
from sluice.stats.store import Counter, Gauge, StatsBlock, block

PROTOCOL_ERROR = "protocol error"
"""The reset reason of a response the codec refused (Envoy's ``ProtocolError``), as http1's."""
CONNECTION_TERMINATION = "connection termination"
"""Streams cut by the connection's end (a GOAWAY with an error, a closed socket)."""

CODEC_ERROR = CodecError(502, "", "codec_error:unknown_error")

_CONNECTION_SPECIFIC = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"})
_STATUS = re.compile(rb"[0-9]{3}")
_BAD_RESPONSE_HEADER = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_NAME = re.compile(rb"[!#$%&'*+\-.0-9^_`a-z|~]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


@block
class Http2ClientStats(StatsBlock):
    """``cluster.<name>.http2.*`` (ALL_HTTP2_CODEC_STATS, ``codec_stats.h``): Envoy makes the
    whole block with a cluster's first HTTP/2 connection; these are the ones this codec counts,
    the rest stay 0 (no flood protection, no keepalive, no metadata)."""

    TAGS: ClassVar[tuple[str, ...]] = ()

    dropped_headers_with_underscores: Counter
    goaway_sent: Counter
    header_overflow: Counter
    headers_cb_no_stream: Counter
    inbound_empty_frames_flood: Counter
    inbound_priority_frames_flood: Counter
    inbound_window_update_frames_flood: Counter
    keepalive_timeout: Counter
    metadata_empty_frames: Counter
    outbound_control_flood: Counter
    outbound_flood: Counter
    requests_rejected_with_underscores_in_headers: Counter
    rx_messaging_error: Counter
    rx_reset: Counter
    stream_refused_errors: Counter
    trailers: Counter
    tx_flush_timeout: Counter
    tx_reset: Counter
    deferred_stream_close: Gauge
    outbound_control_frames_active: Gauge
    outbound_frames_active: Gauge
    pending_send_bytes: Gauge
    streams_active: Gauge


class ResponseDecoder(Protocol):
    """Where a response goes (what the pool's stream hands on to the router)."""

    def on_response_informational(self, status: int, headers: list[list[str]]) -> None: ...
    def on_response_headers(self, status: int, headers: list[list[str]], end_stream: bool) -> None: ...
    def on_response_data(self, data: bytes, end_stream: bool) -> None: ...
    def on_response_trailers(self, trailers: HeaderMap) -> None: ...
    def on_reset(self, reason: str) -> None: ...


class ClientCallbacks(Protocol):
    """What the codec tells its connection."""

    def on_goaway(self, last_stream_id: int, error_code: int) -> None: ...


class _Stream:
    __slots__ = ("stream_id", "decoder", "pending", "end", "trailers", "done", "remote_end", "got_headers", "disabled", "unacked")

    def __init__(self, stream_id: int, decoder: ResponseDecoder) -> None:
        self.stream_id = stream_id
        self.decoder = decoder
        self.pending = bytearray()
        """Request body the peer's windows do not allow yet."""
        self.end = False
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.done = False
        """The frame ending the request was handed to h2."""
        self.remote_end = False
        self.got_headers = False
        """The final (non-1xx) response head arrived."""
        self.disabled = 0
        """read_disable depth: while above 0 received data is not acknowledged."""
        self.unacked = 0


def _check_header(name: bytes, value: bytes) -> bool:
    return _NAME.fullmatch(name) is not None and _BAD_VALUE.search(value) is None and name not in _BAD_RESPONSE_HEADER


def request_block(headers: RequestHeaders) -> list[tuple[bytes, bytes]]:
    """The HEADERS block of a request (see the module docstring)."""
    method = headers.method
    if method == "CONNECT":
        out = [(b":method", b"CONNECT"), (b":authority", (headers.authority or "").encode("latin-1"))]
    else:
        out = [
            (b":method", method.encode("latin-1")),
            (b":scheme", (headers.scheme or "http").encode("latin-1")),
            (b":authority", (headers.authority or "").encode("latin-1")),
            (b":path", (headers.path or "/").encode("latin-1")),
        ]
    for k, v in headers.entries:
        if k in _CONNECTION_SPECIFIC or k[:1] == ":":
            continue
        if k == "te" and v.lower() != "trailers":
            continue
        out.append((k.encode("latin-1"), v.encode("latin-1")))
    return out


class ClientCodec:
    """One upstream HTTP/2 connection (see the module docstring)."""

    __slots__ = ("callbacks", "settings", "stats", "conn", "error", "error_reason", "goaway_last_stream_id", "_streams", "_out")

    def __init__(
        self, callbacks: ClientCallbacks, settings: Http2Settings = DEFAULT_SETTINGS, stats: Http2ClientStats | None = None
    ) -> None:
        self.callbacks = callbacks
        self.settings = settings
        self.stats = stats
        self.error: CodecError | None = None
        self.error_reason = ""
        self.goaway_last_stream_id: int | None = None
        """Set by the peer's GOAWAY: no new stream may start."""
        self._streams: dict[int, _Stream] = {}
        self._out: list[bytes] = []
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=False, normalize_inbound_headers=False,
            validate_outbound_headers=False, normalize_outbound_headers=False,
        )  # fmt: skip
        conn = self.conn = h2.connection.H2Connection(config)
        conn.encoder = HpackEncoder()  # (hpack's, remembering repeated blocks: http2_hpack)
        conn.decoder = HpackDecoder(conn.decoder.max_header_list_size)
        codes = h2.settings.SettingCodes
        # Envoy's sendSettings for a client: no push, the configured windows and stream limit.
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                codes.ENABLE_PUSH: 0,
                codes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                codes.INITIAL_WINDOW_SIZE: settings.initial_stream_window_size,
            },
        )
        conn.initiate_connection()
        if settings.initial_connection_window_size > 65535:
            conn.increment_flow_control_window(settings.initial_connection_window_size - 65535)

    def __repr__(self) -> str:
        goaway, error = self.goaway_last_stream_id, self.error_reason or None
        return f"<http2.ClientCodec [streams: {len(self._streams)} | goaway: {goaway} | error: {error}]>"

    # -- capacity -----------------------------------------------------------------------
    @property
    def active_streams(self) -> int:
        return len(self._streams)

    @property
    def available_streams(self) -> int:
        """Streams that may start now: the lower of the peer's MAX_CONCURRENT_STREAMS and our
        own ``max_concurrent_streams``, less those open; 0 after a GOAWAY or an error."""
        if self.error is not None or self.goaway_last_stream_id is not None:
            return 0
        limit = min(self.conn.remote_settings.max_concurrent_streams, self.settings.max_concurrent_streams)
        return max(0, limit - len(self._streams))

    # -- requests -----------------------------------------------------------------------
    def new_stream(self, decoder: ResponseDecoder) -> int:
        """A new stream's id (its HEADERS go with :meth:`encode_headers`)."""
        sid: int = self.conn.get_next_available_stream_id()
        self._streams[sid] = _Stream(sid, decoder)
        if self.stats is not None:
            self.stats.streams_active.inc()
        return sid

    def encode_headers(self, stream_id: int, headers: RequestHeaders, end_stream: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self.conn.send_headers(stream_id, request_block(headers), end_stream=end_stream)
        if end_stream:
            stream.end = stream.done = True
            self._maybe_close(stream)

    def encode_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.end:
            return
        stream.pending += data
        if self.stats is not None and data:
            self.stats.pending_send_bytes.inc(len(data))
        stream.end = end_stream
        self._flush(stream)

    def encode_trailers(self, stream_id: int, trailers: HeaderMap) -> None:
        """Trailers end the request after any body still held; empty ones are an empty DATA
        frame with END_STREAM (as Envoy sends them)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.end:
            return
        stream.trailers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in trailers.entries]
        stream.end = True
        self._flush(stream)

    def reset_stream(self, stream_id: int, error_code: int = ErrorCodes.NO_ERROR) -> None:
        """A local reset (Envoy's reasonToReset: NO_ERROR for LocalReset). The decoder hears
        nothing more."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self._reset(stream, error_code)

    def read_disable(self, stream_id: int, disable: bool) -> None:
        """Hold (or give back) the window of what the stream has received (see the docstring)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if disable:
            stream.disabled += 1
            return
        if stream.disabled > 0:
            stream.disabled -= 1
        if stream.disabled == 0 and stream.unacked:
            n, stream.unacked = stream.unacked, 0
            self._ack(stream_id, n)

    def buffered_bytes(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return len(stream.pending) if stream is not None else 0

    def goaway(self, error_code: int = ErrorCodes.NO_ERROR) -> None:
        """Our GOAWAY (the connection is closing)."""
        if self.stats is not None:
            self.stats.goaway_sent.inc()
        try:
            self.conn.close_connection(error_code)
        except h2.exceptions.ProtocolError:
            pass  # (already closed)

    def connection_lost(self) -> None:
        """The socket closed: every open stream is cut with ``connection termination``."""
        streams = list(self._streams.values())
        for stream in streams:
            self._drop(stream)
        for stream in streams:
            stream.decoder.on_reset(CONNECTION_TERMINATION)

    # -- input --------------------------------------------------------------------------
    def feed(self, data: bytes) -> CodecError | None:
        """Parse ``data``; the error that ended the connection, if any (its GOAWAY is queued;
        every open stream has been told ``protocol error``)."""
        if self.error is not None:
            return self.error
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            if self.conn.state_machine.state != h2.connection.ConnectionState.CLOSED:
                try:
                    self.conn.close_connection(exc.error_code)
                except h2.exceptions.ProtocolError:
                    pass
            self._fail(str(exc), PROTOCOL_ERROR)
            return self.error
        for event in events:
            if self.error is not None:
                break
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
        return self.error

    def _fail(self, reason: str, stream_reason: str) -> None:
        self.error = CODEC_ERROR
        self.error_reason = reason
        streams = list(self._streams.values())
        for stream in streams:
            self._drop(stream)
        for stream in streams:
            stream.decoder.on_reset(stream_reason)

    def _on_response(self, event: h2.events.ResponseReceived | h2.events.InformationalResponseReceived) -> None:
        sid = event.stream_id
        stream = self._streams.get(sid)
        if stream is None:
            if self.stats is not None:
                self.stats.headers_cb_no_stream.inc()
            return
        status = b""
        entries: list[list[str]] = []
        for name, value in event.headers or ():
            if name == b":status":
                if status or entries:
                    self._malformed(stream)
                    return
                status = value
            elif name[:1] == b":" or not _check_header(name, value):
                self._malformed(stream)
                return
            else:
                entries.append([name.decode("latin-1"), value.decode("latin-1")])
        if _STATUS.fullmatch(status) is None:
            self._malformed(stream)
            return
        code = int(status)
        if 100 <= code < 200 and code != 101:
            stream.decoder.on_response_informational(code, entries)
            return
        stream.got_headers = True
        ended = getattr(event, "stream_ended", None) is not None
        if ended:
            stream.remote_end = True
        stream.decoder.on_response_headers(code, entries, ended)
        if ended:
            self._maybe_close(stream)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        n = event.flow_controlled_length or 0
        stream = self._streams.get(sid)
        if stream is None:
            if n:
                self._ack(sid, n)  # (a stream we reset: its window goes back at once)
            return
        ended = event.stream_ended is not None
        if ended:
            stream.remote_end = True
        stream.decoder.on_response_data(event.data or b"", ended)
        if n:
            # The decoder has taken the data: acknowledge it, unless the stream is read-disabled.
            if stream.disabled:
                stream.unacked += n
            else:
                self._ack(sid, n)
        if ended:
            self._maybe_close(stream)

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        # (No http2.trailers here: Envoy counts it on the server side only, checked with 1.40.)
        entries: list[list[str]] = []
        for name, value in event.headers or ():
            if name[:1] == b":" or not _check_header(name, value):
                self._malformed(stream)
                return
            entries.append([name.decode("latin-1"), value.decode("latin-1")])
        stream.remote_end = True
        stream.decoder.on_response_trailers(HeaderMap(entries))
        self._maybe_close(stream)

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream = self._streams.get(event.stream_id)
        if self.stats is not None:
            if event.remote_reset:
                self.stats.rx_reset.inc()
            else:
                self.stats.tx_reset.inc()
        if stream is None:
            return
        self._drop(stream)
        code = event.error_code
        reason = REMOTE_RESET
        if code == ErrorCodes.REFUSED_STREAM:
            # (No http2.stream_refused_errors: Envoy 1.40 counts none for a peer's REFUSED_STREAM.)
            reason = REMOTE_REFUSED_STREAM_RESET
        elif code == ErrorCodes.CONNECT_ERROR:
            reason = CONNECT_ERROR
        stream.decoder.on_reset(reason if event.remote_reset else LOCAL_RESET)

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        last = event.last_stream_id if event.last_stream_id is not None else 0
        self.goaway_last_stream_id = last
        code = int(event.error_code) if event.error_code is not None else 0
        refused = [s for sid, s in self._streams.items() if sid > last]
        cut = [s for sid, s in self._streams.items() if sid <= last] if code != ErrorCodes.NO_ERROR else []
        for stream in refused + cut:
            self._drop(stream)
        for stream in refused:
            stream.decoder.on_reset(REMOTE_REFUSED_STREAM_RESET)
        for stream in cut:
            stream.decoder.on_reset(CONNECTION_TERMINATION)
        if code == ErrorCodes.NO_ERROR:
            # h2 closes its state machine at any GOAWAY, and would then refuse the frames of the
            # streams the peer still serves (those at or below ``last``): reopen it. No new
            # stream starts (available_streams is 0 from here on).
            self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        self.callbacks.on_goaway(last, code)

    def _on_window(self, event: h2.events.WindowUpdated | h2.events.RemoteSettingsChanged) -> None:
        if isinstance(event, h2.events.WindowUpdated) and event.stream_id:
            stream = self._streams.get(event.stream_id)
            if stream is not None and (stream.pending or (stream.end and not stream.done)):
                self._flush(stream)
            return
        for stream in list(self._streams.values()):
            if stream.pending or (stream.end and not stream.done):
                self._flush(stream)

    # -- output -------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        out = self._out
        pending: bytes = self.conn.data_to_send()
        if not out:
            return pending
        out.append(pending)
        self._out = []
        return b"".join(out)

    # -- internals ----------------------------------------------------------------------
    def _ack(self, sid: int, n: int) -> None:
        # (h2 gives the connection's share back even when the stream has closed meanwhile.)
        try:
            self.conn.acknowledge_received_data(n, sid)
        except h2.exceptions.ProtocolError:
            pass  # (the connection has closed)

    def _flush(self, stream: _Stream) -> None:
        if send_pending(self.conn, stream, self.stats):
            stream.done = True
            self._maybe_close(stream)

    def _malformed(self, stream: _Stream) -> None:
        if self.stats is not None:
            self.stats.rx_messaging_error.inc()
        self._reset(stream, ErrorCodes.PROTOCOL_ERROR)
        stream.decoder.on_reset(PROTOCOL_ERROR)

    def _reset(self, stream: _Stream, code: int) -> None:
        try:
            self.conn.reset_stream(stream.stream_id, code)
        except h2.exceptions.StreamClosedError:
            pass
        else:
            if self.stats is not None:
                self.stats.tx_reset.inc()
        self._drop(stream)

    def _maybe_close(self, stream: _Stream) -> None:
        if stream.done and stream.remote_end:
            self._drop(stream)

    def _drop(self, stream: _Stream) -> None:
        if self._streams.pop(stream.stream_id, None) is None:
            return
        if self.stats is not None:
            self.stats.streams_active.dec()
            if stream.pending:
                self.stats.pending_send_bytes.dec(len(stream.pending))
        stream.pending = bytearray()

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams


_HANDLERS: dict[type[h2.events.Event], Callable[[ClientCodec, Any], None]] = {
    h2.events.ResponseReceived: ClientCodec._on_response,
    h2.events.InformationalResponseReceived: ClientCodec._on_response,
    h2.events.DataReceived: ClientCodec._on_data,
    h2.events.TrailersReceived: ClientCodec._on_trailers,
    h2.events.StreamReset: ClientCodec._on_reset,
    h2.events.ConnectionTerminated: ClientCodec._on_goaway,
    h2.events.WindowUpdated: ClientCodec._on_window,
    h2.events.RemoteSettingsChanged: ClientCodec._on_window,
}
