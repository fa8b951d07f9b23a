"""Load balancers: pure choices over a host list, given an injected random source.

ROUND_ROBIN with unequal weights uses a smooth weighted round robin (an earliest-deadline
schedule, as Envoy's EDF scheduler gives); LEAST_REQUEST is Envoy's power-of-two-choices
(``choice_count`` 2) over active requests; RANDOM picks uniformly.
"""

from __future__ import annotations

import random
from typing import Protocol

from sluice.upstream.host import Host


class LoadBalancer(Protocol):
    def choose(self, hosts: list[Host]) -> Host | None: ...


class _HealthyHosts:
    """The healthy subset of a cluster's host list, recomputed only when the cluster publishes a
    new list (every membership change makes a new one) or :meth:`invalidate` is called (health
    or weights changed in place). With no healthy host, Envoy's panic mode uses them all."""

    __slots__ = ("_hosts", "_healthy", "_equal")

    def __init__(self) -> None:
        self._hosts: list[Host] | None = None
        self._healthy: list[Host] = []
        self._equal = True

    def invalidate(self) -> None:
        self._hosts = None

    def healthy(self, hosts: list[Host]) -> list[Host]:
        if hosts is not self._hosts:
            self._hosts = hosts
            self._healthy = [h for h in hosts if h.healthy] or hosts
            self._equal = all(h.weight == self._healthy[0].weight for h in self._healthy)
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


POLICIES = {0: RoundRobin, 1: LeastRequest, 3: RandomLb}
"""Cluster.LbPolicy enum number → balancer class (ROUND_ROBIN=0, LEAST_REQUEST=1, RANDOM=3)."""
