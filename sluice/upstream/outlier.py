"""Outlier detection: Envoy's consecutive-error detectors and ejections (``outlier_detection``).

Theory of operation (Envoy's ``DetectorImpl``, docs: intro/arch_overview/upstream/outlier):
- The router reports each upstream response code (``put_http_response_code``) and each local
  origin failure - connect failure, reset, timeout (``put_local_origin_failure``) - for the host.
  Without ``split_external_local_origin_errors`` a local failure counts as a 503 (a timeout as
  a 504); with it, it feeds ``consecutive_local_origin_failure`` only.
- Per host, a 5xx bumps ``consecutive_5xx``; a 502/503/504 also bumps the gateway counter (any
  other 5xx clears it); a non-5xx clears both. Reaching a threshold exactly (``==``, as Envoy)
  is a detection: ``ejections_detected_<type>`` counts, the counter resets, and the host is
  ejected if ``(active + 1) / hosts <= max_ejection_percent`` (else ``ejections_overflow``) and
  the ``enforcing_<type>`` percentage allows. An ejected host carries ``failed_outlier_check``,
  is unhealthy for the load balancers, and comes back on the first ``interval`` tick after
  ``base_ejection_time * ejections`` (capped by ``max_ejection_time``); each tick on which a
  host is not ejected lowers its ejection multiplier by one.
- Every threshold, percentage and time is overridable by its ``outlier_detection.*`` runtime key.
- An ejected host that passes an active health check is unejected at once
  (``successful_active_health_check_uneject_host``, default true).
- Time comes from an injected clock and ``call_later`` so that tests run in simulated time.

Not implemented (rejected by ``config/support.py``): success-rate and failure-percentage
detection (their defaults need ≥5 hosts with ≥100 requests per interval to act).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from sluice.stats.store import Counter, Gauge, StatsBlock, block

if TYPE_CHECKING:
    from sluice.clock import TimeSource
    from sluice.runtime import Runtime
    from sluice.upstream.host import Host

CONSECUTIVE_5XX = "consecutive_5xx"
GATEWAY = "consecutive_gateway_failure"
LOCAL_ORIGIN = "consecutive_local_origin_failure"


@block
class OutlierStats(StatsBlock):
    """``cluster.<name>.outlier_detection.*`` (ALL_OUTLIER_DETECTION_STATS)."""

    TAGS: ClassVar[tuple[str, ...]] = ("envoy.cluster_name",)

    # counters
    ejections_consecutive_5xx: Counter
    ejections_detected_consecutive_5xx: Counter
    ejections_detected_consecutive_gateway_failure: Counter
    ejections_detected_consecutive_local_origin_failure: Counter
    ejections_detected_degradation: Counter
    ejections_detected_failure_percentage: Counter
    ejections_detected_local_origin_failure_percentage: Counter
    ejections_detected_local_origin_success_rate: Counter
    ejections_detected_success_rate: Counter
    ejections_enforced_consecutive_5xx: Counter
    ejections_enforced_consecutive_gateway_failure: Counter
    ejections_enforced_consecutive_local_origin_failure: Counter
    ejections_enforced_failure_percentage: Counter
    ejections_enforced_local_origin_failure_percentage: Counter
    ejections_enforced_local_origin_success_rate: Counter
    ejections_enforced_success_rate: Counter
    ejections_enforced_total: Counter
    ejections_overflow: Counter
    ejections_success_rate: Counter
    ejections_total: Counter

    # gauges
    ejections_active: Gauge


def _ms(d: Any) -> int:
    return int(d.seconds * 1000 + d.nanos // 1_000_000)


class OutlierConfig:
    """The configured values (Envoy's defaults when unset); runtime keys override at use."""

    __slots__ = (
        "consecutive_5xx",
        "consecutive_gateway_failure",
        "consecutive_local_origin_failure",
        "enforcing_consecutive_5xx",
        "enforcing_consecutive_gateway_failure",
        "enforcing_consecutive_local_origin_failure",
        "interval_ms",
        "base_ejection_time_ms",
        "max_ejection_time_ms",
        "max_ejection_percent",
        "split_external_local_origin_errors",
        "successful_active_health_check_uneject_host",
    )

    def __init__(self, od: Any | None = None) -> None:
        def u32(name: str, default: int) -> int:
            if od is not None and od.HasField(name):
                return int(getattr(od, name).value)
            return default

        def ms(name: str, default: int) -> int:
            if od is not None and od.HasField(name):
                return _ms(getattr(od, name))
            return default

        self.consecutive_5xx = u32("consecutive_5xx", 5)
        self.consecutive_gateway_failure = u32("consecutive_gateway_failure", 5)
        self.consecutive_local_origin_failure = u32("consecutive_local_origin_failure", 5)
        self.enforcing_consecutive_5xx = u32("enforcing_consecutive_5xx", 100)
        self.enforcing_consecutive_gateway_failure = u32("enforcing_consecutive_gateway_failure", 0)
        self.enforcing_consecutive_local_origin_failure = u32("enforcing_consecutive_local_origin_failure", 100)
        self.interval_ms = ms("interval", 10_000)
        self.base_ejection_time_ms = ms("base_ejection_time", 30_000)
        self.max_ejection_time_ms = ms("max_ejection_time", 300_000)
        self.max_ejection_percent = u32("max_ejection_percent", 10)
        self.split_external_local_origin_errors = bool(od is not None and od.split_external_local_origin_errors)
        self.successful_active_health_check_uneject_host = bool(
            od is None
            or not od.HasField("successful_active_health_check_uneject_host")
            or od.successful_active_health_check_uneject_host.value
        )


class HostMonitor:
    """Per-host counters and ejection state."""

    __slots__ = ("consecutive_5xx", "consecutive_gateway", "consecutive_local", "ejected_at", "num_ejections")

    def __init__(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.consecutive_local = 0
        self.ejected_at: float | None = None
        self.num_ejections = 0


class OutlierDetector:
    """One cluster's detector. ``on_change`` runs after any ejection or unejection (the cluster
    invalidates its load balancer's healthy-host cache and updates its gauges)."""

    def __init__(
        self,
        config: OutlierConfig,
        stats: OutlierStats,
        runtime: Runtime | None,
        clock: TimeSource | Callable[[], float],
        call_later: Callable[[float, Callable[[], None]], Any] | None,
        on_change: Callable[[], None],
        rng: random.Random | None = None,
    ) -> None:
        """``clock`` is a :class:`~sluice.clock.TimeSource` (``call_later`` None), or, from a
        caller not yet converted to one, a ``monotonic`` function with its ``call_later``."""
        self.config = config
        self.stats = stats
        self.runtime = runtime
        if call_later is None:
            source = cast("TimeSource", clock)
            self._clock: Callable[[], float] = source.monotonic
            self._call_later: Callable[[float, Callable[[], None]], Any] = source.call_later
        else:
            self._clock = cast("Callable[[], float]", clock)
            self._call_later = call_later
        self._on_change = on_change
        self._rng = rng or random.Random()
        self.monitors: dict[Host, HostMonitor] = {}
        self._timer: Any = None
        self._stopped = False

    def __repr__(self) -> str:
        return f"<OutlierDetector hosts={len(self.monitors)} ejected={self.stats.ejections_active.value}>"

    # -- configuration, with runtime overrides ----------------------------------------------
    def _int(self, key: str, default: int) -> int:
        if self.runtime is None:
            return default
        return self.runtime.get_integer(f"outlier_detection.{key}", default)

    def _enforced(self, kind: str) -> bool:
        default = getattr(self.config, f"enforcing_{kind}")
        pct = self._int(f"enforcing_{kind}", default)
        return self._rng.randrange(100) < pct

    # -- lifecycle ----------------------------------------------------------------------
    def set_hosts(self, hosts: list[Host]) -> None:
        """Track the cluster's current hosts (removed hosts drop their ejection)."""
        current = set(hosts)
        for h in list(self.monitors):
            if h not in current:
                m = self.monitors.pop(h)
                if m.ejected_at is not None:
                    self.stats.ejections_active.dec()
        for h in hosts:
            if h not in self.monitors:
                self.monitors[h] = HostMonitor()
                h.outlier = self

    def start(self) -> None:
        self._arm()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        if not self._stopped:
            interval = self._int("interval_ms", self.config.interval_ms) / 1000.0
            self._timer = self._call_later(interval, self.on_interval)

    # -- results from the router --------------------------------------------------------
    def put_http_response_code(self, host: Host, code: int) -> None:
        m = self.monitors.get(host)
        if m is None:
            return
        if self.config.split_external_local_origin_errors:
            # A response means the connection worked: the local-origin streak ends.
            m.consecutive_local = 0
        if code >= 500:
            if code in (502, 503, 504):
                m.consecutive_gateway += 1
                if m.consecutive_gateway == self._int(GATEWAY, self.config.consecutive_gateway_failure):
                    self._detected(host, m, GATEWAY)
            else:
                m.consecutive_gateway = 0
            m.consecutive_5xx += 1
            if m.consecutive_5xx == self._int(CONSECUTIVE_5XX, self.config.consecutive_5xx):
                self._detected(host, m, CONSECUTIVE_5XX)
        else:
            m.consecutive_5xx = 0
            m.consecutive_gateway = 0

    def put_local_origin_failure(self, host: Host, timeout: bool = False) -> None:
        """A connect failure or reset (``timeout``: the request timed out)."""
        if not self.config.split_external_local_origin_errors:
            self.put_http_response_code(host, 504 if timeout else 503)
            return
        m = self.monitors.get(host)
        if m is None:
            return
        m.consecutive_local += 1
        if m.consecutive_local == self._int(LOCAL_ORIGIN, self.config.consecutive_local_origin_failure):
            self._detected(host, m, LOCAL_ORIGIN)

    # -- ejection -----------------------------------------------------------------------
    def _detected(self, host: Host, m: HostMonitor, kind: str) -> None:
        if kind == CONSECUTIVE_5XX:
            m.consecutive_5xx = 0
        elif kind == GATEWAY:
            m.consecutive_gateway = 0
        else:
            m.consecutive_local = 0
        if m.ejected_at is not None:
            return
        getattr(self.stats, f"ejections_detected_{kind}").inc()
        if kind == CONSECUTIVE_5XX:
            self.stats.ejections_consecutive_5xx.inc()  # deprecated twin, still counted
        self._eject(host, m, kind)

    def _eject(self, host: Host, m: HostMonitor, kind: str) -> None:
        max_percent = min(100, self._int("max_ejection_percent", self.config.max_ejection_percent))
        active = self.stats.ejections_active.value
        if 100.0 * (active + 1) / len(self.monitors) > max_percent:
            self.stats.ejections_overflow.inc()
            return
        if kind == CONSECUTIVE_5XX:
            self.stats.ejections_total.inc()  # deprecated: consecutive_5xx and success rate only
        if not self._enforced(kind):
            return
        self.stats.ejections_active.inc()
        self.stats.ejections_enforced_total.inc()
        getattr(self.stats, f"ejections_enforced_{kind}").inc()
        m.ejected_at = self._clock()
        m.num_ejections += 1
        host.set_failed_outlier(True)
        self._on_change()

    def on_active_health_check_success(self, host: Host) -> None:
        """An ejected host passed an active health check: it comes back at once (Envoy's
        ``successful_active_health_check_uneject_host``, default true)."""
        m = self.monitors.get(host)
        if m is None or m.ejected_at is None or not self.config.successful_active_health_check_uneject_host:
            return
        m.ejected_at = None
        self.stats.ejections_active.dec()
        host.set_failed_outlier(False)
        self._on_change()

    def on_interval(self) -> None:
        """Envoy's interval timer: uneject hosts whose time is up, relax the others."""
        self._timer = None
        now = self._clock()
        base = self._int("base_ejection_time_ms", self.config.base_ejection_time_ms)
        cap = max(self._int("max_ejection_time_ms", self.config.max_ejection_time_ms), base)
        changed = False
        for host, m in self.monitors.items():
            if m.ejected_at is not None:
                if (now - m.ejected_at) * 1000 >= min(base * m.num_ejections, cap):
                    m.ejected_at = None
                    self.stats.ejections_active.dec()
                    host.set_failed_outlier(False)
                    changed = True
            elif m.num_ejections > 0:
                m.num_ejections -= 1
        if changed:
            self._on_change()
        self._arm()
