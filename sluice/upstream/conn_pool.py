"""Per-host HTTP/1.1 connection pool and the upstream connection protocol.

Theory of operation:
- A pool holds idle connections (LIFO: the most recently used is the warmest), the connections
  being opened, and FIFO waiters (pending requests). ``acquire`` hands an idle connection over at
  once, synchronously; otherwise the waiter queues and, when fewer connections are being opened
  than requests wait, a new connection is started (Envoy opens one connection per pending
  request on HTTP/1.1).
- A connection carries one request at a time. When its response is complete, and the request
  was fully sent, and both sides allow keep-alive, it returns to the pool: to the oldest waiter
  first, else to the idle list.
- A failed connect fails one waiter with ``remote connection failure`` (or ``connection
  timeout``); a connection that closes while a request is bound reports
  ``connection termination`` to it.
- Circuit breakers (``circuit_breaker.py``, the cluster's DEFAULT-priority resources): a request
  that would queue while ``max_pending_requests`` is full fails at once with reason ``overflow``;
  a connection is opened only while ``max_connections`` allows (else ``upstream_cx_overflow``
  and the request stays pending - unless the pool has no connection at all, as Envoy does); a
  request is attached to a connection only while ``max_requests`` allows (else ``overflow`` and
  ``upstream_rq_active_overflow``, as Envoy 1.40 counts it). ``rq_counted`` marks a
  connection whose request holds a ``max_requests`` slot; the pool frees it when the connection
  comes back (``release``) or closes.
- All decisions are synchronous; the only await is the connect itself, run as a named task.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from typing import TYPE_CHECKING, Protocol, cast

from sluice.codec.http1_client import ClientCodec
from sluice.options import lab_options
from sluice.tasks import spawn

log = logging.getLogger("sluice.upstream")

if TYPE_CHECKING:
    from sluice.stats.blocks import ClusterStats
    from sluice.upstream.circuit_breaker import ResourceManager
    from sluice.upstream.host import Host

OVERFLOW = "overflow"
"""The pool-failure reason for a circuit-breaker overflow (the router answers 503 UO)."""


class ResponseHandler(Protocol):
    """What an upstream connection reports to the request bound to it."""

    def on_pool_ready(self, conn: UpstreamConnection) -> None: ...
    def on_pool_failure(self, reason: str) -> None: ...
    def on_response_headers(self, status: int, headers: list[list[str]], end_stream: bool) -> None: ...
    def on_response_data(self, data: bytes, end_stream: bool) -> None: ...
    def on_response_informational(self, status: int) -> None: ...
    def on_upstream_reset(self, reason: str) -> None: ...
    def on_upstream_writable(self, writable: bool) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One HTTP/1.1 connection to an upstream host; the response parsing and its rules are
    the codec's (``sluice/codec/http1_client.py``), this class is the I/O and the accounting."""

    __slots__ = (
        "pool",
        "transport",
        "codec",
        "handler",
        "_keep_alive",
        "_request_done",
        "_response_done",
        "_closed",
        "created",
        "requests",
        "rq_counted",
    )

    def __init__(self, pool: HostPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.codec = ClientCodec(self)
        self.handler: ResponseHandler | None = None
        self._keep_alive = True
        self._request_done = False
        self._response_done = False
        self._closed = False
        self.created = time.monotonic()
        self.requests = 0
        self.rq_counted = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("busy" if self.handler else "idle")
        return f"<UpstreamConnection {self.pool.host.address} {state}>"

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses (no isinstance check).
        self.transport = cast(asyncio.Transport, transport)
        # Envoy accounts each read buffer's bytes in this gauge, which marks it used.
        self.pool.stats.upstream_cx_rx_bytes_buffered.used = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        self.pool.stats.upstream_cx_rx_bytes_total.inc(len(data))
        if self._closed:
            return
        try:
            error = self.codec.feed(data)
        except Exception:  # noqa: BLE001 - a bug must not take the process down
            log.exception("internal error on an upstream connection")
            self._fail("internal error")
            return
        if error is not None:
            # Also bytes with no request outstanding (a second response after a complete one,
            # a HEAD response's body): Envoy's codec refuses them and closes the connection.
            self.pool.stats.upstream_cx_protocol_error.inc()
            self._fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            # (After a local close the pool has already let the connection go: nothing to count.)
            self.pool.on_connection_closed(self, local=False, active=False)
            return
        self._closed = True
        codec = self.codec
        waiting = self.handler is not None and not self._response_done
        # A body delimited by the close is complete now: no request was active at the close.
        self.pool.on_connection_closed(self, local=False, active=waiting and not codec.until_close)
        error = codec.eof() if waiting else None
        if error is not None:
            # A close with part of a response read (a truncated head or body): Envoy counts a
            # protocol error, answers 502 before the response started, resets after.
            self.pool.stats.upstream_cx_protocol_error.inc()
            self._fail(error)
        elif self.handler is not None and not self._response_done:
            self._fail("connection termination")

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.on_upstream_writable(False)

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.on_upstream_writable(True)

    # -- codec callbacks ----------------------------------------------------------------
    def on_informational(self, status: int, headers: list[list[str]]) -> None:
        if self.handler is not None:
            self.handler.on_response_informational(status)

    def on_headers(self, status: int, headers: list[list[str]], end_stream: bool) -> None:
        codec = self.codec
        self._keep_alive = codec.keep_alive
        if codec.close_notify:
            self.pool.stats.upstream_cx_close_notify.inc()
        handler = self.handler
        if end_stream:
            self._response_done = True
        if handler is not None:
            handler.on_response_headers(status, headers, end_stream)
        if end_stream:
            self._finish()

    def on_body(self, data: bytes, end_stream: bool) -> None:
        handler = self.handler
        if end_stream:
            self._response_done = True
            if handler is not None:
                handler.on_response_data(data, True)
            self._finish()
        elif handler is not None:
            handler.on_response_data(data, False)

    # -- used by the router -------------------------------------------------------------
    def bind(self, handler: ResponseHandler, head_request: bool, upgrade: bool = False) -> None:
        self.handler = handler
        self.codec.expect(head_request, upgrade)
        self._request_done = False
        self._response_done = False
        self._keep_alive = True
        self.requests += 1

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._closed:
            self.pool.stats.upstream_cx_tx_bytes_total.inc(len(data))
            self.transport.write(data)

    def request_complete(self) -> None:
        self._request_done = True
        if self._response_done:
            self._finish()

    def unbind_and_close(self) -> None:
        """The request gave up on this connection (timeout, downstream reset)."""
        self.handler = None
        self._close(active=True)

    def close(self) -> None:
        self._close(active=self.handler is not None)

    def _close(self, active: bool) -> None:
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()
            self.pool.on_connection_closed(self, local=True, active=active)

    def pause_reading(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    @property
    def is_open(self) -> bool:
        return not self._closed and self.transport is not None and not self.transport.is_closing()

    def _finish(self) -> None:
        if not (self._response_done and self._request_done):
            return
        self.handler = None
        if self._keep_alive and self.is_open:
            # The finished request's back-pressure may have paused reading (its whole response
            # arrived in the read that crossed a high watermark): a pooled connection reads.
            self.resume_reading()
            self.pool.release(self)
        else:
            self.close()

    def _fail(self, reason: str) -> None:
        handler = self.handler
        active = handler is not None and not self._response_done
        self.handler = None
        self._close(active=active)
        if handler is not None:
            handler.on_upstream_reset(reason)


def source_address(dest_ip: str) -> tuple[str, int] | None:
    """Inside a lab, connections leave from the service's own address (as from a container's
    interface), so upstreams see the proxy's address, not 127.0.0.1. Outside a lab: the OS picks."""
    opts = lab_options()
    src = opts.localhost_address or opts.bind_address
    if not src or ":" in src or ":" in dest_ip or not dest_ip.startswith("127."):
        return None
    return (src, 0)


class HostPool:
    """Connections to one host of one cluster."""

    __slots__ = (
        "host",
        "stats",
        "connect_timeout",
        "idle",
        "busy",
        "waiters",
        "connecting",
        "_loop",
        "cluster_name",
        "resources",
    )

    def __init__(
        self,
        host: Host,
        stats: ClusterStats,
        connect_timeout: float,
        cluster_name: str,
        resources: ResourceManager | None = None,
    ) -> None:
        from sluice.upstream.circuit_breaker import ResourceManager

        self.host = host
        self.stats = stats
        self.connect_timeout = connect_timeout
        self.cluster_name = cluster_name
        self.resources = resources if resources is not None else ResourceManager("default", None, None)
        self.idle: list[UpstreamConnection] = []
        self.busy: set[UpstreamConnection] = set()
        self.waiters: collections.deque[ResponseHandler] = collections.deque()
        self.connecting = 0
        self._loop = asyncio.get_event_loop()

    def __repr__(self) -> str:
        return (
            f"<HostPool {self.host.address} active={len(self.busy)} idle={len(self.idle)} "
            f"pending={len(self.waiters)} connecting={self.connecting}>"
        )

    def acquire(self, handler: ResponseHandler) -> None:
        idle = self.idle
        while idle:
            conn = idle[-1]
            if conn.is_open:
                idle.pop()
                self._attach(conn, handler)
                return
            # Its transport is closing (the upstream's FIN was read) but connection_lost has
            # not run yet: account for the close now, while the pool still knows the connection
            # (connection_lost then finds it gone and counts nothing).
            conn._closed = True
            self.on_connection_closed(conn, local=False, active=False)
        res = self.resources
        if not res.max_pending_requests.can_create():
            self.stats.upstream_rq_pending_overflow.inc()
            handler.on_pool_failure(OVERFLOW)
            return
        self.waiters.append(handler)
        res.max_pending_requests.inc()
        self.stats.upstream_rq_pending_total.inc()
        self.stats.upstream_rq_pending_active.inc()
        if self.connecting < len(self.waiters):
            if res.max_connections.can_create():
                self._connect()
            else:
                self.stats.upstream_cx_overflow.inc()
                if not (self.busy or self.idle or self.connecting):
                    # Envoy: a host with no connection at all always gets one, so that its
                    # pending requests are not stuck behind other hosts' connections.
                    self._connect()

    def _attach(self, conn: UpstreamConnection, handler: ResponseHandler) -> None:
        """Hand a ready connection to a request, within ``max_requests``."""
        rq = self.resources.max_requests
        if rq.count >= rq.max:  # rq.can_create(), inlined (request path)
            self.idle.append(conn)
            self.stats.upstream_rq_active_overflow.inc()
            handler.on_pool_failure(OVERFLOW)
            return
        rq.inc()
        conn.rq_counted = True
        self.busy.add(conn)
        handler.on_pool_ready(conn)

    def _end_request(self, conn: UpstreamConnection) -> None:
        if conn.rq_counted:
            conn.rq_counted = False
            self.resources.max_requests.dec()

    def _pop_waiter(self) -> ResponseHandler:
        handler = self.waiters.popleft()
        self.resources.max_pending_requests.dec()
        self.stats.upstream_rq_pending_active.dec()
        return handler

    def cancel(self, handler: ResponseHandler) -> None:
        try:
            self.waiters.remove(handler)
        except ValueError:
            return
        self.resources.max_pending_requests.dec()
        self.stats.upstream_rq_pending_active.dec()
        self.stats.upstream_rq_cancelled.inc()

    def release(self, conn: UpstreamConnection) -> None:
        self.busy.discard(conn)
        if conn.rq_counted:  # _end_request, inlined (request path)
            conn.rq_counted = False
            self.resources.max_requests.dec()
        while self.waiters:
            handler = self._pop_waiter()
            if self.resources.max_requests.can_create():
                self._attach(conn, handler)
                return
            self.stats.upstream_rq_active_overflow.inc()
            handler.on_pool_failure(OVERFLOW)
        self.idle.append(conn)

    def on_connection_closed(self, conn: UpstreamConnection, local: bool, active: bool) -> None:
        """``local``: Sluice closed it (else the upstream did); ``active``: a request was in
        flight on it. Counted as Envoy's pool counts a connection's close event."""
        self._end_request(conn)
        if conn in self.busy:
            self.busy.discard(conn)
        elif conn in self.idle:
            self.idle.remove(conn)
        else:
            return
        self.resources.max_connections.dec()
        self.stats.upstream_cx_active.dec()
        self.host.stats.cx_active -= 1
        st = self.stats
        st.upstream_cx_destroy.inc()
        if local:
            st.upstream_cx_destroy_local.inc()
        else:
            st.upstream_cx_destroy_remote.inc()
        if active:
            st.upstream_cx_destroy_with_active_rq.inc()
            if local:
                st.upstream_cx_destroy_local_with_active_rq.inc()
            else:
                st.upstream_cx_destroy_remote_with_active_rq.inc()
        self.stats.upstream_cx_length_ms.record((time.monotonic() - conn.created) * 1000)
        st.upstream_rq_per_cx.record(conn.requests)  # how many requests the connection served

    def _connect(self) -> None:
        self.connecting += 1
        self.resources.max_connections.inc()
        self.stats.upstream_cx_total.inc()
        self.stats.upstream_cx_http1_total.inc()
        self.host.stats.cx_total += 1
        spawn(self._do_connect(), name=f"connect:{self.cluster_name}:{self.host.address}")

    async def _do_connect(self) -> None:
        started = time.monotonic()
        reason = ""
        conn: UpstreamConnection | None = None
        try:
            _transport, conn = await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: UpstreamConnection(self), self.host.ip, self.host.port, local_addr=source_address(self.host.ip)
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            reason = "connection timeout"
            self.stats.upstream_cx_connect_timeout.inc()
        except OSError:
            reason = "remote connection failure"
        finally:
            self.connecting -= 1
        if conn is None:
            self.resources.max_connections.dec()
            self.stats.upstream_cx_connect_fail.inc()
            self.host.stats.cx_connect_fail += 1
            # Envoy fails the pending requests that no other connecting client can serve.
            while self.waiters and len(self.waiters) > self.connecting:
                handler = self._pop_waiter()
                self.stats.upstream_rq_pending_failure_eject.inc()
                handler.on_pool_failure(reason)
            return
        self.stats.upstream_cx_connect_ms.record((time.monotonic() - started) * 1000)
        self.stats.upstream_cx_active.inc()
        self.host.stats.cx_active += 1
        conn.created = time.monotonic()
        self.busy.add(conn)
        self.release(conn)

    def close_all(self) -> None:
        for conn in list(self.idle) + list(self.busy):
            conn.close()
