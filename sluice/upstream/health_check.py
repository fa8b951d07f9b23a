"""Active HTTP health checking (``health_checks[].http_health_check``).

Theory of operation (Envoy's ``HealthCheckerImplBase`` and ``HttpHealthCheckerImpl``, docs:
intro/arch_overview/upstream/health_checking):
- Hosts of a health-checked cluster start with ``failed_active_hc``. Each host has a session
  that checks right away (after ``initial_jitter``), and again an interval after each result;
  the cluster finishes initializing when every host has had its first result.
- A check is ``GET <path>`` with ``host`` (default: the cluster name) and
  ``user-agent: Envoy/HC`` on a kept-alive connection of its own (not counted in the
  cluster's ``upstream_cx_*``). A status in ``expected_statuses`` (default 200) is a success;
  any other status is an active failure; a connect failure, reset or ``timeout`` is a network
  failure and closes the connection.
- Transitions (``HostHealth``, pure): a success on a failed host clears the flag on the first
  check ever or after ``healthy_threshold`` consecutive successes; an active failure sets the
  flag at once; network failures set it after ``unhealthy_threshold`` consecutive ones.
- The next interval (``next_interval``, pure): while the cluster has never opened a traffic
  connection, ``no_traffic_interval`` (60 s; ``no_traffic_healthy_interval`` for a healthy host
  with no transition); otherwise ``interval``/``healthy_edge_interval`` when healthy,
  ``unhealthy_interval``/``unhealthy_edge_interval`` when not - the edge ones right after a
  transition; plus ``interval_jitter_percent`` and ``interval_jitter`` random jitter.
- Stats ``health_check.{attempt,success,failure,network_failure,...}`` and the ``healthy`` gauge
  (hosts without ``failed_active_hc``); every transition calls ``on_change`` (the cluster
  invalidates its load balancer and updates ``membership_healthy``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import httptools

from sluice.clock import REAL, TimeSource
from sluice.stats.store import Counter, Gauge, StatsBlock, block
from sluice.tasks import sleep, spawn
from sluice.tasks import timeout as clock_timeout

if TYPE_CHECKING:
    from sluice.upstream.host import Host

UNCHANGED, PENDING, CHANGED = 0, 1, 2


@block
class HealthCheckStats(StatsBlock):
    """``cluster.<name>.health_check.*`` (ALL_HEALTH_CHECKER_STATS)."""

    TAGS: ClassVar[tuple[str, ...]] = ("envoy.cluster_name",)

    # counters
    attempt: Counter
    degraded: Counter
    failure: Counter
    network_failure: Counter
    passive_failure: Counter
    success: Counter
    verify_cluster: Counter

    # gauges
    healthy: Gauge


def _ms(d: Any) -> int:
    return int(d.seconds * 1000 + d.nanos // 1_000_000)


class HealthCheckConfig:
    """One ``HealthCheck`` with Envoy's defaults filled in (times in milliseconds)."""

    __slots__ = (
        "timeout_ms",
        "interval_ms",
        "no_traffic_interval_ms",
        "no_traffic_healthy_interval_ms",
        "unhealthy_interval_ms",
        "unhealthy_edge_interval_ms",
        "healthy_edge_interval_ms",
        "interval_jitter_ms",
        "interval_jitter_percent",
        "initial_jitter_ms",
        "unhealthy_threshold",
        "healthy_threshold",
        "path",
        "host",
        "expected",
        "reuse_connection",
    )

    def __init__(self, hc: Any, cluster_name: str) -> None:
        def ms(name: str, default: int) -> int:
            return _ms(getattr(hc, name)) if hc.HasField(name) else default

        self.timeout_ms = ms("timeout", 1000)
        self.interval_ms = ms("interval", 10_000)
        self.no_traffic_interval_ms = ms("no_traffic_interval", 60_000)
        self.no_traffic_healthy_interval_ms = ms("no_traffic_healthy_interval", self.no_traffic_interval_ms)
        self.unhealthy_interval_ms = ms("unhealthy_interval", self.interval_ms)
        self.unhealthy_edge_interval_ms = ms("unhealthy_edge_interval", self.unhealthy_interval_ms)
        self.healthy_edge_interval_ms = ms("healthy_edge_interval", self.interval_ms)
        self.interval_jitter_ms = ms("interval_jitter", 0)
        self.interval_jitter_percent = int(hc.interval_jitter_percent)
        self.initial_jitter_ms = ms("initial_jitter", 0)
        self.unhealthy_threshold = hc.unhealthy_threshold.value if hc.HasField("unhealthy_threshold") else 1
        self.healthy_threshold = hc.healthy_threshold.value if hc.HasField("healthy_threshold") else 1
        self.reuse_connection = hc.reuse_connection.value if hc.HasField("reuse_connection") else True
        http = hc.http_health_check
        self.path: str = http.path
        self.host: str = http.host or cluster_name
        self.expected: list[tuple[int, int]] = [(r.start, r.end) for r in http.expected_statuses] or [(200, 201)]

    def is_expected(self, status: int) -> bool:
        return any(start <= status < end for start, end in self.expected)


def next_interval(cfg: HealthCheckConfig, healthy: bool, transition: int, had_traffic: bool, rng: random.Random) -> float:
    """Envoy's ``HealthCheckerImplBase::interval`` with jitter, in seconds."""
    if had_traffic:
        if healthy:
            base = cfg.healthy_edge_interval_ms if transition == CHANGED else cfg.interval_ms
        else:
            base = cfg.unhealthy_edge_interval_ms if transition == CHANGED else cfg.unhealthy_interval_ms
    elif healthy and transition != CHANGED:
        base = cfg.no_traffic_healthy_interval_ms
    else:
        base = cfg.no_traffic_interval_ms
    jitter_mod = cfg.interval_jitter_percent * base // 100
    if jitter_mod > 0:
        base += rng.randrange(jitter_mod)
    if cfg.interval_jitter_ms > 0:
        base += rng.randrange(cfg.interval_jitter_ms)
    return base / 1000.0


class HostHealth:
    """The active-health state of one host (pure: no IO, no time)."""

    __slots__ = ("host", "num_healthy", "num_unhealthy", "first_check")

    def __init__(self, host: Host) -> None:
        self.host = host
        self.num_healthy = 0
        self.num_unhealthy = 0
        self.first_check = True
        host.set_failed_active_hc(True)

    def on_success(self, healthy_threshold: int) -> int:
        self.num_unhealthy = 0
        transition = UNCHANGED
        if self.host.failed_active_hc:
            self.num_healthy += 1
            if self.first_check or self.num_healthy == healthy_threshold:
                self.host.set_failed_active_hc(False)
                transition = CHANGED
            else:
                transition = PENDING
        self.first_check = False
        return transition

    def on_failure(self, network: bool, unhealthy_threshold: int) -> int:
        self.num_healthy = 0
        transition = UNCHANGED
        if not self.host.failed_active_hc:
            if network:
                self.num_unhealthy += 1
            if not network or self.num_unhealthy == unhealthy_threshold:
                self.host.set_failed_active_hc(True)
                transition = CHANGED
            else:
                transition = PENDING
        self.first_check = False
        return transition


class _Probe(asyncio.Protocol):
    """One health-check connection: writes requests, parses responses (httptools)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[int] | None = None
        self.keep_alive = True
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.done is not None and not self.done.done():
            self.done.set_result(self.parser.get_status_code())

    def _fail(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("health check connection reset"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HealthChecker:
    """Active HTTP health checking for one cluster (the first ``health_checks`` entry)."""

    def __init__(
        self,
        cfg: HealthCheckConfig,
        stats: HealthCheckStats,
        traffic_counter: Counter,
        on_change: Callable[[], None],
        cluster_name: str,
        rng: random.Random | None = None,
        clock: TimeSource = REAL,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        """The intervals' and the timeout's timers (a test injects a ``SimTime``)."""
        self.stats = stats
        self._traffic = traffic_counter
        self._on_change = on_change
        self._name = cluster_name
        self._rng = rng or random.Random()
        self.sessions: dict[Host, HostHealth] = {}
        self._tasks: dict[Host, asyncio.Task[Any]] = {}
        self._first: dict[Host, asyncio.Future[None]] = {}
        self._request = f"GET {cfg.path} HTTP/1.1\r\nhost: {cfg.host}\r\nuser-agent: Envoy/HC\r\n\r\n".encode("latin-1")

    def __repr__(self) -> str:
        return f"<HealthChecker {self._name} hosts={len(self.sessions)} healthy={self.stats.healthy.value}>"

    def set_hosts(self, hosts: list[Host]) -> None:
        """Start sessions for new hosts (they start failed) and stop those of removed ones."""
        current = set(hosts)
        for h in list(self.sessions):
            if h not in current:
                del self.sessions[h]
                task = self._tasks.pop(h, None)
                if task is not None:
                    task.cancel()
                self._first.pop(h, None)
        for h in hosts:
            if h not in self.sessions:
                self.sessions[h] = HostHealth(h)
                self._first[h] = asyncio.get_event_loop().create_future()
                self._tasks[h] = spawn(self._run(h), name=f"health_check:{self._name}:{h.address}")
        self._refresh_healthy()

    async def first_round(self) -> None:
        """Wait until every host has had its first result (cluster warming)."""
        if self._first:
            await asyncio.gather(*self._first.values(), return_exceptions=True)

    def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    def _refresh_healthy(self) -> None:
        self.stats.healthy.set(sum(1 for h in self.sessions if not h.failed_active_hc))

    def record(self, host: Host, status: int | None) -> int:
        """Apply one result (``None``: network failure); returns the transition."""
        session = self.sessions.get(host)
        if session is None:
            return UNCHANGED
        cfg = self.cfg
        if status is not None and cfg.is_expected(status):
            transition = session.on_success(cfg.healthy_threshold)
            self.stats.success.inc()
            if host.failed_outlier_check and host.outlier is not None:
                host.outlier.on_active_health_check_success(host)
        else:
            transition = session.on_failure(status is None, cfg.unhealthy_threshold)
            self.stats.failure.inc()
            if status is None:
                self.stats.network_failure.inc()
        if transition == CHANGED:
            self._refresh_healthy()
            self._on_change()
        first = self._first.get(host)
        if first is not None and not first.done():
            first.set_result(None)
        return transition

    async def _run(self, host: Host) -> None:
        cfg = self.cfg
        loop = asyncio.get_event_loop()
        probe: _Probe | None = None
        delay = self._rng.randrange(cfg.initial_jitter_ms) / 1000.0 if cfg.initial_jitter_ms > 0 else 0.0
        try:
            while True:
                if delay:
                    await sleep(self.clock, delay)
                self.stats.attempt.inc()
                status: int | None = None
                try:
                    async with clock_timeout(self.clock, cfg.timeout_ms / 1000.0):
                        if probe is None or probe.closed:
                            _t, probe = await loop.create_connection(_Probe, host.ip, host.port)
                        probe.done = loop.create_future()
                        assert probe.transport is not None
                        probe.transport.write(self._request)
                        status = await probe.done
                except (OSError, TimeoutError):
                    status = None
                if probe is not None and (status is None or not probe.keep_alive or not cfg.reuse_connection):
                    probe.close()
                    probe = None
                transition = self.record(host, status)
                delay = next_interval(cfg, not host.failed_active_hc, transition, self._traffic.used, self._rng)
        finally:
            if probe is not None:
                probe.close()
