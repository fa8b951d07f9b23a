"""The course's two metrics labs (3.7 ``statsd-sink-and-prometheus``, 3.8 ``monitoring``) from the
seed folders unchanged, through ``python -m sluice lab up -d``, with the course's traffic.

What the course's user sees, asserted within bounded time after the traffic:

- Prometheus (the real one, through its HTTP API on the published ``:9090``) answers the course's
  series (``front_envoy_cluster_colord_upstream_rq_2xx`` …) with each proxy's own ``/stats``
  values: the 2xx counts equal the responses the traffic got.
- The exporter's ``/metrics`` (published ``:9102``) has the ``_upstream_rq_time`` summaries:
  quantile lines, ``_sum``, ``_count``.
- Each proxy's admin ``/stats/prometheus`` can be scraped by Prometheus directly. Neither lab's
  ``prometheus/config.yaml`` scrapes the proxies (only ``statsd_exporter:9102``, plus itself and
  ``grafana:3000`` in 3.7), so the test parses each endpoint with prometheus_client and runs a
  second Prometheus of its own (same binary, a temporary config and TSDB) whose targets are the
  proxies' admin ports: each target must be ``up`` with the proxies' counts.
- 3.7: Grafana's provisioned ``prometheus`` datasource answers through Grafana's datasource proxy.
- 3.8: the Grafana stand-in's "Services Dashboard", loaded in headless Chromium as the course's
  user opens it (``:3000``, admin/admin), draws its 2XX, 5XX and Latency panels for
  source=service_a destination=service_b. The 2XX/5XX panels are ``x - x offset $__interval``
  (30 s at the default hour), so a point needs 30 s of history: traffic keeps running, as the
  course's ``while true; do curl …; done`` does, until the panels show it.
"""

from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from labkit import MEASUREMENTS, SEED, get, requires_lab
from prometheus_client.parser import text_string_to_metric_families

from sluice.lab import images

pytestmark = requires_lab

AFTER_TRAFFIC = 20.0  # seconds, from the end of the traffic to Prometheus/the exporter answering
PROMETHEUS = "127.0.0.1"  # the published 9090 (the course's user opens the host's :9090)
EXPORTER = "127.0.0.1"  # the published 9102
GRAFANA = "http://127.0.0.1:3000"  # the published 3000
ADMIN_AUTH = {"Authorization": "Basic YWRtaW46YWRtaW4="}  # admin:admin, the labs' grafana.ini

T = TypeVar("T")


# --- helpers ---------------------------------------------------------------------------------
def poll(check: Callable[[], T | None], timeout: float, what: str, detail: Callable[[], Any] = lambda: "") -> T:
    """``check()`` until it returns something other than None/False, at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except OSError:
            got = None
        if got is not None and got is not False:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s; {detail()}")
        time.sleep(0.25)


def prom_api(host: str, path: str, port: int = 9090, **params: Any) -> Any:
    status, body = get(host, f"{path}?{urllib.parse.urlencode(params)}", port=port)
    assert status == 200, body
    data = json.loads(body)
    assert data["status"] == "success", data
    return data["data"]


def prom_values(host: str, promql: str, port: int = 9090) -> dict[str, float]:
    """An instant query's vector as {series name: value} (one series per name here)."""
    return {
        r["metric"].get("__name__", promql): float(r["value"][1]) for r in prom_api(host, "/api/v1/query", port, query=promql)["result"]
    }


def admin_stats(address: str) -> dict[str, int]:
    """A proxy's ``/stats`` counters and gauges (histogram lines left out)."""
    status, body = get(address, "/stats", port=9901)
    assert status == 200, body
    out = {}
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        if value.lstrip("-").isdigit():
            out[name] = int(value)
    return out


def statsd_name(prefix: str, stat: str) -> str:
    """The exporter's series for a StatsD stat (no mapping file: every other character → ``_``)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", f"{prefix}.{stat}")


def exporter_summaries(host: str = EXPORTER) -> dict[str, dict[str, float]]:
    """The exporter's summaries: {family: {"0.5": v, "0.9": v, "0.99": v, "sum": v, "count": v}}."""
    status, body = get(host, "/metrics", port=9102)
    assert status == 200, body
    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(body):
        if fam.type != "summary":
            continue
        vals = out.setdefault(fam.name, {})
        for s in fam.samples:
            if s.name == fam.name:
                vals[s.labels["quantile"]] = s.value
            else:
                vals[s.name.removeprefix(fam.name + "_")] = s.value
    return out


def proxies(lab: Any) -> dict[str, str]:
    """{service: address} of every service with a Sluice admin port (9901)."""
    return {
        s["name"]: a
        for s in lab.plan()["services"]
        for proc in s["processes"]
        for a, p, what in proc["ports"]
        if what == "admin" and p == 9901
    }


def traffic_stats(stats: dict[str, int], prefixes: tuple[str, ...]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if v > 0 and k.startswith(prefixes)}


def wait_prometheus_matches(expected: dict[str, float], t_traffic: float, what: str) -> None:
    """Every series in ``expected`` has its value in Prometheus (through /api/v1/query)."""
    promql = '{__name__=~"' + "|".join(sorted(expected)) + '"}'
    seen: dict[str, float] = {}

    def check() -> bool:
        seen.clear()
        seen.update(prom_values(PROMETHEUS, promql))
        return seen == expected

    def detail() -> str:
        diff = {k: (v, seen.get(k)) for k, v in expected.items() if seen.get(k) != v}
        return f"(expected, Prometheus) differ for {json.dumps(diff, indent=1)}"

    poll(check, remaining(t_traffic), what, detail)


def remaining(t_traffic: float) -> float:
    """What is left of the AFTER_TRAFFIC budget (``poll`` checks at least once)."""
    return max(0.0, t_traffic + AFTER_TRAFFIC - time.monotonic())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def prometheus_scraping(targets: dict[str, str], tmp: Path) -> Iterator[int]:
    """A Prometheus of the test's own scraping every proxy's ``/stats/prometheus`` each second
    (the labs' own configs do not); yields its port on 127.0.0.1."""
    if not Path(images.PROMETHEUS_BINARY).is_file():
        pytest.fail(f"{images.PROMETHEUS_BINARY} is missing (scripts/test.sh installs it: apt-get install prometheus)")
    tmp.mkdir(parents=True)
    jobs = [
        {
            "job_name": "envoy",
            "metrics_path": "/stats/prometheus",
            "static_configs": [{"targets": [f"{a}:9901"], "labels": {"service": s}} for s, a in targets.items()],
        }
    ]
    (tmp / "prometheus.yml").write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}))
    port = free_port()
    log = open(tmp / "prometheus.log", "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [
            images.PROMETHEUS_BINARY,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def check_proxies_scrapable(lab: Any, tmp: Path, expect: dict[str, tuple[str, str, float]]) -> None:
    """Each proxy's ``/stats/prometheus`` parses (prometheus_client) and is an ``up`` target of a
    real Prometheus; ``expect`` = {service: (series, cluster, value)} checked through its API."""
    targets = proxies(lab)
    for service, address in targets.items():
        status, body = get(address, "/stats/prometheus", port=9901)
        assert status == 200, (service, body[:500])
        families = {f.name: f for f in text_string_to_metric_families(body)}
        assert families["envoy_cluster_upstream_rq_time"].type == "histogram", service
        assert families["envoy_server_live"].type == "gauge", service
    with prometheus_scraping(targets, tmp) as port:

        def all_up() -> list[Any] | None:
            active = prom_api("127.0.0.1", "/api/v1/targets", port)["activeTargets"]
            ok = len(active) == len(targets) and all(t["health"] == "up" and t["lastError"] == "" for t in active)
            return active if ok else None

        poll(all_up, 15, "every proxy's /stats/prometheus an up target", lambda: prom_api("127.0.0.1", "/api/v1/targets", port))
        up = prom_api("127.0.0.1", "/api/v1/query", port, query='up{job="envoy"}')["result"]
        assert sorted((r["metric"]["service"], r["value"][1]) for r in up) == sorted((s, "1") for s in targets)
        for service, (series, cluster, value) in expect.items():
            q = f'sum({series}{{service="{service}",envoy_cluster_name="{cluster}"}})'
            poll(
                lambda q=q, value=value: (
                    [float(r["value"][1]) for r in prom_api("127.0.0.1", "/api/v1/query", port, query=q)["result"]] == [value]
                ),
                10,
                f"{q} == {value} scraped from {service}'s /stats/prometheus",
                lambda q=q: prom_api("127.0.0.1", "/api/v1/query", port, query=q)["result"],
            )


def front_histogram_count(address: str, cluster: str) -> float | None:
    """``envoy_cluster_upstream_rq_time_count`` for ``cluster`` in a proxy's /stats/prometheus."""
    body = get(address, "/stats/prometheus", port=9901)[1]
    for fam in text_string_to_metric_families(body):
        if fam.name == "envoy_cluster_upstream_rq_time":
            for s in fam.samples:
                if s.name.endswith("_count") and s.labels.get("envoy_cluster_name") == cluster:
                    return s.value
    return None


def up_lab(make_lab: Any, name: str, services: int) -> tuple[Any, float]:
    lab = make_lab(SEED / name)
    r, elapsed = lab.up()
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"[+] {services}/{services} services running" in r.stdout, r.stdout
    return lab, elapsed


# --- 3.7 statsd-sink-and-prometheus ----------------------------------------------------------
STATSD_PREFIXES = {"envoy": "front-envoy", "service_blue": "service_blue", "service_green": "service_green", "service_red": "service_red"}


def test_statsd_sink_and_prometheus_lab(make_lab: Any, tmp_path: Path) -> None:
    t_start = time.monotonic()
    lab, elapsed = up_lab(make_lab, "statsd-sink-and-prometheus", 7)
    front = "127.31.68.10"

    # The course's step 1: `while true; do curl 172.31.68.10/service/colors; …; done`. The route
    # retries 5xx (service_blue aborts 10 % with 503) within a 1 s timeout (service_red delays
    # 10 % by 2 s): mostly 200, a 504 "upstream request timeout" now and then.
    codes: dict[int, int] = {}
    colors: set[str] = set()
    for _ in range(30):
        status, body = get(front, "/service/colors")
        codes[status] = codes.get(status, 0) + 1
        if status == 200:
            m = re.match(r"Hello from App behind Envoy \(service (\w+)\)!", body)
            assert m, body
            colors.add(m.group(1))
        else:
            assert (status, body) == (504, "upstream request timeout"), (status, body)
    t_traffic = time.monotonic()
    assert colors == {"blue", "green", "red"}
    ok = codes.get(200, 0)
    assert ok >= 20, codes

    # Each proxy's own view, and that the 2xx counts are the responses the traffic got.
    addresses = proxies(lab)
    assert addresses == {"envoy": front, "service_blue": "127.31.68.11", "service_green": "127.31.68.12", "service_red": "127.31.68.13"}
    stats = {s: admin_stats(a) for s, a in addresses.items()}
    assert stats["envoy"]["cluster.colord.upstream_rq_2xx"] == ok
    assert stats["envoy"]["http.ingress_http.downstream_rq_2xx"] == ok
    assert stats["envoy"].get("http.ingress_http.downstream_rq_5xx", 0) == codes.get(504, 0)
    # Every 200 came from one colored app; an attempt blue aborts (503) is retried, one red
    # delays (2 s) ends in the route's 1 s timeout.
    served = sum(stats[s]["cluster.local_service.upstream_rq_2xx"] for s in ("service_blue", "service_green", "service_red"))
    assert served == ok
    aborted = stats["service_blue"].get("http.ingress_http.fault.aborts_injected", 0)
    delayed = stats["service_red"].get("http.ingress_http.fault.delays_injected", 0)
    assert stats["envoy"]["cluster.colord.upstream_rq_total"] == served + aborted + delayed
    assert stats["envoy"].get("cluster.colord.upstream_rq_timeout", 0) == codes.get(504, 0) == delayed

    # Step 2: Prometheus answers the course's series, with the proxies' values, within 20 s.
    expected: dict[str, float] = {"front_envoy_cluster_colord_upstream_rq_2xx": ok}
    for service, prefix in STATSD_PREFIXES.items():
        cluster = "colord" if service == "envoy" else "local_service"
        for stat, value in traffic_stats(
            stats[service], (f"cluster.{cluster}.upstream_rq", "http.ingress_http.downstream_rq", "http.ingress_http.fault.")
        ).items():
            if not stat.endswith("_active"):  # (gauges)
                expected[statsd_name(prefix, stat)] = value
    assert expected["service_blue_http_ingress_http_downstream_rq_2xx"] > 0
    wait_prometheus_matches(expected, t_traffic, "the proxies' counters in Prometheus")
    t_prom = time.monotonic()

    # The exporter's summaries: each proxy's upstream_rq_time, as many observations as the proxy
    # recorded. (Each sidecar's local app answers every request that is not aborted.)
    def summaries_ready() -> dict[str, dict[str, float]] | None:
        got = exporter_summaries()
        name = "front_envoy_cluster_colord_upstream_rq_time"
        if name not in got or got[name]["count"] < ok:
            return None
        for s in ("service_blue", "service_green", "service_red"):
            want = stats[s]["cluster.local_service.upstream_rq_2xx"]
            if got.get(f"{s}_cluster_local_service_upstream_rq_time", {}).get("count") != want:
                return None
        return got

    summaries = poll(summaries_ready, remaining(t_traffic), "the exporter's upstream_rq_time summaries", exporter_summaries)
    for name, s in summaries.items():
        if name.endswith("_upstream_rq_time"):
            assert set(s) == {"0.5", "0.9", "0.99", "sum", "count"}, (name, s)
            assert 0 <= s["0.5"] <= s["0.9"] <= s["0.99"] and s["sum"] >= 0, (name, s)  # ms samples: 0 below 1 ms
    # The exporter's count is the front proxy's own histogram count (its /stats/prometheus,
    # merged at the next 5 s flush), and both are the responses received from upstream (`ok`):
    # as Envoy, the router records upstream_rq_time only for a complete upstream response, not
    # for a route-timeout 504 or a retried attempt.
    exported = summaries["front_envoy_cluster_colord_upstream_rq_time"]["count"]
    assert exported == ok, (exported, ok)
    poll(
        lambda: front_histogram_count(front, "colord") == exported,
        10,
        f"the front proxy's histogram count equals the exporter's ({exported})",
        lambda: front_histogram_count(front, "colord"),
    )

    # The lab's own targets (prometheus, grafana, statsd) are all up (the first two are scraped
    # every 15 s: their first scrape comes within 15 s of Prometheus's start).
    def targets() -> list[tuple[str, str, str]]:
        active = prom_api(PROMETHEUS, "/api/v1/targets")["activeTargets"]
        return sorted((t["labels"]["job"], t["scrapeUrl"], t["health"]) for t in active)

    lab_targets = [
        ("grafana", "http://grafana:3000/metrics", "up"),
        ("prometheus", "http://localhost:9090/metrics", "up"),
        ("statsd", "http://statsd_exporter:9102/metrics", "up"),
    ]
    poll(lambda: targets() == lab_targets, 20, "the lab's Prometheus targets up", targets)

    # Step 3: Grafana uses the prometheus datasource (through its datasource proxy).
    req = urllib.request.Request(GRAFANA + "/api/datasources", headers=ADMIN_AUTH)
    with urllib.request.urlopen(req, timeout=5) as r:
        (ds,) = json.load(r)
    assert (ds["name"], ds["type"], ds["url"], ds["access"]) == ("prometheus", "prometheus", "http://prometheus:9090", "proxy")
    q = urllib.parse.urlencode({"query": "front_envoy_cluster_colord_upstream_rq_2xx"})
    req = urllib.request.Request(f"{GRAFANA}/api/datasources/proxy/{ds['id']}/api/v1/query?{q}", headers=ADMIN_AUTH)
    with urllib.request.urlopen(req, timeout=5) as r:
        (series,) = json.load(r)["data"]["result"]
    assert series["metric"] == {
        "__name__": "front_envoy_cluster_colord_upstream_rq_2xx",
        "group": "services",
        "instance": "statsd_exporter:9102",
        "job": "statsd",
    }
    assert float(series["value"][1]) == ok

    # Each proxy's /stats/prometheus, scraped by a Prometheus directly.
    check_proxies_scrapable(
        lab,
        tmp_path / "prom-proxies",
        {
            "envoy": (
                "envoy_cluster_upstream_rq_xx",
                "colord",
                stats["envoy"]["cluster.colord.upstream_rq_2xx"] + stats["envoy"].get("cluster.colord.upstream_rq_5xx", 0),
            ),
            **{
                s: ("envoy_cluster_upstream_rq_xx", "local_service", stats[s]["cluster.local_service.upstream_rq_2xx"])
                for s in ("service_blue", "service_green", "service_red")
            },
        },
    )
    MEASUREMENTS.append(
        f"statsd-sink-and-prometheus: up -d {elapsed:.1f}s; Prometheus had the counters {t_prom - t_traffic:.1f}s after the traffic; "
        f"responses {codes}; test {time.monotonic() - t_start:.0f}s"
    )


# --- 3.8 monitoring ----------------------------------------------------------------------------
MONITORING_PREFIXES = {
    "front-envoy": "front-envoy",
    "service_a_envoy": "service-a",
    "service_b_envoy": "service-b",
    "service_c_envoy": "service-c",
}


class Traffic:
    """The course's ``while true; do curl 172.31.70.10; sleep 0.$RANDOM; done`` in a thread."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.stop = threading.Event()
        self.sent = 0
        self.errors: list[Any] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rng = random.Random(0)
        while not self.stop.is_set():
            try:
                status, _ = get(self.address, "/")
                if status != 200:
                    self.errors.append(status)
            except OSError as exc:
                self.errors.append(repr(exc))
            self.sent += 1
            self.stop.wait(rng.uniform(0.05, 0.3))

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def dashboard_panels(driver: Any) -> dict[str, Any] | None:
    return driver.execute_script(
        """
        var d = window.grafanaDashboard;
        if (!d || !d.ready) return null;
        var out = {refreshes: d.refreshes, variables: d.variables, errors: d.errors, panels: {}};
        Object.keys(d.panels).forEach(function (t) {
          var p = d.panels[t], u = p.uplot, max = [], counts = [];
          if (u) u.data.slice(1).forEach(function (col) {
            var m = null, c = 0;
            col.forEach(function (v) { if (v !== null) { c++; if (m === null || v > m) m = v; } });
            max.push(m); counts.push(c);
          });
          out.panels[t] = {series: p.series, points: p.points, error: p.error, max: max, counts: counts,
            data: u ? u.data.slice(1) : [],
            queries: p.queries.map(function (q) { return q.expr; }),
            drawnPaths: u ? u.series.slice(1).filter(function (s) { return s._paths && s._paths.stroke; }).length : 0};
        });
        return out;
        """
    )


def test_monitoring_lab(make_lab: Any, tmp_path: Path) -> None:
    t_start = time.monotonic()
    lab, elapsed = up_lab(make_lab, "monitoring", 10)
    front = "127.31.70.10"

    # The course's step 1 (`curl 172.31.70.10`): service_a calls service_b (its sidecar aborts
    # 15 % with 503: "fault filter abort") and service_c (delayed 1 s, 10 %); front sees 200s.
    n = aborts = 0
    while n < 30 or (aborts == 0 and n < 120):
        status, body = get(front, "/")
        assert status == 200, body
        assert body.endswith("Hello from service A.\nHello from service C.\n"), body
        if body.startswith("Calling Service B: fault filter abort"):
            aborts += 1
        else:
            assert body.startswith("Calling Service B: Hello from service B.\n"), body
        n += 1
    t_traffic = time.monotonic()
    assert aborts > 0, f"no abort in {n} requests"

    addresses = proxies(lab)
    assert sorted(addresses) == sorted(MONITORING_PREFIXES)
    stats = {s: admin_stats(a) for s, a in addresses.items()}
    assert stats["front-envoy"]["cluster.service_a.upstream_rq_2xx"] == n
    assert stats["service_a_envoy"]["cluster.service_b.upstream_rq_2xx"] == n - aborts
    assert stats["service_a_envoy"]["cluster.service_b.upstream_rq_503"] == aborts
    assert stats["service_a_envoy"]["cluster.service_b.upstream_rq_5xx"] == aborts
    assert stats["service_a_envoy"]["cluster.service_c.upstream_rq_2xx"] == n
    assert stats["service_b_envoy"]["http.ingress_http.fault.aborts_injected"] == aborts
    assert stats["service_b_envoy"]["cluster.service_b.upstream_rq_2xx"] == n - aborts
    assert stats["service_c_envoy"]["cluster.service_c.upstream_rq_2xx"] == n
    delays = sum(v for k, v in stats["service_c_envoy"].items() if k.endswith(".fault.delays_injected"))

    # Prometheus answers the course's series (the dashboard's), with every proxy's counters.
    expected: dict[str, float] = {
        "front_envoy_cluster_service_a_upstream_rq_2xx": n,
        "service_a_cluster_service_b_upstream_rq_2xx": n - aborts,
        "service_a_cluster_service_b_upstream_rq_5xx": aborts,
        "service_a_cluster_service_c_upstream_rq_2xx": n,
    }
    for service, prefix in MONITORING_PREFIXES.items():
        for stat, value in traffic_stats(stats[service], ("cluster.service_", "http.ingress_")).items():
            if ".upstream_rq" in stat or ".downstream_rq" in stat or ".fault." in stat:
                if not stat.endswith("_active"):
                    expected[statsd_name(prefix, stat)] = value
    wait_prometheus_matches(expected, t_traffic, "the proxies' counters in Prometheus")
    t_prom = time.monotonic()
    (target,) = prom_api(PROMETHEUS, "/api/v1/targets")["activeTargets"]
    assert (target["scrapeUrl"], target["health"], target["labels"]["group"]) == ("http://statsd_exporter:9102/metrics", "up", "services")

    # The exporter's summaries: one observation per response for every hop (no retries, no
    # timeouts in this lab); service_c's 1 s delays show in service_a's latency to it.
    want_counts = {
        "front_envoy_cluster_service_a_upstream_rq_time": n,
        "service_a_cluster_service_b_upstream_rq_time": n,  # 503 aborts included: complete responses
        "service_a_cluster_service_c_upstream_rq_time": n,
        "service_b_cluster_service_b_upstream_rq_time": n - aborts,  # aborted before the router
        "service_c_cluster_service_c_upstream_rq_time": n,
    }

    def summaries_ready() -> dict[str, dict[str, float]] | None:
        got = exporter_summaries()
        return got if all(got.get(k, {}).get("count") == v for k, v in want_counts.items()) else None

    summaries = poll(summaries_ready, remaining(t_traffic), "the exporter's upstream_rq_time summaries", exporter_summaries)
    for name in want_counts:
        s = summaries[name]
        assert set(s) == {"0.5", "0.9", "0.99", "sum", "count"}, (name, s)
        assert 0 <= s["0.5"] <= s["0.9"] <= s["0.99"] and s["sum"] >= 0, (name, s)  # ms samples: 0 below 1 ms
    if delays:
        assert summaries["service_a_cluster_service_c_upstream_rq_time"]["0.99"] >= 1.0
        assert summaries["front_envoy_cluster_service_a_upstream_rq_time"]["sum"] >= delays * 1.0
    # Prometheus has the summaries too (the dashboard's Latency panel plots them).
    latency = prom_api(PROMETHEUS, "/api/v1/query", query="service_a_cluster_service_b_upstream_rq_time")["result"]
    assert sorted(r["metric"]["quantile"] for r in latency) == ["0.5", "0.9", "0.99"]

    # Each proxy's /stats/prometheus, scraped by a Prometheus directly (before more traffic).
    check_proxies_scrapable(
        lab,
        tmp_path / "prom-proxies",
        {
            "front-envoy": ("envoy_cluster_upstream_rq_xx", "service_a", n),
            "service_a_envoy": ("envoy_cluster_upstream_rq_xx", "service_b", n),
            "service_b_envoy": ("envoy_cluster_upstream_rq_xx", "service_b", n - aborts),
            "service_c_envoy": ("envoy_cluster_upstream_rq_xx", "service_c", n),
        },
    )

    # From here on the traffic keeps running, as the course's loop does.
    traffic = Traffic(front)
    try:
        shot = dashboard_in_chromium(tmp_path, traffic)
    finally:
        traffic.end()
    assert traffic.errors == [], traffic.errors
    MEASUREMENTS.append(
        f"monitoring: up -d {elapsed:.1f}s; Prometheus had the counters {t_prom - t_traffic:.1f}s after the traffic; "
        f"{n} requests, {aborts} aborts, {delays} delays; then {traffic.sent} more; screenshot {shot}; test {time.monotonic() - t_start:.0f}s"
    )


def dashboard_in_chromium(tmp_path: Path, traffic: Traffic) -> Path:
    from test_grafana_dashboard import CHROMIUM_FLAGS, browser_paths

    chromium, chromedriver = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    req = urllib.request.Request(GRAFANA + "/api/search?query=Services", headers=ADMIN_AUTH)
    with urllib.request.urlopen(req, timeout=5) as r:
        (hit,) = json.load(r)
    assert hit["title"] == "Services Dashboard"

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        driver.set_page_load_timeout(20)
        driver.get(GRAFANA + hit["url"])
        poll(lambda: "/login" in driver.current_url, 10, "the login page")
        driver.find_element(By.ID, "user").send_keys("admin")
        driver.find_element(By.ID, "password").send_keys("admin")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        state = poll(lambda: dashboard_panels(driver), 15, "the dashboard loaded", lambda: driver.current_url)
        assert state["variables"] == {"source": "service_a", "destination": "service_b"}, state
        assert sorted(state["panels"]) == ["2XX", "5XX", "Latency"]

        # The 2XX/5XX points need 30 s of history (`offset $__interval`, 30 s at the default
        # hour, points aligned to 30 s), and a line needs two points: a minute of data. Wait for
        # the dashboard's own 10 s refresh to draw them, while the traffic runs.
        def drawn() -> dict[str, Any] | None:
            s = dashboard_panels(driver)
            if not s:
                return None
            p = s["panels"]
            ok = (
                p["2XX"]["series"] == ["2xx"]
                and p["5XX"]["series"] == ["5xx"]
                and p["Latency"]["series"] == ["0.5", "0.9", "0.99"]
                and all(x["drawnPaths"] == len(x["series"]) == len(x["counts"]) and min(x["counts"]) >= 2 for x in p.values())
                and p["2XX"]["max"][0] > 0
                and p["5XX"]["max"][0] > 0
            )
            return s if ok else None

        state = poll(
            drawn,
            100,
            "the 2XX, 5XX and Latency panels drawn with two points a series",
            lambda: json.dumps(dashboard_panels(driver))[:3000],
        )
        assert state["errors"] == [], state["errors"]
        panels = state["panels"]
        assert panels["2XX"]["queries"] == [
            "service_a_cluster_service_b_upstream_rq_2xx - service_a_cluster_service_b_upstream_rq_2xx offset 30s"
        ]
        assert panels["5XX"]["queries"] == [
            "service_a_cluster_service_b_upstream_rq_5xx - service_a_cluster_service_b_upstream_rq_5xx offset 30s"
        ]
        assert panels["Latency"]["queries"] == ["service_a_cluster_service_b_upstream_rq_time"]
        assert all(p["error"] is None for p in panels.values()), panels
        assert 0 <= panels["Latency"]["max"][0] <= panels["Latency"]["max"][1] <= panels["Latency"]["max"][2]  # seconds
        assert traffic.sent > 0
        shot = tmp_path / "monitoring-services-dashboard.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")

        # A minute of data is a few pixels of the hour: the time picker's "Last 5 minutes" as a
        # user would pick it (a shorter step, so a shorter offset) draws the same series wider.
        from selenium.webdriver.support.ui import Select

        before = state["refreshes"]
        Select(driver.find_element(By.ID, "time-range")).select_by_value("now-5m")

        def redrawn() -> dict[str, Any] | None:
            s = drawn()
            return s if s and s["refreshes"] > before and "from=now-5m" in driver.current_url else None

        state = poll(redrawn, 15, "the panels redrawn for the last 5 minutes", lambda: json.dumps(dashboard_panels(driver))[:3000])
        assert state["errors"] == [] and all(p["error"] is None for p in state["panels"].values())
        # At each point the quantiles are in order (one summary, scraped at once).
        for row in zip(*state["panels"]["Latency"]["data"], strict=True):
            if None not in row:
                assert row[0] <= row[1] <= row[2], state["panels"]["Latency"]["data"]
        zoomed = tmp_path / "monitoring-services-dashboard-5m.png"
        driver.save_screenshot(str(zoomed))
        print(f"screenshot: {zoomed}")
        return shot
    finally:
        driver.quit()
