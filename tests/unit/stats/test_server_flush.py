"""The server's stats flush (``Server.flush_stats``): what the sinks get, the ``server.*`` gauges
Envoy refreshes at flush, ``stats_flush_on_admin``, and the TCP sink's node requirement."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sluice.admin import handlers
from sluice.admin.server import AdminRequest
from sluice.config.loader import load_bootstrap
from sluice.errors import ConfigError
from sluice.server import Server
from sluice.stats.sinks.snapshot import Snapshot

BASE = """
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  clusters:
  - name: statsd_exporter
    connect_timeout: 0.25s
    type: STATIC
    load_assignment:
      cluster_name: statsd_exporter
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}
"""
UDP_SINK = """
stats_sinks:
- name: envoy.stat_sinks.statsd
  typed_config:
    '@type': type.googleapis.com/envoy.config.metrics.v3.StatsdSink
    address: {socket_address: {address: 127.0.0.1, port_value: 9, protocol: UDP}}
"""
TCP_SINK = """
stats_sinks:
- name: envoy.statsd
  typed_config:
    '@type': type.googleapis.com/envoy.config.metrics.v3.StatsdSink
    tcp_cluster_name: statsd_exporter
"""


class RecordingSink:
    def __init__(self) -> None:
        self.flushes: list[Snapshot] = []
        self.samples: list[tuple[str, int]] = []

    def flush(self, snapshot: Snapshot) -> None:
        self.flushes.append(snapshot)

    def on_histograms(self, samples: list[tuple[str, int]]) -> None:
        self.samples += samples

    async def close(self, timeout: float) -> None: ...


def build(extra: str = UDP_SINK, **kw: Any) -> tuple[Server, RecordingSink]:
    async def make() -> Server:
        return Server(load_bootstrap(config_yaml=BASE + extra), **kw)

    server = asyncio.run(make())
    server.state = "LIVE"
    sink = RecordingSink()
    server.sinks = [sink]
    server._histogram_fanout.sinks = (sink,)
    return server, sink


def test_counter_deltas_absolute_gauges_and_server_gauges_at_flush() -> None:
    server, sink = build()
    c = server.store.counter("cluster.statsd_exporter.upstream_rq_total")
    c.inc(30)
    server.start_time -= 7
    assert server.store.value("server.uptime") == 0  # refreshed at flush only, as Envoy
    server.flush_stats()
    first = dict(sink.flushes[0].counters)
    gauges = dict(sink.flushes[0].gauges)
    assert first["cluster.statsd_exporter.upstream_rq_total"] == 30
    assert gauges["server.uptime"] == 7 and gauges["server.live"] == 1
    assert "server.memory_physical_size" in gauges
    server.flush_stats()
    second = dict(sink.flushes[1].counters)
    assert second["cluster.statsd_exporter.upstream_rq_total"] == 0  # every used counter resent
    assert set(second) == set(first)
    assert not any(n == "server.initialization_time_ms" for n, _ in sink.flushes[1].gauges)


def test_flush_hands_over_pending_histogram_samples_first() -> None:
    server, sink = build()
    server.store.histogram("cluster.statsd_exporter.upstream_rq_time").record(12.7)
    server.flush_stats()
    assert sink.samples == [("cluster.statsd_exporter.upstream_rq_time", 12)]
    assert server.store.histograms["cluster.statsd_exporter.upstream_rq_time"].used  # merged too


def test_without_sinks_histograms_stay_plain_and_the_flush_still_merges() -> None:
    async def make() -> Server:
        return Server(load_bootstrap(config_yaml=BASE))

    server = asyncio.run(make())
    server.state = "LIVE"
    h = server.store.histogram("x.rq_time")
    assert type(h).__name__ == "Histogram"
    h.record(3)
    server.flush_stats()
    assert h.used


def test_stats_flush_on_admin_flushes_when_stats_are_read() -> None:
    server, sink = build(UDP_SINK + "stats_flush_on_admin: true\n")
    status, *_ = handlers.dispatch(server, AdminRequest("GET", "/stats", b"", ""))
    assert status == 200 and len(sink.flushes) == 1
    handlers.dispatch(server, AdminRequest("GET", "/ready", b"", ""))
    assert len(sink.flushes) == 1


def test_stats_flush_on_admin_with_an_interval_is_refused_as_envoy() -> None:
    with pytest.raises(ConfigError, match=r"^Only one of stats_flush_interval or stats_flush_on_admin should be set!$"):
        build(UDP_SINK + "stats_flush_on_admin: true\nstats_flush_interval: 1s\n")


def test_interval_default_and_configured() -> None:
    assert build()[0].stats_flush_interval_s == 5.0
    assert build(UDP_SINK + "stats_flush_interval: 0.5s\n")[0].stats_flush_interval_s == 0.5


def test_tcp_sink_needs_node_id_and_cluster_as_envoy() -> None:
    with pytest.raises(ConfigError, match=r"tcp statsd: node 'id' and 'cluster' are required"):
        build(TCP_SINK)
    from sluice.server import Options

    server, _ = build(TCP_SINK, options=Options(service_cluster="c", service_node="n"))
    assert server.store.value("statsd.cx_overflow") == 0 and "statsd.cx_overflow" in server.store.counters
    server, _ = build(TCP_SINK + "node: {id: front-envoy, cluster: mycluster}\n")
    assert server.service_cluster == "mycluster"


def test_sink_config_errors_in_envoys_words() -> None:
    from sluice.config.loader import inspect

    unknown = BASE + TCP_SINK.replace("tcp_cluster_name: statsd_exporter", "tcp_cluster_name: nope")
    assert [str(p) for p in inspect(None, unknown).errors] == [
        "--config-yaml: stats_sinks[0].typed_config.tcp_cluster_name: tcp statsd: unknown cluster 'nope'"
    ]
    neither = BASE + TCP_SINK.replace("tcp_cluster_name: statsd_exporter", "prefix: x")
    assert [str(p) for p in inspect(None, neither).errors] == [
        "--config-yaml: stats_sinks[0].typed_config: one of address, tcp_cluster_name is required"
    ]
