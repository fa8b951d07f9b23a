"""The router's timeouts for one request, pure: Envoy's ``FilterUtility::finalTimeout`` and
``FilterUtility::setTimeoutHeaders`` (source/common/router/router.cc, read for Envoy 1.40).

``final_timeout`` is only asked for a request that has more than the route's ``timeout``: a
retry policy (per-try timeouts), an internal request (its ``x-envoy-upstream-rq-*`` headers),
or a route with a gRPC timeout field (``RouteEntry.grpc_timeouts``). The plain request takes
``route.timeout`` and ``route.expected_timeout_header`` without a call (the router's hot path).

- The global timeout: none (0) on a route with ``max_stream_duration`` (Envoy's
  ``usingNewTimeouts``: the connection manager's stream duration timer governs, and
  ``route.timeout`` is ignored); for a gRPC request on a route with ``max_grpc_timeout`` the
  ``grpc-timeout`` header's value capped (:func:`sluice.http.grpc.grpc_route_timeout`); else
  ``route.timeout``.
- An internal request's ``x-envoy-upstream-rq-timeout-ms`` replaces the global timeout and
  ``x-envoy-upstream-rq-per-try-timeout-ms`` the per-try one (both removed; a value that is no
  number is ignored, and removed all the same). An external request never has them: the
  connection manager removed them.
- A per-try timeout at or above a (non-zero) global timeout is dropped.
- ``x-envoy-expected-rq-timeout-ms``: the per-try timeout, else the global one, capped at what
  is left of the global one (1 ms once none is); none when 0. For a gRPC request on a route
  with ``max_grpc_timeout`` (and no ``max_stream_duration``) the same value is written as its
  ``grpc-timeout`` (``Grpc::Common::toGrpcTimeout``), on each attempt.

Deliberate difference from Envoy: no hedging (``hedge_on_per_try_timeout``), nor the router's
``respect_expected_rq_timeout`` / ``suppress_envoy_headers`` (config/support.py refuses them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from sluice.http import grpc
from sluice.route.retry_policy import atoi

if TYPE_CHECKING:
    from sluice.http.headers import HeaderMap
    from sluice.route.table import RouteEntry


class Timeouts(NamedTuple):
    """One request's router timeouts, seconds (0 = none)."""

    global_timeout: float
    per_try: float
    per_try_idle: float
    grpc_header: bool
    """The expected timeout is written as the request's ``grpc-timeout`` upstream."""


def rewrites_grpc_timeout(route: RouteEntry, headers: HeaderMap) -> bool:
    """``grpc_request && !usingNewTimeouts() && maxGrpcTimeout()`` of ``setTimeoutHeaders``."""
    return route.max_grpc_timeout is not None and not route.using_new_timeouts and grpc.is_grpc_request(headers)


def final_timeout(route: RouteEntry, headers: HeaderMap, internal: bool) -> Timeouts:
    """Envoy's ``finalTimeout`` up to (not including) the headers it writes: see the module
    docstring. Removes the request's ``x-envoy-upstream-rq-*timeout-ms`` headers it reads."""
    rp = route.retry_policy
    grpc_header = False
    if route.using_new_timeouts:
        timeout = 0.0
    elif route.max_grpc_timeout is not None and grpc.is_grpc_request(headers):
        grpc_header = True
        timeout = grpc.grpc_route_timeout(route.timeout, headers, route.max_grpc_timeout, route.grpc_timeout_offset)
    else:
        timeout = route.timeout
    per_try = rp.per_try_timeout if rp is not None else 0.0
    if internal:
        v = headers.get("x-envoy-upstream-rq-timeout-ms")
        if v is not None:
            n = atoi(v)
            if n is not None:
                timeout = n / 1000
            headers.remove("x-envoy-upstream-rq-timeout-ms")
        v = headers.get("x-envoy-upstream-rq-per-try-timeout-ms")
        if v is not None:
            n = atoi(v)
            if n is not None:
                per_try = n / 1000
            headers.remove("x-envoy-upstream-rq-per-try-timeout-ms")
    if per_try >= timeout and timeout != 0:
        per_try = 0.0
    return Timeouts(timeout, per_try, rp.per_try_idle_timeout if rp is not None else 0.0, grpc_header)


def expected_timeout_ms(global_timeout: float, per_try: float, elapsed_ms: int) -> int:
    """``setTimeoutHeaders``' expected timeout in whole ms (0: none): the per-try timeout, else
    the global one, capped by what is left of the global one (at least 1 ms)."""
    global_ms = round(global_timeout * 1000)
    expected = round(per_try * 1000) or global_ms
    if expected > 0 and global_ms > 0:
        expected = 1 if elapsed_ms >= global_ms else min(expected, global_ms - elapsed_ms)
    return expected


def set_timeout_headers(headers: HeaderMap, global_timeout: float, per_try: float, elapsed_ms: int, grpc_header: bool) -> None:
    """``setTimeoutHeaders``: ``x-envoy-expected-rq-timeout-ms`` and (``grpc_header``) the
    ``grpc-timeout`` of an attempt ``elapsed_ms`` after the request ended (0: the first)."""
    expected = expected_timeout_ms(global_timeout, per_try, elapsed_ms)
    if expected > 0:
        headers.set("x-envoy-expected-rq-timeout-ms", str(expected))
        if grpc_header:
            headers.set("grpc-timeout", grpc.encode_grpc_timeout_ms(expected))
