"""Dates as Elasticsearch reads and writes them: formats (``strict_date_optional_time``,
``epoch_millis``, Java patterns such as ``yyyy.MM.dd``, ``||``-joined alternatives), date math
(``now-15m``, ``now/d``, ``2022-07-09||+1M/d``), time zones, and date math in index names
(``<filebeat-7.14.2-{now/d}-000001>``).

Rounding up (``lte``/``gt`` bounds, the upper end of a ``term`` on a date) follows ES's
``JavaDateMathParser``: a rounding unit goes to the unit's last millisecond, and a date missing
components fills them as ES's round-up parser does (month/day 1, hour 23, minute/second 59,
milliseconds 999).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = UTC
DEFAULT_DATE_FORMAT = "strict_date_optional_time||epoch_millis"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DateError(ValueError):
    pass


def parse_tz(text: str) -> tzinfo:
    """``Z``, ``UTC``, ``+08:00``, ``-0500``, ``+8``, or an IANA name such as ``Asia/Shanghai``."""
    t = text.strip()
    if t in ("Z", "z", "UTC", "GMT", "utc", "Etc/UTC"):
        return UTC
    m = re.fullmatch(r"(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?", t)
    if m:
        sign = -1 if m.group(1) == "-" else 1
        hours, minutes = int(m.group(2)), int(m.group(3) or 0)
        if hours > 18 or minutes > 59:
            raise DateError(f"Invalid ID for ZoneOffset, invalid format: {text}")
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(t)
    except (ZoneInfoNotFoundError, ValueError):
        raise DateError(f"Unknown time-zone ID: {text}") from None


_MS = timedelta(milliseconds=1)


def to_ms(dt: datetime) -> int:
    return (dt - _EPOCH) // _MS


def from_ms(ms: int, tz: tzinfo = UTC) -> datetime:
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz)


# --- formats ----------------------------------------------------------------------------------

_ISO = re.compile(
    r"([+-]?\d{4,9})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ](\d{1,2})(?::(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,9}))?)?)?)?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?"
)
_NAMED = {
    "strict_date": "yyyy-MM-dd",
    "date": "yyyy-MM-dd",
    "basic_date": "yyyyMMdd",
    "strict_date_time": "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
    "date_time": "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
    "strict_date_time_no_millis": "yyyy-MM-dd'T'HH:mm:ssXXX",
    "date_time_no_millis": "yyyy-MM-dd'T'HH:mm:ssXXX",
    "strict_date_hour_minute_second": "yyyy-MM-dd'T'HH:mm:ss",
    "date_hour_minute_second": "yyyy-MM-dd'T'HH:mm:ss",
    "strict_date_hour_minute_second_millis": "yyyy-MM-dd'T'HH:mm:ss.SSS",
    "date_hour_minute_second_millis": "yyyy-MM-dd'T'HH:mm:ss.SSS",
    "strict_date_hour_minute": "yyyy-MM-dd'T'HH:mm",
    "date_hour_minute": "yyyy-MM-dd'T'HH:mm",
    "strict_date_hour": "yyyy-MM-dd'T'HH",
    "date_hour": "yyyy-MM-dd'T'HH",
    "strict_year_month": "yyyy-MM",
    "year_month": "yyyy-MM",
    "strict_year": "yyyy",
    "year": "yyyy",
    "strict_hour_minute_second": "HH:mm:ss",
    "hour_minute_second": "HH:mm:ss",
    "strict_hour_minute": "HH:mm",
    "hour_minute": "HH:mm",
}
_ISO_NAMES = {"strict_date_optional_time", "date_optional_time", "strict_date_optional_time_nanos", "iso8601"}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _fields_to_ms(f: dict[str, int], offset: str | None, round_up: bool, tz: tzinfo | None) -> int:
    up = round_up
    year = f["year"]
    month = f.get("month", 1)
    day = f.get("day", 1)
    hour = f.get("hour", 23 if up else 0)
    minute = f.get("minute", 59 if up else 0)
    second = f.get("second", 59 if up else 0)
    if "nanos" in f:
        micro = f["nanos"] // 1000
    else:
        micro = 999_000 if up else 0
    if not (1 <= month <= 12 and hour < 24 and minute < 60 and second < 60):
        raise DateError("field out of range")
    if offset is not None:
        zone: tzinfo = parse_tz(offset)
    else:
        zone = tz or UTC
    try:
        dt = datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    except ValueError as exc:
        raise DateError(str(exc)) from None
    return to_ms(dt)


def full_iso_ms(text: str) -> int | None:
    """Epoch milliseconds of Filebeat's and Kibana's layout, every field present
    (``2022-07-09T02:00:11.123Z``), by the C parser; None for any other text (an ISO parse
    reads it by the general rules)."""
    if len(text) == 24 and text[-1] == "Z" and text[10] == "T" and text[19] == ".":
        try:
            return (datetime.fromisoformat(text) - _EPOCH) // _MS
        except ValueError:
            pass
    return None


def _parse_iso(text: str, round_up: bool, tz: tzinfo | None) -> int:
    ms = full_iso_ms(text)
    if ms is not None:
        return ms
    m = _ISO.fullmatch(text)
    if not m or len(m.group(1).lstrip("+-")) != 4 and not m.group(1).startswith(("+", "-")):
        raise DateError(text)
    f: dict[str, int] = {"year": int(m.group(1))}
    for name, idx in (("month", 2), ("day", 3), ("hour", 4), ("minute", 5), ("second", 6)):
        if m.group(idx) is not None:
            f[name] = int(m.group(idx))
    if m.group(7) is not None:
        f["nanos"] = int(m.group(7).ljust(9, "0"))
    offset = m.group(8)
    return _fields_to_ms(f, None if offset in (None, "Z", "z") else offset, round_up, UTC if offset in ("Z", "z") else tz)


_TOKEN = re.compile(r"'[^']*'|([a-zA-Z])\1*|.", re.S)


def _literal(text: str) -> Callable[[datetime], str]:
    return lambda d: text


def _number(attr: str, width: int) -> Callable[[datetime], str]:
    return lambda d: f"{getattr(d, attr):0{width}d}"


class _Pattern:
    """One Java ``DateTimeFormatter`` pattern, compiled to a regex and a printer."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        regex: list[str] = []
        self.groups: list[str] = []
        self.printers: list[Callable[[datetime], str]] = []
        for tok in (m.group(0) for m in _TOKEN.finditer(pattern)):
            ch, n = tok[0], len(tok)
            if tok.startswith("'"):
                lit = tok[1:-1] or "'"
                regex.append(re.escape(lit))
                self.printers.append(_literal(lit))
                continue
            if not ch.isalpha():
                regex.append(re.escape(tok))
                self.printers.append(_literal(tok))
                continue
            regex.append(self._piece(ch, n))
        self.regex = re.compile("".join(regex), re.I)

    def _piece(self, ch: str, n: int) -> str:
        p = self.printers
        if ch in "yu":
            if n == 2:
                self.groups.append("yy")
                p.append(lambda d: f"{d.year % 100:02d}")
                return r"(\d{2})"
            self.groups.append("year")
            p.append(lambda d: f"{d.year:0{max(n, 4)}d}")
            return r"([+-]?\d{4,9})" if n >= 4 else r"(\d{1,9})"
        simple = {"M": ("month", "month"), "d": ("day", "day"), "H": ("hour", "hour"), "m": ("minute", "minute"), "s": ("second", "second")}
        if ch == "M" and n >= 3:
            self.groups.append("month_name")
            p.append(lambda d: d.strftime("%b" if n == 3 else "%B"))
            return r"([A-Za-z]{3,9})"
        if ch in simple:
            group, attr = simple[ch]
            self.groups.append(group)
            p.append(_number(attr, n))
            return rf"(\d{{{min(n, 2)},2}})" if n <= 2 else rf"(\d{{{n}}})"
        if ch == "S":
            self.groups.append("fraction")
            p.append(lambda d: f"{d.microsecond * 1000:09d}"[:n])
            return rf"(\d{{1,{max(n, 3)}}})"
        if ch in "XxZ":
            self.groups.append("offset")
            p.append(lambda d: _offset(d, ch, n))
            return r"(Z|[+-]\d{2}(?::?\d{2})?)"
        if ch == "E":
            self.groups.append("skip")
            p.append(lambda d: _DAYS[d.weekday()] if n <= 3 else d.strftime("%A"))
            return r"([A-Za-z]{3,9})"
        if ch == "a":
            self.groups.append("ampm")
            p.append(lambda d: "AM" if d.hour < 12 else "PM")
            return r"(AM|PM)"
        if ch in "hK":
            self.groups.append("hour12")
            p.append(lambda d: f"{(d.hour % 12) or 12:0{n}d}")
            return r"(\d{1,2})"
        raise DateError(f"Unknown pattern letter: {ch}")

    def parse(self, text: str, round_up: bool, tz: tzinfo | None) -> int:
        m = self.regex.fullmatch(text)
        if not m:
            raise DateError(text)
        f: dict[str, int] = {}
        offset: str | None = None
        pm: bool | None = None
        for name, value in zip(self.groups, m.groups(), strict=True):
            if name == "yy":
                f["year"] = 2000 + int(value)
            elif name == "month_name":
                if value[:3].lower() not in _MONTHS:
                    raise DateError(text)
                f["month"] = _MONTHS.index(value[:3].lower()) + 1
            elif name == "fraction":
                f["nanos"] = int(value.ljust(9, "0"))
            elif name == "offset":
                offset = value
            elif name == "ampm":
                pm = value.upper() == "PM"
            elif name == "hour12":
                f["hour"] = int(value) % 12
            elif name != "skip":
                f[name] = int(value)
        if pm and "hour" in f:
            f["hour"] += 12
        if "year" not in f:
            f["year"] = 1970
        return _fields_to_ms(f, None if offset in (None, "Z") else offset, round_up, UTC if offset == "Z" else tz)

    def format(self, d: datetime) -> str:
        return "".join(pr(d) for pr in self.printers)


def _offset(d: datetime, ch: str, n: int) -> str:
    off = d.utcoffset() or timedelta(0)
    if ch == "X" and not off:
        return "Z"
    total = int(off.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    h, m = divmod(abs(total), 60)
    return f"{sign}{h:02d}:{m:02d}" if (n >= 3 or ch == "Z" and n == 5) else f"{sign}{h:02d}{m:02d}"


class DateFormat:
    """A date format as a field mapping or a query names it: alternatives joined by ``||``; the
    first prints."""

    _cache: dict[str, DateFormat] = {}

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.names = [s.strip() for s in spec.split("||") if s.strip()]
        if not self.names:
            raise DateError("empty date format")
        self._patterns: dict[str, _Pattern] = {}
        self.iso_first = self.names[0] in _ISO_NAMES
        """The first format is ISO 8601: a :func:`full_iso_ms` value is what :meth:`parse` returns."""
        for name in self.names:
            if name in _ISO_NAMES or name in ("epoch_millis", "epoch_second"):
                continue
            self._patterns[name] = _Pattern(_NAMED.get(name, name))

    @classmethod
    def of(cls, spec: str | None) -> DateFormat:
        key = spec or DEFAULT_DATE_FORMAT
        fmt = cls._cache.get(key)
        if fmt is None:
            fmt = cls._cache[key] = DateFormat(key)
        return fmt

    def parse(self, text: str, *, round_up: bool = False, tz: tzinfo | None = None) -> int:
        """Epoch milliseconds, or :class:`DateError` naming the format as ES does."""
        for name in self.names:
            try:
                if name in _ISO_NAMES:
                    return _parse_iso(text, round_up, tz)
                if name == "epoch_millis":
                    if re.fullmatch(r"-?\d+(\.\d+)?", text):
                        return int(float(text)) if "." in text else int(text)
                    continue
                if name == "epoch_second":
                    if re.fullmatch(r"-?\d+(\.\d+)?", text):
                        return int(float(text) * 1000)
                    continue
                return self._patterns[name].parse(text, round_up, tz)
            except DateError:
                continue
        raise DateError(f"failed to parse date field [{text}] with format [{self.spec}]")

    def format(self, ms: int, tz: tzinfo | None = None) -> str:
        name = self.names[0]
        if name == "epoch_millis":
            return str(ms)
        if name == "epoch_second":
            return str(ms // 1000) if ms % 1000 == 0 else f"{ms / 1000:.3f}"
        d = from_ms(ms, tz or UTC)
        if name in _ISO_NAMES:
            off = d.utcoffset() or timedelta(0)
            zone = "Z" if not off else _offset(d, "X", 3)
            return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}" + zone
        return self._patterns[name].format(d)


# --- date math --------------------------------------------------------------------------------

_UNITS = "yMwdhHms"


def round_down(ms: int, unit: str, tz: tzinfo = UTC) -> int:
    d = from_ms(ms, tz)
    if unit == "y":
        d = d.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "q":
        d = d.replace(month=(d.month - 1) // 3 * 3 + 1, day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "M":
        d = d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "w":
        d = (d - timedelta(days=d.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit == "d":
        d = d.replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit in "hH":
        d = d.replace(minute=0, second=0, microsecond=0)
    elif unit == "m":
        d = d.replace(second=0, microsecond=0)
    elif unit == "s":
        d = d.replace(microsecond=0)
    return to_ms(_resolve_local(d, tz))


def _resolve_local(d: datetime, tz: tzinfo) -> datetime:
    # Re-attach the zone after replacing fields so DST offsets are those of the new wall time.
    return d.replace(tzinfo=None).replace(tzinfo=tz) if isinstance(tz, ZoneInfo) else d


def add_units(ms: int, n: int, unit: str, tz: tzinfo = UTC) -> int:
    if unit in "hHms":
        return ms + n * {"h": 3_600_000, "H": 3_600_000, "m": 60_000, "s": 1000}[unit]
    d = from_ms(ms, tz).replace(tzinfo=None)
    if unit in "yMq":
        months = n * {"y": 12, "M": 1, "q": 3}[unit]
        total = d.year * 12 + d.month - 1 + months
        year, month = divmod(total, 12)
        day = min(d.day, _days_in_month(year, month + 1))
        d = d.replace(year=year, month=month + 1, day=day)
    else:
        d = d + timedelta(days=n * (7 if unit == "w" else 1))
    return to_ms(d.replace(tzinfo=tz))


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days


def next_unit(ms: int, unit: str, tz: tzinfo = UTC) -> int:
    """Start of the next ``unit`` after the one holding ``ms``."""
    return add_units(round_down(ms, unit, tz), 1, unit, tz)


def parse_math(
    text: str, now_ms: int, fmt: DateFormat | None = None, *, round_up: bool = False, tz: tzinfo | None = None
) -> int:
    """ES date math: ``now``, ``now-15m``, ``now/d``, ``<date>||+1M/d``, or a plain date."""
    fmt = fmt or DateFormat.of(None)
    if text.startswith("now"):
        base, math = now_ms, text[3:]
    else:
        at = text.find("||")
        if at < 0:
            return fmt.parse(text, round_up=round_up, tz=tz)
        base, math = fmt.parse(text[:at], round_up=False, tz=tz), text[at + 2 :]
    return _apply_math(text, base, math, round_up, tz or UTC)


def _apply_math(full: str, ms: int, math: str, round_up: bool, tz: tzinfo) -> int:
    i = 0
    while i < len(math):
        c = math[i]
        i += 1
        rounding = c == "/"
        if c in "+-":
            sign = 1 if c == "+" else -1
        elif not rounding:
            raise DateError(f"operator not supported for date math [{full}]")
        num = 1
        if not rounding and i < len(math) and math[i].isdigit():
            j = i
            while j < len(math) and math[j].isdigit():
                j += 1
            num = int(math[i:j])
            i = j
        if i >= len(math):
            raise DateError(f"truncated date math [{full}]")
        unit = math[i]
        i += 1
        if unit not in _UNITS:
            raise DateError(f"unit [{unit}] not supported for date math [{full}]")
        if rounding:
            ms = round_down(ms, unit, tz)
            if round_up:
                ms = next_unit(ms, unit, tz) - 1
        else:
            ms = add_units(ms, sign * num, unit, tz)
    return ms


# --- date math in index names -----------------------------------------------------------------


def resolve_index_name(name: str, now_ms: int) -> str:
    """``<logs-{now/d}>`` → ``logs-2022.07.09`` (ES's ``DateMathExpressionResolver``); other names
    are returned as given."""
    if not (name.startswith("<") and name.endswith(">")):
        return name
    text = name[1:-1]
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if c == "}":
            raise DateError(f"invalid dynamic name expression [{text}]. invalid character at position [{i}].")
        if c != "{":
            out.append(c)
            i += 1
            continue
        depth, j = 1, i + 1
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        if depth:
            raise DateError(f"invalid dynamic name expression [{text}]. date math placeholder is open ended")
        inner = text[i + 1 : j - 1]
        expr, fmt_spec = inner, "yyyy.MM.dd"
        zone: tzinfo = UTC
        brace = inner.find("{")
        if brace >= 0:
            if not inner.endswith("}"):
                raise DateError(f"invalid dynamic name expression [{text}]. missing closing `}}` for date math format")
            expr, spec = inner[:brace], inner[brace + 1 : -1]
            if "|" in spec:
                spec, tzs = spec.split("|", 1)
                zone = parse_tz(tzs)
            if not spec:
                raise DateError(f"invalid dynamic name expression [{text}]. missing date format")
            fmt_spec = spec
        ms = parse_math(expr, now_ms, tz=zone)
        out.append(DateFormat.of(fmt_spec).format(ms, zone))
        i = j
    return "".join(out)
