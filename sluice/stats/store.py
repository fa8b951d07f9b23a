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

import math
from collections.abc import Callable
from typing import ClassVar

SampleQueue = list[tuple[str, int]]
"""Histogram samples ``(full name, integer value)`` waiting for the stats sinks."""


class Counter:
    """A monotonically increasing count; ``latch`` gives the delta since the last flush."""

    __slots__ = ("name", "value", "_latched", "_reset")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0
        """Hot paths may bump ``value`` directly; ``used`` is derived from it."""
        self._latched = 0
        self._reset = False

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    @property
    def used(self) -> bool:
        """Envoy's "used" flag: written at least once since start (a reset keeps it)."""
        return self.value != 0 or self._reset

    def reset(self) -> None:
        if self.value:
            self._reset = True
        self.value = 0
        self._latched = 0

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


# Envoy's default histogram bucket bounds (source/common/stats/histogram_impl.h); ``/stats``
# shows them with ``histogram_buckets=cumulative|disjoint``.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
    600000, 1800000, 3600000,
)  # fmt: skip

QUANTILES: tuple[float, ...] = (0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1)

# A log-linear bucket, as circllhist keys it: ``(exp, val)`` is the range
# ``[val/10 * 10**exp, (val+1)/10 * 10**exp)`` with ``10 <= val <= 99`` (two significant digits).
# Zero has its own bucket, which sorts first.
BucketKey = tuple[int, int]
ZERO_BUCKET: BucketKey = (-1, 0)


def bucket_key(value: int) -> BucketKey:
    """The circllhist bucket of a non-negative integer sample (Envoy records ``uint64``)."""
    if value <= 0:
        return ZERO_BUCKET
    if value < 10:
        return (0, value * 10)
    exp = len(str(value)) - 1
    return (exp, value // 10 ** (exp - 1))


def bucket_bounds(key: BucketKey) -> tuple[float, float]:
    """``(lower_bound, width)`` of a bucket, computed the way circllhist does (same doubles)."""
    if key == ZERO_BUCKET:
        return 0.0, 0.0
    exp, val = key
    scale = 10.0**exp
    return (val / 10.0) * scale, scale / 10.0


def _quantiles(buckets: dict[BucketKey, int]) -> list[float]:
    """Envoy's quantiles of a bucketed histogram; NaN for each when it is empty.

    Observed on Envoy 1.40 (libcircllhist): the q-quantile is the sample of rank
    ``k = max(1, ceil(q * n))``; the ``c`` samples of a bucket ``[lo, lo + w)`` are taken to sit
    evenly inside it, the j-th at ``lo + w * j / (c + 1)``; samples of the zero bucket are 0.
    """
    total = sum(buckets.values())
    if total == 0:
        return [math.nan] * len(QUANTILES)
    ordered = sorted(buckets.items())
    out: list[float] = []
    i = 0
    below = 0  # samples in the buckets before ordered[i]
    for q in QUANTILES:
        rank = max(1, math.ceil(q * total))
        while i < len(ordered) - 1 and below + ordered[i][1] < rank:
            below += ordered[i][1]
            i += 1
        key, count = ordered[i]
        lower, width = bucket_bounds(key)
        out.append(0.0 if key == ZERO_BUCKET else lower + width * (rank - below) / (count + 1))
    return out


def _count_below(buckets: dict[BucketKey, int], bound: float) -> int:
    """Samples whose bucket starts at or below ``bound`` (circllhist's approximate count)."""
    return sum(c for k, c in buckets.items() if bucket_bounds(k)[0] <= bound)


class Histogram:
    """A distribution of recorded integer values (milliseconds, bytes or counts), as Envoy keeps it.

    Samples go into log-linear buckets with two significant digits (circllhist). Recording
    fills the pending set; :meth:`merge` - Envoy's stats flush, every ``stats_flush_interval`` -
    turns the pending set into the *interval* histogram and adds it to the *cumulative* one.
    ``/stats`` shows both as of the last merge; a histogram is ``used`` once a merge saw samples.
    """

    __slots__ = ("name", "unit", "count", "sum", "_pending", "interval", "cumulative", "sink_queue", "sink_wake")

    def __init__(self, name: str, unit: str = "ms") -> None:
        self.name = name
        self.unit = unit
        self.count = 0
        self.sum = 0.0
        self._pending: dict[BucketKey, int] = {}
        self.interval: dict[BucketKey, int] = {}
        self.cumulative: dict[BucketKey, int] = {}
        self.sink_queue: SampleQueue = []
        """Read only by :class:`SinkedHistogram` (which a histogram becomes once a sink exists):
        the store's one queue of samples for the sinks, and what to call when it stops being
        empty (the sinks' owner then takes the samples: sinks/fanout.py)."""
        self.sink_wake: Callable[[], None] | None = None

    def record(self, value: float) -> None:
        # Envoy records an integer: durations are truncated to whole milliseconds.
        v = int(value) if value > 0 else 0
        self.count += 1
        self.sum += v
        k = bucket_key(v)
        self._pending[k] = self._pending.get(k, 0) + 1

    def merge(self) -> None:
        """One stats flush: the pending samples become the interval and join the cumulative set."""
        self.interval = self._pending
        self._pending = {}
        for k, c in self.interval.items():
            self.cumulative[k] = self.cumulative.get(k, 0) + c

    @property
    def used(self) -> bool:
        return bool(self.cumulative)

    def interval_quantiles(self) -> list[float]:
        return _quantiles(self.interval)

    def cumulative_quantiles(self) -> list[float]:
        return _quantiles(self.cumulative)

    def interval_buckets(self) -> list[int]:
        """Per :data:`DEFAULT_BUCKETS` bound, the interval samples at or below it."""
        return [_count_below(self.interval, b) for b in DEFAULT_BUCKETS]

    def cumulative_buckets(self) -> list[int]:
        return [_count_below(self.cumulative, b) for b in DEFAULT_BUCKETS]

    def detailed(self, cumulative: bool) -> list[tuple[float, float, int]]:
        """``(lower_bound, width, count)`` of each non-empty bucket, in order."""
        src = self.cumulative if cumulative else self.interval
        return [(*bucket_bounds(k), c) for k, c in sorted(src.items()) if c]

    def cumulative_sample_count(self) -> int:
        return sum(self.cumulative.values())

    def cumulative_sample_sum(self) -> float:
        """circllhist's approximate sum: each sample counted at its bucket's midpoint."""
        total = 0.0
        for k, c in self.cumulative.items():
            lower, width = bucket_bounds(k)
            total += (lower + width / 2.0) * c
        return total

    def __repr__(self) -> str:
        return f"<Histogram {self.name} n={self.count}>"


class SinkedHistogram(Histogram):
    """A histogram whose samples also go to the stats sinks, each as it is recorded (Envoy sends
    histogram samples straight to ``onHistogramComplete``; they are not part of the flush).

    Same slots as :class:`Histogram`, so :meth:`Store.set_histogram_sink` turns existing
    histograms into this class in place (``__class__`` assignment): without a sink,
    :meth:`Histogram.record` pays nothing for the hook. With one, a sample costs one append to
    the store's queue (no call into the sinks here: this runs several times per request).
    """

    __slots__ = ()

    def record(self, value: float) -> None:
        # Histogram.record inlined (this runs several times per request).
        v = int(value) if value > 0 else 0
        self.count += 1
        self.sum += v
        k = bucket_key(v)
        pending = self._pending
        pending[k] = pending.get(k, 0) + 1
        queue = self.sink_queue
        queue.append((self.name, v))
        if len(queue) == 1:
            self.sink_wake()  # type: ignore[misc]  # set together with the class


class Store:
    """All stats of one server, by full name."""

    __slots__ = ("counters", "gauges", "histograms", "_sink_queue", "_sink_wake")

    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self.gauges: dict[str, Gauge] = {}
        self.histograms: dict[str, Histogram] = {}
        self._sink_queue: SampleQueue | None = None
        self._sink_wake: Callable[[], None] | None = None

    def set_histogram_sink(self, queue: SampleQueue, wake: Callable[[], None]) -> None:
        """From now on every histogram sample is also appended to ``queue``; ``wake`` is called
        when it goes from empty to non-empty (see SinkedHistogram)."""
        self._sink_queue, self._sink_wake = queue, wake
        for h in self.histograms.values():
            self._attach(h)

    def _attach(self, h: Histogram) -> None:
        assert self._sink_queue is not None
        h.sink_queue, h.sink_wake = self._sink_queue, self._sink_wake
        h.__class__ = SinkedHistogram

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
            if self._sink_queue is not None:
                self._attach(h)
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
