"""The filter manager's per-filter callbacks (ActiveStreamFilter), trailers, buffer limits and
watermarks, driven without sockets (a fake connection manager, simulated time)."""

from __future__ import annotations

import random
from typing import Any

from sluice.clock import SimTime
from sluice.http.active_stream import ActiveStream
from sluice.http.filter import CONTINUE, STOP_ITERATION, STOP_ITERATION_AND_BUFFER, STOP_ITERATION_NO_BUFFER, PassThroughFilter
from sluice.http.filter_manager import ActiveStreamFilter
from sluice.http.hcm_config import HcmConfig
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.stats.store import Store


class FakeConn:
    """What a stream asks of its connection manager (HTTP/1)."""

    def __init__(self, config: HcmConfig) -> None:
        self.config = config
        self.remote = ("10.1.2.3", 5555)
        self.local = ("127.0.0.1", 80)
        self.cid = 1
        self.out = bytearray()
        self.done: list[bool] = []
        self.read_disables: list[bool] = []
        self.was_reset = False

    def write(self, data: bytes) -> None:
        self.out += data

    def stream_done(self, stream: ActiveStream, close: bool) -> None:
        self.done.append(close)

    def reset(self) -> None:
        self.was_reset = True

    def read_disable_stream(self, stream: ActiveStream, disable: bool) -> None:
        self.read_disables.append(disable)


class Probe(PassThroughFilter):
    """Logs what it sees; returns the statuses it is told to."""

    def __init__(self, name: str, log: list[str], cb: ActiveStreamFilter, **status: Any) -> None:
        self.name, self.log, self.cb, self.status = name, log, cb, status

    def decode_headers(self, headers: RequestHeaders, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.dh")
        return self.status.get("dh", CONTINUE)

    def decode_data(self, data: bytes, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.dd {len(data)} {end_stream}")
        return self.status.get("dd", CONTINUE)

    def decode_trailers(self, trailers: HeaderMap):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.dt {trailers.get('t')}")
        return self.status.get("dt", CONTINUE)

    def encode_headers(self, headers: ResponseHeaders, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.eh {headers.status}")
        return self.status.get("eh", CONTINUE)

    def encode_data(self, data: bytes, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.ed {len(data)} {end_stream}")
        return self.status.get("ed", CONTINUE)

    def encode_trailers(self, trailers: HeaderMap):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.et {trailers.get('t')}")
        return self.status.get("et", CONTINUE)


class Sink:
    """A terminal filter without encode methods (like the router): takes everything."""

    def __init__(self, log: list[str], cb: ActiveStreamFilter) -> None:
        self.log, self.cb = log, cb

    def decode_headers(self, headers: RequestHeaders, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append("sink.dh")
        return STOP_ITERATION

    def decode_data(self, data: bytes, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"sink.dd {len(data)} {end_stream}")
        return STOP_ITERATION_NO_BUFFER

    def decode_trailers(self, trailers: HeaderMap):  # type: ignore[no-untyped-def]
        self.log.append(f"sink.dt {trailers.get('t')}")
        return STOP_ITERATION

    def on_destroy(self) -> None:
        self.log.append("sink.destroy")


def stream(filters: list[Any], *, end: bool = False, limit: int = 1024 * 1024, method: str = "POST") -> tuple[ActiveStream, FakeConn, dict[str, Any]]:
    made: dict[str, Any] = {}

    def factory(i: int, spec: Any) -> Any:
        def make(cb: ActiveStreamFilter) -> Any:
            f = spec(cb)
            made[str(i)] = f
            made[f"cb{i}"] = cb
            return f

        return make

    clock = SimTime()
    cfg = HcmConfig(
        stat_prefix="t", store=Store(), route_table=None, filter_factories=[factory(i, f) for i, f in enumerate(filters)],
        rng=random.Random(1), clock=clock, buffer_limit=limit,
    )  # fmt: skip
    conn = FakeConn(cfg)
    s = ActiveStream(conn, RequestHeaders(method, "/", "h", []), end)  # type: ignore[arg-type]
    s.start()
    return s, conn, made


def test_each_filter_gets_its_own_callbacks_knowing_its_place() -> None:
    log: list[str] = []
    s, _, made = stream([lambda cb: Probe("a", log, cb), lambda cb: Probe("b", log, cb), lambda cb: Sink(log, cb)])
    assert [made[f"cb{i}"].index for i in range(3)] == [0, 1, 2]
    assert made["cb1"].parent is s and made["cb1"].filter is made["1"]
    assert made["cb0"].request_headers is s.request_headers and made["cb0"].stream_info is s.stream_info
    assert s.filters == [made["0"], made["1"], made["2"]]


def test_continue_from_a_filter_that_did_not_stop_is_ignored() -> None:
    log: list[str] = []
    s, _, made = stream([lambda cb: Probe("a", log, cb), lambda cb: Probe("b", log, cb, dh=STOP_ITERATION), lambda cb: Sink(log, cb)])
    assert log == ["a.dh", "b.dh"]
    made["cb0"].continue_decoding()  # a did not stop: nothing moves
    assert log == ["a.dh", "b.dh"]
    made["cb1"].continue_decoding()  # b did: the headers go on to the sink
    assert log == ["a.dh", "b.dh", "sink.dh"]


def test_trailers_follow_the_body_through_every_filter() -> None:
    log: list[str] = []
    s, _, _ = stream([lambda cb: Probe("a", log, cb), lambda cb: Sink(log, cb)])
    s.on_request_body(b"xyz", False)
    s.on_request_trailers(HeaderMap([["t", "1"]]))
    assert log == ["a.dh", "sink.dh", "a.dd 3 False", "sink.dd 3 False", "a.dt 1", "sink.dt 1"]
    assert s.request_complete


def test_trailers_wait_behind_held_body_and_go_on_after_it() -> None:
    log: list[str] = []
    s, _, made = stream([lambda cb: Probe("a", log, cb, dh=STOP_ITERATION, dd=STOP_ITERATION), lambda cb: Sink(log, cb)])
    s.on_request_body(b"ab", False)
    s.on_request_trailers(HeaderMap([["t", "2"]]))
    assert log == ["a.dh", "a.dd 2 False", "a.dt 2"]
    made["cb0"].continue_decoding()
    # The held body reaches the sink (not ending the request: trailers follow), then trailers
    # from the filter after the one that stopped.
    assert log == ["a.dh", "a.dd 2 False", "a.dt 2", "sink.dh", "sink.dd 2 False", "sink.dt 2"]


def test_a_buffering_filter_over_the_limit_gets_413() -> None:
    log: list[str] = []
    s, conn, _ = stream(
        [lambda cb: Probe("a", log, cb, dd=STOP_ITERATION_AND_BUFFER), lambda cb: Sink(log, cb)], limit=10
    )
    s.on_request_body(b"x" * 6, False)
    assert conn.out == b""
    s.on_request_body(b"x" * 6, False)
    assert conn.out.startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    assert conn.out.endswith(b"Payload Too Large")
    assert s.stream_info.response_code_details == "request_payload_too_large"
    assert s.config.store.value("http.t.downstream_rq_too_large") == 1


def test_a_watermarking_filter_over_the_limit_stops_reading_until_it_continues() -> None:
    log: list[str] = []
    s, conn, made = stream([lambda cb: Probe("a", log, cb, dd=STOP_ITERATION), lambda cb: Sink(log, cb)], limit=10)
    s.on_request_body(b"x" * 6, False)
    s.on_request_body(b"x" * 6, False)
    assert conn.read_disables == [True] and conn.out == b""
    made["cb0"].continue_decoding()
    assert conn.read_disables == [True, False]
    assert log[-1] == "sink.dd 12 False"


def test_an_encoder_holding_too_much_before_the_headers_left_gives_500() -> None:
    log: list[str] = []
    s, conn, made = stream([lambda cb: Probe("a", log, cb, eh=STOP_ITERATION), lambda cb: Sink(log, cb)], end=True, limit=10)
    cb = made["cb1"]
    cb.encode_headers(ResponseHeaders(200), False)
    cb.encode_data(b"y" * 11, False)
    assert conn.out.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert conn.out.endswith(b"\r\n\r\nInternal Server Error")
    assert s.stream_info.response_code_details == "response_payload_too_large"
    assert s.config.store.value("http.t.rs_too_large") == 1
    assert conn.done == [False]


def test_an_encoder_holding_too_much_after_the_headers_left_resets() -> None:
    log: list[str] = []
    s, conn, made = stream([lambda cb: Probe("a", log, cb, ed=STOP_ITERATION), lambda cb: Sink(log, cb)], end=True, limit=10)
    cb = made["cb1"]
    cb.encode_headers(ResponseHeaders(200), False)
    cb.encode_data(b"y" * 5, False)
    assert not conn.was_reset
    cb.encode_data(b"y" * 6, False)
    assert conn.was_reset and s.destroyed
    assert s.config.store.value("http.t.rs_too_large") == 1


def test_response_trailers_pass_the_encoders_and_end_an_http1_body() -> None:
    log: list[str] = []
    s, conn, made = stream([lambda cb: Probe("a", log, cb), lambda cb: Sink(log, cb)], end=True)
    cb = made["cb1"]
    cb.encode_headers(ResponseHeaders(200), False)
    cb.encode_data(b"abc", False)
    cb.encode_trailers(HeaderMap([["t", "9"]]))
    assert [e for e in log if e.startswith("a.e")] == ["a.eh 200", "a.ed 3 False", "a.et 9"]
    # HTTP/1: the trailers are dropped (Envoy's codec without enable_trailers); the chunked body ends.
    assert conn.out.endswith(b"3\r\nabc\r\n0\r\n\r\n")
    assert conn.done == [False]


def test_inject_encoded_data_goes_on_after_the_injecting_filter() -> None:
    log: list[str] = []
    s, conn, made = stream(
        [lambda cb: Probe("a", log, cb), lambda cb: Probe("b", log, cb, ed=STOP_ITERATION_NO_BUFFER), lambda cb: Sink(log, cb)], end=True
    )
    made["cb2"].encode_headers(ResponseHeaders(200, [["content-length", "4"]]), False)
    made["cb2"].encode_data(b"data", True)  # b takes it
    assert log[-1] == "b.ed 4 True" and not conn.out.endswith(b"data") and "a.ed 4 True" not in log
    made["cb1"].inject_encoded_data(b"data", True)
    assert [e for e in log if e.startswith("a.ed")] == ["a.ed 4 True"]
    assert conn.out.endswith(b"\r\n\r\ndata")


def test_watermark_callbacks_hear_the_downstream_and_an_encoder() -> None:
    heard: list[str] = []

    class W:
        def on_above_write_buffer_high_watermark(self) -> None:
            heard.append("above")

        def on_below_write_buffer_low_watermark(self) -> None:
            heard.append("below")

    log: list[str] = []
    s, _, made = stream([lambda cb: Probe("a", log, cb), lambda cb: Sink(log, cb)], end=True)
    w = W()
    made["cb1"].add_downstream_watermark_callbacks(w)
    s.on_downstream_writable(False)
    s.on_downstream_writable(True)
    made["cb0"].on_encoder_filter_above_write_buffer_high_watermark()
    made["cb0"].on_encoder_filter_below_write_buffer_low_watermark()
    made["cb1"].remove_downstream_watermark_callbacks(w)
    s.on_downstream_writable(False)
    assert heard == ["above", "below", "above", "below"]


def test_a_grpc_request_gets_a_trailers_only_local_reply() -> None:
    log: list[str] = []
    clock = SimTime()
    cfg = HcmConfig(stat_prefix="t", store=Store(), route_table=None, filter_factories=[lambda cb: Sink(log, cb)], rng=random.Random(1), clock=clock)
    conn = FakeConn(cfg)
    s = ActiveStream(conn, RequestHeaders("POST", "/svc/M", "h", [["content-type", "application/grpc"]]), True)  # type: ignore[arg-type]
    s.start()
    s.send_local_reply(503, "no healthy upstream", "no_healthy_upstream")
    head = bytes(conn.out).split(b"\r\n")
    assert head[0] == b"HTTP/1.1 200 OK"
    assert head[1:4] == [b"content-type: application/grpc", b"grpc-status: 14", b"grpc-message: no healthy upstream"]
    assert b"content-length: 0" in head


def test_filters_are_destroyed_with_the_stream() -> None:
    log: list[str] = []
    s, _, made = stream([lambda cb: Sink(log, cb)], end=True)
    made["cb0"].encode_headers(ResponseHeaders(204), True)
    assert s.destroyed and log[-1] == "sink.destroy" and s.filters == []
