"""Differential: ``/stats`` of the real Envoy and of Sluice after the same requests on the same
config — successes, fault aborts (the fault filter turned on and off through its runtime key),
a 503 retried to the other host, a route timeout (504) and a request without a route (404).

Compared in the text body, in ``?format=json`` and with ``usedonly``: the counter and gauge
names, each one's kind (``/stats?type=Counters|Gauges``) and value, and the histogram names.
What still differs is listed with its reason in :data:`ONLY_ENVOY`, :data:`DIFFERENT_VALUES`
and :data:`HISTOGRAMS_ONLY_ENVOY`; the test fails when an entry appears *or* disappears. Values
that depend on timing or on the process are compared by name only (:data:`TIMING_DEPENDENT`,
and every value of the admin listener's stats: they count the harness's ``/ready`` polls, as
many as each start-up took, and the ``/stats`` requests themselves).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from harness import ROUTER_TYPED_CONFIG, Client, LoopThread, ProxyProcess, free_port, wait_until
from test_retries import ScriptedApp

pytestmark = pytest.mark.envoy

FAULT_TYPED_CONFIG = {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
    # Off unless the runtime says otherwise (fault.http.abort.abort_percent).
    "abort": {"http_status": 503, "percentage": {"numerator": 0, "denominator": "HUNDRED"}},
}

CONFIG = """
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
# Histograms merge at each stats flush: a short interval has the request times merged by the dump.
stats_flush_interval: 0.25s
layered_runtime:
  layers:
  - {{name: static, static_layer: {{}}}}
  - {{name: admin, admin_layer: {{}}}}
static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listener}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: {{prefix: /status}}
                route: {{cluster: pair}}
              - match: {{prefix: /script}}
                route:
                  cluster: pair
                  retry_policy:
                    retry_on: 5xx
                    num_retries: 1
                    retry_host_predicate: [{{name: envoy.retry_host_predicates.previous_hosts, typed_config: {{"@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}}}]
                    host_selection_retry_max_attempts: 3
              - match: {{prefix: /delay}}
                route: {{cluster: pair, timeout: 0.2s}}
          http_filters:
          - name: envoy.filters.http.fault
          - name: envoy.filters.http.router
  clusters:
  - name: pair
    connect_timeout: 0.25s
    type: STATIC
    load_assignment:
      cluster_name: pair
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {a}}}}}}}
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {b}}}}}}}
"""

# (path, status) in order; "fault on"/"fault off" switch the abort through the runtime.
SEQUENCE: list[tuple[str, int]] = [
    ("/status/200", 200),
    ("/status/201", 201),
    ("fault on", 0),
    ("/status/200", 503),
    ("/status/200", 503),
    ("fault off", 0),
    ("/script", 200),  # 503 from one host, retried to the other: 200
    ("/delay/1000", 504),  # route timeout 0.2 s
    ("/nothing-here", 404),
    ("/status/404", 404),
]

# Values that depend on timing or on the process: compared by name only.
TIMING_DEPENDENT = {
    "server.uptime", "server.memory_allocated", "server.memory_heap_size", "server.memory_physical_size",
    # Envoy's symbol table lookups since the last flush; Sluice has no symbol table (always 0)
    "server.stats_recent_lookups",
    # the first six hex digits of each one's commit
    "server.version",
    # x-envoy-upstream-service-time has as many digits as milliseconds took
    "http.ingress_http.downstream_cx_tx_bytes_total",
}  # fmt: skip
ADMIN_PREFIXES = ("http.admin.", "listener.admin.")

# Counters and gauges only Envoy has, with the reason.
ONLY_ENVOY: dict[str, str] = {}
# Counters and gauges only Sluice has, with the reason.
ONLY_SLUICE: dict[str, str] = {}
# Names both have whose values differ, with the reason.
DIFFERENT_VALUES = {
    "cluster.pair.upstream_cx_rx_bytes_buffered": "Sluice parses each read at once and buffers nothing; "
    "Envoy's gauge still holds a pooled connection's last response bytes",
}
# Histograms only one side has.
HISTOGRAMS_ONLY_ENVOY: dict[str, str] = {}
HISTOGRAMS_ONLY_SLUICE: dict[str, str] = {}

_HIST = re.compile(r"P0\(|No recorded values")


def _config(a: int, b: int) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(CONFIG.format(admin=free_port(), listener=free_port(), a=a, b=b))
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0]["typed_config"] = FAULT_TYPED_CONFIG
    hcm["http_filters"][1]["typed_config"] = ROUTER_TYPED_CONFIG
    return cfg


class Dump:
    """One proxy's stats after the sequence: text, json, and both with usedonly."""

    def __init__(self, proxy: ProxyProcess) -> None:
        listener = f"127.0.0.1_{proxy.port}"

        def norm(name: str) -> str:
            return name.replace(listener, "LISTENER")

        def get(path: str) -> str:
            resp = proxy.admin("GET", path)
            assert resp.status == 200, (proxy.kind, path, resp)
            return resp.text

        def text(body: str) -> tuple[dict[str, int], set[str]]:
            values, hists = {}, set()
            for line in body.splitlines():
                name, _, value = line.partition(": ")
                if _HIST.match(value):
                    hists.add(norm(name))
                else:
                    values[norm(name)] = int(value)
            return values, hists

        def js(body: str) -> tuple[dict[str, int], set[str]]:
            values, hists = {}, set()
            for entry in yaml.safe_load(body)["stats"]:
                if "histograms" in entry:
                    hists |= {norm(h["name"]) for h in entry["histograms"]["computed_quantiles"]}
                else:
                    values[norm(entry["name"])] = int(entry["value"])
            return values, hists

        self.text, self.text_hists = text(get("/stats"))
        self.json, self.json_hists = js(get("/stats?format=json"))
        self.used, self.used_hists = text(get("/stats?usedonly"))
        self.used_json, _ = js(get("/stats?usedonly&format=json"))
        self.counters = set(text(get("/stats?type=Counters"))[0])
        prom = get("/stats/prometheus")
        self.rq_time_count = {
            m.group(1): int(m.group(2))
            for m in re.finditer(r'^envoy_cluster_upstream_rq_time_count\{envoy_cluster_name="(\w+)"\} (\d+)$', prom, re.M)
        }
        self.gauges = set(text(get("/stats?type=Gauges"))[0])


def _run(proxy: ProxyProcess, apps: list[ScriptedApp]) -> None:
    for path, status in SEQUENCE:
        if path.startswith("fault "):
            value = "100" if path == "fault on" else "0"
            proxy.runtime_modify(**{"fault.http.abort.abort_percent": value})
            continue
        if path == "/script":
            shared: list[tuple[int, list[tuple[str, str]]]] = [(503, [])]
            for app in apps:
                app.script = shared  # whichever host answers first says 503, the other 200
        for app in apps:
            app.requests.clear()
        with Client(proxy.port) as c:
            assert c.get(path).status == status, (proxy.kind, path)
        if path == "/script":  # the retry went to the other host (previous_hosts)
            assert [len(app.requests) for app in apps] == [1, 1], proxy.kind
    # The timed-out upstream request's connection closes; wait until both sides say so.
    assert wait_until(lambda: proxy.stats().get("cluster.pair.upstream_rq_active") == 0, timeout=5)
    time.sleep(0.6)  # two stats flushes: the histograms have merged every sample


@pytest.fixture(scope="module")
def dumps(loop: LoopThread) -> Iterator[dict[str, Dump]]:
    apps = [ScriptedApp("a"), ScriptedApp("b")]
    for app in apps:
        loop.run(app.start("127.0.0.1", 0))
    out: dict[str, Dump] = {}
    try:
        config = _config(apps[0].port, apps[1].port)
        for kind in ("envoy", "sluice"):
            proxy = ProxyProcess(kind, config).start()
            try:
                _run(proxy, apps)
                out[kind] = Dump(proxy)
            finally:
                proxy.stop()
    finally:
        for app in apps:
            loop.run(app.stop())
    yield out


def _only(a: dict[str, int], b: dict[str, int]) -> set[str]:
    return set(a) - set(b)


def test_text_names(dumps: dict[str, Dump]) -> None:
    envoy, sluice = dumps["envoy"], dumps["sluice"]
    assert _only(envoy.text, sluice.text) == set(ONLY_ENVOY)
    assert _only(sluice.text, envoy.text) == set(ONLY_SLUICE)


def test_kinds(dumps: dict[str, Dump]) -> None:
    envoy, sluice = dumps["envoy"], dumps["sluice"]
    assert envoy.counters & sluice.gauges == set()
    assert envoy.gauges & sluice.counters == set()
    assert {"cluster.pair.upstream_queue_overloaded", "http.ingress_http.downstream_cx_http1_soft_drain"} <= sluice.gauges
    assert "listener_manager.workers_pinned" in sluice.gauges


def test_text_values(dumps: dict[str, Dump]) -> None:
    envoy, sluice = dumps["envoy"], dumps["sluice"]
    common = {n for n in set(envoy.text) & set(sluice.text) if not n.startswith(ADMIN_PREFIXES)} - TIMING_DEPENDENT
    assert "cluster.pair.upstream_rq_retry" in common
    differing = {n for n in common if envoy.text[n] != sluice.text[n]}
    assert {n: (envoy.text[n], sluice.text[n]) for n in differing} == {
        n: (envoy.text[n], sluice.text[n]) for n in DIFFERENT_VALUES
    }


def test_json_is_the_text(dumps: dict[str, Dump]) -> None:
    def steady(values: dict[str, int]) -> dict[str, int]:
        return {n: v for n, v in values.items() if n not in TIMING_DEPENDENT and not n.startswith(ADMIN_PREFIXES)}

    for d in dumps.values():
        assert d.json.keys() == d.text.keys()
        assert steady(d.json) == steady(d.text)
        assert d.json_hists == d.text_hists
        assert d.used_json.keys() == d.used.keys()


def test_usedonly_names(dumps: dict[str, Dump]) -> None:
    envoy, sluice = dumps["envoy"], dumps["sluice"]
    assert set(envoy.used) - set(sluice.used) == set(ONLY_ENVOY) & set(envoy.used)
    assert set(sluice.used) - set(envoy.used) == set(ONLY_SLUICE) & set(sluice.used)
    assert "cluster.pair.circuit_breakers.default.cx_open" in sluice.used  # set at creation, as Envoy
    assert "cluster.pair.retry.upstream_rq_completed" in sluice.used


def test_histogram_names(dumps: dict[str, Dump]) -> None:
    envoy, sluice = dumps["envoy"], dumps["sluice"]
    assert envoy.text_hists - sluice.text_hists == set(HISTOGRAMS_ONLY_ENVOY)
    assert sluice.text_hists - envoy.text_hists == set(HISTOGRAMS_ONLY_SLUICE)
    assert envoy.used_hists - sluice.used_hists <= set(HISTOGRAMS_ONLY_ENVOY)


def test_gauges_back_to_zero_after_the_traffic(dumps: dict[str, Dump]) -> None:
    # Requests, streams and downstream connections are over; pooled upstream connections stay open
    # (upstream_cx_active, cx_open of the breakers count them) on both sides alike.
    for kind, d in dumps.items():
        active = {n: v for n, v in d.text.items() if n in d.gauges and "_active" in n and not n.startswith(ADMIN_PREFIXES)}
        # (not traffic: the listener, and the admin layer's override set to 0 by "fault off")
        steady = {"cluster.pair.upstream_cx_active", "listener_manager.total_listeners_active", "runtime.admin_overrides_active"}
        busy = {n: v for n, v in active.items() if v and n not in steady}
        assert busy == {}, kind


def test_request_time_counts_completed_upstream_responses_only(dumps: dict[str, Dump]) -> None:
    # Two 200/201, the retried 503's final 200 and the upstream 404: not the fault aborts, the
    # retried attempt or the route timeout's 504 (Envoy records it in onUpstreamComplete).
    assert dumps["envoy"].rq_time_count == {"pair": 4}
    assert dumps["sluice"].rq_time_count == dumps["envoy"].rq_time_count
