"""One request/response exchange in the connection manager (Envoy's ``ActiveStream``): the
codec's request decoder and the filter manager's owner.

It checks what Envoy's connection manager checks first (Host, path form, normalisation,
upgrades), mutates the request headers (:mod:`sluice.http.conn_manager_utility`), snaps the
route and runs the filters (:mod:`sluice.http.filter_manager`). What comes out of the encoder
chain gets ``date``/``server`` (in place when present) and goes to the stream's codec: HTTP/1
framing (content-length or chunked, ``connection: close`` when the connection ends after it)
or the HTTP/2 codec's stream. Timers: the stream idle timeout, request_timeout and
max_stream_duration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from sluice import logs
from sluice.formatter.context import AccessLogType, FormatContext
from sluice.http import conn_manager_utility as util
from sluice.http import debug_log, grpc, http1, path_normalization
from sluice.http import upgrade as upgrades
from sluice.http.date import http_date
from sluice.http.filter_manager import FilterManager
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.http.stream_info import ResponseFlag, StreamInfo
from sluice.tracing import decision as tracing_decision

if TYPE_CHECKING:
    from sluice.codec.http2 import ServerCodec as Http2ServerCodec
    from sluice.http.conn_manager import ConnectionManager
    from sluice.tracing.zipkin_span import Span

log = logging.getLogger("sluice.http")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_RESPONSE_HOP_BY_HOP_SET = util.RESPONSE_HOP_BY_HOP_SET


class ActiveStream(FilterManager):
    """One request/response exchange: request checks and mutation, filters, response encoding."""

    __slots__ = (
        "conn", "request_headers_end_stream", "request_complete", "route_resolved",
        "response_started", "response_complete", "close_connection", "_chunked", "_head",
        "_http10", "codec_error", "_pending_body", "_started", "response_headers",
        "_idle_timeout", "_idle_timer", "last_activity", "_req_timer", "_dur_timer", "tunnel",
        "stream_id", "h2", "_now", "_charged", "response_trailers", "headerless", "_alog_timer", "rid_in_response",
        "decorated", "span",
    )  # fmt: skip

    def __init__(
        self,
        conn: ConnectionManager,
        headers: RequestHeaders,
        end_stream: bool,
        stream_id: int = 0,
        h2: Http2ServerCodec | None = None,
    ) -> None:
        self.init_filter_manager()
        self.conn = conn
        cfg = self.config = conn.config
        self._now = cfg.clock.monotonic
        self.request_headers = headers
        self.request_headers_end_stream = end_stream
        self.request_complete = end_stream
        self.stream_info = StreamInfo(conn.remote, conn.local, cfg.clock, conn.cid)
        if end_stream and headers.method != "CONNECT":
            # The last request byte came with the head (no clock read: the stream just began).
            # (Envoy's CONNECT stream stays open for the tunnel's bytes: never complete.)
            self.stream_info.request_complete = self.stream_info.start_time
        self.route = None
        self.route_resolved = False
        self.random_value = cfg.rng.getrandbits(64)
        self.is_internal = False
        self.response_started = False
        self.response_complete = False
        self.close_connection = False
        self._chunked = False
        self._head = headers.method == "HEAD"
        self._http10 = False
        """An HTTP/1.0 request (accept_http_10): HTTP/1.0 status line, no chunking."""
        self.codec_error = False
        self.headerless = False
        self._alog_timer: Any = None
        self.rid_in_response = False
        self.decorated: str | None = None
        self.span: Span | None = None
        """The stream's Zipkin span (an HCM with a tracing provider), finished when it ends."""
        """The route decorator's operation for the response's x-envoy-decorator-operation."""
        """A codec error before the request head was complete: its request headers are a
        placeholder, and the access log sees none (Envoy logs ``"- - HTTP/1.1"``)."""
        """Refused by the codec: reset when its connection closes (``downstream_rq_rx_reset``)."""
        self._pending_body: list[tuple[bytes, bool]] = []
        self._started = False
        self._charged = False
        self.response_headers: ResponseHeaders | None = None
        self.response_trailers: HeaderMap | None = None
        self._idle_timeout = 0.0
        self._idle_timer: Any = None
        self.last_activity = 0.0
        self._req_timer: Any = None
        self._dur_timer: Any = None
        self.tunnel: upgrades.Tunnel | None = None
        """An allowed upgrade (the request never ends; a 101 makes it a raw tunnel)."""
        self.stream_id = stream_id
        self.h2 = h2
        """The HTTP/2 codec this stream's response goes to (None: HTTP/1)."""
        if h2 is not None:
            self.stream_info.protocol = "HTTP/2"

    def __repr__(self) -> str:
        h = self.request_headers
        return f"<ActiveStream {h.method} {h.path} started={self.response_started} done={self.response_complete}>"

    # -- request path -------------------------------------------------------------------
    def begin_counted(self) -> None:
        """Count the stream as started (a reply before its headers were complete)."""
        self._started = True
        st = self.config.stats
        st.downstream_rq_total.inc()
        if self.h2 is None:
            st.downstream_rq_http1_total.inc()
        else:
            st.downstream_rq_http2_total.inc()
        st.downstream_rq_active.inc()

    def start(self) -> None:
        if logs.http_debug:
            debug_log.new_stream(self)
        cfg = self.config
        st = cfg.stats
        if not self._started:  # (else an HTTP/2 stream counted when its HEADERS frame began)
            self._started = True
            st.downstream_rq_total.inc()
            if self.h2 is None:
                st.downstream_rq_http1_total.inc()
            else:
                st.downstream_rq_http2_total.inc()
            st.downstream_rq_active.inc()
        if cfg.stream_timers:
            self._arm_stream_timers()
        headers = self.request_headers
        # The request's header names, once: the expect and upgrade checks below and
        # mutate_request_headers all ask which headers are present.
        names = {e[0] for e in headers.entries}
        expect = headers.get("expect") if "expect" in names else None
        if expect is not None and expect.lower() == "100-continue":
            # Envoy answers the expectation itself (proxy_100_continue is off), counts the 100
            # as a 1xx response, and does not forward the header.
            if self.h2 is None:
                self.conn.write(CONTINUE)
            else:
                self.conn.encode_h2_headers(self.stream_id, ResponseHeaders(100), False)
            # Envoy records the 100 as the response code until a final one replaces it (a
            # client gone before then is logged "100 DC"; checked against Envoy 1.40).
            self.stream_info.response_code = 100
            # (chargeStats: a 1xx is a completed response for the stats, as the final one is)
            st.downstream_rq_completed.inc()
            st.downstream_rq_1xx.inc()
            if cfg.listener_stats is not None:
                cfg.listener_stats.downstream_rq_completed.inc()
                cfg.listener_stats.downstream_rq_1xx.inc()
            headers.remove("expect")
            names.discard("expect")
        if headers.version != "1.1" and self.h2 is None:
            # HTTP/1.0 (or 0.9, taken as 1.0) with accept_http_10: the codec refused the rest.
            h1 = cfg.http1_settings
            self._http10 = True
            # HTTP/1.0 connections are single-use unless the client asks to keep it.
            if not any(t.strip().lower() == "keep-alive" for v in headers.get_all("connection") for t in v.split(",")):
                self.close_connection = True
            if not headers.authority and h1.default_host_for_http_10:
                headers.authority = h1.default_host_for_http_10
        if headers.authority is None or headers.authority == "":
            self.close_connection = True
            self.send_local_reply(400, "", "missing_host_header")
            return
        path = headers.path
        connect = headers.method == "CONNECT"
        if connect:
            # No upgrade is configured: a CONNECT matches no route (Envoy's need a
            # connect_matcher) and its connection closes after the answer.
            self.close_connection = True
        elif path[:1] != "/":
            # Only origin-form reaches the routes (the codec turned an absolute URL into one).
            if path:
                st.downstream_rq_non_relative_path.inc()
            # (Envoy's HTTP/1 request has no :scheme yet at this point: it is not logged.)
            if self.h2 is None:
                headers.scheme = ""
            self.send_local_reply(404, "", "absolute_path_rejected" if path else "missing_path_rejected")
            return
        elif "#" in path:
            # Envoy's path normalisation refuses a fragment (a client must not send one).
            st.downstream_rq_failed_path_normalization.inc()
            self.close_connection = True
            self.send_local_reply(400, "", "path_normalization_failed")
            return
        elif cfg.path_options:
            action, headers.path = path_normalization.normalize(path, cfg.normalize_path, cfg.merge_slashes, cfg.escaped_slashes)
            if action is path_normalization.Action.REJECT:
                st.downstream_rq_failed_path_normalization.inc()
                self.close_connection = True
                self.send_local_reply(400, "", "path_normalization_failed")
                return
            if action is path_normalization.Action.REDIRECT:
                st.downstream_rq_redirected_with_normalized_path.inc()
                location = headers.path
                self.send_local_reply(307, "", "path_normalization_failed", modify_headers=lambda h: h.set("location", location))
                return
        upgrade = not connect and "upgrade" in names and util.is_upgrade(headers)
        internal, close = util.mutate_request_headers(cfg, headers, self.stream_info, upgrade, names)
        self.is_internal = internal
        # (mutateResponseHeaders: always_set_request_id_in_response, or a forced trace, which
        # only an internal request keeps)
        self.rid_in_response = cfg.always_set_request_id or (internal and "x-envoy-force-trace" in names)
        if close:
            self.close_connection = True
        if cfg.route_table is not None and not connect:
            self.route = cfg.route_table.route(headers, self.random_value)
            if self.route is not None:
                self.stream_info.route_name = self.route.name
                # Envoy knows the route's cluster from here on (refreshCachedRoute), so a
                # reply before the router (a fault abort) logs %UPSTREAM_CLUSTER% too.
                # (A weighted or header-named cluster is picked by the router: unknown until then.)
                rc = self.route.cluster
                if rc and cfg.server is not None and cfg.server.cluster_manager.get(rc) is not None:
                    self.stream_info.upstream_cluster = rc
                if self.route.using_new_timeouts:
                    self._refresh_duration_timeout()
        self.route_resolved = True
        if cfg.tracing is not None and not connect:
            self.decorated = tracing_decision.trace_request(self, headers)
        if upgrade and self.route is not None and upgrades.allowed(headers, self.route.upgrades, cfg.upgrade_configs):
            self.tunnel = upgrades.Tunnel(self)
        elif upgrade:
            # Not enabled for its type: Envoy's filter chain refuses the upgrade on a routed request.
            # The request never completes: the close resets it (rx_reset), as in Envoy.
            self.close_connection = self.codec_error = True
            if self.route is not None:
                st.downstream_rq_ws_on_non_ws_route.inc()
                self.send_local_reply(403, "", "upgrade_failed")
                return
        self._arm_idle_timer()
        if cfg.access_logs:
            if cfg.access_log_on_new_request:
                self.log_access(AccessLogType.DownstreamStart)
            if cfg.access_log_flush_interval > 0:
                self._alog_timer = cfg.call_later(cfg.access_log_flush_interval, self._on_access_log_flush)
        self.create_filters(cfg.filter_factories)
        body_queue = self._pending_body
        self._pending_body = []
        self._decode_headers_from(0, self.request_headers_end_stream)
        if self.local_reply_sent or self._destroyed:
            # The request body that already arrived is not needed any more.
            for data, end in body_queue:
                self.stream_info.bytes_received += len(data)
                if end:
                    self.request_complete = True
                    self.stream_info.request_complete = self._now()
            return
        for data, end in body_queue:
            self.on_request_body(data, end)

    def _arm_idle_timer(self) -> None:
        route = self.route
        timeout = route.idle_timeout if route is not None and route.idle_timeout is not None else self.config.stream_idle_timeout
        self._idle_timeout = timeout
        if timeout > 0:
            self.last_activity = self._now()
            self._idle_timer = self.config.call_later(timeout, self._on_idle_check)

    def _arm_stream_timers(self) -> None:
        """``request_timeout`` and ``max_stream_duration``, counted from the request's first
        byte (Envoy creates the stream then)."""
        cfg = self.config
        now = self._now()
        begun = getattr(self.conn, "msg_begin", 0.0) or now
        elapsed = now - begun
        if cfg.request_timeout > 0 and not self.request_complete:
            self._req_timer = cfg.call_later(max(cfg.request_timeout - elapsed, 0.0), self._on_request_timeout)
        if cfg.max_stream_duration > 0:
            self._dur_timer = cfg.call_later(max(cfg.max_stream_duration - elapsed, 0.0), self._on_max_duration)

    def _refresh_duration_timeout(self) -> None:
        """Envoy's ``refreshDurationTimeout`` for a route with ``max_stream_duration``: the
        limit of :func:`grpc.grpc_stream_duration` (from the stream's start) replaces the
        connection manager's, and a gRPC request's ``grpc-timeout`` becomes that limit (removed
        when the route turns off a running limit). Other routes keep the connection manager's."""
        route = self.route
        assert route is not None
        cfg = self.config
        headers = self.request_headers
        limit = grpc.grpc_stream_duration(
            headers, route.grpc_timeout_header_max, route.grpc_timeout_header_offset, route.max_stream_duration, cfg.max_stream_duration
        )
        timer = self._dur_timer
        if limit is None:
            if timer is not None:
                timer.cancel()
                self._dur_timer = None
                if grpc.is_grpc_request(headers):
                    headers.remove("grpc-timeout")
            return
        if grpc.is_grpc_request(headers):
            headers.set("grpc-timeout", grpc.encode_grpc_timeout(limit))
        if timer is not None:
            timer.cancel()
        # (Envoy subtracts the whole milliseconds the stream has lived.)
        used = int((self._now() - self.stream_info.start_time) * 1000) / 1000
        self._dur_timer = cfg.call_later(max(limit - used, 0.0), self._on_max_duration)

    def _on_request_timeout(self) -> None:
        self._req_timer = None
        # Disarmed once the request is complete or the response has started (Envoy).
        if self._destroyed or self.request_complete or self.response_started:
            return
        self.config.stats.downstream_rq_timeout.inc()
        self.send_local_reply(408, "request timeout", "request_overall_timeout")

    def _on_max_duration(self) -> None:
        self._dur_timer = None
        if self._destroyed:
            return
        self.config.stats.downstream_rq_max_duration_reached.inc()
        if self.response_started:
            self.reset_stream()
            return
        self.send_local_reply(
            504 if self.request_complete else 408, "downstream duration timeout", "max_duration_timeout", grpc_status=grpc.DEADLINE_EXCEEDED
        )

    def _on_idle_check(self) -> None:
        # One timer per stream, re-armed for the remaining time: activity only stamps
        # `last_activity`, so the hot path never reschedules timers.
        self._idle_timer = None
        if self._destroyed:
            return
        remaining = self.last_activity + self._idle_timeout - self._now()
        if remaining > 0.001:
            self._idle_timer = self.config.call_later(remaining, self._on_idle_check)
            return
        self.config.stats.downstream_rq_idle_timeout.inc()
        self.stream_info.set_flag(ResponseFlag.STREAM_IDLE_TIMEOUT)
        if self.response_started:
            self.reset_stream()
            return
        # Envoy's maybeRequestTimeoutCode: 504 once the request was fully received (we were
        # waiting on the upstream), 408 while the client was still sending.
        self.send_local_reply(504 if self.request_complete else 408, "stream timeout", "stream_idle_timeout")

    # -- request decoder (called by the codec) --------------------------------------------
    def on_request_body(self, data: bytes, end_stream: bool) -> None:
        if not self._started:
            self._pending_body.append((data, end_stream))
            return
        now = self.last_activity = self._now()
        self.stream_info.bytes_received += len(data)
        if end_stream:
            self.request_complete = True
            self.stream_info.request_complete = now
        if self.local_reply_sent or self._destroyed:
            if end_stream and self.response_complete:
                self._maybe_done()
            return
        # Filters before a halt still see each chunk (Envoy); the rest is held back.
        self.decode_data(data, end_stream)

    def on_request_trailers(self, trailers: HeaderMap) -> None:
        """Trailers end the request (HTTP/2, or HTTP/1 with enable_trailers)."""
        self.request_complete = True
        self.stream_info.request_complete = self.last_activity = self._now()
        if self.local_reply_sent or self._destroyed:
            if self.response_complete:
                self._maybe_done()
            return
        self.decode_trailers(trailers)

    def on_reset(self, reason: str) -> None:
        """The HTTP/2 peer reset the stream (RST_STREAM), or the codec did."""
        if self._destroyed:
            return
        if not self.response_complete:
            self.stream_info.set_flag(ResponseFlag.DOWNSTREAM_CONNECTION_TERMINATION)
            self.stream_info.response_code_details = "downstream_remote_disconnect"
        self.config.stats.downstream_rq_rx_reset.inc()
        if logs.http_debug:
            debug_log.stream_reset(self, reason)
        self._destroy()
        self.conn.stream_reset(self)

    # -- filter manager hooks -----------------------------------------------------------
    def send_local_reply(
        self,
        status: int,
        body: str,
        details: str,
        flags: int = 0,
        modify_headers: Callable[[ResponseHeaders], None] | None = None,
        grpc_status: int | None = None,
    ) -> None:
        """Answer from the proxy itself, with Envoy's header order and framing (a gRPC
        request: Envoy's trailers-only reply, see :func:`sluice.http.grpc.local_reply_headers`)."""
        if self.response_started:
            # Too late for a reply: reset the stream as Envoy does.
            self.stream_info.set_flag(flags or ResponseFlag.LOCAL_RESET)
            self.reset_stream()
            return
        self.local_reply_sent = True
        if logs.http_debug:
            debug_log.local_reply(self, details)
        if flags:
            self.stream_info.set_flag(flags)
        self.stream_info.response_code_details = details
        headers = ResponseHeaders(status)
        if modify_headers is not None:
            modify_headers(headers)
        if grpc.is_grpc_request(self.request_headers):
            self.encode_headers(grpc.local_reply_headers(status, body, grpc_status, is_head=self._head, headers=headers), True)
            return
        payload = body.encode("utf-8")
        if payload:
            headers.set("content-length", str(len(payload)))
            headers.set("content-type", "text/plain")
        if self._head:
            payload = b""
        self.encode_headers(headers, not payload)
        if payload:
            self.encode_data(payload, True)

    def response_too_large(self) -> None:
        self.local_reply_sent = True
        self.stream_info.response_code_details = "response_payload_too_large"
        headers = ResponseHeaders(500, [["content-length", "21"], ["content-type", "text/plain"]])
        self._write_headers(headers, self._head)
        if not self._head:
            self._write_data(b"Internal Server Error", True)

    def _write_headers(self, headers: ResponseHeaders, end_stream: bool) -> None:
        if self._destroyed:
            return
        if self.tunnel is not None:
            end = self.tunnel.response_head(headers, end_stream)
            if end is None:
                return  # (a 101: the tunnel wrote it)
            end_stream = end
        cfg = self.config
        self.response_started = True
        self.response_headers = headers
        info = self.stream_info
        info.response_code = code = headers.status
        info.first_downstream_tx = self._now()
        if code >= 200:  # (a 100 is charged where it is sent)
            self._charge(code)
        # One pass: drop hop-by-hop headers, set date and server in place (Envoy keeps an
        # upstream's date/server position and overwrites the value), else append them.
        entries = headers.entries
        date_set = server_set = False
        dirty = False
        for e in entries:
            name = e[0]
            if name == "date":
                if date_set:
                    dirty = True
                e[1] = http_date()
                date_set = True
            elif name == "server":
                if server_set:
                    dirty = True
                e[1] = cfg.server_name
                server_set = True
            elif name in _RESPONSE_HOP_BY_HOP_SET:
                dirty = True
        if dirty:
            headers.entries = entries = util.dedupe_response_entries(entries)
        if not date_set:
            entries.append(["date", http_date()])
        if not server_set:
            entries.append(["server", cfg.server_name])
        if self.rid_in_response:
            rid = self.request_headers.get("x-request-id")
            if rid is not None:
                headers.set("x-request-id", rid)
        if cfg.tracing is not None:
            tracing_decision.decorate_response(headers, cfg.tracing, self.decorated)
        if logs.http_debug:
            debug_log.encoding_headers(self, headers, end_stream)
        if self.h2 is not None:
            self.conn.encode_h2_headers(self.stream_id, headers, end_stream)
            if end_stream:
                self._on_response_complete()
            return
        if not self.request_complete or cfg.draining:
            self.close_connection = True
        http10 = self._http10
        if http10 and http1.needs_chunking(headers, end_stream, self._head):
            # No chunking for HTTP/1.0: the body runs to the end of the connection.
            self.close_connection = True
        if self.close_connection:
            entries.append(["connection", "close"])
        elif http10:
            entries.append(["connection", "keep-alive"])
        data, self._chunked = http1.encode_response_head(
            headers, end_stream, self._head, http10, cfg.http1_settings.proper_case_words
        )
        self.conn.write(data)
        if end_stream:
            self._on_response_complete()

    def _write_data(self, data: bytes, end_stream: bool) -> None:
        if self._destroyed or self.response_complete:
            return
        self.last_activity = self._now()
        self.stream_info.bytes_sent += len(data)
        if self._head:
            data = b""
        if self.h2 is not None:
            self.conn.encode_h2_data(self, data, end_stream)
        elif self._chunked:
            out = http1.encode_chunk(data) if data else b""
            if end_stream:
                out += http1.LAST_CHUNK
            if out:
                self.conn.write(out)
        elif data:
            self.conn.write(data)
        if end_stream:
            self._on_response_complete()

    def _write_trailers(self, trailers: HeaderMap) -> None:
        if self._destroyed or self.response_complete:
            return
        self.response_trailers = trailers
        if self.h2 is not None and not self._head:
            self.conn.encode_h2_trailers(self.stream_id, trailers)
            self._on_response_complete()
            return
        # HTTP/1: Envoy's codec drops response trailers unless enable_trailers (the body ends).
        self._write_data(b"", True)

    def read_disable(self, disable: bool) -> None:
        self.conn.read_disable_stream(self, disable)

    def clear_route_cache(self) -> None:
        if self.config.route_table is not None:
            self.route = self.config.route_table.route(self.request_headers, self.random_value)
            self.stream_info.route_name = self.route.name if self.route else ""

    def call_later(self, delay: float, fn: Callable[[], None]) -> Any:
        return self.config.call_later(delay, fn)

    # -- the end ------------------------------------------------------------------------
    def _on_response_complete(self) -> None:
        self.response_complete = True
        self.stream_info.last_downstream_tx = self._now()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self._destroyed:
            return
        if not self.request_complete:
            # Envoy ends the stream when the response ends before the request did: HTTP/1
            # closes the connection, HTTP/2 resets the stream (doEndStream). Its onResetStream
            # counts that reset (HTTP/2's in stream_done; a codec error's in _destroy).
            self.close_connection = True
            st = self.config.stats
            st.downstream_rq_response_before_rq_complete.inc()
            if self.h2 is None and not self.codec_error and self.tunnel is None:
                st.downstream_rq_rx_reset.inc()
        self._destroy()
        self.conn.stream_done(self, self.close_connection)

    def _destroy(self) -> None:
        if self._destroyed:
            return
        self._destroyed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._req_timer is not None:
            self._req_timer.cancel()
            self._req_timer = None
        if self._dur_timer is not None:
            self._dur_timer.cancel()
            self._dur_timer = None
        cfg = self.config
        st = cfg.stats
        st.downstream_rq_active.dec()
        code = self.stream_info.response_code
        if code is not None and self.response_complete and not self._charged:
            self._charge(code)  # (a tunnel's 101, written by the tunnel)
        if self.codec_error and self.h2 is None:
            st.downstream_rq_rx_reset.inc()  # (HTTP/2: the stream's doEndStream reset counts it)
        st.downstream_rq_time.record((self._now() - self.stream_info.start_time) * 1000)
        if logs.http_debug:
            debug_log.stream_complete(self)
        if self._alog_timer is not None:
            self._alog_timer.cancel()
            self._alog_timer = None
        if cfg.access_logs:
            # Envoy logs when the stream is destroyed (AccessLogType DownstreamEnd), before
            # the filters go.
            self.log_access(AccessLogType.DownstreamEnd)
        self.destroy_filters()
        if self.span is not None:
            # (after the filters, as Envoy's stream destructor: an upstream span the router
            # ends on its way out is reported before this one)
            tracing_decision.finish_span(self)
        if self.tunnel is not None:
            self.tunnel.on_destroy()
        server = cfg.server
        if server is not None:
            server.on_stream_complete(self)

    def log_access(self, log_type: AccessLogType) -> None:
        """Every access logger of the connection manager, on one context (Envoy's ``log``)."""
        ctx = FormatContext(
            self.stream_info, None if self.headerless else self.request_headers, self.response_headers,
            self.response_trailers, "", log_type,
        )  # fmt: skip (positional: this runs once per request)
        for logger in self.config.access_logs:
            logger.log(ctx)

    def _on_access_log_flush(self) -> None:
        """``access_log_options.access_log_flush_interval``: a periodic line while the stream lives."""
        self._alog_timer = None
        if self._destroyed:
            return
        self.log_access(AccessLogType.DownstreamPeriodic)
        self._alog_timer = self.config.call_later(self.config.access_log_flush_interval, self._on_access_log_flush)

    def _charge(self, code: int) -> None:
        """Envoy's chargeStats: the response's code class and ``downstream_rq_completed``,
        counted when the response headers are encoded (so also for a response reset later)."""
        self._charged = True
        cfg = self.config
        cfg.stats.downstream_rq_completed.inc()
        idx = code // 100 - 1
        if 0 <= idx < 5:
            cfg.xx[idx].inc()
            if cfg.listener_stats is not None:
                cfg.listener_xx[idx].inc()
        if cfg.listener_stats is not None:
            cfg.listener_stats.downstream_rq_completed.inc()

    def reset_stream(self) -> None:
        """Abort this stream (on HTTP/1, its connection)."""
        if self._destroyed:
            return
        st = self.config.stats
        st.downstream_rq_tx_reset.inc()
        if self.tunnel is None or not self.tunnel.established:
            # Envoy's ActiveStream::onResetStream runs for a reset it sends as for one it
            # receives, and counts downstream_rq_rx_reset in both (checked against Envoy 1.40,
            # HTTP/1 and HTTP/2: an upstream closing mid-body, the route timeout after the
            # headers). (An established tunnel's end is counted once, by its close.)
            st.downstream_rq_rx_reset.inc()
        if logs.http_debug:
            debug_log.stream_reset(self, "local reset")
        self._destroy()
        if self.h2 is not None:
            # An established extended-CONNECT tunnel that ends from our side (the upstream
            # closed) is reset with CONNECT_ERROR, as Envoy 1.40 does (its ConnectError reason).
            tunnel = self.tunnel is not None and self.tunnel.established
            self.conn.reset_h2_stream(self, ErrorCodes.CONNECT_ERROR if tunnel else ErrorCodes.INTERNAL_ERROR)
            return
        if self.tunnel is not None and self.tunnel.established:
            # An ended tunnel (the upstream closed): what it sent before is flushed, then the
            # connection closes, after the client's close or delayed_close_timeout, as Envoy's.
            self.conn.close()
            return
        self.conn.reset()

    def on_downstream_reset(self) -> None:
        """The connection went away under the stream."""
        if self._destroyed:
            return
        if not self._started:
            # A pipelined request still queued behind the current one: Envoy's HTTP/1 codec has
            # not read it yet, so it was never counted (no rq_active to give back, no reset).
            self._destroyed = True
            return
        if not self.response_complete:
            self.stream_info.set_flag(ResponseFlag.DOWNSTREAM_CONNECTION_TERMINATION)
            self.stream_info.response_code_details = "downstream_remote_disconnect"
            self.config.stats.downstream_rq_rx_reset.inc()
            if logs.http_debug:
                debug_log.stream_reset(self, "connection termination")
        self._destroy()
