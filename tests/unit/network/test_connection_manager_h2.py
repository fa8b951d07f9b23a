"""The network connection and the connection manager together, without sockets: a fake
transport, simulated time, and an ``h2`` client in memory for HTTP/2 (prior knowledge)."""

from __future__ import annotations

import random
from typing import Any

import h2.config
import h2.connection
import h2.events

from sluice.clock import SimTime
from sluice.http.conn_manager import ConnectionManager, DownstreamConnection
from sluice.http.filter import STOP_ITERATION, STOP_ITERATION_NO_BUFFER
from sluice.http.filter_manager import ActiveStreamFilter
from sluice.http.hcm_config import HcmConfig
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.stats.store import Store


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.paused = 0
        self.resumed = 0

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.2", 4000), "sockname": ("127.0.0.1", 10000)}.get(name)

    def write(self, data: bytes) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1


class Answer:
    """Terminal filter: answers ``/big`` with 100 KiB, ``/trailers`` with gRPC-style trailers,
    anything else with ``ok`` once the request has ended; ``/hold`` waits for the test."""

    held: list[Answer] = []

    def __init__(self, cb: ActiveStreamFilter) -> None:
        self.cb = cb
        self.heard: list[str] = []

    def decode_headers(self, headers: RequestHeaders, end_stream: bool):  # type: ignore[no-untyped-def]
        if end_stream:
            self._answer()
        return STOP_ITERATION

    def decode_data(self, data: bytes, end_stream: bool):  # type: ignore[no-untyped-def]
        if end_stream:
            self._answer()
        return STOP_ITERATION_NO_BUFFER

    def decode_trailers(self, trailers: HeaderMap):  # type: ignore[no-untyped-def]
        self._answer()
        return STOP_ITERATION

    def on_above_write_buffer_high_watermark(self) -> None:
        self.heard.append("above")

    def on_below_write_buffer_low_watermark(self) -> None:
        self.heard.append("below")

    def _answer(self) -> None:
        path = self.cb.request_headers.path
        if path == "/hold":
            Answer.held.append(self)
            return
        if path == "/big":
            self.cb.add_downstream_watermark_callbacks(self)
            self.cb.encode_headers(ResponseHeaders(200), False)
            self.cb.encode_data(b"z" * 100_000, False)
            return
        if path == "/trailers":
            self.cb.encode_headers(ResponseHeaders(200, [["content-type", "application/grpc"]]), False)
            self.cb.encode_data(b"\x00\x00\x00\x00\x00", False)
            self.cb.encode_trailers(HeaderMap([["grpc-status", "0"]]))
            return
        self.cb.encode_headers(ResponseHeaders(200, [["content-length", "2"]]), False)
        self.cb.encode_data(b"ok", True)

    def on_destroy(self) -> None:
        pass


class Peer:
    def __init__(self, codec_type: str = "AUTO", window: int = 65535) -> None:
        Answer.held = []
        self.clock = SimTime()
        self.store = Store()
        from sluice.codec.http2 import Http2Settings

        self.config = HcmConfig(
            stat_prefix="t", store=self.store, route_table=None, filter_factories=[Answer], rng=random.Random(1),
            clock=self.clock, codec_type=codec_type, http2_settings=Http2Settings(initial_stream_window_size=window),
        )  # fmt: skip
        self.conn = DownstreamConnection(self.config)
        self.transport = FakeTransport()
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.client.initiate_connection()
        self.events: list[Any] = []
        self.raw = bytearray()

    @property
    def manager(self) -> ConnectionManager:
        return self.conn.handler  # type: ignore[return-value]

    def send(self) -> None:
        data = self.client.data_to_send()
        if data:
            self.conn.data_received(data)
        self.pump()

    def pump(self) -> None:
        self.clock.run_soon()
        out = bytes(self.transport.out)
        self.transport.out.clear()
        if out:
            self.raw += out
            if self.client.state_machine.state == h2.connection.ConnectionState.CLOSED:
                return  # (after a GOAWAY h2's client takes no more frames; `raw` keeps them)
            self.events += self.client.receive_data(out)
            more = self.client.data_to_send()
            if more:
                self.conn.data_received(more)
                self.pump()

    def request(self, path: str, end: bool = True, method: str = "GET") -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, [(":method", method), (":path", path), (":scheme", "http"), (":authority", "h")], end_stream=end)
        return sid

    def of(self, kind: type, sid: int | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and (sid is None or getattr(e, "stream_id", None) == sid)]

    def value(self, name: str) -> int:
        return self.store.value(name)


def test_auto_takes_the_preface_as_http2_and_counts_it() -> None:
    p = Peer()
    sid = p.request("/")
    p.send()
    (resp,) = p.of(h2.events.ResponseReceived, sid)
    assert dict(resp.headers)[":status"] == "200"
    assert b"".join(e.data for e in p.of(h2.events.DataReceived, sid)) == b"ok"
    assert p.of(h2.events.StreamEnded, sid)
    assert p.value("http.t.downstream_cx_http2_total") == 1
    assert p.value("http.t.downstream_cx_http1_total") == 0
    assert p.value("http.t.downstream_rq_http2_total") == 1
    assert p.value("http.t.downstream_rq_2xx") == 1
    assert p.value("http.t.downstream_rq_active") == 0
    p.conn.connection_lost(None)
    assert p.value("http.t.downstream_cx_http2_active") == 0
    assert p.value("http2.streams_active") == 0


def test_http1_bytes_on_auto_are_http1() -> None:
    p = Peer()
    p.conn.data_received(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
    p.clock.run_soon()
    assert bytes(p.transport.out).startswith(b"HTTP/1.1 200 OK\r\n")
    assert p.value("http.t.downstream_cx_http1_total") == 1
    assert p.value("http.t.downstream_cx_http2_total") == 0


def test_a_reset_stream_leaves_the_others_alone() -> None:
    p = Peer()
    held = p.request("/hold")
    other = p.request("/hold")
    p.send()
    assert len(Answer.held) == 2 and p.value("http.t.downstream_rq_active") == 2
    p.client.reset_stream(held)
    p.send()
    assert p.value("http.t.downstream_rq_rx_reset") == 1
    assert p.value("http.t.downstream_rq_active") == 1
    survivor = Answer.held[1]
    survivor.cb.encode_headers(ResponseHeaders(204), True)
    p.pump()
    (resp,) = p.of(h2.events.ResponseReceived, other)
    assert dict(resp.headers)[":status"] == "204"
    assert p.value("http.t.downstream_rq_active") == 0 and not p.transport.closed


def test_response_trailers_end_the_stream() -> None:
    p = Peer()
    sid = p.request("/trailers")
    p.send()
    (tr,) = p.of(h2.events.TrailersReceived, sid)
    assert tr.headers == [("grpc-status", "0")]
    assert p.of(h2.events.StreamEnded, sid)


def test_request_trailers_reach_the_filters() -> None:
    p = Peer()
    sid = p.request("/", end=False, method="POST")
    p.client.send_data(sid, b"abc")
    p.client.send_headers(sid, [("t", "1")], end_stream=True)
    p.send()
    (resp,) = p.of(h2.events.ResponseReceived, sid)
    assert dict(resp.headers)[":status"] == "200"
    assert p.value("http2.trailers") == 1


def test_a_client_that_does_not_read_backs_the_stream_up_and_then_releases_it() -> None:
    p = Peer(window=16384)
    sid = p.request("/big")
    p.send()
    answer = Answer.held or None
    got = sum(len(e.data) for e in p.of(h2.events.DataReceived, sid))
    assert got < 100_000  # the window stopped the rest
    stream = p.manager.streams[sid]
    (filt,) = stream.filters
    assert filt.heard == ["above"] and answer is None
    # The client reads: WINDOW_UPDATEs let the body go and the stream is writable again.
    for e in p.of(h2.events.DataReceived, sid):
        p.client.acknowledge_received_data(e.flow_controlled_length, sid)
    p.client.increment_flow_control_window(200_000)
    p.client.increment_flow_control_window(200_000, sid)
    p.send()
    assert filt.heard == ["above", "below"]
    assert sum(len(e.data) for e in p.of(h2.events.DataReceived, sid)) == 100_000


def test_drain_says_goaway_and_the_connection_closes_when_idle() -> None:
    p = Peer()
    sid = p.request("/hold")
    p.send()
    p.manager.drain()
    p.pump()
    (ga,) = p.of(h2.events.ConnectionTerminated)
    assert ga.error_code == 0 and ga.last_stream_id == sid
    assert not p.transport.closed  # the stream in progress finishes first
    Answer.held[0].cb.encode_headers(ResponseHeaders(200, [["content-length", "0"]]), True)
    p.pump()
    # The response still went out: HEADERS (END_STREAM|END_HEADERS) on the stream, :status 200.
    assert b"\x01\x05\x00\x00\x00\x01\x88" in p.raw[p.raw.index(b"\x07\x00\x00\x00\x00\x00") :]
    assert p.transport.closed
    assert p.value("http2.goaway_sent") == 1


def test_garbage_after_the_preface_is_a_protocol_error_with_goaway() -> None:
    p = Peer(codec_type="HTTP2")
    p.conn.data_received(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x03\x08\x00\x00\x00\x00\x00\x00\x00\x01")  # a 3-byte WINDOW_UPDATE
    p.clock.run_soon()
    assert p.transport.closed
    assert p.value("http.t.downstream_cx_protocol_error") == 1
    assert b"\x07" in bytes(p.transport.out)  # a GOAWAY frame went out before the close
