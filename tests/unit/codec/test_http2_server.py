"""The HTTP/2 server codec without sockets: an h2 client connection is the peer, in memory."""

from __future__ import annotations

from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, Frame, HeadersFrame, WindowUpdateFrame

from sluice.codec import http2
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.stats.store import Store

GET = [(":method", "GET"), (":scheme", "https"), (":authority", "h"), (":path", "/p")]


@dataclass
class Stream:
    sid: int
    headers: RequestHeaders
    end: bool
    body: list[tuple[bytes, bool]] = field(default_factory=list)
    trailers: list[list[str]] | None = None
    resets: list[str] = field(default_factory=list)

    def on_request_body(self, data: bytes, end_stream: bool) -> None:
        self.body.append((data, end_stream))

    def on_request_trailers(self, trailers: HeaderMap) -> None:
        self.trailers = trailers.entries

    def on_reset(self, reason: str) -> None:
        self.resets.append(reason)


class Pair:
    """The codec and an h2 client joined in memory."""

    def __init__(self, settings: http2.Http2Settings = http2.DEFAULT_SETTINGS, window: int | None = None) -> None:
        self.streams: list[Stream] = []
        self.invalid: list[Stream] = []
        self.begun: list[int] = []
        self.stats = http2.Http2CodecStats.declare(Store(), "http2.")
        self.codec = http2.ServerCodec(self, settings, self.stats)
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.client.initiate_connection()
        if window is not None:
            self.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.events: list[h2.events.Event] = []
        self.send()
        self.recv()

    def new_stream(self, headers: RequestHeaders, end_stream: bool) -> Stream:
        s = Stream(self.codec.current_stream_id, headers, end_stream)
        self.streams.append(s)
        return s

    def new_invalid_stream(self) -> Stream:
        """(A stream refused at its headers: Envoy's connection manager has it all the same.)"""
        s = Stream(self.codec.current_stream_id, RequestHeaders("GET", "/", None, [], "http", "2"), False)
        self.invalid.append(s)
        return s

    def begin_stream(self, sid: int) -> None:
        self.begun.append(sid)

    def send(self, raw: bytes | None = None) -> http2.CodecError | None:
        return self.codec.feed(self.client.data_to_send() if raw is None else raw)

    def recv(self) -> list[h2.events.Event]:
        events = self.client.receive_data(self.codec.data_to_send())
        self.events += events
        self.send()  # (the client's ACKs and window updates)
        return events


def frames(data: bytes) -> list[tuple[str, int, int | None]]:
    """(type, stream id, error code) of each frame: a client that got GOAWAY takes no more (h2)."""
    out = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        out.append((type(frame).__name__, frame.stream_id, getattr(frame, "error_code", None)))
        view = view[9 + length :]
    return out


def of(events: list[h2.events.Event], kind: type) -> list[h2.events.Event]:
    return [e for e in events if isinstance(e, kind)]


def test_get_headers_only_is_one_stream_ended() -> None:
    p = Pair()
    p.client.send_headers(1, [*GET, ("x-a", "1")], end_stream=True)
    assert p.send() is None
    (s,) = p.streams
    h = s.headers
    assert (s.sid, h.method, h.path, h.authority, h.scheme, h.version, s.end) == (1, "GET", "/p", "h", "https", "2", True)
    assert h.entries == [["x-a", "1"]]
    assert p.stats.streams_active.value == 1


def test_post_body_in_frames_then_trailers() -> None:
    p = Pair()
    p.client.send_headers(1, [*GET[:3], (":path", "/u"), ("content-type", "text/plain")])
    p.client.send_data(1, b"he")
    p.client.send_data(1, b"llo")
    p.client.send_headers(1, [("grpc-status", "0")], end_stream=True)
    assert p.send() is None
    (s,) = p.streams
    assert s.end is False
    assert s.body == [(b"he", False), (b"llo", False)]
    assert s.trailers == [["grpc-status", "0"]]
    assert p.stats.trailers.value == 1


def test_two_streams_interleaved_keep_their_ids() -> None:
    p = Pair()
    p.client.send_headers(1, GET)
    p.client.send_headers(3, [*GET[:3], (":path", "/b")])
    p.client.send_data(3, b"B", end_stream=True)
    p.client.send_data(1, b"A", end_stream=True)
    assert p.send() is None
    a, b = p.streams
    assert (a.sid, a.headers.path, a.body) == (1, "/p", [(b"A", True)])
    assert (b.sid, b.headers.path, b.body) == (3, "/b", [(b"B", True)])


def test_response_headers_data_trailers_reach_the_client() -> None:
    p = Pair()
    p.client.send_headers(1, GET, end_stream=True)
    p.send()
    p.codec.encode_headers(1, ResponseHeaders(200, [["content-type", "text/plain"]]), False)
    p.codec.encode_data(1, b"body", False)
    p.codec.encode_trailers(1, HeaderMap([["grpc-status", "0"]]))
    events = p.recv()
    (resp,) = of(events, h2.events.ResponseReceived)
    assert resp.headers == [(b":status", b"200"), (b"content-type", b"text/plain")]
    assert [e.data for e in of(events, h2.events.DataReceived)] == [b"body"]
    (tr,) = of(events, h2.events.TrailersReceived)
    assert tr.headers == [(b"grpc-status", b"0")]
    assert len(of(events, h2.events.StreamEnded)) == 1
    assert p.stats.streams_active.value == 0


def test_response_beyond_the_client_window_waits_for_window_update() -> None:
    p = Pair(window=10)
    p.client.send_headers(1, GET, end_stream=True)
    p.send()
    p.codec.encode_headers(1, ResponseHeaders(200), False)
    p.codec.encode_data(1, b"x" * 25, True)
    assert p.codec.buffered_bytes(1) == 15
    assert p.stats.pending_send_bytes.value == 15
    events = p.recv()
    assert b"".join(e.data for e in of(events, h2.events.DataReceived)) == b"x" * 10
    assert of(events, h2.events.StreamEnded) == []
    p.client.increment_flow_control_window(20, stream_id=1)
    p.send()
    assert p.codec.buffered_bytes(1) == 0
    events = p.recv()
    assert b"".join(e.data for e in of(events, h2.events.DataReceived)) == b"x" * 15
    assert len(of(events, h2.events.StreamEnded)) == 1
    assert p.stats.pending_send_bytes.value == 0


def test_trailers_wait_behind_held_body() -> None:
    p = Pair(window=4)
    p.client.send_headers(1, GET, end_stream=True)
    p.send()
    p.codec.encode_headers(1, ResponseHeaders(200), False)
    p.codec.encode_data(1, b"abcdef", False)
    p.codec.encode_trailers(1, HeaderMap([["t", "1"]]))
    assert of(p.recv(), h2.events.TrailersReceived) == []
    p.client.increment_flow_control_window(10, stream_id=1)
    p.send()
    events = p.recv()
    assert [e.data for e in of(events, h2.events.DataReceived)] == [b"ef"]
    assert [e.headers for e in of(events, h2.events.TrailersReceived)] == [[(b"t", b"1")]]


def test_client_rst_stream_reaches_on_reset() -> None:
    p = Pair()
    p.client.send_headers(1, GET)
    p.send()
    p.client.reset_stream(1, ErrorCodes.CANCEL)
    p.send()
    assert p.streams[0].resets == ["remote reset"]
    assert p.stats.rx_reset.value == 1
    assert p.stats.streams_active.value == 0
    p.codec.encode_headers(1, ResponseHeaders(200), True)  # (ignored: the stream is gone)
    assert p.codec.data_to_send() == b""


def test_client_refused_stream_reason() -> None:
    p = Pair()
    p.client.send_headers(1, GET)
    p.send()
    p.client.reset_stream(1, ErrorCodes.REFUSED_STREAM)
    p.send()
    assert p.streams[0].resets == ["remote refused stream reset"]


def test_missing_pseudo_header_resets_that_stream_only_when_stream_errors_allowed() -> None:
    p = Pair(http2.Http2Settings(stream_error_on_invalid_http_message=True))
    p.client.config.validate_outbound_headers = False
    p.client.send_headers(1, GET)
    p.client.send_headers(3, [(":method", "GET"), (":authority", "h"), (":path", "/")], end_stream=True)
    p.client.send_data(1, b"ok", end_stream=True)
    assert p.send() is None
    (s,) = p.streams
    assert (s.sid, s.body) == (1, [(b"ok", True)])
    resets = of(p.recv(), h2.events.StreamReset)
    assert [(e.stream_id, e.error_code) for e in resets] == [(3, ErrorCodes.PROTOCOL_ERROR)]
    assert of(p.events, h2.events.ConnectionTerminated) == []
    assert (p.stats.rx_messaging_error.value, p.stats.tx_reset.value) == (1, 1)
    p.codec.encode_headers(1, ResponseHeaders(204), True)
    assert len(of(p.recv(), h2.events.ResponseReceived)) == 1


def test_missing_pseudo_header_ends_the_connection_by_default() -> None:
    p = Pair()
    p.client.config.validate_outbound_headers = False
    p.client.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", "h")], end_stream=True)
    err = p.send()
    assert err == http2.CODEC_ERROR and p.codec.error_reason == "http2.violation.of.messaging.rule"
    # Envoy writes nothing (no RST_STREAM, no GOAWAY): the connection just closes.
    assert p.codec.data_to_send() == b""
    assert p.streams == [] and [s.sid for s in p.invalid] == [1]  # (counted, never started)
    assert (p.stats.rx_messaging_error.value, p.stats.tx_reset.value) == (1, 0)


def test_connection_specific_header_is_malformed() -> None:
    p = Pair(http2.Http2Settings(stream_error_on_invalid_http_message=True))
    p.client.config.validate_outbound_headers = False
    p.client.config.normalize_outbound_headers = False
    p.client.send_headers(1, [*GET, ("te", "gzip")], end_stream=True)
    p.client.send_headers(3, [*GET, ("transfer-encoding", "chunked")], end_stream=True)
    p.client.send_headers(5, [*GET, ("te", "trailers")], end_stream=True)
    p.send()
    assert [s.sid for s in p.streams] == [5]
    assert [(e.stream_id, e.error_code) for e in of(p.recv(), h2.events.StreamReset)] == [
        (1, ErrorCodes.PROTOCOL_ERROR),
        (3, ErrorCodes.PROTOCOL_ERROR),
    ]


def test_plain_connect_and_refused_extended_connect() -> None:
    p = Pair(http2.Http2Settings(stream_error_on_invalid_http_message=True))
    p.client.send_headers(1, [(":method", "CONNECT"), (":authority", "h:443")])
    p.send()
    (s,) = p.streams
    assert (s.headers.method, s.headers.path, s.headers.authority) == ("CONNECT", "", "h:443")
    p.client.config.validate_outbound_headers = False
    p.client.send_headers(3, [(":method", "CONNECT"), (":protocol", "websocket"), *GET[1:]])
    p.send()
    assert len(p.streams) == 1
    assert [(e.stream_id, e.error_code) for e in of(p.recv(), h2.events.StreamReset)] == [(3, ErrorCodes.PROTOCOL_ERROR)]


def test_header_list_over_the_limit_resets_that_stream() -> None:
    p = Pair(http2.Http2Settings(max_headers_kb=1))
    p.client.send_headers(1, [*GET, ("x-big", "v" * 1100)])
    p.client.send_data(1, b"dropped", end_stream=True)  # (after the reset, in the same read)
    p.client.send_headers(3, GET, end_stream=True)
    assert p.send() is None
    assert [s.sid for s in p.streams] == [3]
    assert [(e.stream_id, e.error_code) for e in of(p.recv(), h2.events.StreamReset)] == [(1, ErrorCodes.INTERNAL_ERROR)]
    # (The byte limit is oghttp2's: Envoy's header_overflow counts only max_headers_count.)
    assert (p.stats.header_overflow.value, p.stats.tx_reset.value) == (0, 1)
    ((s1,),) = [p.invalid]
    assert (s1.sid, s1.resets) == (1, ["remote reset"])


def test_header_count_over_the_limit_resets_that_stream() -> None:
    p = Pair(http2.Http2Settings(max_headers_count=5))
    p.client.send_headers(1, [*GET, ("a", "1"), ("b", "2")], end_stream=True)  # 6 with pseudo-headers
    p.client.send_headers(3, [*GET, ("a", "1")], end_stream=True)  # 5
    p.send()
    assert [s.sid for s in p.streams] == [3]
    assert p.stats.header_overflow.value == 1


def test_bad_preface_is_a_codec_error_without_goaway() -> None:
    codec = http2.ServerCodec(Pair())
    err = codec.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert err == http2.CODEC_ERROR and err.details == "codec_error:unknown_error"
    # Only the server's SETTINGS (written before the preface was read); no GOAWAY.
    assert [f[0] for f in frames(codec.data_to_send())] == ["SettingsFrame"]
    assert codec.feed(b"more") is err  # (nothing more is parsed)


def test_settings_then_ack_then_connection_window_update() -> None:
    codec = http2.ServerCodec(Pair())
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    assert codec.feed(client.data_to_send()) is None
    out = [(f[0], f[1]) for f in frames(codec.data_to_send())]
    assert out == [("SettingsFrame", 0), ("SettingsFrame", 0), ("WindowUpdateFrame", 0)]  # (the second: the ACK)


def test_headers_on_a_closed_or_lower_stream_id_are_ignored() -> None:
    p = Pair()
    p.client.send_headers(5, GET, end_stream=True)
    p.send()
    p.codec.encode_headers(5, ResponseHeaders(204), True)
    p.recv()
    flags = ["END_HEADERS", "END_STREAM"]
    raw = HeadersFrame(5, p.client.encoder.encode(GET), flags=flags).serialize()  # reused
    raw += HeadersFrame(3, p.client.encoder.encode([*GET[:3], (":path", "/3")]), flags=flags).serialize()  # lower
    assert p.send(raw) is None
    assert [s.sid for s in p.streams] == [5] and p.codec.data_to_send() == b""
    p.client.send_headers(7, [*GET[:3], (":path", "/3")], end_stream=True)  # (HPACK state still shared)
    assert p.send() is None
    assert [s.sid for s in p.streams] == [5, 7] and p.streams[1].headers.path == "/3"


def test_window_update_overflowing_a_stream_is_a_silent_connection_error() -> None:
    p = Pair()
    p.client.send_headers(1, GET, end_stream=True)
    p.send()
    p.recv()
    assert p.send(WindowUpdateFrame(1, window_increment=2**31 - 1).serialize()) == http2.CODEC_ERROR
    assert p.codec.data_to_send() == b""


def test_max_concurrent_streams_refused_before_the_ack_fatal_after() -> None:
    p = Pair(http2.Http2Settings(max_concurrent_streams=1))
    p.codec = http2.ServerCodec(p, http2.Http2Settings(max_concurrent_streams=1))  # (a fresh connection)
    cli = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    cli.initiate_connection()
    p.codec.feed(cli.data_to_send())
    p.codec.data_to_send()  # (not given to the client: it never ACKs our SETTINGS)
    cli.send_headers(1, GET)
    cli.send_headers(3, GET, end_stream=True)
    assert p.codec.feed(cli.data_to_send()) is None
    assert [s.sid for s in p.streams] == [1]
    assert [(f[1], f[2]) for f in frames(p.codec.data_to_send()) if f[0] == "RstStreamFrame"] == [(3, ErrorCodes.REFUSED_STREAM)]
    q = Pair(http2.Http2Settings(max_concurrent_streams=1))  # (this client ACKed)
    q.client.send_headers(1, GET)
    assert q.send() is None
    extra = HeadersFrame(3, q.client.encoder.encode(GET), flags=["END_HEADERS", "END_STREAM"]).serialize()
    assert q.send(extra) == http2.CODEC_ERROR and [s.sid for s in q.streams] == [1]
    assert q.codec.data_to_send() == b""


def test_end_stream_with_a_content_length_is_malformed() -> None:
    p = Pair(http2.Http2Settings(stream_error_on_invalid_http_message=True))
    p.client.send_headers(1, [*GET, ("content-length", "5")], end_stream=True)
    p.client.send_headers(3, [*GET, ("content-length", "0")], end_stream=True)
    p.send()
    assert [s.sid for s in p.streams] == [3] and [s.sid for s in p.invalid] == [1]
    assert [(e.stream_id, e.error_code) for e in of(p.recv(), h2.events.StreamReset)] == [(1, ErrorCodes.PROTOCOL_ERROR)]
    assert p.invalid[0].resets == ["protocol error"]


def test_garbage_frame_after_preface_is_goaway() -> None:
    p = Pair()
    # A SETTINGS frame with a length that is not a multiple of 6: FRAME_SIZE_ERROR.
    assert p.send(b"\x00\x00\x05\x04\x00\x00\x00\x00\x00hello") == http2.CODEC_ERROR
    (t,) = of(p.client.receive_data(p.codec.data_to_send()), h2.events.ConnectionTerminated)
    assert t.error_code == ErrorCodes.FRAME_SIZE_ERROR


def test_goaway_lets_open_streams_finish_and_refuses_new_ones() -> None:
    p = Pair()
    p.client.send_headers(1, GET, end_stream=True)
    p.send()
    p.codec.goaway()
    (t,) = of(p.recv(), h2.events.ConnectionTerminated)
    assert (t.error_code, t.last_stream_id) == (ErrorCodes.NO_ERROR, 1)
    assert p.stats.goaway_sent.value == 1
    p.codec.encode_headers(1, ResponseHeaders(200), True)
    assert frames(p.codec.data_to_send()) == [("HeadersFrame", 1, None)]


def test_goaway_refuses_streams_above_last_stream_id() -> None:
    p = Pair()
    p.codec.goaway(last_stream_id=0)
    assert frames(p.codec.data_to_send()) == [("GoAwayFrame", 0, 0)]
    p.client.send_headers(1, GET, end_stream=True)
    p.send()
    assert p.streams == []
    assert frames(p.codec.data_to_send()) == [("RstStreamFrame", 1, ErrorCodes.REFUSED_STREAM)]
    assert p.stats.tx_reset.value == 1


def test_cookies_joined_and_host_without_authority() -> None:
    p = Pair()
    p.client.send_headers(
        1,
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("cookie", "a=1"), ("host", "example"), ("x", "y"), ("cookie", "b=2")],
        end_stream=True,
    )
    p.send()
    h = p.streams[0].headers
    assert h.authority == "example"
    assert h.entries == [["x", "y"], ["cookie", "a=1; b=2"]]


def test_host_after_authority_is_discarded() -> None:
    p = Pair()
    p.client.config.validate_outbound_headers = False
    p.client.send_headers(1, [*GET, ("host", "other")], end_stream=True)
    p.send()
    h = p.streams[0].headers
    assert (h.authority, h.entries) == ("h", [])


def test_settings_and_connection_window_are_envoys() -> None:
    p = Pair()
    remote = p.client.remote_settings
    # As captured from Envoy 1.40 (tests/integration/edge_cases.py h2-preface): SETTINGS
    # HEADER_TABLE_SIZE 4096, ENABLE_CONNECT_PROTOCOL 0, MAX_CONCURRENT_STREAMS 1024,
    # INITIAL_WINDOW_SIZE 16 MiB, then WINDOW_UPDATE to a 24 MiB connection window.
    assert remote.max_concurrent_streams == 1024
    assert remote.initial_window_size == 16 * 1024 * 1024
    assert remote.max_header_list_size is None
    assert p.client.outbound_flow_control_window == 24 * 1024 * 1024


def test_body_longer_than_its_content_length_resets_the_stream_only() -> None:
    p = Pair()  # (override off: still a stream reset, as Envoy's HandleContentLengthError)
    p.client.config.validate_outbound_headers = False
    p.client.send_headers(1, [*GET, ("content-length", "3")])
    p.send()
    raw = DataFrame(1, b"12345", flags=["END_STREAM"]).serialize()
    assert p.send(raw) is None
    assert [(f[0], f[1], f[2]) for f in frames(p.codec.data_to_send()) if f[0] == "RstStreamFrame"] == [
        ("RstStreamFrame", 1, ErrorCodes.PROTOCOL_ERROR)
    ]
    assert p.streams[0].resets == ["protocol error"]
    assert (p.stats.rx_messaging_error.value, p.stats.tx_reset.value) == (0, 1)


def test_headers_after_end_stream_and_zero_window_update_are_silent_connection_errors() -> None:
    p = Pair()
    p.client.send_headers(1, GET, end_stream=True)
    p.send()
    p.recv()
    again = HeadersFrame(1, p.client.encoder.encode([("x-t", "1")]), flags=["END_HEADERS", "END_STREAM"]).serialize()
    assert p.send(again) == http2.CODEC_ERROR and p.codec.data_to_send() == b""
    q = Pair()
    q.client.send_headers(1, GET)
    q.send()
    q.recv()
    assert q.send(b"\x00\x00\x04\x08\x00\x00\x00\x00\x01\x00\x00\x00\x00") == http2.CODEC_ERROR  # zero, on stream 1
    assert q.codec.data_to_send() == b""


def test_a_headers_frame_still_arriving_begins_its_stream_once() -> None:
    p = Pair()
    raw = HeadersFrame(1, p.client.encoder.encode(GET), flags=["END_HEADERS", "END_STREAM"]).serialize()
    assert p.send(raw[:10]) is None and p.begun == [1] and p.streams == []
    assert p.send(raw[10:12]) is None and p.begun == [1]  # (once)
    assert p.send(raw[12:]) is None
    assert p.begun == [1] and [s.sid for s in p.streams] == [1]
    p.send(raw[:8])  # (the next frame's header is not in yet: nothing begun)
    assert p.begun == [1]
