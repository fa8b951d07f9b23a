"""Decoding a POSTed span list: JSON v2 (``V2SpanReader`` over gson) and proto3 ``ListOfSpans``
(``Proto3ZipkinFields``), with the server's checks and its error messages (``JsonCodec`` /
``Proto3Codec.exceptionReading``: ``<cause> reading List<Span> from json|proto3``, ``Malformed``
standing for gson's and proto3's syntax errors).

Deliberate difference: the JSON is parsed whole (orjson) before the spans are read, where gson
reads as it goes. A document that is not JSON answers ``Malformed reading List<Span> from json``,
gson's answer for the lenient-only forms (unquoted names, single quotes, trailing commas …);
for other syntax errors gson names the place (``Unterminated object at line 1 column 20 path
$[0].name``), which is not reproduced. gson's leniency on types is kept: a number where a string
is expected is read as its text, a quoted number where a number is expected as the number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from sluice.lab.backends.zipkin.model import (
    KINDS,
    Annotation,
    Span,
    SpanError,
    build,
    endpoint,
    ip_from_bytes,
    normalize_parent_id,
    normalize_span_id,
    normalize_trace_id,
    parse_ip,
)


class DecodeError(ValueError):
    """The 400 body: ``str(exc)`` is the message the real server answers."""


# --- JSON v2 --------------------------------------------------------------------------------


class _Read(Exception):
    """A reading error inside a span; ``str`` is the cause before ``reading List<Span>``."""


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, (int, float)):
        return "NUMBER"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, list):
        return "BEGIN_ARRAY"
    if isinstance(value, dict):
        return "BEGIN_OBJECT"
    return "NULL"


def _string(value: Any, path: str) -> str:
    # gson's nextString() also returns a number's literal text.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _Read(f"Expected a string but was {_type_name(value)} at path {path}")


def _long(value: Any, path: str, what: str = "a long") -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                as_float = float(value)
            except ValueError:
                raise _Read(f"Expected {what} but was {value} at path {path}") from None
            if as_float.is_integer():
                return int(as_float)
            raise _Read(f"Expected {what} but was {value} at path {path}") from None
    raise _Read(f"Expected {what} but was {_type_name(value)} at path {path}")


def _boolean(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    raise _Read(f"Expected a boolean but was {_type_name(value)} at path {path}")


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        # gson: "Expected BEGIN_OBJECT but was …", which JsonCodec turns into "Malformed".
        raise _Read("Malformed")
    return value


# The readers below take the common type inline (``type(v) is str`` / ``is int``: orjson makes no
# subclasses, and ``bool`` is not ``int`` by ``type``) and build the JSON path of an error message
# only on the way to an error: formatting it for every field was a fifth of the collector's time.


def _endpoint(raw: Any, path: str, *, lower: bool) -> Any:
    obj = _object(raw)
    name: str | None = None
    ip: tuple[str | None, str | None] = (None, None)
    port = 0
    read = False
    for key, value in obj.items():
        if value is None:
            continue
        if key == "serviceName":
            name, read = value if type(value) is str else _string(value, f"{path}.{key}"), True
        elif key in ("ipv4", "ipv6"):
            parsed = parse_ip(value if type(value) is str else _string(value, f"{path}.{key}"))
            # Each address field overwrites only the family it parsed (Endpoint.Builder.parseIp).
            ip = (parsed[0] or ip[0], parsed[1] or ip[1])
            read = True
        elif key == "port":
            port, read = value if type(value) is int else _long(value, f"{path}.{key}", "an int"), True
    if not read:
        return None
    return endpoint(name, ip, port, lower=lower)


def _annotations(value: Any, at: str) -> list[Annotation]:
    if not isinstance(value, list):
        raise _Read(f"Expected BEGIN_ARRAY but was {_type_name(value)} (at {at})")
    out = []
    for i, raw in enumerate(value):
        ann = _object(raw)
        ts, text = ann.get("timestamp"), ann.get("value")
        if ts is None or text is None:
            raise SpanError(f"Incomplete annotation at {at}[{i}]")
        out.append(Annotation(ts if type(ts) is int else _long(ts, f"{at}[{i}].timestamp"),
                              text if type(text) is str else _string(text, f"{at}[{i}].value")))
    return out


def _span(obj: dict[str, Any], path: str, *, lower: bool) -> Span:
    trace_id = span_id = None
    span = Span("", "")
    for key, value in obj.items():
        if key == "traceId":
            trace_id = normalize_trace_id(value if type(value) is str else _string(value, f"{path}.{key}"))
            continue
        if key == "id":
            span_id = normalize_span_id(value if type(value) is str else _string(value, f"{path}.{key}"))
            continue
        if value is None:
            continue
        if key == "parentId":
            span.parent_id = normalize_parent_id(value if type(value) is str else _string(value, f"{path}.{key}"))
        elif key == "kind":
            kind = value if type(value) is str else _string(value, f"{path}.{key}")
            if kind not in KINDS:
                raise SpanError(f"No enum constant zipkin2.Span.Kind.{kind}")
            span.kind = kind
        elif key == "name":
            name = value if type(value) is str else _string(value, f"{path}.{key}")
            span.name = (name.lower() if lower else name) or None
        elif key == "timestamp":
            span.timestamp = max(value if type(value) is int else _long(value, f"{path}.{key}"), 0)
        elif key == "duration":
            span.duration = max(value if type(value) is int else _long(value, f"{path}.{key}"), 0)
        elif key == "localEndpoint":
            span.local = _endpoint(value, f"{path}.{key}", lower=lower)
        elif key == "remoteEndpoint":
            span.remote = _endpoint(value, f"{path}.{key}", lower=lower)
        elif key == "annotations":
            span.annotations.extend(_annotations(value, f"{path}.{key}"))
        elif key == "tags":
            tags = span.tags
            for tag, tag_value in _object(value).items():
                if type(tag_value) is str:
                    tags[tag] = tag_value
                    continue
                if tag_value is None:
                    raise SpanError(f"No value at {path}.{key}.{tag}")
                tags[tag] = _string(tag_value, f"{path}.{key}.{tag}")
        elif key == "debug":
            if _boolean(value, f"{path}.{key}"):
                span.debug = True
        elif key == "shared":
            if _boolean(value, f"{path}.{key}"):
                span.shared = True
    missing = ("" if trace_id else " traceId") + ("" if span_id else " id")
    if missing:
        raise SpanError(f"Missing :{missing}")
    assert trace_id is not None and span_id is not None
    span.trace_id, span.id = trace_id, span_id
    return build(span) if lower else span


def decode_json(body: bytes, *, lower: bool = True) -> list[Span]:
    """``SpanBytesDecoder.JSON_V2.decodeList``: the spans, or DecodeError."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        # The body was checked to start with '[' (the collector's format detection).
        raise DecodeError("Malformed reading List<Span> from json") from None
    if not isinstance(doc, list):
        raise DecodeError("Malformed reading List<Span> from json")
    spans = []
    try:
        for i, raw in enumerate(doc):
            spans.append(_span(_object(raw), f"$[{i}]", lower=lower))
    except (_Read, SpanError) as exc:
        raise DecodeError(f"{exc} reading List<Span> from json") from None
    return spans


# --- proto3 -----------------------------------------------------------------------------------


class _Buffer:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def available(self) -> int:
        return len(self.data) - self.pos

    def require(self, n: int) -> None:
        if self.available() < n:
            raise _Read(f"Truncated: length {n} > bytes available {self.available()}")

    def byte(self) -> int:
        self.require(1)
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint32(self) -> int:
        result = 0
        for shift in (0, 7, 14, 21):
            b = self.byte()
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
        b = self.byte()
        if b & 0xF0:
            raise _Read(f"Greater than 32-bit varint at position {self.pos - 1}")
        return (result | b << 28) & 0xFFFFFFFF

    def varint64(self) -> int:
        result = 0
        for i in range(10):
            b = self.byte()
            if i == 9 and b & 0xF0:
                raise _Read(f"Greater than 64-bit varint at position {self.pos - 1}")
            result |= (b & 0x7F) << (7 * i)
            if b < 0x80:
                break
        return result & 0xFFFFFFFFFFFFFFFF

    def take(self, n: int) -> bytes:
        self.require(n)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def fixed64(self) -> int:
        return int.from_bytes(self.take(8), "little", signed=True)

    def skip(self, key: int) -> None:
        wire = key & 7
        if key >> 3 == 0:
            raise _Read(f"Malformed: fieldNumber was zero at byte {self.pos}")
        if wire == 0:
            while self.available() and self.byte() >= 0x80:
                pass
        elif wire == 1:
            self.pos = min(self.pos + 8, len(self.data))
        elif wire == 2:
            n = self.varint32()
            self.pos = min(self.pos + n, len(self.data))
        elif wire == 5:
            self.pos = min(self.pos + 4, len(self.data))
        else:
            raise _Read(f"Malformed: invalid wireType {wire} at byte {self.pos}")

    def hex_field(self) -> str | None:
        n = self.varint32()
        if n == 0:
            return None
        if n > 32:
            raise _Read(f"hex field greater than 32 chars long: {n}")
        return self.take(n).hex()

    def utf8(self) -> str | None:
        n = self.varint32()
        if n == 0:
            return None
        return self.take(n).decode("utf-8", "replace")


def _proto_endpoint(buf: _Buffer, lower: bool) -> Any:
    n = buf.varint32()
    if n == 0:
        return None
    end = buf.pos + n
    name: str | None = None
    ip: tuple[str | None, str | None] = (None, None)
    port = 0
    while buf.pos < end:
        key = buf.varint32()
        if key == 0x0A:
            name = buf.utf8()
        elif key in (0x12, 0x1A):
            raw = buf.take(buf.varint32())
            parsed = ip_from_bytes(raw)
            ip = (parsed[0] or ip[0], parsed[1] or ip[1])
        elif key == 0x20:
            port = buf.varint32()
        else:
            buf.skip(key)
    return endpoint(name, ip, port, lower=lower)


def _proto_pair(buf: _Buffer, first: Callable[[], Any], second: Callable[[], Any], first_key: int, second_key: int) -> tuple[Any, Any]:
    n = buf.varint32()
    end = buf.pos + n
    a = b = None
    while buf.pos < end:
        key = buf.varint32()
        if key == first_key:
            a = first()
        elif key == second_key:
            b = second()
        else:
            buf.skip(key)
    return a, b


def _proto_span(buf: _Buffer, lower: bool) -> Span | None:
    buf.varint32()  # the list field's key (ListOfSpans.spans = 1), tossed as zipkin2 does
    n = buf.varint32()
    if n == 0:
        return None
    buf.require(n)
    end = buf.pos + n
    trace_id = span_id = None
    span = Span("", "")
    while buf.pos < end:
        key = buf.varint32()
        if key == 0x0A:
            raw = buf.hex_field()
            trace_id = normalize_trace_id(raw) if raw is not None else None
        elif key == 0x12:
            parent = buf.hex_field()
            span.parent_id = normalize_parent_id(parent) if parent is not None else None
        elif key == 0x1A:
            raw = buf.hex_field()
            span_id = normalize_span_id(raw) if raw is not None else None
        elif key == 0x20:
            kind = buf.varint32()
            if 0 < kind <= len(KINDS):
                span.kind = KINDS[kind - 1]
        elif key == 0x2A:
            name = buf.utf8()
            span.name = (name.lower() if lower else name) if name else None
        elif key == 0x31:
            span.timestamp = max(buf.fixed64(), 0)
        elif key == 0x38:
            span.duration = buf.varint64()
        elif key == 0x42:
            span.local = _proto_endpoint(buf, lower)
        elif key == 0x4A:
            span.remote = _proto_endpoint(buf, lower)
        elif key == 0x52:
            ts, value = _proto_pair(buf, buf.fixed64, buf.utf8, 0x09, 0x12)
            if ts and value is not None:
                span.annotations.append(Annotation(ts, value))
        elif key == 0x5A:
            tag, value = _proto_pair(buf, buf.utf8, buf.utf8, 0x0A, 0x12)
            if tag is not None:
                span.tags[tag] = value or ""  # empty tag values are allowed
        elif key == 0x60:
            if buf.byte() == 1:
                span.debug = True
        elif key == 0x68:
            if buf.byte() == 1:
                span.shared = True
        else:
            buf.skip(key)
    missing = ("" if trace_id else " traceId") + ("" if span_id else " id")
    if missing:
        raise SpanError(f"Missing :{missing}")
    assert trace_id is not None and span_id is not None
    span.trace_id, span.id = trace_id, span_id
    return build(span) if lower else span


def decode_proto3(body: bytes, *, lower: bool = True) -> list[Span]:
    """``SpanBytesDecoder.PROTO3.decodeList`` (zipkin.proto3 ``ListOfSpans``)."""
    buf = _Buffer(body)
    spans: list[Span] = []
    try:
        while buf.pos < len(body):
            span = _proto_span(buf, lower)
            if span is None:
                break
            spans.append(span)
    except (_Read, SpanError) as exc:
        cause = str(exc)
        raise DecodeError(f"{'Malformed' if 'Malformed' in cause else cause} reading List<Span> from proto3") from None
    return spans


# --- the collector's format checks (ZipkinHttpCollector.validateAndStoreSpans) --------------


def _contains(body: bytes, needle: bytes) -> bool:
    return needle in body


def check_list_format(body: bytes, decoder: str) -> None:
    """``SpanBytesDecoderDetector.decoderForListMessage`` and ``testForUnexpectedFormat``:
    raise DecodeError with the collector's message (ending in a newline, as the real one)."""
    first = body[0]
    protobuf3 = first == 10 and len(body) > 1 and body[1] != 0
    if first > 16 and first not in (ord("["), ord("{")):
        raise DecodeError(f"Expected a {decoder} encoded list\n")
    if first not in (12, 11, ord("[")) and not protobuf3:
        raise DecodeError(f"Expected a {decoder} encoded list\n")
    if decoder == "JSON_V2" and _contains(body, b'yAnnotations"'):
        raise DecodeError("Expected a JSON_V2 encoded list, but received: JSON_V1\n")
