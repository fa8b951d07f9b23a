"""The router: Envoy's terminal HTTP filter (``envoy.filters.http.router``).

decode_headers: no route → 404 (NR); direct_response and redirect answered locally; otherwise pick
the cluster (``cluster``, ``cluster_header`` or ``weighted_clusters``), finalise the request headers
(timeout header, header mutations route → vhost → route config, path and host rewrites), pick a
host, start the mirror policies' shadows, put the stream span's B3 context in the headers and
start an :class:`UpstreamRequest`. The route timeout (default 15 s) runs from the end of the
request to the end of the response: expiry before the response started gives ``504 upstream
request timeout`` (UT), after it a reset. ``max_grpc_timeout`` and ``max_stream_duration``: ``timeouts.py``.

Retries (``retry.py`` decides, the router acts): a route with a ``retry_policy`` (or an internal
request with ``x-envoy-retry-on``) gets a :class:`RetryState`; each response head and each reset
before the response started asks ``should_retry``; a granted retry drops the attempt, waits the
back-off and starts a new :class:`UpstreamRequest` with the request body kept for replay (up to
1 MiB, else ``retry_or_shadow_abandoned``). Nothing is retried once the response started, and the
route timeout runs across attempts. Per-try (idle) timeouts run once an attempt's request is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluice import logs
from sluice.clock import REAL, TimerHandle, TimeSource
from sluice.http import debug_log
from sluice.http.filter import CONTINUE, STOP_ITERATION, STOP_ITERATION_NO_BUFFER, FilterStatus
from sluice.http.stream_info import ResponseFlag
from sluice.router import timeouts
from sluice.router import upstream_outcome as outcome
from sluice.router.retry import RetryState, RetryStatus, retry_resource
from sluice.router.rewrite import redirect_location, rewrite_path_and_host
from sluice.router.shadow import start_shadow
from sluice.router.upstream_request import UpstreamRequest
from sluice.tracing.decision import upstream_span

if TYPE_CHECKING:
    from sluice.http.filter_manager import ActiveStreamFilter as ActiveStream
    from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
    from sluice.route.table import RouteEntry, RouteTable, WeightedClusterEntry
    from sluice.runtime import Runtime
    from sluice.stats.blocks import PrefixCodeStats, RouterStats
    from sluice.upstream.cluster import Cluster
    from sluice.upstream.cluster_manager import ClusterManager
    from sluice.upstream.host import Host

RETRY_BUFFER_LIMIT = 1 << 20
"""Request body bytes kept for retries (Envoy's default per-request buffer limit, 1 MiB)."""


class RouterConfig:
    """Shared by every router filter of one HCM."""

    __slots__ = ("cluster_manager", "runtime", "stats", "route_table", "local_ip", "rng", "clock")

    def __init__(
        self,
        cluster_manager: ClusterManager,
        runtime: Runtime,
        stats: RouterStats,
        route_table: RouteTable | None,
        local_ip: str,
        rng: Any,
        clock: TimeSource = REAL,
    ) -> None:
        self.clock = clock
        self.cluster_manager = cluster_manager
        self.runtime = runtime
        self.stats = stats
        self.route_table = route_table
        self.local_ip = local_ip
        self.rng = rng


class Router:
    __slots__ = (
        "config", "cb", "route", "weighted", "upstream", "shadows", "timer", "_timeout", "_response_started",
        "_finished", "cluster", "retry", "attempt_count", "_per_try", "_per_try_idle", "_per_try_timer",
        "_idle_timer", "_backoff_timer", "_last_upstream_activity", "_complete_time", "_request_end", "_body",
        "_body_len", "_trailers", "_watermarks", "alt_stats",
    )  # fmt: skip

    def __init__(self, config: RouterConfig, stream: ActiveStream) -> None:
        self.config = config
        self.cb = stream
        self.route: RouteEntry | None = None
        self.weighted: WeightedClusterEntry | None = None
        self.upstream: UpstreamRequest | None = None
        self.shadows: list[UpstreamRequest] = []
        self.timer: TimerHandle | None = None
        self._timeout = 0.0
        self._response_started = False
        self._finished = False
        self.cluster: Cluster | None = None
        self.retry: RetryState | None = None
        self.attempt_count = 0
        self._per_try = 0.0
        self._per_try_idle = 0.0
        self._per_try_timer: TimerHandle | None = None
        self._idle_timer: TimerHandle | None = None
        self._backoff_timer: TimerHandle | None = None
        self._last_upstream_activity = 0.0
        self._complete_time = 0.0
        self._request_end = False
        self._body: list[bytes] | None = None
        """Request body kept for a retry (None: no retry state, or the buffer limit was passed)."""
        self._body_len = 0
        self._trailers: HeaderMap | None = None
        """Request trailers, kept for a retry's replay."""
        self._watermarks = False
        """Registered for the downstream's watermark callbacks (removed in on_destroy)."""
        self.alt_stats: PrefixCodeStats | None = None
        """The ``x-envoy-upstream-alt-stat-name`` tree this request's codes and time also go to."""

    # -- decoding -----------------------------------------------------------------------
    def decode_headers(self, headers: RequestHeaders, end_stream: bool) -> FilterStatus:
        cfg = self.config
        cb = self.cb
        info = cb.stream_info
        cfg.stats.rq_total.inc()
        route = cb.route
        self.route = route
        if route is None:
            cfg.stats.no_route.inc()
            if logs.router_debug:
                debug_log.no_route(cb)
            cb.send_local_reply(404, "", "route_not_found", ResponseFlag.NO_ROUTE_FOUND)
            return STOP_ITERATION
        if route.direct_status:
            cfg.stats.rq_direct_response.inc()
            cb.send_local_reply(route.direct_status, route.direct_body, "direct_response", 0, self._finalize_response)
            return STOP_ITERATION
        if route.redirect is not None:
            cfg.stats.rq_redirect.inc()
            location = redirect_location(headers, route)

            def add_location(h: ResponseHeaders) -> None:
                h.set("location", location)
                self._finalize_response(h)

            cb.send_local_reply(route.redirect.status, "", "direct_response", 0, add_location)
            return STOP_ITERATION
        cluster_name, self.weighted = route.pick_cluster(headers, cfg.runtime, cb.random_value)
        if not cluster_name and route.weighted_clusters:
            # Every runtime weight is 0: Envoy finds no route entry.
            cfg.stats.no_route.inc()
            if logs.router_debug:
                debug_log.no_route(cb)
            cb.send_local_reply(404, "", "route_not_found", ResponseFlag.NO_ROUTE_FOUND)
            return STOP_ITERATION
        cluster = cfg.cluster_manager.get(cluster_name)
        if cluster is None:
            cfg.stats.no_cluster.inc()
            if logs.router_debug:
                debug_log.unknown_cluster(cb, cluster_name)
            cb.send_local_reply(503, "", "cluster_not_found", ResponseFlag.NO_CLUSTER_FOUND)
            return STOP_ITERATION
        info.upstream_cluster = cluster_name
        self.cluster = cluster
        if logs.router_debug:
            debug_log.cluster_match(cb, cluster_name, headers.path)
        rp = route.retry_policy
        internal = cb.is_internal
        if internal and outcome.ALT_STAT_NAME in headers:  # (only an internal request keeps it)
            self.alt_stats = outcome.take_alt_stats(headers, cluster)
        self.attempt_count = info.attempt_count = 1
        if rp is not None or internal or route.grpc_timeouts:
            # Per-try timeouts, an internal request's timeout headers, gRPC timeouts.
            global_timeout, per_try, self._per_try_idle, grpc_header = timeouts.final_timeout(route, headers, internal)
            self._timeout = global_timeout
            self._per_try = per_try
            if rp is not None or internal:
                self.retry = RetryState.create(
                    rp,
                    headers,
                    internal,
                    cluster.stats,
                    retry_resource(cluster),
                    cfg.rng,
                    cfg.runtime.get_integer("upstream.base_retry_backoff_ms", 25),
                )
                if self.retry is not None:
                    self._body = []
            timeouts.set_timeout_headers(headers, global_timeout, per_try, 0, grpc_header)
        else:
            # The plain request: the route timeout, its expected-timeout header made once.
            self._timeout = route.timeout
            if route.expected_timeout_header:
                headers.set("x-envoy-expected-rq-timeout-ms", route.expected_timeout_header)
        if route.vhost.include_request_attempt_count:
            headers.set("x-envoy-attempt-count", "1")
        self._finalize_request(headers, route)
        host = self._choose_host(cluster)
        if host is None:
            cluster.stats.upstream_cx_none_healthy.inc()
            outcome.charge_code(cluster, 503, internal, self.alt_stats)  # (sendNoHealthyUpstreamResponse)
            cb.send_local_reply(
                503, "no healthy upstream", "no_healthy_upstream", ResponseFlag.NO_HEALTHY_UPSTREAM, self._finalize_response
            )
            return STOP_ITERATION
        info.upstream_host, info.upstream_host_metadata = host.address, host.metadata
        if route.auto_host_rewrite and cluster.type != 0 and host.hostname:
            # Envoy rewrites Host to the DNS name of a STRICT_DNS/LOGICAL_DNS host.
            headers.set("x-envoy-original-host", headers.authority or "")
            headers.authority = host.hostname
        for policy in route.mirror_policies:
            if policy.fraction is None or policy.fraction.enabled(cfg.runtime, cfg.rng.getrandbits(64)):
                shadow_cluster = cfg.cluster_manager.get(policy.cluster)
                if shadow_cluster is not None:
                    s = start_shadow(shadow_cluster, headers, end_stream, cfg.local_ip, info.protocol, cb.active_span)
                    if s is not None:
                        self.shadows.append(s)
                        if self._timeout > 0:
                            cb.call_later(self._timeout, s.cancel)
        if logs.router_debug:
            debug_log.route_decision(cb, host.address, headers)
        child = upstream_span(cb, cluster.name, headers, 1)  # (after the shadows' copies, as Envoy's onPoolReady)
        # The first attempt sends the downstream headers as finalised here; a retry its own copy.
        up = UpstreamRequest(self, cluster, host, headers, end_stream, False, cb.tunnel is not None, info.protocol)
        up.span = child
        self.upstream = up
        info.upstream_timing = up
        if self.retry is not None:
            self.retry.on_host_attempted(host)
        if self._per_try > 0 or self._per_try_idle > 0:
            up.ready_hook = self._on_attempt_ready
        cb.add_downstream_watermark_callbacks(self)
        self._watermarks = True
        if end_stream:
            self._on_request_complete()
        up.start()
        return STOP_ITERATION

    def decode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        body = self._body
        if body is not None and data:
            if self._body_len + len(data) > RETRY_BUFFER_LIMIT:
                # Too big to replay: give up retrying this request (Envoy resets its retry state).
                if self.cluster is not None:
                    self.cluster.stats.retry_or_shadow_abandoned.inc()
                if self.retry is not None:
                    self.retry.release()
                    self.retry = None
                self._body = None
                if self.upstream is None and self._backoff_timer is not None:
                    # A retry was pending and can no longer be replayed (Envoy's decodeData).
                    self._backoff_timer.cancel()
                    self._backoff_timer = None
                    self._finish()
                    self.cb.send_local_reply(
                        503,
                        "upstream is closed prematurely during decoding data from downstream",
                        "early_upstream_reset",
                        0,
                        self._finalize_response,
                    )
                    return STOP_ITERATION_NO_BUFFER
            else:
                body.append(data)
                self._body_len += len(data)
        if self.upstream is not None:
            self.upstream.send_data(data, end_stream)
        for s in self.shadows:
            s.send_data(data, end_stream)
        if end_stream:
            self._on_request_complete()
        return STOP_ITERATION_NO_BUFFER

    def decode_trailers(self, trailers: HeaderMap) -> FilterStatus:
        """Request trailers end the request: forwarded (and kept for a retry's replay)."""
        if self._body is not None:
            self._trailers = trailers
        if self.upstream is not None:
            self.upstream.send_trailers(trailers)
        for s in self.shadows:
            s.send_trailers(trailers)
        self._on_request_complete()
        return STOP_ITERATION

    def _on_request_complete(self) -> None:
        self._request_end = True
        self._complete_time = self.config.clock.monotonic()
        if self._timeout > 0 and self.timer is None and not self._finished:
            self.timer = self.cb.call_later(self._timeout, self._on_timeout)
        up = self.upstream
        if up is not None and up.conn is not None and up.ready_hook is not None:
            self._on_attempt_ready(up)

    def _choose_host(self, cluster: Cluster) -> Host | None:
        """Load balancing, with the ``previous_hosts`` predicate on retries: up to
        ``host_selection_retry_max_attempts`` extra picks avoid a host already attempted."""
        retry = self.retry
        if retry is None or self.attempt_count <= 1 or not retry.policy.previous_hosts:
            return cluster.choose_host()
        host = None
        for _ in range(retry.policy.host_selection_max_attempts + 1):
            host = cluster.choose_host()
            if host is None or not retry.would_select_another_host(host):
                return host
        return host

    # -- retries ------------------------------------------------------------------------
    def _on_attempt_ready(self, up: UpstreamRequest) -> None:
        """The attempt's request is on a connection: arm its per-try timers once the whole
        request has been received."""
        if not self._request_end or up is not self.upstream or self._finished:
            return
        up.ready_hook = None
        if self._per_try > 0 and self._per_try_timer is None:
            self._per_try_timer = self.cb.call_later(self._per_try, lambda: self._on_per_try_timeout(up, False))
        if self._per_try_idle > 0 and self._idle_timer is None:
            self._last_upstream_activity = self.config.clock.monotonic()
            self._idle_timer = self.cb.call_later(self._per_try_idle, lambda: self._on_per_try_idle_check(up))

    def _cancel_attempt_timers(self) -> None:
        if self._per_try_timer is not None:
            self._per_try_timer.cancel()
            self._per_try_timer = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _on_per_try_idle_check(self, up: UpstreamRequest) -> None:
        self._idle_timer = None
        if up is not self.upstream or self._finished:
            return
        remaining = self._last_upstream_activity + self._per_try_idle - self.config.clock.monotonic()
        if remaining > 0.001:
            self._idle_timer = self.cb.call_later(remaining, lambda: self._on_per_try_idle_check(up))
            return
        self._on_per_try_timeout(up, True)

    def _on_per_try_timeout(self, up: UpstreamRequest, idle: bool) -> None:
        if not idle:
            self._per_try_timer = None
        if up is not self.upstream or self._finished:
            return
        if not idle and self._response_started:
            # Envoy's UpstreamRequest::onPerTryTimeout: once the downstream response has
            # started, the per-try timeout is ignored (the route timeout still applies).
            return
        st = up.cluster.stats
        if idle:
            st.upstream_rq_per_try_idle_timeout.inc()
        else:
            st.upstream_rq_per_try_timeout.inc()
        up.host.stats.rq_timeout += 1
        up.cancel()
        if self._maybe_retry_reset(up, "local_reset"):
            return
        self._finish()
        self.upstream = None
        self.cb.stream_info.set_flag(ResponseFlag.UPSTREAM_REQUEST_TIMEOUT)
        if self._response_started:
            outcome.abort_after_response(up, self.config.stats)
            self.cb.reset_stream()
            return
        outcome.charge_code(up.cluster, 504, self.cb.is_internal, self.alt_stats)
        details = "upstream_per_try_idle_timeout" if idle else "upstream_per_try_timeout"
        self.cb.send_local_reply(504, "upstream request timeout", details, 0, self._finalize_response)

    def _maybe_retry_reset(self, up: UpstreamRequest, kind: str) -> bool:
        """Envoy's ``maybeRetryReset``: a reset (or per-try timeout) before the response started."""
        retry = self.retry
        if retry is None or self._response_started:
            return False
        status = retry.should_retry(retry.would_retry_reset(kind, up.conn is not None))
        if status is RetryStatus.YES:
            up.host.stats.rq_error += 1
            self._schedule_retry()
            return True
        self._note_no_retry(status)
        return False

    def _note_no_retry(self, status: RetryStatus) -> None:
        if status is RetryStatus.NO_OVERFLOW:
            self.cb.stream_info.set_flag(ResponseFlag.UPSTREAM_OVERFLOW)
        elif status is RetryStatus.NO_RETRY_LIMIT_EXCEEDED:
            self.cb.stream_info.set_flag(ResponseFlag.UPSTREAM_RETRY_LIMIT_EXCEEDED)

    def _schedule_retry(self) -> None:
        self.upstream = None
        self._cancel_attempt_timers()
        assert self.retry is not None
        self._backoff_timer = self.cb.call_later(self.retry.backoff_ms / 1000, self._do_retry)

    def _do_retry(self) -> None:
        """Envoy's ``doRetry``: the next attempt, with updated attempt count and timeout headers."""
        self._backoff_timer = None
        cluster, route = self.cluster, self.route
        if self._finished or cluster is None or route is None:
            return
        self.attempt_count = self.cb.stream_info.attempt_count = self.attempt_count + 1
        # Each retry gets its own copy of the request headers: its attempt count and timeout
        # header must not show up in the downstream request (access logs) or another attempt.
        headers = self.cb.request_headers.copy()
        if route.vhost.include_request_attempt_count:
            headers.set("x-envoy-attempt-count", str(self.attempt_count))
        elapsed = int((self.config.clock.monotonic() - self._complete_time) * 1000) if self._request_end else 0
        timeouts.set_timeout_headers(
            headers, self._timeout, self._per_try, elapsed, timeouts.rewrites_grpc_timeout(route, self.cb.request_headers)
        )
        host = self._choose_host(cluster)
        if host is None:
            cluster.stats.upstream_cx_none_healthy.inc()
            outcome.charge_code(cluster, 503, self.cb.is_internal, self.alt_stats)
            self._finish()
            self.cb.send_local_reply(
                503, "no healthy upstream", "no_healthy_upstream", ResponseFlag.NO_HEALTHY_UPSTREAM, self._finalize_response
            )
            return
        self.cb.stream_info.upstream_host, self.cb.stream_info.upstream_host_metadata = host.address, host.metadata
        if logs.router_debug:
            debug_log.retry(self.cb, self.attempt_count, host.address)
        body = self._body
        trailers = self._trailers
        end = self._request_end
        child = upstream_span(self.cb, cluster.name, headers, self.attempt_count)
        up = UpstreamRequest(
            self, cluster, host, headers, end and not body and trailers is None, False, False, self.cb.stream_info.protocol
        )
        up.span = child
        self.upstream = up
        self.cb.stream_info.upstream_timing = up
        assert self.retry is not None
        self.retry.on_host_attempted(host)
        if self._per_try > 0 or self._per_try_idle > 0:
            up.ready_hook = self._on_attempt_ready
        up.start()
        if body and self.upstream is up:
            up.send_data(b"".join(body), end and trailers is None)
        if trailers is not None and self.upstream is up:
            up.send_trailers(trailers)

    # -- header finalisation ------------------------------------------------------------
    def _finalize_request(self, headers: RequestHeaders, route: RouteEntry) -> None:
        info = self.cb.stream_info
        if self.weighted is not None and self.weighted.request_mutations:
            self.weighted.request_mutations.apply(headers, headers, info)
        for mutations in route.request_chain:
            mutations.apply(headers, headers, info)
        rewrite_path_and_host(headers, route)

    def _finalize_response(self, headers: ResponseHeaders) -> None:
        route = self.route
        if route is None:
            return
        req = self.cb.request_headers
        info = self.cb.stream_info
        if self.weighted is not None and self.weighted.response_mutations:
            self.weighted.response_mutations.apply(headers, req, info)
        for mutations in route.response_chain:
            mutations.apply(headers, req, info)
        if self.attempt_count and route.vhost.include_attempt_count_in_response:
            headers.set("x-envoy-attempt-count", str(self.attempt_count))

    # -- upstream callbacks -------------------------------------------------------------
    def on_upstream_headers(self, req: UpstreamRequest, headers: ResponseHeaders, end_stream: bool) -> None:
        if req is not self.upstream or self._finished:
            return
        code = headers.status
        if logs.router_debug:
            debug_log.upstream_headers(self.cb, code, end_stream)
        grpc, grpc_status = outcome.grpc_response(self.cb.request_headers, headers)
        if req.cluster.outlier is not None:  # outlier detection (upstream/outlier.py), every attempt
            req.cluster.outlier.put_http_response_code(req.host, outcome.outlier_code(code, grpc_status))
        retry = self.retry
        if retry is not None:
            status = retry.should_retry(retry.would_retry_headers(code, headers))
            if status is RetryStatus.YES:
                req.host.stats.rq_error += 1
                # Envoy's chargeBasicResponseStat in the ``retry.`` scope.
                for c in req.cluster.stats.retry_code_stats(code):
                    c.value += 1
                req.span_canceled = True
                if not end_stream or not self._request_end:
                    # (A response that ended before the request did leaves a connection
                    # still expecting the body: it cannot be reused either.)
                    req.cancel()
                self._schedule_retry()
                return
            self._note_no_retry(status)
        self._response_started = True
        now = self.config.clock.monotonic()
        info = self.cb.stream_info
        info.first_upstream_rx = now
        info.response_code, info.response_code_details = headers.status, "via_upstream"  # (before %RESPONSE_CODE% below)
        self._last_upstream_activity = now
        outcome.charge(req, code, self.cb.is_internal, self.alt_stats, grpc, grpc_status, end_stream)
        if self._request_end:
            # Envoy adds it only once the downstream request is complete (an upstream that
            # answers an upload early gets none).
            headers.set("x-envoy-upstream-service-time", str(int((now - self._complete_time) * 1000)))  # (replaces an upstream's)
        self._finalize_response(headers)
        if end_stream:
            self._upstream_done(req)
            req.release_span()  # (the attempt's span before the stream's, as in Envoy)
        self.cb.encode_headers(headers, end_stream)

    def on_upstream_informational(self, req: UpstreamRequest, code: int) -> None:
        """A 1xx interim response (not forwarded): Envoy charges its code stats."""
        if req is self.upstream and not self._finished:
            outcome.charge_code(req.cluster, code, self.cb.is_internal, self.alt_stats)

    def on_upstream_data(self, req: UpstreamRequest, data: bytes, end_stream: bool) -> None:
        if req is not self.upstream or self._finished:
            return
        if self._idle_timer is not None:
            self._last_upstream_activity = self.config.clock.monotonic()
        if end_stream:
            outcome.grpc_trailers(req, None)  # (a gRPC response without trailers: an error)
            self._upstream_done(req)
        self.cb.encode_data(data, end_stream)

    def on_upstream_trailers(self, req: UpstreamRequest, trailers: HeaderMap) -> None:
        """Response trailers end the response (HTTP/2 upstreams)."""
        if req is not self.upstream or self._finished:
            return
        outcome.grpc_trailers(req, trailers)
        self._upstream_done(req)
        self.cb.encode_trailers(trailers)

    def on_upstream_reset(self, req: UpstreamRequest, reason: str, before_connect: bool) -> None:
        if req is not self.upstream or self._finished:
            return
        if logs.router_debug:
            debug_log.upstream_reset(self.cb, reason, req.host.address)
        info = self.cb.stream_info
        overflow = reason == "overflow"
        if not overflow and req.cluster.outlier is not None:
            # Outlier detection (upstream/outlier.py): a connect failure or reset is a local
            # origin failure of the host; a circuit-breaker overflow is nobody's fault.
            req.cluster.outlier.put_local_origin_failure(req.host)
        # Envoy's HTTP/1.1 pool counts no upstream_rq_rx_reset for a closed connection (only an
        # HTTP/2 RST_STREAM is a received reset); checked against Envoy 1.40.
        terminated = not overflow and not before_connect
        if not self._response_started and self.retry is not None:
            if not terminated:
                kind = "overflow" if overflow else "connect_failure"
            else:
                kind = "refused_stream" if reason == "remote refused stream reset" else "connection_termination"
            if self._maybe_retry_reset(req, kind):
                return
        self._finish()
        if self._response_started:
            outcome.abort_after_response(req, self.config.stats)
            info.set_flag(outcome.reset_flag(reason))
            self.cb.reset_stream()
            return
        code, flag, details = outcome.reset_reply(reason, overflow, before_connect, req.transport_failure)
        info.set_flag(flag)
        if not overflow:
            req.host.stats.rq_error += 1
        outcome.charge_code(req.cluster, code, self.cb.is_internal, self.alt_stats)
        prefix = outcome.RESET_BEFORE_HEADERS_RETRIED if self.attempt_count > 1 else outcome.RESET_BEFORE_HEADERS
        # Envoy marks a circuit-breaker overflow answer with ``x-envoy-overloaded: true``.
        modify = self._finalize_overloaded if overflow else self._finalize_response
        self.cb.send_local_reply(code, prefix + reason, details, 0, modify)

    def _finalize_overloaded(self, headers: ResponseHeaders) -> None:
        headers.set("x-envoy-overloaded", "true")
        self._finalize_response(headers)

    def on_upstream_writable(self, writable: bool) -> None:
        # Upstream backed up: stop reading the request body from downstream.
        if writable:
            self.cb.on_decoder_filter_below_write_buffer_low_watermark()
        else:
            self.cb.on_decoder_filter_above_write_buffer_high_watermark()

    # -- DownstreamWatermarkCallbacks: the client is not taking the response ------------
    def on_above_write_buffer_high_watermark(self) -> None:
        up = self.upstream
        if up is not None and not up.done and up.conn is not None:
            # (Once its response is complete the connection may already serve another
            # request: this stream's back-pressure must not pause it.)
            up.conn.pause_reading()

    def on_below_write_buffer_low_watermark(self) -> None:
        up = self.upstream
        if up is not None and not up.done and up.conn is not None:
            up.conn.resume_reading()

    def _on_timeout(self) -> None:
        """The route timeout: no further attempt; 504 UT (a reset once the response started)."""
        self.timer = None
        cluster = self.cluster
        if self._finished or cluster is None:
            return
        up = self.upstream
        cluster.stats.upstream_rq_timeout.inc()
        if up is not None:
            up.host.stats.rq_timeout += 1
            up.cancel()
        self._finish()
        self.upstream = None
        info = self.cb.stream_info
        info.set_flag(ResponseFlag.UPSTREAM_REQUEST_TIMEOUT)
        if self._response_started:
            if up is not None:
                outcome.abort_after_response(up, self.config.stats)
            self.cb.reset_stream()
            return
        outcome.charge_code(cluster, 504, self.cb.is_internal, self.alt_stats)
        self.cb.send_local_reply(504, "upstream request timeout", "response_timeout", 0, self._finalize_response)

    def _upstream_done(self, req: UpstreamRequest) -> None:
        # Envoy's onUpstreamComplete: the request time is that of a completed upstream response
        # (not of a local 503/504, nor of a retried attempt), from the end of the downstream
        # request, and only once the downstream request is complete.
        if self._request_end:
            elapsed = (self.config.clock.monotonic() - self._complete_time) * 1000
            st = req.cluster.stats
            (st.upstream_rq_time or st.rq_time()).record(elapsed)
            if not self.cb.is_internal:
                st.external_rq_time().record(elapsed)
            else:
                outcome.charge_internal_time(st, elapsed, self.alt_stats)
        self._finish()

    def _finish(self) -> None:
        self._finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.retry is not None:
            self._cancel_attempt_timers()
            if self._backoff_timer is not None:
                self._backoff_timer.cancel()
                self._backoff_timer = None
            self.retry.release()
        elif self._per_try_timer is not None or self._idle_timer is not None:
            self._cancel_attempt_timers()

    # -- encoder side (the router has none) and teardown --------------------------------
    def encode_headers(self, headers: ResponseHeaders, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def encode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def encode_trailers(self, trailers: HeaderMap) -> FilterStatus:
        return CONTINUE

    def on_destroy(self) -> None:
        if self._watermarks:
            self._watermarks = False
            self.cb.remove_downstream_watermark_callbacks(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.retry is not None or self._per_try_timer is not None or self._idle_timer is not None:
            self._cancel_attempt_timers()
            if self._backoff_timer is not None:
                self._backoff_timer.cancel()
                self._backoff_timer = None
            if self.retry is not None:
                self.retry.release()
        up = self.upstream
        if up is not None:
            if not up.done:
                up.abandon()  # (the downstream went away mid-request)
            elif not self._request_end and (conn := up.conn) is not None and conn.handler is self.upstream:
                # The response ended before the request did (an upstream answering an upload
                # early): the connection still expects the rest of the body; it cannot be reused.
                up.cancel()
        if not self._request_end:
            # Shadows still streaming the request body (Envoy cancels them in onDestroy; once
            # the request has ended they are left to finish on their own).
            for s in self.shadows:
                s.cancel()
        self._finished = True
        self.upstream = None  # breaks the router <-> upstream request cycle
        self.shadows = []


def router_factory(config: RouterConfig) -> Any:
    def create(stream: ActiveStream) -> Router:
        return Router(config, stream)

    return create
