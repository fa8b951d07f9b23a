"""Small formatting helpers shared by the admin endpoints: Envoy's number and regex spellings,
query-string parsing, HTML escaping.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from urllib.parse import unquote

TEXT = "text/plain; charset=UTF-8"
JSON = "application/json"
HTML = "text/html; charset=UTF-8"

# Envoy's config_dump error replies: plain text, with an x-content-type-options header placed
# before the usual ones.
PLAIN = "text/plain"
EARLY_NOSNIFF: tuple[tuple[str, str], ...] = (("x-content-type-options", "nosniff"),)

# What a handler returns: status, content-type, body, and optionally headers that go first.
Response = tuple[int, str, "str | bytes"] | tuple[int, str, "str | bytes", tuple[tuple[str, str], ...]]


def parse_query(query: str) -> list[tuple[str, str]]:
    """``a=1&b=&c`` → ``[("a", "1"), ("b", ""), ("c", "")]``, percent-decoded.

    Unlike HTML form decoding, ``+`` stays a plus sign, as Envoy's admin keeps it.
    """
    out: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        out.append((unquote(k), unquote(v)))
    return out


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


def normalize_path(path: str) -> str:
    """The admin's path normalization, as Envoy's admin listener applies it: percent-encoded
    unreserved characters decoded, repeated slashes merged, dot segments removed (RFC 3986):
    ``//x/../%72eady`` → ``/ready``, ``/ready/.`` → ``/ready/``."""

    def decode(m: re.Match[str]) -> str:
        ch = chr(int(m[1], 16))
        return ch if ch in _UNRESERVED else "%" + m[1].upper()

    if not path.startswith("/"):
        return path
    segments = re.sub("/{2,}", "/", _PERCENT.sub(decode, path)).split("/")[1:]
    out: list[str] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg in (".", ".."):
            if seg == ".." and out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def fmt_double(x: float) -> str:
    """A double as ``fmt::format("{}")`` prints it: shortest round-trip, no ``.0``, ``nan``."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    r = repr(x)
    return r[:-2] if r.endswith(".0") else r


def fmt_g(x: float) -> str:
    """A double as ``%g`` (six significant digits) prints it: ``1.8e+06``, ``0.5``, ``300000``."""
    return f"{x:g}"


def json_number(x: float) -> str:
    """A double as Envoy's JSON streamer writes it (``std::to_chars`` shortest): the shorter of
    the fixed and the exponent spelling, fixed on a tie (``3e+05`` but ``1800000``); NaN is null."""
    if math.isnan(x) or math.isinf(x):
        return "null"
    if x == 0:
        return "0"
    sign, digit_tuple, exp = Decimal(repr(x)).as_tuple()
    digits = "".join(map(str, digit_tuple))
    e10 = len(digits) - 1 + int(exp)  # decimal exponent of the first digit
    digits = digits.rstrip("0")
    neg = "-" if sign else ""
    if e10 >= len(digits) - 1:
        fixed = digits + "0" * (e10 - len(digits) + 1)
    elif e10 >= 0:
        fixed = f"{digits[: e10 + 1]}.{digits[e10 + 1 :]}"
    else:
        fixed = "0." + "0" * (-e10 - 1) + digits
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sci = f"{mant}e{'+' if e10 >= 0 else '-'}{abs(e10):02d}"
    return neg + (sci if len(sci) < len(fixed) else fixed)


def html_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#39;")


_RE2_MESSAGES = (
    # (Python's message prefix, RE2's wording, what RE2 quotes: the pattern, the rest from the
    # error, the repetition operator(s) or nothing)
    ("missing ), unterminated subpattern", "missing )", "pattern"),
    ("unbalanced parenthesis", "unexpected )", "pattern"),
    ("unterminated character set", "missing ]", "rest"),
    ("nothing to repeat", "no argument for repetition operator", "op"),
    ("multiple repeat", "bad repetition operator", "op2"),
    ("bad escape (end of pattern)", "trailing \\", "none"),
    ("bad escape", "invalid escape sequence", "rest"),
)


def compile_re2(pattern: str) -> tuple[re.Pattern[str] | None, str]:
    """Compile a filter regex; on error, return RE2's wording of it (``missing ): (bad``).

    # Divergence from Envoy: Python's ``re`` stands in for RE2, so constructs RE2 rejects
    # (backreferences, lookarounds) are accepted here.
    """
    try:
        return re.compile(pattern), ""
    except re.error as exc:
        msg = str(exc.msg)
        pos = exc.pos or 0
        for py, re2, arg in _RE2_MESSAGES:
            if msg.startswith(py):
                if arg == "pattern":
                    return None, f"{re2}: {pattern}"
                if arg == "rest":
                    return None, f"{re2}: {pattern[pos:]}"
                if arg == "op":
                    return None, f"{re2}: {pattern[pos : pos + 1]}"
                if arg == "op2":
                    return None, f"{re2}: {pattern[max(pos - 1, 0) : pos + 1]}"
                return None, re2
        return None, msg
