"""What an attempt's outcome does to the stats and the answer, apart from the router's state:
Envoy's ``chargeResponseStat`` and ``chargeResponseTiming`` (per-code counters and the request
time of the cluster, its ``external.`` or ``internal.`` scope, and the alternate tree an internal
caller names with ``x-envoy-upstream-alt-stat-name``) and the local reply for an upstream reset
before the response started (``streamResetReasonToResponseFlag`` and the
``upstream_reset_before_response_started{...}`` details)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluice.codec.http1_client import PROTOCOL_ERROR
from sluice.http.grpc import grpc_status_of, grpc_to_http_status, is_grpc_request
from sluice.http.stream_info import ResponseFlag

if TYPE_CHECKING:
    from sluice.http.headers import HeaderMap, RequestHeaders
    from sluice.router.upstream_request import UpstreamRequest
    from sluice.stats.blocks import ClusterStats, PrefixCodeStats
    from sluice.upstream.cluster import Cluster

ALT_STAT_NAME = "x-envoy-upstream-alt-stat-name"

RESET_BEFORE_HEADERS = "upstream connect error or disconnect/reset before headers. reset reason: "
RESET_BEFORE_HEADERS_RETRIED = "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: "

# Envoy's streamResetReasonToResponseFlag for the reasons an upstream stream reports after the
# connection (the pool's own failures are UF or UO): an HTTP/2 RST_STREAM is a remote reset (UR).
RESET_FLAGS = {
    "remote reset": ResponseFlag.UPSTREAM_REMOTE_RESET,
    "remote refused stream reset": ResponseFlag.UPSTREAM_REMOTE_RESET,
    "remote error with CONNECT request": ResponseFlag.UPSTREAM_REMOTE_RESET,
    "local reset": ResponseFlag.LOCAL_RESET,
    PROTOCOL_ERROR: ResponseFlag.UPSTREAM_PROTOCOL_ERROR,
}


def reset_flag(reason: str) -> ResponseFlag:
    return RESET_FLAGS.get(reason, ResponseFlag.UPSTREAM_CONNECTION_TERMINATION)


def reset_reply(reason: str, overflow: bool, before_connect: bool, transport_failure: str = "") -> tuple[int, ResponseFlag, str]:
    """The local reply for a reset before the response started: (status, flag, details).
    Envoy's details add the transport failure reason after a ``|`` (spaces as ``_``)."""
    if reason == PROTOCOL_ERROR:
        # Envoy answers a response its codec refused with 502 (UPE).
        return 502, ResponseFlag.UPSTREAM_PROTOCOL_ERROR, "upstream_reset_before_response_started{protocol_error}"
    if overflow:
        return 503, ResponseFlag.UPSTREAM_OVERFLOW, "upstream_reset_before_response_started{overflow}"
    if before_connect:
        why = "remote_connection_failure"
        if transport_failure:
            why += "|" + transport_failure.replace(" ", "_")
        return 503, ResponseFlag.UPSTREAM_CONNECTION_FAILURE, "upstream_reset_before_response_started{" + why + "}"
    # An HTTP/1.1 close is ``connection termination`` (UC); an HTTP/2 RST_STREAM is a remote
    # reset (UR), its details Envoy's reason with underscores.
    return 503, reset_flag(reason), "upstream_reset_before_response_started{" + reason.replace(" ", "_") + "}"


def take_alt_stats(headers: RequestHeaders, cluster: Cluster) -> PrefixCodeStats | None:
    """Envoy's router consumes ``x-envoy-upstream-alt-stat-name`` (router.cc ``alt_stat_prefix_``:
    read once the cluster is known, removed from the request, so neither the upstream nor a
    mirror sees it) and charges the response-code and timing stats a second time under
    ``cluster.<name>.<value>.`` (checked against Envoy 1.40: ``cluster.c.alt.upstream_rq_200``,
    ``cluster.c.alt.internal.upstream_rq_time``). The router asks only for an internal request:
    the connection manager strips the header from the others, and no Sluice filter ahead of the
    router adds request headers (one that did would need the router to ask for every request, as
    Envoy reads it whatever made the request)."""
    values = headers.get_all(ALT_STAT_NAME)
    if not values:
        return None
    headers.remove(ALT_STAT_NAME)
    # Envoy's header map holds one value for this inline header: repeated lines are joined with
    # ',' and an empty line adds nothing (HeaderMapImpl::appendToHeader). The value becomes one
    # StatNameDynamicStorage token: trailing dots dropped, the rest verbatim (inner dots, spaces,
    # ':'; an empty value gives ``cluster.c..upstream_rq_200``).
    name = ",".join(v for v in values if v)
    return cluster.stats.code_scope(name.rstrip(".") + ".")


def charge(
    req: UpstreamRequest,
    code: int,
    internal: bool,
    alt: PrefixCodeStats | None = None,
    grpc: bool = False,
    grpc_status: int | None = None,
    end_stream: bool = False,
) -> None:
    """An upstream response's code, for the host (outlier/health bookkeeping) and the cluster.

    A gRPC request's non-5xx answer (Envoy's handleNon5xxResponseHeaders): a trailers-only one
    (``end_stream``) succeeds when its ``grpc-status`` maps to a non-5xx code (None, absent: an
    error); one with a body waits for its trailers (``req.grpc_deferred``, :func:`grpc_trailers`)."""
    if req.upgrade and code != 101 and 200 <= code < 400:
        return  # (a refused handshake below 400: Envoy charges no response code)
    if code >= 500:
        req.host.stats.rq_error += 1
    elif not grpc:
        req.host.stats.rq_success += 1
    elif not end_stream:
        req.grpc_deferred = True
    elif grpc_status is not None and grpc_to_http_status(grpc_status) < 500:
        req.host.stats.rq_success += 1
    else:
        req.host.stats.rq_error += 1
    charge_code(req.cluster, code, internal, alt)


def grpc_response(request_headers: RequestHeaders, headers: HeaderMap) -> tuple[bool, int | None]:
    """For the router's ``onUpstreamHeaders``: whether the request is gRPC, and the response
    headers' ``grpc-status`` then (None: absent). Envoy's outlier detection takes that status's
    HTTP code instead of the response's (``putHttpResponseCode(grpc_to_http_status)``)."""
    ctype = request_headers.get("content-type")
    if ctype is None or not ctype.startswith("application/grpc") or not is_grpc_request(request_headers):
        return _NOT_GRPC  # (the first checks spare a plain request is_grpc_request's calls)
    return True, grpc_status_of(headers)


_NOT_GRPC: tuple[bool, int | None] = (False, None)


def outlier_code(code: int, grpc_status: int | None) -> int:
    """The code outlier detection sees: a gRPC status in the response headers, as HTTP."""
    return code if grpc_status is None else grpc_to_http_status(grpc_status)


def abort_after_response(req: UpstreamRequest, hcm_stats: Any) -> None:
    """Envoy's chargeUpstreamAbort once the downstream response started (an upstream reset, a
    timeout): no code is charged; a deferred gRPC success becomes an error and counts
    ``http.<prefix>.rq_reset_after_downstream_response_started``."""
    if req.grpc_deferred:
        req.grpc_deferred = False
        req.host.stats.rq_error += 1
        hcm_stats.rq_reset_after_downstream_response_started.inc()


def grpc_trailers(req: UpstreamRequest, trailers: HeaderMap | None) -> None:
    """The end of a response whose gRPC success was deferred: its trailers' ``grpc-status``
    decides (Envoy's onUpstreamTrailers); no trailers (``None``: the body ended the stream) is
    an error (onUpstreamData: "gRPC request termination without trailers is an error")."""
    if not req.grpc_deferred:
        return
    req.grpc_deferred = False
    status = grpc_status_of(trailers) if trailers is not None else None
    if status is not None and grpc_to_http_status(status) < 500:
        req.host.stats.rq_success += 1
    else:
        req.host.stats.rq_error += 1


def charge_code(cluster: Cluster, code: int, internal: bool, alt: PrefixCodeStats | None = None) -> None:
    """Envoy's ``chargeResponseStat``: per-code, per-class and completed counters, for the
    cluster and its ``external.`` or ``internal.`` scope, and again under ``alt``."""
    if not 100 <= code < 600:
        # Envoy's CodeStats keep per-code counters for 100-599 only: others are "unknown".
        code = 0
    if internal:
        _charge_internal(cluster.stats, code, alt)
        return
    counters, ext_counters = cluster.stats.response_code_stats(code) if code else _unknown_code_stats(cluster)
    for c in counters:
        c.value += 1
    for c in ext_counters:
        c.value += 1


def _charge_internal(st: ClusterStats, code: int, alt: PrefixCodeStats | None) -> None:
    # (Not response_code_stats: its external twins would appear in /stats, and Envoy makes none
    # for an internal request.)
    own = st.code_scope("")
    for c in own.counters(code, ""):
        c.value += 1
    for c in own.counters(code, "internal."):
        c.value += 1
    # Only an internal request has an alternate tree: the connection manager strips the header
    # from the others (conn_manager_utility.INTERNAL_ONLY_HEADERS), so the external path needs
    # no check.
    if alt is not None:
        for c in alt.counters(code, ""):
            c.value += 1
        for c in alt.counters(code, "internal."):
            c.value += 1


def charge_internal_time(st: ClusterStats, elapsed_ms: float, alt: PrefixCodeStats | None) -> None:
    """``chargeResponseTiming`` of an internal request beyond the cluster's ``upstream_rq_time``:
    ``internal.upstream_rq_time``, and the alternate tree's two."""
    st.code_scope("").rq_time("internal.").record(elapsed_ms)
    if alt is not None:
        alt.rq_time("").record(elapsed_ms)
        alt.rq_time("internal.").record(elapsed_ms)


def _unknown_code_stats(cluster: Cluster) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    st = cluster.stats
    names = ("upstream_rq_unknown", "upstream_rq_completed")
    return tuple(st.dynamic_counter(n) for n in names), tuple(st.dynamic_counter(f"external.{n}") for n in names)
