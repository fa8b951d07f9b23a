"""Active HTTP health checks end to end: an in-process Sluice with a host whose ``/healthz``
can be switched off, then the real Envoy side by side (``@pytest.mark.envoy``)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from harness import Client, InProcessSluice, LoopThread, ProxyProcess, http, wait_until
from test_outlier_detection import config as two_host_config

from sluice.lab.apps.demoapp import App, Recorded


class SwitchApp(App):
    """``/healthz`` answers 200 while ``healthy``, else 503; other paths as the demoapp."""

    healthy = True

    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        if rec.path == "/healthz":
            return (200 if self.healthy else 503), [("Content-Length", "2")], b"ok", 0.0
        return super().respond(rec, local_ip)


def config(ports: list[int], hc: dict[str, Any]) -> dict[str, Any]:
    cfg = two_host_config(ports, {})
    cluster = cfg["static_resources"]["clusters"][0]
    del cluster["outlier_detection"]
    cluster["health_checks"] = [
        {
            "timeout": "0.5s",
            "interval": "0.1s",
            "unhealthy_threshold": 2,
            "healthy_threshold": 2,
            **hc,
            "http_health_check": {"path": "/healthz"},
        }
    ]
    return cfg


@pytest.fixture()
def apps(loop: LoopThread) -> Any:
    a, b = SwitchApp("a"), SwitchApp("b")
    for x in (a, b):
        loop.run(x.start("127.0.0.1", 0))
    yield a, b
    for x in (a, b):
        loop.run(x.stop())


def flags(admin_port: int) -> dict[str, str]:
    out = {}
    for line in http(admin_port, "GET", "/clusters").text.splitlines():
        if "::health_flags::" in line:
            _c, addr, _k, v = line.split("::")
            out[addr] = v
    return out


def test_unhealthy_host_gets_no_traffic_and_comes_back(loop: LoopThread, apps: tuple[SwitchApp, SwitchApp]) -> None:
    a, b = apps
    cfg = config([a.port, b.port], {"no_traffic_interval": "0.1s"})
    sluice = InProcessSluice(loop, yaml.safe_dump(cfg))
    try:
        # Cluster warming: both hosts had their first (successful) check before start returned.
        assert set(flags(sluice.admin_port).values()) == {"healthy"}
        hc = [r for r in a.requests if r.path == "/healthz"]
        assert hc and hc[0].method == "GET"
        assert hc[0].header("host") == "c" and hc[0].header("user-agent") == "Envoy/HC"
        assert sluice.stat("cluster.c.health_check.healthy") == 2
        a.healthy = False
        assert wait_until(lambda: flags(sluice.admin_port)[f"127.0.0.1:{a.port}"] == "/failed_active_hc", timeout=3)
        assert sluice.stat("cluster.c.membership_healthy") == 1
        assert sluice.stat("cluster.c.health_check.healthy") == 1
        assert sluice.stat("cluster.c.health_check.failure") >= 1
        served = len([r for r in a.requests if r.path != "/healthz"])
        with Client(sluice.port) as c:
            assert [c.get("/").status for _ in range(6)] == [200] * 6
        assert len([r for r in a.requests if r.path != "/healthz"]) == served
        a.healthy = True
        assert wait_until(lambda: flags(sluice.admin_port)[f"127.0.0.1:{a.port}"] == "healthy", timeout=3)
        assert sluice.stat("cluster.c.membership_healthy") == 2
        assert sluice.stat("cluster.c.health_check.success") >= 3
    finally:
        sluice.stop()


def test_network_failures_and_panic(loop: LoopThread, apps: tuple[SwitchApp, SwitchApp]) -> None:
    a, _b = apps
    from harness import free_port

    dead = free_port()
    cfg = config([a.port, dead], {"no_traffic_interval": "0.1s", "unhealthy_threshold": 1})
    sluice = InProcessSluice(loop, yaml.safe_dump(cfg))
    try:
        f = flags(sluice.admin_port)
        assert f[f"127.0.0.1:{dead}"] == "/failed_active_hc" and f[f"127.0.0.1:{a.port}"] == "healthy"
        assert sluice.stat("cluster.c.health_check.network_failure") >= 1
        with Client(sluice.port) as c:
            assert [c.get("/").status for _ in range(4)] == [200] * 4  # 1 of 2 healthy: no panic
        assert sluice.stat("cluster.c.lb_healthy_panic") == 0
        a.healthy = False
        assert wait_until(lambda: sluice.stat("cluster.c.membership_healthy") == 0, timeout=3)
        with Client(sluice.port) as c:
            statuses = [c.get("/").status for _ in range(4)]
        # Panic: every host is used again, the dead one included.
        assert sorted(statuses) == [200, 200, 503, 503]
        assert sluice.stat("cluster.c.lb_healthy_panic") == 4
    finally:
        sluice.stop()


@pytest.mark.envoy
def test_same_as_envoy(apps: tuple[SwitchApp, SwitchApp]) -> None:
    a, b = apps
    a.healthy = False
    results = {}
    for kind in ("envoy", "sluice"):
        a.requests.clear()
        proc = ProxyProcess(kind, config([a.port, b.port], {"interval": "10s"})).start()
        try:
            stats = proc.stats()
            hc = [(r.method, r.path, r.headers) for r in a.requests]
            results[kind] = (
                sorted(flags(proc.admin_port).values()),
                {k: stats.get(f"cluster.c.health_check.{k}") for k in ("attempt", "success", "failure", "network_failure", "healthy")},
                stats.get("cluster.c.membership_healthy"),
                hc[:1],
            )
        finally:
            proc.stop()
    assert results["sluice"] == results["envoy"]
    assert results["envoy"][0] == ["/failed_active_hc", "healthy"]
