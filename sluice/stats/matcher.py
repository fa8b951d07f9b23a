"""``stats_config.stats_matcher``: stats Envoy never creates, and the null stats that stand in.

Envoy 1.40 (``source/common/stats/stats_matcher_impl.cc``, ``thread_local_store.cc``):
- ``reject_all: true`` rejects every stat, ``false`` none; ``exclusion_list`` rejects the names
  any of its string matchers match; ``inclusion_list`` rejects the names none matches. The
  matchers see the full stat name, before tag extraction.
- A rejected stat is never created: the subsystem gets the store's null counter, gauge or
  histogram, which ignores every update and reads 0. It is in no listing (``/stats``,
  ``/stats/prometheus``) and no sink flush.

Only :class:`MatchingStore` consults the matcher, and only when a name is first asked for, i.e.
when a subsystem declares its stats at config time (or a per-code counter's first use). A
bootstrap without a matcher gets the plain :class:`~sluice.stats.store.Store`: nothing changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sluice.stats.store import Counter, Gauge, Histogram, Store

StringMatch = Callable[[str], bool]


class NullCounter(Counter):
    """Envoy's ``NullCounterImpl``: every update is dropped, the value is always 0."""

    __slots__ = ()

    @property
    def value(self) -> int:
        return 0

    @value.setter
    def value(self, _: int) -> None:
        pass  # hot paths bump ``value`` directly; a rejected stat keeps nothing

    def inc(self, amount: int = 1) -> None:
        pass

    @property
    def used(self) -> bool:
        return False

    def latch(self) -> int:
        return 0


class NullGauge(Gauge):
    """Envoy's ``NullGaugeImpl``."""

    __slots__ = ()

    @property
    def value(self) -> int:
        return 0

    @value.setter
    def value(self, _: int) -> None:
        pass

    @property
    def used(self) -> bool:
        return False

    @used.setter
    def used(self, _: bool) -> None:
        pass

    def inc(self, amount: int = 1) -> None:
        pass

    def dec(self, amount: int = 1) -> None:
        pass

    def set(self, value: int) -> None:
        pass


class NullHistogram(Histogram):
    """A histogram that records nothing (Envoy's ``NullHistogramImpl``)."""

    __slots__ = ()

    def record(self, value: float) -> None:
        pass

    def merge(self) -> None:
        pass


NULL_COUNTER = NullCounter("")
NULL_GAUGE = NullGauge("")
NULL_HISTOGRAM = NullHistogram("")


def _string_match(m: Any) -> StringMatch:
    """One ``envoy.type.matcher.v3.StringMatcher`` (safe_regex is a full match, as in Envoy)."""
    kind = m.WhichOneof("match_pattern")
    fold = m.ignore_case and kind != "safe_regex"

    def norm(s: str) -> str:
        return s.lower() if fold else s

    if kind == "exact":
        exact = norm(m.exact)
        return lambda s: norm(s) == exact
    if kind == "prefix":
        prefix = norm(m.prefix)
        return lambda s: norm(s).startswith(prefix)
    if kind == "suffix":
        suffix = norm(m.suffix)
        return lambda s: norm(s).endswith(suffix)
    if kind == "contains":
        part = norm(m.contains)
        return lambda s: part in norm(s)
    if kind == "safe_regex":
        rx = re.compile(m.safe_regex.regex)
        return lambda s: rx.fullmatch(s) is not None
    raise ValueError(f"unsupported string matcher {kind!r}")


class StatsMatcher:
    """Whether a stat name is rejected; built once from ``stats_config.stats_matcher``."""

    __slots__ = ("_kind", "_matchers")

    def __init__(self, config: Any) -> None:
        self._kind = config.WhichOneof("stats_matcher")
        """``reject_all``, ``exclusion_list``, ``inclusion_list`` or None (accept all)."""
        self._matchers: tuple[StringMatch, ...] = ()
        if self._kind == "reject_all" and not config.reject_all:
            self._kind = None
        elif self._kind in ("exclusion_list", "inclusion_list"):
            self._matchers = tuple(_string_match(p) for p in getattr(config, self._kind).patterns)

    @property
    def accepts_all(self) -> bool:
        return self._kind is None

    def rejects(self, name: str) -> bool:
        if self._kind is None:
            return False
        if self._kind == "reject_all":
            return True
        hit = any(m(name) for m in self._matchers)
        return hit if self._kind == "exclusion_list" else not hit


class MatchingStore(Store):
    """A store that hands out null stats for the names its matcher rejects."""

    __slots__ = ("matcher",)

    def __init__(self, matcher: StatsMatcher) -> None:
        super().__init__()
        self.matcher = matcher

    def counter(self, name: str) -> Counter:
        if name not in self.counters and self.matcher.rejects(name):
            return NULL_COUNTER
        return super().counter(name)

    def gauge(self, name: str) -> Gauge:
        if name not in self.gauges and self.matcher.rejects(name):
            return NULL_GAUGE
        return super().gauge(name)

    def histogram(self, name: str, unit: str = "ms") -> Histogram:
        if name not in self.histograms and self.matcher.rejects(name):
            return NULL_HISTOGRAM
        return super().histogram(name, unit)


def store_for(bootstrap: Any) -> Store:
    """The stats store a bootstrap asks for: a :class:`MatchingStore` only with a matcher."""
    if bootstrap.HasField("stats_config") and bootstrap.stats_config.HasField("stats_matcher"):
        matcher = StatsMatcher(bootstrap.stats_config.stats_matcher)
        if not matcher.accepts_all:
            return MatchingStore(matcher)
    return Store()
