"""The router: Envoy's terminal HTTP filter (``envoy.filters.http.router``).

decode_headers: no route → 404 (NR); direct_response and redirect answered locally; otherwise
pick the cluster (``cluster``, ``cluster_header`` or ``weighted_clusters``), finalise the request
headers (timeout header, header mutations route → vhost → route config, path and host
rewrites), pick a host and start an :class:`UpstreamRequest`; mirror policies start shadows.
The route timeout (default 15 s) runs from the end of the request to the end of the response:
expiry before the response started gives ``504 upstream request timeout`` (UT), after it a reset.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from sluice.http.filter import CONTINUE, STOP_ITERATION, STOP_ITERATION_NO_BUFFER, FilterStatus
from sluice.http.stream_info import ResponseFlag
from sluice.router.shadow import start_shadow
from sluice.router.upstream_request import UpstreamRequest

if TYPE_CHECKING:
    from sluice.http.conn_manager import ActiveStream
    from sluice.http.headers import RequestHeaders, ResponseHeaders
    from sluice.route.table import RouteEntry, RouteTable, WeightedClusterEntry
    from sluice.runtime import Runtime
    from sluice.upstream.cluster_manager import ClusterManager

RESET_BEFORE_HEADERS = "upstream connect error or disconnect/reset before headers. reset reason: "


class RouterConfig:
    """Shared by every router filter of one HCM."""

    __slots__ = ("cluster_manager", "runtime", "stats", "route_table", "local_ip", "rng")

    def __init__(
        self,
        cluster_manager: ClusterManager,
        runtime: Runtime,
        hcm_stats: Any,
        route_table: RouteTable | None,
        local_ip: str,
        rng: Any,
    ) -> None:
        self.cluster_manager = cluster_manager
        self.runtime = runtime
        self.stats = hcm_stats
        self.route_table = route_table
        self.local_ip = local_ip
        self.rng = rng


class Router:
    __slots__ = (
        "config",
        "cb",
        "route",
        "weighted",
        "upstream",
        "shadows",
        "timer",
        "_timeout",
        "_response_started",
        "_finished",
    )

    def __init__(self, config: RouterConfig, stream: ActiveStream) -> None:
        self.config = config
        self.cb = stream
        self.route: RouteEntry | None = None
        self.weighted: WeightedClusterEntry | None = None
        self.upstream: UpstreamRequest | None = None
        self.shadows: list[UpstreamRequest] = []
        self.timer: asyncio.TimerHandle | None = None
        self._timeout = 0.0
        self._response_started = False
        self._finished = False

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
            cb.send_local_reply(404, "", "route_not_found", ResponseFlag.NO_ROUTE_FOUND)
            return STOP_ITERATION
        if route.direct_status:
            cfg.stats.rq_direct_response.inc()
            cb.send_local_reply(route.direct_status, route.direct_body, "direct_response", 0, self._finalize_response)
            return STOP_ITERATION
        if route.redirect is not None:
            cfg.stats.rq_redirect.inc()
            location = self._redirect_location(headers, route)

            def add_location(h: ResponseHeaders) -> None:
                h.set("location", location)
                self._finalize_response(h)

            cb.send_local_reply(route.redirect.status, "", "direct_response", 0, add_location)
            return STOP_ITERATION
        cluster_name, self.weighted = route.pick_cluster(headers, cfg.runtime, cb.random_value)
        if not cluster_name and route.weighted_clusters:
            # Every runtime weight is 0: Envoy finds no route entry.
            cfg.stats.no_route.inc()
            cb.send_local_reply(404, "", "route_not_found", ResponseFlag.NO_ROUTE_FOUND)
            return STOP_ITERATION
        cluster = cfg.cluster_manager.get(cluster_name)
        if cluster is None:
            cfg.stats.no_cluster.inc()
            cb.send_local_reply(503, "", "cluster_not_found", ResponseFlag.NO_CLUSTER_FOUND)
            return STOP_ITERATION
        info.upstream_cluster = cluster_name
        self._timeout = route.timeout
        if self._timeout > 0:
            headers.set("x-envoy-expected-rq-timeout-ms", str(int(self._timeout * 1000)))
        self._finalize_request(headers, route)
        host = cluster.choose_host()
        if host is None:
            cluster.stats.upstream_cx_none_healthy.inc()
            cb.send_local_reply(
                503, "no healthy upstream", "no_healthy_upstream", ResponseFlag.NO_HEALTHY_UPSTREAM, self._finalize_response
            )
            return STOP_ITERATION
        info.upstream_host = host.address
        if route.auto_host_rewrite and cluster.type != 0 and host.hostname:
            # Envoy rewrites Host to the DNS name of a STRICT_DNS/LOGICAL_DNS host.
            headers.set("x-envoy-original-host", headers.authority or "")
            headers.authority = host.hostname
        for policy in route.mirror_policies:
            if policy.fraction is None or policy.fraction.enabled(cfg.runtime, cfg.rng.getrandbits(64)):
                shadow_cluster = cfg.cluster_manager.get(policy.cluster)
                if shadow_cluster is not None:
                    s = start_shadow(shadow_cluster, headers, end_stream, cfg.local_ip)
                    if s is not None:
                        self.shadows.append(s)
                        if self._timeout > 0:
                            cb.call_later(self._timeout, s.cancel)
        up = UpstreamRequest(self, cluster, host, headers, end_stream)
        self.upstream = up
        cb.on_writable = self._on_downstream_writable
        if end_stream:
            self._on_request_complete()
        up.start()
        return STOP_ITERATION

    def decode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        if self.upstream is not None:
            self.upstream.send_data(data, end_stream)
        for s in self.shadows:
            s.send_data(data, end_stream)
        if end_stream:
            self._on_request_complete()
        return STOP_ITERATION_NO_BUFFER

    def _on_request_complete(self) -> None:
        if self._timeout > 0 and self.timer is None and not self._finished:
            self.timer = self.cb.call_later(self._timeout, self._on_timeout)

    # -- header finalisation ------------------------------------------------------------
    def _finalize_request(self, headers: RequestHeaders, route: RouteEntry) -> None:
        info = self.cb.stream_info
        if self.weighted is not None and self.weighted.request_mutations:
            self.weighted.request_mutations.apply(headers, headers, info)
        for mutations in route.request_chain:
            mutations.apply(headers, headers, info)
        path = headers.path
        if route.prefix_rewrite is not None and route.path_matcher.kind in ("prefix", "path", "path_separated_prefix"):
            matched = len(route.path_matcher.value)
            headers.set("x-envoy-original-path", path)
            headers.path = route.prefix_rewrite + path[matched:]
        elif route.regex_rewrite is not None:
            q = ""
            p = path
            i = p.find("?")
            if i >= 0:
                p, q = p[:i], p[i:]
            headers.set("x-envoy-original-path", path)
            headers.path = route.regex_rewrite.sub(route.regex_rewrite_sub, p) + q
        if route.host_rewrite_literal:
            headers.set("x-envoy-original-host", headers.authority or "")
            headers.authority = route.host_rewrite_literal

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

    @staticmethod
    def _redirect_location(headers: RequestHeaders, route: RouteEntry) -> str:
        rd = route.redirect
        assert rd is not None
        # Envoy's Http::Utility::newUri: host_redirect replaces the whole Host (its port too);
        # otherwise the request's Host is kept, minus its port when port_redirect is set or
        # when the scheme changes and the port was the old scheme's default (":80" for http).
        scheme = rd.scheme or headers.scheme
        new_port = f":{rd.port}" if rd.port else ""
        hostport = headers.authority or ""
        if rd.host:
            hostport = rd.host
        elif hostport:
            end = hostport.rfind("]:") + 1 if hostport.startswith("[") else hostport.rfind(":")
            if end > 0:
                request_port = hostport[end:]
                remove = bool(new_port)
                if scheme != headers.scheme:
                    remove |= (headers.scheme, request_port) in (("https", ":443"), ("http", ":80"))
                if remove:
                    hostport = hostport[:end]
        path = headers.path
        query = ""
        i = path.find("?")
        if i >= 0:
            path, query = path[:i], path[i:]
        if rd.path is not None:
            # path_redirect replaces path and query unless it has none of its own.
            if "?" in rd.path:
                path, query = rd.path, ""
            else:
                path = rd.path
        elif rd.prefix is not None:
            matched = len(route.path_matcher.value) if route.path_matcher.kind == "prefix" else 0
            path = rd.prefix + path[matched:]
        elif rd.regex is not None:
            path = rd.regex.sub(rd.regex_sub, path)
        if rd.strip_query:
            query = ""
        return f"{scheme}://{hostport}{new_port}{path}{query}"

    # -- upstream callbacks -------------------------------------------------------------
    def on_upstream_headers(self, req: UpstreamRequest, headers: ResponseHeaders, end_stream: bool) -> None:
        if req is not self.upstream or self._finished:
            return
        self._response_started = True
        now = time.monotonic()
        info = self.cb.stream_info
        info.first_upstream_rx = now
        code = headers.status
        self._charge(req, code)
        headers.add("x-envoy-upstream-service-time", str(int((now - req.started) * 1000)))
        self._finalize_response(headers)
        if end_stream:
            self._upstream_done(req)
        self.cb.encode_headers(headers, end_stream)

    def on_upstream_data(self, req: UpstreamRequest, data: bytes, end_stream: bool) -> None:
        if req is not self.upstream or self._finished:
            return
        if end_stream:
            self._upstream_done(req)
        self.cb.encode_data(data, end_stream)

    def on_upstream_reset(self, req: UpstreamRequest, reason: str, before_connect: bool) -> None:
        if req is not self.upstream or self._finished:
            return
        info = self.cb.stream_info
        st = req.cluster.stats
        self._finish()
        if self._response_started:
            info.set_flag(ResponseFlag.UPSTREAM_CONNECTION_TERMINATION)
            st.upstream_rq_rx_reset.inc()
            self.cb.reset_stream()
            return
        if before_connect:
            info.set_flag(ResponseFlag.UPSTREAM_CONNECTION_FAILURE)
            details = "upstream_reset_before_response_started{remote_connection_failure}"
        else:
            info.set_flag(ResponseFlag.UPSTREAM_CONNECTION_TERMINATION)
            st.upstream_rq_rx_reset.inc()
            details = "upstream_reset_before_response_started{connection_termination}"
        req.host.stats.rq_error += 1
        self._charge_code(req, 503, local=True)
        self.cb.send_local_reply(503, RESET_BEFORE_HEADERS + reason, details, 0, self._finalize_response)

    def on_upstream_writable(self, writable: bool) -> None:
        # Upstream socket backed up: stop reading the request body from downstream.
        if writable:
            self.cb.conn.resume_reading()
        else:
            self.cb.conn.pause_reading()

    def _on_downstream_writable(self, writable: bool) -> None:
        up = self.upstream
        if up is not None and up.conn is not None:
            if writable:
                up.conn.resume_reading()
            else:
                up.conn.pause_reading()

    def _on_timeout(self) -> None:
        self.timer = None
        up = self.upstream
        if up is None or self._finished:
            return
        st = up.cluster.stats
        st.upstream_rq_timeout.inc()
        up.host.stats.rq_timeout += 1
        up.cancel()
        self._finish()
        info = self.cb.stream_info
        info.set_flag(ResponseFlag.UPSTREAM_REQUEST_TIMEOUT)
        if self._response_started:
            self.cb.reset_stream()
            return
        self._charge_code(up, 504, local=True)
        self.cb.send_local_reply(504, "upstream request timeout", "upstream_response_timeout", 0, self._finalize_response)

    # -- stats --------------------------------------------------------------------------
    def _charge(self, req: UpstreamRequest, code: int) -> None:
        if code >= 500:
            req.host.stats.rq_error += 1
        else:
            req.host.stats.rq_success += 1
        self._charge_code(req, code, local=False)

    def _charge_code(self, req: UpstreamRequest, code: int, local: bool) -> None:
        """Envoy's ``chargeResponseStat``: per-code, per-class and completed counters and the
        request time, for the cluster and (external requests) its ``external.`` scope."""
        counters, ext_counters, ext_time = req.cluster.stats.response_code_stats(code)
        for c in counters:
            c.value += 1
        elapsed = (time.monotonic() - req.started) * 1000
        req.cluster.stats.upstream_rq_time.record(elapsed)
        if not self.cb.is_internal:
            for c in ext_counters:
                c.value += 1
            ext_time.record(elapsed)
        del local

    def _upstream_done(self, req: UpstreamRequest) -> None:
        self._finish()

    def _finish(self) -> None:
        self._finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # -- encoder side (the router has none) and teardown --------------------------------
    def encode_headers(self, headers: ResponseHeaders, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def encode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def on_destroy(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        up = self.upstream
        if up is not None and not up.done:
            # The downstream went away mid-request: abandon the upstream attempt.
            up.cluster.stats.upstream_rq_tx_reset.inc()
            up.cancel()
        self._finished = True
        self.upstream = None  # breaks the router <-> upstream request cycle
        self.shadows = []


def router_factory(config: RouterConfig) -> Any:
    def create(stream: ActiveStream) -> Router:
        return Router(config, stream)

    return create
