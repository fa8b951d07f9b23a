"""The stats store: named counters, gauges and histograms, as Envoy keeps them.

Rules (after Envoy's ``source/docs/stats.md``):
- Every subsystem declares its stats once, as a :class:`StatsBlock` subclass whose annotated
  fields are the stats, named as Envoy spells them (``upstream_rq_total: Counter``), and binds
  them at config time (``ClusterStats.declare(store, "cluster.app.")``). The hot path only bumps
  handles (``self._stats.upstream_rq_total.inc()``); it never builds a stat name from strings,
  and ``mypy --strict`` checks every handle it names (tests/unit/stats/test_blocks.py).
- Names are the full dotted Envoy names (``cluster.demoappv10.upstream_rq_200``).
- Dynamic names that Envoy also creates lazily (``upstream_rq_<code>``) are looked up through a
  per-scope cache so that each distinct name is formatted once.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from typing import ClassVar, Self

SampleQueue = list[tuple[str, int]]
"""Histogram samples ``(full name, integer value)`` waiting for the stats sinks."""


class Counter:
    """A monotonically increasing count; ``latch`` gives the delta since the last flush."""

    __slots__ = ("name", "value", "_latched", "_touched")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0
        """Hot paths may bump ``value`` directly; ``used`` is derived from it."""
        self._latched = 0
        self._touched = False
        """Used although the value may be 0: reset, or marked at creation (``mark_used``)."""

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    @property
    def used(self) -> bool:
        """Envoy's "used" flag: written at least once since start (a reset keeps it)."""
        return self.value != 0 or self._touched

    def mark_used(self) -> None:
        """Envoy's ``add(0)``: used from now on with its value unchanged."""
        self._touched = True

    def reset(self) -> None:
        if self.value:
            self._touched = True
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


def approx_sum(buckets: list[tuple[float, float, int]]) -> float:
    """circllhist's ``hist_approx_sum`` over ``(lower, width, count)`` buckets in order: each
    sample counted at its bucket's harmonic midpoint ``2·lo·hi / (lo + hi)`` (0 for the zero
    bucket); summed in bucket order, it matches Envoy's Prometheus ``_sum`` digit for digit."""
    total = 0.0
    for lower, width, count in buckets:
        if lower == 0.0:
            continue
        upper = lower + width
        total += (2.0 * lower * upper / (lower + upper)) * count
    return total


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
        """circllhist's approximate sum of the cumulative samples (Prometheus ``_sum``)."""
        return approx_sum(self.detailed(True))

    def interval_sample_sum(self) -> float:
        """The same over the last interval (the summary's ``_sum``)."""
        return approx_sum(self.detailed(False))

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
    """A declared block of stats under one prefix: Envoy's ``ALL_*_STATS`` struct of handles.

    A subclass is a slotted, keyword-only dataclass whose fields are the stats, each annotated
    ``Counter``, ``Gauge`` or ``Histogram`` (mypy checks every use of a handle). A field is named
    as Envoy names the stat; a dotted name is given with ``Annotated[Counter, "http1.x"]``.
    ``TAGS`` names the Envoy tags the block's prefix carries (``envoy.cluster_name``); Envoy's
    default extractors find them in every stat of the block (tests/unit/stats/test_blocks.py).
    ``declare`` builds the handles once, at config time; the hot path only bumps them.
    """

    __slots__ = ("_store", "_prefix", "_dynamic")

    TAGS: ClassVar[tuple[str, ...]] = ()
    USED_AT_CREATION: ClassVar[frozenset[str]] = frozenset()
    """Stats (by Envoy name) that Envoy writes when it creates the subsystem - a gauge set, often
    to 0, a counter added 0 - which marks them used: ``usedonly`` and the StatsD flush list them
    from the start."""

    def __init__(self, store: Store, prefix: str) -> None:
        # Only :meth:`declare` calls this (through the dataclass ``__init__`` of the subclass).
        self._store = store
        self._prefix = prefix
        self._dynamic: dict[str, Counter] = {}

    @classmethod
    def declare(cls, store: Store, prefix: str) -> Self:
        """The block's handles under ``prefix`` (``"cluster.app."``), created in the store."""
        handles: dict[str, Counter | Gauge | Histogram] = {}
        for attr, kind, name in stat_fields(cls):
            if kind is Counter:
                c = handles[attr] = store.counter(prefix + name)
                if name in cls.USED_AT_CREATION:
                    c.mark_used()
            elif kind is Gauge:
                g = handles[attr] = store.gauge(prefix + name)
                if name in cls.USED_AT_CREATION:
                    g.used = True
            else:
                handles[attr] = store.histogram(prefix + name, "b" if name.endswith("_bytes") else "ms")
        made: Self = typing.cast(typing.Any, cls)(**handles)
        StatsBlock.__init__(made, store, prefix)
        return made

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def store(self) -> Store:
        return self._store

    def dynamic_counter(self, suffix: str) -> Counter:
        """A counter whose name is only known at runtime (``upstream_rq_503``), cached."""
        c = self._dynamic.get(suffix)
        if c is None:
            c = self._dynamic[suffix] = self._store.counter(self._prefix + suffix)
        return c

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._prefix}*>"


StatKind = type[Counter] | type[Gauge] | type[Histogram]
_FIELDS: dict[type[StatsBlock], tuple[tuple[str, StatKind, str], ...]] = {}


def stat_fields(cls: type[StatsBlock]) -> tuple[tuple[str, StatKind, str], ...]:
    """``(attribute, kind, Envoy name)`` of each stat a block declares, in declaration order."""
    out = _FIELDS.get(cls)
    if out is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        specs: list[tuple[str, StatKind, str]] = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # every block is a dataclass
            if not f.init:  # per-block state that is not a stat (ClusterStats' code cache)
                continue
            hint = hints[f.name]
            name = f.name
            if typing.get_origin(hint) is typing.Annotated:
                hint, name = typing.get_args(hint)[:2]
            if hint not in (Counter, Gauge, Histogram):
                raise TypeError(f"{cls.__name__}.{f.name}: a stat is a Counter, Gauge or Histogram, not {hint!r}")
            specs.append((f.name, hint, name))
        out = _FIELDS[cls] = tuple(specs)
    return out


_B = typing.TypeVar("_B", bound=StatsBlock)


@typing.dataclass_transform(kw_only_default=True, eq_default=False)
def block(cls: type[_B]) -> type[_B]:
    """Makes a :class:`StatsBlock` subclass a slotted, keyword-only dataclass of its stats
    (attribute access stays a plain slot read on the hot path)."""
    return dataclasses.dataclass(slots=True, kw_only=True, eq=False, repr=False)(cls)
