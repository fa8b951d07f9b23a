"""Zipkin spans and the tracer that starts them (Envoy's ``Zipkin::Span`` and ``Zipkin::Tracer``).

A span is started when the connection manager has made its tracing decision: a root span when
the request carries no B3 context (its id is the trace id), else one joined to the caller's
span. Egress (an OUTBOUND listener) makes a CLIENT span with a new id whose parent is the
caller's span; ingress makes a SERVER span that *shares* the caller's id and parent (Zipkin's
shared span, ``shared_span_context``, the default) or, with ``shared_span_context: false``, a
new id whose parent is the caller's. A span is reported when it finishes, if sampled.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from sluice.tracing import b3

if TYPE_CHECKING:
    from sluice.clock import TimeSource
    from sluice.http.headers import RequestHeaders

CLIENT = "CLIENT"
SERVER = "SERVER"


class Span:
    """One Zipkin span: ids, name, kind, times in µs, tags, and its end's annotation."""

    __slots__ = (
        "tracer", "trace_id_high", "trace_id", "id", "parent_id", "name", "kind", "timestamp", "_mono_start",
        "duration", "end_annotation", "tags", "logs", "sampled", "single_header", "w3c",
    )  # fmt: skip

    def __init__(self, tracer: ZipkinTracer, name: str, kind: str, timestamp: int) -> None:
        self.tracer = tracer
        self.trace_id_high = 0
        self.trace_id = 0
        self.id = 0
        self.parent_id = 0
        self.name = name
        self.kind = kind
        self.timestamp = timestamp
        """The start (µs since the epoch): the stream's start time, as Envoy's span."""
        self._mono_start = tracer.clock.monotonic()
        self.duration = 0
        self.end_annotation: tuple[int, str] | None = None
        """(µs, ``cr``/``ss``) once finished."""
        self.tags: dict[str, str] = {}
        self.logs: list[tuple[int, str]] = []
        self.sampled = True
        self.single_header = False
        """The caller sent a ``b3`` header: the span is propagated as one too."""
        self.w3c = False
        """``USE_B3_WITH_W3C_PROPAGATION``: ``traceparent`` is sent along."""

    def set_tag(self, name: str, value: str) -> None:
        # Envoy's Zipkin span drops a tag with an empty name or value (the ``zone`` of a node
        # without locality never shows).
        if name and value:
            self.tags[name] = value

    def set_operation(self, name: str) -> None:
        self.name = name

    def log(self, timestamp_us: int, event: str) -> None:
        self.logs.append((timestamp_us, event))

    def inject(self, headers: RequestHeaders) -> None:
        b3.inject(headers, self.trace_id_high, self.trace_id, self.id, self.parent_id, self.sampled, self.single_header)
        if self.w3c:
            b3.inject_traceparent(headers, self.trace_id_high, self.trace_id, self.id, self.sampled)

    def spawn_child(self, name: str) -> Span:
        """An upstream request's own CLIENT span (``spawnChild``, for ``spawn_upstream_span``): a
        new id whose parent is this span, started now."""
        tracer = self.tracer
        child = Span(tracer, name, CLIENT, int(tracer.clock.wall() * 1_000_000))
        child.id = tracer._random64()
        child.parent_id = self.id
        child.trace_id = self.trace_id
        child.trace_id_high = self.trace_id_high
        child.sampled = self.sampled
        child.single_header = self.single_header
        child.w3c = self.w3c
        return child

    def finish(self) -> None:
        """``Span::finish``: the ``cr``/``ss`` annotation at the system time, the duration from
        the monotonic clock, then the span to the reporter when sampled."""
        tracer = self.tracer
        clock = tracer.clock
        self.end_annotation = (int(clock.wall() * 1_000_000), "cr" if self.kind == CLIENT else "ss")
        self.duration = int((clock.monotonic() - self._mono_start) * 1_000_000)
        if self.sampled:
            tracer.report(self)


class ZipkinTracer:
    """Starts spans for one Zipkin provider (service name ``node.cluster``, the host's address)."""

    __slots__ = (
        "service_name", "address", "rng", "trace_id_128bit", "shared_span_context", "report", "clock", "endpoint_json",
    )  # fmt: skip

    def __init__(
        self,
        service_name: str,
        address: str,
        rng: random.Random,
        trace_id_128bit: bool,
        shared_span_context: bool,
        report: Callable[[Span], None],
        clock: TimeSource,
    ) -> None:
        self.service_name = service_name
        self.address = address
        self.rng = rng
        self.trace_id_128bit = trace_id_128bit
        self.shared_span_context = shared_span_context
        self.report = report
        self.clock = clock
        key = "ipv6" if ":" in address else "ipv4"
        self.endpoint_json: dict[str, object] = {"serviceName": service_name, key: address, "port": 0}
        """The spans' ``localEndpoint`` (one dict for all: the JSON encoder only reads it)."""

    def _random64(self) -> int:
        # (Envoy's ids come from its random generator, never 0: a 0 id means "unset")
        return self.rng.getrandbits(64) or 1

    def start_root(self, egress: bool, name: str, timestamp: int, sampled: bool) -> Span:
        """A span with no caller: its id is the trace id (the low half of a 128-bit one)."""
        span = Span(self, name, CLIENT if egress else SERVER, timestamp)
        span.id = span.trace_id = self.rng.getrandbits(64) or 1  # (_random64, inlined)
        if self.trace_id_128bit:
            span.trace_id_high = self._random64()
        span.sampled = sampled
        return span

    def start_child(self, egress: bool, name: str, timestamp: int, ctx: b3.SpanContext) -> Span:
        """A span joined to the caller's (``startSpan`` with a previous context)."""
        span = Span(self, name, CLIENT if egress else SERVER, timestamp)
        if egress or not self.shared_span_context:
            span.id = self._random64()
            span.parent_id = ctx.span_id
        else:
            span.id = ctx.span_id
            span.parent_id = ctx.parent_id
        span.trace_id = ctx.trace_id
        span.trace_id_high = ctx.trace_id_high
        span.sampled = ctx.sampled
        return span
