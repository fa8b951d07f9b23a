"""Circuit breakers: Envoy's per-cluster, per-priority ``ResourceManager``.

Theory of operation (Envoy's ``ResourceManagerImpl``, docs: intro/arch_overview/upstream/
circuit_breaking):
- Each priority (DEFAULT, HIGH) has four counted resources: connections, pending requests,
  requests and retries. ``can_create()`` is ``count < max``; ``inc()``/``dec()`` move the count
  and keep the ``circuit_breakers.<priority>.<x>_open`` gauge at 1 while the resource is full.
- The pool checks them (``conn_pool.py``): a request with no idle connection queues as pending
  only if pending can be created (else it fails with reason ``overflow`` and
  ``upstream_rq_pending_overflow``); a new connection is opened only if connections can be
  created (else ``upstream_cx_overflow`` and the request waits, unless the host has no
  connection at all); a request is attached to a connection only if requests can be created
  (else ``overflow`` / ``upstream_rq_active_overflow``, as Envoy 1.40 counts it).
- Retries are checked by the router: with a ``retry_budget``, the retry limit is
  ``max(min_retry_concurrency, budget_percent% of (active + pending requests))`` instead of
  ``max_retries``; ``retry_budget`` and ``max_retries`` are then the same resource.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.stats.blocks import ClusterStats
    from sluice.stats.store import Gauge

DEFAULT_MAX = {"max_connections": 1024, "max_pending_requests": 1024, "max_requests": 1024, "max_retries": 3}
"""Envoy's thresholds when a priority configures none (``cluster.proto`` Thresholds)."""

DEFAULT_BUDGET_PERCENT = 20.0
DEFAULT_MIN_RETRY_CONCURRENCY = 3


class Resource:
    """One counted resource with a limit and its ``*_open`` gauge."""

    __slots__ = ("name", "max", "count", "_open")

    def __init__(self, name: str, limit: int, open_gauge: Gauge | None) -> None:
        self.name = name
        self.max = limit
        self.count = 0
        self._open = open_gauge

    def __repr__(self) -> str:
        return f"<Resource {self.name} {self.count}/{self.limit()}>"

    def limit(self) -> int:
        return self.max

    # The three methods below are on the request path: no calls, only the gauge's fields.
    # Envoy sets the open gauge at every change, so it is used from the first one on.
    def can_create(self) -> bool:
        return self.count < self.max

    def inc(self) -> None:
        self.count += 1
        g = self._open
        if g is not None:
            g.value = 1 if self.count >= self.max else 0
            g.used = True

    def dec(self) -> None:
        self.count -= 1
        g = self._open
        if g is not None:
            g.value = 1 if self.count >= self.max else 0
            g.used = True


class RetryBudget(Resource):
    """Retries limited by a budget: a share of the active and pending requests, with a floor."""

    __slots__ = ("percent", "min_concurrency", "_requests", "_pending")

    def __init__(self, open_gauge: Gauge | None, percent: float, min_concurrency: int, requests: Resource, pending: Resource) -> None:
        super().__init__("retry_budget", min_concurrency, open_gauge)
        self.percent = percent
        self.min_concurrency = min_concurrency
        self._requests = requests
        self._pending = pending

    def limit(self) -> int:
        budget = int(self.percent / 100.0 * (self._requests.count + self._pending.count))
        return max(budget, self.min_concurrency)

    def can_create(self) -> bool:
        return self.count < self.limit()

    def inc(self) -> None:
        self.count += 1
        self._update_open()

    def dec(self) -> None:
        self.count -= 1
        self._update_open()

    def _update_open(self) -> None:
        if self._open is not None:
            self._open.set(0 if self.count < self.limit() else 1)


class ResourceManager:
    """The resources of one priority of one cluster."""

    __slots__ = ("priority", "max_connections", "max_pending_requests", "max_requests", "max_retries", "retry_budget")

    def __init__(self, priority: str, thresholds: Any | None, stats: ClusterStats | None) -> None:
        self.priority = priority

        def gauge(name: str) -> Gauge | None:
            if stats is None:
                return None
            g: Gauge = stats.circuit_breaker_gauges(priority)[name]
            return g

        limits = dict(DEFAULT_MAX)
        budget: Any = None
        if thresholds is not None:
            for key in DEFAULT_MAX:
                if thresholds.HasField(key):
                    limits[key] = getattr(thresholds, key).value
            if thresholds.HasField("retry_budget"):
                budget = thresholds.retry_budget
        self.max_connections = Resource("max_connections", limits["max_connections"], gauge("cx_open"))
        self.max_pending_requests = Resource("max_pending_requests", limits["max_pending_requests"], gauge("rq_pending_open"))
        self.max_requests = Resource("max_requests", limits["max_requests"], gauge("rq_open"))
        self.max_retries: Resource
        if budget is not None:
            percent = budget.budget_percent.value if budget.HasField("budget_percent") else DEFAULT_BUDGET_PERCENT
            floor = budget.min_retry_concurrency.value if budget.HasField("min_retry_concurrency") else DEFAULT_MIN_RETRY_CONCURRENCY
            self.max_retries = RetryBudget(gauge("rq_retry_open"), percent, floor, self.max_requests, self.max_pending_requests)
        else:
            self.max_retries = Resource("max_retries", limits["max_retries"], gauge("rq_retry_open"))
        self.retry_budget = self.max_retries
        """The retry resource the router uses: budget-limited when ``retry_budget`` is set,
        else ``max_retries`` (the same object either way)."""

    def __repr__(self) -> str:
        return (
            f"<ResourceManager {self.priority} cx={self.max_connections.count}/{self.max_connections.max} "
            f"pending={self.max_pending_requests.count}/{self.max_pending_requests.max} "
            f"rq={self.max_requests.count}/{self.max_requests.max} "
            f"retries={self.max_retries.count}/{self.max_retries.limit()}>"
        )

    def limits(self) -> dict[str, int]:
        """The configured maxima (``/clusters``); a budget shows ``max_retries`` as configured."""
        return {
            "max_connections": self.max_connections.max,
            "max_pending_requests": self.max_pending_requests.max,
            "max_requests": self.max_requests.max,
            "max_retries": self.max_retries.max,
        }


def build(circuit_breakers: Any, stats: ClusterStats | None) -> tuple[ResourceManager, ResourceManager]:
    """DEFAULT and HIGH resource managers from a cluster's ``circuit_breakers`` (last wins)."""
    found: dict[int, Any] = {}
    if circuit_breakers is not None:
        for t in circuit_breakers.thresholds:
            found[1 if t.priority == 1 else 0] = t
    return ResourceManager("default", found.get(0), stats), ResourceManager("high", found.get(1), stats)
