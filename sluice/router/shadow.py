"""Request mirroring (``request_mirror_policies``): a fire-and-forget copy of the request.

The shadow goes to the mirror cluster with ``-shadow`` appended to the host (before any port),
``x-envoy-internal: true`` and the proxy's own address appended to ``x-forwarded-for`` — as
Envoy's async client sends it. Its body is streamed alongside the primary request. The client
never waits for it and never sees its response or its failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluice.clock import REAL
from sluice.router.upstream_request import UpstreamRequest

if TYPE_CHECKING:
    from sluice.http.headers import RequestHeaders, ResponseHeaders
    from sluice.tracing.zipkin_span import Span
    from sluice.upstream.cluster import Cluster


def shadow_authority(authority: str) -> str:
    """``host:port`` → ``host-shadow:port``; ``[::1]:80`` → ``[::1]-shadow:80``."""
    if authority.startswith("["):
        end = authority.find("]")
        if end >= 0:
            return authority[: end + 1] + "-shadow" + authority[end + 1 :]
    i = authority.rfind(":")
    if i > 0 and authority[i + 1 :].isdigit():
        return authority[:i] + "-shadow" + authority[i:]
    return authority + "-shadow"


class ShadowOwner:
    """Receives the shadow's response and drops it."""

    __slots__ = ("req",)

    def __init__(self) -> None:
        self.req: UpstreamRequest | None = None

    def on_upstream_headers(self, req: UpstreamRequest, headers: ResponseHeaders, end_stream: bool) -> None:
        st = req.cluster.stats
        code = headers.status
        st.dynamic_counter(f"upstream_rq_{code}").inc()
        st.dynamic_counter(f"upstream_rq_{code // 100}xx").inc()
        if end_stream:
            self._completed(req)

    def on_upstream_data(self, req: UpstreamRequest, data: bytes, end_stream: bool) -> None:
        if end_stream:
            self._completed(req)

    def _completed(self, req: UpstreamRequest) -> None:
        req.cluster.stats.dynamic_counter("upstream_rq_completed").inc()
        st = req.cluster.stats
        (st.upstream_rq_time or st.rq_time()).record((REAL.monotonic() - req.started) * 1000)

    def on_upstream_reset(self, req: UpstreamRequest, reason: str, before_connect: bool) -> None:
        pass

    def on_upstream_writable(self, writable: bool) -> None:
        pass


def start_shadow(
    cluster: Cluster,
    headers: RequestHeaders,
    end_stream: bool,
    local_ip: str,
    downstream_protocol: str = "HTTP/1.1",
    parent_span: Span | None = None,
) -> UpstreamRequest | None:
    """A mirror of the request to ``cluster``; with a traced stream, the mirror gets its own
    CLIENT span ``mirror`` under the stream's, its context in the mirror's headers (checked
    with Envoy 1.40, whose async client does the same)."""
    host = cluster.choose_host()
    if host is None:
        cluster.stats.upstream_cx_none_healthy.inc()
        return None
    h = headers.copy()
    if h.authority is not None:
        h.authority = shadow_authority(h.authority)
    h.set("x-envoy-internal", "true")
    h.append_value("x-forwarded-for", local_ip)
    child = None
    if parent_span is not None:
        child = parent_span.spawn_child("mirror")
        child.inject(h)
    owner = ShadowOwner()
    req = UpstreamRequest(owner, cluster, host, h, end_stream, True, False, downstream_protocol)
    req.span = child
    owner.req = req
    req.start()
    return req
