"""One attempt of a request to one upstream host (Envoy's ``UpstreamRequest``).

It waits for an upstream stream from the host's pool (HTTP/1.1: the connection itself; HTTP/2:
a stream on a shared connection), encodes the request headers, body and trailers on it (holding
what arrives before the stream is ready), and reports the response to its owner — the router
for the primary request, a discarding owner for a shadow. Each attempt keeps its own timing
(:class:`~sluice.http.stream_info.UpstreamTiming`, which it is), which the router hands to the
stream's StreamInfo when the attempt starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sluice import logs
from sluice.clock import REAL
from sluice.http import debug_log
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.http.stream_info import UpstreamTiming
from sluice.tracing.http_span import finalize_upstream_span

if TYPE_CHECKING:
    from sluice.tracing.zipkin_span import Span
    from sluice.upstream.cluster import Cluster
    from sluice.upstream.conn_pool import HostPool, UpstreamStream
    from sluice.upstream.host import Host


BUFFER_HIGH_WATERMARK = 1 << 20
"""Request bytes held while waiting for a connection before the downstream is paused
(Envoy's default per-connection buffer limit is 1 MiB)."""


class UpstreamOwner(Protocol):
    """Optional: ``on_upstream_trailers(req, trailers)`` (without it, trailers end the body)
    and ``on_upstream_informational(req, status)``."""

    def on_upstream_headers(self, req: UpstreamRequest, headers: ResponseHeaders, end_stream: bool) -> None: ...
    def on_upstream_data(self, req: UpstreamRequest, data: bytes, end_stream: bool) -> None: ...
    def on_upstream_reset(self, req: UpstreamRequest, reason: str, before_connect: bool) -> None: ...
    def on_upstream_writable(self, writable: bool) -> None: ...


class UpstreamRequest(UpstreamTiming):
    __slots__ = (
        "owner",
        "cluster",
        "host",
        "pool",
        "headers",
        "conn",
        "_buffer",
        "_trailers",
        "_end_sent",
        "_request_end",
        "started",
        "response_started",
        "done",
        "internal",
        "_counted",
        "_buffered",
        "_paused_downstream",
        "ready_hook",
        "upgrade",
        "grpc_deferred",
        "span",
        "status",
        "span_canceled",
    )

    def __init__(
        self,
        owner: UpstreamOwner,
        cluster: Cluster,
        host: Host,
        headers: RequestHeaders,
        end_stream: bool,
        internal: bool = False,
        upgrade: bool = False,
        downstream_protocol: str = "HTTP/1.1",
    ) -> None:
        # (UpstreamTiming.__init__ inlined: one per request.)
        self.first_tx = self.last_tx = self.first_rx = self.first_rx_body = self.last_rx = None
        self.pool_ready_latency = None
        self.local_address = None
        self.protocol = None
        self.connection_id = 0
        self.transport_failure = ""
        self.owner = owner
        self.cluster = cluster
        self.host = host
        self.pool: HostPool = cluster.pool_for(host, downstream_protocol)
        self.headers = headers
        """This attempt's request headers (a retry's are its own copy)."""
        self.conn: UpstreamStream | None = None
        """The upstream stream, once the pool gave one (named ``conn``: on HTTP/1.1 it is one)."""
        self._buffer: list[bytes] = []
        self._trailers: HeaderMap | None = None
        self._request_end = end_stream
        self._end_sent = False
        self.started = REAL.monotonic()
        self.response_started = False
        self.done = False
        self.internal = internal
        self._counted = False
        self._buffered = 0
        self._paused_downstream = False
        self.ready_hook: Callable[[UpstreamRequest], None] | None = None
        """Called once the request head is written to a connection (the router's per-try timers)."""
        self.upgrade = upgrade
        self.span: Span | None = None
        """This attempt's own span (``spawn_upstream_span``), finished with the attempt."""
        self.status = 0
        self.span_canceled = False
        """The router gave the attempt up (a reset, or a retry after its answer): its span says so."""
        self.grpc_deferred = False
        """A gRPC response's success is known only from its trailers (Envoy's
        grpcRqSuccessDeferred): set by :func:`upstream_outcome.charge`."""
        """An allowed upgrade: no body framing, a 101 that switches makes the connection a tunnel."""

    def __repr__(self) -> str:
        return f"<UpstreamRequest {self.cluster.name} {self.host.address} started={self.response_started}>"

    def start(self) -> None:
        self.pool.acquire(self)

    # -- pool callbacks -----------------------------------------------------------------
    def on_pool_ready(self, stream: UpstreamStream) -> None:
        if self.done:
            stream.release_unused()
            return
        self.conn = stream
        self.pool_ready_latency = REAL.monotonic() - self.started
        self.local_address = stream.local_address
        self.protocol = stream.protocol
        self.connection_id = stream.cid
        if logs.router_debug:
            debug_log.pool_ready(self.owner, self.host.address)
        st = self.cluster.stats
        st.upstream_rq_total.inc()
        st.upstream_rq_active.inc()
        self.host.stats.rq_total += 1
        self.host.stats.rq_active += 1
        self._counted = True
        body = b"".join(self._buffer) if self._buffer else b""
        self._buffer = []
        trailers = self._trailers
        end = self._request_end and trailers is None
        self.first_tx = REAL.monotonic()
        stream.encode_headers(self.headers, end, self.upgrade, body)
        if trailers is not None and not self.done:
            stream.encode_trailers(trailers)
        self._buffered = 0
        if self._paused_downstream:
            self._paused_downstream = False
            self.owner.on_upstream_writable(True)
        if self._request_end:
            self._end_sent = True
            self.last_tx = self.first_tx
        if self.ready_hook is not None:
            self.ready_hook(self)

    def on_pool_failure(self, reason: str, transport_failure: str = "") -> None:
        if self.done:
            return
        self.done = True
        if self.span is not None:
            self._finish_span()
        self.transport_failure = transport_failure
        self.owner.on_upstream_reset(self, reason, True)

    # -- request body and trailers from downstream --------------------------------------
    def send_data(self, data: bytes, end_stream: bool) -> None:
        if self.done:
            return
        conn = self.conn
        if conn is None:
            if data:
                self._buffer.append(data)
                self._buffered += len(data)
                if self._buffered > BUFFER_HIGH_WATERMARK and not self._paused_downstream:
                    # No connection yet: stop reading the request body until there is one.
                    self._paused_downstream = True
                    self.owner.on_upstream_writable(False)
            self._request_end = self._request_end or end_stream
            return
        if self._end_sent:
            return
        conn.encode_data(data, end_stream)
        if end_stream:
            self._end_sent = True
            self.last_tx = REAL.monotonic()

    def send_trailers(self, trailers: HeaderMap) -> None:
        """Request trailers: they end the request (HTTP/1.1 drops them, as Envoy's codec does
        without ``enable_trailers``)."""
        if self.done:
            return
        conn = self.conn
        if conn is None:
            self._trailers = trailers
            self._request_end = True
            return
        if self._end_sent:
            return
        self._end_sent = True
        conn.encode_trailers(trailers)
        self.last_tx = REAL.monotonic()

    # -- stream callbacks (ResponseHandler) ---------------------------------------------
    def on_response_headers(self, status: int, entries: list[list[str]], end_stream: bool) -> None:
        if self.upgrade and status != 101 and 200 <= status < 400:
            # A refused handshake below 400: Envoy 1.40 passes the head on without its framing
            # and ends the response there (the body is dropped; the router charges no code).
            entries = [e for e in entries if e[0] not in ("content-length", "transfer-encoding")]
            end_stream = True
        self.response_started = True
        self.status = status
        self.first_rx = now = REAL.monotonic()
        if end_stream:
            self.last_rx = now
            # (the span waits for the router's decision — a retry on this answer marks it
            # canceled — and the router ends it before it answers downstream: release_span)
            span, self.span = self.span, None
            self._complete()
            self.span = span
            self.owner.on_upstream_headers(self, ResponseHeaders(status, entries), end_stream)
            self.release_span()
            return
        self.owner.on_upstream_headers(self, ResponseHeaders(status, entries), end_stream)

    def on_response_data(self, data: bytes, end_stream: bool) -> None:
        if data and self.first_rx_body is None:
            self.first_rx_body = REAL.monotonic()
        if end_stream:
            self.last_rx = REAL.monotonic()
            self._complete()
        self.owner.on_upstream_data(self, data, end_stream)

    def on_response_trailers(self, trailers: HeaderMap) -> None:
        self.last_rx = REAL.monotonic()
        self._complete()
        forward = getattr(self.owner, "on_upstream_trailers", None)
        if forward is not None:
            forward(self, trailers)
        else:
            self.owner.on_upstream_data(self, b"", True)

    def on_response_informational(self, status: int) -> None:
        # A 1xx interim response: charged like a response (Envoy's onUpstream1xxHeaders).
        charge = getattr(self.owner, "on_upstream_informational", None)
        if charge is not None:
            charge(self, status)

    def on_upstream_reset(self, reason: str) -> None:
        if self.done:
            return
        self._complete()
        self.owner.on_upstream_reset(self, reason, False)

    def on_upstream_writable(self, writable: bool) -> None:
        self.owner.on_upstream_writable(writable)

    def _complete(self) -> None:
        if self.done:
            return
        self.done = True
        if self._counted:
            self.cluster.stats.upstream_rq_active.dec()
            self.host.stats.rq_active -= 1
        if self.span is not None:
            self._finish_span()

    def release_span(self) -> None:
        """A span held past the attempt's end (an answer that ended with its head) ends now."""
        if self.span is not None and self.done:
            self._finish_span()

    def _finish_span(self) -> None:
        span = self.span
        assert span is not None
        self.span = None
        if self.span_canceled:
            span.tags["canceled"] = "true"
        finalize_upstream_span(span, self.protocol, self.host.address, self.cluster.name, self.status)

    # -- cancellation -------------------------------------------------------------------
    def abandon(self) -> None:
        """The downstream went away mid-request: a reset sent upstream. Envoy counts none for
        an upgrade (its end is the tunnel's end); on HTTP/2 the stream's reset counts it."""
        if not self.upgrade and (self.conn is None or self.conn.protocol != "HTTP/2"):
            self.cluster.stats.upstream_rq_tx_reset.inc()
        self.cancel()

    def cancel(self) -> None:
        """Abandon the attempt (timeout, downstream reset): an HTTP/1.1 connection cannot be
        reused; an HTTP/2 stream is reset."""
        if self.done and self.conn is None:
            return
        self.span_canceled = True
        was_done = self.done
        self._complete()
        if self.conn is not None:
            if not was_done or self.conn.handler is self:
                self.conn.reset()
        else:
            self.pool.cancel(self)
