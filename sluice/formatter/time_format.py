"""``%START_TIME(...)%`` and its relatives: strftime with Envoy's extensions
(``DateFormatter`` in ``source/common/common/utility.cc``).

Extensions over the C library's strftime: ``%s`` (seconds since the epoch), ``%f`` (9 digits of
the sub-second fraction) and ``%1f``…``%9f`` (that many digits, truncated). With no format the
time prints as ``2026-11-24T19:57:29.016Z`` (UTC, milliseconds).

Deliberate difference from Envoy: the wall clock is a Python float, so digits past the
microsecond (``%7f``…``%9f``) are zeros.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

# A newline in the output would split a log line or a header: Envoy refuses these specifiers.
_NEWLINE_SPEC = re.compile(r"%[-_0^#]*[1-9]*(E|O)?n")
_FRACTION = re.compile(r"%([1-9]?)f")


last_second: list[Any] = [None, ""]
"""The last whole second :func:`default_time` formatted (most lines share it); the compiled
formats read it inline (``registry``)."""


def second_text(secs: int) -> str:
    """The whole second ``secs`` as ``%Y-%m-%dT%H:%M:%S`` (UTC), kept in :data:`last_second`."""
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    last_second[0], last_second[1] = secs, text
    return text


def default_time(wall: float) -> str:
    """Envoy's ``AccessLogDateTimeFormatter``: ``%Y-%m-%dT%H:%M:%E3SZ`` in UTC."""
    secs = int(wall)
    prefix: str = last_second[1] if last_second[0] == secs else second_text(secs)
    return prefix + MILLIS[int((wall - secs) * 1000)]  # (wall - secs < 1: an index below 1000)


MILLIS = [f".{ms:03d}Z" for ms in range(1000)]


def compile_time_format(fmt: str, *, local: bool = False) -> Callable[[float], str]:
    """A function from a wall-clock time to ``fmt`` rendered. Raises ValueError (Envoy's
    message) when the format could print a newline."""
    if _NEWLINE_SPEC.search(fmt):
        raise ValueError("Invalid header configuration. Format string contains newline.")
    to_tm = time.localtime if local else time.gmtime
    if not fmt:
        # Envoy's default: milliseconds, 'Z' in UTC or the numeric offset in local time.
        fmt = "%Y-%m-%dT%H:%M:%S.%3f%z" if local else ""
        if not fmt:
            return default_time
    # Split on Envoy's own specifiers (%s, %f, %Nf); the rest goes to strftime. '%%' must stay
    # one unit so '%%s' is a literal '%s', not a '%' followed by epoch seconds.
    parts: list[str | tuple[str, int]] = []
    i = 0
    buf: list[str] = []
    while i < len(fmt):
        if fmt[i] != "%" or i + 1 >= len(fmt):
            buf.append(fmt[i])
            i += 1
            continue
        nxt = fmt[i + 1]
        if nxt == "%":
            buf.append("%%")
            i += 2
            continue
        if nxt == "s":
            parts.append("".join(buf))
            buf = []
            parts.append(("s", 0))
            i += 2
            continue
        m = _FRACTION.match(fmt, i)
        if m is not None:
            parts.append("".join(buf))
            buf = []
            parts.append(("f", int(m.group(1)) if m.group(1) else 9))
            i = m.end()
            continue
        buf.append(fmt[i])
        i += 1
    parts.append("".join(buf))

    def render(wall: float) -> str:
        secs = int(wall)
        tm = to_tm(secs)
        out: list[str] = []
        for p in parts:
            if isinstance(p, str):
                if p:
                    out.append(time.strftime(p, tm))
            elif p[0] == "s":
                out.append(str(secs))
            else:
                micros = int(round((wall - secs) * 1_000_000))
                if micros >= 1_000_000:
                    micros = 999_999
                out.append(f"{micros:06d}000"[: p[1]])
        return "".join(out)

    return render
