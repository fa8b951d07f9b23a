"""One attempt of a request to one upstream host (Envoy's ``UpstreamRequest``).

It waits for a pooled connection, writes the request head and streams the body (buffering
what arrives before the connection is ready), and reports the response to its owner — the
router for the primary request, a discarding owner for a shadow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sluice import logs
from sluice.http import debug_log, http1
from sluice.http.headers import RequestHeaders, ResponseHeaders

if TYPE_CHECKING:
    from sluice.upstream.cluster import Cluster
    from sluice.upstream.conn_pool import HostPool, UpstreamConnection
    from sluice.upstream.host import Host


BUFFER_HIGH_WATERMARK = 1 << 20
"""Request bytes held while waiting for a connection before the downstream is paused
(Envoy's default per-connection buffer limit is 1 MiB)."""


class UpstreamOwner(Protocol):
    def on_upstream_headers(self, req: UpstreamRequest, headers: ResponseHeaders, end_stream: bool) -> None: ...
    def on_upstream_data(self, req: UpstreamRequest, data: bytes, end_stream: bool) -> None: ...
    def on_upstream_reset(self, req: UpstreamRequest, reason: str, before_connect: bool) -> None: ...
    def on_upstream_writable(self, writable: bool) -> None: ...


class UpstreamRequest:
    __slots__ = (
        "owner",
        "cluster",
        "host",
        "pool",
        "headers",
        "conn",
        "_buffer",
        "_end_sent",
        "_request_end",
        "_chunked",
        "started",
        "response_started",
        "done",
        "internal",
        "_counted",
        "_buffered",
        "_paused_downstream",
        "ready_hook",
        "upgrade",
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
    ) -> None:
        self.owner = owner
        self.cluster = cluster
        self.host = host
        self.pool: HostPool = cluster.pool_for(host)
        self.headers = headers
        self.conn: UpstreamConnection | None = None
        self._buffer: list[bytes] = []
        self._request_end = end_stream
        self._end_sent = False
        self._chunked = False
        self.started = time.monotonic()
        self.response_started = False
        self.done = False
        self.internal = internal
        self._counted = False
        self._buffered = 0
        self._paused_downstream = False
        self.ready_hook: Callable[[UpstreamRequest], None] | None = None
        """Called once the request head is written to a connection (the router's per-try timers)."""
        self.upgrade = upgrade
        """An allowed upgrade: no body framing, a 101 that switches makes the connection a tunnel."""

    def __repr__(self) -> str:
        return f"<UpstreamRequest {self.cluster.name} {self.host.address} started={self.response_started}>"

    def start(self) -> None:
        self.pool.acquire(self)

    # -- pool callbacks -----------------------------------------------------------------
    def on_pool_ready(self, conn: UpstreamConnection) -> None:
        if self.done:
            self.pool.release(conn)
            return
        self.conn = conn
        if logs.router_debug:
            debug_log.pool_ready(self.owner, self.host.address)
        st = self.cluster.stats
        st.upstream_rq_total.inc()
        st.upstream_rq_active.inc()
        self.host.stats.rq_total += 1
        self.host.stats.rq_active += 1
        self._counted = True
        conn.bind(self, self.headers.method == "HEAD", self.upgrade)
        body = b"".join(self._buffer)
        self._buffer = []
        end = self._request_end
        head, self._chunked = http1.encode_request_head(self.headers, end and not body, self.upgrade)
        if body:
            conn.write(head + (http1.encode_chunk(body) if self._chunked else body))
            if end and self._chunked:
                conn.write(http1.LAST_CHUNK)
        else:
            conn.write(head)
        self._buffered = 0
        if self._paused_downstream:
            self._paused_downstream = False
            self.owner.on_upstream_writable(True)
        if end:
            self._end_sent = True
            conn.request_complete()
        if self.ready_hook is not None:
            self.ready_hook(self)

    def on_pool_failure(self, reason: str) -> None:
        if self.done:
            return
        self.done = True
        self.owner.on_upstream_reset(self, reason, True)

    # -- body from downstream -----------------------------------------------------------
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
        if self._chunked:
            out = http1.encode_chunk(data) if data else b""
            if end_stream:
                out += http1.LAST_CHUNK
            if out:
                conn.write(out)
        elif data:
            conn.write(data)
        if end_stream and not self._end_sent:
            self._end_sent = True
            conn.request_complete()

    # -- connection callbacks -----------------------------------------------------------
    def on_response_headers(self, status: int, entries: list[list[str]], end_stream: bool) -> None:
        if self.upgrade and status != 101 and 200 <= status < 400:
            # A refused handshake below 400: Envoy 1.40 passes the head on without its framing
            # and ends the response there (the body is dropped; the router charges no code).
            entries = [e for e in entries if e[0] not in ("content-length", "transfer-encoding")]
            end_stream = True
        self.response_started = True
        if end_stream:
            self._complete()
        self.owner.on_upstream_headers(self, ResponseHeaders(status, entries), end_stream)

    def on_response_data(self, data: bytes, end_stream: bool) -> None:
        if end_stream:
            self._complete()
        self.owner.on_upstream_data(self, data, end_stream)

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

    # -- cancellation -------------------------------------------------------------------
    def abandon(self) -> None:
        """The downstream went away mid-request: a reset sent upstream. Envoy counts none for
        an upgrade (its end is the tunnel's end)."""
        if not self.upgrade:
            self.cluster.stats.upstream_rq_tx_reset.inc()
        self.cancel()

    def cancel(self) -> None:
        """Abandon the attempt (timeout, downstream reset): the connection cannot be reused."""
        if self.done and self.conn is None:
            return
        was_done = self.done
        self._complete()
        if self.conn is not None:
            if not was_done or self.conn.handler is self:
                self.conn.unbind_and_close()
        else:
            self.pool.cancel(self)
