"""Jaeger all-in-one 1.27's Zipkin collector and query API over the same store, in process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from zipkin_kit import call, post_json, posts

from sluice.lab.backends.zipkin.jaeger_api import JaegerCollector, JaegerQuery, parse_go_duration
from sluice.lab.backends.zipkin.jaeger_model import go_duration
from sluice.lab.backends.zipkin.store import Store

J01 = "aed5400b612c6a28"
J10 = "5a03cfe4f47662dd"
Z01 = "0a9d13c9f4f6098d"


@pytest.fixture
def jaeger(tmp_path: Path) -> tuple[JaegerCollector, JaegerQuery]:
    store = Store(str(tmp_path / "spans.sqlite"), product="jaeger")
    collector, query = JaegerCollector(store), JaegerQuery(store)
    for scenario in ("T01_plain", "T10_fault_abort_b"):
        for batch in posts("jaeger", scenario):
            assert post_json(collector.handle, batch).status == 202
    # The zipkin lab's Envoys share span ids between client and server.
    for batch in posts("zipkin", "T01_plain"):
        assert post_json(collector.handle, batch).status == 202
    return collector, query


def get(query: JaegerQuery, target: str) -> tuple[int, Any]:
    resp = call(query.handle, "GET", target)
    return resp.status, json.loads(resp.body)


def test_envelope_services_and_operations(jaeger: tuple[JaegerCollector, JaegerQuery]) -> None:
    _, q = jaeger
    resp = call(q.handle, "GET", "/api/services")
    assert resp.body == b'{"data":["front-envoy","service-a","service-b","service-c"],"total":4,"limit":0,"offset":0,"errors":null}'
    # Jaeger keeps the names' case (Zipkin lowercases them).
    assert get(q, "/api/services/service-a/operations")[1]["data"] == ["checkAvailability", "checkStock"]
    assert get(q, "/api/operations?service=service-a&spanKind=client") == (200, {
        "data": [{"name": "checkStock", "spanKind": "client"}], "total": 1, "limit": 0, "offset": 0, "errors": None})
    assert get(q, "/api/services/nobody/operations")[1] == {"data": None, "total": 0, "limit": 0, "offset": 0, "errors": None}
    resp = call(q.handle, "GET", "/api/operations")
    assert (resp.status, resp.content_type, resp.body) == (400, "text/plain; charset=utf-8", (
        b'{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":400,"msg":"parameter \'service\' is required"}]}\n'))


def test_trace_shape(jaeger: tuple[JaegerCollector, JaegerQuery]) -> None:
    _, q = jaeger
    status, body = get(q, f"/api/traces/{J01}")
    assert status == 200 and body["total"] == 0 and body["errors"] is None
    (trace,) = body["data"]
    assert list(trace) == ["traceID", "spans", "processes", "warnings"]
    assert trace["processes"] == {f"p{i}": {"serviceName": name, "tags": [{"key": "ip", "type": "string", "value": "192.0.2.2"}]}
                                  for i, name in enumerate(["service-b", "service-c", "service-a", "front-envoy"], 1)}
    front = trace["spans"][-1]
    assert list(front) == ["traceID", "spanID", "operationName", "references", "startTime", "duration", "tags", "logs", "processID",
                           "warnings"]
    assert (front["spanID"], front["operationName"], front["references"], front["startTime"], front["duration"]) == (
        J01, "checkAvailability", [], 1795549834593733, 7958)
    assert front["tags"][0] == {"key": "component", "type": "string", "value": "proxy"}
    assert front["tags"][-1] == {"key": "span.kind", "type": "string", "value": "client"}
    assert (front["logs"], front["processID"], front["warnings"]) == ([], "p4", None)
    server_a = trace["spans"][4]
    assert server_a["references"] == [{"refType": "CHILD_OF", "traceID": J01, "spanID": J01}]


def test_fault_spans_get_a_bool_error_tag(jaeger: tuple[JaegerCollector, JaegerQuery]) -> None:
    _, q = jaeger
    spans = get(q, f"/api/traces/{J10}")[1]["data"][0]["spans"]
    errors = [(s["spanID"], [t for t in s["tags"] if t["key"] == "error"]) for s in spans]
    assert [e for e in errors if e[1]] == [
        ("3b78a250af690f47", [{"key": "error", "type": "bool", "value": True}]),
        ("f0a6de0ec807aed0", [{"key": "error", "type": "bool", "value": True}]),
    ]


def test_shared_span_ids_are_deduplicated(jaeger: tuple[JaegerCollector, JaegerQuery]) -> None:
    _, q = jaeger
    spans = get(q, f"/api/traces/{Z01}")[1]["data"][0]["spans"]
    assert [(s["spanID"], [r["spanID"] for r in s["references"]]) for s in spans] == [
        ("0000000000000001", ["40f2276deaaf519f"]),  # service-b's server half: a fresh id, its client as parent
        ("0000000000000002", ["55c71b2882a77800"]),
        ("40f2276deaaf519f", ["0000000000000003"]),  # service-a's clients now hang off its renamed server span
        ("55c71b2882a77800", ["0000000000000003"]),
        ("0000000000000003", [Z01]),
        (Z01, []),
    ]


def test_search(jaeger: tuple[JaegerCollector, JaegerQuery]) -> None:
    _, q = jaeger
    window = "&start=1795549000000000&end=1795550000000000"

    def ids(target: str) -> list[str]:
        status, body = get(q, target)
        assert status == 200, body
        return [t["traceID"] for t in body["data"]]

    assert ids("/api/traces?service=service-a" + window) == [J10, J01, Z01]  # newest first
    assert ids("/api/traces?service=service-a&limit=1" + window) == [J10]
    assert ids("/api/traces?service=service-b&tag=error:true" + window) == [J10]
    assert ids('/api/traces?service=service-b&tags={"http.status_code":"503"}' + window) == [J10]
    # One span must match everything: front-envoy's span is 7958 µs long but not "checkStock".
    assert ids("/api/traces?service=front-envoy&operation=checkStock" + window) == []
    assert ids("/api/traces?service=front-envoy&minDuration=7ms&maxDuration=8ms" + window) == [J01]
    assert ids("/api/traces?service=service-a") == []  # default start: two days before now
    status, body = get(q, f"/api/traces?traceID={J01}&traceID=00000000000000ff")
    assert [t["traceID"] for t in body["data"]] == [J01]
    assert body["errors"] == [{"msg": "trace not found", "traceID": "00000000000000ff"}]


@pytest.mark.parametrize(
    ("target", "status", "msg"),
    [
        ("/api/traces", 400, "parameter 'service' is required"),
        ("/api/traces?service=a&limit=x", 400, 'strconv.ParseInt: parsing "x": invalid syntax'),
        ("/api/traces?service=a&start=x", 400, "unable to parse param 'start': strconv.ParseInt: parsing \"x\": invalid syntax"),
        ("/api/traces?service=a&minDuration=5", 400, "unable to parse param 'minDuration': time: missing unit in duration \"5\""),
        ("/api/traces?service=a&minDuration=2s&maxDuration=1s", 400, "'maxDuration' should be greater than 'minDuration'"),
        ("/api/traces?service=a&tag=nocolon", 400, "malformed 'tag' parameter, expecting key:value, received: nocolon"),
        ("/api/traces/xyz", 400, 'strconv.ParseUint: parsing "xyz": invalid syntax'),
        ("/api/traces/00000000000000ff", 404, "trace not found"),
        ("/api/dependencies?endTs=x", 400, "unable to parse param 'endTs': strconv.ParseInt: parsing \"x\": invalid syntax"),
    ],
)
def test_query_errors(jaeger: tuple[JaegerCollector, JaegerQuery], target: str, status: int, msg: str) -> None:
    _, q = jaeger
    assert get(q, target) == (status, {"data": None, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": status, "msg": msg}]})


def test_dependencies(jaeger: tuple[JaegerCollector, JaegerQuery]) -> None:
    _, q = jaeger
    status, body = get(q, "/api/dependencies?endTs=1795550000000&lookback=3600000")
    # The memory store links each span to its parent's service (no error counts in the answer).
    assert (status, body["data"]) == (200, [
        {"parent": "front-envoy", "child": "service-a", "callCount": 3},
        {"parent": "service-a", "child": "service-b", "callCount": 3},
        {"parent": "service-a", "child": "service-c", "callCount": 3},
    ])
    assert get(q, "/api/dependencies?endTs=1795550000000&lookback=3600000&service=service-c")[1]["data"] == [
        {"parent": "service-a", "child": "service-c", "callCount": 3}]
    assert get(q, "/api/dependencies")[1]["data"] == []  # the goldens are older than the default day


def test_collector_checks(jaeger: tuple[JaegerCollector, JaegerQuery]) -> None:
    c, _ = jaeger
    for body, ctype, message in (
        (b'[{"id":"0000000000000001"}]', "application/json",
         "Unable to process request body: validation failure list:\ntraceId in body is required\n"),
        (b'[{"traceId":"1","id":"0000000000000001","kind":"LOCAL"}]', "application/json",
         "Unable to process request body: validation failure list:\ntraceId in body should be at least 16 chars long\n"
         "kind in body should be one of [CLIENT SERVER PRODUCER CONSUMER]\n"),
        (b"[]", "text/plain", "Unsupported Content-Type\n"),
    ):
        resp = call(c.handle, "POST", "/api/v2/spans", body, {"Content-Type": ctype})
        assert (resp.status, resp.body.decode()) == (400, message)
    assert call(c.handle, "GET", "/api/v2/spans").status == 405
    assert call(c.handle, "POST", "/api/v2/traces").status == 404


_OK = '"traceId":"0000000000000001","id":"0000000000000002"'


@pytest.mark.parametrize(
    ("span", "message"),
    [
        ('{' + _OK + ',"duration":"5"}', "string into Go struct field Span.duration of type int64"),
        ('{' + _OK + ',"duration":1.5}', "number 1.5 into Go struct field Span.duration of type int64"),
        ('{"traceId":"0000000000000001","id":7}', "number into Go struct field Span.id of type string"),
        ('{' + _OK + ',"tags":{"a":1}}', "number into Go struct field Span.tags of type string"),
        ('{' + _OK + ',"tags":[]}', "array into Go struct field Span.tags of type models.Tags"),
        ('{' + _OK + ',"localEndpoint":{"port":"80"}}', "string into Go struct field Endpoint.localEndpoint.port of type int64"),
        ('{' + _OK + ',"annotations":[{"timestamp":"x"}]}', "string into Go struct field Annotation.annotations.timestamp of type int64"),
        ('{' + _OK + ',"debug":"yes"}', "string into Go struct field Span.debug of type bool"),
        ('3', "number into Go value of type models.Span"),
        # encoding/json's type errors come before the model's Validate: the first span's missing
        # id is not what is reported.
        ('{"traceId":"0000000000000001"},{' + _OK + ',"timestamp":true}', "bool into Go struct field Span.timestamp of type int64"),
    ],
)
def test_collector_go_type_errors(jaeger: tuple[JaegerCollector, JaegerQuery], span: str, message: str) -> None:
    c, q = jaeger
    resp = call(c.handle, "POST", "/api/v2/spans", f"[{span}]".encode(), {"Content-Type": "application/json"})
    assert (resp.status, resp.body.decode()) == (400, f"Unable to process request body: json: cannot unmarshal {message}\n")
    assert get(q, "/api/traces/0000000000000001")[0] == 404  # nothing of the batch was stored


def test_collector_null_members(jaeger: tuple[JaegerCollector, JaegerQuery]) -> None:
    """null leaves a Go field unset: a null annotation is dropped, a null tag value is ''."""
    c, q = jaeger
    body = '[null,{' + _OK + ',"name":"n","timestamp":1795540000000000,"duration":3,"annotations":[null],"tags":{"t":null}}]'
    resp = call(c.handle, "POST", "/api/v2/spans", body.encode(), {"Content-Type": "application/json"})
    assert resp.status == 202
    status, doc = get(q, "/api/traces/0000000000000001")
    assert status == 200
    (span,) = doc["data"][0]["spans"]
    assert span["logs"] == []
    assert {"key": "t", "type": "string", "value": ""} in span["tags"]


def test_go_durations() -> None:
    assert parse_go_duration("1.5ms") == 1_500_000
    assert parse_go_duration("1h2m") == 3_720_000_000_000
    assert parse_go_duration("0") == 0
    with pytest.raises(ValueError, match='^time: invalid duration "abc"$'):
        parse_go_duration("abc")
    assert [go_duration(us) for us in (0, 250, 1500, 2_000_001, 61_000_000)] == ["0s", "250µs", "1.5ms", "2.000001s", "1m1s"]
