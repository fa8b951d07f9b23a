"""zipkin2's span model as the server keeps it: ``Span``, ``Endpoint``, ``Annotation`` and the
normalisation ``Span.Builder`` applies (openzipkin/zipkin 2.27 ``zipkin2/Span.java``,
``Endpoint.java``), plus the V2 JSON writer (``V2SpanWriter``: the key order, what is left out,
``JsonEscaper``'s escapes), so a stored span is answered byte for byte as Zipkin writes it.

Two normalisation policies share the model, because the two products differ on what they keep:

- ``ZIPKIN``: ids must be lower-hex (``… should be lower-hex encoded with no prefix``), short ids
  are left-padded to 16 (trace ids to 16 or 32), an all-zero parent id is dropped, span and service
  names are lowercased, empty names and empty endpoints are dropped, annotations are sorted and
  deduplicated, tags are sorted by key (``TreeMap``), ``shared`` on a CLIENT span is removed and a
  parent id equal to the span's id is dropped;
- ``JAEGER``: what Jaeger's Zipkin collector keeps before its own translation (names as sent,
  annotations in the order sent); the checks are its swagger model's (see ``jaeger_collector``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

KINDS = ("CLIENT", "SERVER", "PRODUCER", "CONSUMER")
"""``Span.Kind`` in declaration order (proto3's kind is this index + 1)."""

_HEX_DIGITS = "0123456789abcdef"
_ZEROS = "0" * 32


class SpanError(ValueError):
    """A span the builder refuses; the message is zipkin2's (``id is empty`` …)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    service_name: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    port: int = 0
    """0 means absent, as ``Endpoint.portAsInt()``."""

    def is_empty(self) -> bool:
        return self.service_name is None and self.ipv4 is None and self.ipv6 is None and self.port == 0

    def merge(self, other: Endpoint) -> Endpoint:
        """``Endpoint.Builder.merge``: fields missing here are taken from ``other``."""
        return Endpoint(
            self.service_name if self.service_name is not None else other.service_name,
            self.ipv4 if self.ipv4 is not None else other.ipv4,
            self.ipv6 if self.ipv6 is not None else other.ipv6,
            self.port or other.port,
        )


@dataclass(frozen=True, slots=True, order=True)
class Annotation:
    # Field order is the sort order: ``Annotation.compareTo`` compares timestamp, then value.
    timestamp: int
    value: str


@dataclass(slots=True)
class Span:
    trace_id: str
    id: str
    parent_id: str | None = None
    kind: str | None = None
    name: str | None = None
    timestamp: int = 0
    """Epoch microseconds; 0 means absent (``timestampAsLong``)."""
    duration: int = 0
    local: Endpoint | None = None
    remote: Endpoint | None = None
    annotations: list[Annotation] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    debug: bool | None = None
    shared: bool | None = None

    @property
    def local_service(self) -> str | None:
        return self.local.service_name if self.local is not None else None

    @property
    def remote_service(self) -> str | None:
        return self.remote.service_name if self.remote is not None else None

    @property
    def low_trace_id(self) -> str:
        return self.trace_id[16:] if len(self.trace_id) == 32 else self.trace_id


# --- ids (Span.normalizeTraceId, Builder.id / parentId) ---------------------------------------


def _zero_prefix(value: str) -> int:
    """``validateHexAndReturnZeroPrefix``: raises on anything but lower hex."""
    # str.strip/lstrip run in C: a per-character loop here was a visible share of the collector's time.
    if value.strip(_HEX_DIGITS):
        raise SpanError(f"{value} should be lower-hex encoded with no prefix")
    return len(value) - len(value.lstrip("0"))


def normalize_trace_id(trace_id: str) -> str:
    length = len(trace_id)
    if length == 0:
        raise SpanError("traceId is empty")
    if length > 32:
        raise SpanError("traceId.length > 32")
    zeros = _zero_prefix(trace_id)
    if zeros == length:
        raise SpanError("traceId is all zeros")
    if length == 32 and zeros >= 16:
        return trace_id[16:]
    if length in (16, 32):
        return trace_id
    return _ZEROS[: (16 if length < 16 else 32) - length] + trace_id


def normalize_span_id(span_id: str) -> str:
    length = len(span_id)
    if length == 0:
        raise SpanError("id is empty")
    if length > 16:
        raise SpanError("id.length > 16")
    if _zero_prefix(span_id) == 16:
        raise SpanError("id is all zeros")
    return _ZEROS[: 16 - length] + span_id


def normalize_parent_id(parent_id: str | None) -> str | None:
    if parent_id is None:
        return None
    length = len(parent_id)
    if length == 0:
        raise SpanError("parentId is empty")
    if length > 16:
        raise SpanError("parentId.length > 16")
    if _zero_prefix(parent_id) == length:
        return None
    return _ZEROS[: 16 - length] + parent_id


# --- IP addresses (Endpoint.Builder.parseIp) --------------------------------------------------


@functools.lru_cache(maxsize=4096)
def parse_ip(text: str | None) -> tuple[str | None, str | None]:
    """(Cached: a lab's proxies report a handful of addresses, and ``ipaddress`` parsing cost
    several microseconds per endpoint on the collector's path.)

    ``(ipv4, ipv6)`` for an address string, as ``Endpoint.Builder.parseIp(String)``: IPv4 kept
    as written when valid, an IPv4-embedded IPv6 (``::1.2.3.4``, ``::ffff:1.2.3.4``) becomes its
    IPv4, IPv6 is rewritten in Zipkin's compressed form; anything else is dropped silently."""
    if not text:
        return None, None
    if ":" not in text:
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return None, None
        return text, None
    try:
        packed = ipaddress.IPv6Address(text).packed
    except ValueError:
        return None, None
    if "." in text:
        # Only ``::a.b.c.d`` and ``::ffff:a.b.c.d`` are embedded forms Zipkin accepts.
        # (``detectFamily``: ``::`` then four of f/F/0, e.g. ``::ffff:``; anything else is Unknown)
        head, tail = text[: text.rfind(":") + 1], text[text.rfind(":") + 1 :]
        if head == "::" or (len(head) == 7 and head.startswith("::") and all(c in "fF0" for c in head[2:6])):
            try:
                ipaddress.IPv4Address(tail)
            except ValueError:
                return None, None
            return tail, None
        return None, None
    return ip_from_bytes(packed)


def ip_from_bytes(raw: bytes) -> tuple[str | None, str | None]:
    """``parseIp(byte[])`` (proto3 endpoints carry packed addresses)."""
    if len(raw) == 4:
        return ".".join(str(b) for b in raw), None
    if len(raw) != 16:
        return None, None
    if raw[:12] == bytes(12) and raw[12:] != b"\x00\x00\x00\x01":
        # IPv4-compatible: zipkin2 reads it as the IPv4 address (``parseEmbeddedIPv4``).
        return ".".join(str(b) for b in raw[12:]), None
    return None, write_ipv6(raw)


def write_ipv6(raw: bytes) -> str:
    """``Endpoint.writeIpV6``: the first longest run of zero groups becomes ``::`` (even a single
    group, unlike RFC 5952), groups without leading zeros, lower-case."""
    groups = [(raw[i] << 8) | raw[i + 1] for i in range(0, 16, 2)]
    if not any(groups):
        return "::"
    best_at, best_len, run_at = -1, -1, -1
    for i, g in enumerate(groups):
        if g == 0:
            if run_at < 0:
                run_at = i
            continue
        if run_at >= 0:
            if i - run_at > best_len:
                best_at, best_len = run_at, i - run_at
            run_at = -1
    if best_at == -1 and run_at != -1:
        # A trailing run counts only when no earlier run was found (Java's loop ends before it).
        best_at, best_len = run_at, 8 - run_at
    out: list[str] = []
    i = 0
    while i < 8:
        if i == best_at:
            out.append(":")
            i += best_len
            if i == 8:
                out.append(":")
            continue
        if i:
            out.append(":")
        out.append(format(groups[i], "x"))
        i += 1
    return "".join(out)


def endpoint(service_name: str | None, ip: tuple[str | None, str | None], port: int, *, lower: bool) -> Endpoint | None:
    """An endpoint from read fields, ``None`` when empty (``Span.Builder.localEndpoint``)."""
    name = service_name or None
    if name is not None and lower:
        name = name.lower()
    if port > 0xFFFF:
        raise SpanError(f"invalid port {port}")
    ep = Endpoint(name, ip[0], ip[1], max(port, 0))
    return None if ep.is_empty() else ep


def build(span: Span) -> Span:
    """``Span.Builder.build()``'s last fixes, applied to a span read under the ZIPKIN policy."""
    if span.parent_id == span.id:
        span.parent_id = None
    if span.shared and span.kind == "CLIENT":
        span.shared = None
    if len(span.annotations) > 1:  # (hashing and ordering dataclasses is slow; Envoy sends one)
        span.annotations = sorted(set(span.annotations))
    span.tags = dict(sorted(span.tags.items()))
    return span


# --- V2 JSON (V2SpanWriter, JsonEscaper) ------------------------------------------------------

_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\t"): "\\t", ord("\b"): "\\b", ord("\n"): "\\n", ord("\r"): "\\r",
                 ord("\f"): "\\f", 0x2028: "\\u2028", 0x2029: "\\u2029"})


# What JsonEscaper escapes; most strings hold none of it, and a regex search (C) is several
# times cheaper than str.translate, which walks the string in Python-level steps per character.
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\\u2028\u2029]')


def json_escape(value: str) -> str:
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    return value.translate(_ESCAPES)


def write_endpoint(ep: Endpoint) -> str:
    parts = []
    if ep.service_name is not None:
        parts.append(f'"serviceName":"{json_escape(ep.service_name)}"')
    if ep.ipv4 is not None:
        parts.append(f'"ipv4":"{ep.ipv4}"')
    if ep.ipv6 is not None:
        parts.append(f'"ipv6":"{ep.ipv6}"')
    if ep.port:
        parts.append(f'"port":{ep.port}')
    return "{" + ",".join(parts) + "}"


def write_span(s: Span) -> str:
    """One span as ``SpanBytesEncoder.JSON_V2`` writes it.

    Through orjson when its output is provably ``write_span_escaped``'s: the same key order
    (insertion), the same escapes for ``"``, ``\\`` and controls (``\\b\\t\\n\\f\\r``, else
    ``\\u00xx``), UTF-8 kept as is; it does not escape U+2028/U+2029, which JsonEscaper does, and
    it escapes what the writer leaves raw (ids, kind, addresses — never escapable once normalised),
    so those cases, and integers beyond 64 bits, take the Python writer. About 3x faster, on every
    span the collector stores (``bench/bench_zipkin_store.py`` checks both agree)."""
    plain = s.trace_id + s.id + (s.parent_id or "") + (s.kind or "")
    d: dict[str, Any] = {"traceId": s.trace_id}
    if s.parent_id is not None:
        d["parentId"] = s.parent_id
    d["id"] = s.id
    if s.kind is not None:
        d["kind"] = s.kind
    if s.name is not None:
        d["name"] = s.name
    if s.timestamp:
        d["timestamp"] = s.timestamp
    if s.duration:
        d["duration"] = s.duration
    for key, ep in (("localEndpoint", s.local), ("remoteEndpoint", s.remote)):
        if ep is not None:
            e: dict[str, Any] = {}
            if ep.service_name is not None:
                e["serviceName"] = ep.service_name
            if ep.ipv4 is not None:
                e["ipv4"] = ep.ipv4
                plain += ep.ipv4
            if ep.ipv6 is not None:
                e["ipv6"] = ep.ipv6
                plain += ep.ipv6
            if ep.port:
                e["port"] = ep.port
            d[key] = e
    if s.annotations:
        d["annotations"] = [{"timestamp": a.timestamp, "value": a.value} for a in s.annotations]
    if s.tags:
        d["tags"] = s.tags
    if s.debug:
        d["debug"] = True
    if s.shared:
        d["shared"] = True
    if _NEEDS_ESCAPE.search(plain) is None:
        try:
            out = orjson.dumps(d)
        except orjson.JSONEncodeError:  # an integer beyond 64 bits
            pass
        else:
            if b"\xe2\x80\xa8" not in out and b"\xe2\x80\xa9" not in out:
                return out.decode()
    return write_span_escaped(s)


def write_span_escaped(s: Span) -> str:
    """``write_span`` written out field by field with JsonEscaper's escapes (the reference)."""
    out = [f'{{"traceId":"{s.trace_id}"']
    if s.parent_id is not None:
        out.append(f',"parentId":"{s.parent_id}"')
    out.append(f',"id":"{s.id}"')
    if s.kind is not None:
        out.append(f',"kind":"{s.kind}"')
    if s.name is not None:
        out.append(f',"name":"{json_escape(s.name)}"')
    if s.timestamp:
        out.append(f',"timestamp":{s.timestamp}')
    if s.duration:
        out.append(f',"duration":{s.duration}')
    if s.local is not None:
        out.append(',"localEndpoint":' + write_endpoint(s.local))
    if s.remote is not None:
        out.append(',"remoteEndpoint":' + write_endpoint(s.remote))
    if s.annotations:
        anns = ",".join(f'{{"timestamp":{a.timestamp},"value":"{json_escape(a.value)}"}}' for a in s.annotations)
        out.append(f',"annotations":[{anns}]')
    if s.tags:
        if _NEEDS_ESCAPE.search("".join(s.tags)) is None and _NEEDS_ESCAPE.search("".join(s.tags.values())) is None:
            # Envoy's ~15 tags per span: two searches over all keys and values instead of 30 calls.
            tags = ",".join(f'"{k}":"{v}"' for k, v in s.tags.items())
        else:
            tags = ",".join(f'"{json_escape(k)}":"{json_escape(v)}"' for k, v in s.tags.items())
        out.append(f',"tags":{{{tags}}}')
    if s.debug:
        out.append(',"debug":true')
    if s.shared:
        out.append(',"shared":true')
    out.append("}")
    return "".join(out)


def from_stored(d: dict[str, Any]) -> Span:
    """A span back from its stored V2 JSON (already normalised, so no checks)."""

    def ep(raw: dict[str, Any] | None) -> Endpoint | None:
        if raw is None:
            return None
        return Endpoint(raw.get("serviceName"), raw.get("ipv4"), raw.get("ipv6"), raw.get("port", 0))

    return Span(
        trace_id=d["traceId"], id=d["id"], parent_id=d.get("parentId"), kind=d.get("kind"), name=d.get("name"),
        timestamp=d.get("timestamp", 0), duration=d.get("duration", 0), local=ep(d.get("localEndpoint")),
        remote=ep(d.get("remoteEndpoint")), annotations=[Annotation(a["timestamp"], a["value"]) for a in d.get("annotations", ())],
        tags=d.get("tags", {}), debug=d.get("debug"), shared=d.get("shared"),
    )
