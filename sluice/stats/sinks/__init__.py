"""Stats sinks: where the server's periodic flush sends counters and gauges (Envoy's ``Stats::Sink``).

A sink gets two calls (``envoy/stats/sink.h``):

- :meth:`Sink.flush` once per stats flush with a :class:`~sluice.stats.sinks.snapshot.Snapshot`
  (counter deltas since the previous flush, gauge values);
- :meth:`Sink.on_histogram` for every histogram sample as it is recorded - histograms are not
  flushed, the store hands each sample to the sinks (:meth:`Store.add_histogram_sink`).

A sink MUST NOT block or raise into its caller: the flush runs on the event loop and the
histogram hook on the request path, so a sink target that is down or slow costs at most a
dropped metric (counted by the sink), never a request.
"""

from __future__ import annotations

from typing import Protocol

from sluice.stats.sinks.snapshot import Snapshot


class Sink(Protocol):
    def flush(self, snapshot: Snapshot) -> None: ...

    def on_histogram(self, name: str, value: int) -> None: ...

    async def close(self, timeout: float) -> None:
        """Send what is buffered (at most ``timeout`` seconds) and release the socket."""
        ...


__all__ = ["Sink", "Snapshot"]
