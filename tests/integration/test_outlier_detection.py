"""Outlier detection end to end: an in-process Sluice with one failing and one good upstream,
then the real Envoy side by side on the detection statistics (``@pytest.mark.envoy``)."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import yaml
from harness import Client, InProcessSluice, LoopThread, ProxyProcess, http, wait_until
from test_circuit_breakers import config as base_config

from sluice.lab.apps.demoapp import App, Recorded

OUTLIER_STATS = (
    "ejections_active",
    "ejections_total",
    "ejections_overflow",
    "ejections_enforced_total",
    "ejections_consecutive_5xx",
    "ejections_detected_consecutive_5xx",
    "ejections_enforced_consecutive_5xx",
    "ejections_detected_consecutive_gateway_failure",
    "ejections_enforced_consecutive_gateway_failure",
)


class FailingApp(App):
    """Answers every request with 503 while ``failing``."""

    failing = True

    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        status, headers, body, delay = super().respond(rec, local_ip)
        return (503 if self.failing else status), headers, body, delay


def config(ports: list[int], outlier: dict[str, Any]) -> dict[str, Any]:
    cfg = base_config(ports[0], {})
    cluster = cfg["static_resources"]["clusters"][0]
    del cluster["circuit_breakers"]
    cluster["outlier_detection"] = outlier
    eps = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    for p in ports[1:]:
        e = copy.deepcopy(eps[0])
        e["endpoint"]["address"]["socket_address"]["port_value"] = p
        eps.append(e)
    return cfg


@pytest.fixture()
def apps(loop: LoopThread) -> Any:
    bad, good = FailingApp("bad"), App("good")
    for a in (bad, good):
        loop.run(a.start("127.0.0.1", 0))
    yield bad, good
    for a in (bad, good):
        loop.run(a.stop())


def test_failing_host_is_ejected_then_returns(loop: LoopThread, apps: tuple[FailingApp, App]) -> None:
    bad, good = apps
    cfg = config(
        [bad.port, good.port],
        {"consecutive_5xx": 3, "max_ejection_percent": 50, "interval": "0.2s", "base_ejection_time": "0.6s"},
    )
    sluice = InProcessSluice(loop, yaml.safe_dump(cfg))
    try:
        with Client(sluice.port) as c:
            statuses = [c.get("/").status for _ in range(6)]
            assert statuses.count(503) == 3  # round robin: three each, then the bad host is out
            assert sluice.stat("cluster.c.outlier_detection.ejections_active") == 1
            assert sluice.stat("cluster.c.outlier_detection.ejections_enforced_consecutive_5xx") == 1
            assert sluice.stat("cluster.c.membership_healthy") == 1
            clusters = http(sluice.admin_port, "GET", "/clusters").text
            assert f"c::127.0.0.1:{bad.port}::health_flags::/failed_outlier_check\n" in clusters
            assert "c::outlier::success_rate_average::-1\n" in clusters
            before = len(bad.requests)
            assert [c.get("/").status for _ in range(6)] == [200] * 6
            assert len(bad.requests) == before  # no traffic while ejected
            bad.failing = False
        assert wait_until(lambda: sluice.stat("cluster.c.outlier_detection.ejections_active") == 0, timeout=3)
        clusters = http(sluice.admin_port, "GET", "/clusters").text
        assert f"c::127.0.0.1:{bad.port}::health_flags::healthy\n" in clusters
        assert sluice.stat("cluster.c.membership_healthy") == 2
        with Client(sluice.port) as c:
            for _ in range(4):
                assert c.get("/").status == 200
        assert len(bad.requests) > before
    finally:
        sluice.stop()


def test_connect_failures_eject(loop: LoopThread, apps: tuple[FailingApp, App]) -> None:
    _bad, good = apps
    from harness import free_port

    dead = free_port()
    cfg = config([dead, good.port], {"consecutive_5xx": 2, "max_ejection_percent": 50})
    sluice = InProcessSluice(loop, yaml.safe_dump(cfg))
    try:
        with Client(sluice.port) as c:
            statuses = [c.get("/").status for _ in range(4)]
        assert statuses.count(503) == 2
        assert sluice.stat("cluster.c.outlier_detection.ejections_enforced_consecutive_5xx") == 1
        with Client(sluice.port) as c:
            assert [c.get("/").status for _ in range(4)] == [200] * 4
    finally:
        sluice.stop()


def paced(client: Client, path: str) -> int:
    """One request, then a pause: Envoy ejects on its main thread, after the worker saw the
    response, so on a busy machine the next request could still reach the host being ejected.
    The pause lets the ejection land first, as it does at once in Sluice's single loop."""
    status = client.get(path).status
    time.sleep(0.05)
    return status


@pytest.mark.envoy
def test_detection_stats_same_as_envoy(apps: tuple[FailingApp, App]) -> None:
    bad, good = apps
    bad.failing = False
    results = {}
    for kind in ("envoy", "sluice"):
        cfg = config(
            [bad.port, good.port],
            {"consecutive_5xx": 3, "max_ejection_percent": 50, "interval": "30s", "base_ejection_time": "30s"},
        )
        proc = ProxyProcess(kind, cfg).start()
        try:
            with Client(proc.port) as c:
                statuses = [paced(c, "/status/503") for _ in range(8)]
                statuses += [paced(c, "/") for _ in range(4)]
            stats = proc.stats()
            flags = sorted(
                line.rsplit("::", 1)[1] for line in proc.admin("GET", "/clusters").text.splitlines() if "::health_flags::" in line
            )
            results[kind] = (statuses, {n: stats.get(f"cluster.c.outlier_detection.{n}") for n in OUTLIER_STATS}, flags)
        finally:
            proc.stop()
    assert results["sluice"] == results["envoy"]
    assert results["envoy"][2] == ["/failed_outlier_check", "healthy"]
