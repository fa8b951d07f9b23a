"""The per-request stream record (Envoy's StreamInfo), filled in as a request flows.

Access logs, stats and tracing read it after the fact; nothing in it does I/O.
"""

from __future__ import annotations

import enum

from sluice.clock import REAL, TimeSource
from sluice.tracing.request_id import Reason


class ResponseFlag(enum.IntFlag):
    """Envoy's response flags, with the short codes ``%RESPONSE_FLAGS%`` prints."""

    FAILED_LOCAL_HEALTH_CHECK = 1 << 0  # LH
    NO_HEALTHY_UPSTREAM = 1 << 1  # UH
    UPSTREAM_REQUEST_TIMEOUT = 1 << 2  # UT
    LOCAL_RESET = 1 << 3  # LR
    UPSTREAM_REMOTE_RESET = 1 << 4  # UR
    UPSTREAM_CONNECTION_FAILURE = 1 << 5  # UF
    UPSTREAM_CONNECTION_TERMINATION = 1 << 6  # UC
    UPSTREAM_OVERFLOW = 1 << 7  # UO
    NO_ROUTE_FOUND = 1 << 8  # NR
    DELAY_INJECTED = 1 << 9  # DI
    FAULT_INJECTED = 1 << 10  # FI
    RATE_LIMITED = 1 << 11  # RL
    DOWNSTREAM_CONNECTION_TERMINATION = 1 << 14  # DC
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 1 << 15  # URX
    STREAM_IDLE_TIMEOUT = 1 << 16  # SI
    DOWNSTREAM_PROTOCOL_ERROR = 1 << 19  # DPE
    UPSTREAM_MAX_STREAM_DURATION_REACHED = 1 << 20  # UMSDR
    NO_CLUSTER_FOUND = 1 << 23  # NC
    UPSTREAM_PROTOCOL_ERROR = 1 << 25  # UPE
    NO_ROUTE_FOUND_DIRECT = 1 << 30  # placeholder, never set


# Order is Envoy's (source/common/stream_info/utility.cc ALL_RESPONSE_STRINGS_FLAGS).
FLAG_CODES: tuple[tuple[ResponseFlag, str], ...] = (
    (ResponseFlag.FAILED_LOCAL_HEALTH_CHECK, "LH"),
    (ResponseFlag.NO_HEALTHY_UPSTREAM, "UH"),
    (ResponseFlag.UPSTREAM_REQUEST_TIMEOUT, "UT"),
    (ResponseFlag.LOCAL_RESET, "LR"),
    (ResponseFlag.UPSTREAM_REMOTE_RESET, "UR"),
    (ResponseFlag.UPSTREAM_CONNECTION_FAILURE, "UF"),
    (ResponseFlag.UPSTREAM_CONNECTION_TERMINATION, "UC"),
    (ResponseFlag.UPSTREAM_OVERFLOW, "UO"),
    (ResponseFlag.NO_ROUTE_FOUND, "NR"),
    (ResponseFlag.DELAY_INJECTED, "DI"),
    (ResponseFlag.FAULT_INJECTED, "FI"),
    (ResponseFlag.RATE_LIMITED, "RL"),
    (ResponseFlag.DOWNSTREAM_CONNECTION_TERMINATION, "DC"),
    (ResponseFlag.UPSTREAM_RETRY_LIMIT_EXCEEDED, "URX"),
    (ResponseFlag.STREAM_IDLE_TIMEOUT, "SI"),
    (ResponseFlag.DOWNSTREAM_PROTOCOL_ERROR, "DPE"),
    (ResponseFlag.UPSTREAM_MAX_STREAM_DURATION_REACHED, "UMSDR"),
    (ResponseFlag.NO_CLUSTER_FOUND, "NC"),
    (ResponseFlag.UPSTREAM_PROTOCOL_ERROR, "UPE"),
)


# Envoy's long names (%RESPONSE_FLAGS_LONG%), same order.
FLAG_LONG_NAMES: dict[ResponseFlag, str] = {
    ResponseFlag.FAILED_LOCAL_HEALTH_CHECK: "FailedLocalHealthCheck",
    ResponseFlag.NO_HEALTHY_UPSTREAM: "NoHealthyUpstream",
    ResponseFlag.UPSTREAM_REQUEST_TIMEOUT: "UpstreamRequestTimeout",
    ResponseFlag.LOCAL_RESET: "LocalReset",
    ResponseFlag.UPSTREAM_REMOTE_RESET: "UpstreamRemoteReset",
    ResponseFlag.UPSTREAM_CONNECTION_FAILURE: "UpstreamConnectionFailure",
    ResponseFlag.UPSTREAM_CONNECTION_TERMINATION: "UpstreamConnectionTermination",
    ResponseFlag.UPSTREAM_OVERFLOW: "UpstreamOverflow",
    ResponseFlag.NO_ROUTE_FOUND: "NoRouteFound",
    ResponseFlag.DELAY_INJECTED: "DelayInjected",
    ResponseFlag.FAULT_INJECTED: "FaultInjected",
    ResponseFlag.RATE_LIMITED: "RateLimited",
    ResponseFlag.DOWNSTREAM_CONNECTION_TERMINATION: "DownstreamConnectionTermination",
    ResponseFlag.UPSTREAM_RETRY_LIMIT_EXCEEDED: "UpstreamRetryLimitExceeded",
    ResponseFlag.STREAM_IDLE_TIMEOUT: "StreamIdleTimeout",
    ResponseFlag.DOWNSTREAM_PROTOCOL_ERROR: "DownstreamProtocolError",
    ResponseFlag.UPSTREAM_MAX_STREAM_DURATION_REACHED: "UpstreamMaxStreamDurationReached",
    ResponseFlag.NO_CLUSTER_FOUND: "NoClusterFound",
    ResponseFlag.UPSTREAM_PROTOCOL_ERROR: "UpstreamProtocolError",
}


_SHORT = dict(FLAG_CODES)


def flags_long_string(flags: int) -> str:
    """``%RESPONSE_FLAGS_LONG%``: comma-joined long names, ``-`` when none."""
    if not flags:
        return "-"
    return ",".join(FLAG_LONG_NAMES[flag] for flag, _code in FLAG_CODES if flags & flag)


def flags_string(flags: int) -> str:
    """``%RESPONSE_FLAGS%``: comma-joined short codes, ``-`` when none."""
    if not flags:
        return "-"
    return ",".join(code for flag, code in FLAG_CODES if flags & flag)


class UpstreamTiming:
    """One attempt's upstream timing (Envoy's ``UpstreamTiming``, one per upstream request):
    clock ``monotonic()`` seconds of the first and last request byte sent, first and last
    response byte received; None until they happen. The router's attempts subclass it, so an
    attempt is its own record (no object more per request)."""

    __slots__ = (
        "first_tx", "last_tx", "first_rx", "first_rx_body", "last_rx", "pool_ready_latency", "local_address",
        "protocol", "connection_id", "transport_failure",
    )  # fmt: skip

    def __init__(self) -> None:
        self.first_tx: float | None = None
        self.last_tx: float | None = None
        self.first_rx: float | None = None
        self.first_rx_body: float | None = None
        self.last_rx: float | None = None
        self.pool_ready_latency: float | None = None
        """Seconds from asking the pool for a connection to getting one."""
        self.local_address: tuple[str, int] | None = None
        """The local end of the connection the attempt got (None before one)."""
        self.protocol: str | None = None
        self.connection_id = 0
        self.transport_failure = ""
        """Why no connection could be made (Envoy's upstream transport failure reason)."""


_NO_STATE: dict[str, object] = {}
"""Shared empty filter state (no filter Sluice implements sets any; never mutated)."""


class StreamInfo:
    """What happened to one request. Times are the clock's ``monotonic()`` seconds."""

    __slots__ = (
        "clock",
        "start_time",
        "start_wall",
        "request_complete",
        "first_upstream_tx",
        "last_upstream_tx",
        "first_upstream_rx",
        "last_upstream_rx",
        "first_downstream_tx",
        "last_downstream_tx",
        "bytes_received",
        "bytes_sent",
        "response_code",
        "response_code_details",
        "response_flags",
        "flag_order",
        "upstream_host",
        "upstream_cluster",
        "route_name",
        "downstream_remote_address",
        "downstream_local_address",
        "protocol",
        "request_id",
        "trace_reason",
        "attempt_count",
        "upstream_timing",
        "downstream_direct_remote_address",
        "connection_id",
        "upstream_host_name",
        "connection_termination_details",
        "custom_flags",
        "virtual_cluster_name",
        "filter_chain_name",
        "dynamic_metadata",
        "cluster_metadata",
        "upstream_host_metadata",
        "filter_state",
    )

    def __init__(
        self,
        remote: tuple[str, int] | None,
        local: tuple[str, int] | None,
        clock: TimeSource = REAL,
        connection_id: int = 0,
    ) -> None:
        self.clock = clock
        self.start_time = clock.monotonic()
        self.start_wall = clock.wall()
        self.request_complete: float | None = None
        self.first_upstream_tx: float | None = None
        self.last_upstream_tx: float | None = None
        self.first_upstream_rx: float | None = None
        self.last_upstream_rx: float | None = None
        self.first_downstream_tx: float | None = None
        self.last_downstream_tx: float | None = None
        self.bytes_received = 0
        self.bytes_sent = 0
        self.response_code: int | None = None
        self.response_code_details = ""
        self.response_flags = 0
        self.flag_order: tuple[ResponseFlag, ...] = ()
        """The flags of ``response_flags`` in the order they were set (Envoy keeps a list)."""
        self.upstream_host: str | None = None
        """``ip:port`` of the host the (last) attempt went to."""
        self.upstream_cluster: str | None = None
        self.route_name = ""
        self.downstream_remote_address = remote
        self.downstream_local_address = local
        self.protocol = "HTTP/1.1"
        self.request_id: str | None = None
        self.trace_reason = Reason.NotTraceable
        """The tracing decision (``sluice.tracing.decision``; NotTraceable without ``tracing``)."""
        self.attempt_count = 0
        self.upstream_timing: UpstreamTiming | None = None
        """The latest attempt's timing (each attempt has its own; a retry replaces it)."""
        self.downstream_direct_remote_address = remote
        """The connection's peer (``downstream_remote_address`` may come from XFF)."""
        self.connection_id = connection_id
        self.upstream_host_name: str | None = None
        """The upstream host's hostname (a DNS cluster's), None when it has none."""
        self.connection_termination_details: str | None = None
        self.custom_flags: str | None = None
        self.virtual_cluster_name: str | None = None
        self.filter_chain_name = ""
        self.dynamic_metadata: dict[str, dict[str, object]] | None = None
        """Filter namespace → values; None until a filter sets some."""
        self.cluster_metadata: dict[str, dict[str, object]] | None = None
        self.upstream_host_metadata: dict[str, dict[str, object]] | None = None
        self.filter_state: dict[str, object] = _NO_STATE

    def set_flag(self, flag: int) -> None:
        """Set response flags; Envoy prints them in the order they were first set."""
        new = flag & ~self.response_flags
        if new:
            self.response_flags |= new
            self.flag_order += tuple(f for f, _code in FLAG_CODES if new & f)

    def flags_short(self) -> str:
        """``%RESPONSE_FLAGS%``: the short codes in the order they were set, ``-`` for none."""
        if not self.flag_order:
            return "-"
        return ",".join(_SHORT[f] for f in self.flag_order)

    def flags_long(self) -> str:
        """``%RESPONSE_FLAGS_LONG%``."""
        if not self.flag_order:
            return "-"
        return ",".join(FLAG_LONG_NAMES[f] for f in self.flag_order)

    def has_flag(self, flag: ResponseFlag) -> bool:
        return bool(self.response_flags & flag)

    def duration_ms(self) -> int:
        # (formatter/registry.py inlines this expression for %DURATION%: keep the two alike)
        end = self.last_downstream_tx or self.clock.monotonic()
        return int((end - self.start_time) * 1000)
