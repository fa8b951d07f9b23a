"""One stats flush's view of the store (Envoy's ``MetricSnapshotImpl``).

Counters are *latched*: each carries its delta since the previous snapshot, and every used
counter is included, a delta of 0 too. Gauges carry their current value. Only used stats are
in a snapshot (what ``/stats?usedonly`` lists, histograms aside), in the store's order -
Envoy's order is unsorted as well.
"""

from __future__ import annotations

from sluice.stats.store import Store


class Snapshot:
    __slots__ = ("counters", "gauges")

    def __init__(self, counters: list[tuple[str, int]], gauges: list[tuple[str, int]]) -> None:
        self.counters = counters
        """``(name, delta since the previous snapshot)`` of every used counter."""
        self.gauges = gauges
        """``(name, value)`` of every used gauge."""

    def __repr__(self) -> str:
        return f"<Snapshot counters={len(self.counters)} gauges={len(self.gauges)}>"


def take_snapshot(store: Store) -> Snapshot:
    """Latch every used counter and read every used gauge."""
    counters = [(c.name, c.latch()) for c in store.counters.values() if c.used]
    gauges = [(g.name, g.value) for g in store.gauges.values() if g.used]
    return Snapshot(counters, gauges)
