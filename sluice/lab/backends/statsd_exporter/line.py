"""StatsD lines → events, as statsd_exporter's ``pkg/line`` reads them, and its name escaping.

A line is ``name:sample[:sample…]`` (split on the first ``:``); a sample is
``value|type[|@rate][|#tags]``. Types: ``c`` (counter: adds ``value / rate``; negative values
are refused later, by the exporter), ``g`` (gauge: sets, or adds when the value is signed
``+``/``-``), ``ms`` (timer, divided by 1000: seconds), ``h`` / ``d`` (observed as is); ``s`` (sets)
is not supported. A timer sampled at ``@0.1`` counts as 10 observations (one event of weight 10
here). Tags: DogStatsD ``|#k:v,k2:v2`` (which disables several samples per line), InfluxDB
``name,k=v``, Librato ``name#k=v``, SignalFx ``name[k=v]``; mixing DogStatsD tags with a name-tag
style drops the line. What cannot be read is dropped and counted under the real exporter's
``reason`` labels (``malformed_line``, ``malformed_component``, ``malformed_value``,
``invalid_sample_factor``, ``illegal_event``, ``mixed_tagging_styles``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Protocol


class ParseStats(Protocol):
    """Where the parser counts what it sees (the exporter's own metrics)."""

    def sample_error(self, reason: str) -> None: ...
    def samples(self) -> None: ...
    def tag_error(self) -> None: ...
    def tags(self) -> None: ...


@dataclass(slots=True)
class Event:
    kind: str
    """``counter``, ``gauge`` or ``observer``."""
    name: str
    """The StatsD name, not yet escaped."""
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    relative: bool = False
    """Gauges only: add instead of set."""
    weight: int = 1
    """Observers only: how many observations this event stands for (sampling)."""


@dataclass(slots=True)
class TagStyles:
    dogstatsd: bool = True
    influxdb: bool = True
    librato: bool = True
    signalfx: bool = True


def escape_metric_name(name: str) -> str:
    """Every character outside ``[a-zA-Z0-9_]`` becomes ``_`` (a run of dashes only one), and a
    leading digit gets a ``_`` in front (``pkg/mapper/escape.go``)."""
    if not name:
        return ""
    out: list[str] = ["_"] if "0" <= name[0] <= "9" else []
    prev = ""
    for c in name:
        if c.isascii() and (c.isalnum() or c == "_"):
            out.append(c)
        elif c == "-" and prev == "-":
            continue
        else:
            out.append("_")
        prev = c
    return "".join(out)


_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?\d+")
_SPECIAL = re.compile(r"[+-]?(?:inf|infinity)|nan", re.IGNORECASE)


def parse_float(text: str) -> float | None:
    """Go's ``strconv.ParseFloat(text, 64)``: None where it returns an error (a syntax error, or a
    value out of range)."""
    if _SPECIAL.fullmatch(text):
        return float(text)
    if _DECIMAL.fullmatch(text):
        value = float(text)
    elif _HEX.fullmatch(text):
        try:
            value = float.fromhex(text)
        except OverflowError:
            return None
    else:
        return None
    return None if math.isinf(value) else value


class LineParser:
    def __init__(self, stats: ParseStats, styles: TagStyles | None = None) -> None:
        self.stats = stats
        self.styles = styles or TagStyles()

    def parse(self, raw: bytes) -> list[Event]:
        """The events of one line (without its line end); [] for an empty or unreadable line."""
        if not raw:
            return []
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.stats.sample_error("malformed_line")
            return []
        name_part, colon, rest = line.partition(":")
        if not colon or not name_part:
            self.stats.sample_error("malformed_line")
            return []
        labels: dict[str, str] = {}
        metric = self._name_and_tags(name_part, labels)
        if "|#" in rest:
            if labels:
                self.stats.sample_error("mixed_tagging_styles")
                return []
            samples = [rest]
        else:
            samples = rest.split(":")
        events: list[Event] = []
        for sample in samples:
            self._sample(sample, metric, labels, events)
        return events

    def _sample(self, sample: str, metric: str, labels: dict[str, str], events: list[Event]) -> None:
        self.stats.samples()
        components = sample.split("|")
        if not 2 <= len(components) <= 4:
            self.stats.sample_error("malformed_component")
            return
        value_text, stat_type = components[0], components[1]
        relative = value_text[:1] in ("+", "-")
        value = parse_float(value_text)
        if value is None:
            self.stats.sample_error("malformed_value")
            return
        extra = components[2:]
        if any(not c for c in extra):
            self.stats.sample_error("malformed_component")
            return
        weight = 1
        for comp in extra:
            if comp[0] == "@":
                factor = parse_float(comp[1:])
                if factor is None:
                    self.stats.sample_error("invalid_sample_factor")
                    factor = 0.0
                if factor == 0:
                    factor = 1.0
                if stat_type == "c":
                    value /= factor
                elif stat_type in ("ms", "h", "d"):
                    weight = _repeats(factor)
            elif comp[0] == "#":
                if self.styles.dogstatsd:
                    self._tags(comp[1:], ":", labels, strip_hash=True)
            else:
                self.stats.sample_error("invalid_sample_factor")
        if labels:
            self.stats.tags()
        if weight <= 0:
            return
        if stat_type == "c":
            events.append(Event("counter", metric, value, dict(labels)))
        elif stat_type == "g":
            events.append(Event("gauge", metric, value, dict(labels), relative=relative))
        elif stat_type == "ms":
            events.append(Event("observer", metric, value / 1000, dict(labels), weight=weight))
        elif stat_type in ("h", "d"):
            events.append(Event("observer", metric, value, dict(labels), weight=weight))
        else:
            # ``s`` (sets) included: the real exporter refuses them as illegal events.
            self.stats.sample_error("illegal_event")

    def _name_and_tags(self, name: str, labels: dict[str, str]) -> str:
        if self.styles.signalfx:
            start, end = name.find("["), name.find("]")
            if start != -1 and end != -1:
                self._tags(name[start + 1 : end], "=", labels)
                return name[:start] + name[end + 1 :]
            if (start != -1) != (end != -1):
                self.stats.tag_error()
                return name
        for i, c in enumerate(name):
            if (c == "#" and self.styles.librato) or (c == "," and self.styles.influxdb):
                self._tags(name[i + 1 :], "=", labels)
                return name[:i]
        return name

    def _tags(self, text: str, separator: str, labels: dict[str, str], strip_hash: bool = False) -> None:
        tags = text.split(",")
        if tags[-1] == "":
            # A trailing comma ends the list; an empty tag elsewhere is an error.
            tags.pop()
        for tag in tags:
            if strip_hash and tag.startswith("#"):
                tag = tag[1:]
            key, sep, value = tag.partition(separator)
            if not tag or not sep or not key or not value:
                self.stats.tag_error()
                continue
            labels[escape_metric_name(key)] = value


_MAX_REPEATS = 2**63
"""Go converts ``1 / rate`` to an int64: a larger quotient (or NaN) wraps to a negative count."""


def _repeats(factor: float) -> int:
    """How many observations a sample taken at ``@factor`` stands for: ``int(1 / factor)``."""
    quotient = 1 / factor
    if math.isnan(quotient) or not -_MAX_REPEATS < quotient < _MAX_REPEATS:
        return 0
    return int(quotient)
