"""zipkin2's span model, codecs and dependency linker, without a server."""

from __future__ import annotations

import gzip
import json
import struct

import pytest
from zipkin_kit import posts

from sluice.lab.backends.zipkin import codec
from sluice.lab.backends.zipkin.linker import DependencyLinker, write_links
from sluice.lab.backends.zipkin.model import (
    Annotation,
    Endpoint,
    Span,
    SpanError,
    normalize_parent_id,
    normalize_span_id,
    normalize_trace_id,
    parse_ip,
    write_span,
)
from sluice.lab.backends.zipkin.query import BadRequest, QueryRequest, parse_annotation_query


def test_ids_are_checked_and_padded_as_the_span_builder_does() -> None:
    assert normalize_trace_id("abc") == "0000000000000abc"
    assert normalize_trace_id("1" * 20) == "0" * 12 + "1" * 20
    assert normalize_trace_id("0" * 16 + "48485a3953bb6124") == "48485a3953bb6124"
    assert normalize_span_id("a") == "000000000000000a"
    assert normalize_parent_id("0000000000000000") is None
    for bad, message in (
        ("ABC", "ABC should be lower-hex encoded with no prefix"),
        ("0x12", "0x12 should be lower-hex encoded with no prefix"),
        ("", "traceId is empty"),
        ("0" * 16, "traceId is all zeros"),
        ("1" * 33, "traceId.length > 32"),
    ):
        with pytest.raises(SpanError) as exc:
            normalize_trace_id(bad)
        assert str(exc.value) == message
    with pytest.raises(SpanError, match="^id is all zeros$"):
        normalize_span_id("0" * 16)
    with pytest.raises(SpanError, match=r"^id.length > 16$"):
        normalize_span_id("1" * 17)


def test_addresses_are_kept_as_zipkin_writes_them() -> None:
    assert parse_ip("192.0.2.2") == ("192.0.2.2", None)
    assert parse_ip("::ffff:10.1.2.3") == ("10.1.2.3", None)
    # Zipkin's writer compresses even a single zero group (RFC 5952 would not).
    assert parse_ip("2001:DB8:0:1:1:1:1:1") == (None, "2001:db8::1:1:1:1:1")
    assert parse_ip("2001:db8:0:0:1:0:0:1") == (None, "2001:db8::1:0:0:1")
    assert parse_ip("not-an-ip") == (None, None)


def test_v2_writer_key_order_and_escapes() -> None:
    span = Span(
        trace_id="463ac35c9f6413ad48485a3953bb6124", id="a2fb4a1d1a96d312", parent_id="0020000000000001", kind="SERVER",
        name='get "/"', timestamp=1472470996199000, duration=207000,
        local=Endpoint("frontend", "127.0.0.1", None, 8080), remote=Endpoint(None, None, "2001:db8::c001", 0),
        annotations=[Annotation(1472470996238000, "foo")], tags={"a\nb": "c\u2028"}, debug=True, shared=True,
    )
    assert write_span(span) == (
        '{"traceId":"463ac35c9f6413ad48485a3953bb6124","parentId":"0020000000000001","id":"a2fb4a1d1a96d312","kind":"SERVER",'
        '"name":"get \\"/\\"","timestamp":1472470996199000,"duration":207000,'
        '"localEndpoint":{"serviceName":"frontend","ipv4":"127.0.0.1","port":8080},"remoteEndpoint":{"ipv6":"2001:db8::c001"},'
        '"annotations":[{"timestamp":1472470996238000,"value":"foo"}],"tags":{"a\\nb":"c\\u2028"},"debug":true,"shared":true}'
    )


def test_json_decoding_normalises_like_the_server() -> None:
    raw = [{"traceId": "1", "id": "2", "parentId": "2", "name": "GET", "kind": "CLIENT", "shared": True, "debug": False,
            "localEndpoint": {"serviceName": "Front-Envoy", "ipv4": "192.0.2.2", "port": 0}, "remoteEndpoint": {},
            "annotations": [{"timestamp": 2, "value": "b"}, {"timestamp": 1, "value": "z"}, {"timestamp": 2, "value": "b"}],
            "tags": {"z": "1", "a": 2}, "timestamp": "5", "duration": -3}]
    (span,) = codec.decode_json(json.dumps(raw).encode())
    assert write_span(span) == (
        '{"traceId":"0000000000000001","id":"0000000000000002","kind":"CLIENT","name":"get","timestamp":5,'
        '"localEndpoint":{"serviceName":"front-envoy","ipv4":"192.0.2.2"},'
        '"annotations":[{"timestamp":1,"value":"z"},{"timestamp":2,"value":"b"}],"tags":{"a":"2","z":"1"}}'
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[{"id":"1"}]', "Missing : traceId reading List<Span> from json"),
        (b"[{}]", "Missing : traceId id reading List<Span> from json"),
        (b'[{"traceId":"1","id":"2","kind":"LOCAL"}]', "No enum constant zipkin2.Span.Kind.LOCAL reading List<Span> from json"),
        (b'[{"traceId":"1","id":"2","annotations":[{"value":"x"}]}]',
         "Incomplete annotation at $[0].annotations[0] reading List<Span> from json"),
        (b'[{"traceId":"1","id":"2","tags":{"k":null}}]', "No value at $[0].tags.k reading List<Span> from json"),
        (b'[{"traceId":"A","id":"2"}]', "A should be lower-hex encoded with no prefix reading List<Span> from json"),
        (b'[{"traceId":"1",', "Malformed reading List<Span> from json"),
        (b'["x"]', "Malformed reading List<Span> from json"),
    ],
)
def test_json_errors_are_the_servers(body: bytes, message: str) -> None:
    with pytest.raises(codec.DecodeError) as exc:
        codec.decode_json(body)
    assert str(exc.value) == message


def test_format_detection_messages() -> None:
    for body, message in ((b"{}", "Expected a JSON_V2 encoded list\n"), (b"hello", "Expected a JSON_V2 encoded list\n"),
                          (b'[{"binaryAnnotations":[]}]', "Expected a JSON_V2 encoded list, but received: JSON_V1\n")):
        with pytest.raises(codec.DecodeError) as exc:
            codec.check_list_format(body, "JSON_V2")
        assert str(exc.value) == message


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def _varint(v: int) -> bytes:
    out = b""
    while True:
        b, v = v & 0x7F, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out


def encode_proto3(spans: list[dict[str, object]]) -> bytes:
    """A tiny zipkin.proto3 ListOfSpans encoder (the fields the golden spans use)."""
    out = b""
    for s in spans:
        body = _field(1, 2, bytes.fromhex(str(s["traceId"])))
        if s.get("parentId"):
            body += _field(2, 2, bytes.fromhex(str(s["parentId"])))
        body += _field(3, 2, bytes.fromhex(str(s["id"])))
        body += _field(4, 0, _varint(["CLIENT", "SERVER", "PRODUCER", "CONSUMER"].index(str(s["kind"])) + 1))
        body += _field(5, 2, str(s["name"]).encode())
        body += _field(6, 1, struct.pack("<q", int(str(s["timestamp"]))))
        body += _field(7, 0, _varint(int(str(s["duration"]))))
        ep = s["localEndpoint"]
        assert isinstance(ep, dict)
        body += _field(8, 2, _field(1, 2, ep["serviceName"].encode()) + _field(2, 2, bytes(int(x) for x in ep["ipv4"].split("."))))
        for a in s.get("annotations", []):  # type: ignore[attr-defined]
            body += _field(10, 2, _field(1, 1, struct.pack("<q", a["timestamp"])) + _field(2, 2, a["value"].encode()))
        for k, v in s.get("tags", {}).items():  # type: ignore[attr-defined]
            body += _field(11, 2, _field(1, 2, k.encode()) + _field(2, 2, v.encode()))
        if s.get("shared"):
            body += _field(13, 0, b"\x01")
        out += _field(1, 2, body)
    return out


def test_proto3_decodes_to_the_same_spans_as_json() -> None:
    spans = [s for batch in posts("zipkin", "T01_plain") for s in batch]
    from_proto = codec.decode_proto3(encode_proto3(spans))
    from_json = codec.decode_json(json.dumps(spans).encode())
    assert len(from_proto) == 6
    assert [write_span(s) for s in from_proto] == [write_span(s) for s in from_json]
    with pytest.raises(codec.DecodeError) as exc:
        codec.decode_proto3(encode_proto3(spans)[:40])
    assert str(exc.value).startswith("Truncated: length ") and str(exc.value).endswith(" reading List<Span> from proto3")
    assert gzip.decompress(gzip.compress(b"x")) == b"x"


def _link(lab: str, scenario: str) -> list[tuple[str, str, int, int]]:
    linker = DependencyLinker()
    linker.put_trace(codec.decode_json(json.dumps([s for batch in posts(lab, scenario) for s in batch]).encode()))
    return linker.links()


def test_dependencies_of_the_golden_traces() -> None:
    # Shared client/server spans (the zipkin lab), merged by the linker.
    assert _link("zipkin", "T01_plain") == [("front-envoy", "service-a", 1, 0), ("service-a", "service-b", 1, 0),
                                            ("service-a", "service-c", 1, 0)]
    # A trace joined from an incoming B3 context: its root is missing, the links are the same.
    assert _link("zipkin", "T06_incoming_b3") == _link("zipkin", "T01_plain")
    # Separate spans (the jaeger lab's Envoys), and a fault abort: the error counts once.
    assert _link("jaeger", "T10_fault_abort_b") == [("front-envoy", "service-a", 1, 0), ("service-a", "service-b", 1, 1),
                                                    ("service-a", "service-c", 1, 0)]
    assert _link("zipkin128", "T10_fault_abort_b")[1] == ("service-a", "service-b", 1, 1)
    assert write_links([("a", "b", 2, 0), ("b", "c", 1, 1)]) == (
        b'[{"parent":"a","child":"b","callCount":2},{"parent":"b","child":"c","callCount":1,"errorCount":1}]'
    )


def test_query_request_checks_and_annotation_query() -> None:
    assert parse_annotation_query("error and http.method=GET and error=x") == {"error": "x", "http.method": "GET"}
    assert parse_annotation_query("a = b and c") == {"a": "b", "c": ""}
    for kwargs, message in (({"end_ts": 0}, "endTs <= 0"), ({"limit": 0}, "limit <= 0"), ({"lookback": 0}, "lookback <= 0"),
                            ({"min_duration": 0}, "minDuration <= 0"), ({"max_duration": 5}, "maxDuration is only valid with minDuration"),
                            ({"min_duration": 5, "max_duration": 4}, "maxDuration < minDuration")):
        args: dict[str, object] = {"end_ts": 1, "lookback": 1, "limit": 1, **kwargs}
        with pytest.raises(BadRequest) as exc:
            QueryRequest(**args)  # type: ignore[arg-type]
        assert str(exc.value) == message


def test_query_semantics_accumulate_over_the_services_spans() -> None:
    spans = codec.decode_json(json.dumps([s for batch in posts("zipkin", "T10_fault_abort_b") for s in batch]).encode())
    end = 1795549769905777 // 1000 + 1000

    def q(**kw: object) -> bool:
        return QueryRequest(end_ts=end, lookback=60_000, limit=10, **kw).test(spans)  # type: ignore[arg-type]

    assert q(service_name="SERVICE-A", span_name="checkStock")
    assert q(service_name="service-b", annotation_query={"error": "true", "ss": ""})
    assert not q(service_name="service-c", annotation_query={"error": ""})  # the error is on b's span, not c's
    assert q(annotation_query={"error": "", "http.status_code": "200"})  # two spans satisfy one term each
    assert q(min_duration=5600, max_duration=5700)  # front-envoy's 5636 µs
    assert not q(min_duration=6000)
    assert not QueryRequest(end_ts=1795549769905777 // 1000 - 1, lookback=60_000, limit=10).test(spans)  # root after endTs
