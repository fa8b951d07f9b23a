"""The Prometheus text exposition format (0.0.4) as the Go client writes it (``expfmt``).

Families sorted by name, series by their labels, labels by name; values in Go's shortest
``%g`` form (``1e+06``, ``0.001``, ``NaN``, ``+Inf``); HELP escapes ``\\`` and newlines, label
values also ``"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]
"""Label pairs sorted by name."""


@dataclass(slots=True)
class Sample:
    suffix: str
    labels: Labels
    value: float | int


@dataclass(slots=True)
class FamilyText:
    name: str
    type: str
    help: str
    samples: list[Sample] = field(default_factory=list)


def go_float(value: float | int) -> str:
    """``strconv.FormatFloat(value, 'g', -1, 64)`` with expfmt's special cases."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(float(value))).as_tuple()
    assert isinstance(exponent, int)
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    exponent += len(digits) - len(ds)
    point = len(ds) + exponent  # the value is 0.ds × 10^point
    x = point - 1
    neg = "-" if sign else ""
    # Shortest %g: an exponent below -4 or from 6 on is written as such (1e+06, 1.5e-05).
    if x < -4 or x >= 6:
        mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{ds}"
    if point >= len(ds):
        return f"{neg}{ds}{'0' * (point - len(ds))}"
    return f"{neg}{ds[:point]}.{ds[point:]}"


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels_text(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels) + "}"


def render(families: Iterable[FamilyText]) -> bytes:
    out: list[str] = []
    for fam in sorted(families, key=lambda f: f.name):
        if not fam.samples:
            continue
        out.append(f"# HELP {fam.name} {escape_help(fam.help)}\n")
        out.append(f"# TYPE {fam.name} {fam.type}\n")
        for s in fam.samples:
            out.append(f"{fam.name}{s.suffix}{_labels_text(s.labels)} {go_float(s.value)}\n")
    return "".join(out).encode("utf-8")
