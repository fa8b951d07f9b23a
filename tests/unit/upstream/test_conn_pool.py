"""The connection pool against a scripted MockBackend (no sockets): assignment, reuse, HTTP/2
multiplexing, capacity, max_requests_per_connection, idle timeout, draining, breakers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from sluice.clock import SimTime
from sluice.codec import http2
from sluice.codec.http2_client import Http2ClientStats
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.stats.blocks import ClusterStats
from sluice.stats.store import Store
from sluice.upstream import circuit_breaker
from sluice.upstream.backend import MockBackend, MockTransport
from sluice.upstream.conn_pool import HTTP2, OVERFLOW, HostPool, PoolOptions
from sluice.upstream.host import Host

DEFAULT = PoolOptions()
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Handler:
    """A request as the pool and its stream see it (UpstreamRequest's callbacks)."""

    def __init__(self, method: str = "GET", end: bool = True) -> None:
        self.method = method
        self.end = end
        self.stream: Any = None
        self.failure = ""
        self.status: int | None = None
        self.body = b""
        self.trailers: list[list[str]] | None = None
        self.resets: list[str] = []
        self.finished = False

    def on_pool_ready(self, stream: Any) -> None:
        self.stream = stream
        stream.encode_headers(RequestHeaders(self.method, "/", "h"), self.end)

    def on_pool_failure(self, reason: str, transport_failure: str = "") -> None:
        self.failure = reason

    def on_response_headers(self, status: int, headers: list[list[str]], end_stream: bool) -> None:
        self.status = status
        self.finished = end_stream

    def on_response_data(self, data: bytes, end_stream: bool) -> None:
        self.body += data
        self.finished = end_stream

    def on_response_trailers(self, trailers: HeaderMap) -> None:
        self.trailers = trailers.entries
        self.finished = True

    def on_response_informational(self, status: int) -> None:
        pass

    def on_upstream_reset(self, reason: str) -> None:
        self.resets.append(reason)

    def on_upstream_writable(self, writable: bool) -> None:
        pass


def make_pool(
    options: PoolOptions = DEFAULT, thresholds: dict[str, Any] | None = None, clock: SimTime | None = None
) -> tuple[HostPool, Store, MockBackend]:
    from envoy.config.cluster.v3 import circuit_breaker_pb2
    from google.protobuf import json_format

    store = Store()
    stats = ClusterStats.declare(store, "cluster.c.")
    cb = json_format.ParseDict({"thresholds": [thresholds or {}]}, circuit_breaker_pb2.CircuitBreakers())
    default, _ = circuit_breaker.build(cb, stats)
    backend = MockBackend()
    pool = HostPool(
        Host("127.0.0.1", 8080),
        stats,
        1.0,
        "c",
        default,
        options,
        backend,
        clock or SimTime(),
        lambda: Http2ClientStats.declare(store, "cluster.c.http2."),
    )
    return pool, store, backend


def sync(fn: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Runs an async test on a fresh event loop (no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run() -> None:
        asyncio.run(asyncio.wait_for(fn(), 10))

    return run


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class H2Upstream:
    """The upstream end of one MockTransport: Sluice's own HTTP/2 server codec."""

    def __init__(self, transport: MockTransport, settings: http2.Http2Settings = http2.DEFAULT_SETTINGS) -> None:
        self.transport = transport
        self.codec = http2.ServerCodec(self, settings)
        self.requests: list[tuple[int, RequestHeaders]] = []
        self.pump()

    def new_stream(self, headers: RequestHeaders, end_stream: bool) -> H2Upstream:
        self.requests.append((self.codec.current_stream_id, headers))
        return self

    def on_request_body(self, data: bytes, end_stream: bool) -> None:
        pass

    def pump(self) -> None:
        """Bytes both ways until quiet."""
        for _ in range(10):
            up = self.transport.take()
            if up:
                assert self.codec.feed(up) is None, self.codec.error_reason
            down = self.codec.data_to_send()
            if down and not self.transport.closed:
                self.transport.protocol.data_received(down)  # type: ignore[attr-defined]
            if not up and not down:
                return

    def respond(self, sid: int, status: int = 200, body: bytes = b"", trailers: list[list[str]] | None = None) -> None:
        self.codec.encode_headers(sid, ResponseHeaders(status), not body and trailers is None)
        if body:
            self.codec.encode_data(sid, body, trailers is None)
        if trailers is not None:
            self.codec.encode_trailers(sid, HeaderMap(trailers))
        self.pump()


# -- HTTP/1.1 --------------------------------------------------------------------------------
@sync
async def test_http1_connects_once_and_reuses_the_idle_connection() -> None:
    pool, store, backend = make_pool()
    a = Handler()
    pool.acquire(a)
    assert repr(pool) == "<HostPool 127.0.0.1:8080 active=0 idle=0 pending=1 connecting=1>"
    await settle()
    (t,) = backend.transports
    assert a.stream is not None and t.take().startswith(b"GET / HTTP/1.1\r\n")
    t.protocol.data_received(OK)  # type: ignore[attr-defined]
    assert a.status == 200 and a.body == b"ok"
    assert repr(pool) == "<HostPool 127.0.0.1:8080 active=0 idle=1 pending=0 connecting=0>"
    b = Handler()
    pool.acquire(b)  # served at once, synchronously, on the same connection
    assert b.stream is a.stream and len(backend.transports) == 1
    assert store.value("cluster.c.upstream_cx_total") == 1
    assert store.value("cluster.c.upstream_cx_http1_total") == 1
    assert store.value("cluster.c.upstream_rq_pending_total") == 1


@sync
async def test_http1_connect_failure_fails_the_waiter() -> None:
    pool, store, backend = make_pool()
    backend.script(ConnectionRefusedError())
    a = Handler()
    pool.acquire(a)
    await settle()
    assert a.failure == "remote connection failure"
    assert store.value("cluster.c.upstream_cx_connect_fail") == 1
    assert store.value("cluster.c.upstream_rq_pending_failure_eject") == 1
    assert store.value("cluster.c.circuit_breakers.default.cx_open") == 0


@sync
async def test_http1_max_requests_per_connection_closes_after_the_last() -> None:
    pool, store, backend = make_pool(PoolOptions(max_requests_per_connection=2))
    for i in range(3):
        h = Handler()
        pool.acquire(h)
        await settle()
        t = backend.transports[-1]
        t.take()
        t.protocol.data_received(OK)  # type: ignore[attr-defined]
        assert h.status == 200, i
    await settle()
    assert len(backend.transports) == 2 and backend.transports[0].closed
    assert store.value("cluster.c.upstream_cx_max_requests") == 1
    assert store.value("cluster.c.upstream_cx_destroy_local") == 1


@sync
async def test_http1_idle_timeout_closes_an_idle_connection() -> None:
    clock = SimTime()
    pool, store, backend = make_pool(PoolOptions(idle_timeout=2.0, idle_timer=True), clock=clock)
    h = Handler()
    pool.acquire(h)
    await settle()
    backend.transports[0].protocol.data_received(OK)  # type: ignore[attr-defined]
    clock.advance(1.9)
    assert not backend.transports[0].closed
    clock.advance(0.2)
    assert backend.transports[0].closed
    assert store.value("cluster.c.upstream_cx_idle_timeout") == 1
    assert repr(pool) == "<HostPool 127.0.0.1:8080 active=0 idle=0 pending=0 connecting=0>"


@sync
async def test_http1_drain_lets_the_busy_connection_finish() -> None:
    pool, store, backend = make_pool()
    busy, idle = Handler(), Handler()
    pool.acquire(busy)
    pool.acquire(idle)
    await settle()
    t_busy, t_idle = backend.transports
    t_idle.protocol.data_received(OK)  # type: ignore[attr-defined]
    pool.drain()
    assert t_idle.closed and not t_busy.closed  # the idle one closes now
    t_busy.protocol.data_received(OK)  # type: ignore[attr-defined]
    assert busy.status == 200 and busy.resets == []
    assert t_busy.closed  # and the busy one once its request is done
    assert store.value("cluster.c.upstream_cx_destroy_with_active_rq") == 0


@sync
async def test_http1_upstream_close_mid_response_is_connection_termination() -> None:
    pool, _, backend = make_pool()
    h = Handler()
    pool.acquire(h)
    await settle()
    backend.transports[0].remote_close()
    assert h.resets == ["connection termination"]


@sync
async def test_pending_overflow() -> None:
    pool, store, _ = make_pool(thresholds={"max_pending_requests": 1})
    a, b = Handler(), Handler()
    pool.acquire(a)
    pool.acquire(b)
    assert b.failure == OVERFLOW and store.value("cluster.c.upstream_rq_pending_overflow") == 1
    await settle()
    assert a.stream is not None


# -- HTTP/2 ----------------------------------------------------------------------------------
H2 = PoolOptions(protocol=HTTP2)


@sync
async def test_http2_many_streams_on_one_connection() -> None:
    pool, store, backend = make_pool(H2)
    handlers = [Handler() for _ in range(5)]
    for h in handlers:
        pool.acquire(h)
    await settle()
    assert len(backend.transports) == 1  # one connection for every waiting request
    up = H2Upstream(backend.transports[0])
    assert [sid for sid, _ in up.requests] == [1, 3, 5, 7, 9]
    for sid, _ in up.requests:
        up.respond(sid, body=b"hi")
    assert [h.body for h in handlers] == [b"hi"] * 5
    assert store.value("cluster.c.upstream_cx_total") == 1
    assert store.value("cluster.c.upstream_cx_http2_total") == 1
    assert store.value("cluster.c.http2.streams_active") == 0
    assert store.value("cluster.c.circuit_breakers.default.rq_open") == 0
    assert pool.resources.max_requests.count == 0
    # Reused at once for the next request.
    h = Handler()
    pool.acquire(h)
    assert h.stream is not None and len(backend.transports) == 1


@sync
async def test_http2_max_concurrent_streams_one_opens_a_second_connection() -> None:
    pool, store, backend = make_pool(PoolOptions(protocol=HTTP2, http2=http2.Http2Settings(max_concurrent_streams=1)))
    a, b = Handler(), Handler()
    pool.acquire(a)
    pool.acquire(b)
    await settle()
    assert len(backend.transports) == 2
    ups = [H2Upstream(t) for t in backend.transports]
    for up in ups:
        up.respond(up.requests[0][0])
    assert a.status == b.status == 200
    assert store.value("cluster.c.upstream_cx_total") == 2


@sync
async def test_http2_peer_settings_limit_is_respected() -> None:
    pool, _, backend = make_pool(H2)
    first = Handler()
    pool.acquire(first)
    await settle()
    up = H2Upstream(backend.transports[0], http2.Http2Settings(max_concurrent_streams=1))
    # The peer's SETTINGS said 1: a second request waits and gets its own connection.
    second = Handler()
    pool.acquire(second)
    await settle()
    assert len(backend.transports) == 2 and second.stream is not None
    up.respond(up.requests[0][0])
    assert first.status == 200


@sync
async def test_http2_trailers_and_remote_reset() -> None:
    pool, store, backend = make_pool(H2)
    a, b = Handler(), Handler()
    pool.acquire(a)
    pool.acquire(b)
    await settle()
    up = H2Upstream(backend.transports[0])
    (sa, _), (sb, _) = up.requests
    up.respond(sa, body=b"x", trailers=[["grpc-status", "0"]])
    up.codec.reset_stream(sb, ErrorCodes.INTERNAL_ERROR)
    up.pump()
    assert a.trailers == [["grpc-status", "0"]] and a.body == b"x"
    assert b.resets == ["remote reset"]
    assert store.value("cluster.c.upstream_rq_rx_reset") == 1
    assert not backend.transports[0].closed  # a stream reset leaves the connection


@sync
async def test_http2_local_reset_counts_tx_reset() -> None:
    pool, store, backend = make_pool(H2)
    a = Handler()
    pool.acquire(a)
    await settle()
    up = H2Upstream(backend.transports[0])
    a.stream.reset()
    up.pump()
    assert store.value("cluster.c.upstream_rq_tx_reset") == 1
    assert pool.resources.max_requests.count == 0
    assert repr(pool) == "<HostPool 127.0.0.1:8080 active=0 idle=1 pending=0 connecting=0>"


@sync
async def test_http2_goaway_drains_then_a_new_connection_serves() -> None:
    pool, store, backend = make_pool(H2)
    a = Handler()
    pool.acquire(a)
    await settle()
    t = backend.transports[0]
    up = H2Upstream(t)
    t.protocol.data_received(GoAwayFrame(0, last_stream_id=1, error_code=0).serialize())  # type: ignore[attr-defined]
    assert store.value("cluster.c.upstream_cx_close_notify") == 1 and not t.closed
    b = Handler()
    pool.acquire(b)  # not on the draining connection
    await settle()
    assert len(backend.transports) == 2
    up.respond(1, body=b"done")
    assert a.body == b"done" and t.closed  # the last stream done: the draining connection closes


@sync
async def test_http2_connection_close_cuts_streams() -> None:
    pool, store, backend = make_pool(H2)
    a = Handler()
    pool.acquire(a)
    await settle()
    H2Upstream(backend.transports[0])
    backend.transports[0].remote_close()
    assert a.resets == ["connection termination"]
    assert store.value("cluster.c.upstream_cx_destroy_remote_with_active_rq") == 1
    assert pool.resources.max_requests.count == 0 and pool.resources.max_connections.count == 0


@sync
async def test_http2_max_requests_breaker_per_stream() -> None:
    pool, store, backend = make_pool(H2, thresholds={"max_requests": 2})
    hs = [Handler() for _ in range(3)]
    for h in hs:
        pool.acquire(h)
    await settle()
    assert [h.failure for h in hs] == ["", "", OVERFLOW]
    assert store.value("cluster.c.upstream_rq_active_overflow") == 1


@sync
async def test_http2_max_requests_per_connection() -> None:
    pool, store, backend = make_pool(PoolOptions(protocol=HTTP2, max_requests_per_connection=2))
    hs = [Handler() for _ in range(3)]
    for h in hs:
        pool.acquire(h)
    await settle()
    assert len(backend.transports) == 2
    assert store.value("cluster.c.upstream_cx_max_requests") == 1
    ups = [H2Upstream(t) for t in backend.transports]
    for up in ups:
        for sid, _ in up.requests:
            up.respond(sid)
    assert [h.status for h in hs] == [200, 200, 200]
    assert backend.transports[0].closed and not backend.transports[1].closed
