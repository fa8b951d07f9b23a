"""The filter manager: runs one stream's HTTP filters, as Envoy's ``FilterManager``
(``source/common/http/filter_manager.cc``) does.

Theory of operation:
- Each filter of the stream is wrapped in an :class:`ActiveStreamFilter`. The wrapper *is* the
  filter's callbacks (``continue_decoding()``, ``send_local_reply()``, ``encode_*()``...) and knows
  its place in the chain, so a filter resumes iteration from where *it* stopped and injects data
  after itself, never anybody else's position.
- Decoding runs the filters in order: headers, then data, then trailers. A filter that returns
  ``STOP_ITERATION`` from ``decode_headers`` still receives the body (Envoy), and the filters after
  it wait until it calls ``continue_decoding()`` (deliberate difference: Envoy also goes on when
  it returns ``CONTINUE`` from ``decode_data``; see ``_decode_data_from``). Data held for the
  filters after a stop is buffered up to the stream's buffer limit (the listener's ``per_connection_buffer_limit_bytes``): past it a
  ``STOP_ITERATION_AND_BUFFER`` filter's stream gets 413 ``Payload Too Large``
  (``request_payload_too_large``, ``downstream_rq_too_large``), and a ``STOP_ITERATION`` one
  (Envoy's ``StopIterationAndWatermark``) stops reading the request until iteration resumes.
  Trailers wait behind held data.
- Encoding runs the filters in reverse order, from the last; a filter without ``encode_*``
  methods is not an encoder (looked up once per filter type). A response held past the limit by
  a buffering encoder is answered 500 ``Internal Server Error`` (``response_payload_too_large``,
  ``rs_too_large``) before its headers went out, and reset after.
- After a local reply no further decoder filter runs. The subclass (the connection manager's
  ``ActiveStream``) writes what comes out of the chain (``_write_headers/_write_data/
  _write_trailers``) and resets the stream.

No I/O here: the module is driven in unit tests with fake streams.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluice.http.filter import DownstreamWatermarkCallbacks, FilterStatus
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders

if TYPE_CHECKING:
    from sluice.clock import TimerHandle
    from sluice.http.hcm_config import HcmConfig
    from sluice.http.stream_info import StreamInfo
    from sluice.http.upgrade import Tunnel
    from sluice.route.table import RouteEntry
    from sluice.tracing.zipkin_span import Span

log = logging.getLogger("sluice.http")

CONTINUE = FilterStatus.CONTINUE
STOP_ITERATION = FilterStatus.STOP_ITERATION
STOP_AND_BUFFER = FilterStatus.STOP_ITERATION_AND_BUFFER
STOP_NO_BUFFER = FilterStatus.STOP_ITERATION_NO_BUFFER


class _Caps:
    """What a filter type implements, looked up once per type (not per call)."""

    __slots__ = ("encodes", "decodes_trailers", "encodes_trailers")

    def __init__(self, cls: type) -> None:
        self.encodes = hasattr(cls, "encode_headers")
        self.decodes_trailers = hasattr(cls, "decode_trailers")
        self.encodes_trailers = hasattr(cls, "encode_trailers")


_CAPS: dict[type, _Caps] = {}


def _caps(cls: type) -> _Caps:
    caps = _CAPS.get(cls)
    if caps is None:
        caps = _CAPS[cls] = _Caps(cls)
    return caps


class ActiveStreamFilter:
    """One filter in one stream: its callbacks (decoder and encoder) and its place in the chain."""

    __slots__ = (
        "parent", "index", "filter", "stream_info", "request_headers", "random_value", "is_internal", "tunnel",
        "config", "call_later",
    )  # fmt: skip

    def __init__(self, parent: FilterManager, index: int) -> None:
        self.parent = parent
        self.index = index
        self.filter: Any = None
        # What does not change once the filters exist, copied (plain attributes, not property
        # calls: the router reads stream_info a dozen times per request).
        self.stream_info: StreamInfo = parent.stream_info
        self.request_headers: RequestHeaders = parent.request_headers
        self.random_value: int = parent.random_value
        self.is_internal: bool = parent.is_internal
        """Whether the request is internal (internal_address_config)."""
        self.tunnel: Tunnel | None = parent.tunnel
        """The stream's upgrade tunnel, when the request is an allowed upgrade."""
        self.config: HcmConfig = parent.config
        self.call_later: Callable[[float, Callable[[], None]], TimerHandle] = parent.config.call_later
        """Schedule ``fn`` after ``delay`` seconds (the connection manager's clock)."""

    def __repr__(self) -> str:
        return f"<ActiveStreamFilter {self.index} {type(self.filter).__name__}>"

    # -- what the filter reads ---------------------------------------------------------
    @property
    def route(self) -> RouteEntry | None:
        return self.parent.route

    @property
    def destroyed(self) -> bool:
        return self.parent.destroyed

    @property
    def active_span(self) -> Span | None:
        """The stream's span (Envoy's ``activeSpan``), whose context the router sends upstream."""
        return self.parent.span

    @property
    def decoder_buffer_limit(self) -> int:
        return self.parent.config.buffer_limit

    @property
    def conn(self) -> Any:
        # Deprecated: filters use the watermark callbacks below (kept while the router moves).
        return self.parent.conn  # type: ignore[attr-defined]

    @property
    def on_writable(self) -> Callable[[bool], None] | None:
        return None

    @on_writable.setter
    def on_writable(self, fn: Callable[[bool], None] | None) -> None:
        # Deprecated form of add_downstream_watermark_callbacks (kept while the router moves).
        if fn is not None:
            self.parent.watermark_callbacks.append(_WritableAdapter(fn))

    # -- iteration -----------------------------------------------------------------------
    def continue_decoding(self) -> None:
        self.parent.continue_decoding_at(self.index)

    def continue_encoding(self) -> None:
        self.parent.continue_encoding_at(self.index)

    def send_local_reply(
        self,
        status: int,
        body: str,
        details: str,
        flags: int = 0,
        modify_headers: Callable[[ResponseHeaders], None] | None = None,
        grpc_status: int | None = None,
    ) -> None:
        self.parent.send_local_reply(status, body, details, flags, modify_headers, grpc_status)

    def encode_headers(self, headers: ResponseHeaders, end_stream: bool) -> None:
        self.parent.encode_headers(headers, end_stream)

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        self.parent.encode_data(data, end_stream)

    def encode_trailers(self, trailers: HeaderMap) -> None:
        self.parent.encode_trailers(trailers)

    def inject_encoded_data(self, data: bytes, end_stream: bool, source: Any = None) -> None:
        """Envoy's ``injectEncodedDataToFilterChain``: body data this encoder took
        (STOP_ITERATION_NO_BUFFER) goes on through the encoders after it, towards the client.
        (``source`` is accepted for older callers; the wrapper knows its filter.)"""
        parent = self.parent
        if not parent.destroyed:
            parent.encode_data_from(self.index - 1, data, end_stream)

    # -- the rest of the stream ------------------------------------------------------------
    def reset_stream(self) -> None:
        self.parent.reset_stream()

    def clear_route_cache(self) -> None:
        self.parent.clear_route_cache()

    def on_decoder_filter_above_write_buffer_high_watermark(self) -> None:
        self.parent.read_disable(True)

    def on_decoder_filter_below_write_buffer_low_watermark(self) -> None:
        self.parent.read_disable(False)

    def on_encoder_filter_above_write_buffer_high_watermark(self) -> None:
        """This encoder holds too much response: the stream's watermark callbacks (the router's
        upstream) stop, as if the client had stopped reading."""
        self.parent.on_downstream_writable(False)

    def on_encoder_filter_below_write_buffer_low_watermark(self) -> None:
        self.parent.on_downstream_writable(True)

    def add_downstream_watermark_callbacks(self, callbacks: DownstreamWatermarkCallbacks) -> None:
        self.parent.watermark_callbacks.append(callbacks)

    def remove_downstream_watermark_callbacks(self, callbacks: DownstreamWatermarkCallbacks) -> None:
        wcb = self.parent.watermark_callbacks
        if callbacks in wcb:
            wcb.remove(callbacks)


class _WritableAdapter:
    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[bool], None]) -> None:
        self.fn = fn

    def on_above_write_buffer_high_watermark(self) -> None:
        self.fn(False)

    def on_below_write_buffer_low_watermark(self) -> None:
        self.fn(True)


class FilterManager:
    """Filter iteration for one stream (see the module docstring). Subclasses set ``config``,
    ``route``, ``stream_info``, ``request_headers`` and implement the ``_write_*`` methods,
    ``reset_stream``, ``read_disable``, ``send_local_reply`` and ``clear_route_cache``."""

    __slots__ = (
        "config", "request_headers", "stream_info", "route", "random_value", "is_internal",
        "filters", "local_reply_sent", "_destroyed", "watermark_callbacks",
        "_decode_index", "_headers_stopped", "_data_resume", "_decode_buffer", "_decode_end",
        "_decode_trailers", "_trailers_resume", "_decode_watermark", "_read_disabled_by_buffer",
        "_encode_index", "_encode_stopped", "_encode_headers", "_encode_buffer", "_encode_end",
        "_encode_trailers", "encoder_headers_sent",
    )  # fmt: skip

    config: HcmConfig
    request_headers: RequestHeaders
    stream_info: StreamInfo
    route: RouteEntry | None
    random_value: int
    is_internal: bool
    request_headers_end_stream: bool
    tunnel: Tunnel | None
    span: Span | None

    def init_filter_manager(self) -> None:
        self.filters: list[Any] = []
        """The stream's filters, in chain order (each made with its ActiveStreamFilter)."""
        self.local_reply_sent = False
        self._destroyed = False
        self.watermark_callbacks: list[DownstreamWatermarkCallbacks] = []
        self._decode_index = 0
        """Filters below this index have seen the request headers."""
        self._headers_stopped = False
        """Header iteration stopped at filter ``_decode_index - 1``."""
        self._data_resume = -1
        """The first filter that has not seen ``_decode_buffer`` (-1: nothing held)."""
        self._decode_buffer = bytearray()
        self._decode_end = False
        self._decode_trailers: HeaderMap | None = None
        self._trailers_resume = -1
        """The first filter that has not seen ``_decode_trailers`` (-1: none held)."""
        self._decode_watermark = True
        """The held request data is watermarked (read-disable past the limit), not a buffer (413)."""
        self._read_disabled_by_buffer = False
        self._encode_index = 0
        self._encode_stopped = False
        self._encode_headers: ResponseHeaders | None = None
        self._encode_buffer = bytearray()
        self._encode_end = False
        self._encode_trailers: HeaderMap | None = None
        self.encoder_headers_sent = False

    def create_filters(self, factories: list[Callable[[Any], Any]]) -> None:
        """One wrapper and one filter per factory (the factory gets the wrapper: its callbacks)."""
        filters = self.filters = []
        for i, factory in enumerate(factories):
            w = ActiveStreamFilter(self, i)
            f = w.filter = factory(w)
            filters.append(f)

    @property
    def destroyed(self) -> bool:
        return self._destroyed

    # -- hooks for the subclass ---------------------------------------------------------------
    def _write_headers(self, headers: ResponseHeaders, end_stream: bool) -> None:
        raise NotImplementedError

    def _write_data(self, data: bytes, end_stream: bool) -> None:
        raise NotImplementedError

    def _write_trailers(self, trailers: HeaderMap) -> None:
        raise NotImplementedError

    def reset_stream(self) -> None:
        raise NotImplementedError

    def read_disable(self, disable: bool) -> None:
        raise NotImplementedError

    def send_local_reply(
        self,
        status: int,
        body: str,
        details: str,
        flags: int = 0,
        modify_headers: Callable[[ResponseHeaders], None] | None = None,
        grpc_status: int | None = None,
    ) -> None:
        raise NotImplementedError

    def clear_route_cache(self) -> None:
        raise NotImplementedError

    # -- decoding ----------------------------------------------------------------------------
    def decode_headers(self) -> None:
        self._decode_headers_from(0, self.request_headers_end_stream)

    def _decode_headers_from(self, start: int, end_stream: bool) -> None:
        headers = self.request_headers
        filters = self.filters
        for i in range(start, len(filters)):
            self._decode_index = i + 1
            status = filters[i].decode_headers(headers, end_stream)
            if self.local_reply_sent or self._destroyed:
                return
            if status != CONTINUE:
                self._headers_stopped = True
                return
        self._headers_stopped = False

    def decode_data(self, data: bytes, end_stream: bool) -> None:
        """Request body from the codec, through every filter that has seen the headers (the
        filters before a halt see each chunk; from the halt on it joins what is held)."""
        self._decode_data_from(0, data, end_stream)

    def _decode_data_from(self, start: int, data: bytes, end_stream: bool) -> None:
        """Pass body data to filters ``start``.. that have seen the headers (a filter that
        stopped header iteration still receives data; the filters after it wait)."""
        filters = self.filters
        for i in range(start, len(filters)):
            if i >= self._decode_index or 0 <= self._data_resume <= i:
                self._hold_data(i, data, end_stream, True)
                return
            status = filters[i].decode_data(data, end_stream)
            if self.local_reply_sent or self._destroyed:
                return
            if status == CONTINUE:
                # Divergence from Envoy (filter.h: Continue from decodeData sends stopped headers
                # on first): the filter that stopped the headers must call continue_decoding();
                # the data waits for the filters after it. Pinned by test_filter_manager.py.
                continue
            if status == STOP_NO_BUFFER:
                return
            self._hold_data(i + 1, data, end_stream, status != STOP_AND_BUFFER)
            return

    def _hold_data(self, index: int, data: bytes, end_stream: bool, watermark: bool) -> None:
        if self._data_resume < 0 or index < self._data_resume:
            self._data_resume = index
        if not watermark:
            self._decode_watermark = False
        self._decode_buffer += data
        self._decode_end = self._decode_end or end_stream
        if len(self._decode_buffer) > self.config.buffer_limit:
            if not self._decode_watermark:
                # Envoy's requestDataTooLarge: a buffering filter cannot take more.
                self.config.stats.downstream_rq_too_large.inc()
                self.send_local_reply(413, "Payload Too Large", "request_payload_too_large")
            elif not self._read_disabled_by_buffer:
                self._read_disabled_by_buffer = True
                self.read_disable(True)

    def decode_trailers(self, trailers: HeaderMap) -> None:
        """Request trailers (they end the request) through the filters that have seen the
        headers and all the body; they wait for the others as the body does."""
        self._decode_trailers_from(0, trailers)

    def _decode_trailers_from(self, start: int, trailers: HeaderMap) -> None:
        filters = self.filters
        limit = self._decode_index
        if 0 <= self._data_resume < limit:
            limit = self._data_resume
        for i in range(start, len(filters)):
            if i >= limit:
                self._decode_trailers = trailers
                self._trailers_resume = i
                return
            f = filters[i]
            caps = _CAPS.get(type(f)) or _caps(type(f))
            if not caps.decodes_trailers:
                continue
            status = f.decode_trailers(trailers)
            if self.local_reply_sent or self._destroyed:
                return
            if status != CONTINUE:
                self._decode_trailers = trailers
                self._trailers_resume = i + 1
                return

    def continue_decoding(self) -> None:
        """Resume from whichever filter stopped (for callers holding the stream itself)."""
        if self._headers_stopped:
            self.continue_decoding_at(self._decode_index - 1)
        elif self._data_resume >= 0:
            self.continue_decoding_at(self._data_resume - 1)

    def continue_encoding(self) -> None:
        """Resume from the encoder that stopped (for callers holding the stream itself)."""
        self.continue_encoding_at(self._encode_index)

    def continue_decoding_at(self, index: int) -> None:
        """Filter ``index`` resumes: headers for the filters after it (if it stopped them),
        then the body held back, then trailers. A filter that did not stop is ignored."""
        if self.local_reply_sent or self._destroyed:
            return
        stopped_headers = self._headers_stopped and self._decode_index - 1 == index
        if not stopped_headers and self._data_resume - 1 != index and self._trailers_resume - 1 != index:
            if self._headers_stopped or self._data_resume >= 0 or self._trailers_resume >= 0:
                log.debug("continue_decoding from filter %d, which did not stop; ignored", index)
            return
        if stopped_headers:
            self._headers_stopped = False
            self._decode_headers_from(index + 1, self.request_headers_end_stream)
            if self.local_reply_sent or self._destroyed:
                return
        if self._data_resume >= 0 and not (self._headers_stopped and self._data_resume >= self._decode_index):
            start = self._data_resume
            data = bytes(self._decode_buffer)
            end = self._decode_end
            self._data_resume = -1
            self._decode_buffer = bytearray()
            self._decode_end = False
            self._decode_watermark = True
            if self._read_disabled_by_buffer:
                self._read_disabled_by_buffer = False
                self.read_disable(False)
            if data or end:
                self._decode_data_from(start, data, end)
            if self.local_reply_sent or self._destroyed:
                return
        trailers = self._decode_trailers
        if trailers is not None and self._trailers_resume >= 0:
            start = self._trailers_resume
            self._decode_trailers = None
            self._trailers_resume = -1
            self._decode_trailers_from(start, trailers)

    # -- encoding ----------------------------------------------------------------------------
    def encode_headers(self, headers: ResponseHeaders, end_stream: bool) -> None:
        """From the terminal filter (router) or a local reply: the encoders in reverse."""
        self._encode_headers_from(len(self.filters) - 1, headers, end_stream)

    def _encode_headers_from(self, start: int, headers: ResponseHeaders, end_stream: bool) -> None:
        filters = self.filters
        for i in range(start, -1, -1):
            f = filters[i]
            caps = _CAPS.get(type(f)) or _caps(type(f))
            if not caps.encodes:
                continue
            status = f.encode_headers(headers, end_stream)
            if status != CONTINUE:
                self._encode_stopped = True
                self._encode_index = i
                self._encode_headers = headers
                self._encode_end = end_stream
                return
        self.encoder_headers_sent = True
        self._write_headers(headers, end_stream)

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        if self._encode_stopped:
            self._hold_encoded(data, end_stream)
            return
        self.encode_data_from(len(self.filters) - 1, data, end_stream)

    def encode_data_from(self, start: int, data: bytes, end_stream: bool) -> None:
        filters = self.filters
        for i in range(start, -1, -1):
            f = filters[i]
            caps = _CAPS.get(type(f)) or _caps(type(f))
            if not caps.encodes:
                continue
            status = f.encode_data(data, end_stream)
            if status == STOP_NO_BUFFER:
                return
            if status != CONTINUE:
                self._encode_stopped = True
                self._encode_index = i
                self._hold_encoded(data, end_stream)
                return
        self._write_data(data, end_stream)

    def _hold_encoded(self, data: bytes, end_stream: bool) -> None:
        self._encode_buffer += data
        self._encode_end = self._encode_end or end_stream
        if len(self._encode_buffer) > self.config.buffer_limit:
            # Envoy's responseDataTooLarge: 500 while the headers are still ours, else a reset.
            self.config.stats.rs_too_large.inc()
            if self.encoder_headers_sent:
                self.reset_stream()
                return
            self._encode_stopped = False
            self._encode_headers = None
            self._encode_buffer = bytearray()
            self.response_too_large()

    def response_too_large(self) -> None:
        """The held response is dropped and answered with Envoy's 500 local reply (its
        encoders skipped, as Envoy sends it straight to the codec)."""
        raise NotImplementedError

    def encode_trailers(self, trailers: HeaderMap) -> None:
        if self._encode_stopped:
            self._encode_trailers = trailers
            self._encode_end = True
            return
        self._encode_trailers_from(len(self.filters) - 1, trailers)

    def _encode_trailers_from(self, start: int, trailers: HeaderMap) -> None:
        filters = self.filters
        for i in range(start, -1, -1):
            f = filters[i]
            caps = _CAPS.get(type(f)) or _caps(type(f))
            if not caps.encodes_trailers:
                continue
            status = f.encode_trailers(trailers)
            if status != CONTINUE:
                self._encode_stopped = True
                self._encode_index = i
                self._encode_trailers = trailers
                self._encode_end = True
                return
        self._write_trailers(trailers)

    def continue_encoding_at(self, index: int) -> None:
        """Resume after encoder ``index`` stopped: headers (if that is where it stopped) go on
        to the filters after it towards the client, then any body held meanwhile — the stopped
        filter sees that body too when it had stopped on headers, as in Envoy — then trailers."""
        if not self._encode_stopped or self._destroyed:
            return
        if index != self._encode_index:
            log.debug("continue_encoding from filter %d, which did not stop; ignored", index)
            return
        self._encode_stopped = False
        data = bytes(self._encode_buffer)
        trailers = self._encode_trailers
        end = self._encode_end and trailers is None
        self._encode_buffer = bytearray()
        self._encode_end = False
        self._encode_trailers = None
        headers = self._encode_headers
        if headers is not None:
            self._encode_headers = None
            headers_end = end and not data
            self._encode_headers_from(index - 1, headers, headers_end)
            if self._encode_stopped:
                # Stopped again further on: keep holding the body.
                self._encode_buffer += data
                self._encode_end = end
                self._encode_trailers = trailers
                return
            start = index
            if headers_end:
                return
        else:
            start = index - 1
        if data or end:
            self.encode_data_from(start, data, end)
            if self._encode_stopped:
                self._encode_trailers = trailers
                return
        if trailers is not None:
            self._encode_trailers_from(start, trailers)

    def inject_encoded_data(self, data: bytes, end_stream: bool, source: Any) -> None:
        """For callers holding the stream itself: ``source`` is the filter injecting."""
        if self._destroyed:
            return
        start = next((i for i, f in enumerate(self.filters) if f is source), -1)
        self.encode_data_from(start - 1, data, end_stream)

    # -- downstream watermarks ------------------------------------------------------------
    def on_downstream_writable(self, writable: bool) -> None:
        for w in list(self.watermark_callbacks):
            if writable:
                w.on_below_write_buffer_low_watermark()
            else:
                w.on_above_write_buffer_high_watermark()

    def destroy_filters(self) -> None:
        for f in self.filters:
            try:
                f.on_destroy()
            except Exception:  # noqa: BLE001 - one filter's bug must not leak the stream
                log.exception("filter on_destroy failed")
        # Filters hold their callbacks; dropping them breaks the cycle so reference counting
        # frees a finished request at once (no work left for the cycle collector).
        self.filters = []
        self.watermark_callbacks = []
