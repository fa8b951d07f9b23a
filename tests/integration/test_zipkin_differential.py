"""Differential: the Zipkin tracer (issue 12, point 3) through the real Envoy 1.40 and Sluice.

Each proxy has five listeners with an ``envoy.tracers.zipkin`` provider, routing to an echo app
(which answers with the headers it received) and posting spans to a recording collector:
``ingress`` (shared span context, custom tags of every kind Sluice implements — metadata of
the host (every JSON kind), of the request and of the cluster (none: the default) —, a path tag
cut at 12 characters), ``egress`` (``traffic_direction: OUTBOUND``), ``ingress128``
(``trace_id_128bit``), ``noshare`` (``shared_span_context: false``) and ``proto``
(``HTTP_PROTO``, decoded here with the zipkin.proto3 schema; ``collector_hostname``). ``tracing.zipkin.min_flush_spans``
is 1, so each finished, sampled span is POSTed on its own.

Per request, compared after masking: the B3 and request-id headers the app received (in their
order), the spans posted (every field; generated ids replaced by placeholders in order of
appearance — the halves of a 128-bit trace id apart, so a root span's id equal to the trace
id's low half shows — and times checked for sense, not value), the collector POST's headers,
and the ``tracing.*`` counters it moved. Requests: no context; ``x-b3-sampled`` 0/1/true/other;
``b3`` single headers (128- and 64-bit, with parent, sampled 0, ``d``, sampling only, and the
malformed ones Envoy's extractor throws on); multi headers (128/64-bit, no sampled, empty
parent, ``0x`` ids, bad hex, a trace id alone); both kinds at once; client trace id; supplied
request id; a decorator with a caller's operation; a 503; a POST body.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from harness import LoopThread, ProbeApp, ProxyProcess, free_port, http, wait_until

from sluice.lab.apps.demoapp import App, Recorded

pytestmark = pytest.mark.envoy

ZIPKIN = """
          tracing:
{extra}            provider:
              name: envoy.tracers.zipkin
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
                collector_cluster: {cluster}
                collector_endpoint: {endpoint}
                collector_endpoint_version: {version}
{zipkin}"""
CUSTOM = """            max_path_tag_length: 12
            custom_tags:
            - {tag: lit, literal: {value: constant}}
            - {tag: env, environment: {name: SLUICE_TEST_TAG_ENV, default_value: env-default}}
            - {tag: env_missing, environment: {name: SLUICE_TEST_NO_SUCH_VAR, default_value: env-default}}
            - {tag: hdr, request_header: {name: x-tag-me, default_value: none}}
            - {tag: hdr_nodefault, request_header: {name: x-tag-me}}
            - {tag: md_str, metadata: {kind: {host: {}}, metadata_key: {key: ns, path: [{key: s}]}}}
            - {tag: md_num, metadata: {kind: {host: {}}, metadata_key: {key: ns, path: [{key: num}]}}}
            - {tag: md_big, metadata: {kind: {host: {}}, metadata_key: {key: ns, path: [{key: big}]}}}
            - {tag: md_bool, metadata: {kind: {host: {}}, metadata_key: {key: ns, path: [{key: flag}]}}}
            - {tag: md_obj, metadata: {kind: {host: {}}, metadata_key: {key: ns, path: [{key: obj}]}}}
            - {tag: md_list, metadata: {kind: {host: {}}, metadata_key: {key: ns, path: [{key: lst}]}}}
            - {tag: md_missing, metadata: {kind: {cluster: {}}, metadata_key: {key: ns, path: [{key: nope}]}, default_value: dflt}}
            - {tag: md_host, metadata: {kind: {host: {}}, metadata_key: {key: ns, path: [{key: h}]}}}
            - {tag: md_request, metadata: {kind: {request: {}}, metadata_key: {key: ns, path: [{key: s}]}, default_value: none}}
"""
LISTENERS: dict[str, dict[str, str]] = {
    "ingress": {"extra": CUSTOM},
    "egress": {"direction": "OUTBOUND"},
    "ingress128": {"zipkin": "                trace_id_128bit: true\n"},
    "noshare": {"zipkin": "                shared_span_context: false\n", "direction": "INBOUND"},
    "proto": {"version": "HTTP_PROTO", "endpoint": "/api/v2/spans-proto", "zipkin": "                collector_hostname: collector.example\n"},
    "verbose": {"extra": "            verbose: true\n"},
    "spawn": {"extra": "            spawn_upstream_span: true\n"},
    "spawn_egress": {"extra": "            spawn_upstream_span: true\n", "direction": "OUTBOUND"},
    "split_egress": {"zipkin": "                split_spans_for_request: true\n", "direction": "OUTBOUND"},
    "w3c": {"zipkin": "                trace_context_option: USE_B3_WITH_W3C_PROPAGATION\n"},
    "w3c_egress": {"zipkin": "                trace_context_option: USE_B3_WITH_W3C_PROPAGATION\n", "direction": "OUTBOUND"},
    "service": {"zipkin": (
        "                collector_service:\n"
        "                  http_uri: {uri: 'http://zipkin.example:9411/api/v2/spans-svc', cluster: zipkin, timeout: 1s}\n"
        "                  request_headers_to_add: [{header: {key: X-Api-Key, value: k1}}, {header: {key: content-type, value: application/json; charset=utf-8}}]\n"
    )},
    "dead": {"cluster": "deadzipkin"},
}

LISTENER = """
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
{direction}    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
{tracing}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {{match: {{prefix: /decorated}}, route: {{cluster: app}}, decorator: {{operation: checkAvailability}}}}
              - {{match: {{prefix: /retry}}, route: {{cluster: app, retry_policy: {{retry_on: 5xx, num_retries: 1}}}}}}
              - {{match: {{prefix: /mirror}}, route: {{cluster: app, request_mirror_policies: [{{cluster: app}}]}}}}
              - {{match: {{prefix: /}}, route: {{cluster: app}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"""

CONFIG = """
node: {{id: test-node, cluster: test-cluster}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
layered_runtime:
  layers:
  - {{name: static, static_layer: {static}}}
  - {{name: admin, admin_layer: {{}}}}
static_resources:
  listeners:
{listeners}
  clusters:
  - name: app
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {app}}}}}}}
          metadata: {{filter_metadata: {{ns: {{h: host-one, s: text, num: 1.5, big: 1234567, flag: true, obj: {{x: 1, z: [a, 2]}}, lst: [1, two]}}}}}}
  - {{name: zipkin, connect_timeout: 1s, type: STATIC, load_assignment: {{cluster_name: zipkin, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {collector}}}}}}}}}]}}]}}}}
  - {{name: deadzipkin, connect_timeout: 1s, type: STATIC, load_assignment: {{cluster_name: deadzipkin, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {dead}}}}}}}}}]}}]}}}}
"""

T128 = "80f198ee56343ba864fe8b2a57d3eff7"
REQUESTS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("GET", "/", []),
    ("GET", "/", [("x-b3-sampled", "0")]),
    ("GET", "/", [("x-b3-sampled", "1")]),
    ("GET", "/", [("x-b3-sampled", "true")]),
    ("GET", "/", [("x-b3-sampled", "yes")]),
    ("GET", "/", [("b3", f"{T128}-e457b5a2e4d86bd1-1")]),
    ("GET", "/", [("b3", f"{T128}-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")]),
    ("GET", "/", [("b3", "a0b1c2d3e4f50617-1122334455667788-0")]),
    ("GET", "/", [("b3", "a0b1c2d3e4f50617-1122334455667788-d")]),
    ("GET", "/", [("b3", "a0b1c2d3e4f50617-1122334455667788")]),
    ("GET", "/", [("b3", "0")]),
    ("GET", "/", [("b3", "1")]),
    ("GET", "/", [("b3", "x")]),
    ("GET", "/", [("b3", "abc")]),
    ("GET", "/", [("b3", "a0b1c2d3e4f50617-1122334455667788-1-05e3ac9a4f6e3b90-ffff")]),
    ("GET", "/", [("b3", "a0b1c2d3e4f5061z-1122334455667788-1")]),
    ("GET", "/", [("b3", "a0b1c2d3e4f50617-1122334455667788-2")]),
    ("GET", "/", [("x-b3-traceid", T128), ("x-b3-spanid", "e457b5a2e4d86bd1"), ("x-b3-parentspanid", "05e3ac9a4f6e3b90"), ("x-b3-sampled", "1")]),
    ("GET", "/", [("x-b3-traceid", "a0b1c2d3e4f50617"), ("x-b3-spanid", "1122334455667788")]),
    ("GET", "/", [("x-b3-traceid", "a0b1c2d3e4f50617"), ("x-b3-spanid", "1122334455667788"), ("x-b3-parentspanid", "")]),
    ("GET", "/", [("x-b3-traceid", "0xa0b1c2d3e4f50617"), ("x-b3-spanid", "0x1122334455667788")]),
    ("GET", "/", [("x-b3-traceid", "xyz"), ("x-b3-spanid", "1122334455667788")]),
    ("GET", "/", [("x-b3-traceid", "a0b1c2d3e4f50617"), ("x-b3-spanid", "")]),
    ("GET", "/", [("x-b3-traceid", "a0b1c2d3e4f50617")]),
    ("GET", "/", [("b3", f"{T128}-e457b5a2e4d86bd1-1"), ("x-b3-traceid", "1111111111111111"), ("x-b3-spanid", "2222222222222222")]),
    ("GET", "/", [("x-client-trace-id", "abc"), ("x-tag-me", "tagged")]),
    ("GET", "/", [("x-request-id", "11111111-2222-4333-8444-555555555555")]),
    ("GET", "/decorated/a/very/long/path?q=1", [("x-envoy-decorator-operation", "fromclient")]),
    ("GET", "/decorated", []),
    ("GET", "/status/503", [("user-agent", "probe/1")]),
    ("GET", "/retry/status/503", []),
    ("GET", "/mirror", []),
    ("GET", "/mirror", [("b3", f"{T128}-e457b5a2e4d86bd1-1")]),
    ("GET", "/", [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("tracestate", "congo=t61rcWkgMzE")]),
    ("GET", "/", [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")]),
    ("GET", "/", [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("x-b3-traceid", "a0b1c2d3e4f50617"),
                  ("x-b3-spanid", "1122334455667788")]),
    ("GET", "/", [("traceparent", "garbage")]),
    ("GET", "/", [("traceparent", "00-00000000000000000000000000000000-b7ad6b7169203331-01")]),
    ("GET", "/", [("traceparent", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra")]),
    ("GET", "/", [("traceparent", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]),
    ("GET", "/", [("traceparent", "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01")]),
    ("GET", "/", [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("b3", "a0b1c2d3e4f50617-1122334455667788-1")]),
    ("POST", "/", [("content-type", "text/plain")]),
]

HEX_ID = re.compile(r"\b(?:[0-9a-f]{32}|[0-9a-f]{16})\b")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-([0-9a-f])[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")
TRACE_HEADERS = ("b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-request-id", "traceparent", "tracestate")


def _zipkin_proto_schema() -> Any:
    """zipkin.proto3's ListOfSpans, built from its field list (openzipkin/zipkin-api)."""
    f = descriptor_pb2.FileDescriptorProto(name="zipkin_test.proto", package="zipkin.proto3", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    ep = f.message_type.add(name="Endpoint")
    for n, name, t in ((1, "service_name", T.TYPE_STRING), (2, "ipv4", T.TYPE_BYTES), (3, "ipv6", T.TYPE_BYTES), (4, "port", T.TYPE_INT32)):
        ep.field.add(name=name, number=n, type=t, label=T.LABEL_OPTIONAL)
    an = f.message_type.add(name="Annotation")
    an.field.add(name="timestamp", number=1, type=T.TYPE_FIXED64, label=T.LABEL_OPTIONAL)
    an.field.add(name="value", number=2, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    sp = f.message_type.add(name="Span")
    entry = sp.nested_type.add(name="TagsEntry")
    entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    entry.options.map_entry = True
    kind = sp.enum_type.add(name="Kind")
    for i, name in enumerate(("SPAN_KIND_UNSPECIFIED", "CLIENT", "SERVER", "PRODUCER", "CONSUMER")):
        kind.value.add(name=name, number=i)
    for n, name, t in ((1, "trace_id", T.TYPE_BYTES), (2, "parent_id", T.TYPE_BYTES), (3, "id", T.TYPE_BYTES), (5, "name", T.TYPE_STRING),
                       (6, "timestamp", T.TYPE_FIXED64), (7, "duration", T.TYPE_UINT64), (12, "debug", T.TYPE_BOOL), (13, "shared", T.TYPE_BOOL)):  # fmt: skip
        sp.field.add(name=name, number=n, type=t, label=T.LABEL_OPTIONAL)
    sp.field.add(name="kind", number=4, type=T.TYPE_ENUM, type_name=".zipkin.proto3.Span.Kind", label=T.LABEL_OPTIONAL)
    for n, name in ((8, "local_endpoint"), (9, "remote_endpoint")):
        sp.field.add(name=name, number=n, type=T.TYPE_MESSAGE, type_name=".zipkin.proto3.Endpoint", label=T.LABEL_OPTIONAL)
    sp.field.add(name="annotations", number=10, type=T.TYPE_MESSAGE, type_name=".zipkin.proto3.Annotation", label=T.LABEL_REPEATED)
    sp.field.add(name="tags", number=11, type=T.TYPE_MESSAGE, type_name=".zipkin.proto3.Span.TagsEntry", label=T.LABEL_REPEATED)
    ls = f.message_type.add(name="ListOfSpans")
    ls.field.add(name="spans", number=1, type=T.TYPE_MESSAGE, type_name=".zipkin.proto3.Span", label=T.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("zipkin.proto3.ListOfSpans"))


LIST_OF_SPANS = _zipkin_proto_schema()


def decode_spans(rec: Recorded) -> list[dict[str, Any]]:
    if rec.path != "/api/v2/spans-proto":
        spans: list[dict[str, Any]] = json.loads(rec.body)
        return spans
    msg = LIST_OF_SPANS.FromString(rec.body)
    out = []
    for s in json_format.MessageToDict(msg, preserving_proto_field_name=True)["spans"]:
        # (bytes come out as base64: turn ids back into hex, addresses into dotted quads)
        for key in ("trace_id", "parent_id", "id"):
            if key in s:
                s[key] = __import__("base64").b64decode(s[key]).hex()
        ip = s.get("local_endpoint", {}).get("ipv4")
        if ip:
            s["local_endpoint"]["ipv4"] = ".".join(str(b) for b in __import__("base64").b64decode(ip))
        out.append(s)
    return out


class Collector(App):
    """Zipkin's collector as the proxies see it: 202 (or ``status``), after ``delay`` seconds."""

    status = 202
    delay = 0.0

    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        return self.status, [("Content-Length", "0")], b"", self.delay


class Proxy:
    def __init__(
        self, kind: str, app_port: int, collector: Collector, only: str = "", static: str = "{tracing.zipkin.min_flush_spans: 1}"
    ) -> None:
        self.collector = collector
        chosen = {only: LISTENERS[only]} if only else LISTENERS
        self.ports = {name: free_port() for name in chosen}
        listeners = ""
        for name, opts in chosen.items():
            tracing = ZIPKIN.format(
                extra=opts.get("extra", ""), zipkin=opts.get("zipkin", ""),
                version=opts.get("version", "HTTP_JSON"), endpoint=opts.get("endpoint", "/api/v2/spans"),
                cluster=opts.get("cluster", "zipkin"),
            )  # fmt: skip
            direction = f"    traffic_direction: {opts['direction']}\n" if "direction" in opts else ""
            listeners += LISTENER.format(name=name, port=self.ports[name], direction=direction, tracing=tracing)
        config = CONFIG.format(admin=free_port(), listeners=listeners, app=app_port, collector=collector.port, dead=free_port(), static=static)
        self.proc = ProxyProcess(kind, yaml.safe_load(config)).start()

    def tracing_stats(self) -> dict[str, int]:
        return {k: v for k, v in self.proc.stats().items() if "tracing." in k or k.endswith(("downstream_rq_active", "upstream_rq_active"))}

    def exchange(self, listener: str, method: str, path: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
        before = self.tracing_stats()
        seen = len(self.collector.requests)
        t0 = int(time.time() * 1e6)
        resp = http(self.ports[listener], method, path, headers=headers, body=b"hello" if method == "POST" else b"")
        # The span is finished when the stream is destroyed, just after the response.
        # (and a mirror's, which may end after the stream)
        assert wait_until(lambda: (lambda st: st[f"http.{listener}.downstream_rq_active"] == 0 and st["cluster.app.upstream_rq_active"] == 0)(
            self.tracing_stats()
        ))
        after = self.tracing_stats()
        sent = after.get("tracing.zipkin.spans_sent", 0) - before.get("tracing.zipkin.spans_sent", 0)
        assert wait_until(lambda: sum(len(decode_spans(r)) for r in self.collector.requests[seen:]) >= sent, timeout=5)
        posts = self.collector.requests[seen:]

        def reported() -> int:
            now = self.tracing_stats()
            return sum(now.get(f"tracing.zipkin.reports_{k}", 0) - before.get(f"tracing.zipkin.reports_{k}", 0) for k in ("sent", "dropped", "failed"))

        # (a report is counted when the collector's answer is back)
        assert wait_until(lambda: reported() >= len(posts), timeout=5)
        after = self.tracing_stats()
        t1 = int(time.time() * 1e6)
        upstream = [(k.lower(), v) for k, v in json.loads(resp.body)["headers"]] if resp.status == 200 else []
        view = {
            "status": resp.status,
            "upstream": [(k, v) for k, v in upstream if k in TRACE_HEADERS],
            # (POSTs may overlap on two connections: their order of arrival is not the proxy's)
            "spans": sorted(
                (_span_view(s, t0, t1) for r in posts for s in decode_spans(r)),
                key=lambda v: (v["kind"], v.get("name", ""), v.get("tags", {}).get("retry.count", "")),
            ),
            "posts": [(r.method, r.path, [(k.lower(), v) for k, v in r.headers]) for r in posts],
            # (the flush timer ticks every 5 s whatever the requests: its own test counts it)
            "stats": {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0) and "tracing." in k and "timer" not in k},
        }
        return _mask(view, headers, self.ports[listener])

    def failure(self, listener: str, runtime: dict[str, str]) -> dict[str, Any]:
        """One sampled request while the collector misbehaves: its answer and what was counted."""
        self.proc.runtime_modify(**runtime)
        before = self.proc.stats()
        t0 = time.monotonic()
        resp = http(self.ports[listener], "GET", "/")
        elapsed = time.monotonic() - t0

        def outcome() -> int:
            now = self.proc.stats()
            return sum(now[f"tracing.zipkin.reports_{k}"] - before[f"tracing.zipkin.reports_{k}"] for k in ("sent", "dropped", "failed"))

        assert wait_until(lambda: outcome() >= 1, timeout=5)
        after = self.proc.stats()
        self.proc.runtime_modify(**{k: "" for k in runtime})
        names = [k for k in after if (k.startswith("tracing.zipkin.") and "timer" not in k) or k.endswith("zipkin.upstream_rq_timeout")]
        return {"status": resp.status, "fast": elapsed < 0.5, "stats": {k: after[k] - before.get(k, 0) for k in names if after[k] != before.get(k, 0)}}


def _span_view(span: dict[str, Any], t0: int, t1: int) -> dict[str, Any]:
    """A span with its times replaced by checks (a start within the exchange, a duration that
    fits, annotations after the start)."""
    s = dict(span)
    if "tags" in s:
        # (an object-valued metadata tag is protobuf JSON: its key order is not stable, in Envoy either)
        s["tags"] = {k: json.dumps(json.loads(v), sort_keys=True) if v.startswith("{") else v for k, v in s["tags"].items()}
    start = int(s.pop("timestamp"))
    duration = int(s.pop("duration", 0))
    s["times_ok"] = t0 - 1_000_000 <= start <= t1 and 0 <= duration <= t1 - start + 1_000_000
    annotations = s.pop("annotations", [])
    s["annotations"] = [a["value"] for a in annotations]
    s["annotations_ok"] = all(start <= int(a["timestamp"]) <= t1 + 1_000_000 for a in annotations)
    return s


def _mask(view: dict[str, Any], headers: list[tuple[str, str]], port: int) -> dict[str, Any]:
    given = {v for _k, v in headers}
    text = json.dumps(view, sort_keys=True).replace(f":{port}", ":<port>")
    names: dict[str, str] = {}

    def one(hex64: str) -> str:
        if hex64 in " ".join(given):
            return hex64
        return names.setdefault(hex64, f"<id{len(names)}>")

    def ident(m: re.Match[str]) -> str:
        v = m.group(0)
        return one(v) if len(v) == 16 else one(v[:16]) + one(v[16:])

    text = HEX_ID.sub(ident, text)
    supplied = dict(headers).get("x-request-id")
    text = UUID.sub(lambda m: m.group(0) if m.group(0) == supplied else f"<uuid 14={m.group(1)}>", text)
    masked: dict[str, Any] = json.loads(text)
    return masked


@pytest.fixture(scope="module")
def proxies(loop: LoopThread, monkeypatch_module: Any) -> Iterator[dict[str, Proxy]]:
    app = ProbeApp("probe", plain=True)
    loop.run(app.start("127.0.0.1", 0))
    collectors = {kind: Collector(f"collector-{kind}") for kind in ("envoy", "sluice")}
    for c in collectors.values():
        loop.run(c.start("127.0.0.1", 0))
    started: dict[str, Proxy] = {}
    try:
        for kind in ("envoy", "sluice"):
            started[kind] = Proxy(kind, app.port, collectors[kind])
        yield started
    finally:
        for p in started.values():
            p.proc.stop()
        loop.run(app.stop())
        for c in collectors.values():
            loop.run(c.stop())


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLUICE_TEST_TAG_ENV", "from-env")  # (the proxies inherit it)
        yield mp


def _both(proxies: dict[str, Proxy], listener: str, method: str, path: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    with ThreadPoolExecutor(2) as pool:
        jobs = {kind: pool.submit(p.exchange, listener, method, path, headers) for kind, p in proxies.items()}
        return {kind: j.result() for kind, j in jobs.items()}


@pytest.mark.parametrize("listener", [n for n in LISTENERS if n != "dead"])
def test_spans_headers_and_counters_are_envoys(proxies: dict[str, Proxy], listener: str) -> None:
    spans = 0
    for method, path, headers in REQUESTS:
        got = _both(proxies, listener, method, path, headers)
        assert got["envoy"]["status"] in (200, 503), got["envoy"]
        assert got["sluice"] == got["envoy"], (listener, method, path, headers)
        spans += len(got["envoy"]["spans"])
    assert spans >= 20  # (most requests are sampled: the comparison is about real spans)


@pytest.mark.parametrize("mode", ["500", "hang", "down"])
def test_a_failing_collector_is_counted_and_never_holds_traffic(proxies: dict[str, Proxy], mode: str) -> None:
    runtime = {"tracing.zipkin.request_timeout": "300"}
    for p in proxies.values():
        p.collector.status, p.collector.delay = {"500": (500, 0.0), "hang": (202, 1.5), "down": (202, 0.0)}[mode]
    try:
        with ThreadPoolExecutor(2) as pool:
            listener = "dead" if mode == "down" else "ingress"  # (its collector's port is closed)
            jobs = {kind: pool.submit(p.failure, listener, runtime) for kind, p in proxies.items()}
            got = {kind: j.result() for kind, j in jobs.items()}
    finally:
        for p in proxies.values():
            p.collector.status, p.collector.delay = 202, 0.0
    assert got["envoy"]["status"] == 200 and got["envoy"]["fast"], got
    assert got["sluice"] == got["envoy"]


@pytest.fixture(scope="module")
def batching(loop: LoopThread) -> Iterator[dict[str, dict[str, Proxy]]]:
    """Two pairs with one listener: Envoy's batching (5 spans, the timer never due) and the
    flush timer (a 300 ms interval, batches never full)."""
    app = ProbeApp("probe", plain=True)
    loop.run(app.start("127.0.0.1", 0))
    collectors: list[Collector] = []
    pairs: dict[str, dict[str, Proxy]] = {"batch": {}, "timer": {}}
    statics = {"batch": "{tracing.zipkin.flush_interval_ms: 600000}",
               "timer": "{tracing.zipkin.flush_interval_ms: 300, tracing.zipkin.min_flush_spans: 100}"}  # fmt: skip
    try:
        for what, static in statics.items():
            for kind in ("envoy", "sluice"):
                c = Collector(f"collector-{what}-{kind}")
                loop.run(c.start("127.0.0.1", 0))
                collectors.append(c)
                pairs[what][kind] = Proxy(kind, app.port, c, only="ingress", static=static)
        yield pairs
    finally:
        for pair in pairs.values():
            for p in pair.values():
                p.proc.stop()
        loop.run(app.stop())
        for c in collectors:
            loop.run(c.stop())


def _batch_run(p: Proxy) -> dict[str, Any]:
    before = p.proc.stats()
    seen: list[int] = []
    for _ in range(7):
        assert http(p.ports["ingress"], "GET", "/").status == 200
        assert wait_until(lambda: p.proc.stats()["http.ingress.downstream_rq_active"] == 0)
        time.sleep(0.05)  # (a POST would be on its way by now)
        seen.append(len(p.collector.requests))
    assert wait_until(lambda: p.proc.stats()["tracing.zipkin.reports_sent"] > before["tracing.zipkin.reports_sent"])
    after = p.proc.stats()
    return {
        "posts_after_each": seen,
        "spans_per_post": [len(json.loads(r.body)) for r in p.collector.requests],
        "stats": {k: after[k] - before.get(k, 0) for k in after if k.startswith("tracing.zipkin.")},
    }


def test_a_batch_goes_when_min_flush_spans_are_buffered(batching: dict[str, dict[str, Proxy]]) -> None:
    with ThreadPoolExecutor(2) as pool:
        got = {kind: j.result() for kind, j in {k: pool.submit(_batch_run, p) for k, p in batching["batch"].items()}.items()}
    assert got["envoy"]["posts_after_each"] == [0, 0, 0, 0, 1, 1, 1], got
    assert got["sluice"] == got["envoy"]


def _timer_run(p: Proxy) -> dict[str, Any]:
    before = p.proc.stats()
    for _ in range(3):
        assert http(p.ports["ingress"], "GET", "/").status == 200
    assert wait_until(lambda: sum(len(json.loads(r.body)) for r in p.collector.requests) >= 3, timeout=5)
    time.sleep(0.7)  # (two more ticks: nothing buffered, nothing sent)
    after = p.proc.stats()
    return {
        "spans": sum(len(json.loads(r.body)) for r in p.collector.requests),
        "posts_at_most_3": 1 <= len(p.collector.requests) <= 3,
        "ticks_counted": after["tracing.zipkin.timer_flushed"] - before["tracing.zipkin.timer_flushed"] >= 2,
        "sent": {k: after[k] - before.get(k, 0) for k in ("tracing.zipkin.spans_sent", "tracing.zipkin.reports_skipped_no_cluster")},
    }


def test_the_timer_sends_what_is_buffered_and_counts_every_tick(batching: dict[str, dict[str, Proxy]]) -> None:
    with ThreadPoolExecutor(2) as pool:
        got = {kind: j.result() for kind, j in {k: pool.submit(_timer_run, p) for k, p in batching["timer"].items()}.items()}
    assert got["envoy"]["spans"] == 3 and got["envoy"]["ticks_counted"], got
    assert got["sluice"] == got["envoy"]
