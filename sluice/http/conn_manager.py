"""The HTTP connection manager (Envoy's HCM): one protocol object per downstream connection,
one :class:`ActiveStream` per request, and the filter manager that drives each stream.

Theory of operation:
- ``DownstreamConnection`` feeds bytes to its codec (:mod:`sluice.codec.http1`), which builds
  :class:`RequestHeaders` and calls ``new_stream``; the stream checks what Envoy checks first
  (HTTP/1.0 → 426, no Host → 400) and starts. A request the codec refuses comes back as a
  ``CodecError`` and is answered with Envoy's local reply. HTTP/1.1 requests are served one
  at a time; a pipelined request waits, with its bytes queued, until the previous response is
  complete.
- ``ActiveStream`` mutates the request headers as Envoy's ``ConnectionManagerUtility`` does
  (x-forwarded-proto, x-request-id, x-forwarded-for with use_remote_address, internal-header
  cleaning), snaps the route, and runs the decoder filters in order. Filters return
  CONTINUE/STOP; a stopped filter resumes with ``continue_decoding()``. The router is last.
- Responses run through the encoder filters in reverse and reach the codec, which adds
  ``date``/``server`` (in place when present) and frames the body (content-length or chunked).
- After a local reply, no further decoder filter runs. If the response ends before the request
  was fully received, the connection is closed after the response (``connection: close``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from sluice import logs
from sluice.codec import http1 as http1_codec
from sluice.http import debug_log, http1, path_normalization
from sluice.http import upgrade as upgrades
from sluice.http.date import http_date
from sluice.http.filter import DownstreamWatermarkCallbacks, FilterStatus
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.http.stream_info import ResponseFlag, StreamInfo
from sluice.stats.blocks import HcmTracingStats, Http1CodecStats, HttpConnManagerStats, ListenerHttpStats

if TYPE_CHECKING:
    from sluice.route.table import RouteEntry, RouteTable
    from sluice.stats.store import Counter, Store

log = logging.getLogger("sluice.http")

# Request headers only an internal (trusted) hop may send; removed from external requests,
# as Envoy's ConnectionManagerUtility::cleanInternalHeaders and the router do.
INTERNAL_ONLY_HEADERS = (
    "x-envoy-internal",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-hedge-on-per-try-timeout",
)
EDGE_ONLY_HEADERS = (
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-external-address",
)
REQUEST_HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade")
RESPONSE_HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding")

FilterFactory = Callable[["ActiveStream"], Any]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HcmConfig:
    """Built once per HttpConnectionManager filter config; shared by all its connections."""

    def __init__(
        self,
        *,
        stat_prefix: str,
        store: Store,
        route_table: RouteTable | None,
        filter_factories: list[FilterFactory],
        server_name: str = "envoy",
        generate_request_id: bool = True,
        preserve_external_request_id: bool = False,
        use_remote_address: bool = False,
        xff_num_trusted_hops: int = 0,
        skip_xff_append: bool = False,
        listener_stats_prefix: str | None = None,
        rng: random.Random | None = None,
        server: Any = None,
        local_address_ip: str = "127.0.0.1",
        stream_idle_timeout: float = 300.0,
        call_later: Callable[[float, Callable[[], None]], Any] | None = None,
        request_timeout: float = 0.0,
        request_headers_timeout: float = 0.0,
        max_stream_duration: float = 0.0,
        idle_timeout: float = 3600.0,
        drain_timeout: float = 5.0,
        user_agent: str | None = None,
        service_node: str = "",
        tracing: bool = True,
        max_request_headers_kb: int = 60,
        max_headers_count: int = 100,
        http1_settings: http1_codec.Http1Settings = http1_codec.DEFAULT_SETTINGS,
        normalize_path: bool = False,
        merge_slashes: bool = False,
        escaped_slashes: path_normalization.EscapedSlashes = path_normalization.EscapedSlashes.KEEP_UNCHANGED,
        upgrade_configs: dict[str, bool] | None = None,
    ) -> None:
        self.stat_prefix = stat_prefix
        self.store = store
        self.stats = HttpConnManagerStats.declare(store, f"http.{stat_prefix}.")
        self.tracing_stats = HcmTracingStats.declare(store, f"http.{stat_prefix}.tracing.") if tracing else None
        """Envoy makes them for a listener's HCM (``tracing`` false: the admin HCM has none)."""
        # Envoy makes the server's http1.* codec stats with the first HTTP/1 codec; Sluice with
        # the first HCM (the harness's and Envoy's own /ready requests make one at once anyway).
        self.codec_stats = Http1CodecStats.declare(store, "http1.")
        self.xx = [self.stats.downstream_rq_1xx, self.stats.downstream_rq_2xx, self.stats.downstream_rq_3xx,
                   self.stats.downstream_rq_4xx, self.stats.downstream_rq_5xx]  # fmt: skip
        self.listener_stats: ListenerHttpStats | None = None
        self.listener_xx: list[Counter] = []
        if listener_stats_prefix is not None:
            ls = self.listener_stats = ListenerHttpStats.declare(store, f"{listener_stats_prefix}http.{stat_prefix}.")
            self.listener_xx = [ls.downstream_rq_1xx, ls.downstream_rq_2xx, ls.downstream_rq_3xx,
                                ls.downstream_rq_4xx, ls.downstream_rq_5xx]  # fmt: skip
        self.route_table = route_table
        self.filter_factories = filter_factories
        self.server_name = server_name
        self.generate_request_id = generate_request_id
        self.preserve_external_request_id = preserve_external_request_id
        self.use_remote_address = use_remote_address
        self.xff_num_trusted_hops = xff_num_trusted_hops
        self.skip_xff_append = skip_xff_append
        self.internal_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
        """``internal_address_config.cidr_ranges`` (set by the server; see :func:`internal_networks`)."""
        self.rng = rng or random.Random()
        self.server = server
        self.local_address_ip = local_address_ip
        self.stream_idle_timeout = stream_idle_timeout
        self.call_later = call_later or self._loop_call_later
        """Timer scheduling (the loop's ``call_later``); injected so tests drive time."""
        self._loop: asyncio.AbstractEventLoop | None = None
        """HCM ``stream_idle_timeout`` (Envoy's default 5 min; 0 disables); a route's
        ``idle_timeout`` overrides it."""
        self.request_timeout = request_timeout
        """``request_timeout`` (0 = none): 408 ``request timeout`` unless the whole request
        arrived (or the response started) this long after its first byte."""
        self.request_headers_timeout = request_headers_timeout
        """``request_headers_timeout`` (0 = none): 408 ``request header timeout`` and close
        unless the request headers are complete this long after their first byte."""
        self.max_stream_duration = max_stream_duration
        """``common_http_protocol_options.max_stream_duration`` (0 = none): from the request's
        first byte; 504 (408 while the request is incomplete) ``downstream duration timeout``."""
        self.idle_timeout = idle_timeout
        """``common_http_protocol_options.idle_timeout`` (Envoy's default 1 h; 0 disables): a
        connection without a request in progress for this long is closed (a connection that
        never received a byte at once; otherwise it drains for ``drain_timeout`` first)."""
        self.drain_timeout = drain_timeout
        """``drain_timeout`` (Envoy's default 5 s): how long a draining connection stays open;
        its responses carry ``connection: close`` meanwhile."""
        self.stream_timers = request_timeout > 0 or max_stream_duration > 0
        self.user_agent = user_agent
        """``add_user_agent``: the local cluster name (possibly empty) when set, else None."""
        self.service_node = service_node
        """The node name (``--service-node`` / ``node.id``), sent with ``add_user_agent``."""
        self.begin_timers = self.stream_timers or request_headers_timeout > 0
        self.max_headers_bytes = max_request_headers_kb * 1024
        """``max_request_headers_kb`` (Envoy's default 60): request line and headers over it get 431."""
        self.max_headers_count = max_headers_count
        """``common_http_protocol_options.max_headers_count`` (Envoy's default 100): more get 431."""
        self.http1_settings = http1_settings
        self.normalize_path = normalize_path
        self.merge_slashes = merge_slashes
        self.escaped_slashes = escaped_slashes
        self.path_options = normalize_path or merge_slashes or escaped_slashes is not path_normalization.EscapedSlashes.KEEP_UNCHANGED
        """Any of ``normalize_path``, ``merge_slashes``, ``path_with_escaped_slashes_action`` set."""
        self.upgrade_configs = upgrade_configs or {}
        """``upgrade_configs``: lower-cased upgrade type → enabled (see :mod:`sluice.http.upgrade`)."""

    def _loop_call_later(self, delay: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
        # The loop is looked up once: asyncio.get_event_loop() costs a getpid() syscall.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.call_later(delay, fn)

    def call_soon(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        loop.call_soon(fn)

    @property
    def draining(self) -> bool:
        return bool(self.server is not None and self.server.draining)


class DownstreamConnection(asyncio.Protocol):
    """One downstream HTTP/1.1 connection."""

    __slots__ = (
        "config",
        "transport",
        "stream",
        "pending",
        "remote",
        "local",
        "codec",
        "_deferred_error",
        "_closing",
        "_paused_by_stream",
        "_write_paused",
        "_queued",
        "_created",
        "_codec",
        "on_close",
        "_wbuf",
        "_msg_begin",
        "_hdr_timer",
        "_idle_timer",
        "_idle_since",
        "draining",
        "cid",
    )

    def __init__(self, config: HcmConfig, on_close: Callable[[DownstreamConnection], None] | None = None) -> None:
        self.config = config
        self.transport: asyncio.Transport | None = None
        self.codec = http1_codec.ServerCodec(
            self, config.max_headers_bytes, config.max_headers_count, config.http1_settings, config.codec_stats
        )
        self.codec.notify_begin = config.begin_timers
        self._deferred_error: http1_codec.CodecError | None = None
        """A refused pipelined request, answered once the requests before it are."""
        self.stream: ActiveStream | None = None
        self.pending: list[ActiveStream] = []
        self.remote: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self._closing = False
        self._write_paused = False
        self._queued = bytearray()
        self._created = time.monotonic()
        self._codec = False
        """Whether bytes have arrived: Envoy makes the HTTP/1 codec then (the http1 stats)."""
        self.on_close = on_close
        self._wbuf: list[bytes] = []
        self._msg_begin = 0.0
        """When the current request's first byte arrived (only kept when timers need it)."""
        self._hdr_timer: Any = None
        self._idle_timer: Any = None
        self._idle_since = self._created
        self.draining = False
        """Draining after an idle timeout: responses carry ``connection: close``."""
        self.cid = next(logs.connection_ids)
        """Envoy's connection id, for debug lines."""

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses (no isinstance check).
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.remote = (peer[0], peer[1]) if peer else None
        self.local = (sock[0], sock[1]) if sock else None
        s = transport.get_extra_info("socket")
        if s is not None:
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        st = self.config.stats
        st.downstream_cx_total.inc()
        st.downstream_cx_active.inc()
        idle = self.config.idle_timeout
        if idle > 0:
            self._idle_timer = self.config.call_later(idle, self._on_idle_check)
        if logs.http_debug:
            debug_log.new_connection(self)

    def data_received(self, data: bytes) -> None:
        st = self.config.stats
        st.downstream_cx_rx_bytes_total.inc(len(data))
        if not self._codec:
            # Envoy (codec_type AUTO) creates the codec, and counts the HTTP/1 connection, when
            # the first bytes arrive: a connection that never sends any is no HTTP/1 connection.
            self._codec = True
            st.downstream_cx_http1_total.inc()
            st.downstream_cx_http1_active.inc()
            # The codec's read buffer accounts its bytes in this gauge (used from then on).
            st.downstream_cx_rx_bytes_buffered.used = True
        if self._closing:
            return
        try:
            error = self.codec.feed(data)
        except http1_codec.InternalError as exc:
            # A bug of ours raised inside a codec callback: never let it take the process
            # down; drop this connection and keep serving the others.
            log.error("internal error on a downstream connection: %s", exc, exc_info=exc.__cause__)
            self.reset()
            return
        except Exception:  # noqa: BLE001 - same: one connection's failure stays local
            log.exception("internal error on a downstream connection")
            self.reset()
            return
        if error is not None:
            if self.codec.in_message is None and (self.stream is not None or self.pending):
                # Pipelined after requests still being served: Envoy's codec parses one
                # request at a time, so it answers those first and then refuses this one.
                self._deferred_error = error
                return
            self._protocol_error(error)

    def connection_lost(self, exc: Exception | None) -> None:
        st = self.config.stats
        st.downstream_cx_active.dec()
        if self._codec:
            st.downstream_cx_http1_active.dec()
        st.downstream_cx_destroy.inc()
        streams = ([self.stream] if self.stream else []) + self.pending
        if streams and not self._closing:
            st.downstream_cx_destroy_remote_active_rq.inc()
            st.downstream_cx_destroy_active_rq.inc()
        if not self._closing:
            st.downstream_cx_destroy_remote.inc()
        else:
            st.downstream_cx_destroy_local.inc()
        st.downstream_cx_length_ms.record((time.monotonic() - self._created) * 1000)
        self._closing = True
        self._cancel_timers()
        for s in streams:
            s.on_downstream_reset()
        self.stream = None
        self.pending = []
        if self.on_close is not None:
            self.on_close(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.stream is not None:
            self.stream.on_downstream_writable(False)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.stream is not None:
            self.stream.on_downstream_writable(True)

    # -- codec callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        # Only called when timers need it (codec.notify_begin = config.begin_timers).
        cfg = self.config
        self._msg_begin = time.monotonic()
        if cfg.request_headers_timeout > 0 and self.stream is None:
            # (A pipelined request waits: Envoy's HTTP/1 codec reads it only once the
            # current one is done.)
            self._hdr_timer = cfg.call_later(cfg.request_headers_timeout, self._on_headers_timeout)

    def new_stream(self, headers: RequestHeaders, end_stream: bool) -> ActiveStream:
        if self._hdr_timer is not None:
            self._hdr_timer.cancel()
            self._hdr_timer = None
        stream = ActiveStream(self, headers, end_stream)
        if self.draining:
            stream.close_connection = True
        if self.stream is None:
            self.stream = stream
            stream.start()
        else:
            self.pending.append(stream)
        return stream

    # -- used by streams ----------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queue bytes for the client. Everything written in one loop iteration (a response
        head and its body, typically) leaves in one send: a flush is scheduled with call_soon."""
        if self._closing:
            return
        self.config.stats.downstream_cx_tx_bytes_total.inc(len(data))
        wbuf = self._wbuf
        if wbuf:
            wbuf.append(data)
        else:
            self._wbuf = [data]
            self.config.call_soon(self.flush)

    def flush(self) -> None:
        wbuf = self._wbuf
        if not wbuf:
            return
        self._wbuf = []
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(wbuf[0] if len(wbuf) == 1 else b"".join(wbuf))

    def stream_done(self, stream: ActiveStream, close: bool) -> None:
        if self.stream is stream:
            self.stream = None
        if close or self._closing:
            self.close()
            return
        # The finished stream may have paused reading for its back-pressure (a request body
        # waiting for an upstream connection) and ended without resuming it: the connection
        # reads again for its next request.
        self.resume_reading()
        self._idle_since = time.monotonic()
        if self._idle_timer is None and self.config.idle_timeout > 0 and not self.draining:
            # Suspended while a request was in progress: the idle period starts now.
            self._idle_timer = self.config.call_later(self.config.idle_timeout, self._on_idle_check)
        if self.pending:
            nxt = self.pending.pop(0)
            self.stream = nxt
            nxt.start()
        elif self._deferred_error is not None:
            error, self._deferred_error = self._deferred_error, None
            self._protocol_error(error)

    def close(self) -> None:
        if self.transport is not None and not self._closing:
            self.flush()
            self._closing = True
            self._cancel_timers()
            self.transport.close()

    # -- connection timers (Envoy's idle, drain and request-headers timers) -----------------
    def _cancel_timers(self) -> None:
        for name in ("_hdr_timer", "_idle_timer"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)

    def _on_headers_timeout(self) -> None:
        """``request_headers_timeout``: 408 ``request header timeout``, then close."""
        self._hdr_timer = None
        if self._closing or not self.codec.in_headers or self.stream is not None:
            return
        self.config.stats.downstream_rq_header_timeout.inc()
        stream = ActiveStream(self, RequestHeaders("GET", "/", None, [], "http", "1.1"), False)
        self.stream = stream
        stream.begin_counted()
        stream.close_connection = True
        stream.send_local_reply(408, "request header timeout", "request_header_timeout")

    def _busy(self) -> bool:
        codec = self.codec
        return (
            self.stream is not None
            or bool(self.pending)
            or codec.in_headers
            or codec.in_message is not None
            or self._deferred_error is not None
        )

    def _on_idle_check(self) -> None:
        """One timer per connection, re-armed for the remaining time when it fires early:
        requests only stamp ``_idle_since`` when they end. While a request is in progress the
        timer is suspended (Envoy disables it) and re-armed by ``stream_done``."""
        self._idle_timer = None
        if self._closing or self.draining:
            return
        if self._busy():
            return
        cfg = self.config
        remaining = self._idle_since + cfg.idle_timeout - time.monotonic()
        if remaining > 0.001:
            self._idle_timer = cfg.call_later(remaining, self._on_idle_check)
            return
        cfg.stats.downstream_cx_idle_timeout.inc()
        if not self.codec.got_request:
            # Envoy has no codec yet: close at once.
            self.close()
            return
        # Envoy starts draining: the connection closes after drain_timeout (HTTP/1 sends nothing).
        self.draining = True
        self._idle_timer = cfg.call_later(cfg.drain_timeout, self._on_drain_timeout)

    def _on_drain_timeout(self) -> None:
        self._idle_timer = None
        if self._closing:
            return
        stream = self.stream
        if stream is not None and not stream.destroyed:
            stream.reset_stream()
            return
        self.close()

    def reset(self) -> None:
        """Abort the connection (a reset after the response started)."""
        if self.transport is not None:
            self._closing = True
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self._closing:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()

    def _protocol_error(self, error: http1_codec.CodecError) -> None:
        """A request Envoy's codec refuses: its local reply, ``connection: close``."""
        self.config.stats.downstream_cx_protocol_error.inc()
        stream = cast("ActiveStream | None", self.codec.in_message) or self.stream
        if stream is not None and stream.response_started:
            self.reset()
            return
        if stream is None:
            stream = ActiveStream(self, RequestHeaders("GET", "/", None, [], "http", "1.1"), False)
            self.stream = stream
            # Envoy's codec error is a request all the same: counted (total, active, then the
            # response code and completed when it is destroyed).
            stream.begin_counted()
        stream.stream_info.set_flag(ResponseFlag.DOWNSTREAM_PROTOCOL_ERROR)
        stream.close_connection = True
        # The request never completes: the reply counts as a response before the request was
        # complete, and the connection's close then resets the stream (rx_reset), as in Envoy.
        stream.request_complete = False
        stream.codec_error = True
        stream.send_local_reply(error.status, error.body, error.details)


def http1_settings(msg: Any) -> http1_codec.Http1Settings:
    """An HCM message's ``http_protocol_options`` and ``headers_with_underscores_action``."""
    opts = msg.http_protocol_options
    action = msg.common_http_protocol_options.headers_with_underscores_action
    return http1_codec.Http1Settings(
        accept_http_10=opts.accept_http_10,
        default_host_for_http_10=opts.default_host_for_http_10,
        allow_absolute_url=opts.allow_absolute_url.value if opts.HasField("allow_absolute_url") else True,
        allow_chunked_length=opts.allow_chunked_length,
        headers_with_underscores=("ALLOW", "REJECT_REQUEST", "DROP_HEADER")[action],
        # (stateful_formatter, the oneof's other member, is refused by the support table)
        proper_case_words=opts.header_key_format.HasField("proper_case_words"),
        enable_trailers=opts.enable_trailers,
    )


def path_options(msg: Any) -> dict[str, Any]:
    """An HCM message's path options as :class:`HcmConfig` keywords."""
    return {
        "normalize_path": msg.normalize_path.value if msg.HasField("normalize_path") else False,
        "merge_slashes": msg.merge_slashes,
        "escaped_slashes": path_normalization.EscapedSlashes.from_proto(msg.path_with_escaped_slashes_action),
    }


def header_limits(msg: Any) -> dict[str, int]:
    """An HCM message's header limits as :class:`HcmConfig` keywords (Envoy's defaults 60 KiB, 100)."""
    opts = msg.common_http_protocol_options
    return {
        "max_request_headers_kb": msg.max_request_headers_kb.value if msg.HasField("max_request_headers_kb") else 60,
        "max_headers_count": opts.max_headers_count.value if opts.HasField("max_headers_count") else 100,
    }


_REQUEST_HOP_BY_HOP_SET = frozenset(REQUEST_HOP_BY_HOP)
_UPGRADE_HOP_BY_HOP_SET = _REQUEST_HOP_BY_HOP_SET - {"connection", "upgrade"}
_REQUEST_CLEAN_CHECK = _REQUEST_HOP_BY_HOP_SET | {"te"}
_INTERNAL_ONLY = frozenset(INTERNAL_ONLY_HEADERS)
_INTERNAL_AND_EDGE = _INTERNAL_ONLY | frozenset(EDGE_ONLY_HEADERS)
_RESPONSE_HOP_BY_HOP_SET = frozenset(RESPONSE_HOP_BY_HOP)


def _uuid4(bits: int) -> str:
    """A version-4 UUID string from 128 random bits (what uuid.UUID(version=4) makes, faster)."""
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _dedupe_response_entries(entries: list[list[str]]) -> list[list[str]]:
    """Without hop-by-hop headers and with only the first date/server entry (the slow path)."""
    out: list[list[str]] = []
    seen: set[str] = set()
    for e in entries:
        name = e[0]
        if name in _RESPONSE_HOP_BY_HOP_SET:
            continue
        if name in ("date", "server"):
            if name in seen:
                continue
            seen.add(name)
        out.append(e)
    return out


def _is_upgrade(headers: RequestHeaders) -> bool:
    """Envoy's ``Utility::isUpgrade``: an ``upgrade`` header and ``upgrade`` in ``connection``."""
    if "upgrade" not in headers:
        return False
    return any(t.strip().lower() == "upgrade" for v in headers.get_all("connection") for t in v.split(","))


def _xff_address(headers: RequestHeaders, skip: int) -> str | None:
    """Envoy's ``getLastAddressFromXFF``: the address ``skip`` entries from the right of
    ``x-forwarded-for``, if it is a valid IP."""
    xff = headers.get("x-forwarded-for")
    if not xff:
        return None
    parts = [p.strip() for p in xff.split(",")]
    if skip >= len(parts):
        return None
    candidate = parts[len(parts) - 1 - skip]
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return None
    return candidate


class ActiveStream:
    """One request/response exchange: request mutation, filter iteration, response encoding."""

    __slots__ = (
        "conn",
        "config",
        "request_headers",
        "request_headers_end_stream",
        "request_complete",
        "stream_info",
        "filters",
        "_decode_index",
        "_headers_stopped",
        "_data_resume",
        "_decode_buffer",
        "_decode_end",
        "_encode_index",
        "route",
        "route_resolved",
        "random_value",
        "response_started",
        "response_complete",
        "local_reply_sent",
        "close_connection",
        "_chunked",
        "_head",
        "_http10",
        "codec_error",
        "_destroyed",
        "_pending_body",
        "_started",
        "_encode_stopped",
        "_encode_headers",
        "_encode_buffer",
        "_encode_end",
        "on_writable",
        "is_internal",
        "response_headers",
        "_idle_timeout",
        "_idle_timer",
        "last_activity",
        "_req_timer",
        "_dur_timer",
        "tunnel",
        "_watermark_callbacks",
    )

    def __init__(self, conn: DownstreamConnection, headers: RequestHeaders, end_stream: bool) -> None:
        self.conn = conn
        self.config = conn.config
        self.request_headers = headers
        self.request_headers_end_stream = end_stream
        self.request_complete = end_stream
        self.stream_info = StreamInfo(conn.remote, conn.local)
        self.filters: list[Any] = []
        self._decode_index = 0
        self._headers_stopped = False
        self._data_resume = -1
        self._decode_buffer = bytearray()
        self._decode_end = False
        self._encode_index = 0
        self.route: RouteEntry | None = None
        self.route_resolved = False
        self.random_value = self.config.rng.getrandbits(64)
        self.response_started = False
        self.response_complete = False
        self.local_reply_sent = False
        self.close_connection = False
        self._chunked = False
        self._head = headers.method == "HEAD"
        self._http10 = False
        self.codec_error = False
        """Refused by the codec: reset when its connection closes (``downstream_rq_rx_reset``)."""
        """An HTTP/1.0 request (accept_http_10): HTTP/1.0 status line, no chunking."""
        self._destroyed = False
        self._pending_body: list[tuple[bytes, bool]] = []
        self._started = False
        self._encode_stopped = False
        self._encode_headers: ResponseHeaders | None = None
        self._encode_buffer = bytearray()
        self._encode_end = False
        self.on_writable: Callable[[bool], None] | None = None
        self.is_internal = False
        self.response_headers: ResponseHeaders | None = None
        self._idle_timeout = 0.0
        self._idle_timer: Any = None
        self.last_activity = 0.0
        self._req_timer: Any = None
        self._dur_timer: Any = None
        self.tunnel: upgrades.Tunnel | None = None
        self._watermark_callbacks: list[DownstreamWatermarkCallbacks] = []
        """An allowed upgrade (the request never ends; a 101 makes it a raw tunnel)."""

    def __repr__(self) -> str:
        h = self.request_headers
        return f"<ActiveStream {h.method} {h.path} started={self.response_started} done={self.response_complete}>"

    # -- request path -------------------------------------------------------------------
    def begin_counted(self) -> None:
        """Count the stream as started (a reply before its headers were complete)."""
        self._started = True
        st = self.config.stats
        st.downstream_rq_total.inc()
        st.downstream_rq_http1_total.inc()
        st.downstream_rq_active.inc()

    def start(self) -> None:
        self._started = True
        if logs.http_debug:
            debug_log.new_stream(self)
        cfg = self.config
        st = cfg.stats
        st.downstream_rq_total.inc()
        st.downstream_rq_http1_total.inc()
        st.downstream_rq_active.inc()
        if cfg.stream_timers:
            self._arm_stream_timers()
        headers = self.request_headers
        # The request's header names, once: the expect and upgrade checks below and
        # _mutate_request_headers all ask which headers are present.
        names = {e[0] for e in headers.entries}
        expect = headers.get("expect") if "expect" in names else None
        if expect is not None and expect.lower() == "100-continue":
            # Envoy answers the expectation itself (proxy_100_continue is off), counts the 100
            # as a 1xx response, and does not forward the header.
            self.conn.write(CONTINUE)
            # (chargeStats: a 1xx is a completed response for the stats, as the final one is)
            st.downstream_rq_completed.inc()
            st.downstream_rq_1xx.inc()
            if cfg.listener_stats is not None:
                cfg.listener_stats.downstream_rq_completed.inc()
                cfg.listener_stats.downstream_rq_1xx.inc()
            headers.remove("expect")
            names.discard("expect")
        if headers.version != "1.1":
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
            self.send_local_reply(404, "", "absolute_path" if path else "missing_path")
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
        upgrade = not connect and "upgrade" in names and _is_upgrade(headers)
        self._mutate_request_headers(headers, upgrade, names)
        if cfg.route_table is not None and not connect:
            self.route = cfg.route_table.route(headers, self.random_value)
            if self.route is not None:
                self.stream_info.route_name = self.route.name
        self.route_resolved = True
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
        self.filters = [factory(self) for factory in cfg.filter_factories]
        body_queue = self._pending_body
        self._pending_body = []
        self._decode_headers_from(0)
        if self.local_reply_sent or self._destroyed:
            # The request body that already arrived is not needed any more.
            for data, end in body_queue:
                self.stream_info.bytes_received += len(data)
                if end:
                    self.request_complete = True
            return
        for data, end in body_queue:
            self.on_request_body(data, end)

    def _mutate_request_headers(self, headers: RequestHeaders, upgrade: bool, names: set[str]) -> None:
        """``names``: the set of names in ``headers.entries``, built once by :meth:`start`."""
        cfg = self.config
        if names & _REQUEST_CLEAN_CHECK:
            self._clean_request_headers(headers, names, upgrade)
        info = self.stream_info
        conn_ip = info.downstream_remote_address[0] if info.downstream_remote_address else ""
        hops = cfg.xff_num_trusted_hops
        if cfg.use_remote_address:
            # The trusted client address: from XFF when there are trusted proxies in front
            # (read before appending), else the connection's peer.
            final_ip = _xff_address(headers, hops - 1) if hops > 0 else None
            final_ip = final_ip or conn_ip
            if not cfg.skip_xff_append and conn_ip:
                # Envoy appends its own local address for a loopback peer.
                appended = cfg.local_address_ip if conn_ip.startswith("127.") or conn_ip == "::1" else conn_ip
                headers.append_value("x-forwarded-for", appended)
            headers.set("x-forwarded-proto", headers.scheme)
        else:
            # Without use_remote_address the downstream address (for logs) comes from XFF.
            final_ip = _xff_address(headers, hops)
            if "x-forwarded-proto" not in names:
                headers.add("x-forwarded-proto", headers.scheme)
        if final_ip and final_ip != conn_ip:
            info.downstream_remote_address = (final_ip, 0)
        # Envoy 1.40: no address is internal unless internal_address_config lists it. A request
        # is internal when XFF (after appending) holds a single address and the trusted remote
        # address is in one of the configured ranges.
        internal = False
        remote_ip = final_ip or conn_ip
        if cfg.internal_networks and remote_ip:
            xff = headers.get("x-forwarded-for")
            if xff is None or "," not in xff:
                internal = _in_networks(remote_ip, cfg.internal_networks)
        self.is_internal = internal
        if internal:
            headers.set("x-envoy-internal", "true")
        edge = not internal and cfg.use_remote_address
        if not internal:
            drop = names & (_INTERNAL_AND_EDGE if edge else _INTERNAL_ONLY)
            if edge and remote_ip:
                # Set below in place, as Envoy's setReference: a client's value is overwritten
                # where it stands rather than removed and appended.
                drop.discard("x-envoy-external-address")
            if drop:
                headers.entries = [e for e in headers.entries if e[0] not in drop]
        ua = cfg.user_agent
        if ua is not None:
            # add_user_agent, as ConnectionManagerUtility::mutateRequestHeaders: the downstream
            # cluster always (internal or not), user-agent only when absent or empty.
            headers.set("x-envoy-downstream-service-cluster", ua)
            if not headers.get("user-agent"):
                headers.set("user-agent", ua)
            if cfg.service_node:
                headers.set("x-envoy-downstream-service-node", cfg.service_node)
        if edge and remote_ip:
            headers.set("x-envoy-external-address", remote_ip)
        if cfg.generate_request_id:
            rid = headers.get("x-request-id") if "x-request-id" in names else None
            if rid is None or (edge and not cfg.preserve_external_request_id):
                rid = _uuid4(cfg.rng.getrandbits(128))
                headers.set("x-request-id", rid)
            self.stream_info.request_id = rid

    def _clean_request_headers(self, headers: RequestHeaders, names: set[str], upgrade: bool) -> None:
        """Hop-by-hop headers go (``connection: close`` is noted first); ``te`` survives only
        as ``trailers`` (Envoy keeps it for gRPC). An upgrade keeps ``connection`` and
        ``upgrade`` where they are (Envoy's mutateRequestHeaders)."""
        hop = _UPGRADE_HOP_BY_HOP_SET if upgrade else _REQUEST_HOP_BY_HOP_SET
        for e in headers.entries:
            if e[0] == "connection" and "close" in e[1].lower():
                self.close_connection = True
        keep_te = any(e[0] == "te" and e[1].lower() == "trailers" for e in headers.entries)
        out = []
        for e in headers.entries:
            name = e[0]
            if name in hop:
                continue
            if name == "te":
                if not keep_te:
                    continue
                e[1] = "trailers"
                keep_te = False  # one entry only
            out.append(e)
        headers.entries = out
        names.intersection_update(e[0] for e in out)

    def _arm_idle_timer(self) -> None:
        route = self.route
        timeout = route.idle_timeout if route is not None and route.idle_timeout is not None else self.config.stream_idle_timeout
        self._idle_timeout = timeout
        if timeout > 0:
            self.last_activity = time.monotonic()
            self._idle_timer = self.config.call_later(timeout, self._on_idle_check)

    def _arm_stream_timers(self) -> None:
        """``request_timeout`` and ``max_stream_duration``, counted from the request's first
        byte (Envoy creates the stream then)."""
        cfg = self.config
        begun = getattr(self.conn, "_msg_begin", 0.0) or time.monotonic()
        elapsed = time.monotonic() - begun
        if cfg.request_timeout > 0 and not self.request_complete:
            self._req_timer = cfg.call_later(max(cfg.request_timeout - elapsed, 0.0), self._on_request_timeout)
        if cfg.max_stream_duration > 0:
            self._dur_timer = cfg.call_later(max(cfg.max_stream_duration - elapsed, 0.0), self._on_max_duration)

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
        self.send_local_reply(504 if self.request_complete else 408, "downstream duration timeout", "max_duration_timeout")

    def _on_idle_check(self) -> None:
        # One timer per stream, re-armed for the remaining time: activity only stamps
        # `last_activity`, so the hot path never reschedules timers.
        self._idle_timer = None
        if self._destroyed:
            return
        remaining = self.last_activity + self._idle_timeout - time.monotonic()
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

    def on_request_body(self, data: bytes, end_stream: bool) -> None:
        if not self._started:
            self._pending_body.append((data, end_stream))
            return
        self.last_activity = time.monotonic()
        self.stream_info.bytes_received += len(data)
        if end_stream:
            self.request_complete = True
            self.stream_info.request_complete = time.monotonic()
        if self.local_reply_sent or self._destroyed:
            if end_stream and self.response_complete:
                self._maybe_done()
            return
        # Filters before a halt still see each chunk (Envoy); the rest is held back.
        self._decode_data_from(0, data, end_stream)

    def _decode_headers_from(self, start: int) -> None:
        headers = self.request_headers
        end = self.request_headers_end_stream
        filters = self.filters
        for i in range(start, len(filters)):
            self._decode_index = i + 1
            status = filters[i].decode_headers(headers, end)
            if self.local_reply_sent or self._destroyed:
                return
            if status != FilterStatus.CONTINUE:
                self._headers_stopped = True
                return
        self._headers_stopped = False

    def _decode_data_from(self, start: int, data: bytes, end_stream: bool) -> None:
        """Pass body data to filters ``start``.. that have seen the headers (Envoy: a filter
        that stopped header iteration still receives data; the filters after it wait)."""
        filters = self.filters
        for i in range(start, len(filters)):
            if i >= self._decode_index or 0 <= self._data_resume <= i:
                self._halt_data(i, data, end_stream)
                return
            status = filters[i].decode_data(data, end_stream)
            if self.local_reply_sent or self._destroyed:
                return
            if status == FilterStatus.STOP_ITERATION_NO_BUFFER:
                return
            if status != FilterStatus.CONTINUE:
                self._halt_data(i + 1, data, end_stream)
                return

    def _halt_data(self, index: int, data: bytes, end_stream: bool) -> None:
        if self._data_resume < 0 or index < self._data_resume:
            self._data_resume = index
        self._decode_buffer += data
        self._decode_end = self._decode_end or end_stream

    def continue_decoding(self) -> None:
        """Resume iteration: headers for the filters that have not seen them, then any body
        data held back, from where it was halted."""
        if self.local_reply_sent or self._destroyed:
            return
        if self._headers_stopped:
            self._headers_stopped = False
            self._decode_headers_from(self._decode_index)
            if self.local_reply_sent or self._destroyed:
                return
        if self._data_resume >= 0:
            start = self._data_resume
            data = bytes(self._decode_buffer)
            end = self._decode_end
            self._data_resume = -1
            self._decode_buffer = bytearray()
            self._decode_end = False
            self._decode_data_from(start, data, end)

    # -- response path ------------------------------------------------------------------
    def encode_headers(self, headers: ResponseHeaders, end_stream: bool) -> None:
        """Called by the terminal filter (router) or a local reply: run encoders in reverse."""
        self._encode_headers_from(len(self.filters) - 1, headers, end_stream)

    def _encode_headers_from(self, start: int, headers: ResponseHeaders, end_stream: bool) -> None:
        filters = self.filters
        for i in range(start, -1, -1):
            enc = getattr(filters[i], "encode_headers", None)
            if enc is None:
                continue
            status = enc(headers, end_stream)
            if status != FilterStatus.CONTINUE:
                self._encode_stopped = True
                self._encode_index = i
                self._encode_headers = headers
                self._encode_end = end_stream
                return
        self._write_headers(headers, end_stream)

    def encode_data(self, data: bytes, end_stream: bool) -> None:
        if self._encode_stopped:
            self._encode_buffer += data
            self._encode_end = self._encode_end or end_stream
            return
        self._encode_data_from(len(self.filters) - 1, data, end_stream)

    def _encode_data_from(self, start: int, data: bytes, end_stream: bool) -> None:
        filters = self.filters
        for i in range(start, -1, -1):
            enc = getattr(filters[i], "encode_data", None)
            if enc is None:
                continue
            status = enc(data, end_stream)
            if status == FilterStatus.STOP_ITERATION_NO_BUFFER:
                return
            if status != FilterStatus.CONTINUE:
                self._encode_stopped = True
                self._encode_index = i
                self._encode_buffer += data
                self._encode_end = end_stream
                return
        self._write_data(data, end_stream)

    def inject_encoded_data(self, data: bytes, end_stream: bool, source: Any) -> None:
        """Envoy's ``injectEncodedDataToFilterChain``: the encoder filter ``source``, which took
        body data (STOP_ITERATION_NO_BUFFER), sends ``data`` on through the encoders after it
        (towards the client). The fault filter's response pacing writes this way."""
        if self._destroyed:
            return
        start = next((i for i, f in enumerate(self.filters) if f is source), -1)
        self._encode_data_from(start - 1, data, end_stream)

    def continue_encoding(self) -> None:
        """Resume after the encoder filter that stopped: headers (if that is where it stopped)
        go on to the filters after it towards the client, then any body held meanwhile — the
        stopped filter sees that body too when it had stopped on headers, as in Envoy."""
        if not self._encode_stopped:
            return
        self._encode_stopped = False
        idx = self._encode_index
        data = bytes(self._encode_buffer)
        end = self._encode_end
        self._encode_buffer = bytearray()
        self._encode_end = False
        headers = self._encode_headers
        if headers is None:
            if data or end:
                self._encode_data_from(idx - 1, data, end)
            return
        self._encode_headers = None
        headers_end = end and not data
        self._encode_headers_from(idx - 1, headers, headers_end)
        if self._encode_stopped:
            # Stopped again further on: keep holding the body.
            self._encode_buffer += data
            self._encode_end = end
            return
        if not headers_end and (data or end):
            self._encode_data_from(idx, data, end)

    def send_local_reply(
        self,
        status: int,
        body: str,
        details: str,
        flags: int = 0,
        modify_headers: Callable[[ResponseHeaders], None] | None = None,
    ) -> None:
        """Answer from the proxy itself, with Envoy's header order and framing."""
        if self.response_started:
            # Too late for a reply: reset the stream as Envoy does.
            self.stream_info.response_flags |= flags or ResponseFlag.LOCAL_RESET
            self.reset_stream()
            return
        self.local_reply_sent = True
        if logs.http_debug:
            debug_log.local_reply(self, details)
        if flags:
            self.stream_info.response_flags |= flags
        self.stream_info.response_code_details = details
        headers = ResponseHeaders(status)
        if modify_headers is not None:
            modify_headers(headers)
        payload = body.encode("utf-8")
        if payload:
            headers.set("content-length", str(len(payload)))
            headers.set("content-type", "text/plain")
        if self._head:
            payload = b""
        self.encode_headers(headers, not payload)
        if payload:
            self.encode_data(payload, True)

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
        info.response_code = headers.status
        now = time.monotonic()
        info.first_downstream_tx = now
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
            headers.entries = entries = _dedupe_response_entries(entries)
        if not date_set:
            entries.append(["date", http_date()])
        if not server_set:
            entries.append(["server", cfg.server_name])
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
        if logs.http_debug:
            debug_log.encoding_headers(self, headers, end_stream)
        data, self._chunked = http1.encode_response_head(
            headers, end_stream, self._head, http10, cfg.http1_settings.proper_case_words
        )
        self.conn.write(data)
        if end_stream:
            self._on_response_complete()

    def _write_data(self, data: bytes, end_stream: bool) -> None:
        if self._destroyed or self.response_complete:
            return
        self.last_activity = time.monotonic()
        self.stream_info.bytes_sent += len(data)
        if self._head:
            data = b""
        if self._chunked:
            out = http1.encode_chunk(data) if data else b""
            if end_stream:
                out += http1.LAST_CHUNK
            if out:
                self.conn.write(out)
        elif data:
            self.conn.write(data)
        if end_stream:
            self._on_response_complete()

    def _on_response_complete(self) -> None:
        self.response_complete = True
        self.stream_info.last_downstream_tx = time.monotonic()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self._destroyed:
            return
        if not self.request_complete:
            # Envoy closes the connection when the response ends before the request did.
            self.close_connection = True
            self.config.stats.downstream_rq_response_before_rq_complete.inc()
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
        if code is not None and self.response_complete:
            st.downstream_rq_completed.inc()
            idx = code // 100 - 1
            if 0 <= idx < 5:
                cfg.xx[idx].inc()
                if cfg.listener_stats is not None:
                    cfg.listener_xx[idx].inc()
            if cfg.listener_stats is not None:
                cfg.listener_stats.downstream_rq_completed.inc()
        if self.codec_error:
            st.downstream_rq_rx_reset.inc()
        st.downstream_rq_time.record((time.monotonic() - self.stream_info.start_time) * 1000)
        if logs.http_debug:
            debug_log.stream_complete(self)
        for f in self.filters:
            try:
                f.on_destroy()
            except Exception:  # noqa: BLE001 - one filter's bug must not leak the stream
                log.exception("filter on_destroy failed")
        # Filters hold their stream; dropping them here breaks the cycle so reference
        # counting frees a finished request at once (no work left for the cycle collector).
        self.filters = []
        self.on_writable = None
        if self.tunnel is not None:
            self.tunnel.on_destroy()
        server = cfg.server
        if server is not None:
            server.on_stream_complete(self)

    # -- resets -------------------------------------------------------------------------
    def reset_stream(self) -> None:
        """Abort this stream (and, on HTTP/1.1, its connection)."""
        if self._destroyed:
            return
        self.config.stats.downstream_rq_tx_reset.inc()
        if logs.http_debug:
            debug_log.stream_reset(self, "local reset")
        self._destroy()
        if self.tunnel is not None and self.tunnel.established:
            # An ended tunnel (the upstream closed): what it sent before is flushed, then the
            # connection closes. Divergence from Envoy, which waits up to delayed_close_timeout
            # (1 s) for the client to close first (downstream_cx_delayed_close_timeout).
            self.conn.close()
            return
        self.conn.reset()

    def on_downstream_reset(self) -> None:
        if self._destroyed:
            return
        if not self._started:
            # A pipelined request still queued behind the current one: Envoy's HTTP/1 codec has
            # not read it yet, so it was never counted (no rq_active to give back, no reset).
            self._destroyed = True
            return
        if not self.response_complete:
            self.stream_info.set_flag(ResponseFlag.DOWNSTREAM_CONNECTION_TERMINATION)
            self.config.stats.downstream_rq_rx_reset.inc()
            if logs.http_debug:
                debug_log.stream_reset(self, "connection termination")
        self._destroy()

    def on_downstream_writable(self, writable: bool) -> None:
        if self.on_writable is not None:
            self.on_writable(writable)
        for w in list(self._watermark_callbacks):
            if writable:
                w.on_below_write_buffer_low_watermark()
            else:
                w.on_above_write_buffer_high_watermark()

    def add_downstream_watermark_callbacks(self, callbacks: DownstreamWatermarkCallbacks) -> None:
        self._watermark_callbacks.append(callbacks)

    def remove_downstream_watermark_callbacks(self, callbacks: DownstreamWatermarkCallbacks) -> None:
        if callbacks in self._watermark_callbacks:
            self._watermark_callbacks.remove(callbacks)

    def on_decoder_filter_above_write_buffer_high_watermark(self) -> None:
        self.conn.pause_reading()

    def on_decoder_filter_below_write_buffer_low_watermark(self) -> None:
        self.conn.resume_reading()

    def encode_trailers(self, trailers: HeaderMap) -> None:
        # HTTP/1 downstream: Envoy's codec drops response trailers unless enable_trailers.
        self.encode_data(b"", True)

    # -- callbacks exposed to filters ---------------------------------------------------
    def call_later(self, delay: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
        return self.config.call_later(delay, fn)

    def clear_route_cache(self) -> None:
        if self.config.route_table is not None:
            self.route = self.config.route_table.route(self.request_headers, self.random_value)
            self.stream_info.route_name = self.route.name if self.route else ""

    @property
    def destroyed(self) -> bool:
        return self._destroyed


def internal_networks(msg: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """An HCM's ``internal_address_config.cidr_ranges`` as networks."""
    if not msg.HasField("internal_address_config"):
        return ()
    out = []
    for r in msg.internal_address_config.cidr_ranges:
        plen = r.prefix_len.value if r.HasField("prefix_len") else 0
        out.append(ipaddress.ip_network(f"{r.address_prefix}/{plen}", strict=False))
    return tuple(out)


def _in_networks(ip: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in n for n in networks)
