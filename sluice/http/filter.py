"""The HTTP filter contract, after Envoy's ``envoy/http/filter.h``.

Filters are synchronous objects, one per stream. Decoder methods run in chain order on the
request, encoder methods in reverse order on the response. A method returns a status:

- ``CONTINUE``: pass to the next filter.
- ``STOP_ITERATION``: stop here; the filter resumes later with ``callbacks.continue_decoding()``
  (or ``continue_encoding()``). For data, ``STOP_ITERATION_AND_BUFFER`` keeps the data buffered
  so that the next filters see it when iteration resumes; ``STOP_ITERATION_NO_BUFFER`` drops the
  chunk from the chain (the filter took it, like the router does).

A filter may answer by itself with ``callbacks.send_local_reply(...)``; after a local reply no
further decoder filter runs for that stream. Something that needs to wait (a delay, a timer)
schedules through ``callbacks.call_later`` and returns ``STOP_ITERATION``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from asyncio import TimerHandle

    from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
    from sluice.http.stream_info import StreamInfo
    from sluice.route.table import RouteEntry


class FilterStatus(enum.IntEnum):
    CONTINUE = 0
    STOP_ITERATION = 1
    STOP_ITERATION_AND_BUFFER = 2
    STOP_ITERATION_NO_BUFFER = 3


CONTINUE = FilterStatus.CONTINUE
STOP_ITERATION = FilterStatus.STOP_ITERATION
STOP_ITERATION_AND_BUFFER = FilterStatus.STOP_ITERATION_AND_BUFFER
STOP_ITERATION_NO_BUFFER = FilterStatus.STOP_ITERATION_NO_BUFFER


class DecoderCallbacks(Protocol):
    """What a decoder filter can do to its stream."""

    @property
    def route(self) -> RouteEntry | None: ...
    @property
    def stream_info(self) -> StreamInfo: ...
    @property
    def request_headers(self) -> RequestHeaders: ...

    def continue_decoding(self) -> None: ...
    def send_local_reply(
        self,
        status: int,
        body: str,
        details: str,
        flags: int = 0,
        modify_headers: Callable[[ResponseHeaders], None] | None = None,
        grpc_status: int | None = None,
    ) -> None:
        """Envoy's ``sendLocalReply``. A gRPC request gets a trailers-only answer instead
        (``:status`` 200, ``grpc-status`` — ``grpc_status``, else mapped from ``status`` —
        and ``grpc-message`` from ``body``), as Envoy's ``prepareLocalReply`` makes it."""
    def encode_headers(self, headers: ResponseHeaders, end_stream: bool) -> None: ...
    def encode_data(self, data: bytes, end_stream: bool) -> None: ...
    def encode_trailers(self, trailers: HeaderMap) -> None: ...
    def reset_stream(self) -> None: ...
    def call_later(self, delay: float, fn: Callable[[], None]) -> TimerHandle: ...
    def clear_route_cache(self) -> None: ...
    def on_decoder_filter_above_write_buffer_high_watermark(self) -> None:
        """The filter's own upstream is backed up: stop reading this stream's request body
        (HTTP/1: the connection stops reading; HTTP/2: this stream's window stays closed)."""
    def on_decoder_filter_below_write_buffer_low_watermark(self) -> None: ...
    def add_downstream_watermark_callbacks(self, callbacks: DownstreamWatermarkCallbacks) -> None:
        """Told when the client stops/starts taking the response (to pause the upstream)."""
    def remove_downstream_watermark_callbacks(self, callbacks: DownstreamWatermarkCallbacks) -> None: ...


class DownstreamWatermarkCallbacks(Protocol):
    """Envoy's ``DownstreamWatermarkCallbacks``: the response path towards the client is
    backed up (above high) or drained again (below low)."""

    def on_above_write_buffer_high_watermark(self) -> None: ...
    def on_below_write_buffer_low_watermark(self) -> None: ...


class EncoderCallbacks(Protocol):
    @property
    def stream_info(self) -> StreamInfo: ...
    def continue_encoding(self) -> None: ...


class StreamFilter(Protocol):
    """A filter on both paths. Implement the methods you need on :class:`PassThroughFilter`."""

    def set_decoder_callbacks(self, callbacks: DecoderCallbacks) -> None: ...
    def set_encoder_callbacks(self, callbacks: EncoderCallbacks) -> None: ...
    def decode_headers(self, headers: RequestHeaders, end_stream: bool) -> FilterStatus: ...
    def decode_data(self, data: bytes, end_stream: bool) -> FilterStatus: ...
    def decode_trailers(self, trailers: HeaderMap) -> FilterStatus: ...
    def encode_headers(self, headers: ResponseHeaders, end_stream: bool) -> FilterStatus: ...
    def encode_data(self, data: bytes, end_stream: bool) -> FilterStatus: ...
    def encode_trailers(self, trailers: HeaderMap) -> FilterStatus: ...
    def on_destroy(self) -> None: ...


class PassThroughFilter:
    """Continues everything; subclass and override what you need."""

    decoder_callbacks: DecoderCallbacks
    encoder_callbacks: EncoderCallbacks

    def set_decoder_callbacks(self, callbacks: DecoderCallbacks) -> None:
        self.decoder_callbacks = callbacks

    def set_encoder_callbacks(self, callbacks: EncoderCallbacks) -> None:
        self.encoder_callbacks = callbacks

    def decode_headers(self, headers: RequestHeaders, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def decode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def decode_trailers(self, trailers: HeaderMap) -> FilterStatus:
        return CONTINUE

    def encode_headers(self, headers: ResponseHeaders, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def encode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def encode_trailers(self, trailers: HeaderMap) -> FilterStatus:
        return CONTINUE

    def on_destroy(self) -> None:
        pass


class FilterFactory(Protocol):
    """Built once per HCM from a filter's config; makes one filter per stream."""

    def __call__(self, callbacks: Any) -> StreamFilter: ...
