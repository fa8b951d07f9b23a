"""The fault filter in a real ActiveStream, without sockets: a fake connection, a fake upstream
(the terminal filter) and simulated time. Every expectation is Envoy 1.40's (golden captures in
``shared/golden/envoy-part1-2/fault_injection`` or checked against the binary)."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.http.fault.v3.fault_pb2 import HTTPFault
from google.protobuf import json_format

from sluice.filters.fault.config import FaultFilterConfig
from sluice.filters.fault.filter import FaultFilter, fault_factory, is_grpc_request
from sluice.http.conn_manager import ActiveStream, HcmConfig
from sluice.http.filter import STOP_ITERATION_NO_BUFFER, PassThroughFilter
from sluice.http.headers import RequestHeaders, ResponseHeaders
from sluice.http.stream_info import ResponseFlag, flags_string
from sluice.route.table import RouteTable
from sluice.runtime import Layer, Runtime
from sluice.stats.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from test_fault_rate_limiter import Clock  # noqa: E402

P100 = {"numerator": 100, "denominator": "HUNDRED"}
ROUTES = {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "svc"}}]}]}


class FakeConn:
    def __init__(self, config: HcmConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.remote = ("10.1.2.3", 5555)
        self.local = ("127.0.0.1", 80)
        self.cid = 1
        self.out = bytearray()
        self.writes: list[tuple[float, int]] = []
        self.done: list[bool] = []
        self.was_reset = False

    def write(self, data: bytes) -> None:
        self.out += data
        self.writes.append((self.clock.t, len(data)))

    def stream_done(self, stream: ActiveStream, close: bool) -> None:
        self.done.append(close)

    def reset(self) -> None:
        self.was_reset = True

    def response(self) -> tuple[str, list[tuple[str, str]], bytes]:
        head, _, body = bytes(self.out).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
        if ("transfer-encoding", "chunked") in headers:
            out = b""
            while True:
                size, _, rest = body.partition(b"\r\n")
                n = int(size, 16)
                if n == 0:
                    break
                out, body = out + rest[:n], rest[n + 2 :]
            body = out
        return lines[0], headers, body


class Upstream(PassThroughFilter):
    """The terminal filter: records the request; answers once it is complete, if told to."""

    def __init__(self, stream: ActiveStream, h: Harness) -> None:
        self.stream = stream
        self.h = h
        self.body = b""

    def decode_headers(self, headers: RequestHeaders, end_stream: bool):  # type: ignore[no-untyped-def]
        self.h.upstream.append([list(e) for e in headers.entries])
        if end_stream:
            self._answer()
        return STOP_ITERATION_NO_BUFFER

    def decode_data(self, data: bytes, end_stream: bool):  # type: ignore[no-untyped-def]
        self.body += data
        if end_stream:
            self.h.upstream_bodies.append(self.body)
            self._answer()
        return STOP_ITERATION_NO_BUFFER

    def _answer(self) -> None:
        body = self.h.response_body
        if body is None:
            return
        self.stream.encode_headers(ResponseHeaders(200, [["content-length", str(len(body))]]), not body)
        chunk = self.h.chunk
        for i in range(0, len(body), chunk):
            self.stream.encode_data(body[i : i + chunk], i + chunk >= len(body))


class Harness:
    def __init__(self, fault: dict[str, Any], routes: dict[str, Any] | None = None, seed: int = 1, **runtime: str) -> None:
        self.clock = Clock()
        self.runtime = Runtime([Layer("admin", "admin")])
        if runtime:
            self.runtime.merge_admin(runtime)
        self.store = Store()
        table = RouteTable(json_format.ParseDict(routes or ROUTES, RouteConfiguration()), "rc", self.runtime)
        msg = json_format.ParseDict(fault, HTTPFault())
        self.config = FaultFilterConfig.from_proto(msg, "f", self.runtime, self.store, "http.t.", time_source=self.clock.now)
        self.hcm = HcmConfig(
            stat_prefix="t",
            store=self.store,
            route_table=table,
            filter_factories=[fault_factory(self.config), lambda s: Upstream(s, self)],
            rng=random.Random(seed),
            call_later=self.clock.call_later,
        )
        self.upstream: list[list[list[str]]] = []
        self.upstream_bodies: list[bytes] = []
        self.response_body: bytes | None = b"ok"
        self.chunk = 1 << 30

    def stream(
        self, headers: list[tuple[str, str]] | None = None, method: str = "GET", body: bytes | None = None, send_body: bool = True
    ) -> tuple[ActiveStream, FakeConn]:
        conn = FakeConn(self.hcm, self.clock)
        entries = [[k, v] for k, v in headers or []]
        if body is not None:
            entries.append(["content-length", str(len(body))])
        s = ActiveStream(conn, RequestHeaders(method, "/p", "host", entries), not body)  # type: ignore[arg-type]
        s.start()
        if body and send_body:
            s.on_request_body(body, True)
        return s, conn

    def stat(self, name: str) -> int:
        return self.store.value(f"http.t.fault.{name}")

    def fault_timers(self) -> int:
        """Pending timers other than the stream idle timers (300 s)."""
        return sum(1 for t in self.clock.pending() if t.when - self.clock.t < 299)


def fault_filter(s: ActiveStream) -> FaultFilter:
    f = s.filters[0]
    assert isinstance(f, FaultFilter)
    return f


# -- aborts -------------------------------------------------------------------------------------
def test_abort_is_a_local_reply_in_envoys_form() -> None:
    h = Harness({"abort": {"http_status": 503, "percentage": P100}})
    s, conn = h.stream()
    status, headers, body = conn.response()
    assert status == "HTTP/1.1 503 Service Unavailable"
    assert [k for k, _ in headers] == ["content-length", "content-type", "date", "server"]
    assert headers[0] == ("content-length", "18") and headers[1] == ("content-type", "text/plain")
    assert body == b"fault filter abort"
    assert h.upstream == [] and conn.done == [False]
    assert flags_string(s.stream_info.response_flags) == "FI"
    assert s.stream_info.response_code_details == "fault_filter_abort"
    assert (h.stat("aborts_injected"), h.stat("active_faults"), h.stat("delays_injected")) == (1, 0, 0)


def test_abort_418_head_and_post_with_unread_body() -> None:
    h = Harness({"abort": {"http_status": 418, "percentage": P100}})
    _, conn = h.stream(method="HEAD")
    status, headers, body = conn.response()
    assert status == "HTTP/1.1 418 Unknown" and ("content-length", "18") in headers and body == b""
    _, conn = h.stream(method="POST", body=b"abc", send_body=False)
    status, headers, body = conn.response()
    assert [k for k, _ in headers] == ["content-length", "content-type", "date", "server", "connection"]
    assert headers[-1] == ("connection", "close") and body == b"fault filter abort" and conn.done == [True]


@pytest.mark.parametrize(
    ("value", "status"),
    [("503", 503), ("429", 429), ("200", 200), ("404", 404), ("503 ", 503), ("99", None), ("600", None), ("abc", None)],
)
def test_header_abort(value: str, status: int | None) -> None:
    h = Harness(
        {"max_active_faults": 100, "abort": {"header_abort": {}, "percentage": P100}, "delay": {"header_delay": {}, "percentage": P100}}
    )
    _, conn = h.stream([("x-envoy-fault-abort-request", value)])
    line, _, body = conn.response()
    if status is None:
        assert line == "HTTP/1.1 200 OK" and body == b"ok"
        # Ignored, but passed on upstream.
        assert ["x-envoy-fault-abort-request", value] in h.upstream[0]
    else:
        assert line.startswith(f"HTTP/1.1 {status} ") and body == b"fault filter abort" and h.upstream == []


def test_fault_headers_do_nothing_without_header_providers() -> None:
    h = Harness(
        {"abort": {"http_status": 503, "percentage": {"numerator": 0}}, "delay": {"fixed_delay": "1s", "percentage": {"numerator": 0}}}
    )
    _, conn = h.stream(
        [("x-envoy-fault-abort-request", "429"), ("x-envoy-fault-delay-request", "500"), ("x-envoy-fault-abort-request-percentage", "100")]
    )
    assert conn.response()[0] == "HTTP/1.1 200 OK" and h.fault_timers() == 0
    assert h.upstream[0][:3] == [
        ["x-envoy-fault-abort-request", "429"],
        ["x-envoy-fault-delay-request", "500"],
        ["x-envoy-fault-abort-request-percentage", "100"],
    ]


def count_aborts(h: Harness, n: int, headers: list[tuple[str, str]]) -> int:
    aborted = 0
    for _ in range(n):
        _, conn = h.stream(headers)
        aborted += conn.response()[2] == b"fault filter abort"
    return aborted


def within(count: int, n: int, p: float) -> bool:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - 5 * sd <= count <= n * p + 5 * sd


def test_percentages_min_of_header_and_config() -> None:
    h = Harness({"abort": {"header_abort": {}, "percentage": {"numerator": 20}}})
    abort = [("x-envoy-fault-abort-request", "503")]
    n = 2000
    assert within(count_aborts(h, n, abort), n, 0.20)
    assert within(count_aborts(h, n, [*abort, ("x-envoy-fault-abort-request-percentage", "50")]), n, 0.20)
    assert within(count_aborts(h, n, [*abort, ("x-envoy-fault-abort-request-percentage", "10")]), n, 0.10)
    assert count_aborts(h, 200, [*abort, ("x-envoy-fault-abort-request-percentage", "0")]) == 0
    assert h.stat("aborts_injected") > 0 and h.stat("active_faults") == 0


def test_fixed_percentage_draws_use_the_server_rng() -> None:
    h = Harness({"abort": {"http_status": 503, "percentage": {"numerator": 10}}}, seed=7)
    n = 3000
    first = count_aborts(h, n, [])
    assert within(first, n, 0.10)
    again = Harness({"abort": {"http_status": 503, "percentage": {"numerator": 10}}}, seed=7)
    assert count_aborts(again, n, []) == first  # same seed, same draws


def test_grpc_aborts() -> None:
    h = Harness({"abort": {"grpc_status": 14, "percentage": P100}})
    _, conn = h.stream([("content-type", "application/grpc")], method="POST", body=b"")
    line, headers, body = conn.response()
    assert line == "HTTP/1.1 200 OK" and body == b""
    assert [k for k, _ in headers] == ["content-type", "grpc-status", "grpc-message", "date", "server", "content-length"]
    assert headers[:3] == [("content-type", "application/grpc"), ("grpc-status", "14"), ("grpc-message", "fault filter abort")]
    assert headers[-1] == ("content-length", "0")
    # Not a gRPC request: a plain 200 with the abort body.
    _, conn = h.stream()
    assert conn.response()[0] == "HTTP/1.1 200 OK" and conn.response()[2] == b"fault filter abort"
    # An HTTP status on a gRPC request maps to a gRPC status (503 → UNAVAILABLE).
    h = Harness({"abort": {"http_status": 503, "percentage": P100}})
    _, conn = h.stream([("content-type", "application/grpc+proto")])
    assert ("grpc-status", "14") in conn.response()[1]
    h = Harness({"abort": {"header_abort": {}, "percentage": P100}})
    _, conn = h.stream([("content-type", "application/grpc"), ("x-envoy-fault-abort-grpc-request", "5")])
    assert ("grpc-status", "5") in conn.response()[1]
    _, conn = h.stream([("x-envoy-fault-abort-grpc-request", "5"), ("x-envoy-fault-abort-request", "418")])
    assert conn.response()[0] == "HTTP/1.1 418 Unknown"  # the HTTP status wins


def test_is_grpc_request() -> None:
    def grpc(ctype: str) -> bool:
        return is_grpc_request(RequestHeaders("POST", "/", "h", [["content-type", ctype]]))

    assert grpc("application/grpc") and grpc("application/grpc+proto")
    assert not grpc("application/grpc-web") and not grpc("application/grpc;x") and not grpc("text/plain")


# -- delays ---------------------------------------------------------------------------------------
def test_fixed_delay_holds_headers_and_body_then_continues() -> None:
    h = Harness({"delay": {"fixed_delay": "0.3s", "percentage": P100}})
    s, conn = h.stream(method="POST", body=b"hello")
    assert h.upstream == [] and conn.out == b""
    assert (h.stat("delays_injected"), h.stat("active_faults")) == (1, 1)
    assert flags_string(s.stream_info.response_flags) == "DI"
    h.clock.advance(0.299)
    assert h.upstream == []
    h.clock.advance(0.001)
    assert len(h.upstream) == 1 and h.upstream_bodies == [b"hello"]
    assert conn.response()[2] == b"ok" and h.stat("active_faults") == 0


def test_delay_then_abort() -> None:
    h = Harness({"abort": {"http_status": 503, "percentage": P100}, "delay": {"fixed_delay": "0.3s", "percentage": P100}})
    s, conn = h.stream()
    assert conn.out == b""
    h.clock.advance(0.3)
    assert conn.response()[0] == "HTTP/1.1 503 Service Unavailable" and h.upstream == []
    assert flags_string(s.stream_info.response_flags) == "DI,FI"
    assert (h.stat("delays_injected"), h.stat("aborts_injected"), h.stat("active_faults")) == (1, 1, 0)


@pytest.mark.parametrize(("value", "delayed"), [("500", 0.5), ("1500", 1.5), ("0", None), ("abc", None), ("-1", None)])
def test_header_delay(value: str, delayed: float | None) -> None:
    h = Harness({"delay": {"header_delay": {}, "percentage": P100}})
    _, conn = h.stream([("x-envoy-fault-delay-request", value)])
    if delayed is None:
        assert conn.response()[2] == b"ok" and h.stat("delays_injected") == 0
        return
    h.clock.advance(delayed - 0.001)
    assert conn.out == b""
    h.clock.advance(0.001)
    assert conn.response()[2] == b"ok" and h.upstream[0][0] == ["x-envoy-fault-delay-request", value]


def test_client_gone_while_delayed_cancels_the_timer() -> None:
    h = Harness({"delay": {"fixed_delay": "10s", "percentage": P100}, "max_active_faults": 100})
    s, conn = h.stream()
    assert h.fault_timers() == 1 and h.stat("active_faults") == 1
    s.on_downstream_reset()
    assert h.fault_timers() == 0 and h.stat("active_faults") == 0
    h.clock.advance(11)
    assert h.upstream == [] and conn.out == b""
    assert flags_string(s.stream_info.response_flags) == "DI,DC"


def test_max_active_faults_overflow() -> None:
    h = Harness({"max_active_faults": 2, "delay": {"fixed_delay": "2s", "percentage": P100}})
    streams = [h.stream() for _ in range(6)]
    assert h.stat("delays_injected") == 2 and h.stat("faults_overflow") == 4 and h.stat("active_faults") == 2
    assert len(h.upstream) == 4  # the overflowed ones went straight through
    assert sum(1 for _, conn in streams if conn.out) == 4
    h.clock.advance(2)
    assert all(conn.response()[2] == b"ok" for _, conn in streams)
    assert h.stat("active_faults") == 0


def test_max_active_faults_runtime_and_zero() -> None:
    h = Harness({"max_active_faults": 5, "abort": {"http_status": 503, "percentage": P100}}, **{"fault.http.max_active_faults": "0"})
    _, conn = h.stream()
    assert conn.response()[0] == "HTTP/1.1 200 OK" and h.stat("faults_overflow") == 1
    h = Harness({"max_active_faults": 0, "abort": {"http_status": 503, "percentage": P100}})
    _, conn = h.stream()
    assert conn.response()[0] == "HTTP/1.1 200 OK" and h.stat("faults_overflow") == 1


# -- qualification -------------------------------------------------------------------------------
def test_upstream_cluster() -> None:
    fault = {"upstream_cluster": "svc", "abort": {"http_status": 503, "percentage": P100}}
    assert Harness(fault).stream()[1].response()[0].startswith("HTTP/1.1 503")
    fault["upstream_cluster"] = "other"
    h = Harness(fault)
    assert h.stream()[1].response()[0] == "HTTP/1.1 200 OK"
    assert h.stat("faults_overflow") == 0 and h.stat("aborts_injected") == 0


def test_upstream_cluster_with_weighted_clusters_follows_the_routers_pick() -> None:
    routes = {
        "virtual_hosts": [
            {
                "name": "v",
                "domains": ["*"],
                "routes": [
                    {
                        "match": {"prefix": "/"},
                        "route": {"weighted_clusters": {"clusters": [{"name": "a", "weight": 30}, {"name": "b", "weight": 70}]}},
                    }
                ],
            }
        ]
    }
    h = Harness({"upstream_cluster": "a", "abort": {"http_status": 503, "percentage": P100}}, routes)
    for _ in range(200):
        s, conn = h.stream()
        assert s.route is not None
        picked = s.route.pick_cluster(s.request_headers, h.runtime, s.random_value)[0]
        assert (conn.response()[2] == b"fault filter abort") == (picked == "a")


def test_upstream_cluster_never_matches_a_direct_response() -> None:
    routes = {
        "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]
    }
    h = Harness({"upstream_cluster": "svc", "abort": {"http_status": 503, "percentage": P100}}, routes)
    s, _ = h.stream()
    assert h.stat("aborts_injected") == 0


def test_downstream_nodes() -> None:
    h = Harness({"downstream_nodes": ["n1", "n3"], "abort": {"http_status": 502, "percentage": P100}})
    assert h.stream([("x-envoy-downstream-service-node", "n1")])[1].response()[0].startswith("HTTP/1.1 502")
    assert h.stream([("x-envoy-downstream-service-node", "n2")])[1].response()[0] == "HTTP/1.1 200 OK"
    assert h.stream()[1].response()[0] == "HTTP/1.1 200 OK"
    # Repeated, the values are joined ("n1,n3"), as Envoy does for this inline header.
    two = [("x-envoy-downstream-service-node", "n1"), ("x-envoy-downstream-service-node", "n3")]
    assert h.stream(two)[1].response()[0] == "HTTP/1.1 200 OK"


def test_header_matchers_must_all_match() -> None:
    fault = {
        "headers": [{"name": "x-a", "exact_match": "1"}, {"name": "x-b", "present_match": True}],
        "abort": {"http_status": 500, "percentage": P100},
    }
    h = Harness(fault)
    assert h.stream([("x-a", "1"), ("x-b", "")])[1].response()[0].startswith("HTTP/1.1 500")
    assert h.stream([("x-a", "1")])[1].response()[0] == "HTTP/1.1 200 OK"
    assert h.stream([("x-a", "2"), ("x-b", "y")])[1].response()[0] == "HTTP/1.1 200 OK"


# -- runtime ---------------------------------------------------------------------------------------
def test_runtime_keys() -> None:
    fault = {"abort": {"http_status": 503, "percentage": P100}, "delay": {"fixed_delay": "0.2s", "percentage": {"numerator": 0}}}
    h = Harness(fault, **{"fault.http.abort.abort_percent": "0"})
    assert h.stream()[1].response()[0] == "HTTP/1.1 200 OK"
    h = Harness(fault, **{"fault.http.abort.http_status": "404"})
    assert h.stream()[1].response()[0] == "HTTP/1.1 404 Not Found"
    h = Harness(
        fault,
        **{
            "fault.http.abort.abort_percent": "0",
            "fault.http.delay.fixed_delay_percent": "100",
            "fault.http.delay.fixed_duration_ms": "50",
        },
    )
    _, conn = h.stream()
    h.clock.advance(0.049)
    assert conn.out == b""
    h.clock.advance(0.001)
    assert conn.response()[2] == b"ok"
    h = Harness(fault, **{"fault.http.delay.fixed_delay_percent": "100", "fault.http.delay.fixed_duration_ms": "0"})
    assert h.stream()[1].response()[0].startswith("HTTP/1.1 503") and h.stat("delays_injected") == 0


def test_runtime_key_fields() -> None:
    fault = {"abort": {"http_status": 503, "percentage": P100}, "abort_percent_runtime": "my.pct", "abort_http_status_runtime": "my.code"}
    h = Harness(fault, **{"fault.http.abort.abort_percent": "0", "my.code": "429"})
    assert h.stream()[1].response()[0] == "HTTP/1.1 429 Too Many Requests"
    h = Harness(fault, **{"my.pct": "0"})
    assert h.stream()[1].response()[0] == "HTTP/1.1 200 OK"


def test_downstream_cluster_keys_and_stats() -> None:
    fault = {"abort": {"http_status": 503, "percentage": P100}}
    front = [("x-envoy-downstream-service-cluster", "front")]
    # The cluster's key replaces the filter's: the global 0 % does not apply to it.
    h = Harness(fault, **{"fault.http.abort.abort_percent": "0"})
    assert h.stream(front)[1].response()[0].startswith("HTTP/1.1 503")
    assert h.stream()[1].response()[0] == "HTTP/1.1 200 OK"
    assert h.store.value("http.t.fault.front.aborts_injected") == 1
    h = Harness(fault, **{"fault.http.front.abort.abort_percent": "0"})
    assert h.stream(front)[1].response()[0] == "HTTP/1.1 200 OK"
    # Status: the cluster's key falls back to the configured status, not to the global key.
    h = Harness(fault, **{"fault.http.abort.http_status": "404"})
    assert h.stream(front)[1].response()[0].startswith("HTTP/1.1 503")
    h = Harness(fault, **{"fault.http.abort.http_status": "404", "fault.http.front.abort.http_status": "429"})
    assert h.stream(front)[1].response()[0].startswith("HTTP/1.1 429")
    # Delays, and the duration key that chains from the global one.
    h = Harness({"delay": {"fixed_delay": "1s", "percentage": {"numerator": 0}}}, **{
        "fault.http.front.delay.fixed_delay_percent": "100", "fault.http.delay.fixed_duration_ms": "300"})  # fmt: skip
    _, conn = h.stream(front)
    h.clock.advance(0.3)
    assert conn.response()[2] == b"ok" and h.store.value("http.t.fault.front.delays_injected") == 1
    # Repeated headers are joined; an empty value still switches keys but counts no stats.
    h = Harness(fault)
    h.stream([("x-envoy-downstream-service-cluster", "c1"), ("x-envoy-downstream-service-cluster", "c2")])
    h.stream([("x-envoy-downstream-service-cluster", "")])
    assert h.store.value("http.t.fault.c1,c2.aborts_injected") == 1
    assert "http.t.fault.c1,c2.delays_injected" not in h.store.counters  # made on first use, as Envoy does
    assert not any(n.startswith("http.t.fault..") for n in h.store.counters)
    assert h.stat("aborts_injected") == 2


def test_disable_downstream_cluster_stats() -> None:
    h = Harness({"abort": {"http_status": 503, "percentage": P100}, "disable_downstream_cluster_stats": True})
    h.stream([("x-envoy-downstream-service-cluster", "front")])
    assert h.stat("aborts_injected") == 1 and "http.t.fault.front.aborts_injected" not in h.store.counters


# -- response rate limit ---------------------------------------------------------------------------
def test_rate_limit_paces_the_body_after_immediate_headers() -> None:
    h = Harness({"response_rate_limit": {"fixed_limit": {"limit_kbps": 50}, "percentage": P100}})
    h.response_body = b"x" * 102400
    h.chunk = 16384
    s, conn = h.stream()
    t0 = h.clock.t
    assert conn.writes and bytes(conn.out).startswith(b"HTTP/1.1 200 OK")  # the head went at once
    assert h.stat("response_rl_injected") == 1 and h.stat("active_faults") == 1
    h.clock.advance(3)
    body_writes = conn.writes[1:]
    assert len(body_writes) == 40 and body_writes[0] == (t0, 2560)
    assert round(body_writes[-1][0] - t0, 6) == 1.95
    assert conn.response()[2] == h.response_body and conn.done == [False]
    assert h.stat("active_faults") == 0 and s.destroyed


def test_rate_limit_small_body_and_header_limit() -> None:
    h = Harness({"response_rate_limit": {"header_limit": {}, "percentage": P100}})
    h.response_body = b"x" * 10240
    for value, writes, rl in [(None, 1, 0), ("abc", 1, 0), ("0", 1, 0), ("50", 4, 1), ("200", 1, 2)]:
        s, conn = h.stream([("x-envoy-fault-throughput-response", value)] if value else [])
        h.clock.advance(1)
        assert len(conn.writes) - 1 == writes, value
        assert conn.response()[2] == h.response_body and h.stat("response_rl_injected") == rl
    s, conn = h.stream([("x-envoy-fault-throttle-response", "20")])
    assert s.destroyed and h.stat("response_rl_injected") == 2


def test_rate_limit_client_gone_stops_pacing() -> None:
    h = Harness({"response_rate_limit": {"fixed_limit": {"limit_kbps": 1}, "percentage": P100}})
    h.response_body = b"x" * 10000
    s, conn = h.stream()
    h.clock.advance(0.2)
    s.on_downstream_reset()
    sent = len(conn.out)
    assert h.fault_timers() == 0 and h.stat("active_faults") == 0
    h.clock.advance(20)
    assert len(conn.out) == sent


def test_rate_limit_with_abort_paces_the_local_reply_too() -> None:
    h = Harness(
        {"response_rate_limit": {"fixed_limit": {"limit_kbps": 1}, "percentage": P100}, "abort": {"http_status": 503, "percentage": P100}}
    )
    s, conn = h.stream()
    h.clock.advance(1)
    assert conn.response()[2] == b"fault filter abort"
    assert (h.stat("response_rl_injected"), h.stat("aborts_injected"), h.stat("active_faults")) == (1, 1, 0)


def test_one_active_fault_per_stream_and_delay_keeps_it_with_rate_limit() -> None:
    h = Harness(
        {
            "max_active_faults": 1,
            "response_rate_limit": {"fixed_limit": {"limit_kbps": 1}, "percentage": P100},
            "delay": {"fixed_delay": "0.1s", "percentage": P100},
        }
    )
    h.response_body = b"x" * 200
    s, conn = h.stream()
    assert (h.stat("response_rl_injected"), h.stat("delays_injected"), h.stat("active_faults")) == (1, 1, 1)
    h.clock.advance(0.1)
    assert h.stat("active_faults") == 1  # a rate limit is configured: still active while pacing
    other, _ = h.stream()
    assert h.stat("faults_overflow") == 2  # the second stream's rate limit and delay were refused
    h.clock.advance(2)
    assert conn.response()[2] == h.response_body and h.stat("active_faults") == 0


def test_response_flags_and_repr() -> None:
    h = Harness({"delay": {"fixed_delay": "1s", "percentage": P100}})
    s, _ = h.stream()
    assert repr(fault_filter(s)) == "<FaultFilter delaying active=True>"
    assert s.stream_info.has_flag(ResponseFlag.DELAY_INJECTED)
