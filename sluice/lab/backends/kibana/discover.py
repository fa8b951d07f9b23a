"""What Discover asks Elasticsearch, as Kibana 7.14's Discover builds it in the browser: the
time range from the picker, the histogram's interval (``TimeBuckets`` with
``histogram:barTarget`` 50 and ``histogram:maxBars`` 100), the query, the newest
``discover:sampleSize`` (500) documents and a ``date_histogram`` aggregation named ``"2"``.

Documents come back as ``_source`` (the ``discover:searchFieldsFromSource`` mode), which any
Elasticsearch 7 returns the same way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sluice.lab.backends.kibana import datemath, esquery, kql

BAR_TARGET = 50
MAX_BARS = 100
SAMPLE_SIZE = 500

_S, _M, _H, _D = 1000, 60_000, 3_600_000, 86_400_000
_W, _MONTH, _YEAR = 7 * _D, 30 * _D, 365 * _D
_INF = float("inf")
# calc_auto_interval.ts: (bound, interval) in ms, descending.
BOUNDS: tuple[tuple[float, int], ...] = (
    (_INF, _YEAR), (_YEAR, _MONTH), (3 * _W, _W), (_W, _D), (24 * _H, 12 * _H), (6 * _H, 3 * _H), (2 * _H, _H),
    (45 * _M, 30 * _M), (20 * _M, 10 * _M), (9 * _M, 5 * _M), (3 * _M, _M), (45 * _S, 30 * _S), (15 * _S, 10 * _S),
    (7.5 * _S, 5 * _S), (5 * _S, _S), (500, 100),
)
UNIT_MS = {"y": _YEAR, "M": _MONTH, "w": _W, "d": _D, "h": _H, "m": _M, "s": _S, "ms": 1}
UNIT_NAMES = {"y": "year", "M": "month", "w": "week", "d": "day", "h": "hour", "m": "minute", "s": "second", "ms": "millisecond"}
CALENDAR = {"y", "M", "w"}
INTERVAL_OPTIONS = ("auto", "ms", "s", "m", "h", "d", "w", "M", "y")


def auto_near(target: int, duration_ms: float) -> int:
    per = duration_ms / target if target else 0.0
    for i, (bound, _interval) in enumerate(BOUNDS):
        if bound <= per:
            return BOUNDS[i - 1][1]
    return max(int(per), 1)


def auto_less_than(max_buckets: int, duration_ms: float) -> int:
    per = duration_ms / max_buckets if max_buckets else 0.0
    for _bound, interval in BOUNDS:
        if interval <= per:
            return interval
    return max(int(per), 1)


@dataclass(frozen=True, slots=True)
class Interval:
    ms: int
    es_value: int
    es_unit: str
    scaled: bool

    @property
    def expression(self) -> str:
        return f"{self.es_value}{self.es_unit}"

    @property
    def description(self) -> str:
        name = UNIT_NAMES[self.es_unit]
        return name if self.es_value == 1 else f"{self.es_value} {name}s"

    @property
    def es_param(self) -> dict[str, str]:
        # parseEsInterval: w/M/y, and 1d, are calendar intervals; the rest are fixed.
        calendar = self.es_unit in CALENDAR or (self.es_unit == "d" and self.es_value == 1)
        return {"calendar_interval" if calendar else "fixed_interval": self.expression}


def normalize(ms: int) -> tuple[int, str]:
    """convertDurationToNormalizedEsInterval: the largest unit that divides evenly (calendar
    units only as one of them)."""
    for unit in ("y", "M", "w", "d", "h", "m", "s", "ms"):
        size = UNIT_MS[unit]
        if ms % size == 0:
            count = ms // size
            if unit in CALENDAR and count != 1:
                continue
            return count, unit
    return ms, "ms"


def interval_for(choice: str, duration_ms: float) -> Interval:
    """Discover's interval select (``auto`` or a unit) for a time range of ``duration_ms``."""
    if choice not in INTERVAL_OPTIONS:
        raise ValueError(f"unknown interval {choice!r} (one of {', '.join(INTERVAL_OPTIONS)})")
    ms = auto_near(BAR_TARGET, duration_ms) if choice == "auto" else UNIT_MS[choice]
    scaled = False
    if duration_ms > 0:
        least = auto_less_than(MAX_BARS, duration_ms)
        if ms < least:
            ms, scaled = least, True
    value, unit = normalize(ms)
    return Interval(ms, value, unit, scaled)


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: dt.datetime
    end: dt.datetime

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start).total_seconds() * 1000


def time_range(start: str, end: str, *, now: dt.datetime, tz: dt.tzinfo) -> TimeRange:
    a = datemath.parse(start, now=now, tz=tz)
    b = datemath.parse(end, now=now, tz=tz, round_up=True)
    if b < a:
        raise datemath.DateMathError("The end of the time range is before its start")
    return TimeRange(a, b)


def search_body(
    *,
    time_field: str | None,
    fields: list[kql.Field],
    query: str,
    language: str,
    span: TimeRange | None,
    interval: Interval | None,
    time_zone: str,
    size: int = SAMPLE_SIZE,
) -> dict[str, Any]:
    filters = []
    if time_field and span is not None:
        filters.append(esquery.time_filter(time_field, datemath.iso(span.start), datemath.iso(span.end)))
    body: dict[str, Any] = {
        "version": True,
        "size": size,
        "sort": [{time_field: {"order": "desc", "unmapped_type": "boolean"}}] if time_field else [{"_score": {"order": "desc"}}],
        "_source": {"excludes": []},
        "stored_fields": ["*"],
        "script_fields": {},
        "track_total_hits": True,
        "query": esquery.build(query, language, fields, filters, time_zone=time_zone),
    }
    if time_field and interval is not None:
        histogram = {"field": time_field, **interval.es_param, "time_zone": time_zone, "min_doc_count": 1}
        body["aggs"] = {"2": {"date_histogram": histogram}}
    return body
