"""Load balancers are pure: given a seeded random source, picks are exact."""

from __future__ import annotations

import random
from collections import Counter

from sluice.upstream.host import Host
from sluice.upstream.load_balancer import LeastRequest, RandomLb, RoundRobin


def hosts(*weights: int) -> list[Host]:
    return [Host(f"127.0.0.{i + 1}", 80, weight=w) for i, w in enumerate(weights)]


def test_round_robin_cycles_through_equal_hosts() -> None:
    hs = hosts(1, 1, 1)
    lb = RoundRobin(random.Random(7))
    picks = [lb.choose(hs) for _ in range(9)]
    assert Counter(h.address for h in picks if h) == {h.address: 3 for h in hs}
    # consecutive picks never repeat a host with equal weights
    assert all(a is not b for a, b in zip(picks, picks[1:], strict=False))


def test_weighted_round_robin_follows_weights() -> None:
    hs = hosts(3, 1)
    lb = RoundRobin(random.Random(1))
    picks = Counter(lb.choose(hs).address for _ in range(400))  # type: ignore[union-attr]
    assert picks == {"127.0.0.1:80": 300, "127.0.0.2:80": 100}


def test_unhealthy_hosts_are_skipped_and_empty_gives_none() -> None:
    hs = hosts(1, 1)
    hs[0].healthy = False
    lb = RoundRobin(random.Random(1))
    assert {lb.choose(hs).address for _ in range(4)} == {"127.0.0.2:80"}  # type: ignore[union-attr]
    assert lb.choose([]) is None


def test_least_request_prefers_idle_host() -> None:
    hs = hosts(1, 1)
    hs[0].stats.rq_active = 5
    lb = LeastRequest(random.Random(3))
    assert all(lb.choose(hs) is hs[1] for _ in range(20))


def test_random_covers_all_hosts() -> None:
    hs = hosts(1, 1, 1, 1)
    lb = RandomLb(random.Random(5))
    counts = Counter(lb.choose(hs).address for _ in range(4000))  # type: ignore[union-attr]
    # 4000 draws, p = 1/4: sd = sqrt(4000 * .25 * .75) ≈ 27; 5 sd bounds.
    assert all(abs(c - 1000) < 5 * 27.4 for c in counts.values())
