"""The filter manager in ActiveStream, driven without sockets: stop/continue, local replies,
encoder order, connection-close rules."""

from __future__ import annotations

import random

from sluice.http.conn_manager import ActiveStream, HcmConfig
from sluice.http.filter import CONTINUE, STOP_ITERATION, STOP_ITERATION_NO_BUFFER, PassThroughFilter
from sluice.http.headers import RequestHeaders, ResponseHeaders
from sluice.stats.store import Store


class FakeTimers:
    """Records scheduled timers; a test fires them by hand (no event loop, no sleeping)."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, object]] = []

    def __call__(self, delay: float, fn):  # type: ignore[no-untyped-def]
        timers = self

        class Handle:
            def cancel(self) -> None:
                timers.pending = [p for p in timers.pending if p[1] is not fn]

        self.pending.append((delay, fn))
        return Handle()


class FakeConn:
    def __init__(self, config: HcmConfig) -> None:
        self.config = config
        self.remote = ("10.1.2.3", 5555)
        self.local = ("127.0.0.1", 80)
        self.cid = 1
        self.out = bytearray()
        self.done: list[tuple[ActiveStream, bool]] = []
        self.was_reset = False

    def write(self, data: bytes) -> None:
        self.out += data

    def stream_done(self, stream: ActiveStream, close: bool) -> None:
        self.done.append((stream, close))

    def reset(self) -> None:
        self.was_reset = True


class Recorder(PassThroughFilter):
    def __init__(self, name: str, log: list[str], stream: ActiveStream, stop_headers: bool = False) -> None:
        self.name = name
        self.log = log
        self.stream = stream
        self.stop_headers = stop_headers

    def decode_headers(self, headers: RequestHeaders, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.decode_headers end={end_stream}")
        return STOP_ITERATION if self.stop_headers else CONTINUE

    def decode_data(self, data: bytes, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.decode_data {data!r} end={end_stream}")
        return CONTINUE

    def encode_headers(self, headers: ResponseHeaders, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.encode_headers")
        return CONTINUE


class Terminal(PassThroughFilter):
    def __init__(self, log: list[str], stream: ActiveStream) -> None:
        self.log = log
        self.stream = stream

    def decode_headers(self, headers: RequestHeaders, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"terminal.decode_headers end={end_stream}")
        if end_stream:
            self.stream.encode_headers(ResponseHeaders(200, [["content-length", "2"]]), False)
            self.stream.encode_data(b"ok", True)
        return STOP_ITERATION

    def decode_data(self, data: bytes, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"terminal.decode_data {data!r} end={end_stream}")
        if end_stream:
            self.stream.encode_headers(ResponseHeaders(200, [["content-length", "2"]]), False)
            self.stream.encode_data(b"ok", True)
        return STOP_ITERATION_NO_BUFFER


def make(factories_spec: list[str], log: list[str], holder: dict[str, object]) -> tuple[HcmConfig, FakeConn]:
    factories = []
    for spec in factories_spec:
        if spec == "terminal":
            factories.append(lambda s: Terminal(log, s))
        else:
            name, _, mode = spec.partition(":")

            def f(s: ActiveStream, name: str = name, mode: str = mode) -> Recorder:
                r = Recorder(name, log, s, stop_headers=mode == "stop")
                holder[name] = r
                return r

            factories.append(f)
    cfg = HcmConfig(
        stat_prefix="t", store=Store(), route_table=None, filter_factories=factories, rng=random.Random(1), call_later=FakeTimers()
    )
    return cfg, FakeConn(cfg)


def test_decoders_in_order_encoders_in_reverse() -> None:
    log: list[str] = []
    cfg, conn = make(["a", "b", "terminal"], log, {})
    s = ActiveStream(conn, RequestHeaders("GET", "/", "h", []), True)  # type: ignore[arg-type]
    s.start()
    assert log == [
        "a.decode_headers end=True",
        "b.decode_headers end=True",
        "terminal.decode_headers end=True",
        "b.encode_headers",
        "a.encode_headers",
    ]
    assert conn.out.startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: ")
    assert conn.out.endswith(b"server: envoy\r\n\r\nok")
    assert conn.done and conn.done[0][1] is False  # keep-alive
    assert cfg.store.value("http.t.downstream_rq_2xx") == 1


def test_stopped_filter_holds_later_filters_and_body_until_continue() -> None:
    log: list[str] = []
    holder: dict[str, object] = {}
    cfg, conn = make(["a:stop", "terminal"], log, holder)
    s = ActiveStream(conn, RequestHeaders("POST", "/", "h", [["content-length", "4"]]), False)  # type: ignore[arg-type]
    s.start()
    s.on_request_body(b"ab", False)
    s.on_request_body(b"cd", True)
    # The stopped filter itself still sees the data; the terminal filter has seen nothing.
    assert log == ["a.decode_headers end=False", "a.decode_data b'ab' end=False", "a.decode_data b'cd' end=True"]
    s.continue_decoding()
    assert log[3:] == ["terminal.decode_headers end=False", "terminal.decode_data b'abcd' end=True", "a.encode_headers"]
    assert conn.out.startswith(b"HTTP/1.1 200 OK")


def test_local_reply_stops_decoding_and_uses_envoy_header_order() -> None:
    log: list[str] = []
    cfg, conn = make(["a", "terminal"], log, {})
    s = ActiveStream(conn, RequestHeaders("GET", "/", "h", []), True)  # type: ignore[arg-type]
    s.filters = []
    s.send_local_reply(503, "no healthy upstream", "no_healthy_upstream")
    head, _, body = bytes(conn.out).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 503 Service Unavailable"
    assert [line.split(b":")[0] for line in lines[1:]] == [b"content-length", b"content-type", b"date", b"server"]
    assert body == b"no healthy upstream"


def test_response_before_request_complete_closes_connection() -> None:
    log: list[str] = []
    cfg, conn = make(["a", "terminal"], log, {})
    s = ActiveStream(conn, RequestHeaders("POST", "/", "h", [["content-length", "10"]]), False)  # type: ignore[arg-type]
    s.filters = []
    s.send_local_reply(404, "", "route_not_found")
    assert b"connection: close\r\ncontent-length: 0\r\n\r\n" in conn.out
    assert conn.done[0][1] is True


def test_missing_host_400() -> None:
    # (HTTP/1.0's 426 is the codec's: tests/unit/codec/test_http1_server.py)
    cfg, conn = make(["terminal"], [], {})
    s = ActiveStream(conn, RequestHeaders("GET", "/", None, []), True)  # type: ignore[arg-type]
    s.start()
    assert conn.out.startswith(b"HTTP/1.1 400 Bad Request\r\ndate: ")
    assert conn.out.endswith(b"server: envoy\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")


def test_request_header_mutation_without_remote_address() -> None:
    cfg, conn = make(["terminal"], [], {})
    h = RequestHeaders("GET", "/", "h", [["x-envoy-retry-on", "5xx"], ["connection", "keep-alive"], ["x-request-id", "abc"]])
    s = ActiveStream(conn, h, True)  # type: ignore[arg-type]
    s.start()
    assert h.entries == [["x-request-id", "abc"], ["x-forwarded-proto", "http"]]
    assert "x-forwarded-for" not in h  # only with use_remote_address


def test_use_remote_address_appends_xff_and_regenerates_request_id() -> None:
    cfg, conn = make(["terminal"], [], {})
    cfg.use_remote_address = True
    h = RequestHeaders("GET", "/", "h", [["x-forwarded-for", "1.1.1.1"], ["x-request-id", "abc"], ["x-forwarded-proto", "https"]])
    s = ActiveStream(conn, h, True)  # type: ignore[arg-type]
    s.start()
    assert h.get("x-forwarded-for") == "1.1.1.1,10.1.2.3"
    assert h.get("x-forwarded-proto") == "http"
    assert h.get("x-envoy-external-address") == "10.1.2.3"
    rid = h.get("x-request-id")
    assert rid is not None and rid != "abc" and len(rid) == 36


def test_stream_idle_timer_answers_504_once_request_was_received() -> None:
    cfg, conn = make(["a:stop"], [], {})
    timers: FakeTimers = cfg.call_later  # type: ignore[assignment]
    s = ActiveStream(conn, RequestHeaders("GET", "/", "h", []), True)  # type: ignore[arg-type]
    s.start()
    assert [d for d, _ in timers.pending] == [300.0]  # Envoy's default stream_idle_timeout
    s.last_activity -= 301  # pretend five minutes passed without activity
    _, fire = timers.pending.pop(0)
    fire()  # type: ignore[operator]
    assert conn.out.startswith(b"HTTP/1.1 504 Gateway Timeout")
    assert conn.out.endswith(b"stream timeout")
    assert cfg.store.value("http.t.downstream_rq_idle_timeout") == 1
    assert timers.pending == []  # destroyed stream leaves no timer behind


class StopHeadersEncoder(PassThroughFilter):
    """Stops the response headers; a test resumes it with continue_encoding()."""

    def __init__(self, name: str, log: list[str], stream: ActiveStream) -> None:
        self.name = name
        self.log = log
        self.stream = stream

    def encode_headers(self, headers: ResponseHeaders, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.encode_headers end={end_stream}")
        return STOP_ITERATION

    def encode_data(self, data: bytes, end_stream: bool):  # type: ignore[no-untyped-def]
        self.log.append(f"{self.name}.encode_data {data!r} end={end_stream}")
        return CONTINUE


def test_continue_encoding_resumes_after_the_stopped_encoder() -> None:
    log: list[str] = []
    holder: dict[str, object] = {}
    cfg, conn = make(["a"], log, holder)
    s = ActiveStream(conn, RequestHeaders("GET", "/", "h", []), True)  # type: ignore[arg-type]
    stopper = StopHeadersEncoder("stop", log, s)
    s.filters = [holder.get("a") or Recorder("a", log, s), stopper]
    s.encode_headers(ResponseHeaders(200, [["content-length", "4"]]), False)
    s.encode_data(b"body", True)
    assert log == ["stop.encode_headers end=False"]  # "a" (after it) has seen nothing
    assert conn.out == b""
    s.continue_encoding()
    assert log[1:] == ["a.encode_headers", "stop.encode_data b'body' end=True"]
    assert conn.out.startswith(b"HTTP/1.1 200 OK") and conn.out.endswith(b"\r\n\r\nbody")
