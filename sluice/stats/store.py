"""The stats store: named counters, gauges and histograms, as Envoy keeps them.

Rules (after Envoy's ``source/docs/stats.md``):
- Every subsystem declares its stats once, at config time, as a :class:`StatsBlock` subclass whose
  class attributes list the names exactly as Envoy spells them. The hot path only bumps handles
  (``self._stats.upstream_rq_total.inc()``); it never builds a stat name from strings.
- Names are the full dotted Envoy names (``cluster.demoappv10.upstream_rq_200``).
- Dynamic names that Envoy also creates lazily (``upstream_rq_<code>``) are looked up through a
  per-scope cache so that each distinct name is formatted once.
"""

from __future__ import annotations

import bisect
import math
from typing import ClassVar


class Counter:
    """A monotonically increasing count; ``latch`` gives the delta since the last flush."""

    __slots__ = ("name", "value", "_latched", "used")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0
        self._latched = 0
        self.used = False

    def inc(self, amount: int = 1) -> None:
        self.value += amount
        self.used = True

    def latch(self) -> int:
        delta = self.value - self._latched
        self._latched = self.value
        return delta

    def __repr__(self) -> str:
        return f"<Counter {self.name}={self.value}>"


class Gauge:
    """A value that goes up and down. ``accumulate`` gauges sum across hot restarts in Envoy."""

    __slots__ = ("name", "value", "used")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0
        self.used = False

    def inc(self, amount: int = 1) -> None:
        self.value += amount
        self.used = True

    def dec(self, amount: int = 1) -> None:
        self.value -= amount
        self.used = True

    def set(self, value: int) -> None:
        self.value = value
        self.used = True

    def __repr__(self) -> str:
        return f"<Gauge {self.name}={self.value}>"


# Envoy's default histogram bucket bounds (source/common/stats/histogram_impl.h).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
    600000, 1800000, 3600000,
)  # fmt: skip

QUANTILES: tuple[float, ...] = (0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1)


class Histogram:
    """A distribution of recorded values (milliseconds or bytes).

    Envoy keeps an interval histogram (since the last flush) and a cumulative one. We keep the
    raw samples of the current interval and a bounded, sorted reservoir of the cumulative
    samples, which is exact for the volumes a lab sees and cheap to record.
    """

    __slots__ = ("name", "unit", "interval", "cumulative", "count", "sum", "buckets", "used")

    MAX_SAMPLES: ClassVar[int] = 100_000

    def __init__(self, name: str, unit: str = "ms") -> None:
        self.name = name
        self.unit = unit
        self.interval: list[float] = []
        self.cumulative: list[float] = []
        self.count = 0
        self.sum = 0.0
        self.buckets = [0] * len(DEFAULT_BUCKETS)
        self.used = False

    def record(self, value: float) -> None:
        self.used = True
        self.count += 1
        self.sum += value
        if len(self.interval) < self.MAX_SAMPLES:
            self.interval.append(value)
        i = bisect.bisect_left(DEFAULT_BUCKETS, value)
        if i < len(self.buckets):
            self.buckets[i] += 1

    def merge_interval(self) -> list[float]:
        """Move the interval's samples into the cumulative set; return the interval samples."""
        samples = self.interval
        self.interval = []
        if samples:
            self.cumulative.extend(samples)
            if len(self.cumulative) > self.MAX_SAMPLES:
                del self.cumulative[: len(self.cumulative) - self.MAX_SAMPLES]
        return samples

    @staticmethod
    def quantiles(samples: list[float]) -> list[float]:
        """Quantiles at :data:`QUANTILES`, NaN for an empty set (as Envoy prints ``nan``)."""
        if not samples:
            return [math.nan] * len(QUANTILES)
        ordered = sorted(samples)
        n = len(ordered)
        out = []
        for q in QUANTILES:
            pos = q * (n - 1)
            lo = math.floor(pos)
            hi = min(lo + 1, n - 1)
            out.append(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))
        return out

    def __repr__(self) -> str:
        return f"<Histogram {self.name} n={self.count}>"


class Store:
    """All stats of one server, by full name."""

    __slots__ = ("counters", "gauges", "histograms")

    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self.gauges: dict[str, Gauge] = {}
        self.histograms: dict[str, Histogram] = {}

    def counter(self, name: str) -> Counter:
        c = self.counters.get(name)
        if c is None:
            c = self.counters[name] = Counter(name)
        return c

    def gauge(self, name: str) -> Gauge:
        g = self.gauges.get(name)
        if g is None:
            g = self.gauges[name] = Gauge(name)
        return g

    def histogram(self, name: str, unit: str = "ms") -> Histogram:
        h = self.histograms.get(name)
        if h is None:
            h = self.histograms[name] = Histogram(name, unit)
        return h

    def value(self, name: str) -> int:
        """A counter's or gauge's current value (0 when it does not exist); for tests and admin."""
        if name in self.counters:
            return self.counters[name].value
        if name in self.gauges:
            return self.gauges[name].value
        return 0


class StatsBlock:
    """A declared block of stats under one prefix.

    Subclasses list names in ``COUNTERS``, ``GAUGES`` and ``HISTOGRAMS``; each becomes an attribute
    holding the handle (dots in a name become underscores in the attribute).
    """

    COUNTERS: ClassVar[tuple[str, ...]] = ()
    GAUGES: ClassVar[tuple[str, ...]] = ()
    HISTOGRAMS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, store: Store, prefix: str) -> None:
        self._store = store
        self._prefix = prefix
        self._dynamic: dict[str, Counter] = {}
        for name in self.COUNTERS:
            setattr(self, name.replace(".", "_"), store.counter(prefix + name))
        for name in self.GAUGES:
            setattr(self, name.replace(".", "_"), store.gauge(prefix + name))
        for name in self.HISTOGRAMS:
            unit = "b" if name.endswith("_bytes") else "ms"
            setattr(self, name.replace(".", "_"), store.histogram(prefix + name, unit))

    def dynamic_counter(self, suffix: str) -> Counter:
        """A counter whose name is only known at runtime (``upstream_rq_503``), cached."""
        c = self._dynamic.get(suffix)
        if c is None:
            c = self._dynamic[suffix] = self._store.counter(self._prefix + suffix)
        return c
