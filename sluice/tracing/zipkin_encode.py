"""A batch of spans as the collector takes it (Envoy's ``JsonV2Serializer`` and
``ProtobufSerializer``): Zipkin v2 JSON (``HTTP_JSON``) or ``zipkin.proto3.ListOfSpans``
(``HTTP_PROTO``).

Envoy's JSON is a protobuf ``Struct`` printed: key order is not defined; times and durations
are integers (µs); every tag is a string; the start annotation (``cs``/``sr``) becomes the
span's ``kind`` and ``timestamp``; ``shared: true`` marks every SERVER span when spans share
context; annotations (``cr``/``ss`` and verbose logs) carry no endpoint.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from typing import Any

import orjson

from sluice.tracing.zipkin_span import SERVER, Span


def span_json(span: Span, shared_span_context: bool) -> dict[str, Any]:
    tracer = span.tracer
    high = span.trace_id_high
    out: dict[str, Any] = {
        "traceId": f"{high:016x}{span.trace_id:016x}" if high else f"{span.trace_id:016x}",
        "id": f"{span.id:016x}",
        "kind": span.kind,
        "timestamp": span.timestamp,
        "localEndpoint": tracer.endpoint_json,
    }
    if span.parent_id:
        out["parentId"] = f"{span.parent_id:016x}"
    if span.name:
        out["name"] = span.name
    if shared_span_context and span.kind == SERVER:
        out["shared"] = True
    out["duration"] = span.duration
    if span.tags:
        out["tags"] = span.tags
    annotations = [{"timestamp": t, "value": v} for t, v in span.logs]
    if span.end_annotation is not None:
        t, v = span.end_annotation
        annotations.append({"timestamp": t, "value": v})
    if annotations:
        out["annotations"] = annotations
    return out


def encode_json(spans: Sequence[Span], shared_span_context: bool) -> bytes:
    return orjson.dumps([span_json(s, shared_span_context) for s in spans])


# -- protobuf (zipkin.proto3) --------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _fixed64(number: int, value: int) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<Q", value)


def _uint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _endpoint_proto(service_name: str, address: str) -> bytes:
    out = _field(1, service_name.encode()) if service_name else b""
    if ":" in address:
        out += _field(3, socket.inet_pton(socket.AF_INET6, address))
    elif address:
        out += _field(2, socket.inet_aton(address))
    return out


_KIND = {"CLIENT": 1, "SERVER": 2}


def span_proto(span: Span, shared_span_context: bool) -> bytes:
    tracer = span.tracer
    trace = struct.pack(">QQ", span.trace_id_high, span.trace_id) if span.trace_id_high else struct.pack(">Q", span.trace_id)
    out = _field(1, trace)
    # Envoy 1.40 writes the trace id big-endian (as zipkin.proto says) but the span and parent
    # ids in host order, little-endian (its Util::toByteString): matched, so a collector sees
    # from Sluice the ids it sees from Envoy.
    if span.parent_id:
        out += _field(2, struct.pack("<Q", span.parent_id))
    out += _field(3, struct.pack("<Q", span.id))
    out += _uint(4, _KIND[span.kind])
    if span.name:
        out += _field(5, span.name.encode())
    out += _fixed64(6, span.timestamp)
    out += _uint(7, span.duration)
    out += _field(8, _endpoint_proto(tracer.service_name, tracer.address))
    annotations = list(span.logs)
    if span.end_annotation is not None:
        annotations.append(span.end_annotation)
    for t, v in annotations:
        out += _field(10, _fixed64(1, t) + _field(2, v.encode()))
    for k, v in span.tags.items():
        out += _field(11, _field(1, k.encode()) + _field(2, v.encode()))
    if shared_span_context and span.kind == SERVER:
        out += _uint(13, 1)
    return out


def encode_proto(spans: Sequence[Span], shared_span_context: bool) -> bytes:
    return b"".join(_field(1, span_proto(s, shared_span_context)) for s in spans)
