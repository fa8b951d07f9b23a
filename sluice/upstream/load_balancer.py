"""Load balancers: pure choices over a host list, given an injected random source.

ROUND_ROBIN with unequal weights uses a smooth weighted round robin (an earliest-deadline
schedule, as Envoy's EDF scheduler gives); LEAST_REQUEST is Envoy's power-of-two-choices
(``choice_count`` 2) over active requests; RANDOM picks uniformly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from sluice.upstream.host import Host


class LoadBalancer(Protocol):
    panic_threshold: float
    panic_counter: Any

    def choose(self, hosts: list[Host]) -> Host | None: ...
    def invalidate(self) -> None: ...


OVERPROVISIONING_FACTOR = 140
"""Envoy's default overprovisioning factor (1.4), in percent."""


class _HealthyHosts:
    """The hosts to balance over, recomputed only when the cluster publishes a new list (every
    membership change makes a new one) or :meth:`invalidate` is called (health or weights
    changed in place).

    Envoy's panic mode: when ``min(100, 140 * healthy / total)`` falls below
    ``healthy_panic_threshold`` (default 50 %), every host is used, healthy or not, and each
    pick counts ``lb_healthy_panic`` (the cluster sets ``panic_counter``)."""

    __slots__ = ("_hosts", "_healthy", "_equal", "_panic", "panic_threshold", "panic_counter")

    def __init__(self) -> None:
        self._hosts: list[Host] | None = None
        self._healthy: list[Host] = []
        self._equal = True
        self._panic = False
        self.panic_threshold = 50.0
        self.panic_counter: Any = None

    def invalidate(self) -> None:
        self._hosts = None

    def healthy(self, hosts: list[Host]) -> list[Host]:
        if hosts is not self._hosts:
            self._hosts = hosts
            healthy = [h for h in hosts if h.healthy]
            availability = min(100, OVERPROVISIONING_FACTOR * len(healthy) // len(hosts)) if hosts else 0
            self._panic = bool(hosts) and availability < self.panic_threshold
            self._healthy = hosts if self._panic else healthy
            self._equal = all(h.weight == self._healthy[0].weight for h in self._healthy)
        if self._panic and self.panic_counter is not None:
            self.panic_counter.inc()
        return self._healthy


class RoundRobin(_HealthyHosts):
    __slots__ = ("_index", "_current", "_rng")

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng
        # Envoy starts each round robin at a random index so that many proxies do not all
        # send their first request to the same host.
        self._index = rng.randrange(1 << 30)
        self._current: dict[str, int] = {}

    def choose(self, hosts: list[Host]) -> Host | None:
        healthy = self.healthy(hosts)
        if not healthy:
            return None
        if self._equal:
            self._index += 1
            return healthy[self._index % len(healthy)]
        # Smooth weighted round robin (nginx's algorithm): deterministic, spreads picks.
        total = 0
        best: Host | None = None
        best_score = 0
        for h in healthy:
            score = self._current.get(h.address, 0) + h.weight
            self._current[h.address] = score
            total += h.weight
            if best is None or score > best_score:
                best, best_score = h, score
        assert best is not None
        self._current[best.address] -= total
        return best


class LeastRequest(_HealthyHosts):
    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng

    def choose(self, hosts: list[Host]) -> Host | None:
        healthy = self.healthy(hosts)
        if not healthy:
            return None
        if len(healthy) == 1:
            return healthy[0]
        a, b = self._rng.sample(healthy, 2)
        return a if a.stats.rq_active <= b.stats.rq_active else b


class RandomLb(_HealthyHosts):
    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng

    def choose(self, hosts: list[Host]) -> Host | None:
        healthy = self.healthy(hosts)
        if not healthy:
            return None
        return healthy[self._rng.randrange(len(healthy))]


POLICIES: dict[int, Callable[[random.Random], LoadBalancer]] = {0: RoundRobin, 1: LeastRequest, 3: RandomLb}
"""Cluster.LbPolicy enum number → balancer class (ROUND_ROBIN=0, LEAST_REQUEST=1, RANDOM=3)."""
