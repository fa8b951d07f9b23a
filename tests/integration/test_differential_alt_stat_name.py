"""Differential: ``x-envoy-upstream-alt-stat-name`` through the real Envoy 1.40 and Sluice.

Envoy's router consumes the header of an internal request (router.cc ``alt_stat_prefix_``: the
upstream never sees it) and charges the response-code counters and the request time a second
time under ``cluster.<name>.<value>.`` (``CodeStatsImpl::chargeResponseStat`` /
``chargeResponseTiming``: ``<alt>.upstream_rq_<code>``, ``_<N>xx``, ``_completed``,
``<alt>.internal.*``, ``<alt>.upstream_rq_time``); the connection manager strips it from an
external request first (no alternate tree). Three listeners on one route table: ``peer``
(``use_remote_address`` with loopback in ``internal_address_config``: internal), ``edge``
(the same with another range: external) and ``xff`` (no ``use_remote_address``: XFF's single
address decides). Cases: 200/503/302, a retried 503, spent retries, a connect failure, no
healthy host, a route timeout, a code outside 100-599, external and XFF requests, and value
shapes (dots, trailing dots, empty, odd characters, repeated lines).

Compared: each answer, what the upstream received, the clusters' code and timing stats in
``/stats``, their ``/stats/prometheus`` lines (tag extraction of the alternate names) and the
StatsD sink's counter totals and timer names. One Envoy and one Sluice for the module (~5 s).
"""

from __future__ import annotations

import re
from collections import Counter as Multiset
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from harness import ROUTER_TYPED_CONFIG, Client, LoopThread, ProxyProcess, free_port, normalise_headers, parse_stats, quiesce, wait_until
from statsd_recorder import Recorder

from sluice.lab.apps.demoapp import App, Recorded

pytestmark = pytest.mark.envoy

ALT = "x-envoy-upstream-alt-stat-name"
CLUSTERS = ("svc", "dead", "empty")


class AltApp(App):
    """demoapp, plus ``/retry`` answering from :attr:`script` (then 200) and ``/slow`` (500 ms)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.script: list[int] = []

    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        path = rec.path.split("?", 1)[0]
        if path == "/retry":
            status = self.script.pop(0) if self.script else 200
            return status, [("Content-Length", "0")], b"", 0.0
        if path == "/slow":
            return 200, [("Content-Length", "0")], b"", 0.5
        return super().respond(rec, local_ip)


@dataclass(frozen=True)
class Case:
    name: str
    listener: str
    path: str
    alt: list[str]
    xff: str | None = None
    script: list[int] = field(default_factory=list)


CASES = [
    Case("internal 200", "peer", "/status/200", ["alt1"]),
    Case("internal 503", "peer", "/status/503", ["alt1"]),
    Case("internal 302", "peer", "/status/302", ["alt1"]),
    Case("retried 503 then 200", "peer", "/retry", ["retried"], script=[503, 200]),
    Case("retries spent", "peer", "/retry", ["spent"], script=[503, 503]),
    Case("connect failure", "peer", "/dead", ["dead"]),
    Case("no healthy upstream", "peer", "/none", ["none"]),
    Case("route timeout", "peer", "/slow", ["late"]),
    Case("status outside 100-599", "peer", "/status/600", ["odd"]),
    Case("no header", "peer", "/status/200", []),
    Case("external", "edge", "/status/200", ["edge"]),
    Case("external 503", "edge", "/status/503", ["edge"]),
    Case("xff internal", "xff", "/status/200", ["xff"], xff="127.0.0.5"),
    Case("xff external", "xff", "/status/200", ["xffext"], xff="203.0.113.9"),
    Case("dotted", "peer", "/status/200", ["a.b"]),
    Case("trailing dots", "peer", "/status/201", ["tr.."]),
    Case("leading dot", "peer", "/status/200", [".lead"]),
    Case("empty", "peer", "/status/200", [""]),
    Case("odd characters", "peer", "/status/200", ["x:y Z-1"]),
    Case("repeated lines", "peer", "/status/200", ["m1", "", "m2"]),
]
# The alternate trees Envoy must show (a check that the comparison compares something).
ENVOY_EXPECTS = {
    "cluster.svc.alt1.upstream_rq_200": 1,
    "cluster.svc.alt1.internal.upstream_rq_503": 1,
    "cluster.svc.alt1.upstream_rq_completed": 3,
    "cluster.svc.retried.upstream_rq_200": 1,
    "cluster.svc.spent.upstream_rq_503": 1,
    "cluster.dead.dead.upstream_rq_503": 1,
    "cluster.empty.none.upstream_rq_503": 1,
    "cluster.svc.late.upstream_rq_504": 1,
    "cluster.svc.odd.upstream_rq_unknown": 1,
    "cluster.svc.xff.upstream_rq_200": 1,
    "cluster.svc.a.b.upstream_rq_200": 1,
    "cluster.svc.tr.upstream_rq_201": 1,
    "cluster.svc..lead.upstream_rq_200": 1,
    "cluster.svc..upstream_rq_200": 1,
    "cluster.svc.x:y Z-1.upstream_rq_200": 1,
    "cluster.svc.m1,m2.upstream_rq_200": 1,
}
# Code and timing stats: the cluster's own, its categories, ``retry.`` and every alternate tree.
CODE_STAT = re.compile(r"^cluster\.(?:svc|dead|empty)\.(?:.*\.)?upstream_rq_(?:\d{3}|\dxx|completed|unknown|time)$")
PROM_FAMILY = re.compile(r"^envoy_cluster_\w*upstream_rq(?:_xx|_completed|_time(?:_count)?)?\{")


def _cluster(name: str, port: int | None) -> dict[str, Any]:
    endpoints = (
        []
        if port is None
        else [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]
    )
    return {"name": name, "connect_timeout": "0.25s", "type": "STATIC", "load_assignment": {"cluster_name": name, "endpoints": endpoints}}


def _listener(name: str, remote: bool, internal_prefix: str) -> dict[str, Any]:
    routes = [
        {"match": {"path": "/retry"}, "route": {"cluster": "svc", "retry_policy": {"retry_on": "5xx", "num_retries": 1}}},
        {"match": {"path": "/dead"}, "route": {"cluster": "dead"}},
        {"match": {"path": "/none"}, "route": {"cluster": "empty"}},
        {"match": {"path": "/slow"}, "route": {"cluster": "svc", "timeout": "0.1s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "svc"}},
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name,
        "use_remote_address": remote,
        "internal_address_config": {"cidr_ranges": [{"address_prefix": internal_prefix, "prefix_len": 8}]},
        "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": ROUTER_TYPED_CONFIG}],
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }


def _config(app_port: int, statsd_port: int) -> dict[str, Any]:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
        # Short, so the histograms reach /stats/prometheus and the sink soon after the requests.
        "stats_flush_interval": "0.2s",
        "stats_sinks": [
            {
                "name": "envoy.stat_sinks.statsd",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.metrics.v3.StatsdSink",
                    "address": {"socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": statsd_port}},
                },
            }
        ],
        "static_resources": {
            "listeners": [_listener("peer", True, "127.0.0.0"), _listener("edge", True, "10.0.0.0"), _listener("xff", False, "127.0.0.0")],
            "clusters": [_cluster("svc", app_port), _cluster("dead", free_port()), _cluster("empty", None)],
        },
    }


LISTENERS = {"peer": 0, "edge": 1, "xff": 2}
# Responses whose time is charged on ``svc`` (one per case: not the local 503s of dead/empty,
# nor the route timeout's 504; a retried attempt's response is not timed).
TIMED = sum(1 for c in CASES if c.path not in ("/dead", "/none", "/slow"))


def _send(app: AltApp, proxy: ProxyProcess, case: Case) -> dict[str, Any]:
    app.requests.clear()
    app.script = list(case.script)
    headers = [(ALT, v) for v in case.alt]
    if case.xff is not None:
        headers.append(("X-Forwarded-For", case.xff))
    port = proxy.listener_ports[LISTENERS[case.listener]]
    with Client(port) as c:
        resp = c.request("GET", case.path, headers)
    quiesce(proxy)

    def view(attempt: int, name: str, value: str) -> str:
        if attempt and name == "x-envoy-expected-rq-timeout-ms":
            return "<remaining>"  # a retry's is what is left of the route timeout
        return value.replace(f":{port}", ":<listener>")

    return {
        "status": resp.status,
        "body": resp.body,
        "upstream": [[(k, view(i, k, v)) for k, v in normalise_headers(r.headers)] for i, r in enumerate(app.requests)],
    }


def _prometheus(proxy: ProxyProcess) -> list[str]:
    """The code and timing lines of the clusters (histograms by their ``_count``)."""
    text = proxy.admin("GET", "/stats/prometheus").text
    return sorted(
        line for line in text.splitlines() if PROM_FAMILY.match(line) and any(f'envoy_cluster_name="{c}"' in line for c in CLUSTERS)
    )


def _histogram_names(proxy: ProxyProcess) -> list[str]:
    text = proxy.admin("GET", "/stats").text
    return sorted(
        n for n, _, v in (line.partition(": ") for line in text.splitlines()) if CODE_STAT.match(n) and not v.strip().lstrip("-").isdigit()
    )


# ``name:value|type``, the name taken greedily: an alternate name may hold ':' or a space.
STATSD_LINE = re.compile(r"^(?P<name>.+):(?P<value>-?\d+(?:\.\d+)?)\|(?P<type>c|g|ms)$")


def _statsd_totals(rec: Recorder) -> tuple[dict[str, int], Multiset[str]]:
    """Counter deltas summed per name, and the timer samples per name (values vary)."""
    totals: dict[str, int] = {}
    timers: Multiset[str] = Multiset()
    for _, data in list(rec.datagrams):
        for text in data.decode().split("\n"):
            m = STATSD_LINE.match(text)
            assert m, f"not a StatsD line: {text!r}"
            if m["type"] == "c":
                totals[m["name"]] = totals.get(m["name"], 0) + int(m["value"])
            elif m["type"] == "ms":
                timers[m["name"]] += 1
    return totals, timers


@dataclass
class Run:
    exchanges: dict[str, list[dict[str, Any]]]
    stats: dict[str, dict[str, int]]
    histograms: dict[str, list[str]]
    prometheus: dict[str, list[str]]
    statsd: dict[str, tuple[dict[str, int], Multiset[str]]]


STATSD_CODE_STAT = re.compile(r"^envoy\.cluster\.(?:svc|dead|empty)\.(?:.*\.)?upstream_rq_(?:\d{3}|\dxx|completed|unknown|time)$")


def _statsd_view(totals: dict[str, int], timers: Multiset[str]) -> dict[str, Any]:
    """The code counters' totals (those that moved) and the timers' sample counts."""
    return {
        "counters": {k: v for k, v in totals.items() if STATSD_CODE_STAT.match(k) and v},
        "timers": {k: n for k, n in timers.items() if STATSD_CODE_STAT.match(k)},
    }


@pytest.fixture(scope="module")
def run(loop: LoopThread) -> Iterator[Run]:
    app = AltApp("up")
    loop.run(app.start("127.0.0.1", 0))
    recorders = {kind: loop.run(Recorder().start()) for kind in ("envoy", "sluice")}
    proxies = {kind: ProxyProcess(kind, _config(app.port, recorders[kind].port)) for kind in ("envoy", "sluice")}
    try:
        # One after the other (Envoy is ready in ~0.1 s, Sluice in ~0.5 s): a child started from
        # a worker thread would die with it (the harness's PR_SET_PDEATHSIG follows the thread).
        for p in proxies.values():
            p.start()
        exchanges: dict[str, list[dict[str, Any]]] = {"envoy": [], "sluice": []}
        for case in CASES:
            for kind, proxy in proxies.items():
                exchanges[kind].append(_send(app, proxy, case))
        stats = {
            kind: {k: v for k, v in parse_stats(p.admin("GET", "/stats").text).items() if CODE_STAT.match(k)} for kind, p in proxies.items()
        }
        # Each histogram's count reaches /stats/prometheus with a flush: wait for the one that
        # takes every timed response (Envoy's count; Sluice must reach the same).
        prom: dict[str, list[str]] = {}
        for kind, proxy in proxies.items():

            def settled(proxy: ProxyProcess = proxy, kind: str = kind) -> bool:
                prom[kind] = _prometheus(proxy)
                return f'envoy_cluster_upstream_rq_time_count{{envoy_cluster_name="svc"}} {TIMED}' in prom[kind]

            assert wait_until(settled, 10.0), f"{kind}: upstream_rq_time's count is not {TIMED} in /stats/prometheus"
        sinks = {}
        for kind in proxies:
            rec, total = recorders[kind], stats[kind]["cluster.svc.upstream_rq_completed"]

            def flushed(rec: Recorder = rec, total: int = total) -> bool:
                # Every counter delta (a flush after the last response) and every timer sample.
                counters, timers = _statsd_totals(rec)
                return (
                    counters.get("envoy.cluster.svc.upstream_rq_completed") == total
                    and timers["envoy.cluster.svc.upstream_rq_time"] == TIMED
                )

            assert wait_until(flushed, 10.0), f"{kind}: the StatsD sink did not report every response"
            sinks[kind] = _statsd_totals(rec)
        yield Run(exchanges, stats, {k: _histogram_names(p) for k, p in proxies.items()}, prom, sinks)
    finally:
        for p in proxies.values():
            p.stop()
        for r in recorders.values():
            loop.run(r.stop())
        loop.run(app.stop())


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c.name for c in CASES])
def test_answer_and_upstream_request_match_envoy(run: Run, i: int) -> None:
    envoy, sluice = run.exchanges["envoy"][i], run.exchanges["sluice"][i]
    assert sluice == envoy
    for got in (envoy, sluice):
        for headers in got["upstream"]:
            assert ALT not in (k for k, _ in headers), "the header went upstream"


def test_envoy_charges_the_alternate_trees(run: Run) -> None:
    envoy = run.stats["envoy"]
    assert {k: envoy.get(k) for k in ENVOY_EXPECTS} == ENVOY_EXPECTS
    # An external request has no alternate tree (the connection manager strips the header).
    assert not [k for k in envoy if ".edge." in k or ".xffext." in k]


def test_code_stats_match_envoy(run: Run) -> None:
    assert run.stats["sluice"] == run.stats["envoy"]


def test_timing_histograms_match_envoy(run: Run) -> None:
    assert any(".alt1.internal.upstream_rq_time" in n for n in run.histograms["envoy"])
    assert run.histograms["sluice"] == run.histograms["envoy"]


def test_prometheus_lines_match_envoy(run: Run) -> None:
    assert any(line.startswith("envoy_cluster_alt1_upstream_rq{") for line in run.prometheus["envoy"])
    assert run.prometheus["sluice"] == run.prometheus["envoy"]


def test_statsd_sink_matches_envoy(run: Run) -> None:
    envoy = _statsd_view(*run.statsd["envoy"])
    assert envoy["counters"].get("envoy.cluster.svc.alt1.upstream_rq_200") == 1
    assert _statsd_view(*run.statsd["sluice"]) == envoy
