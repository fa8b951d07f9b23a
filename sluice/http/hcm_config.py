"""The connection manager's configuration: one :class:`HcmConfig` per HttpConnectionManager
filter config, shared by all its connections, and the functions that read the HCM message into it."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluice.clock import REAL, TimerHandle, TimeSource
from sluice.codec import http1 as http1_codec
from sluice.codec import http2 as http2_codec
from sluice.http import path_normalization
from sluice.stats.blocks import HcmTracingStats, Http1CodecStats, HttpConnManagerStats, ListenerHttpStats

if TYPE_CHECKING:
    from sluice.access_log import AccessLogInstance
    from sluice.route.table import RouteTable
    from sluice.runtime import Runtime
    from sluice.stats.store import Counter, Store
    from sluice.tracing.decision import TracingConfig

FilterFactory = Callable[[Any], Any]
"""Makes one filter per stream from the filter's callbacks (see :mod:`sluice.http.filter`)."""


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
        delayed_close_timeout: float = 0.0,
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
        codec_type: str = "AUTO",
        http2_settings: http2_codec.Http2Settings = http2_codec.DEFAULT_SETTINGS,
        buffer_limit: int = 1024 * 1024,
        clock: TimeSource = REAL,
        access_logs: tuple[AccessLogInstance, ...] = (),
        access_log_flush_interval: float = 0.0,
        access_log_on_new_request: bool = False,
        access_log_on_tunnel: bool = False,
    ) -> None:
        self.stat_prefix = stat_prefix
        self.access_logs = access_logs
        # access_log_options: a periodic line (DownstreamPeriodic), one when the request
        # headers arrive (DownstreamStart), one when a tunnel is established.
        self.access_log_flush_interval = access_log_flush_interval
        self.access_log_on_new_request = access_log_on_new_request
        self.access_log_on_tunnel = access_log_on_tunnel
        """The HCM's ``access_log`` entries, in config order (each with its filter and sink)."""
        self.store = store
        self.stats = HttpConnManagerStats.declare(store, f"http.{stat_prefix}.")
        self.tracing_stats = HcmTracingStats.declare(store, f"http.{stat_prefix}.tracing.") if tracing else None
        """Envoy makes them for a listener's HCM (``tracing`` false: the admin HCM has none)."""
        # Envoy makes the server's http1.* codec stats with the first HTTP/1 codec; Sluice with
        # the first HCM (the harness's and Envoy's own /ready requests make one at once anyway).
        self.codec_stats = Http1CodecStats.declare(store, "http1.")
        self._store = store
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
        self.tracing: TracingConfig | None = None
        """``tracing`` (set by the server): the tracing decision is made for each request."""
        self.runtime: Runtime | None = None
        """The server's runtime (set with ``tracing``: its sampling keys)."""
        self.always_set_request_id = False
        """``always_set_request_id_in_response`` (set by the server)."""
        self.rng = rng or random.Random()
        self.server = server
        self.local_address_ip = local_address_ip
        self.stream_idle_timeout = stream_idle_timeout
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
        self.delayed_close_timeout = delayed_close_timeout
        """``delayed_close_timeout`` (Envoy's default 1 s, set by the server; 0 here and on the
        admin listener, as Envoy's admin): a connection Sluice closes after a response waits this
        long for the client to close first (Envoy's FlushWriteAndDelay)."""
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
        self.codec_type = codec_type
        """``codec_type``: AUTO (the HTTP/2 preface picks HTTP/2, anything else HTTP/1), HTTP1, HTTP2."""
        self.http2_settings = http2_settings
        self.buffer_limit = buffer_limit
        """The listener's ``per_connection_buffer_limit_bytes`` (Envoy's default 1 MiB): each
        stream's filter-manager buffer limit (413 / 500 past it, or read-disable when watermarked)."""
        self.clock = clock
        """Time and timers (:mod:`sluice.clock`)."""
        # Bound once (no wrapper frame on the hot path); a test may inject call_later alone.
        self.call_later: Callable[[float, Callable[[], None]], TimerHandle] = call_later or clock.call_later
        """Timer scheduling (the clock's ``call_later`` unless injected)."""
        self.call_soon: Callable[[Callable[[], None]], None] = clock.call_soon
        self._timers_injected = call_later is not None or clock is not REAL
        self._http2_stats: http2_codec.Http2CodecStats | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Schedule on ``loop`` directly (its bound ``call_later``/``call_soon``: no wrapper
        frame and no running-loop lookup per timer on the request path). The server calls this
        once it runs on its loop; with an injected clock or ``call_later`` nothing changes."""
        if not self._timers_injected:
            self.call_later = loop.call_later
            self.call_soon = loop.call_soon  # type: ignore[assignment]  # (returns a Handle, unused)

    @property
    def http2_stats(self) -> http2_codec.Http2CodecStats:
        """The server's ``http2.*`` codec stats, made with the first HTTP/2 connection (as
        Envoy makes them with its first HTTP/2 codec)."""
        stats = self._http2_stats
        if stats is None:
            stats = self._http2_stats = http2_codec.Http2CodecStats.declare(self._store, "http2.")
        return stats

    @property
    def draining(self) -> bool:
        return bool(self.server is not None and self.server.draining)


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


def http2_settings(msg: Any) -> http2_codec.Http2Settings:
    """An HCM message's ``http2_protocol_options`` (and header limits) for the HTTP/2 codec."""
    opts = msg.http2_protocol_options
    limits = header_limits(msg)
    d = http2_codec.DEFAULT_SETTINGS

    def value(name: str, default: int) -> int:
        return int(getattr(opts, name).value) if opts.HasField(name) else default

    override = opts.override_stream_error_on_invalid_http_message
    if opts.HasField("override_stream_error_on_invalid_http_message"):
        stream_error = bool(override.value)
    else:
        stream_error = msg.stream_error_on_invalid_http_message.value if msg.HasField("stream_error_on_invalid_http_message") else False
    return http2_codec.Http2Settings(
        max_concurrent_streams=value("max_concurrent_streams", d.max_concurrent_streams),
        initial_stream_window_size=value("initial_stream_window_size", d.initial_stream_window_size),
        initial_connection_window_size=value("initial_connection_window_size", d.initial_connection_window_size),
        max_headers_kb=limits["max_request_headers_kb"],
        max_headers_count=limits["max_headers_count"],
        allow_connect=opts.allow_connect,
        stream_error_on_invalid_http_message=stream_error,
    )


CODEC_TYPES = ("AUTO", "HTTP1", "HTTP2", "HTTP3")


def internal_networks(msg: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """An HCM's ``internal_address_config.cidr_ranges`` as networks."""
    if not msg.HasField("internal_address_config"):
        return ()
    out = []
    for r in msg.internal_address_config.cidr_ranges:
        plen = r.prefix_len.value if r.HasField("prefix_len") else 0
        out.append(ipaddress.ip_network(f"{r.address_prefix}/{plen}", strict=False))
    return tuple(out)
