"""The fault filter's configuration (Envoy's ``FaultSettings`` and ``FaultFilterConfig``).

``envoy.extensions.filters.http.fault.v3.HTTPFault`` is parsed once, at config time, into a
frozen :class:`FaultSettings` (what to inject, to which requests, under which runtime keys),
and wrapped with the shared state of one filter instance in :class:`FaultFilterConfig`: the
runtime, the declared stats block and the time source. The per-stream :class:`FaultFilter`
(``filter.py``) only reads them.

The three fault kinds come from ``source/extensions/filters/common/fault/fault_config.cc``:

- **abort**: a fixed ``http_status`` or ``grpc_status``, or ``header_abort`` (the status comes
  from ``x-envoy-fault-abort-request``, 200-599, or ``x-envoy-fault-abort-grpc-request``).
- **delay**: a ``fixed_delay``, or ``header_delay`` (``x-envoy-fault-delay-request``, ms).
- **response_rate_limit**: a ``fixed_limit`` in KiB/s, or ``header_limit``
  (``x-envoy-fault-throughput-response``; 0 means none).

Each kind has a ``percentage`` (FractionalPercent). With a header provider, the request may
lower it with ``<header>-percentage``: the effective numerator is ``min(header, configured)``
over the configured denominator. A header value is used only when ``absl::SimpleAtoi`` would
take it (digits, an optional ``+``, surrounding whitespace); the first value counts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sluice.clock import REAL, TimeSource
from sluice.errors import ConfigError
from sluice.route.matching import HeaderMatcher
from sluice.runtime import DENOMINATORS
from sluice.stats.store import Counter, Gauge, StatsBlock, Store, block

if TYPE_CHECKING:
    from sluice.http.headers import RequestHeaders
    from sluice.runtime import Runtime

# Request headers (Envoy's Filters::Common::Fault::HeaderNames, prefix "x-envoy").
ABORT_REQUEST = "x-envoy-fault-abort-request"
ABORT_REQUEST_PERCENTAGE = "x-envoy-fault-abort-request-percentage"
ABORT_GRPC_REQUEST = "x-envoy-fault-abort-grpc-request"
DELAY_REQUEST = "x-envoy-fault-delay-request"
DELAY_REQUEST_PERCENTAGE = "x-envoy-fault-delay-request-percentage"
THROUGHPUT_RESPONSE = "x-envoy-fault-throughput-response"
THROUGHPUT_RESPONSE_PERCENTAGE = "x-envoy-fault-throughput-response-percentage"

# Default runtime keys (FaultSettings::RuntimeKeyValues); each has an HTTPFault *_runtime field.
DELAY_PERCENT_KEY = "fault.http.delay.fixed_delay_percent"
ABORT_PERCENT_KEY = "fault.http.abort.abort_percent"
DELAY_DURATION_KEY = "fault.http.delay.fixed_duration_ms"
ABORT_HTTP_STATUS_KEY = "fault.http.abort.http_status"
ABORT_GRPC_STATUS_KEY = "fault.http.abort.grpc_status"
MAX_ACTIVE_FAULTS_KEY = "fault.http.max_active_faults"
RESPONSE_RATE_LIMIT_PERCENT_KEY = "fault.http.rate_limit.response_percent"

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1

_ATOI = re.compile(r"[ \t\n\v\f\r]*\+?([0-9]+)[ \t\n\v\f\r]*")


def simple_atoi(value: str | None, maximum: int = UINT64_MAX) -> int | None:
    """``absl::SimpleAtoi`` into an unsigned integer: digits with an optional ``+`` and ASCII
    whitespace around them; out of range or anything else (``-5``, ``0x10``, ``4_18``) is None."""
    if value is None:
        return None
    m = _ATOI.fullmatch(value)
    if m is None:
        return None
    n = int(m.group(1))
    return n if n <= maximum else None


@block
class FaultStats(StatsBlock):
    """``http.<stat_prefix>.fault.*`` (ALL_FAULT_FILTER_STATS). ``active_faults`` counts the
    streams with at least one fault in force; it bounds ``max_active_faults``."""

    TAGS: ClassVar[tuple[str, ...]] = ("envoy.http_conn_manager_prefix",)

    # counters
    aborts_injected: Counter
    delays_injected: Counter
    faults_overflow: Counter
    response_rl_injected: Counter

    # gauges
    active_faults: Gauge


@dataclass(frozen=True, slots=True)
class Percent:
    """A FractionalPercent: ``numerator`` out of ``denominator`` (100, 10 000 or 1 000 000)."""

    numerator: int
    denominator: int

    @classmethod
    def from_proto(cls, p: Any) -> Percent:
        return cls(p.numerator, DENOMINATORS.get(p.denominator, 100))

    def capped_by_header(self, headers: RequestHeaders, name: str) -> Percent:
        """Envoy's HeaderPercentageProvider: ``min(header, numerator)``, same denominator."""
        n = simple_atoi(headers.get(name), UINT32_MAX)
        if n is None:
            return self
        return Percent(min(n, self.numerator), self.denominator)


@dataclass(frozen=True, slots=True)
class AbortConfig:
    """``FaultAbort``: exactly one of ``http_status``, ``grpc_status`` or ``from_headers``."""

    http_status: int | None
    grpc_status: int | None
    from_headers: bool
    configured_percentage: Percent

    def percentage(self, headers: RequestHeaders) -> Percent:
        if self.from_headers:
            return self.configured_percentage.capped_by_header(headers, ABORT_REQUEST_PERCENTAGE)
        return self.configured_percentage

    def http_status_code(self, headers: RequestHeaders) -> int | None:
        if not self.from_headers:
            return self.http_status
        code = simple_atoi(headers.get(ABORT_REQUEST))
        return code if code is not None and 200 <= code < 600 else None

    def grpc_status_code(self, headers: RequestHeaders) -> int | None:
        if not self.from_headers:
            return self.grpc_status
        # Any unsigned value is taken as is (Envoy does not range-check the gRPC status).
        return simple_atoi(headers.get(ABORT_GRPC_REQUEST))


@dataclass(frozen=True, slots=True)
class DelayConfig:
    """``FaultDelay``: a ``fixed_ms`` delay, or the delay of ``x-envoy-fault-delay-request``."""

    fixed_ms: int | None
    configured_percentage: Percent

    def percentage(self, headers: RequestHeaders) -> Percent:
        if self.fixed_ms is None:
            return self.configured_percentage.capped_by_header(headers, DELAY_REQUEST_PERCENTAGE)
        return self.configured_percentage

    def duration_ms(self, headers: RequestHeaders) -> int | None:
        if self.fixed_ms is not None:
            return self.fixed_ms
        return simple_atoi(headers.get(DELAY_REQUEST))


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """``FaultRateLimit``: a ``fixed_kbps`` limit (KiB/s), or ``x-envoy-fault-throughput-response``."""

    fixed_kbps: int | None
    configured_percentage: Percent

    def percentage(self, headers: RequestHeaders) -> Percent:
        if self.fixed_kbps is None:
            return self.configured_percentage.capped_by_header(headers, THROUGHPUT_RESPONSE_PERCENTAGE)
        return self.configured_percentage

    def rate_kbps(self, headers: RequestHeaders) -> int | None:
        if self.fixed_kbps is not None:
            return self.fixed_kbps
        kbps = simple_atoi(headers.get(THROUGHPUT_RESPONSE))
        return kbps or None  # 0 means no limit


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """What one ``HTTPFault`` message asks for (Envoy's ``FaultSettings``)."""

    abort: AbortConfig | None
    """``abort``; None when not configured."""
    delay: DelayConfig | None
    """``delay``; None when not configured."""
    response_rate_limit: RateLimitConfig | None
    """``response_rate_limit``; None when not configured."""
    upstream_cluster: str
    """``upstream_cluster``: fault only requests routed to this cluster ('' = any)."""
    downstream_nodes: frozenset[str]
    """``downstream_nodes``: fault only requests whose ``x-envoy-downstream-service-node`` is one of these."""
    headers: tuple[HeaderMatcher, ...]
    """``headers``: fault only requests that match all of these."""
    max_active_faults: int | None
    """``max_active_faults``; None = unlimited (unless the runtime says otherwise)."""
    disable_downstream_cluster_stats: bool
    """``disable_downstream_cluster_stats``: no ``fault.<downstream cluster>.*`` counters."""
    delay_percent_runtime: str = DELAY_PERCENT_KEY
    abort_percent_runtime: str = ABORT_PERCENT_KEY
    delay_duration_runtime: str = DELAY_DURATION_KEY
    abort_http_status_runtime: str = ABORT_HTTP_STATUS_KEY
    abort_grpc_status_runtime: str = ABORT_GRPC_STATUS_KEY
    max_active_faults_runtime: str = MAX_ACTIVE_FAULTS_KEY
    response_rate_limit_percent_runtime: str = RESPONSE_RATE_LIMIT_PERCENT_KEY

    @classmethod
    def from_proto(cls, msg: Any, path: str) -> FaultSettings:
        return cls(
            abort=_abort(msg.abort, f"{path}.abort") if msg.HasField("abort") else None,
            delay=_delay(msg.delay, f"{path}.delay") if msg.HasField("delay") else None,
            response_rate_limit=(
                _rate_limit(msg.response_rate_limit, f"{path}.response_rate_limit") if msg.HasField("response_rate_limit") else None
            ),
            upstream_cluster=msg.upstream_cluster,
            downstream_nodes=frozenset(msg.downstream_nodes),
            headers=tuple(HeaderMatcher(h, f"{path}.headers[{i}]") for i, h in enumerate(msg.headers)),
            max_active_faults=msg.max_active_faults.value if msg.HasField("max_active_faults") else None,
            disable_downstream_cluster_stats=msg.disable_downstream_cluster_stats,
            delay_percent_runtime=msg.delay_percent_runtime or DELAY_PERCENT_KEY,
            abort_percent_runtime=msg.abort_percent_runtime or ABORT_PERCENT_KEY,
            delay_duration_runtime=msg.delay_duration_runtime or DELAY_DURATION_KEY,
            abort_http_status_runtime=msg.abort_http_status_runtime or ABORT_HTTP_STATUS_KEY,
            abort_grpc_status_runtime=msg.abort_grpc_status_runtime or ABORT_GRPC_STATUS_KEY,
            max_active_faults_runtime=msg.max_active_faults_runtime or MAX_ACTIVE_FAULTS_KEY,
            response_rate_limit_percent_runtime=(msg.response_rate_limit_percent_runtime or RESPONSE_RATE_LIMIT_PERCENT_KEY),
        )


def _abort(a: Any, path: str) -> AbortConfig:
    kind = a.WhichOneof("error_type")
    pct = Percent.from_proto(a.percentage)
    if kind == "http_status":
        return AbortConfig(a.http_status, None, False, pct)
    if kind == "grpc_status":
        return AbortConfig(None, a.grpc_status, False, pct)
    if kind == "header_abort":
        return AbortConfig(None, None, True, pct)
    raise ConfigError(f"{path}: one of http_status, grpc_status, header_abort is required")


def _delay(d: Any, path: str) -> DelayConfig:
    kind = d.WhichOneof("fault_delay_secifier")
    pct = Percent.from_proto(d.percentage)
    if kind == "fixed_delay":
        # PROTOBUF_GET_MS_REQUIRED: whole milliseconds.
        return DelayConfig(d.fixed_delay.seconds * 1000 + d.fixed_delay.nanos // 1_000_000, pct)
    if kind == "header_delay":
        return DelayConfig(None, pct)
    raise ConfigError(f"{path}: one of fixed_delay, header_delay is required")


def _rate_limit(r: Any, path: str) -> RateLimitConfig:
    kind = r.WhichOneof("limit_type")
    pct = Percent.from_proto(r.percentage)
    if kind == "fixed_limit":
        return RateLimitConfig(r.fixed_limit.limit_kbps, pct)
    if kind == "header_limit":
        return RateLimitConfig(None, pct)
    raise ConfigError(f"{path}: one of fixed_limit, header_limit is required")


def monotonic_ns(clock: TimeSource) -> Callable[[], int]:
    """Integer nanoseconds from ``clock``. The real clock's are ``time.monotonic_ns`` itself:
    the bucket needs exact elapsed times (see ``TokenBucket``), which float seconds scaled up
    would not always give; a simulated clock's float seconds are rounded to the nanosecond."""
    if clock is REAL:
        return time.monotonic_ns
    monotonic = clock.monotonic
    return lambda: round(monotonic() * 1e9)


@dataclass(frozen=True, slots=True)
class FaultFilterConfig:
    """One fault filter of one HCM, shared by all its streams (Envoy's ``FaultFilterConfig``)."""

    settings: FaultSettings
    runtime: Runtime
    stats: FaultStats
    """Bound under ``http.<stat_prefix>.fault.``."""
    clock: TimeSource = REAL
    """The clock the response rate limiter's token bucket reads (its timers are the stream's)."""
    time_source: Callable[[], int] | None = None
    """Monotonic nanoseconds for the token bucket; ``None``: :func:`monotonic_ns` of ``clock``."""
    buffer_limit: int = 1024 * 1024
    """The encoder buffer limit (Envoy's default ``per_connection_buffer_limit_bytes``): above it
    the rate limiter asks the upstream to stop reading."""
    _downstream: dict[tuple[str, str], Counter] = field(default_factory=dict, repr=False)
    now_ns: Callable[[], int] = field(init=False, repr=False)
    """What the token bucket calls: ``time_source``, else ``clock``'s nanoseconds."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "now_ns", self.time_source or monotonic_ns(self.clock))

    @classmethod
    def from_proto(cls, msg: Any, path: str, runtime: Runtime, store: Store, stats_prefix: str, **kw: Any) -> FaultFilterConfig:
        """``stats_prefix`` is the HCM's ``http.<stat_prefix>.``, as Envoy passes it."""
        return cls(FaultSettings.from_proto(msg, path), runtime, FaultStats.declare(store, f"{stats_prefix}fault."), **kw)

    def downstream_counter(self, cluster: str, stat: str) -> Counter:
        """``fault.<cluster>.<stat>`` (``aborts_injected`` or ``delays_injected``) for the value
        of ``x-envoy-downstream-service-cluster``. Envoy makes each on first use, so ``/stats``
        lists only those that happened; each name is built once and cached."""
        counter = self._downstream.get((cluster, stat))
        if counter is None:
            counter = self._downstream[(cluster, stat)] = self.stats.dynamic_counter(f"{cluster}.{stat}")
        return counter

    # -- runtime lookups, as Envoy's Snapshot makes them -----------------------------------
    def feature_enabled(self, key: str, percent: Percent, random_value: int) -> bool:
        """``featureEnabled(key, FractionalPercent)`` (see :meth:`Runtime.feature_enabled`)."""
        return self.runtime.feature_enabled(key, percent.numerator, percent.denominator, random_value)

    def get_integer(self, key: str, default: int) -> int:
        return self.runtime.get_integer(key, default)
