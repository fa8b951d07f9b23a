"""The HTTP/2 client codec against the server codec, in memory (no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame

from sluice.codec import http2, http2_client
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.stats.store import Store


@dataclass
class Response:
    """What the client side hears about one stream."""

    informational: list[int] = field(default_factory=list)
    status: int | None = None
    headers: list[list[str]] = field(default_factory=list)
    end_at_headers: bool = False
    body: list[tuple[bytes, bool]] = field(default_factory=list)
    trailers: list[list[str]] | None = None
    resets: list[str] = field(default_factory=list)

    def on_response_informational(self, status: int, headers: list[list[str]]) -> None:
        self.informational.append(status)

    def on_response_headers(self, status: int, headers: list[list[str]], end_stream: bool) -> None:
        self.status, self.headers, self.end_at_headers = status, headers, end_stream

    def on_response_data(self, data: bytes, end_stream: bool) -> None:
        self.body.append((data, end_stream))

    def on_response_trailers(self, trailers: HeaderMap) -> None:
        self.trailers = trailers.entries

    def on_reset(self, reason: str) -> None:
        self.resets.append(reason)


@dataclass
class ServerStream:
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
    """A client codec and a server codec joined in memory; ``pump`` moves bytes both ways."""

    def __init__(
        self,
        client_settings: http2.Http2Settings = http2.DEFAULT_SETTINGS,
        server_settings: http2.Http2Settings = http2.DEFAULT_SETTINGS,
    ) -> None:
        self.goaways: list[tuple[int, int]] = []
        self.stats = http2_client.Http2ClientStats.declare(Store(), "cluster.c.http2.")
        self.client = http2_client.ClientCodec(self, client_settings, self.stats)
        self.streams: list[ServerStream] = []
        self.server = http2.ServerCodec(self, server_settings)
        self.pump()

    # server callbacks
    def new_stream(self, headers: RequestHeaders, end_stream: bool) -> ServerStream:
        s = ServerStream(self.server.current_stream_id, headers, end_stream)
        self.streams.append(s)
        return s

    # client callbacks
    def on_goaway(self, last_stream_id: int, error_code: int) -> None:
        self.goaways.append((last_stream_id, error_code))

    def pump(self) -> None:
        for _ in range(10):
            up = self.client.data_to_send()
            if up:
                assert self.server.feed(up) is None, self.server.error_reason
            down = self.server.data_to_send()
            if down:
                self.client.feed(down)
            if not up and not down:
                return

    def request(self, method: str = "GET", end: bool = True, entries: list[list[str]] | None = None) -> tuple[int, Response]:
        r = Response()
        sid = self.client.new_stream(r)
        self.client.encode_headers(sid, RequestHeaders(method, "/p", "h", entries or []), end)
        self.pump()
        return sid, r


def test_request_and_response_with_bodies() -> None:
    p = Pair()
    sid, r = p.request("POST", end=False, entries=[["content-type", "text/plain"], ["connection", "close"], ["te", "gzip"]])
    p.client.encode_data(sid, b"hello", True)
    p.pump()
    s = p.streams[0]
    assert s.headers.method == "POST" and s.headers.path == "/p" and s.headers.authority == "h"
    assert s.headers.entries == [["content-type", "text/plain"]]  # connection-specific dropped
    assert s.body == [(b"hello", True)]
    p.server.encode_headers(s.sid, ResponseHeaders(200, [["x-a", "1"]]), False)
    p.server.encode_data(s.sid, b"world", True)
    p.pump()
    assert r.status == 200 and r.headers == [["x-a", "1"]] and not r.end_at_headers
    assert r.body == [(b"world", True)]
    assert p.client.active_streams == 0
    assert p.stats.streams_active.value == 0


def test_informational_then_final_headers_only() -> None:
    p = Pair()
    _, r = p.request()
    s = p.streams[0]
    p.server.encode_headers(s.sid, ResponseHeaders(100), False)
    p.server.encode_headers(s.sid, ResponseHeaders(204), True)
    p.pump()
    assert r.informational == [100] and r.status == 204 and r.end_at_headers


def test_trailers_both_ways() -> None:
    p = Pair()
    sid, r = p.request("POST", end=False)
    p.client.encode_data(sid, b"x", False)
    p.client.encode_trailers(sid, HeaderMap([["grpc-status", "0"]]))
    p.pump()
    s = p.streams[0]
    assert s.body == [(b"x", False)] and s.trailers == [["grpc-status", "0"]]
    p.server.encode_headers(s.sid, ResponseHeaders(200), False)
    p.server.encode_data(s.sid, b"y", False)
    p.server.encode_trailers(s.sid, HeaderMap([["x-t", "v"]]))
    p.pump()
    assert r.body == [(b"y", False)] and r.trailers == [["x-t", "v"]]
    assert p.stats.trailers.value == 0  # (Envoy counts http2.trailers on the server side only)


def test_many_streams_on_one_connection_and_capacity() -> None:
    p = Pair(server_settings=http2.Http2Settings(max_concurrent_streams=3))
    assert p.client.available_streams == 3
    rs = [p.request()[1] for _ in range(3)]
    assert p.client.available_streams == 0 and p.client.active_streams == 3
    for s in p.streams:
        p.server.encode_headers(s.sid, ResponseHeaders(200), True)
    p.pump()
    assert [r.status for r in rs] == [200, 200, 200]
    assert p.client.available_streams == 3
    assert [s.sid for s in p.streams] == [1, 3, 5]


def test_own_max_concurrent_streams_bounds_capacity() -> None:
    p = Pair(client_settings=http2.Http2Settings(max_concurrent_streams=1))
    assert p.client.available_streams == 1


def test_remote_reset_before_and_after_headers() -> None:
    p = Pair()
    _, r1 = p.request()
    _, r2 = p.request()
    s1, s2 = p.streams
    p.server.reset_stream(s1.sid, ErrorCodes.INTERNAL_ERROR)
    p.server.encode_headers(s2.sid, ResponseHeaders(200), False)
    p.pump()
    p.server.reset_stream(s2.sid, ErrorCodes.REFUSED_STREAM)
    p.pump()
    assert r1.resets == ["remote reset"] and r1.status is None
    assert r2.status == 200 and r2.resets == ["remote refused stream reset"]
    assert p.stats.rx_reset.value == 2 and p.stats.stream_refused_errors.value == 0  # (as Envoy 1.40)
    assert p.client.active_streams == 0


def test_local_reset_is_heard_by_the_server_only() -> None:
    p = Pair()
    sid, r = p.request(end=False)
    p.client.reset_stream(sid)
    p.pump()
    assert r.resets == [] and p.streams[0].resets == ["remote reset"]
    assert p.stats.tx_reset.value == 1 and p.client.active_streams == 0


def test_graceful_goaway_lets_open_streams_finish_and_refuses_later_ones() -> None:
    p = Pair()
    _, r1 = p.request()
    s1 = p.streams[0]
    # A stream the server has not seen yet when it sends GOAWAY(last=1).
    r3 = Response()
    sid3 = p.client.new_stream(r3)
    p.client.encode_headers(sid3, RequestHeaders("GET", "/q", "h"), True)
    p.client.feed(GoAwayFrame(0, last_stream_id=1, error_code=0).serialize())
    assert p.goaways == [(1, 0)]
    assert r3.resets == ["remote refused stream reset"]
    assert p.client.available_streams == 0
    p.client.data_to_send()  # (the refused stream's HEADERS never reach this server)
    p.server.encode_headers(s1.sid, ResponseHeaders(200), False)
    p.server.encode_data(s1.sid, b"done", True)
    p.client.feed(p.server.data_to_send())
    assert r1.status == 200 and r1.body == [(b"done", True)] and r1.resets == []


def test_goaway_with_an_error_cuts_every_stream() -> None:
    p = Pair()
    _, r1 = p.request()
    p.client.feed(GoAwayFrame(0, last_stream_id=1, error_code=ErrorCodes.INTERNAL_ERROR).serialize())
    assert r1.resets == ["connection termination"] and p.goaways == [(1, 2)]


def test_malformed_response_resets_the_stream_only() -> None:
    p = Pair()
    sid, r = p.request()
    # A response HEADERS frame with a connection-specific header, encoded by the server's HPACK.
    block = p.server.conn.encoder.encode([(b":status", b"200"), (b"connection", b"close")])
    p.client.feed(HeadersFrame(sid, data=block, flags=["END_HEADERS"]).serialize())
    assert r.resets == ["protocol error"] and p.stats.rx_messaging_error.value == 1
    assert p.client.error is None


def test_missing_status_is_malformed() -> None:
    p = Pair()
    sid, r = p.request()
    block = p.server.conn.encoder.encode([(b"x", b"y")])
    p.client.feed(HeadersFrame(sid, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert r.resets == ["protocol error"]


def test_garbage_is_a_connection_error_reported_to_every_stream() -> None:
    p = Pair()
    _, r = p.request()
    err = p.client.feed(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")  # WINDOW_UPDATE of 0
    assert err is not None and r.resets == ["protocol error"]
    assert p.client.available_streams == 0
    assert b"" != p.client.data_to_send()  # its GOAWAY


def test_received_data_is_acknowledged_only_when_read_enabled() -> None:
    window = 65535
    p = Pair(client_settings=http2.Http2Settings(initial_stream_window_size=window, initial_connection_window_size=1 << 24))
    sid, r = p.request()
    s = p.streams[0]
    p.server.encode_headers(s.sid, ResponseHeaders(200), False)
    p.client.read_disable(sid, True)
    p.server.encode_data(s.sid, b"a" * (window + 100), True)
    p.pump()
    got = sum(len(d) for d, _ in r.body)
    assert got == window  # the stream window ran out: the rest waits on the server
    assert p.server.buffered_bytes(s.sid) == 100
    p.client.read_disable(sid, False)
    p.pump()
    assert sum(len(d) for d, _ in r.body) == window + 100 and r.body[-1][1]


def test_request_body_waits_for_the_peers_window() -> None:
    p = Pair(server_settings=http2.Http2Settings(initial_stream_window_size=65535))
    sid, _ = p.request("POST", end=False)
    p.client.encode_data(sid, b"b" * 70000, True)
    assert p.client.buffered_bytes(sid) == 70000 - 65535
    p.pump()  # the server acknowledges what it read: the rest goes
    s = p.streams[0]
    assert sum(len(d) for d, _ in s.body) == 70000 and s.body[-1][1]
    assert p.client.buffered_bytes(sid) == 0


def test_connect_request_block() -> None:
    block = http2_client.request_block(RequestHeaders("CONNECT", "", "example:443", [["x", "1"]]))
    assert block == [(b":method", b"CONNECT"), (b":authority", b"example:443"), (b"x", b"1")]


def test_socket_close_cuts_open_streams() -> None:
    p = Pair()
    _, r = p.request()
    p.client.connection_lost()
    assert r.resets == ["connection termination"] and p.client.active_streams == 0


def test_repr_shows_state() -> None:
    p = Pair()
    p.request()
    assert repr(p.client) == "<http2.ClientCodec [streams: 1 | goaway: None | error: None]>"


@pytest.mark.parametrize("code", [ErrorCodes.CONNECT_ERROR])
def test_connect_error_reason(code: Any) -> None:
    p = Pair()
    sid, r = p.request()
    p.client.feed(RstStreamFrame(sid, error_code=code).serialize())
    assert r.resets == ["remote error with CONNECT request"]
