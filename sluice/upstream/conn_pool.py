"""Per-host connection pool (HTTP/1.1 and HTTP/2) behind one narrow client interface.

Theory of operation (httpcore's ``connection_pool.py`` shape, Envoy's ``conn_pool_base.cc`` rules):
- A pool holds *ready* connections (``idle``: they can take a request now; LIFO, the most
  recently used is the warmest), *busy* ones (no capacity left: an HTTP/1.1 connection with its
  one request, an HTTP/2 connection at its stream limit or draining), the number being opened,
  and FIFO waiters (pending requests).
- A client connection (``http1_client_conn.UpstreamConnection``, ``http2_client_conn.Http2Connection``)
  reports its capacity: ``available_streams``, ``active_streams``, ``remaining_requests``
  (``max_requests_per_connection``), ``draining``, ``idle_since``, ``is_open``; ``new_stream``
  gives the request its upstream stream (the router calls ``encode_headers/encode_data/
  encode_trailers/reset`` on it, whatever the protocol).
- :meth:`HostPool._assign` is the only decision point: it evicts dead or expired ready
  connections, hands ready capacity to the new request or the oldest waiters, queues or
  refuses what cannot be served, and says how many connections to open. It is synchronous and
  returns what to do; :meth:`HostPool._run` does it afterwards (closes, connects, then the
  callbacks, which may re-enter the pool).
- A connection is opened while more requests wait than the connections being opened will carry
  (one per connection on HTTP/1.1, as Envoy opens one per pending request; ``min(max_concurrent_streams,
  max_requests_per_connection)`` on HTTP/2).
- A failed connect fails the waiters no other connecting client can serve with ``remote
  connection failure`` (or ``connection timeout``); a connection that closes while a request is
  bound reports ``connection termination`` to it.
- Circuit breakers (``circuit_breaker.py``, the cluster's DEFAULT-priority resources), counted as
  Envoy counts them for both protocols: ``max_pending_requests`` per waiter (a request that would
  queue while it is full fails at once, ``overflow``), ``max_connections`` per connection (at the
  limit: ``upstream_cx_overflow`` and the request stays pending - unless the pool has no
  connection at all, as Envoy does), ``max_requests`` per stream, taken at assignment (else
  ``overflow`` and ``upstream_rq_active_overflow``). A stream's ``rq_counted`` marks its slot;
  the pool frees it when the stream ends (``release``) or its connection closes.
- ``max_requests_per_connection``: the assignment that uses a connection's last request counts
  ``upstream_cx_max_requests`` and drains it; a draining connection closes once its requests are
  done. A removed host's pool drains (:meth:`HostPool.drain`): idle connections close, busy ones
  finish their requests first (Envoy's drainConnections on host removal).
- ``common_http_protocol_options.idle_timeout``: a connection without requests for that long
  closes (``upstream_cx_idle_timeout``); one pool timer, re-armed for the oldest idle connection.
  Divergence from Envoy: when the field is not set, Envoy's 1 h default is applied when an idle
  connection is picked up again, not by a timer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sluice.clock import REAL, TimerHandle, TimeSource
from sluice.codec.http2 import DEFAULT_SETTINGS, Http2Settings
from sluice.options import lab_options
from sluice.tasks import spawn
from sluice.upstream.backend import DEFAULT_BACKEND, NetworkBackend
from sluice.upstream.http1_client_conn import UpstreamConnection
from sluice.upstream.http2_client_conn import Http2Connection

if TYPE_CHECKING:
    from sluice.codec.http2_client import Http2ClientStats
    from sluice.http.headers import HeaderMap, RequestHeaders
    from sluice.stats.blocks import ClusterStats
    from sluice.upstream.circuit_breaker import ResourceManager
    from sluice.upstream.host import Host

log = logging.getLogger("sluice.upstream")

__all__ = ["OVERFLOW", "HostPool", "PoolOptions", "ResponseHandler", "UpstreamConnection", "UpstreamStream"]

OVERFLOW = "overflow"
"""The pool-failure reason for a circuit-breaker overflow (the router answers 503 UO)."""
HTTP1, HTTP2 = "HTTP/1.1", "HTTP/2"


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """A cluster's upstream protocol options, as the pool applies them."""

    protocol: str = HTTP1
    """``HTTP/1.1``, or ``HTTP/2`` (``http2_protocol_options`` / ``explicit_http_config``)."""
    http2: Http2Settings = DEFAULT_SETTINGS
    """``http2_protocol_options``: max_concurrent_streams and the windows."""
    max_requests_per_connection: int = 0
    """``max_requests_per_connection`` (cluster field or common_http_protocol_options); 0: none."""
    idle_timeout: float = 3600.0
    """``common_http_protocol_options.idle_timeout`` (Envoy's upstream default: 1 h; 0: none)."""
    idle_timer: bool = False
    """The idle timeout was configured: a timer enforces it (see the module docstring)."""

    @property
    def stream_capacity(self) -> int:
        """Requests one connection being opened is expected to carry at once."""
        if self.protocol == HTTP1:
            return 1
        cap = self.http2.max_concurrent_streams
        if self.max_requests_per_connection:
            cap = min(cap, self.max_requests_per_connection)
        return max(cap, 1)


DEFAULT_OPTIONS = PoolOptions()


class ResponseHandler(Protocol):
    """What a pool and an upstream stream report to the request (``UpstreamRequest``).
    Optional: ``on_response_trailers(trailers)`` (without it trailers end the body)."""

    def on_pool_ready(self, stream: Any) -> None: ...
    def on_pool_failure(self, reason: str, transport_failure: str = "") -> None: ...
    def on_response_headers(self, status: int, headers: list[list[str]], end_stream: bool) -> None: ...
    def on_response_data(self, data: bytes, end_stream: bool) -> None: ...
    def on_response_informational(self, status: int) -> None: ...
    def on_upstream_reset(self, reason: str) -> None: ...
    def on_upstream_writable(self, writable: bool) -> None: ...


class UpstreamStream(Protocol):
    """One request's way to its upstream, whatever the protocol (Envoy's ``RequestEncoder``)."""

    protocol: str
    handler: ResponseHandler | None
    local_address: tuple[str, int] | None
    cid: int

    def encode_headers(self, headers: RequestHeaders, end_stream: bool, upgrade: bool = False, body: bytes = b"") -> None: ...
    def encode_data(self, data: bytes, end_stream: bool) -> None: ...
    def encode_trailers(self, trailers: HeaderMap) -> None: ...
    def reset(self) -> None: ...
    def release_unused(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


def source_address(dest_ip: str) -> tuple[str, int] | None:
    """Inside a lab, connections leave from the service's own address (as from a container's
    interface), so upstreams see the proxy's address, not 127.0.0.1. Outside a lab: the OS picks."""
    opts = lab_options()
    src = opts.localhost_address or opts.bind_address
    if not src or ":" in src or ":" in dest_ip or not dest_ip.startswith("127."):
        return None
    return (src, 0)


# What _assign decides: (handler, stream) to wake, (handler, reason) to fail, connections to
# close, connections to open. None for an empty part (no list on the hot path's empty parts).
_Actions = tuple[
    "list[tuple[ResponseHandler, Any]] | None", "list[tuple[ResponseHandler, str]] | None", "list[Any] | None", int
]


class HostPool:
    """Connections to one host of one cluster."""

    __slots__ = (
        "host", "stats", "connect_timeout", "cluster_name", "resources", "options", "backend", "clock",
        "_http2_stats", "_http2_stats_factory", "idle", "busy", "waiters", "connecting", "draining", "_idle_timer",
    )  # fmt: skip

    def __init__(
        self,
        host: Host,
        stats: ClusterStats,
        connect_timeout: float,
        cluster_name: str,
        resources: ResourceManager | None = None,
        options: PoolOptions = DEFAULT_OPTIONS,
        backend: NetworkBackend = DEFAULT_BACKEND,
        clock: TimeSource = REAL,
        http2_stats: Callable[[], Http2ClientStats] | None = None,
    ) -> None:
        from sluice.upstream.circuit_breaker import ResourceManager

        self.host = host
        self.stats = stats
        self.connect_timeout = connect_timeout
        self.cluster_name = cluster_name
        self.resources = resources if resources is not None else ResourceManager("default", None, None)
        self.options = options
        self.backend = backend
        self.clock = clock
        self._http2_stats: Http2ClientStats | None = None
        self._http2_stats_factory = http2_stats
        self.idle: list[Any] = []
        """Ready connections (capacity left), most recently used last."""
        self.busy: set[Any] = set()
        self.waiters: collections.deque[ResponseHandler] = collections.deque()
        self.connecting = 0
        self.draining = False
        self._idle_timer: TimerHandle | None = None

    def __repr__(self) -> str:
        return (
            f"<HostPool {self.host.address} active={len(self.busy)} idle={len(self.idle)} "
            f"pending={len(self.waiters)} connecting={self.connecting}>"
        )

    @property
    def http2_stats(self) -> Http2ClientStats | None:
        """``cluster.<name>.http2.*``, made with the first HTTP/2 connection (as Envoy makes them)."""
        if self._http2_stats is None and self._http2_stats_factory is not None:
            self._http2_stats = self._http2_stats_factory()
        return self._http2_stats

    # -- requests -----------------------------------------------------------------------
    def acquire(self, handler: ResponseHandler) -> None:
        """Serve ``handler`` (``on_pool_ready(stream)`` / ``on_pool_failure(reason)``), now or later."""
        actions = self._assign(handler, False)
        ready, failed, to_close, connects = actions
        if ready is not None and len(ready) == 1 and not (failed or to_close or connects):
            ready[0][0].on_pool_ready(ready[0][1])  # the common case, without _run's frame
        else:
            self._run(actions)

    def cancel(self, handler: ResponseHandler) -> None:
        try:
            self.waiters.remove(handler)
        except ValueError:
            return
        self.resources.max_pending_requests.dec()
        self.stats.upstream_rq_pending_active.dec()
        self.stats.upstream_rq_cancelled.inc()

    def release(self, conn: Any, stream: Any = None) -> None:
        """A request on ``conn`` ended (``stream``; HTTP/1.1: the connection itself), or its
        capacity changed (``stream`` None on HTTP/2): place it and serve the waiters."""
        s = stream if (stream is not None or conn.multiplexed) else conn
        if s is not None and s.rq_counted:
            s.rq_counted = False
            self.resources.max_requests.dec()
        if not conn.is_open:
            return  # (closed: the pool has let it go)
        if conn.active_streams == 0:
            conn.idle_since = self.clock.monotonic()
            if conn.draining or self.draining:
                conn.close()
                if self.waiters:
                    self._run(self._assign(None, False))
                return
            if self.options.idle_timer and self._idle_timer is None:
                self._arm_idle_timer(self.options.idle_timeout)
        if conn.multiplexed:
            in_busy = conn in self.busy
            if conn.available_streams > 0:
                if in_busy:
                    self.busy.discard(conn)
                    self.idle.append(conn)
            elif not in_busy:
                self.idle.remove(conn)
                self.busy.add(conn)
        else:
            self.busy.discard(conn)
            self.idle.append(conn)
        if self.waiters:  # (with none, _assign has nothing to decide)
            self._run(self._assign(None, conn.multiplexed))

    def _assign(self, new: ResponseHandler | None, may_connect: bool) -> _Actions:
        """The one decision (see the module docstring); bookkeeping only, no I/O, no callbacks."""
        ready: list[tuple[ResponseHandler, Any]] | None = None
        failed: list[tuple[ResponseHandler, str]] | None = None
        to_close: list[Any] | None = None
        idle = self.idle
        waiters = self.waiters
        stats = self.stats
        idle_timeout = self.options.idle_timeout
        # 1. Ready capacity to the waiters, oldest first, then to the new request.
        while waiters or new is not None:
            if not idle:
                break
            conn = idle[-1]
            if not conn.is_open or conn.available_streams <= 0 or (idle_timeout and self._idle_expired(conn, idle_timeout)):
                to_close = self._evict(conn, to_close)
                continue
            if waiters:
                handler = self._pop_waiter()
            else:
                handler, new = new, None  # type: ignore[assignment]
            rq = self.resources.max_requests
            if rq.count >= rq.max:  # rq.can_create(), inlined (request path)
                stats.upstream_rq_active_overflow.inc()
                failed = [(handler, OVERFLOW)] if failed is None else [*failed, (handler, OVERFLOW)]
                continue
            rq.inc()
            stream = conn.new_stream(handler)
            stream.rq_counted = True
            if conn.remaining_requests <= 0:
                stats.upstream_cx_max_requests.inc()
                conn.draining = True
            if not conn.multiplexed or conn.available_streams <= 0:
                idle.pop()
                self.busy.add(conn)
            if ready is None:
                ready = [(handler, stream)]
            else:
                ready.append((handler, stream))
        # 2. A new request with no capacity for it waits, within max_pending_requests.
        if new is not None:
            res = self.resources.max_pending_requests
            if not res.can_create():
                stats.upstream_rq_pending_overflow.inc()
                failed = [(new, OVERFLOW)] if failed is None else [*failed, (new, OVERFLOW)]
            else:
                waiters.append(new)
                res.inc()
                stats.upstream_rq_pending_total.inc()
                stats.upstream_rq_pending_active.inc()
                may_connect = True
        # 3. Connections for what waits beyond the capacity being opened.
        connects = 0
        if waiters and (may_connect or not (self.busy or idle or self.connecting)):
            capacity = self.options.stream_capacity
            cx = self.resources.max_connections
            while len(waiters) > (self.connecting + connects) * capacity:
                if cx.count + connects < cx.max:
                    connects += 1
                    continue
                stats.upstream_cx_overflow.inc()
                if not (self.busy or idle or self.connecting or connects):
                    # Envoy: a host with no connection at all always gets one, so that its
                    # pending requests are not stuck behind other hosts' connections.
                    connects += 1
                break
        return ready, failed, to_close, connects

    def _idle_expired(self, conn: Any, timeout: float) -> bool:
        """An idle connection past the upstream ``idle_timeout`` (its timer has not run yet)."""
        return bool(conn.active_streams == 0 and conn.idle_since and self.clock.monotonic() - conn.idle_since >= timeout)

    def _evict(self, conn: Any, to_close: list[Any] | None) -> list[Any] | None:
        """A ready connection that cannot take a request any more (bookkeeping only)."""
        if not conn.is_open:
            # Its transport is closing (the upstream's FIN was read) but connection_lost has
            # not run yet: account for the close now, while the pool still knows the connection
            # (connection_lost then finds it gone and counts nothing).
            conn.mark_closed()
            self.on_connection_closed(conn, local=False, active=False)
            return to_close
        self.idle.pop()
        if conn.active_streams:
            self.busy.add(conn)  # (an HTTP/2 connection at its limit, or draining)
            return to_close
        self.busy.add(conn)  # (until its close is counted)
        if not conn.draining:
            self.stats.upstream_cx_idle_timeout.inc()
        return [conn] if to_close is None else [*to_close, conn]

    def _run(self, actions: _Actions) -> None:
        ready, failed, to_close, connects = actions
        if to_close:
            for conn in to_close:
                conn.close()
        for _ in range(connects):
            self._connect()
        if ready:
            for handler, stream in ready:
                handler.on_pool_ready(stream)
        if failed:
            for handler, reason in failed:
                handler.on_pool_failure(reason)

    def _pop_waiter(self) -> ResponseHandler:
        handler = self.waiters.popleft()
        self.resources.max_pending_requests.dec()
        self.stats.upstream_rq_pending_active.dec()
        return handler

    # -- connections --------------------------------------------------------------------
    def on_connection_closed(self, conn: Any, local: bool, active: bool) -> None:
        """``local``: Sluice closed it (else the upstream did); ``active``: a request was in
        flight on it. Counted as Envoy's pool counts a connection's close event."""
        if conn.rq_counted:
            conn.rq_counted = False
            self.resources.max_requests.dec()
        if conn in self.busy:
            self.busy.discard(conn)
        elif conn in self.idle:
            self.idle.remove(conn)
        else:
            return
        self.resources.max_connections.dec()
        st = self.stats
        st.upstream_cx_active.dec()
        self.host.stats.cx_active -= 1
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
        st.upstream_cx_length_ms.record((self.clock.monotonic() - conn.created) * 1000)
        st.upstream_rq_per_cx.record(conn.requests)  # how many requests the connection served

    def _connect(self) -> None:
        self.connecting += 1
        self.resources.max_connections.inc()
        st = self.stats
        st.upstream_cx_total.inc()
        if self.options.protocol == HTTP2:
            st.upstream_cx_http2_total.inc()
        else:
            st.upstream_cx_http1_total.inc()
        self.host.stats.cx_total += 1
        spawn(self._do_connect(), name=f"connect:{self.cluster_name}:{self.host.address}")

    async def _do_connect(self) -> None:
        clock = self.clock
        started = clock.monotonic()
        reason = ""
        transport_failure = ""
        conn: Any = None
        factory: Callable[[], Any] = (
            (lambda: Http2Connection(self)) if self.options.protocol == HTTP2 else (lambda: UpstreamConnection(self))
        )
        try:
            conn = await asyncio.wait_for(
                self.backend.connect(self.host.ip, self.host.port, source_address(self.host.ip), factory),
                self.connect_timeout,
            )
        except TimeoutError:
            reason = "connection timeout"
            self.stats.upstream_cx_connect_timeout.inc()
        except OSError as exc:
            reason = "remote connection failure"
            # Envoy's transport failure reason for a refused or failed connect.
            transport_failure = f"delayed connect error: {os.strerror(exc.errno) if exc.errno else exc}"
        finally:
            self.connecting -= 1
        if conn is None:
            self.resources.max_connections.dec()
            self.stats.upstream_cx_connect_fail.inc()
            self.host.stats.cx_connect_fail += 1
            # Envoy fails the pending requests that no other connecting client can serve.
            capacity = self.options.stream_capacity
            while self.waiters and len(self.waiters) > self.connecting * capacity:
                handler = self._pop_waiter()
                self.stats.upstream_rq_pending_failure_eject.inc()
                handler.on_pool_failure(reason, transport_failure)
            return
        self.stats.upstream_cx_connect_ms.record((clock.monotonic() - started) * 1000)
        self.stats.upstream_cx_active.inc()
        self.host.stats.cx_active += 1
        conn.created = clock.monotonic()
        self.busy.add(conn)
        self.release(conn, None)

    # -- idle timeout and draining ------------------------------------------------------
    def _arm_idle_timer(self, delay: float) -> None:
        self._idle_timer = self.clock.call_later(delay, self._on_idle_timer)

    def _on_idle_timer(self) -> None:
        self._idle_timer = None
        timeout = self.options.idle_timeout
        now = self.clock.monotonic()
        soonest = None
        for conn in list(self.idle):
            if conn.active_streams:
                continue
            left = conn.idle_since + timeout - now
            if left <= 0.001:
                self.stats.upstream_cx_idle_timeout.inc()
                conn.close()
            elif soonest is None or left < soonest:
                soonest = left
        if soonest is not None:
            self._arm_idle_timer(soonest)

    def drain(self) -> None:
        """The host was removed: idle connections close now, busy ones once their requests are
        done; no new connection is reused (Envoy's ``drainConnections`` on host removal)."""
        self.draining = True
        for conn in list(self.idle) + list(self.busy):
            conn.draining = True
            if conn.active_streams == 0:
                conn.close()
        if self._idle_timer is not None and not self.idle:
            self._idle_timer.cancel()
            self._idle_timer = None

    def close_all(self) -> None:
        """Shutdown: every connection closes now, requests in flight with it."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        for conn in list(self.idle) + list(self.busy):
            conn.close()
