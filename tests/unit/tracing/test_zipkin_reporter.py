"""The Zipkin reporter's buffer (Envoy's ``SpanBuffer``: sized once, a full buffer drops), its
stop, a missing collector cluster, and the metadata tag's JSON as protobuf prints it."""

from __future__ import annotations

import random

from sluice.clock import REAL
from sluice.runtime import Layer, Runtime
from sluice.stats.blocks import ZipkinTracerStats
from sluice.stats.store import Store
from sluice.tracing.http_span import _dtoa, _protobuf_json
from sluice.tracing.zipkin_reporter import ZipkinReporter
from sluice.tracing.zipkin_span import ZipkinTracer


def setup(min_flush: str = "5") -> tuple[ZipkinReporter, ZipkinTracer, Runtime, ZipkinTracerStats]:
    rt = Runtime([Layer("admin", "admin")])
    rt.merge_admin({"tracing.zipkin.min_flush_spans": min_flush})
    stats = ZipkinTracerStats.declare(Store(), "tracing.zipkin.")
    reporter = ZipkinReporter("zipkin", lambda _name: None, "zipkin", "/api/v2/spans", False, True, rt, stats, "192.0.2.2")
    tracer = ZipkinTracer("svc", "192.0.2.2", random.Random(1), False, True, reporter.report, REAL)
    return reporter, tracer, rt, stats


def finish(tracer: ZipkinTracer, n: int) -> None:
    for _ in range(n):
        tracer.start_root(False, "op", 0, True).finish()


def test_a_batch_of_min_flush_spans_goes_and_without_a_cluster_is_counted_skipped() -> None:
    reporter, tracer, _rt, stats = setup("5")
    finish(tracer, 4)
    assert len(reporter.buffer) == 4 and stats.spans_sent.value == 0
    finish(tracer, 1)
    assert reporter.buffer == [] and stats.spans_sent.value == 5 and stats.reports_skipped_no_cluster.value == 1


def test_the_buffer_keeps_the_size_it_was_made_with() -> None:
    reporter, tracer, rt, stats = setup("5")
    rt.merge_admin({"tracing.zipkin.min_flush_spans": "10"})  # (later: moves the flush point only)
    finish(tracer, 7)
    assert len(reporter.buffer) == 5 and stats.spans_sent.value == 0  # (two dropped: full)
    reporter.flush()  # (what the timer does)
    assert stats.spans_sent.value == 5


def test_min_flush_spans_0_keeps_nothing_and_a_stopped_reporter_sends_nothing() -> None:
    reporter, tracer, _rt, stats = setup("0")
    finish(tracer, 3)
    assert reporter.buffer == [] and stats.spans_sent.value == 0
    reporter, tracer, _rt, stats = setup("5")
    finish(tracer, 2)
    reporter.stop()
    finish(tracer, 5)
    reporter.flush()
    assert stats.spans_sent.value == 0 and stats.reports_skipped_no_cluster.value == 0


def test_metadata_json_is_protobufs() -> None:
    assert [_dtoa(v) for v in (1.0, 1.5, 1e20, 1234567.0, 0.1, 123456789012345678.0)] == [
        "1", "1.5", "1e+20", "1234567", "0.1", "1.2345678901234568e+17",
    ]  # fmt: skip
    assert _protobuf_json({"b": [1.0, "ü", None, True], "a": {"x": 2.5}}) == '{"b":[1,"ü",null,true],"a":{"x":2.5}}'
