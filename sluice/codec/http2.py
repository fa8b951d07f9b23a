"""The HTTP/2 server codec, sans I/O: frames in, request events out; responses in, frames out.

Envoy's ``Http2::ServerConnectionImpl`` (``source/common/http/http2/codec_impl.cc``) on top of
the ``h2`` state machine, where Envoy 1.40 sits on oghttp2. The shape is the HTTP/1 codec's
(:mod:`sluice.codec.http1`): :meth:`ServerCodec.feed` takes bytes, the connection's
``new_stream(headers, end_stream)`` returns the :class:`RequestDecoder` that gets the body (and
trailers and resets, if it has the methods), and a refusal of the connection comes back as a
:class:`~sluice.codec.http1.CodecError`. Bytes to write accumulate in the codec until
:meth:`ServerCodec.data_to_send`, so the connection writes once per event-loop iteration.

Stream ids: ``new_stream`` keeps http1's signature; while it (or any decoder callback) runs,
:attr:`ServerCodec.current_stream_id` is the stream being dispatched (Envoy's
``current_stream_id_``). The connection reads it in ``new_stream`` and keeps it next to its
stream; responses name it (``encode_headers(stream_id, ...)``).

Header validation is ours, not h2's (``validate_inbound_headers=False``): h2's checks loop over
every byte in Python, refuse what Envoy takes (a ``host`` differing from ``:authority``) and make
every bad header a connection error. :func:`~sluice.codec.http2_validation.validate` applies
oghttp2's rules (``quiche/http2/adapter/header_validator.cc``) with compiled patterns, one pass
per header list. A refused header list is still a stream for Envoy's connection manager (its
codec creates the stream at the HEADERS frame): the connection's ``new_invalid_stream()``
counts it, then it is reset.

Errors, as Envoy 1.40 answers them (differential: tests/integration/test_http2_downstream.py):
frame-layer errors (frame size, DATA on stream 0 or an idle stream, CONTINUATION out of place)
get h2's GOAWAY; the connection errors oghttp2's session latches (a bad preface, an even stream
id, SETTINGS on a stream, WINDOW_UPDATE zero or overflowing, a client GOAWAY naming a client
stream, streams over MAX_CONCURRENT_STREAMS once acknowledged) and malformed requests without
``override_stream_error_on_invalid_http_message`` close the connection with no frame at all.
The frames whose answer differs from h2's are handled before h2 sees them
(:mod:`sluice.codec.http2_frames`), one frame at a time (:meth:`ServerCodec.feed`).

One Python call per h2 event: a HEADERS (or DATA) frame that ends the stream is one
``new_stream(..., True)`` (or ``on_request_body(data, True)``), using h2's ``stream_ended`` link.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.exceptions import InvalidPaddingError
from hyperframe.frame import GoAwayFrame, SettingsFrame

from sluice.codec.http1 import CodecError
from sluice.codec.http2_frames import REMOTE_RESET as REMOTE_RESET  # (re-exported)
from sluice.codec.http2_frames import FrameRules, ServerConnection, send_pending
from sluice.codec.http2_hpack import Decoder as HpackDecoder
from sluice.codec.http2_hpack import Encoder as HpackEncoder
from sluice.codec.http2_validation import KnownRequests, Malformed, Overflow, outbound, validate
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.stats.store import Counter, Gauge, StatsBlock, block


@dataclass(frozen=True, slots=True)
class Http2Settings:
    """The ``http2_protocol_options`` (and HCM header limits) the codec applies. Defaults are
    Envoy's, from ``api/envoy/config/core/v3/protocol.proto`` and the HCM's
    ``max_request_headers_kb`` / ``common_http_protocol_options.max_headers_count``."""

    max_concurrent_streams: int = 1024
    """Envoy 1.40's default (``OptionsLimits::DEFAULT_MAX_CONCURRENT_STREAMS``; its SETTINGS say 1024)."""
    initial_stream_window_size: int = 16 * 1024 * 1024
    """Envoy 1.40's default, 16 MiB; also its per-stream buffer limit (``per_stream_buffer_limit_``)."""
    initial_connection_window_size: int = 24 * 1024 * 1024
    """Envoy 1.40's default, 24 MiB, reached with a WINDOW_UPDATE on stream 0 right after SETTINGS."""
    max_headers_kb: int = 60
    """HCM ``max_request_headers_kb`` (60): bytes of names and values, per header list."""
    max_headers_count: int = 100
    """HCM ``max_headers_count`` (100), pseudo-headers included (Envoy's header map holds them)."""
    allow_connect: bool = False
    """Extended CONNECT (RFC 8441, ``:protocol``). Off, a ``:protocol`` request is malformed, as
    oghttp2 treats it without ``allow_extended_connect``; plain CONNECT is not concerned."""
    stream_error_on_invalid_http_message: bool = False
    """``override_stream_error_on_invalid_http_message``: off (Envoy's default) a malformed
    request ends the whole connection (RST_STREAM, then GOAWAY PROTOCOL_ERROR); on, only the
    stream is reset with PROTOCOL_ERROR."""


DEFAULT_SETTINGS = Http2Settings()


@block
class Http2CodecStats(StatsBlock):
    """``http2.*`` (ALL_HTTP2_CODEC_STATS, ``source/common/http/http2/codec_stats.h``): only the
    stats this codec counts."""

    TAGS: ClassVar[tuple[str, ...]] = ()

    # counters
    goaway_sent: Counter
    header_overflow: Counter
    rx_messaging_error: Counter
    rx_reset: Counter
    trailers: Counter
    tx_reset: Counter
    # gauges
    pending_send_bytes: Gauge
    streams_active: Gauge


class RequestDecoder(Protocol):
    """Where a request's body goes. Optional, looked up once per stream:
    ``on_request_trailers(trailers: HeaderMap)`` (ends the request; without it trailers are
    dropped and the body ends empty) and ``on_reset(reason: str)`` (the peer reset the stream)."""

    def on_request_body(self, data: bytes, end_stream: bool) -> None: ...


class TrailersDecoder(Protocol):
    def on_request_trailers(self, trailers: HeaderMap) -> None: ...


class ResetObserver(Protocol):
    def on_reset(self, reason: str) -> None: ...


class Http2ServerCallbacks(Protocol):
    """What the codec calls on its connection (http1's ``new_stream``)."""

    def new_stream(self, headers: RequestHeaders, end_stream: bool) -> RequestDecoder: ...


# Envoy's Http::Utility::resetReasonToString for the reasons the codec raises.
REMOTE_REFUSED_STREAM_RESET = "remote refused stream reset"
CONNECT_ERROR = "remote error with CONNECT request"
LOCAL_RESET = "local reset"

SHUTDOWN_NOTICE = 2**31 - 1
"""The last stream id of the drain's first GOAWAY (Envoy's shutdownNotice): nothing refused yet."""

# With oghttp2 Envoy's codec_strerror() is "unknown_error", and the connection manager closes
# with "codec_error:" + it (handleCodecError). Status and body are unused: the GOAWAY is the
# answer. h2's own message is kept in ServerCodec.error_reason for logs.
CODEC_ERROR = CodecError(400, "", "codec_error:unknown_error")


class _Stream:
    __slots__ = (
        "stream_id", "decoder", "on_trailers", "on_reset", "pending", "end", "trailers", "done", "remote_end",
        "read_disabled", "unacked",
    )  # fmt: skip

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.decoder: RequestDecoder | None = None
        self.on_trailers: TrailersDecoder | None = None
        self.on_reset: ResetObserver | None = None
        self.pending = bytearray()
        """Response body the peer's window does not allow yet."""
        self.end = False
        """The response's end was encoded (it goes once ``pending`` is out)."""
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.done = False
        """The frame ending the response was handed to h2."""
        self.remote_end = False
        self.read_disabled = 0
        """Read-disable count (the consumer's upstream is backed up): the window is not given back."""
        self.unacked = 0
        """Flow-controlled bytes received while read-disabled, acknowledged on re-enable."""


_STATUS = {code: (b":status", str(code).encode()) for code in range(100, 600)}


class ServerCodec(FrameRules):
    """One downstream HTTP/2 connection (see the module docstring)."""

    __slots__ = (
        "callbacks", "settings", "stats", "conn", "error", "error_reason", "current_stream_id",
        "goaway_last_stream_id", "_streams", "_out", "_max_bytes", "_hpack_limit", "_window_delta",
        "_settings_acked", "_refused", "_begun", "_requests",
    )  # fmt: skip

    def __init__(
        self, callbacks: Http2ServerCallbacks, settings: Http2Settings = DEFAULT_SETTINGS, stats: Http2CodecStats | None = None
    ) -> None:
        self.callbacks = callbacks
        self.settings = settings
        self.stats = stats
        self.error: CodecError | None = None
        """Set once the connection failed: nothing more is parsed."""
        self.error_reason = ""
        """h2's (or our) reason for :attr:`error`, for logs."""
        self.current_stream_id = 0
        """The stream whose event is being dispatched (valid inside ``new_stream`` and decoder callbacks)."""
        self.goaway_last_stream_id: int | None = None
        """Set by :meth:`goaway`: streams above it are refused."""
        self._streams: dict[int, _Stream] = {}
        self._out: list[bytes] = []
        self._max_bytes = settings.max_headers_kb * 1024
        self._requests = KnownRequests(self._max_bytes, settings.max_headers_count, settings.allow_connect)
        # h2 refuses (ENHANCE_YOUR_CALM, connection error) an HPACK block decoding to more than
        # this; oghttp2 bounds HPACK work at 4x max_header_list_bytes likewise. Below it the
        # limits are Envoy's, per stream.
        self._hpack_limit = 4 * self._max_bytes
        # Outbound headers too are normalised and checked by us, in one pass (outbound()).
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = self.conn = ServerConnection(config)
        conn.encoder = HpackEncoder()  # (hpack's, remembering repeated blocks: http2_hpack)
        conn.decoder = HpackDecoder(conn.decoder.max_header_list_size)
        codes = h2.settings.SettingCodes
        self._settings_acked = False
        """The client acknowledged our SETTINGS (then MAX_CONCURRENT_STREAMS is binding)."""
        self._refused: int | None = None
        self._begun = 0
        """The highest stream begun before its HEADERS frame was complete (see _begin_partial)."""
        """A stream over MAX_CONCURRENT_STREAMS before the ACK: refused once h2 has opened it."""
        # Envoy's sendSettings: these named parameters (oghttp2 adds MAX_HEADER_LIST_SIZE).
        # h2's own concurrency limit is lifted: the check is ours (see _admit_headers), as
        # oghttp2's differs before and after the client's SETTINGS ACK.
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                codes.MAX_CONCURRENT_STREAMS: 2**31 - 1,
                codes.INITIAL_WINDOW_SIZE: settings.initial_stream_window_size,
                codes.ENABLE_CONNECT_PROTOCOL: int(settings.allow_connect),
                codes.MAX_HEADER_LIST_SIZE: self._max_bytes,
            },
        )
        conn.decoder.max_header_list_size = self._hpack_limit
        conn.initiate_connection()
        # The SETTINGS frame as Envoy 1.40 (oghttp2) writes it, in its order and with only these
        # four parameters (h2 would add its defaults for ENABLE_PUSH, MAX_FRAME_SIZE, ...; their
        # values are the protocol's defaults, so the two ends agree all the same).
        conn.data_to_send()
        preface = SettingsFrame(0)
        preface.settings = {
            codes.HEADER_TABLE_SIZE: 4096,
            codes.ENABLE_CONNECT_PROTOCOL: int(settings.allow_connect),
            codes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
            codes.INITIAL_WINDOW_SIZE: settings.initial_stream_window_size,
        }
        self._out.append(preface.serialize())
        # The connection window's WINDOW_UPDATE: Envoy 1.40 writes it once the first read was
        # processed (SETTINGS, then the ACK of the client's SETTINGS when they came in that
        # read, then WINDOW_UPDATE; test_settings_window_and_ping, and the edge test's lone
        # preface), so it goes out at the end of the first feed().
        self._window_delta = max(settings.initial_connection_window_size - 65535, 0)

    def __repr__(self) -> str:
        return f"<ServerCodec [streams: {len(self._streams)} | error: {self.error_reason or None}]>"

    # -- input --------------------------------------------------------------------------
    def feed(self, data: bytes) -> CodecError | None:
        """Parse ``data`` (the connection preface included); the error that ended the
        connection, if any (then also :attr:`error`; a GOAWAY, when Envoy sends one, is in
        :meth:`data_to_send`).

        h2's ``receive_data`` is unrolled here, one frame at a time: each frame's events are
        dispatched before the next frame is parsed (as oghttp2's visitor callbacks are), so a
        connection error keeps what the frames before it did; and a frame Envoy answers
        differently from h2 is handled before h2 sees it (:meth:`_admit`)."""
        if self.error is not None:
            return self.error
        conn = self.conn
        buf = conn.incoming_buffer
        try:
            buf.add_data(data)
        except h2.exceptions.ProtocolError as exc:
            # A bad client preface: Envoy's dispatch fails before any frame is written, so the
            # connection closes without a GOAWAY (downstream_cx_protocol_error only).
            return self._fail_silently(str(exc))
        buf.max_frame_size = conn.max_inbound_frame_size
        while self.error is None:
            if not self._peek(buf._data, not buf._headers_buffer):
                continue
            try:
                frame = next(buf)
            except StopIteration:
                break
            except (h2.exceptions.ProtocolError, InvalidPaddingError) as exc:
                # Frame-layer errors (a frame over SETTINGS_MAX_FRAME_SIZE, a bad SETTINGS or
                # WINDOW_UPDATE length, DATA on stream 0, CONTINUATION without HEADERS): Envoy
                # answers these with GOAWAY (FRAME_SIZE_ERROR / PROTOCOL_ERROR) and the last
                # stream it processed, as h2's _terminate_connection does (checked against
                # Envoy 1.40; these come from the frame decoder, not oghttp2's session).
                code = getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR)
                conn._terminate_connection(code)
                return self._fail(str(exc))
            if not self._admit(frame):
                continue
            try:
                events = conn._receive_frame(frame)
            except h2.exceptions.InvalidBodyLengthError:
                # DATA past the request's content-length, or its end short of it: oghttp2's
                # HandleContentLengthError resets the stream (RST_STREAM PROTOCOL_ERROR) with or
                # without the override, and no rx_messaging_error (checked against Envoy 1.40).
                self._reset_and_notify(frame.stream_id, ErrorCodes.PROTOCOL_ERROR, "protocol error")
                continue
            except (h2.exceptions.ProtocolError, InvalidPaddingError) as exc:
                # DATA on an idle stream and h2's other stream-state errors: GOAWAY, as Envoy.
                code = getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR)
                conn._terminate_connection(code)
                return self._fail(str(exc))
            for event in events:
                if self.error is not None:
                    break  # (oghttp2 stops processing at a connection error)
                handler = _HANDLERS.get(type(event))
                if handler is not None:
                    handler(self, event)
        if self.error is None and (sid := self._partial_stream(buf._data, buf._headers_buffer)):
            begin = getattr(self.callbacks, "begin_stream", None)
            if begin is not None:
                self._begun = sid
                begin(sid)
        if self._window_delta and self.error is None:
            conn.increment_flow_control_window(self._window_delta)
            self._window_delta = 0
        return self.error

    def _fail_silently(self, reason: str) -> CodecError:
        """A connection error Envoy answers with no frame at all (each case checked against
        Envoy 1.40 in test_http2_downstream). Our reading of why: oghttp2 latches the error
        (LatchErrorAndNotify queues its GOAWAY), Envoy's dispatch returns the codec error before
        it sends pending frames, and the connection manager's close (FlushWriteAndDelay) flushes
        only what was already written. The connection closes at once here, where Envoy waits
        for its delayed-close timeout (1 s) unless the client closes first."""
        return self._fail(reason)

    def _refuse(self, sid: int) -> None:
        self._refused = sid

    def _fail(self, reason: str) -> CodecError:
        self.error = CODEC_ERROR
        self.error_reason = reason
        return CODEC_ERROR

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        assert event.headers is not None
        stats = self.stats
        if self._refused == sid:
            self._refused = None
            self._reset(sid, ErrorCodes.REFUSED_STREAM)  # (see _admit_headers)
            return
        if self.goaway_last_stream_id is not None and sid > self.goaway_last_stream_id:
            self._reset(sid, ErrorCodes.REFUSED_STREAM)  # after our GOAWAY: not processed
            return
        try:
            headers = self._requests.parse(event.headers)
            if event.stream_ended is not None and headers.get("content-length") not in (None, "0"):
                # END_STREAM on the HEADERS with a content-length promising a body: oghttp2's
                # HandleContentLengthError, an invalid HTTP message.
                raise Malformed
        except Overflow as exc:
            # Envoy's connection manager has the stream already (the codec's onBeginHeaders
            # creates it at the HEADERS frame, before a header is checked): it is counted and
            # then reset. Over max_headers_count Envoy's saveHeader counts header_overflow and
            # fails the header (ERR_TEMPORAL_CALLBACK_FAILURE); over max_request_headers_kb
            # oghttp2's own header list limit refuses it (no header_overflow): both are
            # RST_STREAM INTERNAL_ERROR for this stream only.
            if stats is not None and exc.count:
                stats.header_overflow.inc()
            self._begin_invalid(sid)
            self._reset_and_notify(sid, ErrorCodes.INTERNAL_ERROR, REMOTE_RESET)
            return
        except Malformed:
            self._begin_invalid(sid)
            self._stream_error(sid, ErrorCodes.PROTOCOL_ERROR, "http2.violation.of.messaging.rule")
            return
        stream = _Stream(sid)
        self._streams[sid] = stream
        if stats is not None:
            stats.streams_active.inc()
        ended = event.stream_ended is not None
        stream.remote_end = ended
        self.current_stream_id = sid
        decoder = stream.decoder = self.callbacks.new_stream(headers, ended)
        stream.on_trailers = decoder if hasattr(decoder, "on_request_trailers") else None  # type: ignore[assignment]
        stream.on_reset = decoder if hasattr(decoder, "on_reset") else None  # type: ignore[assignment]

    def _begin_invalid(self, sid: int) -> None:
        """A stream whose headers were refused, as Envoy's connection manager has it: created
        (counted) before the check, then reset. The connection's ``new_invalid_stream()``, if it
        has one, returns its reset observer."""
        begin = getattr(self.callbacks, "new_invalid_stream", None)
        if begin is None:
            return
        stream = _Stream(sid)
        self._streams[sid] = stream
        if self.stats is not None:
            self.stats.streams_active.inc()
        self.current_stream_id = sid
        stream.on_reset = begin()

    def _reset_and_notify(self, sid: int, code: int, reason: str) -> None:
        """RST_STREAM ``code``, and the stream's decoder hears ``reason``."""
        stream = self._streams.get(sid)
        self._reset(sid, code)
        if stream is not None and stream.on_reset is not None:
            self.current_stream_id = sid
            stream.on_reset.on_reset(reason)

    def _stream_error(self, sid: int, code: int, reason: str) -> None:
        """Envoy's onInvalidFrame: counts rx_messaging_error; unless
        ``override_stream_error_on_invalid_http_message``, the connection fails with no frame
        (a malformed request gets no RST_STREAM and no GOAWAY: the callback failure stops
        oghttp2 before it writes anything, and the connection closes after the delayed-close
        timeout); with it, the stream alone is reset (RST_STREAM ``code``, tx_reset) and its
        request decoder hears a protocol error (Envoy's getMessagingErrorResetReason)."""
        if self.stats is not None:
            self.stats.rx_messaging_error.inc()
        if not self.settings.stream_error_on_invalid_http_message:
            self._fail_silently(reason)
            return
        self._reset_and_notify(sid, code, "protocol error")

    def _on_data(self, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        data = event.data or b""
        stream = self._streams.get(sid)
        # The window goes back at once (Envoy's onData: MarkDataConsumedForStream), unless the
        # stream is read-disabled: then when it is enabled again.
        n = event.flow_controlled_length
        if n:
            if stream is not None and stream.read_disabled:
                stream.unacked += n
            else:
                self.conn.acknowledge_received_data(n, sid)
        if stream is None or stream.decoder is None:
            return  # (a stream reset earlier in this read)
        ended = event.stream_ended is not None
        stream.remote_end = ended
        self.current_stream_id = sid
        stream.decoder.on_request_body(data, ended)
        if ended:
            self._maybe_close(stream)

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        sid = event.stream_id
        stream = self._streams.get(sid)
        if stream is None or stream.decoder is None:
            return
        if self.stats is not None:
            self.stats.trailers.inc()  # (Envoy: at the second HEADERS' onBeginHeaders)
        assert event.headers is not None
        try:
            # Trailers get their own budget (Envoy's allocTrailers: a fresh map).
            pseudo, entries = validate(event.headers, self._max_bytes, self.settings.max_headers_count, False)
            if pseudo:
                raise Malformed  # oghttp2 ValidateRequestTrailers: no pseudo-headers
        except Overflow as exc:
            if self.stats is not None and exc.count:
                self.stats.header_overflow.inc()
            self._reset(sid, ErrorCodes.INTERNAL_ERROR)
            if stream.on_reset is not None:
                # Envoy's onStreamClose maps INTERNAL_ERROR to RemoteReset.
                stream.on_reset.on_reset(REMOTE_RESET)
            return
        except Malformed:
            self._stream_error(sid, ErrorCodes.PROTOCOL_ERROR, "http2.violation.of.messaging.rule")
            return
        stream.remote_end = True
        self.current_stream_id = sid
        if stream.on_trailers is not None:
            stream.on_trailers.on_request_trailers(HeaderMap(entries))
        else:
            stream.decoder.on_request_body(b"", True)
        self._maybe_close(stream)

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream = self._streams.get(event.stream_id)
        if self.stats is not None:
            if event.remote_reset:
                self.stats.rx_reset.inc()
            else:
                self.stats.tx_reset.inc()  # (one h2 sent itself)
        if stream is None:
            return
        self._drop(stream)
        if stream.on_reset is not None:
            code = event.error_code
            reason = REMOTE_RESET
            if code == ErrorCodes.REFUSED_STREAM:
                reason = REMOTE_REFUSED_STREAM_RESET
            elif code == ErrorCodes.CONNECT_ERROR:
                reason = CONNECT_ERROR
            self.current_stream_id = stream.stream_id
            stream.on_reset.on_reset(reason if event.remote_reset else LOCAL_RESET)

    def _on_window(self, event: h2.events.WindowUpdated | h2.events.RemoteSettingsChanged) -> None:
        if isinstance(event, h2.events.WindowUpdated) and event.stream_id:
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.pending:
                self._flush(stream)
            return
        # The connection window (or every stream's initial window) grew.
        for stream in list(self._streams.values()):
            if stream.pending:
                self._flush(stream)

    def _on_settings_ack(self, event: h2.events.SettingsAcknowledged) -> None:
        # h2 sets its HPACK limit to our acknowledged MAX_HEADER_LIST_SIZE: put the bound back.
        self._settings_acked = True
        self.conn.decoder.max_header_list_size = self._hpack_limit

    # -- output -------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Everything to write since the last call (frames h2 queued included)."""
        out = self._out
        pending = self.conn.data_to_send()
        if not out:
            return pending
        out.append(pending)
        self._out = []
        return b"".join(out)

    def encode_headers(self, stream_id: int, headers: ResponseHeaders, end_stream: bool) -> None:
        """A response's headers (1xx included). A stream already reset is ignored."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        status = headers.status
        block = outbound(headers.entries, [_STATUS.get(status) or (b":status", str(status).encode())])
        self.conn.send_headers(stream_id, block, end_stream=end_stream)
        if end_stream:
            stream.end = stream.done = True
            self._maybe_close(stream)

    def encode_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Body: sent as far as the peer's windows allow, the rest held (see :meth:`buffered_bytes`)
        and sent as WINDOW_UPDATEs come."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.pending += data
        if self.stats is not None:
            self.stats.pending_send_bytes.inc(len(data))
        stream.end = end_stream
        self._flush(stream)

    def encode_trailers(self, stream_id: int, trailers: HeaderMap) -> None:
        """Trailers end the response, after any body still held (Envoy's pending_trailers_to_encode_).
        Empty trailers become an empty DATA frame ending the stream, as Envoy sends them."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.trailers = outbound(trailers.entries, [])
        stream.end = True
        self._flush(stream)

    def read_disable(self, stream_id: int, disable: bool) -> None:
        """Stop (or, once every disable is undone, resume) giving the peer window for this
        stream's request body: Envoy's ``readDisable`` on an HTTP/2 stream."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if disable:
            stream.read_disabled += 1
            return
        if stream.read_disabled == 0:
            return
        stream.read_disabled -= 1
        if stream.read_disabled == 0 and stream.unacked:
            n, stream.unacked = stream.unacked, 0
            self.conn.acknowledge_received_data(n, stream_id)

    def close(self) -> None:
        """The connection is gone: every stream is dropped (its gauges given back)."""
        for stream in list(self._streams.values()):
            self._drop(stream)

    def buffered_bytes(self, stream_id: int) -> int:
        """Response bytes held for lack of window: the caller's back-pressure signal (Envoy's
        stream high watermark is ``initial_stream_window_size``)."""
        stream = self._streams.get(stream_id)
        return len(stream.pending) if stream is not None else 0

    def reset_stream(self, stream_id: int, error_code: int = ErrorCodes.NO_ERROR) -> None:
        """Reset a stream (Envoy's reasonToReset: NO_ERROR for a local reset, REFUSED_STREAM,
        CONNECT_ERROR). Held body is dropped. Divergence from Envoy: no deferred reset after a
        completely encoded response whose frames still wait for window; it is cut."""
        self._reset(stream_id, error_code)

    def goaway(self, last_stream_id: int | None = None, error_code: int = ErrorCodes.NO_ERROR) -> None:
        """GOAWAY. ``last_stream_id`` defaults to the highest stream received (Envoy's goAway);
        2**31-1 is the drain's first notice (shutdownNotice). With NO_ERROR the streams at or
        below it go on, and later ones are refused; any other code ends the connection."""
        conn = self.conn
        if last_stream_id is None:
            last_stream_id = conn.highest_inbound_stream_id
        if self.stats is not None and last_stream_id != SHUTDOWN_NOTICE:
            # (Envoy's shutdownNotice is not counted: test_graceful_drain_sends_goaway.)
            self.stats.goaway_sent.inc()
        if error_code != ErrorCodes.NO_ERROR:
            conn.close_connection(error_code, last_stream_id=last_stream_id)
            self._fail(f"goaway {error_code}")
            return
        # h2's close_connection would close the state machine, and the streams with it: the
        # frame is written by hand, in order after what h2 has queued.
        self.goaway_last_stream_id = last_stream_id
        self._out.append(conn.data_to_send())
        self._out.append(GoAwayFrame(0, last_stream_id=last_stream_id, error_code=0).serialize())

    # -- internals ----------------------------------------------------------------------
    def _flush(self, stream: _Stream) -> None:
        if send_pending(self.conn, stream, self.stats):
            stream.done = True
            self._maybe_close(stream)

    def _reset(self, sid: int, code: int) -> _Stream | None:
        try:
            self.conn.reset_stream(sid, code)
        except h2.exceptions.StreamClosedError:
            pass  # (already closed both ways: nothing to reset)
        else:
            if self.stats is not None:
                self.stats.tx_reset.inc()
        stream = self._streams.get(sid)
        if stream is not None:
            self._drop(stream)
        return stream

    def _maybe_close(self, stream: _Stream) -> None:
        if stream.done and stream.remote_end:
            self._drop(stream)

    def _drop(self, stream: _Stream) -> None:
        if self._streams.pop(stream.stream_id, None) is None:
            return
        if stream.unacked:
            # The connection window held for a read-disabled stream goes back with it.
            n, stream.unacked = stream.unacked, 0
            try:
                self.conn.acknowledge_received_data(n, stream.stream_id)
            except h2.exceptions.ProtocolError:
                pass  # (the connection is closed)
        if self.stats is not None:
            self.stats.streams_active.dec()
            if stream.pending:
                self.stats.pending_send_bytes.dec(len(stream.pending))
        stream.pending = bytearray()


_HANDLERS: dict[type[h2.events.Event], Callable[[ServerCodec, Any], None]] = {
    h2.events.RequestReceived: ServerCodec._on_request,
    h2.events.DataReceived: ServerCodec._on_data,
    h2.events.TrailersReceived: ServerCodec._on_trailers,
    h2.events.StreamReset: ServerCodec._on_reset,
    h2.events.WindowUpdated: ServerCodec._on_window,
    h2.events.RemoteSettingsChanged: ServerCodec._on_window,
    h2.events.SettingsAcknowledged: ServerCodec._on_settings_ack,
}
