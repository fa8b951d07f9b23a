"""What an attempt's outcome does to the stats and the answer, apart from the router's state:
Envoy's ``chargeResponseStat`` (per-code counters of the cluster and its ``external.`` scope)
and the local reply for an upstream reset before the response started
(``streamResetReasonToResponseFlag`` and the ``upstream_reset_before_response_started{...}``
details)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluice.codec.http1_client import PROTOCOL_ERROR
from sluice.http.stream_info import ResponseFlag

if TYPE_CHECKING:
    from sluice.router.upstream_request import UpstreamRequest
    from sluice.upstream.cluster import Cluster

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


def reset_reply(reason: str, overflow: bool, before_connect: bool) -> tuple[int, ResponseFlag, str]:
    """The local reply for a reset before the response started: (status, flag, details)."""
    if reason == PROTOCOL_ERROR:
        # Envoy answers a response its codec refused with 502 (UPE).
        return 502, ResponseFlag.UPSTREAM_PROTOCOL_ERROR, "upstream_reset_before_response_started{protocol_error}"
    if overflow:
        return 503, ResponseFlag.UPSTREAM_OVERFLOW, "upstream_reset_before_response_started{overflow}"
    if before_connect:
        return 503, ResponseFlag.UPSTREAM_CONNECTION_FAILURE, "upstream_reset_before_response_started{remote_connection_failure}"
    # An HTTP/1.1 close is ``connection termination`` (UC); an HTTP/2 RST_STREAM is a remote
    # reset (UR), its details Envoy's reason with underscores.
    return 503, reset_flag(reason), "upstream_reset_before_response_started{" + reason.replace(" ", "_") + "}"


def charge(req: UpstreamRequest, code: int, internal: bool) -> None:
    """An upstream response's code, for the host (outlier/health bookkeeping) and the cluster."""
    if req.upgrade and code != 101 and 200 <= code < 400:
        return  # (a refused handshake below 400: Envoy charges no response code)
    if code >= 500:
        req.host.stats.rq_error += 1
    else:
        req.host.stats.rq_success += 1
    charge_code(req.cluster, code, internal)


def charge_code(cluster: Cluster, code: int, internal: bool) -> None:
    """Envoy's ``chargeResponseStat``: per-code, per-class and completed counters, for the
    cluster and (external requests) its ``external.`` scope."""
    if not 100 <= code < 600:
        # Envoy's CodeStats keep per-code counters for 100-599 only: others are "unknown".
        code = 0
    counters, ext_counters = cluster.stats.response_code_stats(code) if code else _unknown_code_stats(cluster)
    for c in counters:
        c.value += 1
    if not internal:
        for c in ext_counters:
            c.value += 1


def _unknown_code_stats(cluster: Cluster) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    st = cluster.stats
    names = ("upstream_rq_unknown", "upstream_rq_completed")
    return tuple(st.dynamic_counter(n) for n in names), tuple(st.dynamic_counter(f"external.{n}") for n in names)
