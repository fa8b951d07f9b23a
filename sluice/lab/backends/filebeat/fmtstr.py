"""libbeat's event format strings (``libbeat/common/fmtstr``), as ``index``, ``indices`` and
``setup.ilm.rollover_alias`` use them.

- ``%{[field.path]}`` (also ``%{[a][b]}``): the event's field; ``%{[field]:default}`` when missing;
  ``%{[@metadata.x]}`` for metadata;
- ``%{+pattern}``: the event's timestamp in UTC, formatted with a Joda-Time pattern
  (``yyyy.MM.dd``, ``HH``, ``MMM``, ``'literal'``, …), as Filebeat's ``dtfmt`` does.

A missing field without default raises :class:`MissingField` (the selector then tries the next
rule or drops the event, as Filebeat's ``FailEmpty`` selectors do).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from sluice.lab.backends.filebeat.config import ConfigError
from sluice.lab.backends.filebeat.event import MISSING, Event


class MissingField(Exception):
    pass


Part = Callable[[Event], str]


class FormatString:
    def __init__(self, text: str, setting: str = "") -> None:
        self.text = text
        self.parts: list[Part | str] = _compile(text, setting)
        self.static = all(isinstance(p, str) for p in self.parts)
        self.literal = "".join(p for p in self.parts if isinstance(p, str))
        self.time_only = "%{[" not in text and not any(isinstance(p, _TimePart) and p.sub_second for p in self.parts)
        self._sec = -1
        self._sec_text = ""

    def run(self, event: Event) -> str:
        if self.static:
            return self.literal
        if self.time_only:
            sec = event.ts_ns // 1_000_000_000
            if sec != self._sec:
                self._sec_text = "".join([p if isinstance(p, str) else p(event) for p in self.parts])
                self._sec = sec
            return self._sec_text
        return "".join([p if isinstance(p, str) else p(event) for p in self.parts])

    def __repr__(self) -> str:
        return f"FormatString({self.text!r})"


def _compile(text: str, setting: str) -> list[Part | str]:
    parts: list[Part | str] = []
    i = 0
    while i < len(text):
        j = text.find("%{", i)
        if j < 0:
            parts.append(text[i:])
            break
        if j > i:
            parts.append(text[i:j])
        end = _close(text, j + 2)
        if end < 0:
            raise ConfigError(f"{setting}: missing '}}' in format string '{text}'")
        body = text[j + 2 : end]
        parts.append(_field_part(body, setting, text) if not body.startswith("+") else _time_part(body[1:], setting))
        i = end + 1
    return parts


def _close(text: str, i: int) -> int:
    depth = 1
    while i < len(text):
        if text.startswith("%{", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


_FIELD = re.compile(r"((?:\[[^\]]+\])+)(?::(.*))?", re.DOTALL)


def _field_part(body: str, setting: str, text: str) -> Part:
    m = _FIELD.fullmatch(body)
    if m is None:
        raise ConfigError(f"{setting}: invalid field reference '%{{{body}}}' in format string '{text}' (use %{{[field.name]}})")
    path = ".".join(re.findall(r"\[([^\]]+)\]", m.group(1)))
    default = m.group(2)
    default_fmt = FormatString(default, setting) if default is not None and "%{" in default else None

    def part(event: Event) -> str:
        value = event.get(path)
        if value is MISSING or value is None:
            if default_fmt is not None:
                return default_fmt.run(event)
            if default is not None:
                return default
            raise MissingField(path)
        return _text(value)

    return part


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, separators=(",", ":"))
    return str(value)


class _TimePart:
    """``%{+pattern}``: cached per second unless the pattern shows fractions (``S``)."""

    def __init__(self, pattern: str, setting: str) -> None:
        self.fmt = joda(pattern, setting)
        self.sub_second = not self.fmt.per_second
        self.cache: dict[int, str] = {}

    def __call__(self, event: Event) -> str:
        sec, rem = divmod(event.ts_ns, 1_000_000_000)
        if self.sub_second:
            return self.fmt.format(sec, rem)
        out = self.cache.get(sec)
        if out is None:
            if len(self.cache) > 1024:
                self.cache.clear()
            out = self.cache[sec] = self.fmt.format(sec, rem)
        return out


def _time_part(pattern: str, setting: str) -> Part:
    return _TimePart(pattern, setting)


# --- Joda-Time patterns ---------------------------------------------------------------------

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

Token = Callable[[time.struct_time, int], str]


class Joda:
    def __init__(self, tokens: list[Token | str], per_second: bool) -> None:
        self.tokens = tokens
        self.per_second = per_second

    def format(self, sec: int, ns: int = 0) -> str:
        t = time.gmtime(sec)
        return "".join(tok if isinstance(tok, str) else tok(t, ns) for tok in self.tokens)


def joda(pattern: str, setting: str = "") -> Joda:
    tokens: list[Token | str] = []
    per_second = True
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "'":
            j = i + 1
            lit = []
            while j < len(pattern):
                if pattern[j] == "'":
                    if j + 1 < len(pattern) and pattern[j + 1] == "'":
                        lit.append("'")
                        j += 2
                        continue
                    break
                lit.append(pattern[j])
                j += 1
            tokens.append("".join(lit) if j > i + 1 else "'")
            i = j + 1
            continue
        if not c.isalpha():
            tokens.append(c)
            i += 1
            continue
        j = i
        while j < len(pattern) and pattern[j] == c:
            j += 1
        n = j - i
        if c == "S":
            per_second = False
        tokens.append(_token(c, n, setting, pattern))
        i = j
    return Joda(tokens, per_second)


def _num(n: int, width: int) -> str:
    return str(n).zfill(width)


def _token(c: str, n: int, setting: str, pattern: str) -> Token:
    if c in "yYx":
        if n == 2:
            return lambda t, ns: _num((t.tm_year if c != "x" else _isoyear(t)) % 100, 2)
        return lambda t, ns: _num(t.tm_year if c != "x" else _isoyear(t), n)
    if c == "M":
        if n >= 4:
            return lambda t, ns: _MONTHS[t.tm_mon - 1]
        if n == 3:
            return lambda t, ns: _MONTHS[t.tm_mon - 1][:3]
        return lambda t, ns: _num(t.tm_mon, n)
    simple: dict[str, Callable[[time.struct_time], int]] = {
        "d": lambda t: t.tm_mday,
        "D": lambda t: t.tm_yday,
        "H": lambda t: t.tm_hour,
        "k": lambda t: t.tm_hour or 24,
        "K": lambda t: t.tm_hour % 12,
        "h": lambda t: (t.tm_hour % 12) or 12,
        "m": lambda t: t.tm_min,
        "s": lambda t: t.tm_sec,
        "e": lambda t: t.tm_wday + 1,
        "w": lambda t: _isoweek(t),
        "C": lambda t: t.tm_year // 100,
    }
    if c in simple:
        get = simple[c]
        return lambda t, ns: _num(get(t), n)
    if c == "E":
        return (lambda t, ns: _DAYS[t.tm_wday]) if n >= 4 else (lambda t, ns: _DAYS[t.tm_wday][:3])
    if c == "a":
        return lambda t, ns: "AM" if t.tm_hour < 12 else "PM"
    if c == "S":
        return lambda t, ns: str(ns // 1_000_000).zfill(3)[:n].ljust(n, "0")
    if c == "G":
        return lambda t, ns: "AD"
    if c == "Z":
        return (lambda t, ns: "+0000") if n == 1 else (lambda t, ns: "+00:00") if n == 2 else (lambda t, ns: "UTC")
    if c == "z":
        return lambda t, ns: "UTC"
    raise ConfigError(f"{setting}: illegal pattern component '{c}' in date format '{pattern}'")


def _isoyear(t: time.struct_time) -> int:
    import datetime

    return datetime.date(t.tm_year, t.tm_mon, t.tm_mday).isocalendar()[0]


def _isoweek(t: time.struct_time) -> int:
    import datetime

    return datetime.date(t.tm_year, t.tm_mon, t.tm_mday).isocalendar()[1]
