"""Stats sinks: where the server's periodic flush sends counters and gauges (Envoy's ``Stats::Sink``).

A sink gets two calls (``envoy/stats/sink.h``):

- :meth:`Sink.flush` once per stats flush with a :class:`~sluice.stats.sinks.snapshot.Snapshot`
  (counter deltas since the previous flush, gauge values);
- :meth:`Sink.on_histograms` with the histogram samples recorded since the loop's last turn
  (Envoy's ``onHistogramComplete``, per sample): histograms are not flushed, every sample is
  sent as it is recorded. :class:`~sluice.stats.sinks.fanout.HistogramFanout` collects them.

A sink MUST NOT block or raise into its caller: both calls run on the event loop, so a sink
target that is down or slow costs at most dropped metrics (counted by the sink), never a request.
"""

from __future__ import annotations

from typing import Protocol

from sluice.stats.sinks.snapshot import Snapshot


class Sink(Protocol):
    def flush(self, snapshot: Snapshot) -> None: ...

    def on_histograms(self, samples: list[tuple[str, int]]) -> None:
        """``(histogram full name, integer sample)`` in the order they were recorded."""
        ...

    async def close(self, timeout: float) -> None:
        """Send what is buffered (at most ``timeout`` seconds) and release the socket."""
        ...


__all__ = ["Sink", "Snapshot"]
