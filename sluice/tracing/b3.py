"""B3 propagation as Envoy's Zipkin tracer does it (``SpanContextExtractor`` and
``Span::injectContext``): the sampled flag and the span context read from the ``b3`` single
header or the ``x-b3-*`` headers, and the new span's context written back.

Checked against Envoy 1.40: a ``b3`` header (even the sampling-only ``b3: 0``) wins over the
``x-b3-*`` headers, which then pass through untouched, and the span is propagated as ``b3``
again (``trace-span-sampled[-parent]``, ``d`` becoming ``1``); otherwise the four ``x-b3-*``
headers are set. Ids that do not parse make Envoy's extractor throw: the request then gets a
null span (no span reported, nothing injected).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluice.tracing.request_id import strtoull16

if TYPE_CHECKING:
    from sluice.http.headers import RequestHeaders

B3 = "b3"
TRACE_ID = "x-b3-traceid"
SPAN_ID = "x-b3-spanid"
PARENT_SPAN_ID = "x-b3-parentspanid"
SAMPLED = "x-b3-sampled"

_MAX_B3 = 32 + 1 + 16 + 3 + 16  # traceid128-spanid-1-parentid
_SAMPLED_POS = {1: 0, 35: 34, 51: 50, 52: 34, 68: 50}
_FLAGS = frozenset("10d")
_HEX = frozenset("0123456789abcdefABCDEF")


class ExtractorError(Exception):
    """A B3 context that does not parse (Envoy's ``ExtractorException``)."""


class SpanContext:
    """The caller's span as the headers describe it."""

    __slots__ = ("trace_id_high", "trace_id", "span_id", "parent_id", "sampled")

    def __init__(self, trace_id_high: int, trace_id: int, span_id: int, parent_id: int, sampled: bool) -> None:
        self.trace_id_high = trace_id_high
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled


NAMES = frozenset({B3, TRACE_ID, SPAN_ID, PARENT_SPAN_ID, SAMPLED})


def scan(headers: RequestHeaders) -> dict[str, str]:
    """The B3 headers of a request, each name's first value (Envoy reads only the first: the
    headers are untrusted), found in one pass."""
    found: dict[str, str] = {}
    for k, v in headers.entries:
        if k in NAMES and k not in found:
            found[k] = v
    return found


def extract_sampled(found: dict[str, str]) -> bool | None:
    """The caller's sampling decision (``extractSampled``); None when it made none (the local
    decision then stands)."""
    b3 = found.get(B3)
    if b3 is not None:
        pos = _SAMPLED_POS.get(len(b3))
        if pos is None or b3[pos] not in _FLAGS:
            return None
        return b3[pos] != "0"
    value = found.get(SAMPLED)
    if value is None:
        return None
    # (older Zipkin tracers send "true")
    return value == "1" or value == "true"


def _hex(text: str, what: str) -> int:
    if len(text) == 16 and _HEX.issuperset(text):
        return int(text, 16)  # (the usual id; Python's int would also take "_" and spaces)
    value = strtoull16(text)
    if value is None:
        raise ExtractorError(f"Invalid input: invalid {what} {text}")
    return value


def extract_context(found: dict[str, str], sampled: bool) -> SpanContext | None:
    """The caller's span (``extractSpanContext``, from :func:`scan`'s headers), None when the
    headers carry none."""
    b3 = found.get(B3)
    if b3 is not None:
        return _from_b3(b3, sampled)
    trace = found.get(TRACE_ID)
    span = found.get(SPAN_ID)
    if trace is None or span is None:
        return None
    high = 0
    if len(trace) == 32:
        high, low = _hex(trace[:16], "trace id high"), _hex(trace[16:], "trace id")
    else:
        low = _hex(trace, "trace id")
    span_id = _hex(span, "span id")
    parent = found.get(PARENT_SPAN_ID)
    parent_id = _hex(parent, "parent span id") if parent else 0
    return SpanContext(high, low, span_id, parent_id, sampled)


def _from_b3(b3: str, sampled: bool) -> SpanContext | None:
    """``extractSpanContextFromB3SingleFormat``."""
    n = len(b3)
    if n == 0:
        raise ExtractorError("Invalid input: empty")
    if n == 1:
        if b3 in _FLAGS:
            return None
        raise ExtractorError(f"Invalid input: invalid sampling flag {b3}")
    if n < 16 + 1 + 16:
        raise ExtractorError("Invalid input: truncated")
    if n > _MAX_B3:
        raise ExtractorError("Invalid input: too long")
    high = 0
    pos = 0
    if n > 32 and b3[32] == "-":
        high = _hex(b3[0:16], "trace id high")
        pos = 16
    low = _hex(b3[pos : pos + 16], "trace id")
    pos += 16
    if b3[pos] != "-":
        raise ExtractorError("Invalid input: not exists span id")
    pos += 1
    span_id = _hex(b3[pos : pos + 16], "span id")
    pos += 16
    parent_id = 0
    if n > pos:
        if n == pos + 1:
            raise ExtractorError("Invalid input: truncated")
        if b3[pos] != "-":
            raise ExtractorError("Invalid input: not exists sampling field")
        pos += 1
        if n == pos + 1 or (n >= pos + 2 and b3[pos + 1] == "-"):
            if b3[pos] not in _FLAGS:
                raise ExtractorError(f"Invalid input: invalid sampling flag {b3[pos]}")
            pos += 1
        else:
            raise ExtractorError("Invalid input: truncated")
        if n > pos:
            if n != pos + 17:
                raise ExtractorError("Invalid input: truncated")
            parent_id = _hex(b3[pos + 1 :], "parent id")
    return SpanContext(high, low, span_id, parent_id, sampled)


def hex64(value: int) -> str:
    return f"{value:016x}"


def inject(
    headers: RequestHeaders, high: int, trace_id: int, span_id: int, parent_id: int, sampled: bool, single: bool
) -> None:
    """Write a span's context into the upstream request (``injectContext``). Each header is
    removed and added again, so it moves to the end, as Envoy's ``setCopy`` of a header that is
    not one of its inline headers does (seen in the order the upstream receives them)."""
    trace = f"{high:016x}{trace_id:016x}" if high else f"{trace_id:016x}"
    flag = "1" if sampled else "0"
    entries = headers.entries
    present = False
    for e in entries:
        if e[0] in NAMES:
            present = True
            break
    if not single and not present:
        # (the usual request: nothing to replace)
        entries.append([TRACE_ID, trace])
        entries.append([SPAN_ID, f"{span_id:016x}"])
        if parent_id:
            entries.append([PARENT_SPAN_ID, f"{parent_id:016x}"])
        entries.append([SAMPLED, flag])
        return
    if single:
        value = f"{trace}-{hex64(span_id)}-{flag}"
        _replace(headers, B3, f"{value}-{hex64(parent_id)}" if parent_id else value)
        return
    _replace(headers, TRACE_ID, trace)
    _replace(headers, SPAN_ID, hex64(span_id))
    if parent_id:
        _replace(headers, PARENT_SPAN_ID, hex64(parent_id))
    _replace(headers, SAMPLED, flag)


def _replace(headers: RequestHeaders, name: str, value: str) -> None:
    for e in headers.entries:
        if e[0] == name:
            headers.remove(name)
            break
    headers.entries.append([name, value])


TRACEPARENT = "traceparent"


def from_traceparent(value: str) -> SpanContext | None:
    """The W3C ``traceparent`` (``version-traceid-parentid-flags``) as a context, for
    ``USE_B3_WITH_W3C_PROPAGATION`` when the request has no B3 headers; None when it does not
    parse (Envoy then starts a root span, as without one)."""
    parts = value.split("-")
    # (Envoy 1.40 takes exactly the 55 characters of version 00's layout: a longer future
    # version's header is not read)
    if len(value) != 55 or len(parts) != 4 or parts[0].lower() == "ff":
        return None
    version, trace, parent, flags = parts
    if len(trace) != 32 or len(parent) != 16 or len(flags) != 2 or not _HEX.issuperset(version + trace + parent + flags):
        return None
    if not int(trace, 16) or not int(parent, 16):
        return None
    return SpanContext(int(trace[:16], 16), int(trace[16:], 16), int(parent, 16), 0, bool(int(flags, 16) & 1))


def inject_traceparent(headers: RequestHeaders, high: int, trace_id: int, span_id: int, sampled: bool) -> None:
    """The span's context as ``traceparent`` too (the W3C propagation option): the trace id as
    32 digits (a 64-bit one zero-padded), ``-01`` when sampled."""
    _replace(headers, TRACEPARENT, f"00-{high:016x}{trace_id:016x}-{span_id:016x}-{'01' if sampled else '00'}")
