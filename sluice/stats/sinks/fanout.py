"""Histogram samples from the store to the sinks, one hand-over per loop turn.

Recording a sample (``SinkedHistogram.record``) only appends to :attr:`HistogramFanout.queue`;
the first sample of a window schedules :meth:`HistogramFanout.drain` :data:`SAMPLE_WINDOW_S`
later, which gives the whole batch to every sink. The request path therefore never calls into a
sink, and a TCP sink makes one ``send`` per window, not one per sample or per loop turn: on
loopback a ``send`` costs about as much as a proxied request's Python work (measured with
``bench/statsd_sink.py``). The flush drains first, so samples recorded before a flush are sent
before it, and shutdown drains what is left.

# Divergence from Envoy: a sample leaves up to SAMPLE_WINDOW_S after it is recorded; Envoy
# writes it on the worker's next dispatcher pass. StatsD servers aggregate per flush interval
# (seconds), so the delay is not visible in what they report.
"""

from __future__ import annotations

from collections.abc import Sequence

from sluice.clock import REAL, TimeSource
from sluice.stats.sinks import Sink
from sluice.stats.store import SampleQueue, Store

SAMPLE_WINDOW_S = 0.02


class HistogramFanout:
    __slots__ = ("sinks", "queue", "clock")

    def __init__(self, sinks: Sequence[Sink], clock: TimeSource = REAL) -> None:
        self.sinks = tuple(sinks)
        self.queue: SampleQueue = []
        self.clock = clock

    def attach(self, store: Store) -> None:
        store.set_histogram_sink(self.queue, self.wake)

    def wake(self) -> None:
        # Once per window (the first sample), so the running-loop lookup inside REAL costs little.
        try:
            self.clock.call_later(SAMPLE_WINDOW_S, self.drain)
        except RuntimeError:  # recorded outside the loop (start-up, tests): hand over now
            self.drain()

    def drain(self) -> None:
        if not self.queue:
            return
        samples = self.queue.copy()
        self.queue.clear()  # in place: every histogram holds this list
        for sink in self.sinks:
            sink.on_histograms(samples)
