"""The StatsD sink's line formats, delta semantics, the bounded TCP buffer and UDP errors."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from sluice.stats.sinks.fanout import SAMPLE_WINDOW_S, HistogramFanout
from sluice.stats.sinks.snapshot import Snapshot, take_snapshot
from sluice.stats.sinks.statsd import (
    BoundedBuffer,
    TcpStatsdSink,
    UdpStatsdSink,
    flush_lines,
    parse_config,
    timer_line,
)
from sluice.stats.store import Counter, Histogram, SinkedHistogram, Store


def test_lines_as_envoy_writes_them() -> None:
    snap = Snapshot([("cluster.colord.upstream_rq_total", 30)], [("server.uptime", 5)])
    assert flush_lines("front-envoy", snap) == [
        "front-envoy.cluster.colord.upstream_rq_total:30|c",
        "front-envoy.server.uptime:5|g",
    ]
    assert timer_line("envoy", "cluster.colord.upstream_rq_time", 43) == "envoy.cluster.colord.upstream_rq_time:43|ms"


def test_prefix_defaults_to_envoy() -> None:
    from envoy.config.metrics.v3 import stats_pb2

    msg = stats_pb2.StatsdSink(tcp_cluster_name="statsd_exporter")
    assert parse_config(msg).prefix == "envoy"
    assert parse_config(msg).tcp_cluster_name == "statsd_exporter"
    msg = stats_pb2.StatsdSink(prefix="p")
    msg.address.socket_address.address = "127.0.0.1"
    msg.address.socket_address.port_value = 9125
    cfg = parse_config(msg)
    assert (cfg.prefix, cfg.address) == ("p", ("127.0.0.1", 9125))


def test_counters_are_deltas_and_every_used_counter_is_resent() -> None:
    store = Store()
    rq = store.counter("a.rq_total")
    store.counter("a.never_used")
    g = store.gauge("a.active")
    store.gauge("a.unused_gauge")
    rq.inc(30)
    g.set(3)
    first = take_snapshot(store)
    assert first.counters == [("a.rq_total", 30)]
    assert first.gauges == [("a.active", 3)]
    second = take_snapshot(store)
    assert second.counters == [("a.rq_total", 0)]  # resent with 0
    rq.inc(2)
    g.set(0)
    third = take_snapshot(store)
    assert third.counters == [("a.rq_total", 2)]
    assert third.gauges == [("a.active", 0)]  # absolute, a used gauge at 0 is still sent


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[tuple[str, int]]] = []

    def flush(self, snapshot: Snapshot) -> None: ...

    def on_histograms(self, samples: list[tuple[str, int]]) -> None:
        self.batches.append(samples)

    async def close(self, timeout: float) -> None: ...


def test_histogram_samples_reach_sinks_only_once_a_sink_exists() -> None:
    async def main() -> None:
        store = Store()
        before = store.histogram("x.rq_time")
        assert type(before) is Histogram  # no sink: the plain record(), no hook cost
        sink = ListSink()
        HistogramFanout([sink]).attach(store)
        after = store.histogram("y.cx_length_ms")
        assert type(before) is SinkedHistogram and type(after) is SinkedHistogram
        before.record(43.9)
        after.record(-1)
        assert sink.batches == []  # handed over once the window closes, in one call
        await asyncio.sleep(SAMPLE_WINDOW_S * 1.5)
        assert sink.batches == [[("x.rq_time", 43), ("y.cx_length_ms", 0)]]
        before.record(2)
        await asyncio.sleep(SAMPLE_WINDOW_S * 1.5)
        assert sink.batches[1:] == [[("x.rq_time", 2)]]
        before.merge()
        assert before.count == 2 and before.used  # still a histogram for /stats

    asyncio.run(main())


def test_fanout_outside_a_loop_hands_over_at_once() -> None:
    store = Store()
    sink = ListSink()
    HistogramFanout([sink]).attach(store)
    store.histogram("x").record(5)
    assert sink.batches == [[("x", 5)]]


class FakeSock:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.fail = fail
        self.closed = False

    def sendto(self, data: bytes, addr: Any) -> int:
        if self.fail is not None:
            raise self.fail
        self.sent.append((data, addr))
        return len(data)

    def close(self) -> None:
        self.closed = True


def test_udp_one_metric_per_datagram_without_newline() -> None:
    async def main() -> list[tuple[bytes, Any]]:
        sock = FakeSock()
        sink = UdpStatsdSink("p", ("127.0.0.1", 9125), sock)  # type: ignore[arg-type]
        sink.flush(Snapshot([("c1", 1), ("c2", 0)], [("g1", 7)]))
        sink.on_histograms([("h", 12)])
        assert sock.sent == []  # sent from the loop, not from the caller
        await asyncio.sleep(0)
        return sock.sent

    sent = asyncio.run(main())
    assert [d for d, _ in sent] == [b"p.c1:1|c", b"p.c2:0|c", b"p.g1:7|g", b"p.h:12|ms"]
    assert all(a == ("127.0.0.1", 9125) for _, a in sent)


def test_udp_a_large_flush_is_sent_in_chunks_and_the_queue_is_bounded() -> None:
    from sluice.stats.sinks import statsd

    async def main() -> None:
        sock = FakeSock()
        sink = UdpStatsdSink("p", ("127.0.0.1", 9125), sock)  # type: ignore[arg-type]
        sink.flush(Snapshot([(f"c{i}", 1) for i in range(statsd.UDP_CHUNK * 2 + 1)], []))
        await asyncio.sleep(0)
        assert len(sock.sent) == statsd.UDP_CHUNK
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(sock.sent) == statsd.UDP_CHUNK * 2 + 1
        sink.flush(Snapshot([(f"c{i}", 1) for i in range(statsd.UDP_MAX_PENDING + 5)], []))
        assert sink.send_errors == 5
        await sink.close(0.1)

    asyncio.run(main())


def test_udp_send_errors_are_counted_and_dropped() -> None:
    async def main() -> int:
        sink = UdpStatsdSink("p", ("127.0.0.1", 9125), FakeSock(BlockingIOError()))  # type: ignore[arg-type]
        sink.flush(Snapshot([("c1", 1)], [("g1", 7)]))
        sink.on_histograms([("h", 1)])
        await asyncio.sleep(0)
        return sink.send_errors

    assert asyncio.run(main()) == 3


def test_udp_to_a_closed_port_never_raises() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now

    async def main() -> None:
        sink = UdpStatsdSink("p", ("127.0.0.1", port))
        for _ in range(50):
            sink.on_histograms([("h", 1)])
            await asyncio.sleep(0)
        await sink.close(0.1)

    asyncio.run(main())


def test_bounded_buffer_drops_whole_writes_and_counts() -> None:
    overflow = Counter("statsd.cx_overflow")
    buf = BoundedBuffer(10, overflow)
    assert buf.append(b"12345")
    assert buf.append(b"12345")
    assert not buf.append(b"1")
    assert (len(buf), overflow.value) == (10, 1)
    assert buf.take() == b"1234512345"
    assert len(buf) == 0 and buf.append(b"1")


def _tcp_sink(choose: Any, limit: int = 64, timeout: float = 0.5) -> TcpStatsdSink:
    return TcpStatsdSink("p", choose, timeout, Counter("tx"), Counter("statsd.cx_overflow"), limit=limit)


def test_tcp_down_target_buffers_within_the_bound_and_backs_off() -> None:
    async def main() -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # refused
        sink = _tcp_sink(lambda: ("127.0.0.1", port), limit=64)
        for _ in range(20):
            sink.on_histograms([("h", 1)])  # "p.h:1|ms\n": 9 bytes each, 7 fit
            await asyncio.sleep(0)  # one write per loop iteration
        await asyncio.sleep(0.05)
        assert sink.buffer.size == 63
        assert sink.overflow.value == 20 - 7
        assert sink.connect_failures == 1 and sink.backoff_s == 0.5
        sink.on_histograms([("h", 1)])  # within the back-off: no new attempt
        await asyncio.sleep(0.05)
        assert sink.connect_failures == 1
        await sink.close(0.2)

    asyncio.run(main())


def test_tcp_newline_lines_buffered_until_connected_then_one_stream() -> None:
    async def main() -> None:
        got = bytearray()
        done = asyncio.Event()

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            got.extend(await r.read())
            done.set()
            w.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = _tcp_sink(lambda: ("127.0.0.1", port), limit=1 << 20)
        sink.on_histograms([("h", 3)])
        sink.flush(Snapshot([("c", 2)], [("g", 1)]))
        sink.on_histograms([("h", 1), ("h", 2)])
        await asyncio.sleep(0.05)
        sink.on_histograms([("h", 4)])
        await sink.close(1.0)
        await asyncio.wait_for(done.wait(), 2)
        assert got.decode() == "p.h:3|ms\np.c:2|c\np.g:1|g\np.h:1|ms\np.h:2|ms\np.h:4|ms\n"
        assert sink._tx_bytes.value == len(got)
        server.close()

    asyncio.run(main())


def test_tcp_backed_up_connection_is_closed_and_counted() -> None:
    class Transport:
        def __init__(self) -> None:
            self.aborted = False

        def get_write_buffer_size(self) -> int:
            return 60

        def write(self, data: bytes) -> None:
            raise AssertionError("must not write past the bound")

        def abort(self) -> None:
            self.aborted = True

    sink = _tcp_sink(lambda: None, limit=64)
    t = Transport()
    sink._transport = t  # type: ignore[assignment]
    sink.flush(Snapshot([("c", 1)], []))  # 60 + len("p.c:1|c\n") > 64
    assert t.aborted and sink.overflow.value == 1


def test_tcp_reconnects_after_the_server_goes_away() -> None:
    async def main() -> None:
        got: list[bytes] = []
        conns: list[asyncio.StreamWriter] = []

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            conns.append(w)
            while data := await r.read(65536):
                got.append(data)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = _tcp_sink(lambda: ("127.0.0.1", port), limit=1 << 20)
        sink.on_histograms([("h", 1)])
        await asyncio.sleep(0.1)
        assert sink.connects == 1 and b"".join(got) == b"p.h:1|ms\n"
        conns[0].close()  # the StatsD server drops the connection (a restart)
        await asyncio.sleep(0.1)
        sink.on_histograms([("h", 2)])  # noticed: buffered, reconnected, sent
        await asyncio.sleep(0.1)
        assert sink.connects == 2 and b"".join(got) == b"p.h:1|ms\np.h:2|ms\n"
        await sink.close(1.0)
        server.close()

    asyncio.run(main())
