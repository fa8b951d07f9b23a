"""libbeat's ``when`` conditions (``libbeat/conditions``): ``equals``, ``contains``, ``regexp``,
``range``, ``has_fields``, ``or``, ``and``, ``not``.

Field names arrive nested (the config splits dotted keys); they are flattened back to paths, as
libbeat does. Several fields in one condition must all match.

Deliberate difference: ``network`` (CIDR matching) is refused rather than implemented.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sluice.lab.backends.filebeat.config import ConfigError
from sluice.lab.backends.filebeat.event import MISSING, Event, flatten

Condition = Callable[[Event], bool]
_RANGE_OPS = {"gt", "gte", "lt", "lte"}


def build(cfg: Any, setting: str = "when") -> Condition:
    if not isinstance(cfg, dict) or not cfg:
        raise ConfigError(f"{setting}: a condition must be a map like {{equals: {{field: value}}}}")
    conds = [_one(name, value, f"{setting}.{name}") for name, value in cfg.items()]
    if len(conds) == 1:
        return conds[0]
    return lambda ev: all(c(ev) for c in conds)


def _one(name: str, value: Any, setting: str) -> Condition:
    if name in ("or", "and"):
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{setting}: expects a list of conditions")
        subs = [build(v, f"{setting}.{i}") for i, v in enumerate(value)]
        return (lambda ev: any(c(ev) for c in subs)) if name == "or" else (lambda ev: all(c(ev) for c in subs))
    if name == "not":
        sub = build(value, setting)
        return lambda ev: not sub(ev)
    if name == "has_fields":
        if not isinstance(value, list):
            raise ConfigError(f"{setting}: expects a list of field names")
        fields = [str(f) for f in value]
        return lambda ev: all(ev.get(f) is not MISSING for f in fields)
    if name == "network":
        raise ConfigError(f"{setting}: network conditions are not supported by this Filebeat stand-in")
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{setting}: expects a map of field: value")
    if name == "range":
        return _range(value, setting)
    flat = flatten(value)
    if name == "equals":
        checks = [_equals(f, v, setting) for f, v in flat.items()]
    elif name == "contains":
        checks = [_contains(f, v) for f, v in flat.items()]
    elif name == "regexp":
        checks = [_regexp(f, v, setting) for f, v in flat.items()]
    else:
        raise ConfigError(f"{setting}: unknown condition '{name}' (known: equals, contains, regexp, range, has_fields, or, and, not)")
    return lambda ev: all(c(ev) for c in checks)


def _equals(field: str, want: Any, setting: str) -> Condition:
    if isinstance(want, bool):
        return lambda ev: ev.get(field) is want
    if isinstance(want, (int, float)):

        def num(ev: Event) -> bool:
            got = ev.get(field)
            return not isinstance(got, bool) and isinstance(got, (int, float)) and got == want

        return num
    if isinstance(want, str):

        def text(ev: Event) -> bool:
            got = ev.get(field)
            if isinstance(got, list):
                return any(isinstance(g, str) and g == want for g in got)
            return isinstance(got, str) and got == want

        return text
    raise ConfigError(f"{setting}.{field}: equals takes a string, number or boolean")


def _contains(field: str, want: Any) -> Condition:
    sub = str(want)

    def check(ev: Event) -> bool:
        got = ev.get(field)
        if isinstance(got, str):
            return sub in got
        if isinstance(got, list):
            return any(isinstance(g, str) and sub in g for g in got)
        return False

    return check


def _regexp(field: str, pattern: Any, setting: str) -> Condition:
    try:
        rx = re.compile(str(pattern))
    except re.error as exc:
        raise ConfigError(f"{setting}.{field}: invalid regular expression: {exc}") from None

    def check(ev: Event) -> bool:
        got = ev.get(field)
        if isinstance(got, str):
            return rx.search(got) is not None
        if isinstance(got, list):
            return any(isinstance(g, str) and rx.search(g) is not None for g in got)
        return False

    return check


def _range(value: dict[str, Any], setting: str) -> Condition:
    checks: list[tuple[str, str, float]] = []

    def collect(node: dict[str, Any], prefix: str) -> None:
        for key, sub in node.items():
            path = f"{prefix}{key}"
            if isinstance(sub, dict) and sub and set(sub) <= _RANGE_OPS:
                for op, bound in sub.items():
                    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                        raise ConfigError(f"{setting}.{path}.{op}: range bounds must be numbers")
                    checks.append((path, op, float(bound)))
            elif isinstance(sub, dict):
                collect(sub, path + ".")
            elif key in _RANGE_OPS and prefix:
                checks.append((prefix[:-1], key, float(sub)))
            else:
                raise ConfigError(f"{setting}.{path}: expects {{gte|gt|lt|lte: number}}")

    collect(value, "")

    def check(ev: Event) -> bool:
        for path, op, bound in checks:
            got = ev.get(path)
            if isinstance(got, bool) or not isinstance(got, (int, float)):
                return False
            if not (
                (op == "gt" and got > bound)
                or (op == "gte" and got >= bound)
                or (op == "lt" and got < bound)
                or (op == "lte" and got <= bound)
            ):
                return False
        return True

    return check
