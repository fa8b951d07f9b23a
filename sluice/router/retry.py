"""Retries: :class:`RetryPolicy` (immutable, from config) and :class:`RetryState` (per request).

Theory of operation (Envoy's ``router/retry_policy_impl`` / ``retry_state_impl``, docs:
configuration/http/http_filters/router_filter#x-envoy-retry-on, arch_overview/http/http_routing#retry-semantics):

- A ``RetryPolicy`` is built once per route (route ``retry_policy`` wins over the virtual
  host's, whole; there is no field merge). It holds the ``retry_on`` bit set, ``num_retries``
  (default 1), the per-try timeouts, the back-off bounds and the matchers.
- A ``RetryState`` exists only for requests that may retry: the policy has ``retry_on`` bits,
  or an *internal* request carries ``x-envoy-retry-on`` / ``x-envoy-retry-grpc-on`` (external
  requests never reach here with those headers: the connection manager strips them). The
  request headers merge in: ``x-envoy-retry-on`` ORs bits in, ``x-envoy-max-retries`` replaces
  ``num_retries`` (only when some bit is set), ``x-envoy-retriable-status-codes`` and
  ``x-envoy-retriable-header-names`` (names only) add to the policy's lists;
  ``retriable_request_headers`` that do not match clear every bit.
- ``would_retry_*`` are PURE: they classify a response or a reset and touch nothing.
  ``should_retry`` is AUTHORITATIVE and has effects, in Envoy's order: a pending retry that
  now gets a non-retriable answer counts ``upstream_rq_retry_success``; the retry slot held
  since the last retry is released; the budget (``retries_remaining``) is checked
  (``upstream_rq_retry_limit_exceeded`` → URX), then decremented; then the cluster's
  ``max_retries`` circuit breaker (``upstream_rq_retry_overflow`` → UO); on success the slot
  is taken (and held until the next ``should_retry`` or :meth:`release`), ``upstream_rq_retry``
  and ``upstream_rq_retry_backoff_exponential`` count, and the back-off delay is drawn.
- Back-off is Envoy's ``JitteredExponentialBackOffStrategy``: retry N waits
  ``rng % min(base·2^(N-1), max)`` ms (base 25 ms, max 10×base by default). Envoy's docs
  describe the range as ``[0, (2^N-1)·base)``; the code, which we follow, doubles the bound
  each retry (``next_interval``), which is the same for N=1 and tighter after.
- gRPC conditions (``cancelled``, ``deadline-exceeded``, ``internal``, ``resource-exhausted``,
  ``unavailable``, from ``retry_on`` or an internal request's ``x-envoy-retry-grpc-on``) read
  the ``grpc-status`` of the response *headers*, so they fire on a trailers-only response (an
  upstream's gRPC error without a body); they are checked last, after the HTTP conditions, as
  in ``wouldRetryFromHeaders``. A ``grpc-status`` that arrives in trailers is never retried:
  Envoy's router decides at the response headers, which it has forwarded by then.

This module does no I/O and never imports asyncio: the router arms the timers.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from sluice.http.grpc import CANCELLED, DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED, UNAVAILABLE, grpc_status_of
from sluice.route.retry_policy import (
    DEFAULT_BASE_INTERVAL_MS,
    DEFAULT_POLICY,
    RETRY_HEADERS,
    RETRY_ON_5XX,
    RETRY_ON_CONNECT_FAILURE,
    RETRY_ON_ENVOY_RATE_LIMITED,
    RETRY_ON_GATEWAY_ERROR,
    RETRY_ON_GRPC_ANY,
    RETRY_ON_GRPC_CANCELLED,
    RETRY_ON_GRPC_DEADLINE_EXCEEDED,
    RETRY_ON_GRPC_INTERNAL,
    RETRY_ON_GRPC_RESOURCE_EXHAUSTED,
    RETRY_ON_GRPC_UNAVAILABLE,
    RETRY_ON_REFUSED_STREAM,
    RETRY_ON_RESET,
    RETRY_ON_RESET_BEFORE_REQUEST,
    RETRY_ON_RETRIABLE_4XX,
    RETRY_ON_RETRIABLE_HEADERS,
    RETRY_ON_RETRIABLE_STATUS_CODES,
    RetryPolicy,
    atoi,
    parse_retry_on,
)

if TYPE_CHECKING:
    import random

    from sluice.http.headers import RequestHeaders, ResponseHeaders
    from sluice.upstream.host import Host


class Decision(enum.Enum):
    NO_RETRY = 0
    RETRY_WITH_BACKOFF = 1


_GRPC_RETRY_BITS = {
    CANCELLED: RETRY_ON_GRPC_CANCELLED,
    DEADLINE_EXCEEDED: RETRY_ON_GRPC_DEADLINE_EXCEEDED,
    RESOURCE_EXHAUSTED: RETRY_ON_GRPC_RESOURCE_EXHAUSTED,
    UNAVAILABLE: RETRY_ON_GRPC_UNAVAILABLE,
    INTERNAL: RETRY_ON_GRPC_INTERNAL,
}
"""gRPC status → the ``retry_on`` bit that retries it (Envoy's five gRPC conditions)."""


def would_retry_grpc(retry_on: int, grpc_status: int | None) -> bool:
    """Whether ``retry_on`` retries a response whose ``grpc-status`` is ``grpc_status``
    (None: no status; an invalid one, -1, matches nothing)."""
    if grpc_status is None:
        return False
    return bool(retry_on & _GRPC_RETRY_BITS.get(grpc_status, 0))


class RetryStatus(enum.Enum):
    NO = 0
    YES = 1
    NO_OVERFLOW = 2
    NO_RETRY_LIMIT_EXCEEDED = 3


class _NameMatcher:
    """A name-only matcher, as ``x-envoy-retriable-header-names`` builds them."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name.lower()

    def matches(self, headers: Any) -> bool:
        return bool(headers.get_all(self.name))


class _ResponseView:
    """Lets request-side ``HeaderMatcher``s read a response (``:status`` included)."""

    __slots__ = ("h",)

    def __init__(self, h: ResponseHeaders) -> None:
        self.h = h

    def pseudo(self, name: str) -> str | None:
        return str(self.h.status) if name == ":status" else None

    def get_all(self, name: str) -> list[str]:
        return self.h.get_all(name)


class RetryCounter:
    """Fallback ``max_retries`` circuit breaker when a cluster has no ``resources``
    (Envoy's default threshold: 3 concurrent retries)."""

    __slots__ = ("count", "max")

    def __init__(self, limit: int = 3) -> None:
        self.count = 0
        self.max = limit

    def can_create(self) -> bool:
        return self.count < self.max

    def inc(self) -> None:
        self.count += 1

    def dec(self) -> None:
        self.count -= 1


def retry_resource(cluster: Any) -> Any:
    """The cluster's retry circuit breaker: ``cluster.resources`` (the upstream package's
    ResourceManager, or a (default, high) pair) when present, else a counter kept on the cluster."""
    rm = getattr(cluster, "resources", None)
    if isinstance(rm, (tuple, list)):
        rm = rm[0] if rm else None
    if rm is not None:
        for attr in ("retry_budget", "max_retries", "retries"):
            res = getattr(rm, attr, None)
            if res is not None:
                return res
    res = getattr(cluster, "_sluice_retry_counter", None)
    if res is None:
        res = RetryCounter()
        try:
            cluster._sluice_retry_counter = res
        except AttributeError:  # a slotted stand-in: no sharing, still bounded per request
            pass
    return res


class RetryState:
    """The retry bookkeeping of one request (Envoy's ``RetryStateImpl``)."""

    __slots__ = (
        "policy",
        "retry_on",
        "retries_remaining",
        "retriable_status_codes",
        "retriable_headers",
        "stats",
        "resource",
        "rng",
        "next_interval",
        "max_interval",
        "armed",
        "backoff_ms",
        "attempted",
    )

    def __init__(self, policy: RetryPolicy, stats: Any, resource: Any, rng: random.Random, base_ms: int) -> None:
        self.policy = policy
        self.retry_on = policy.retry_on
        self.retries_remaining = policy.num_retries
        self.retriable_status_codes = list(policy.retriable_status_codes)
        self.retriable_headers: list[Any] = list(policy.retriable_headers)
        self.stats = stats
        self.resource = resource
        self.rng = rng
        base = policy.base_interval_ms if policy.base_interval_ms is not None else base_ms
        base = max(base, 1)
        self.next_interval = base
        self.max_interval = policy.max_interval_ms if policy.max_interval_ms is not None else base * 10
        self.armed = False
        """A retry was granted and its slot is held (Envoy: a backoff callback is set)."""
        self.backoff_ms = 0
        self.attempted: list[Host] = []

    def __repr__(self) -> str:
        return f"<RetryState on={self.retry_on:#x} remaining={self.retries_remaining} armed={self.armed}>"

    @classmethod
    def create(
        cls,
        policy: RetryPolicy | None,
        headers: RequestHeaders,
        internal: bool,
        stats: Any,
        resource: Any,
        rng: random.Random,
        base_ms: int = DEFAULT_BASE_INTERVAL_MS,
    ) -> RetryState | None:
        """A state when the request may retry, else None. Retry headers are read only from an
        internal request, and removed from the request either way."""
        retry_on_h = retry_grpc_h = max_h = codes_h = names_h = None
        if internal:
            retry_on_h = headers.get("x-envoy-retry-on")
            retry_grpc_h = headers.get("x-envoy-retry-grpc-on")
            max_h = headers.get("x-envoy-max-retries")
            codes_h = headers.get("x-envoy-retriable-status-codes")
            names_h = headers.get("x-envoy-retriable-header-names")
            for name in RETRY_HEADERS:
                if name in headers:
                    headers.remove(name)
        if policy is None:
            policy = DEFAULT_POLICY
        if not policy.retry_on and retry_on_h is None and retry_grpc_h is None:
            return None
        st = cls(policy, stats, resource, rng, base_ms)
        if retry_on_h is not None:
            st.retry_on |= parse_retry_on(retry_on_h)[0]
        if retry_grpc_h is not None:
            st.retry_on |= parse_retry_on(retry_grpc_h, grpc=True)[0]
        if policy.retriable_request_headers and not any(m.matches(headers) for m in policy.retriable_request_headers):
            st.retry_on = 0
        if st.retry_on and max_h is not None:
            n = atoi(max_h)
            if n is not None:
                st.retries_remaining = n
        if codes_h is not None:
            for c in codes_h.split(","):
                n = atoi(c)
                if n is not None and c.strip():
                    st.retriable_status_codes.append(n)
        if names_h is not None:
            for name in names_h.split(","):
                if name.strip():
                    st.retriable_headers.append(_NameMatcher(name.strip()))
        return st

    # -- pure checks ----------------------------------------------------------------------
    def would_retry_headers(self, status: int, headers: ResponseHeaders, grpc_status: int | None = None) -> Decision:
        """``wouldRetryFromHeaders``. The gRPC conditions read ``grpc-status`` from ``headers``
        unless the caller passes ``grpc_status`` (already parsed)."""
        on = self.retry_on
        if "x-envoy-ratelimited" in headers:
            # From an upstream Envoy: only envoy-ratelimited retries it.
            return Decision.RETRY_WITH_BACKOFF if on & RETRY_ON_ENVOY_RATE_LIMITED else Decision.NO_RETRY
        if on & RETRY_ON_5XX and 500 <= status < 600:
            return Decision.RETRY_WITH_BACKOFF
        if on & RETRY_ON_GATEWAY_ERROR and 502 <= status <= 504:
            return Decision.RETRY_WITH_BACKOFF
        if on & RETRY_ON_RETRIABLE_4XX and status == 409:
            return Decision.RETRY_WITH_BACKOFF
        if on & RETRY_ON_RETRIABLE_STATUS_CODES and status in self.retriable_status_codes:
            return Decision.RETRY_WITH_BACKOFF
        if on & RETRY_ON_RETRIABLE_HEADERS and self.retriable_headers:
            view = _ResponseView(headers)
            for m in self.retriable_headers:
                if m.matches(view):
                    return Decision.RETRY_WITH_BACKOFF
        if on & RETRY_ON_GRPC_ANY:
            if grpc_status is None:
                grpc_status = grpc_status_of(headers)
            if would_retry_grpc(on, grpc_status):
                return Decision.RETRY_WITH_BACKOFF
        return Decision.NO_RETRY

    def would_retry_grpc(self, grpc_status: int | None) -> Decision:
        """The gRPC conditions alone, for a ``grpc-status`` the caller has read."""
        return Decision.RETRY_WITH_BACKOFF if would_retry_grpc(self.retry_on, grpc_status) else Decision.NO_RETRY

    def would_retry_reset(self, reason: str, upstream_request_started: bool) -> Decision:
        """``reason``: ``connect_failure`` (refused, connect timeout), ``local_reset`` (a per-try
        timeout), ``connection_termination``, ``refused_stream`` or ``overflow``."""
        on = self.retry_on
        if reason == "overflow":
            return Decision.NO_RETRY
        if reason == "connect_failure" and on & RETRY_ON_CONNECT_FAILURE:
            return Decision.RETRY_WITH_BACKOFF
        if on & RETRY_ON_RESET and (not on & RETRY_ON_RESET_BEFORE_REQUEST or not upstream_request_started):
            return Decision.RETRY_WITH_BACKOFF
        if on & (RETRY_ON_5XX | RETRY_ON_GATEWAY_ERROR):
            # Envoy counts an upstream reset as a "5xx" (it will become a 503).
            return Decision.RETRY_WITH_BACKOFF
        if on & RETRY_ON_REFUSED_STREAM and reason == "refused_stream":
            return Decision.RETRY_WITH_BACKOFF
        if on & RETRY_ON_RESET_BEFORE_REQUEST and not upstream_request_started:
            return Decision.RETRY_WITH_BACKOFF
        return Decision.NO_RETRY

    def would_select_another_host(self, host: Host) -> bool:
        """The ``previous_hosts`` predicate: reject a host already attempted."""
        return self.policy.previous_hosts and host in self.attempted

    # -- authoritative --------------------------------------------------------------------
    def should_retry(self, decision: Decision) -> RetryStatus:
        """Take (or refuse) a retry. On YES the slot is held and ``backoff_ms`` is set."""
        st = self.stats
        if self.armed and decision is Decision.NO_RETRY:
            st.upstream_rq_retry_success.inc()
        self.release()
        if decision is Decision.NO_RETRY:
            return RetryStatus.NO
        if self.retries_remaining == 0:
            st.upstream_rq_retry_limit_exceeded.inc()
            return RetryStatus.NO_RETRY_LIMIT_EXCEEDED
        self.retries_remaining -= 1
        if not self.resource.can_create():
            st.upstream_rq_retry_overflow.inc()
            return RetryStatus.NO_OVERFLOW
        self.resource.inc()
        self.armed = True
        st.upstream_rq_retry.inc()
        st.upstream_rq_retry_backoff_exponential.inc()
        self.backoff_ms = self.next_backoff_ms()
        return RetryStatus.YES

    def next_backoff_ms(self) -> int:
        backoff = self.next_interval
        if self.next_interval < self.max_interval // 2:
            self.next_interval *= 2
        else:
            self.next_interval = self.max_interval
        return min(self.rng.getrandbits(64) % backoff, self.max_interval)

    def on_host_attempted(self, host: Host) -> None:
        self.attempted.append(host)

    def release(self) -> None:
        """Give back the retry slot held since the last granted retry (Envoy's ``resetRetry``)."""
        if self.armed:
            self.armed = False
            self.resource.dec()
