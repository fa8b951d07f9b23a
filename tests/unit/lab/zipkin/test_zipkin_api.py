"""The Zipkin server's API over the SQLite store, driven in process with the golden Envoy spans."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from test_zipkin_model import encode_proto3
from zipkin_kit import call, post_json, posts

from sluice.lab.backends.zipkin.store import Store
from sluice.lab.backends.zipkin.zipkin_api import Settings, ZipkinApi

T01 = "0a9d13c9f4f6098d"
T06 = "80f198ee56343ba864fe8b2a57d3eff7"
T10 = "e8382b80f6dc113d"
END = 1795549769905 + 60_000  # a minute after the last scenario's root
LOOKBACK = 3_600_000


def make(tmp_path: Path, **settings: object) -> ZipkinApi:
    return ZipkinApi(Store(str(tmp_path / "spans.sqlite"), product="zipkin"), Settings(**settings))  # type: ignore[arg-type]


@pytest.fixture
def api(tmp_path: Path) -> ZipkinApi:
    z = make(tmp_path, autocomplete_keys=["http.method", "upstream_cluster"])
    for scenario in ("T01_plain", "T06_incoming_b3", "T10_fault_abort_b"):
        for batch in posts("zipkin", scenario):
            resp = post_json(z.handle, batch)
            assert (resp.status, resp.body, resp.content_type) == (202, b"", None)
    return z


def get(z: ZipkinApi, target: str) -> tuple[int, object]:
    resp = call(z.handle, "GET", target)
    return resp.status, json.loads(resp.body) if resp.content_type == "application/json" else resp.body.decode()


def test_trace_ids_from_the_goldens() -> None:
    assert posts("zipkin", "T01_plain")[0][0]["traceId"] == T01
    assert posts("zipkin", "T06_incoming_b3")[0][0]["traceId"] == T06
    assert posts("zipkin", "T10_fault_abort_b")[0][0]["traceId"] == T10


def test_names(api: ZipkinApi) -> None:
    assert get(api, "/api/v2/services") == (200, ["front-envoy", "service-a", "service-b", "service-c"])
    # Names are lowercased as zipkin2's Span.Builder does, and sorted.
    assert get(api, "/api/v2/spans?serviceName=Service-A") == (200, ["checkavailability", "checkstock"])
    assert get(api, "/api/v2/spans?serviceName=front-envoy") == (200, ["checkavailability"])
    assert get(api, "/api/v2/spans?serviceName=nobody") == (200, [])
    assert get(api, "/api/v2/remoteServices?serviceName=service-a") == (200, [])  # Envoy sends no remoteEndpoint
    # More than 3 services: the name lists become cacheable.
    assert call(api.handle, "GET", "/api/v2/spans?serviceName=service-b").headers == [("cache-control", "max-age=300, must-revalidate")]
    assert get(api, "/api/v2/spans") == (400, "Mandatory parameter/header is missing: serviceName")
    assert get(api, "/api/v2/autocompleteKeys") == (200, ["http.method", "upstream_cluster"])
    assert get(api, "/api/v2/autocompleteValues?key=upstream_cluster") == (
        200, ["local_service", "service_a", "service_b", "service_c"])
    assert get(api, "/api/v2/autocompleteValues?key=") == (400, "key was empty")


def test_trace_by_id(api: ZipkinApi) -> None:
    status, trace = get(api, f"/api/v2/trace/{T01}")
    assert status == 200 and isinstance(trace, list)
    assert [(s["localEndpoint"]["serviceName"], s["kind"], s["id"]) for s in trace] == [
        ("service-b", "SERVER", "40f2276deaaf519f"), ("service-c", "SERVER", "55c71b2882a77800"),
        ("service-a", "CLIENT", "40f2276deaaf519f"), ("service-a", "CLIENT", "55c71b2882a77800"),
        ("service-a", "SERVER", T01), ("front-envoy", "CLIENT", T01)]
    first = trace[0]
    assert list(first) == ["traceId", "parentId", "id", "kind", "name", "timestamp", "duration", "localEndpoint", "annotations",
                           "tags", "shared"]
    assert first["localEndpoint"] == {"serviceName": "service-b", "ipv4": "192.0.2.2"}  # port 0 is left out
    assert list(first["tags"]) == sorted(first["tags"])
    # Short ids are padded; the answer names the normalised id.
    assert get(api, "/api/v2/trace/abc") == (404, "0000000000000abc not found")
    assert call(api.handle, "GET", "/api/v2/trace/abc").content_type == "text/*"
    assert get(api, "/api/v2/trace/ABC") == (400, "ABC should be lower-hex encoded with no prefix")
    # The same span posted again is answered once.
    post_json(api.handle, posts("zipkin", "T01_plain")[0])
    assert len(get(api, f"/api/v2/trace/{T01}")[1]) == 6  # type: ignore[arg-type]


def test_trace_many(api: ZipkinApi) -> None:
    status, traces = get(api, f"/api/v2/traceMany?traceIds={T10},{T01},0000000000000abc")
    assert status == 200 and [t[0]["traceId"] for t in traces] == [T10, T01]  # type: ignore[index,union-attr]
    assert get(api, f"/api/v2/traceMany?traceIds={T01}") == (400, "Use /api/v2/trace/{traceId} endpoint to retrieve a single trace")
    assert get(api, f"/api/v2/traceMany?traceIds={T01},{T01}") == (400, f"redundant traceId: {T01}")
    assert get(api, "/api/v2/traceMany?traceIds=") == (400, "traceIds parameter is empty")


def _ids(answer: tuple[int, object]) -> list[str]:
    status, traces = answer
    assert status == 200 and isinstance(traces, list)
    return [t[0]["traceId"] for t in traces]


def test_search(api: ZipkinApi) -> None:
    base = f"/api/v2/traces?endTs={END}&lookback={LOOKBACK}"
    assert _ids(get(api, base)) == [T10, T06, T01]  # newest first
    assert _ids(get(api, base + "&limit=2")) == [T10, T06]
    assert _ids(get(api, base + "&serviceName=service-b&annotationQuery=error")) == [T10]
    assert _ids(get(api, base + "&annotationQuery=http.status_code%3D503")) == [T10]
    assert _ids(get(api, base + "&serviceName=front-envoy&spanName=checkStock")) == []  # front-envoy has no checkstock span
    assert _ids(get(api, base + "&spanName=all&minDuration=9000")) == [T01]  # front-envoy's 9506 µs
    assert _ids(get(api, f"/api/v2/traces?endTs={1795549743837 + 10}&lookback=100")) == [T06]
    assert _ids(get(api, "/api/v2/traces")) == []  # the goldens are older than a day before now
    assert get(api, base + "&limit=x") == (400, 'For input string: "x"')
    assert get(api, base + "&limit=0") == (400, "limit <= 0")
    assert get(api, base + "&maxDuration=5") == (400, "maxDuration is only valid with minDuration")


def test_dependencies(api: ZipkinApi) -> None:
    assert get(api, f"/api/v2/dependencies?endTs={END}&lookback={LOOKBACK}") == (200, [
        {"parent": "front-envoy", "child": "service-a", "callCount": 3},
        {"parent": "service-a", "child": "service-b", "callCount": 3, "errorCount": 1},
        {"parent": "service-a", "child": "service-c", "callCount": 3},
    ])
    assert get(api, f"/api/v2/dependencies?endTs={1795549743837 + 10}&lookback=100") == (200, [
        {"parent": "front-envoy", "child": "service-a", "callCount": 1},
        {"parent": "service-a", "child": "service-b", "callCount": 1},
        {"parent": "service-a", "child": "service-c", "callCount": 1},
    ])
    assert get(api, "/api/v2/dependencies") == (400, "Mandatory parameter/header is missing: endTs")
    assert get(api, "/api/v2/dependencies?endTs=1&lookback=-1") == (400, "lookback <= 0")


def test_collector_formats_and_errors(tmp_path: Path) -> None:
    z = make(tmp_path)
    spans = [s for batch in posts("zipkin128", "T01_plain") for s in batch]
    gz = call(z.handle, "POST", "/api/v2/spans", gzip.compress(json.dumps(spans[:3]).encode()),
              {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert gz.status == 202
    proto = call(z.handle, "POST", "/api/v2/spans", encode_proto3(spans[3:]), {"Content-Type": "application/x-protobuf"})
    assert proto.status == 202
    status, trace = get(z, "/api/v2/trace/8e59cfe62892d120af0213812788a9e1")
    assert status == 200 and len(trace) == 6  # type: ignore[arg-type]
    # strict trace ids: the low half alone is another trace
    assert get(z, "/api/v2/trace/af0213812788a9e1") == (404, "af0213812788a9e1 not found")
    for body, headers, message in (
        (b"not json", {}, "Expected a JSON_V2 encoded list\n"),
        (b'[{"traceId":"1"', {}, "Malformed reading List<Span> from json"),
        (b"\x1f\x8bbad", {"Content-Encoding": "gzip"}, "Cannot gunzip spans"),
        # '[' passes the format check, so the proto3 reader reads it: key 0x5b, then a length of '{' (123)
        (b'[{"traceId":"1","id":"1"}]', {"Content-Type": "application/x-protobuf"},
         "Truncated: length 123 > bytes available 24 reading List<Span> from proto3"),
        (b'\n\x05abc', {"Content-Type": "application/x-protobuf"}, "Truncated: length 5 > bytes available 3 reading List<Span> from proto3"),
    ):
        resp = call(z.handle, "POST", "/api/v2/spans", body, headers)
        assert (resp.status, resp.body.decode(), resp.content_type) == (400, message, "text/*")
    assert call(z.handle, "POST", "/api/v2/spans", b"[]").status == 202
    assert call(z.handle, "POST", "/api/v2/spans", b"").status == 202


def test_pages(api: ZipkinApi) -> None:
    redirect = call(api.handle, "GET", "/")
    assert (redirect.status, redirect.headers) == (302, [("location", "/zipkin/")])
    config = call(api.handle, "GET", "/zipkin/config.json")
    assert config.content_type == "application/json; charset=utf-8"
    assert json.loads(config.body) == {
        "environment": "", "queryLimit": 10, "defaultLookback": 900000, "searchEnabled": True, "logsUrl": None,
        "supportUrl": None, "archivePostUrl": None, "archiveUrl": None,
        "dependency": {"enabled": True, "lowErrorRate": 0.5, "highErrorRate": 0.75}}
    assert config.body.startswith(b'{\n  "environment" : "",\n')
    health = call(api.handle, "GET", "/health")
    assert health.status == 200 and json.loads(health.body)["status"] == "UP"
    assert call(api.handle, "DELETE", "/api/v2/services").status == 405
    assert call(api.handle, "GET", "/api/v9/nothing").status == 404


def test_eviction_keeps_mem_max_spans(tmp_path: Path) -> None:
    z = ZipkinApi(Store(str(tmp_path / "s.sqlite"), product="zipkin", max_spans=8), Settings())
    for scenario in ("T01_plain", "T06_incoming_b3"):
        for batch in posts("zipkin", scenario):
            post_json(z.handle, batch)
    # 12 spans do not fit in 8: the oldest trace (T01) went as a whole.
    assert z.store.span_count() == 6
    assert _ids(get(z, f"/api/v2/traces?endTs={END}&lookback={LOOKBACK}")) == [T06]
