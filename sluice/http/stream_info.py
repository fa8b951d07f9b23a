"""The per-request stream record (Envoy's StreamInfo), filled in as a request flows.

Access logs, stats and tracing read it after the fact; nothing in it does I/O.
"""

from __future__ import annotations

import enum

from sluice.clock import REAL, TimeSource


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

    __slots__ = ("first_tx", "last_tx", "first_rx", "last_rx")

    def __init__(self) -> None:
        self.first_tx: float | None = None
        self.last_tx: float | None = None
        self.first_rx: float | None = None
        self.last_rx: float | None = None


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
        "upstream_host",
        "upstream_cluster",
        "upstream_local_address",
        "route_name",
        "downstream_remote_address",
        "downstream_local_address",
        "protocol",
        "request_id",
        "attempt_count",
        "upstream_timing",
    )

    def __init__(self, remote: tuple[str, int] | None, local: tuple[str, int] | None, clock: TimeSource = REAL) -> None:
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
        self.upstream_host: str | None = None
        """``ip:port`` of the host the (last) attempt went to."""
        self.upstream_cluster: str | None = None
        self.upstream_local_address: str | None = None
        self.route_name = ""
        self.downstream_remote_address = remote
        self.downstream_local_address = local
        self.protocol = "HTTP/1.1"
        self.request_id: str | None = None
        self.attempt_count = 0
        self.upstream_timing: UpstreamTiming | None = None
        """The latest attempt's timing (each attempt has its own; a retry replaces it)."""

    def set_flag(self, flag: ResponseFlag) -> None:
        self.response_flags |= flag

    def has_flag(self, flag: ResponseFlag) -> bool:
        return bool(self.response_flags & flag)

    def duration_ms(self) -> int:
        end = self.last_downstream_tx or self.clock.monotonic()
        return int((end - self.start_time) * 1000)
