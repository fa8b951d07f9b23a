"""``config.route.v3.RetryPolicy`` compiled once (Envoy's ``RetryPolicyImpl``).

It lives with the route table (below ``http/``), as Envoy keeps it in the route config; the
per-request :class:`sluice.router.retry.RetryState` that uses it is in ``router/retry.py``,
whose docstring gives the retry rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sluice.errors import ConfigError
from sluice.route.matching import HeaderMatcher

RETRY_ON_5XX = 1 << 0
RETRY_ON_GATEWAY_ERROR = 1 << 1
RETRY_ON_CONNECT_FAILURE = 1 << 2
RETRY_ON_RETRIABLE_4XX = 1 << 3
RETRY_ON_REFUSED_STREAM = 1 << 4
RETRY_ON_GRPC_CANCELLED = 1 << 5
RETRY_ON_GRPC_DEADLINE_EXCEEDED = 1 << 6
RETRY_ON_GRPC_RESOURCE_EXHAUSTED = 1 << 7
RETRY_ON_GRPC_UNAVAILABLE = 1 << 8
RETRY_ON_GRPC_INTERNAL = 1 << 9
RETRY_ON_RETRIABLE_STATUS_CODES = 1 << 10
RETRY_ON_RESET = 1 << 11
RETRY_ON_RETRIABLE_HEADERS = 1 << 12
RETRY_ON_ENVOY_RATE_LIMITED = 1 << 13
RETRY_ON_HTTP3_POST_CONNECT_FAILURE = 1 << 14
RETRY_ON_RESET_BEFORE_REQUEST = 1 << 15
RETRY_ON_GRPC_ANY = (
    RETRY_ON_GRPC_CANCELLED
    | RETRY_ON_GRPC_DEADLINE_EXCEEDED
    | RETRY_ON_GRPC_RESOURCE_EXHAUSTED
    | RETRY_ON_GRPC_UNAVAILABLE
    | RETRY_ON_GRPC_INTERNAL
)
"""The gRPC conditions, which read ``grpc-status`` (Envoy tests them together first)."""

RETRY_ON_NAMES = {
    "5xx": RETRY_ON_5XX,
    "gateway-error": RETRY_ON_GATEWAY_ERROR,
    "connect-failure": RETRY_ON_CONNECT_FAILURE,
    "envoy-ratelimited": RETRY_ON_ENVOY_RATE_LIMITED,
    "retriable-4xx": RETRY_ON_RETRIABLE_4XX,
    "refused-stream": RETRY_ON_REFUSED_STREAM,
    "retriable-status-codes": RETRY_ON_RETRIABLE_STATUS_CODES,
    "retriable-headers": RETRY_ON_RETRIABLE_HEADERS,
    "reset": RETRY_ON_RESET,
    "reset-before-request": RETRY_ON_RESET_BEFORE_REQUEST,
    "http3-post-connect-failure": RETRY_ON_HTTP3_POST_CONNECT_FAILURE,
}
GRPC_RETRY_ON_NAMES = {
    "cancelled": RETRY_ON_GRPC_CANCELLED,
    "deadline-exceeded": RETRY_ON_GRPC_DEADLINE_EXCEEDED,
    "resource-exhausted": RETRY_ON_GRPC_RESOURCE_EXHAUSTED,
    "unavailable": RETRY_ON_GRPC_UNAVAILABLE,
    "internal": RETRY_ON_GRPC_INTERNAL,
}

DEFAULT_BASE_INTERVAL_MS = 25
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
_PREVIOUS_HOSTS_TYPE = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"

RETRY_HEADERS = (
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-upstream-rq-per-try-timeout-ms",
)
"""Consumed by ``RetryState.create`` (Envoy removes them so they never reach the upstream)."""


def parse_retry_on(value: str, grpc: bool = False) -> tuple[int, bool]:
    """Envoy's ``parseRetryOn``/``parseRetryGrpcOn``: bits of the known comma-separated tokens
    (whitespace around a token ignored) and whether every token was known."""
    table = GRPC_RETRY_ON_NAMES if grpc else RETRY_ON_NAMES
    bits = 0
    valid = True
    for token in value.split(","):
        t = token.strip()
        if not t:
            continue
        b = table.get(t)
        if b is None:
            valid = False
        else:
            bits |= b
    return bits, valid


def atoi(value: str | None) -> int | None:
    """absl::SimpleAtoi for an unsigned value: digits only (surrounding spaces allowed)."""
    if value is None:
        return None
    v = value.strip()
    if v.startswith("+"):
        v = v[1:]
    return int(v) if v.isdigit() else None


def _ms(d: Any) -> int:
    return int(d.seconds * 1000 + d.nanos // 1_000_000)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``config.route.v3.RetryPolicy``, compiled once."""

    retry_on: int = 0
    """``retry_on`` (HTTP and gRPC tokens) as bits."""
    num_retries: int = 1
    """``num_retries``; 1 when unset."""
    per_try_timeout: float = 0.0
    """``per_try_timeout`` in seconds; 0 = none."""
    per_try_idle_timeout: float = 0.0
    """``per_try_idle_timeout`` in seconds; 0 = none."""
    base_interval_ms: int | None = None
    """``retry_back_off.base_interval``; None = runtime ``upstream.base_retry_backoff_ms`` (25)."""
    max_interval_ms: int | None = None
    """``retry_back_off.max_interval``; None = 10 × base."""
    retriable_status_codes: tuple[int, ...] = ()
    retriable_headers: tuple[Any, ...] = ()
    """``retriable_headers``: response header matchers."""
    retriable_request_headers: tuple[Any, ...] = ()
    """``retriable_request_headers``: when set, a request must match one to be retried."""
    previous_hosts: bool = False
    """``retry_host_predicate`` has ``envoy.retry_host_predicates.previous_hosts``."""
    host_selection_max_attempts: int = 0
    """``host_selection_retry_max_attempts``: extra host picks when a predicate rejects a host."""

    @classmethod
    def from_proto(cls, p: Any, path: str) -> RetryPolicy:
        bits, _ = parse_retry_on(p.retry_on)
        gbits, _ = parse_retry_on(p.retry_on, grpc=True)
        num = p.num_retries.value if p.HasField("num_retries") else 1
        base = maxi = None
        if p.HasField("retry_back_off"):
            rb = p.retry_back_off
            if not rb.HasField("base_interval"):
                raise ConfigError(f"{path}.retry_back_off.base_interval: value is required")
            base = _ms(rb.base_interval)
            if base < 1:
                raise ConfigError(f"{path}.retry_back_off.base_interval: value must be greater than or equal to 1ms")
            if rb.HasField("max_interval"):
                maxi = _ms(rb.max_interval)
                if maxi < 1:
                    raise ConfigError(f"{path}.retry_back_off.max_interval: value must be greater than 0s")
                if maxi < base:
                    raise ConfigError(f"{path}.retry_back_off: max_interval must be greater than or equal to the base_interval")
        # Other predicates are reported by config/support.py and ignored here.
        previous = False
        for i, hp in enumerate(p.retry_host_predicate):
            type_url = hp.typed_config.type_url if hp.HasField("typed_config") else ""
            if not type_url:
                # Envoy 1.40 looks retry predicates up by type URL only.
                raise ConfigError(
                    f"{path}.retry_host_predicate[{i}]: Didn't find a registered implementation for "
                    f"'{hp.name}' with type URL: ''"
                )
            previous = previous or type_url == _PREVIOUS_HOSTS_TYPE
        return cls(
            retry_on=bits | gbits,
            num_retries=num,
            per_try_timeout=_ms(p.per_try_timeout) / 1000 if p.HasField("per_try_timeout") else 0.0,
            per_try_idle_timeout=_ms(p.per_try_idle_timeout) / 1000 if p.HasField("per_try_idle_timeout") else 0.0,
            base_interval_ms=base,
            max_interval_ms=maxi,
            retriable_status_codes=tuple(p.retriable_status_codes),
            retriable_headers=tuple(HeaderMatcher(h, f"{path}.retriable_headers[{i}]") for i, h in enumerate(p.retriable_headers)),
            retriable_request_headers=tuple(
                HeaderMatcher(h, f"{path}.retriable_request_headers[{i}]") for i, h in enumerate(p.retriable_request_headers)
            ),
            previous_hosts=previous,
            host_selection_max_attempts=p.host_selection_retry_max_attempts,
        )


DEFAULT_POLICY = RetryPolicy()
"""A route with no ``retry_policy`` (what internal ``x-envoy-retry-on`` requests merge into)."""
