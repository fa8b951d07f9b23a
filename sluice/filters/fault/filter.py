"""The per-stream fault filter (Envoy's ``FaultFilter``, ``filters/http/fault/fault_filter.cc``).

At request headers, in this order (each step exactly as Envoy 1.40 takes it):

1. The request must qualify: routed to ``upstream_cluster`` (when set), sent by one of
   ``downstream_nodes`` (``x-envoy-downstream-service-node``, when set), matching every
   ``headers`` matcher. Otherwise the filter does nothing at all.
2. ``x-envoy-downstream-service-cluster`` (when present) switches the runtime keys to
   ``fault.http.<cluster>.{delay.fixed_delay_percent, abort.abort_percent,
   delay.fixed_duration_ms, abort.http_status, abort.grpc_status}`` — they *replace* the
   filter's percent keys — and counts ``fault.<cluster>.{aborts,delays}_injected``.
3. Response rate limit, then delay, then abort; each is drawn independently (one random
   value per decision, from the server's generator) and must pass ``max_active_faults``: a
   stream holds at most one active fault, the first one taken counts in ``active_faults``, and
   a refused one counts ``faults_overflow``.
4. A delay stops iteration (flag DI) and, when its timer fires, the abort is drawn again:
   either a local reply or ``continue_decoding()``. An abort is a local reply
   ``fault filter abort`` (flag FI, details ``fault_filter_abort``), in gRPC form for a gRPC
   request. A rate limit paces the response body (``rate_limiter.py``).

``on_destroy`` (end of stream or client gone) cancels a pending delay, stops the pacing and
gives the active fault back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluice.filters.fault.config import UINT64_MAX, FaultFilterConfig, FaultSettings
from sluice.filters.fault.rate_limiter import StreamRateLimiter
from sluice.http.filter import CONTINUE, STOP_ITERATION, STOP_ITERATION_AND_BUFFER, STOP_ITERATION_NO_BUFFER, FilterStatus
from sluice.http.grpc import is_grpc_request
from sluice.http.stream_info import ResponseFlag

__all__ = ["FaultFilter", "fault_factory", "inline_header", "is_grpc_request"]

if TYPE_CHECKING:
    from sluice.http.filter_manager import ActiveStreamFilter
    from sluice.http.headers import RequestHeaders, ResponseHeaders

ABORT_BODY = "fault filter abort"
ABORT_DETAILS = "fault_filter_abort"
DOWNSTREAM_CLUSTER = "x-envoy-downstream-service-cluster"
DOWNSTREAM_NODE = "x-envoy-downstream-service-node"

def inline_header(headers: RequestHeaders, name: str) -> str | None:
    """An Envoy "inline" request header: repeated values are joined with ``,`` (observed:
    two ``x-envoy-downstream-service-cluster`` headers ``c1``, ``c2`` count under ``c1,c2``)."""
    values = headers.get_all(name)
    if not values:
        return None
    return values[0] if len(values) == 1 else ",".join(values)


class FaultFilter:
    """One stream's faults; built by the factory with its ActiveStreamFilter (its callbacks)."""

    __slots__ = (
        "config",
        "cb",
        "settings",
        "_delay_timer",
        "_downstream_cluster",
        "_ds_delay_percent_key",
        "_ds_abort_percent_key",
        "_ds_delay_duration_key",
        "_ds_abort_http_status_key",
        "_ds_abort_grpc_status_key",
        "_fault_active",
        "_limiter",
    )

    def __init__(self, config: FaultFilterConfig, stream: ActiveStreamFilter) -> None:
        self.config = config
        self.cb = stream
        self.settings: FaultSettings = config.settings
        self._delay_timer: Any = None
        self._downstream_cluster = ""
        self._ds_delay_percent_key = ""
        self._ds_abort_percent_key = ""
        self._ds_delay_duration_key = ""
        self._ds_abort_http_status_key = ""
        self._ds_abort_grpc_status_key = ""
        self._fault_active = False
        self._limiter: StreamRateLimiter | None = None

    def __repr__(self) -> str:
        state = "delaying" if self._delay_timer is not None else "pacing" if self._limiter is not None else "idle"
        return f"<FaultFilter {state} active={self._fault_active}>"

    # -- decoding -----------------------------------------------------------------------
    def decode_headers(self, headers: RequestHeaders, end_stream: bool) -> FilterStatus:
        s = self.settings
        if s.upstream_cluster and not self._matches_upstream_cluster(headers):
            return CONTINUE
        if s.downstream_nodes and inline_header(headers, DOWNSTREAM_NODE) not in s.downstream_nodes:
            return CONTINUE
        for matcher in s.headers:
            if not matcher.matches(headers):
                return CONTINUE
        cluster = inline_header(headers, DOWNSTREAM_CLUSTER)
        if cluster is not None:
            self._downstream_cluster = cluster
            self._ds_delay_percent_key = f"fault.http.{cluster}.delay.fixed_delay_percent"
            self._ds_abort_percent_key = f"fault.http.{cluster}.abort.abort_percent"
            self._ds_delay_duration_key = f"fault.http.{cluster}.delay.fixed_duration_ms"
            self._ds_abort_http_status_key = f"fault.http.{cluster}.abort.http_status"
            self._ds_abort_grpc_status_key = f"fault.http.{cluster}.abort.grpc_status"
        self._maybe_setup_response_rate_limit(headers)
        if self._maybe_setup_delay(headers):
            return STOP_ITERATION
        if self._maybe_abort(headers):
            return STOP_ITERATION
        return CONTINUE

    def decode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        # While delayed, the body waits (Envoy: StopIterationAndWatermark).
        return CONTINUE if self._delay_timer is None else STOP_ITERATION_AND_BUFFER

    # -- encoding -----------------------------------------------------------------------
    def encode_headers(self, headers: ResponseHeaders, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def encode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        limiter = self._limiter
        if limiter is None:
            return CONTINUE
        limiter.write_data(data, end_stream)
        return STOP_ITERATION_NO_BUFFER

    def on_destroy(self) -> None:
        if self._delay_timer is not None:
            self._delay_timer.cancel()
            self._delay_timer = None
        if self._limiter is not None:
            self._limiter.destroy()
        if self._fault_active:
            self._fault_active = False
            self.config.stats.active_faults.dec()

    # -- qualification ------------------------------------------------------------------
    def _matches_upstream_cluster(self, headers: RequestHeaders) -> bool:
        """The route's cluster (for weighted clusters, the one this stream's random value picks,
        as the router will) must be ``upstream_cluster``; a direct response or redirect never is."""
        route = self.cb.route
        if route is None or route.action != "route":
            return False
        name, _ = route.pick_cluster(headers, self.config.runtime, self.cb.random_value)
        return name == self.settings.upstream_cluster

    def _random(self) -> int:
        return self.cb.config.rng.getrandbits(64)

    # -- the three faults ---------------------------------------------------------------
    def _maybe_setup_response_rate_limit(self, headers: RequestHeaders) -> None:
        rl = self.settings.response_rate_limit
        if rl is None:
            return
        cfg = self.config
        # Envoy has no per-downstream-cluster key for this one.
        if not cfg.feature_enabled(self.settings.response_rate_limit_percent_runtime, rl.percentage(headers), self._random()):
            return
        kbps = rl.rate_kbps(headers)
        if kbps is None or not self._try_inc_active_faults():
            return
        cfg.stats.response_rl_injected.inc()
        stream = self.cb
        self._limiter = StreamRateLimiter(
            kbps,
            cfg.buffer_limit,
            self._write_paced,
            stream.call_later,
            cfg.now_ns,
            pause=stream.on_encoder_filter_above_write_buffer_high_watermark,
            resume=stream.on_encoder_filter_below_write_buffer_low_watermark,
        )

    def _write_paced(self, data: bytes, end_stream: bool) -> None:
        self.cb.inject_encoded_data(data, end_stream)

    def _delay_ms(self, headers: RequestHeaders) -> int | None:
        delay = self.settings.delay
        if delay is None:
            return None
        cfg = self.config
        key = self._ds_delay_percent_key or self.settings.delay_percent_runtime
        if not cfg.feature_enabled(key, delay.percentage(headers), self._random()):
            return None
        configured = delay.duration_ms(headers)
        if configured is None:
            return None  # header_delay without a usable header
        ms = cfg.get_integer(self.settings.delay_duration_runtime, configured)
        if self._ds_delay_duration_key:
            ms = cfg.get_integer(self._ds_delay_duration_key, ms)
        return ms if ms > 0 else None

    def _maybe_setup_delay(self, headers: RequestHeaders) -> bool:
        ms = self._delay_ms(headers)
        if ms is None or not self._try_inc_active_faults():
            return False
        self._delay_timer = self.cb.call_later(ms / 1000, self._post_delay_injection)
        cfg = self.config
        if self._downstream_cluster and not self.settings.disable_downstream_cluster_stats:
            cfg.downstream_counter(self._downstream_cluster, "delays_injected").inc()
        cfg.stats.delays_injected.inc()
        self.cb.stream_info.set_flag(ResponseFlag.DELAY_INJECTED)
        return True

    def _abort_status(self, headers: RequestHeaders) -> tuple[int | None, int | None]:
        """``(http_status, grpc_status)`` if this request is to be aborted, else ``(None, None)``.
        A gRPC status alone aborts with HTTP 200."""
        abort = self.settings.abort
        if abort is None:
            return None, None
        cfg = self.config
        key = self._ds_abort_percent_key or self.settings.abort_percent_runtime
        if not cfg.feature_enabled(key, abort.percentage(headers), self._random()):
            return None, None
        http = abort.http_status_code(headers)
        if http is not None:
            # The downstream-cluster key falls back to the configured status, not the global key.
            code = cfg.get_integer(self.settings.abort_http_status_runtime, http)
            if self._ds_abort_http_status_key:
                code = cfg.get_integer(self._ds_abort_http_status_key, http)
            return code, None
        grpc = abort.grpc_status_code(headers)
        if grpc is not None:
            code = cfg.get_integer(self.settings.abort_grpc_status_runtime, grpc)
            if self._ds_abort_grpc_status_key:
                code = cfg.get_integer(self._ds_abort_grpc_status_key, grpc)
            return 200, code
        return None, None

    def _maybe_abort(self, headers: RequestHeaders) -> bool:
        http, grpc = self._abort_status(headers)
        if http is None or not self._try_inc_active_faults():
            return False
        self._abort_with_status(http, grpc)
        return True

    def _post_delay_injection(self) -> None:
        self._delay_timer = None
        stream = self.cb
        if stream.destroyed:
            return
        # Delays can be followed by aborts: drawn again now.
        http, grpc = self._abort_status(stream.request_headers)
        if http is not None:
            self._abort_with_status(http, grpc)
            return
        # The delay is over; unless a rate limit is configured, the stream stops counting.
        if self.settings.response_rate_limit is None and self._fault_active:
            self._fault_active = False
            self.config.stats.active_faults.dec()
        stream.continue_decoding()

    def _abort_with_status(self, http: int, grpc: int | None) -> None:
        cfg = self.config
        if self._downstream_cluster and not self.settings.disable_downstream_cluster_stats:
            cfg.downstream_counter(self._downstream_cluster, "aborts_injected").inc()
        cfg.stats.aborts_injected.inc()
        stream = self.cb
        stream.stream_info.set_flag(ResponseFlag.FAULT_INJECTED)
        # (A gRPC request gets the connection manager's trailers-only reply, with grpc_status.)
        stream.send_local_reply(http, ABORT_BODY, ABORT_DETAILS, ResponseFlag.FAULT_INJECTED, grpc_status=grpc)

    # -- max_active_faults --------------------------------------------------------------
    def _try_inc_active_faults(self) -> bool:
        """A stream charges one active fault however many it injects; a new one is refused
        (``faults_overflow``) when ``active_faults`` has reached the limit."""
        if self._fault_active:
            return True
        cfg = self.config
        s = self.settings
        limit = cfg.get_integer(s.max_active_faults_runtime, s.max_active_faults if s.max_active_faults is not None else UINT64_MAX)
        if cfg.stats.active_faults.value >= limit:
            cfg.stats.faults_overflow.inc()
            return False
        cfg.stats.active_faults.inc()
        self._fault_active = True
        return True


def fault_factory(config: FaultFilterConfig) -> Any:
    def create(stream: ActiveStreamFilter) -> FaultFilter:
        return FaultFilter(config, stream)

    return create
