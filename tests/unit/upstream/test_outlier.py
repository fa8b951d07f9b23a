"""Outlier detection in simulated time: a fake clock and a recorded interval timer."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from envoy.config.cluster.v3 import outlier_detection_pb2
from google.protobuf import json_format

from sluice.runtime import Layer, Runtime
from sluice.stats.store import Store
from sluice.upstream.host import Host
from sluice.upstream.load_balancer import RoundRobin
from sluice.upstream.outlier import OutlierConfig, OutlierDetector, OutlierStats


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, cb: Callable[[], None]) -> Any:
        self.timers.append((self.now + delay, cb))
        return None

    def advance(self, seconds: float) -> None:
        """Run the timers due within ``seconds``, in order."""
        end = self.now + seconds
        while True:
            due = sorted((t for t in self.timers if t[0] <= end), key=lambda t: t[0])
            if not due:
                break
            when, cb = due[0]
            self.timers.remove(due[0])
            self.now = when
            cb()
        self.now = end


def make(
    od: dict[str, Any], n_hosts: int = 2, runtime: Runtime | None = None
) -> tuple[OutlierDetector, list[Host], Store, Clock, list[int]]:
    cfg = OutlierConfig(json_format.ParseDict(od, outlier_detection_pb2.OutlierDetection()))
    store = Store()
    clock = Clock()
    changes: list[int] = []
    det = OutlierDetector(
        cfg,
        OutlierStats.declare(store, "cluster.c.outlier_detection."),
        runtime,
        clock,
        clock.call_later,
        lambda: changes.append(1),
        random.Random(1),
    )
    hosts = [Host(f"127.0.0.{i + 1}", 80) for i in range(n_hosts)]
    det.set_hosts(hosts)
    det.start()
    return det, hosts, store, clock, changes


def stat(store: Store, name: str) -> int:
    return store.value(f"cluster.c.outlier_detection.{name}")


def test_defaults_are_envoys() -> None:
    cfg = OutlierConfig()
    assert (cfg.consecutive_5xx, cfg.interval_ms, cfg.base_ejection_time_ms, cfg.max_ejection_percent) == (5, 10_000, 30_000, 10)
    assert (cfg.enforcing_consecutive_5xx, cfg.enforcing_consecutive_gateway_failure) == (100, 0)


def test_consecutive_5xx_ejects_and_interval_unejects() -> None:
    det, (a, b), store, clock, changes = make({"consecutive_5xx": 3, "max_ejection_percent": 50})
    det.put_http_response_code(a, 500)
    det.put_http_response_code(a, 500)
    det.put_http_response_code(a, 200)  # a success resets the streak
    for _ in range(3):
        det.put_http_response_code(a, 500)
    assert a.health_flags == "/failed_outlier_check" and not a.healthy and changes == [1]
    assert stat(store, "ejections_active") == 1
    assert stat(store, "ejections_detected_consecutive_5xx") == 1
    assert stat(store, "ejections_enforced_consecutive_5xx") == 1
    assert stat(store, "ejections_enforced_total") == 1
    assert stat(store, "ejections_total") == 1 and stat(store, "ejections_consecutive_5xx") == 1
    # 500 is not a gateway failure
    assert stat(store, "ejections_detected_consecutive_gateway_failure") == 0
    # The load balancer skips the ejected host once the cluster invalidates it.
    lb = RoundRobin(random.Random(1))
    hosts = [a, b]
    assert {lb.choose(hosts) for _ in range(4)} == {b}
    # base_ejection_time 30 s, checked on 10 s interval ticks.
    clock.advance(29)
    assert not a.healthy
    clock.advance(2)
    assert a.healthy and a.health_flags == "healthy" and stat(store, "ejections_active") == 0


def test_ejection_time_grows_with_ejections() -> None:
    det, (a, _b), _store, clock, _ = make({"consecutive_5xx": 1, "max_ejection_percent": 50, "interval": "1s", "base_ejection_time": "2s"})
    det.put_http_response_code(a, 503)
    clock.advance(2.5)
    assert a.healthy
    det.put_http_response_code(a, 503)  # second ejection: 4 s
    clock.advance(3.5)
    assert not a.healthy
    clock.advance(1)
    assert a.healthy


def test_max_ejection_percent_overflows() -> None:
    det, (a, b), store, _clock, _ = make({"consecutive_5xx": 2, "max_ejection_percent": 50})
    for h in (a, a, b, b):
        det.put_http_response_code(h, 502)
    assert not a.healthy and b.healthy
    assert stat(store, "ejections_overflow") == 1
    assert stat(store, "ejections_detected_consecutive_5xx") == 2
    assert stat(store, "ejections_total") == 1


def test_default_max_ejection_percent_blocks_small_clusters() -> None:
    det, (a, _b), store, _clock, _ = make({"consecutive_5xx": 1})
    det.put_http_response_code(a, 500)
    assert a.healthy and stat(store, "ejections_overflow") == 1


def test_gateway_failures_detected_but_not_enforced_by_default() -> None:
    det, (a, _b), store, _clock, _ = make({"consecutive_gateway_failure": 2, "max_ejection_percent": 100})
    det.put_http_response_code(a, 503)
    det.put_http_response_code(a, 504)
    assert stat(store, "ejections_detected_consecutive_gateway_failure") == 1
    assert a.healthy and stat(store, "ejections_enforced_total") == 0


def test_runtime_overrides_thresholds_and_enforcement() -> None:
    runtime = Runtime([Layer("admin", "admin")])
    runtime.merge_admin({"outlier_detection.consecutive_5xx": "2", "outlier_detection.enforcing_consecutive_5xx": "0"})
    det, (a, _b), store, _clock, _ = make({"max_ejection_percent": 100}, runtime=runtime)
    det.put_http_response_code(a, 500)
    det.put_http_response_code(a, 500)
    assert stat(store, "ejections_detected_consecutive_5xx") == 1
    assert a.healthy and stat(store, "ejections_enforced_consecutive_5xx") == 0


def test_local_origin_failures_count_as_503_unless_split() -> None:
    det, (a, _b), store, _clock, _ = make({"consecutive_5xx": 2, "max_ejection_percent": 100})
    det.put_local_origin_failure(a)
    det.put_local_origin_failure(a)
    assert not a.healthy and stat(store, "ejections_enforced_consecutive_5xx") == 1

    det, (a, _b), store, _clock, _ = make(
        {
            "consecutive_5xx": 2,
            "consecutive_local_origin_failure": 2,
            "split_external_local_origin_errors": True,
            "max_ejection_percent": 100,
        }
    )
    det.put_local_origin_failure(a)
    det.put_http_response_code(a, 200)  # the connection worked: the local streak ends
    det.put_local_origin_failure(a)
    assert a.healthy
    det.put_local_origin_failure(a)
    assert not a.healthy
    assert stat(store, "ejections_enforced_consecutive_local_origin_failure") == 1
    assert stat(store, "ejections_detected_consecutive_5xx") == 0


def test_removed_hosts_drop_their_ejection() -> None:
    det, (a, b), store, _clock, _ = make({"consecutive_5xx": 1, "max_ejection_percent": 100})
    det.put_http_response_code(a, 500)
    assert stat(store, "ejections_active") == 1
    det.set_hosts([b])
    assert stat(store, "ejections_active") == 0


def test_active_health_check_success_unejects() -> None:
    det, (a, _b), store, _clock, changes = make({"consecutive_5xx": 1, "max_ejection_percent": 100})
    det.put_http_response_code(a, 500)
    assert not a.healthy
    det.on_active_health_check_success(a)
    assert a.healthy and stat(store, "ejections_active") == 0 and changes == [1, 1]
    det, (a, _b), store, _clock, _ = make(
        {"consecutive_5xx": 1, "max_ejection_percent": 100, "successful_active_health_check_uneject_host": False}
    )
    det.put_http_response_code(a, 500)
    det.on_active_health_check_success(a)
    assert not a.healthy
