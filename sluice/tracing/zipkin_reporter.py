"""The Zipkin reporter (Envoy's ``ReporterImpl`` and ``SpanBuffer``): finished, sampled spans
are buffered and POSTed to the collector through its cluster.

A batch goes as soon as ``tracing.zipkin.min_flush_spans`` (runtime, 5) spans are buffered,
and a timer every ``tracing.zipkin.flush_interval_ms`` (5000) sends what is there (each tick
counts ``timer_flushed``; an empty buffer sends nothing). The POST is Envoy's async-client
request: ``host`` = ``collector_hostname`` or the cluster name, ``x-envoy-internal: true``,
the host's address in ``x-forwarded-for``, the ``tracing.zipkin.request_timeout`` (5000 ms) in
``x-envoy-expected-rq-timeout-ms``, the body chunked. A 202 counts ``reports_sent``, another
status ``reports_dropped`` — so does a timeout, a refused connection or a reset before the
answer, which Envoy's async client turns into its router's 504 or 503 — and a reset after the
answer began ``reports_failed``.

The collector never holds up traffic: the buffer holds at most as many spans as
``min_flush_spans`` said when the reporter was made (Envoy's ``SpanBuffer`` reserves that once
and drops a span when full), and the POSTs in flight are bounded by the collector cluster's
circuit breakers (an overflow is the async client's 503: a report dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluice.http.headers import RequestHeaders
from sluice.router.upstream_request import UpstreamRequest
from sluice.tracing.zipkin_encode import encode_json, encode_proto

if TYPE_CHECKING:
    from sluice.http.headers import ResponseHeaders
    from sluice.runtime import Runtime
    from sluice.stats.blocks import ZipkinTracerStats
    from sluice.tracing.zipkin_span import Span
    from sluice.upstream.cluster import Cluster


class _Report:
    """One POST in flight: its outcome goes to the stats once."""

    __slots__ = ("reporter", "req", "timer", "status", "ended")

    def __init__(self, reporter: ZipkinReporter) -> None:
        self.reporter = reporter
        self.req: UpstreamRequest | None = None
        self.timer: Any = None
        self.status = 0
        self.ended = False

    def _end(self, ok: bool) -> None:
        if self.ended:
            return
        self.ended = True
        self.req = None  # (the request points back here: no cycle left for the collector)
        if self.timer is not None:
            self.timer.cancel()
        r = self.reporter
        r.in_flight.discard(self)
        if not ok:
            r.stats.reports_failed.inc()
        elif self.status == 202:
            r.stats.reports_sent.inc()
        else:
            r.stats.reports_dropped.inc()

    def on_timeout(self) -> None:
        # Envoy's async client answers a timeout with the router's 504: a report "dropped".
        if self.req is not None and not self.ended:
            self.req.cluster.stats.upstream_rq_timeout.inc()
            self.req.cancel()
        self.status = 504
        self._end(True)

    # (UpstreamOwner)
    def on_upstream_headers(self, req: UpstreamRequest, headers: ResponseHeaders, end_stream: bool) -> None:
        self.status = headers.status
        if end_stream:
            self._end(True)

    def on_upstream_data(self, req: UpstreamRequest, data: bytes, end_stream: bool) -> None:
        if end_stream:
            self._end(True)

    def on_upstream_reset(self, req: UpstreamRequest, reason: str, before_connect: bool) -> None:
        # Before the answer began, the async client's router answers 503 (dropped); once it
        # began, the stream is reset (failed).
        if not req.response_started:
            self.status = 503
        self._end(not req.response_started)

    def on_upstream_writable(self, writable: bool) -> None:
        pass


class ZipkinReporter:
    """One provider's span buffer and its collector."""

    def __init__(
        self,
        cluster_name: str,
        get_cluster: Callable[[str], Cluster | None],
        hostname: str,
        endpoint: str,
        proto: bool,
        shared_span_context: bool,
        runtime: Runtime,
        stats: ZipkinTracerStats,
        local_ip: str,
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.cluster_name = cluster_name
        self.get_cluster = get_cluster
        self.hostname = hostname
        self.endpoint = endpoint
        self.proto = proto
        self.shared_span_context = shared_span_context
        self.runtime = runtime
        self.stats = stats
        self.local_ip = local_ip
        self.extra_headers = extra_headers or []
        """``collector_service.request_headers_to_add``: set on every POST (replacing ours)."""
        self.buffer: list[Span] = []
        self.capacity = runtime.get_integer("tracing.zipkin.min_flush_spans", 5)
        """The buffer's size, fixed when made (a later runtime change moves the flush point only)."""
        self.stopped = False
        self.in_flight: set[_Report] = set()
        self._timer: Any = None
        self._call_later: Callable[[float, Callable[[], None]], Any] | None = None

    def _min_flush(self) -> int:
        return self.runtime.get_integer("tracing.zipkin.min_flush_spans", 5)

    def start(self, call_later: Callable[[float, Callable[[], None]], Any]) -> None:
        """Arm the flush timer (the server's start: Envoy arms it when the tracer is made)."""
        self._call_later = call_later
        self._arm()

    def _arm(self) -> None:
        assert self._call_later is not None
        interval = self.runtime.get_integer("tracing.zipkin.flush_interval_ms", 5000)
        self._timer = self._call_later(interval / 1000, self._on_timer)

    def _on_timer(self) -> None:
        self.stats.timer_flushed.inc()
        self.flush()
        self._arm()

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stop(self) -> None:
        """Shutdown: the timer off, nothing sent any more, POSTs still in flight abandoned
        (counted as failed)."""
        self.stop_timer()
        self.stopped = True
        for report in list(self.in_flight):
            if report.req is not None:
                report.req.cancel()
            report._end(False)

    def report(self, span: Span) -> None:
        """A finished, sampled span (``reportSpan``)."""
        if self.stopped or len(self.buffer) >= self.capacity:
            return  # (SpanBuffer::addSpan: the buffer is full; Envoy drops the span silently)
        min_flush = self._min_flush()
        self.buffer.append(span)
        if len(self.buffer) == min_flush:
            self.flush()

    def flush(self) -> None:
        """``flushSpans``: POST what is buffered."""
        spans = self.buffer
        if not spans or self.stopped:
            return
        self.buffer = []
        self.stats.spans_sent.inc(len(spans))
        body = encode_proto(spans, self.shared_span_context) if self.proto else encode_json(spans, self.shared_span_context)
        cluster = self.get_cluster(self.cluster_name)
        if cluster is None:
            self.stats.reports_skipped_no_cluster.inc()
            return
        report = _Report(self)
        host = cluster.choose_host()
        if host is None:
            # (Envoy's async client answers 503 "no healthy upstream": a non-202 answer)
            cluster.stats.upstream_cx_none_healthy.inc()
            report.status = 503
            report._end(True)
            return
        timeout = self.runtime.get_integer("tracing.zipkin.request_timeout", 5000)
        headers = RequestHeaders("POST", self.endpoint, self.hostname)
        headers.add("content-type", "application/x-protobuf" if self.proto else "application/json")
        for name, value in self.extra_headers:
            # Envoy's setCopy: the old value out, the new one at the end (seen in the order)
            headers.remove(name)
            headers.add(name, value)
        # (what Envoy's async client and router add to the reporter's message)
        headers.add("x-envoy-internal", "true")
        headers.add("x-forwarded-for", self.local_ip)
        if timeout > 0:
            headers.add("x-envoy-expected-rq-timeout-ms", str(timeout))
        req = UpstreamRequest(report, cluster, host, headers, False, True)
        # The body is given before the connection: head and body go in one write (still
        # chunked, as Envoy's async client sends them), not two.
        req.send_data(body, True)
        report.req = req
        self.in_flight.add(report)
        if timeout > 0 and self._call_later is not None:
            report.timer = self._call_later(timeout / 1000, report.on_timeout)
        req.start()
