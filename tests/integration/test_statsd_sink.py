"""The StatsD sink and the server's stats flush, end to end: the course's
``labs/statsd-sink-and-prometheus/front-envoy.yaml`` (addresses localized; the sink rewritten to
UDP or the interval shortened where a test says so) through Sluice, with a recording StatsD
server. Facts checked are those of ``tests/golden/envoy-part3-5/README.md`` ("StatsD sink").
"""

from __future__ import annotations

import copy
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from harness import Fleet, LoopThread, ProxyProcess, free_port, http, load_seed, localize, parse_stats, wait_until
from statsd_recorder import Recorder, flushes, timers

LAB = "statsd-sink-and-prometheus"


@pytest.fixture(scope="module")
def fleet(loop: LoopThread) -> Iterator[Fleet]:
    f = Fleet(loop, {"myservice": ["service_blue", "service_green", "service_red"]})
    yield f
    f.stop()


@pytest.fixture()
def recorder(loop: LoopThread) -> Iterator[Recorder]:
    rec: Recorder = loop.run(Recorder().start())
    yield rec
    loop.run(rec.stop())


def front_config(fleet: Fleet, statsd_port: int, *, udp: bool = False, interval: str | None = None,
                 for_envoy: bool = False) -> dict[str, Any]:
    endpoints = {"myservice": fleet.endpoints["myservice"], "statsd_exporter": [("127.0.0.1", statsd_port)]}
    cfg = localize(load_seed(LAB), endpoints, free_port(), [free_port()], for_envoy=for_envoy)
    if interval is not None:
        cfg["stats_flush_interval"] = interval
    if udp:
        sink = cfg["stats_sinks"][0]["typed_config"]
        del sink["tcp_cluster_name"]
        sink["address"] = {"socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": statsd_port}}
    return cfg


def get(proxy: ProxyProcess, n: int) -> None:
    for _ in range(n):
        assert http(proxy.port, "GET", "/service/colors").status == 200


def sigterm(proxy: ProxyProcess) -> float:
    assert proxy.proc is not None
    t = time.time()
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(10) == 0
    return t


def test_tcp_flush_every_5s_from_start_deltas_gauges_timers_and_a_final_flush(
    fleet: Fleet, recorder: Recorder, start_proxy: Callable[[str, dict[str, Any]], ProxyProcess]
) -> None:
    cfg = front_config(fleet, recorder.port)  # the seed's TCP sink and default 5 s interval
    t0 = time.time()
    proxy = start_proxy("sluice", cfg)
    get(proxy, 6)
    assert wait_until(lambda: len(flushes(recorder.tcp_lines())) >= 2, 14), recorder.tcp_lines()[-5:]
    stopped = sigterm(proxy)
    assert wait_until(lambda: len(flushes(recorder.tcp_lines())) >= 3, 3)
    lines = recorder.tcp_lines()
    f1, f2, last = flushes(lines)
    # Timing: 5 s counted from start, then every 5 s; the final flush right after SIGTERM. The
    # server.initialization_time_ms sample marks the start (sent as the server goes live, a few
    # ms after the timer is armed); t0, before exec, only bounds it loosely (a loaded machine
    # can take seconds to start Python).
    started = next(m.t for m in timers(lines) if m.name == "front-envoy.server.initialization_time_ms")
    assert 5.0 <= f1.t - t0 <= 12.0, f1.t - t0
    assert 4.5 <= f1.t - started <= 5.7, f1.t - started
    assert 4.7 <= f2.t - f1.t <= 5.8, f2.t - f1.t
    assert 0 <= last.t - stopped <= 2.5
    assert recorder.connections == 1  # one thread, one connection (Envoy: one per thread)
    # Counters are deltas, every used counter is resent (0 included); the same set each time.
    rq = "front-envoy.cluster.colord.upstream_rq_total"
    assert (f1.counters[rq], f2.counters[rq], last.counters[rq]) == (6, 0, 0)
    assert f2.counters.keys() <= last.counters.keys()
    # Gauges are absolute.
    members = "front-envoy.cluster.colord.membership_total"
    assert f1.gauges[members] == f2.gauges[members] == last.gauges[members] == 3
    uptime = "front-envoy.server.uptime"
    assert f1.gauges[uptime] in (5, 6, 7, 8) and 4 <= f2.gauges[uptime] - f1.gauges[uptime] <= 6
    assert "front-envoy.cluster.colord.upstream_rq_active" in f1.gauges
    assert f1.gauges["front-envoy.cluster.colord.upstream_rq_active"] == 0
    # Histograms: not in the flush; every sample sent as it is recorded, as an integer |ms.
    ms = timers(lines)
    rq_time = [m for m in ms if m.name == "front-envoy.cluster.colord.upstream_rq_time"]
    assert len(rq_time) == 6 and all(m.t < f1.t for m in rq_time)
    assert [m for m in ms if m.name == "front-envoy.server.initialization_time_ms"]
    assert not any(n.endswith(("upstream_rq_time", "downstream_rq_time")) for n in f1.names())
    # The sink's own connection counts its bytes on the statsd cluster, as Envoy's does.
    sent = sum(len(d) for _, _, d in recorder.tcp_reads)
    tx = "front-envoy.cluster.statsd_exporter.upstream_cx_tx_bytes_total"
    assert 0 < sum(f.counters.get(tx, 0) for f in (f1, f2, last)) <= sent


def test_udp_one_metric_per_datagram_and_the_flushed_set_is_usedonly(
    fleet: Fleet, recorder: Recorder, start_proxy: Callable[[str, dict[str, Any]], ProxyProcess]
) -> None:
    proxy = start_proxy("sluice", front_config(fleet, recorder.port, udp=True, interval="1s"))
    get(proxy, 4)
    assert proxy.admin("GET", "/stats?usedonly").status == 200  # admin stats used from here on
    n_before = len(flushes(recorder.udp_lines()))
    used = parse_stats(proxy.admin("GET", "/stats?usedonly").text)
    assert wait_until(lambda: len(flushes(recorder.udp_lines())) >= n_before + 4, 8)
    assert all(b"\n" not in d and len(d) < 512 for _, d in recorder.datagrams)
    prefix = "front-envoy."
    # Complete flushes after the snapshot (the last one may still be arriving). UDP may drop a
    # datagram on a loaded machine (a full CI run once lost a flush's gauges), so no flush may
    # name a stat outside the used set, and at least one of the three must be exactly it.
    complete = flushes(recorder.udp_lines())[n_before + 1 : n_before + 4]
    names = [{n.removeprefix(prefix) for n in f.names()} for f in complete]
    assert all(n <= set(used) for n in names), [sorted(n - set(used)) for n in names]
    assert set(used) in names, [sorted(set(used) - n) for n in names]
    flushed = complete[names.index(set(used))]
    total = sum(f.counters.get(prefix + "cluster.colord.upstream_rq_total", 0) for f in flushes(recorder.udp_lines()))
    assert total == 4
    assert flushed.counters[prefix + "cluster.colord.upstream_rq_total"] == 0
    assert flushed.gauges[prefix + "cluster.colord.membership_healthy"] == 3
    sigterm(proxy)


def test_a_dead_or_missing_statsd_target_never_affects_traffic(
    fleet: Fleet, start_proxy: Callable[[str, dict[str, Any]], ProxyProcess]
) -> None:
    dead = free_port()  # nothing listens there (TCP refused, UDP dropped)
    cfg = front_config(fleet, dead, interval="0.2s")
    udp = copy.deepcopy(front_config(fleet, dead, udp=True)["stats_sinks"][0])
    cfg["stats_sinks"].append(udp)
    proxy = start_proxy("sluice", cfg)
    started = time.monotonic()
    get(proxy, 60)
    assert time.monotonic() - started < 10
    time.sleep(0.5)  # several flushes into the void
    stats = proxy.stats()
    assert stats["statsd.cx_overflow"] == 0  # far below the 16 MiB bound
    assert stats["cluster.colord.upstream_rq_total"] == 60
    stopped = sigterm(proxy)
    assert time.time() - stopped < 3  # the final flush waits at most 1 s for the dead target


def test_stats_flush_on_admin_flushes_on_each_stats_request_only(
    fleet: Fleet, recorder: Recorder, start_proxy: Callable[[str, dict[str, Any]], ProxyProcess]
) -> None:
    cfg = front_config(fleet, recorder.port, udp=True)
    cfg["stats_flush_on_admin"] = True  # no flush timer at all (Envoy refuses an interval with it)
    proxy = start_proxy("sluice", cfg)  # start-up polls /ready, which flushes nothing
    get(proxy, 2)
    time.sleep(0.8)
    assert flushes(recorder.udp_lines()) == []
    assert len(timers(recorder.udp_lines())) >= 2  # samples are still sent as recorded
    rq_total = "front-envoy.cluster.colord.upstream_rq_total"

    def flushed(n: int) -> bool:
        # A flush is several datagrams: wait for the one with the cluster's counter too.
        got = flushes(recorder.udp_lines())
        return len(got) == n and rq_total in got[-1].counters

    proxy.admin("GET", "/stats")
    assert wait_until(lambda: flushed(1), 3)
    assert flushes(recorder.udp_lines())[0].counters[rq_total] == 2
    proxy.admin("GET", "/stats?format=json")
    assert wait_until(lambda: flushed(2), 3)
    assert flushes(recorder.udp_lines())[1].counters[rq_total] == 0
    sigterm(proxy)
