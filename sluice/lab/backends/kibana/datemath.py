"""``@elastic/datemath`` as the time picker uses it: ``now-15m``, ``now/d``, ``now-1d/d``,
``2021-09-23T00:00:00.000Z||+1h`` and plain ISO dates, in the browser's time zone (rounding to
days or weeks follows the wall clock there; weeks start on Sunday, moment's ``en`` locale). The
end of a range rounds up (``now/d`` as an end is the last millisecond of today).
"""

from __future__ import annotations

import calendar
import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UNITS = ("y", "M", "w", "d", "h", "m", "s", "ms")
UTC = dt.UTC


class DateMathError(ValueError):
    pass


def zone(name: str | None) -> dt.tzinfo:
    if not name or name in ("UTC", "Etc/UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def parse(text: str, *, now: dt.datetime, tz: dt.tzinfo = UTC, round_up: bool = False) -> dt.datetime:
    """A time picker value → an aware datetime (UTC). Raises :class:`DateMathError`."""
    text = text.strip()
    if not text:
        raise DateMathError("empty date")
    if text.startswith("now"):
        time = now.astimezone(tz)
        math = text[3:]
    else:
        anchor, sep, math = text.partition("||")
        time = _absolute(anchor, tz)
    if math:
        time = _apply(math, time, round_up, text)
    return time.astimezone(UTC)


def _absolute(text: str, tz: dt.tzinfo) -> dt.datetime:
    raw = text.strip()
    try:
        value = dt.datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise DateMathError(f"Invalid date: {text}") from None
    return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)


def _apply(math: str, time: dt.datetime, round_up: bool, text: str) -> dt.datetime:
    i, n = 0, len(math)
    while i < n:
        op = math[i]
        i += 1
        if op not in "/+-":
            raise DateMathError(f"Invalid date math: {text}")
        start = i
        while i < n and math[i].isdigit():
            i += 1
        num = int(math[start:i]) if i > start else 1
        if op == "/" and num != 1:
            raise DateMathError(f"Invalid date math: {text} (rounding takes a single unit)")
        j = i
        while j < n and math[j].isalpha():
            j += 1
        unit = math[i:j]
        # moment's units are case sensitive for M (month) and m (minute) only.
        if unit not in UNITS:
            raise DateMathError(f"Invalid date math: {text} (unit {unit or '?'})")
        i = j
        if op == "/":
            time = _round(time, unit, round_up)
        else:
            time = _add(time, unit, num if op == "+" else -num)
    return time


def _add(time: dt.datetime, unit: str, n: int) -> dt.datetime:
    if unit in ("y", "M"):
        months = time.month - 1 + n * (12 if unit == "y" else 1)
        year, month = time.year + months // 12, months % 12 + 1
        day = min(time.day, calendar.monthrange(year, month)[1])
        return _wall(time.replace(tzinfo=None, year=year, month=month, day=day), time.tzinfo)
    if unit in ("w", "d"):
        days = n * (7 if unit == "w" else 1)
        return _wall(time.replace(tzinfo=None) + dt.timedelta(days=days), time.tzinfo)
    step = {"h": dt.timedelta(hours=1), "m": dt.timedelta(minutes=1), "s": dt.timedelta(seconds=1),
            "ms": dt.timedelta(milliseconds=1)}[unit]
    return (time.astimezone(UTC) + n * step).astimezone(time.tzinfo)


def _wall(naive: dt.datetime, tz: dt.tzinfo | None) -> dt.datetime:
    return naive.replace(tzinfo=tz)


def _round(time: dt.datetime, unit: str, up: bool) -> dt.datetime:
    naive = time.replace(tzinfo=None)
    if unit == "y":
        start = naive.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "M":
        start = naive.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "w":
        day = naive.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - dt.timedelta(days=(day.weekday() + 1) % 7)
    elif unit == "d":
        start = naive.replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit == "h":
        start = naive.replace(minute=0, second=0, microsecond=0)
    elif unit == "m":
        start = naive.replace(second=0, microsecond=0)
    elif unit == "s":
        start = naive.replace(microsecond=0)
    else:
        start = naive.replace(microsecond=naive.microsecond // 1000 * 1000)
    begin = _wall(start, time.tzinfo)
    if not up:
        return begin
    return _add(begin, unit, 1) - dt.timedelta(milliseconds=1)


def iso(time: dt.datetime) -> str:
    """JavaScript's ``toISOString()``: UTC, milliseconds, ``Z``."""
    t = time.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
