"""Differential: the course's statsd-sink-and-prometheus front-envoy.yaml (TCP sink; addresses
localized, ``stats_flush_interval: 1s``) through the real Envoy and through Sluice, the same
requests, each proxy with its own recording StatsD server; then SIGTERM (the final flush).

Compared: every metric's type (``c``/``g``/``ms``); each counter's deltas summed over all
flushes; each gauge's value in the final flush; the number of ``|ms`` samples per histogram.
Ignored values, because they depend on timing or on the process:
- counters of the DNS refresh (``update_attempt``/``update_success``/``membership_change``,
  ``dns.cares.resolve_total``: one per ``dns_refresh_rate`` tick), the StatsD connection's own
  ``upstream_cx_tx_bytes_total`` (the bytes of the lines, timing included);
- gauges ``server.uptime``, ``server.memory_*``, ``server.stats_recent_lookups``, and
  ``server.state`` (Sluice drains on SIGTERM, so its final flush says DRAINING; Envoy exits);
- the ``upstream_cx_length_ms`` and ``upstream_rq_per_cx`` samples (recorded as a connection
  closes: Sluice closes its upstream connections at shutdown, Envoy exits with them open);
- every value of the admin listener's stats (``http.admin.*``, ``listener.admin.*``): they
  count the harness's ``/ready`` polls, as many as each start-up took.
Names only Envoy flushes must be exactly those listed in KNOWN_GAPS (stats Sluice does not keep
or does not mark used yet): a new gap and a closed one both fail; a name only Sluice flushes
fails the test. EITHER names the few that Envoy flushes in some runs only.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from harness import Fleet, LoopThread, ProxyProcess, http
from statsd_recorder import Recorder, flushes, timers
from test_statsd_sink import front_config

pytestmark = pytest.mark.envoy

P = "front-envoy."
IGNORED_COUNTER_VALUES = {
    "cluster.colord.update_attempt", "cluster.colord.update_success", "cluster.colord.membership_change",
    "cluster.statsd_exporter.update_attempt", "cluster.statsd_exporter.update_success",
    "cluster.statsd_exporter.membership_change", "cluster.statsd_exporter.upstream_cx_tx_bytes_total",
    "dns.cares.resolve_total",
}  # fmt: skip
IGNORED_GAUGE_VALUES = {
    "server.uptime", "server.memory_allocated", "server.memory_heap_size", "server.memory_physical_size",
    "server.stats_recent_lookups", "server.state",
    "server.version",  # the first six hex digits of each one's commit
}  # fmt: skip
IGNORED_TIMERS = {"cluster.colord.upstream_cx_length_ms", "cluster.colord.upstream_rq_per_cx"}
KNOWN_GAPS = {
    # counters
    "cluster_manager.cluster_updated", "dns.cares.resolve_total",
    # Envoy counts the deprecated fields of the course's config; Sluice reads them without counting
    "runtime.deprecated_feature_use", "runtime.deprecated_feature_seen_since_process_start",
    # gauges Sluice does not keep
    "dns.cares.pending_resolutions",
}  # fmt: skip
# Names Envoy flushes in some runs and not in others: allowed on either side.
EITHER = {
    # used once a retry takes the resource; the course's apps answer a 5xx now and then
    "cluster.colord.circuit_breakers.default.rq_retry_open",
    # used once a write to the upstream could not go out at once (timing); Sluice keeps no such gauge
    "cluster.colord.upstream_cx_tx_bytes_buffered",
}
N = 12


def _admin(name: str) -> bool:
    return name.startswith(("http.admin.", "listener.admin."))


class Seen:
    """What one proxy's StatsD server received, with names normalised (prefix and listener port off)."""

    def __init__(self, rec: Recorder, listener_port: int) -> None:
        lines = rec.tcp_lines()

        def norm(name: str) -> str:
            assert name.startswith(P), name
            return name.removeprefix(P).replace(f"127.0.0.1_{listener_port}", "LISTENER")

        self.flushes = flushes(lines)
        self.types: dict[str, str] = {norm(line.name): line.type for line in lines}
        self.counters: dict[str, int] = {}
        for f in self.flushes:
            for name, delta in f.counters.items():
                self.counters[norm(name)] = self.counters.get(norm(name), 0) + delta
        self.final_gauges = {norm(n): v for n, v in self.flushes[-1].gauges.items()}
        self.timer_counts: dict[str, int] = {}
        for m in timers(lines):
            self.timer_counts[norm(m.name)] = self.timer_counts.get(norm(m.name), 0) + 1


@pytest.fixture(scope="module")
def seen(loop: LoopThread) -> Iterator[dict[str, Seen]]:
    fleet = Fleet(loop, {"myservice": ["service_blue", "service_green", "service_red"]})
    recorders = {kind: loop.run(Recorder().start()) for kind in ("envoy", "sluice")}
    procs: dict[str, ProxyProcess] = {}
    try:
        for kind, rec in recorders.items():
            cfg: dict[str, Any] = front_config(fleet, rec.port, interval="1s", for_envoy=kind == "envoy")
            procs[kind] = ProxyProcess(kind, cfg).start()
        for _ in range(N):
            for proxy in procs.values():
                assert http(proxy.port, "GET", "/service/colors").status == 200
        time.sleep(2.5)  # two flushes after the traffic
        for proxy in procs.values():
            assert proxy.proc is not None
            proxy.proc.send_signal(signal.SIGTERM)
        for proxy in procs.values():
            assert proxy.proc is not None and proxy.proc.wait(10) == 0
        time.sleep(0.3)
        yield {kind: Seen(recorders[kind], procs[kind].port) for kind in procs}
    finally:
        for proxy in procs.values():
            proxy.stop()
        for rec in recorders.values():
            loop.run(rec.stop())
        fleet.stop()


def test_same_names_and_types(seen: dict[str, Seen]) -> None:
    envoy, sluice = seen["envoy"], seen["sluice"]
    only_sluice = set(sluice.types) - set(envoy.types) - IGNORED_TIMERS - EITHER
    assert not only_sluice, f"Sluice flushes names Envoy does not: {sorted(only_sluice)}"
    only_envoy = set(envoy.types) - set(sluice.types) - EITHER
    assert only_envoy <= KNOWN_GAPS, f"new gaps: {sorted(only_envoy - KNOWN_GAPS)}"
    assert KNOWN_GAPS <= only_envoy, f"gaps closed (take them off KNOWN_GAPS): {sorted(KNOWN_GAPS - only_envoy)}"
    assert {n: t for n, t in sluice.types.items() if n in envoy.types} == {
        n: t for n, t in envoy.types.items() if n in sluice.types
    }


def test_same_summed_counter_deltas(seen: dict[str, Seen]) -> None:
    envoy, sluice = seen["envoy"], seen["sluice"]
    common = {n for n in set(envoy.counters) & set(sluice.counters) if not _admin(n)} - IGNORED_COUNTER_VALUES
    assert "cluster.colord.upstream_rq_total" in common and envoy.counters["cluster.colord.upstream_rq_total"] == N
    assert {n: sluice.counters[n] for n in common} == {n: envoy.counters[n] for n in common}


def test_same_final_gauges(seen: dict[str, Seen]) -> None:
    envoy, sluice = seen["envoy"], seen["sluice"]
    common = {n for n in set(envoy.final_gauges) & set(sluice.final_gauges) if not _admin(n)} - IGNORED_GAUGE_VALUES
    assert "cluster.colord.membership_healthy" in common
    assert {n: sluice.final_gauges[n] for n in common} == {n: envoy.final_gauges[n] for n in common}


def test_same_histogram_samples_and_flush_count(seen: dict[str, Seen]) -> None:
    envoy, sluice = seen["envoy"], seen["sluice"]
    common = {n for n in set(envoy.timer_counts) & set(sluice.timer_counts) if not _admin(n)} - IGNORED_TIMERS
    assert envoy.timer_counts["cluster.colord.upstream_rq_time"] == N
    assert {n: sluice.timer_counts[n] for n in common} == {n: envoy.timer_counts[n] for n in common}
    # Every second from start plus the final one: the same count give or take one tick of start-up.
    assert abs(len(envoy.flushes) - len(sluice.flushes)) <= 1
