"""Active health checking: the pure transition rules and intervals, and result accounting."""

from __future__ import annotations

import random
from typing import Any

from envoy.config.core.v3 import health_check_pb2
from google.protobuf import json_format

from sluice.stats.store import Counter, Store
from sluice.upstream.health_check import (
    CHANGED,
    PENDING,
    UNCHANGED,
    HealthCheckConfig,
    HealthChecker,
    HealthCheckStats,
    HostHealth,
    next_interval,
)
from sluice.upstream.host import Host


def config(extra: dict[str, Any] | None = None) -> HealthCheckConfig:
    hc = {
        "timeout": "1s",
        "interval": "5s",
        "unhealthy_threshold": 3,
        "healthy_threshold": 2,
        "http_health_check": {"path": "/healthz"},
        **(extra or {}),
    }
    return HealthCheckConfig(json_format.ParseDict(hc, health_check_pb2.HealthCheck()), "web")


def test_config_defaults() -> None:
    cfg = config()
    assert cfg.host == "web" and cfg.path == "/healthz"
    assert cfg.no_traffic_interval_ms == 60_000 and cfg.unhealthy_interval_ms == 5000
    assert cfg.is_expected(200) and not cfg.is_expected(204)
    cfg = config({"http_health_check": {"path": "/", "host": "x", "expected_statuses": [{"start": 200, "end": 300}]}})
    assert cfg.host == "x" and cfg.is_expected(204) and not cfg.is_expected(300)


def test_first_success_marks_healthy_then_thresholds_apply() -> None:
    h = Host("127.0.0.1", 80)
    s = HostHealth(h)
    assert h.health_flags == "/failed_active_hc" and not h.healthy
    assert s.on_success(2) == CHANGED and h.healthy
    # network failures need unhealthy_threshold in a row
    assert s.on_failure(True, 3) == PENDING
    assert s.on_failure(True, 3) == PENDING
    assert s.on_success(2) == UNCHANGED
    assert s.on_failure(True, 3) == PENDING and h.healthy
    assert s.on_failure(True, 3) == PENDING
    assert s.on_failure(True, 3) == CHANGED and not h.healthy
    # back to healthy needs healthy_threshold successes
    assert s.on_success(2) == PENDING and not h.healthy
    assert s.on_success(2) == CHANGED and h.healthy
    # a bad status is unhealthy at once
    assert s.on_failure(False, 3) == CHANGED and not h.healthy


def test_intervals() -> None:
    cfg = config({"unhealthy_interval": "2s", "healthy_edge_interval": "1s", "interval_jitter": "0.1s"})
    rng = random.Random(3)
    assert 60 <= next_interval(cfg, True, UNCHANGED, False, rng) < 60.1  # no traffic yet
    assert 5 <= next_interval(cfg, True, UNCHANGED, True, rng) < 5.1
    assert 1 <= next_interval(cfg, True, CHANGED, True, rng) < 1.1
    assert 2 <= next_interval(cfg, False, PENDING, True, rng) < 2.1


def test_record_counts_stats_and_notifies() -> None:
    store = Store()
    changes: list[int] = []
    hc = HealthChecker(config(), HealthCheckStats.declare(store, "cluster.web.health_check."), Counter("x"), lambda: changes.append(1), "web")
    h = Host("127.0.0.1", 80)
    hc.sessions[h] = HostHealth(h)
    hc.record(h, 200)
    hc.record(h, 503)
    hc.record(h, None)

    def v(name: str) -> int:
        return store.value(f"cluster.web.health_check.{name}")

    assert (v("success"), v("failure"), v("network_failure")) == (1, 2, 1)
    assert v("healthy") == 0 and changes == [1, 1] and h.health_flags == "/failed_active_hc"
