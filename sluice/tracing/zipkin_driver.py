"""``envoy.tracers.zipkin`` (``envoy.config.trace.v3.ZipkinConfig``): the driver that starts a
stream's span from its B3 headers, with its tracer and reporter.

Connection managers whose providers have the same config share one driver (Envoy's tracer
manager caches them by config), so one buffer and one flush timer serve them all — the zipkin
lab's service-a sends the spans of its three listeners in one POST.

Supported: ``collector_cluster``, ``collector_endpoint``, ``collector_endpoint_version``
``HTTP_JSON`` and ``HTTP_PROTO``, ``collector_hostname``, ``collector_service`` (its
``http_uri`` and ``request_headers_to_add``), ``trace_id_128bit``, ``shared_span_context``,
``split_spans_for_request``, ``trace_context_option`` (``USE_B3_WITH_W3C_PROPAGATION``: a
``traceparent`` read when there is no B3, and sent along). ``GRPC`` (which Envoy 1.40 itself does
not survive) is named as not implemented.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluice.errors import ConfigError, UnsupportedError
from sluice.tracing import b3
from sluice.tracing.zipkin_reporter import ZipkinReporter
from sluice.tracing.zipkin_span import Span, ZipkinTracer

if TYPE_CHECKING:
    from sluice.clock import TimeSource
    from sluice.http.headers import RequestHeaders
    from sluice.runtime import Runtime
    from sluice.stats.blocks import ZipkinTracerStats
    from sluice.upstream.cluster import Cluster

HTTP_JSON = 1
HTTP_PROTO = 2
GRPC = 3

_DEPRECATED_VERSION = (
    "type envoy.config.trace.v3.ZipkinConfig Using the default now-deprecated value DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE "
    "for enum 'envoy.config.trace.v3.ZipkinConfig.collector_endpoint_version' from file zipkin.proto. This enum value "
    "will be removed from Envoy soon so a non-default value must now be explicitly set."
)


def _parse_uri(uri: str) -> tuple[str, str]:
    """(host, path) of ``collector_service.http_uri.uri`` as Envoy's ``parseUri`` splits it: no
    scheme, all path; no path, ``/``."""
    scheme = uri.find("://")
    if scheme < 0:
        return "", uri
    rest = uri[scheme + 3 :]
    slash = rest.find("/")
    if slash < 0:
        return rest, "/"
    return rest[:slash], rest[slash:]


class ZipkinDriver:
    """One Zipkin provider: its tracer (ids, spans) and its reporter (buffer, POSTs)."""

    def __init__(
        self, tracer: ZipkinTracer, reporter: ZipkinReporter, node_id: str, split_spans: bool = False, w3c: bool = False
    ) -> None:
        self.tracer = tracer
        self.w3c = w3c
        """``trace_context_option: USE_B3_WITH_W3C_PROPAGATION``: a request without B3 headers
        joins its ``traceparent``'s trace, and ``traceparent`` is sent along with B3."""
        self.reporter = reporter
        self.node_id = node_id
        self.split_spans = split_spans
        """``split_spans_for_request``: the stream's span is a SERVER span whatever the
        listener's direction (checked with Envoy 1.40: no upstream span comes with it; those
        are ``spawn_upstream_span``'s)."""

    @classmethod
    def from_proto(
        cls,
        cfg: Any,
        path: str,
        *,
        get_cluster: Callable[[str], Cluster | None],
        runtime: Runtime,
        stats: ZipkinTracerStats,
        rng: random.Random,
        clock: TimeSource,
        node_id: str,
        service_cluster: str,
        local_ip: str,
    ) -> ZipkinDriver:
        version = cfg.collector_endpoint_version
        if version == 0:
            raise ConfigError(f"{path}.collector_endpoint_version: {_DEPRECATED_VERSION}")
        if version == GRPC:
            raise UnsupportedError(f"{path}.collector_endpoint_version: GRPC is not implemented (HTTP_JSON and HTTP_PROTO are)")
        extra_headers: list[tuple[str, str]] = []
        if cfg.HasField("collector_service"):
            # (preferred over the legacy fields: the cluster, host and path from its http_uri,
            # its request_headers_to_add on every POST, as Envoy's Driver reads them)
            service = cfg.collector_service
            cluster, field = service.http_uri.cluster, "collector_service.http_uri.cluster"
            hostname, endpoint = _parse_uri(service.http_uri.uri)
            hostname = hostname or cluster
            extra_headers = [(o.header.key.lower(), o.header.value) for o in service.request_headers_to_add]
        else:
            if not cfg.collector_cluster or not cfg.collector_endpoint:
                raise ConfigError(f"{path}: collector_cluster and collector_endpoint must be specified when not using collector_service")
            cluster, field = cfg.collector_cluster, "collector_cluster"
            hostname, endpoint = cfg.collector_hostname or cfg.collector_cluster, cfg.collector_endpoint
        if get_cluster(cluster) is None:
            raise ConfigError(f"{path}.{field}: envoy.tracers.zipkin: unknown cluster '{cluster}'")
        shared = cfg.shared_span_context.value if cfg.HasField("shared_span_context") else True
        reporter = ZipkinReporter(
            cluster, get_cluster, hostname, endpoint, version == HTTP_PROTO, shared, runtime, stats, local_ip, extra_headers
        )
        tracer = ZipkinTracer(
            service_cluster,
            local_ip,
            rng,
            cfg.trace_id_128bit,
            shared,
            reporter.report,
            clock,
        )
        return cls(tracer, reporter, node_id, cfg.split_spans_for_request, cfg.trace_context_option == 1)

    def start_span(
        self, headers: RequestHeaders, start_wall: float, traced: bool, egress: bool, found: dict[str, str] | None = None
    ) -> Span | None:
        """``Driver::startSpan`` (named after the authority until a decorator renames it), then
        the tracer's ``node_id`` tag; None for B3 headers that do not parse (a null span).
        ``found``: the request's first values of (at least) the B3 headers."""
        if found is None:
            found = b3.scan(headers)
        name = headers.authority or ""
        timestamp = int(start_wall * 1_000_000)
        if not (b3.B3 in found or b3.TRACE_ID in found or b3.SPAN_ID in found or b3.SAMPLED in found):
            # (the usual request at the edge: a root span; a parent id alone says nothing)
            parent = headers.get(b3.TRACEPARENT) if self.w3c else None
            ctx = b3.from_traceparent(parent) if parent is not None else None
            if ctx is not None:
                span = self.tracer.start_child(egress, name, timestamp, ctx)
            else:
                span = self.tracer.start_root(egress, name, timestamp, traced)
        else:
            sampled = b3.extract_sampled(found)
            decision = traced if sampled is None else sampled
            try:
                ctx = b3.extract_context(found, decision)
            except b3.ExtractorError:
                return None
            if ctx is None:
                span = self.tracer.start_root(egress, name, timestamp, decision)
            else:
                span = self.tracer.start_child(egress, name, timestamp, ctx)
            span.single_header = b3.B3 in found
        span.w3c = self.w3c
        if self.node_id:
            span.tags["node_id"] = self.node_id
        return span
