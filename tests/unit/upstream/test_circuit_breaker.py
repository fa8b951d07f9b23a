"""Circuit breakers: resources, gauges, retry budgets and the pool's overflow rules (no sockets:
the pool's connect is replaced by a recorder)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from envoy.config.cluster.v3 import circuit_breaker_pb2
from google.protobuf import json_format

from sluice.stats.blocks import ClusterStats
from sluice.stats.store import Store
from sluice.upstream import circuit_breaker
from sluice.upstream.conn_pool import OVERFLOW, HostPool
from sluice.upstream.host import Host


def breakers(thresholds: list[dict[str, Any]]) -> Any:
    return json_format.ParseDict({"thresholds": thresholds}, circuit_breaker_pb2.CircuitBreakers())


def test_defaults_are_envoys() -> None:
    default, high = circuit_breaker.build(None, None)
    assert default.limits() == {"max_connections": 1024, "max_pending_requests": 1024, "max_requests": 1024, "max_retries": 3}
    assert high.limits() == default.limits()
    assert default.retry_budget is default.max_retries


def test_thresholds_per_priority_and_open_gauges() -> None:
    store = Store()
    stats = ClusterStats.declare(store, "cluster.c.")
    default, high = circuit_breaker.build(
        breakers([{"max_connections": 2, "max_retries": 1}, {"priority": "HIGH", "max_requests": 7}]), stats
    )
    assert default.limits()["max_connections"] == 2 and default.limits()["max_requests"] == 1024
    assert high.limits()["max_requests"] == 7 and high.limits()["max_connections"] == 1024
    cx = default.max_connections
    cx.inc()
    assert cx.can_create() and store.value("cluster.c.circuit_breakers.default.cx_open") == 0
    cx.inc()
    assert not cx.can_create() and store.value("cluster.c.circuit_breakers.default.cx_open") == 1
    cx.dec()
    assert store.value("cluster.c.circuit_breakers.default.cx_open") == 0
    default.max_retries.inc()
    assert store.value("cluster.c.circuit_breakers.default.rq_retry_open") == 1
    assert store.value("cluster.c.circuit_breakers.high.rq_retry_open") == 0


def test_retry_budget_follows_active_and_pending_requests() -> None:
    default, _ = circuit_breaker.build(breakers([{"retry_budget": {"budget_percent": {"value": 50.0}, "min_retry_concurrency": 2}}]), None)
    retries = default.retry_budget
    assert retries is default.max_retries
    assert retries.limit() == 2  # the floor
    for _ in range(6):
        default.max_requests.inc()
    for _ in range(4):
        default.max_pending_requests.inc()
    assert retries.limit() == 5  # 50 % of 10
    for _ in range(5):
        assert retries.can_create()
        retries.inc()
    assert not retries.can_create()


# -- the pool's use of the breakers -------------------------------------------------------------
class Handler:
    def __init__(self) -> None:
        self.ready: Any = None
        self.failure = ""

    def on_pool_ready(self, conn: Any) -> None:
        self.ready = conn

    def on_pool_failure(self, reason: str, transport_failure: str = "") -> None:
        self.failure = reason


class FakeConn:
    """Stands in for an UpstreamConnection as far as the pool looks at it (the client
    connection interface: capacity, new_stream; HTTP/1.1, so the connection is the stream)."""

    multiplexed = False
    available_streams = 1
    active_streams = 0

    def __init__(self) -> None:
        self.is_open = True
        self.rq_counted = False
        self.created = 0.0
        self.draining = False
        self.idle_since = 0.0
        self.remaining_requests = 1 << 62
        self.requests = 0

    def new_stream(self, handler: Any) -> FakeConn:
        self.requests += 1
        return self


@pytest.fixture()
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    asyncio.set_event_loop(None)
    lp.close()


class RecordingPool(HostPool):
    """A pool whose connects are only counted (a connect in flight, no socket)."""

    __slots__ = ("connects",)

    def _connect(self) -> None:
        self.connecting += 1
        self.resources.max_connections.inc()
        self.connects.append(1)


def make_pool(thresholds: dict[str, Any]) -> tuple[HostPool, Store, list[int]]:
    store = Store()
    stats = ClusterStats.declare(store, "cluster.c.")
    default, _ = circuit_breaker.build(breakers([thresholds]), stats)
    pool = RecordingPool(Host("127.0.0.1", 8080), stats, 1.0, "c", default)
    pool.connects = []
    return pool, store, pool.connects


def test_pending_overflow_fails_with_overflow(loop: asyncio.AbstractEventLoop) -> None:
    pool, store, connects = make_pool({"max_pending_requests": 1})
    a, b = Handler(), Handler()
    pool.acquire(a)
    pool.acquire(b)
    assert b.failure == OVERFLOW and a.failure == ""
    assert store.value("cluster.c.upstream_rq_pending_overflow") == 1
    assert store.value("cluster.c.upstream_rq_pending_total") == 1
    assert store.value("cluster.c.circuit_breakers.default.rq_pending_open") == 1
    assert len(connects) == 1
    pool.cancel(a)
    assert store.value("cluster.c.circuit_breakers.default.rq_pending_open") == 0


def test_connection_limit_queues_instead_of_connecting(loop: asyncio.AbstractEventLoop) -> None:
    # Envoy's HTTP/1.1 pool at max_connections: the request waits (upstream_cx_overflow), no new
    # connection, and is served when the busy connection comes back.
    pool, store, connects = make_pool({"max_connections": 1})
    a, b = Handler(), Handler()
    pool.acquire(a)
    assert len(connects) == 1
    pool.acquire(b)
    assert len(connects) == 1 and b.failure == ""
    assert store.value("cluster.c.upstream_cx_overflow") == 1
    assert store.value("cluster.c.circuit_breakers.default.cx_open") == 1
    conn = FakeConn()
    pool.connecting -= 1
    pool.release(conn)  # type: ignore[arg-type]
    assert a.ready is conn and store.value("cluster.c.circuit_breakers.default.rq_open") == 0
    pool.release(conn)  # type: ignore[arg-type]
    assert b.ready is conn
    assert store.value("cluster.c.upstream_rq_pending_active") == 0
    assert repr(pool) == "<HostPool 127.0.0.1:8080 active=1 idle=0 pending=0 connecting=0>"


def test_request_limit_overflows_at_attach(loop: asyncio.AbstractEventLoop) -> None:
    pool, store, _ = make_pool({"max_requests": 1})
    c1, c2 = FakeConn(), FakeConn()
    pool.idle.extend([c1, c2])  # type: ignore[list-item]
    a, b = Handler(), Handler()
    pool.acquire(a)
    pool.acquire(b)
    assert a.ready is not None and b.failure == OVERFLOW
    assert store.value("cluster.c.upstream_rq_active_overflow") == 1
    assert store.value("cluster.c.upstream_rq_pending_overflow") == 0
    assert store.value("cluster.c.circuit_breakers.default.rq_open") == 1
    pool.release(a.ready)
    assert store.value("cluster.c.circuit_breakers.default.rq_open") == 0
    assert pool.resources.max_requests.count == 0


def test_an_open_gauge_is_used_from_its_resources_first_change() -> None:
    # Envoy sets the gauge at every inc/dec: used (usedonly, StatsD) once the resource moved,
    # not before; the other priority's stay unused.
    store = Store()
    stats = ClusterStats.declare(store, "cluster.c.")
    default, _high = circuit_breaker.build(None, stats)
    gauges = store.gauges
    assert not gauges["cluster.c.circuit_breakers.default.rq_open"].used
    default.max_requests.inc()
    default.max_requests.dec()
    assert gauges["cluster.c.circuit_breakers.default.rq_open"].used
    assert gauges["cluster.c.circuit_breakers.default.rq_open"].value == 0
    assert not gauges["cluster.c.circuit_breakers.high.rq_open"].used
    assert not gauges["cluster.c.circuit_breakers.default.cx_open"].used
