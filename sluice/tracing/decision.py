"""The tracing decision of Envoy's connection manager
(``ConnectionManagerUtility::mutateTracingRequestHeader`` and ``chargeTracingStats``): made once
the route is known, from the request id's packed status, ``x-client-trace-id``,
``x-envoy-force-trace`` (which reaches here only on an internal request: the external one had
it removed) and the HCM's (or the route's) sampling fractions with their runtime keys
``tracing.client_enabled``, ``tracing.random_sampling`` and ``tracing.global_enabled``. The
decision is packed back into the x-request-id and counted in ``http.<prefix>.tracing.*``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from sluice.runtime import DENOMINATORS
from sluice.tracing import b3
from sluice.tracing.http_span import finalize_downstream_span
from sluice.tracing.request_id import Reason, UuidRequestId

if TYPE_CHECKING:
    from sluice.http.active_stream import ActiveStream
    from sluice.http.filter_manager import ActiveStreamFilter
    from sluice.http.headers import RequestHeaders, ResponseHeaders
    from sluice.http.stream_info import StreamInfo
    from sluice.runtime import Runtime
    from sluice.stats.blocks import HcmTracingStats
    from sluice.tracing.http_span import CustomTag
    from sluice.tracing.zipkin_driver import ZipkinDriver
    from sluice.tracing.zipkin_span import Span

Fraction = tuple[int, int]
"""(numerator, denominator) of an ``envoy.type.v3.FractionalPercent``."""

def fractional(p: Any) -> Fraction:
    """A ``FractionalPercent`` message as (numerator, denominator)."""
    return p.numerator, DENOMINATORS.get(p.denominator, 100)


class Sampling:
    """Client, random and overall sampling: the HCM's ``tracing`` or a route's ``tracing``."""

    __slots__ = ("client", "random", "overall")

    def __init__(self, client: Fraction, random_: Fraction, overall: Fraction) -> None:
        self.client = client
        self.random = random_
        self.overall = overall

    @classmethod
    def from_hcm(cls, t: Any) -> Sampling:
        """HCM ``tracing``: ``Percent`` values; client out of 100 (the numerator truncated, as
        Envoy's ``set_numerator``), random and overall out of 10 000, rounded."""

        def ten_thousand(field: str) -> Fraction:
            return (round(getattr(t, field).value * 100) if t.HasField(field) else 10_000), 10_000

        client = (int(t.client_sampling.value) if t.HasField("client_sampling") else 100), 100
        return cls(client, ten_thousand("random_sampling"), ten_thousand("overall_sampling"))

    @classmethod
    def from_route(cls, t: Any) -> Sampling:
        """A route's ``tracing``: ``FractionalPercent`` values, 100 % when unset."""

        def field(name: str) -> Fraction:
            return fractional(getattr(t, name)) if t.HasField(name) else (100, 100)

        return cls(field("client_sampling"), field("random_sampling"), field("overall_sampling"))


class TracingConfig:
    """An HCM's tracing: its sampling, request-id extension and direction, and its provider's
    driver (None: Envoy's null tracer, the decision without spans)."""

    __slots__ = ("sampling", "request_id", "egress", "driver", "max_path_tag_length", "custom_tags", "verbose", "spawn_upstream")

    def __init__(self, sampling: Sampling, request_id: UuidRequestId, egress: bool = False) -> None:
        self.sampling = sampling
        self.request_id = request_id
        self.egress = egress
        """The listener's ``traffic_direction`` is OUTBOUND (Envoy's operation name Egress;
        INBOUND and UNSPECIFIED are Ingress)."""
        self.driver: ZipkinDriver | None = None
        self.max_path_tag_length = 256
        self.custom_tags: list[tuple[str, CustomTag]] = []
        self.verbose = False
        """``verbose``: the stream's moments logged on its span."""
        self.spawn_upstream = False
        """``spawn_upstream_span``: each upstream request
        gets its own CLIENT span, and the stream's span is a SERVER span whatever the direction."""


DECORATOR_HEADER = "x-envoy-decorator-operation"
_SCANNED = frozenset({"x-request-id", "x-client-trace-id", "x-envoy-force-trace", DECORATOR_HEADER, *b3.NAMES})


def scan(headers: RequestHeaders) -> dict[str, str]:
    """The request headers the decision, the decorator and B3 read, each name's first value,
    in one pass."""
    found: dict[str, str] = {}
    for k, v in headers.entries:
        if k in _SCANNED and k not in found:
            found[k] = v
    return found


def decorate_request(
    headers: RequestHeaders,
    cfg: TracingConfig,
    decorator: tuple[str, bool] | None,
    span: Span | None = None,
    found: dict[str, str] | None = None,
) -> str | None:
    """The route ``decorator``'s effect on the request (``traceRequest``): the span takes the
    decorator's operation as its name; egress sends the operation upstream when it propagates;
    ingress takes the caller's operation from the header (a non-empty one then renames the
    span and overrides the decorator) and removes the header. The operation the response
    should carry (ingress, propagating, not overridden), or None."""
    if span is not None and decorator is not None and decorator[0]:
        span.name = decorator[0]
    operation = decorator[0] if decorator is not None and decorator[1] else None
    if cfg.egress:
        if operation is not None:
            headers.set(DECORATOR_HEADER, operation)
        return None
    override = headers.get(DECORATOR_HEADER) if found is None else found.get(DECORATOR_HEADER)
    if override is not None:
        headers.remove(DECORATOR_HEADER)
        if override:
            if span is not None:
                span.set_operation(override)
            return None
    return operation


def decide(
    headers: RequestHeaders,
    cfg: TracingConfig,
    route_sampling: Sampling | None,
    runtime: Runtime,
    rng: random.Random,
    info: StreamInfo | None = None,
    found: dict[str, str] | None = None,
) -> Reason:
    """The trace reason for a request, its x-request-id updated (``mutateTracingRequestHeader``;
    and ``info.request_id``, which %STREAM_ID% prints, when it has one). ``found``: the
    request's tracing headers from :func:`scan`, when the caller has them."""
    ext = cfg.request_id
    if not ext.use_for_sampling:
        return Reason.Sampling
    if found is None:
        found = scan(headers)
    rid = found.get("x-request-id")
    value = ext.integer(rid)
    if rid is None or value is None:
        return Reason.NotTraceable
    result = value % 10_000
    s = route_sampling or cfg.sampling
    reason = ext.reason(rid)  # (a request already traced keeps its status)
    if reason is Reason.NotTraceable:
        if "x-client-trace-id" in found and runtime.feature_enabled("tracing.client_enabled", *s.client, rng.getrandbits(64)):
            reason = Reason.ClientForced
        elif "x-envoy-force-trace" in found:
            reason = Reason.ServiceForced
        elif runtime.feature_enabled("tracing.random_sampling", *s.random, result):
            reason = Reason.Sampling
        if reason is not Reason.NotTraceable:
            rid = _set(headers, ext, rid, reason, info)
    if reason is not Reason.NotTraceable and not runtime.feature_enabled("tracing.global_enabled", *s.overall, result):
        reason = Reason.NotTraceable
        _set(headers, ext, rid, reason, info)
    return reason


def _set(headers: RequestHeaders, ext: UuidRequestId, rid: str, reason: Reason, info: StreamInfo | None) -> str:
    new = ext.with_reason(rid, reason)
    if new != rid:
        headers.set("x-request-id", new)
        if info is not None and info.request_id is not None:
            info.request_id = new
    return new


def charge(reason: Reason, stats: HcmTracingStats) -> None:
    """``ConnectionManagerImpl::chargeTracingStats``."""
    if reason is Reason.ClientForced:
        stats.client_enabled.inc()
    elif reason is Reason.HealthCheck:
        stats.health_check.inc()
    elif reason is Reason.Sampling:
        stats.random_sampling.inc()
    elif reason is Reason.ServiceForced:
        stats.service_forced.inc()
    else:
        stats.not_traceable.inc()


def trace_request(stream: ActiveStream, headers: RequestHeaders) -> str | None:
    """Envoy's ``traceRequest`` for a stream whose route is known (its HCM has ``tracing``):
    the decision, packed into the x-request-id (which %STREAM_ID% then prints) and counted,
    then the decorator's part; returns what :func:`decorate_response` needs."""
    cfg = stream.config
    assert cfg.tracing is not None and cfg.runtime is not None and cfg.tracing_stats is not None
    route = stream.route
    info = stream.stream_info
    found = scan(headers)
    reason = decide(headers, cfg.tracing, route.tracing if route else None, cfg.runtime, cfg.rng, info, found)
    info.trace_reason = reason
    charge(reason, cfg.tracing_stats)
    tracing = cfg.tracing
    span = None
    if tracing.driver is not None:
        traced = reason is Reason.Sampling or reason is Reason.ClientForced or reason is Reason.ServiceForced  # (TRACED)
        driver = tracing.driver
        egress = tracing.egress and not tracing.spawn_upstream and not driver.split_spans
        span = stream.span = driver.start_span(headers, info.start_wall, traced, egress, found)
    return decorate_request(headers, tracing, route.decorator if route else None, span, found)


def finish_span(stream: ActiveStream) -> None:
    """The stream is done: its span gets its tags and goes to the reporter
    (``finalizeDownstreamSpan``, from the stream's destructor in Envoy)."""
    span = stream.span
    tracing = stream.config.tracing
    assert span is not None and tracing is not None
    stream.span = None
    finalize_downstream_span(
        span,
        None if stream.headerless else stream.request_headers,
        stream.response_headers,
        stream.response_trailers,
        stream.stream_info,
        tracing.max_path_tag_length,
        tracing.custom_tags,
        tracing.verbose,
    )


def decorate_response(headers: ResponseHeaders, cfg: TracingConfig, operation: str | None) -> None:
    """The decorator's operation to the caller (ingress), or the upstream's taken out (egress)."""
    if operation is not None:
        headers.set(DECORATOR_HEADER, operation)
    elif cfg.egress:
        for e in headers.entries:
            if e[0] == DECORATOR_HEADER:  # (rarely there: look before rebuilding the list)
                headers.remove(DECORATOR_HEADER)
                break


def upstream_span(cb: ActiveStreamFilter, cluster: str, headers: RequestHeaders, attempt: int) -> Span | None:
    """An upstream request of a traced stream is about to start: its context goes into
    ``headers`` — its own span's (returned, for the request to finish) when each upstream
    request gets one, else the stream's."""
    span = cb.active_span
    tracing = cb.config.tracing
    if span is None or tracing is None:
        return None
    if not tracing.spawn_upstream:
        span.inject(headers)
        return None
    child = span.spawn_child(f"router {cluster} egress")
    if attempt > 1:
        child.tags["retry.count"] = str(attempt - 1)
    child.inject(headers)
    return child
