"""Envoy's panic threshold: below 50 % availability (with the 1.4 overprovisioning factor) the
balancers use every host and count ``lb_healthy_panic``."""

from __future__ import annotations

import random

from sluice.stats.store import Counter
from sluice.upstream.host import Host
from sluice.upstream.load_balancer import LeastRequest, RandomLb, RoundRobin


def test_panic_uses_all_hosts_and_counts() -> None:
    hosts = [Host(f"127.0.0.{i}", 80) for i in range(1, 4)]
    for lb in (RoundRobin(random.Random(1)), LeastRequest(random.Random(1)), RandomLb(random.Random(1))):
        panic = Counter("lb_healthy_panic")
        lb.panic_counter = panic
        hosts[0].set_failed_outlier(False)
        hosts[1].set_failed_outlier(False)
        hosts[2].set_failed_outlier(True)
        lb.invalidate()
        # 2 of 3 healthy: 140 * 2 // 3 = 93 >= 50, no panic
        assert {lb.choose(hosts) for _ in range(30)} == {hosts[0], hosts[1]} and panic.value == 0
        hosts[1].set_failed_active_hc(True)
        lb.invalidate()
        # 1 of 3: 46 < 50, panic: all hosts again
        assert {lb.choose(hosts) for _ in range(60)} == set(hosts) and panic.value == 60
        hosts[1].set_failed_active_hc(False)


def test_threshold_zero_disables_panic() -> None:
    hosts = [Host("127.0.0.1", 80)]
    hosts[0].set_failed_active_hc(True)
    lb = RoundRobin(random.Random(1))
    lb.panic_threshold = 0
    assert lb.choose(hosts) is None
