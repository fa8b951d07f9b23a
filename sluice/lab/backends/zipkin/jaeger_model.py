"""Zipkin v2 spans in Jaeger's model, as jaegertracing/all-in-one 1.27 turns them: the collector
goes v2 → zipkin.thrift (``cmd/collector/app/zipkin/jsonv2.go``: kind becomes cs/cr, sr/ss, ms or
mr annotations, the remote endpoint an sa/ca/ma binary annotation, tags string binary
annotations), through its Zipkin sanitizers (``error`` tag to a bool, ``error.message``, zero
parent id), into the domain model (``model/converter/thrift/zipkin/to_domain.go``: ``span.kind``
tag, process from the core annotations' host with an ``ip`` tag, annotations to logs, peer.*
tags); the query service then applies its adjusters (``SpanIDDeduper``: a server span sharing its
client's id gets a fresh id — 1, 2, … — and the client as parent; ``ClockSkew`` with the default
max of 0s, so only warnings; ``IPTagAdjuster``; ``SortLogFields``) and ``FromDomain`` writes the UI
JSON (processes ``p1``, ``p2`` … in span order).

Deliberate difference: Go ranges over the v2 tag map in random order; here tags keep key order.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.lab.backends.zipkin.model import Span

UNKNOWN_SERVICE = "unknown-service-name"
_CORE = {"sr": "server", "ss": "server", "cr": "client", "cs": "client"}
_PROCESS_TAGS = {"jaegerClient": "jaeger.version", "jaeger.hostname": "hostname", "jaeger.version": "jaeger.version"}


@dataclass(slots=True)
class KV:
    key: str
    vtype: str
    """``string``, ``bool``, ``int64``, ``float64`` or ``binary`` (``ValueType.String()`` lowercased)."""
    value: Any

    def as_string(self) -> str:
        """``KeyValue.AsString`` (what tag search compares against)."""
        if self.vtype == "bool":
            return "true" if self.value else "false"
        if self.vtype == "binary":
            return bytes(self.value).hex()
        return str(self.value)


@dataclass(slots=True)
class Host:
    service: str
    ipv4: int
    """Signed 32 bits, as zipkin.thrift's ``i32``."""
    ipv6: bytes | None
    port: int


@dataclass(slots=True)
class JSpan:
    trace_id: str
    """``TraceID.String()``: 16 hex digits when the high half is 0, else 32."""
    span_id: int
    operation: str
    parent_id: int
    start: int
    duration: int
    flags: int
    tags: list[KV]
    logs: list[tuple[int, list[KV]]]
    service: str
    process_tags: list[KV]
    warnings: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return next((t.value for t in self.tags if t.key == "span.kind" and t.vtype == "string"), "")


def canonical_trace_id(hex_id: str) -> str:
    """``TraceIDFromString`` then ``String()``."""
    if len(hex_id) > 16:
        high, low = int(hex_id[:-16], 16), int(hex_id[-16:], 16)
    else:
        high, low = 0, int(hex_id, 16)
    return f"{low:016x}" if high == 0 else f"{high:016x}{low:016x}"


def _ipv4_int(text: str | None) -> int:
    if not text:
        return 0
    value = int(ipaddress.IPv4Address(text))
    return value - (1 << 32) if value >= 1 << 31 else value


def _host(ep: Any) -> Host | None:
    if ep is None:
        return None
    port = ep.port - (1 << 16) if ep.port >= 1 << 15 else ep.port
    ipv6 = ipaddress.IPv6Address(ep.ipv6).packed if ep.ipv6 else None
    return Host(ep.service_name or "", _ipv4_int(ep.ipv4), ipv6, port)


def to_jaeger(s: Span) -> list[JSpan]:
    """One stored v2 span (Jaeger's reading of it) → one Jaeger span (two when the v2 span
    carries both ``cs`` and ``sr``, as to_domain splits client+server spans)."""
    local, remote = _host(s.local), _host(s.remote)
    # zipkin.thrift annotations: the span's own, then the ones its kind implies.
    anns: list[tuple[str, int, Host | None]] = [(a.value, a.timestamp, local) for a in s.annotations]
    kind_anns = {"SERVER": (("sr", 0), ("ss", 1)), "CLIENT": (("cs", 0), ("cr", 1)), "PRODUCER": (("ms", 0),),
                 "CONSUMER": (("mr", 0),)}.get(s.kind or "", ())
    anns += [(value, s.timestamp + (s.duration if end else 0), local) for value, end in kind_anns]
    # binary annotations: (key, type, value, host)
    bins: list[tuple[str, str, Any, Host | None]] = [(k, "string", v, local) for k, v in s.tags.items()]
    if remote is not None and s.kind:
        bins.append(({"CLIENT": "sa", "SERVER": "ca"}.get(s.kind, "ma"), "bool", b"", remote))
    if local is not None and not bins and not anns:
        bins.append(("lc", "string", "", local))
    parent = int(s.parent_id, 16) if s.parent_id else None
    if parent == 0:  # parentIDSanitizer
        bins.append(("errZeroParentID", "string", "0", None))
        parent = None
    for i, (key, btype, value, host) in enumerate(list(bins)):  # errorTagSanitizer
        if btype != "bool" and key.lower() == "error":
            if value == "" or value.lower() == "true":
                bins[i] = (key, "bool", b"\x01", host)
            elif value.lower() == "false":
                bins[i] = (key, "bool", b"\x00", host)
            else:
                bins.append(("error.message", "string", value, None))
                bins[i] = (key, "bool", b"\x01", host)

    tags: list[KV] = []
    process_tags: list[KV] = []
    for key, btype, value, host in bins:
        if key in _PROCESS_TAGS:
            name = _PROCESS_TAGS[key]
            process_tags.append(KV(name, "string", value) if btype == "string" else KV(name, "bool", value == b"\x01"))
        elif key == "lc":
            tags.append(KV("component", "string", value))
        elif key in ("sa", "ca"):
            if host is not None:
                tags.append(KV("peer.service", "string", host.service))
                if host.ipv4:
                    tags.append(KV("peer.ipv4", "int64", host.ipv4 & 0xFFFFFFFF))
                if host.ipv6 is not None:
                    tags.append(KV("peer.ipv6", "binary", host.ipv6))
                if host.port:
                    tags.append(KV("peer.port", "int64", host.port & 0xFFFF))
        elif btype == "bool":
            tags.append(KV(key, "bool", value == b"\x01"))
        else:
            tags.append(KV(key, "string", value))
    span_kind = next((_CORE[v] for v, _, _ in anns if v in _CORE), None)
    if span_kind is not None:
        tags.append(KV("span.kind", "string", span_kind))

    service, ipv4 = UNKNOWN_SERVICE, 0
    candidates = [h for v, _, h in anns if v in _CORE] + [h for k, _, _, h in bins if k == "lc"]
    candidates += [h for _, _, h in anns] + [h for _, _, _, h in bins]
    for h in candidates:
        if h is not None and h.service:
            service, ipv4 = h.service, h.ipv4
            break
    if ipv4:
        process_tags.append(KV("ip", "int64", ipv4))

    start, duration = s.timestamp, s.duration
    found = {v: ts for v, ts, _ in reversed(anns)}  # first occurrence wins (findAnnotation)
    if start == 0:
        if "cs" in found:
            start = found["cs"]
            if "cr" in found and duration == 0:
                duration = found["cr"] - found["cs"]
        elif "sr" in found:
            start = found["sr"]
            if "ss" in found and duration == 0:
                duration = found["ss"] - found["sr"]
    logs = [(ts, _log_fields(v)) for v, ts, _ in anns if v and v not in _CORE]
    trace_id = canonical_trace_id(s.trace_id)
    span_id = int(s.id, 16)
    flags = 2 if s.debug else 0
    out = [JSpan(trace_id, span_id, s.name or "", parent or 0, start, duration, flags, tags, logs, service, process_tags)]
    if "cs" in found and "sr" in found:
        client_first = span_kind == "client"
        other_kind, other_start = ("server", found["sr"]) if client_first else ("client", found["cs"])
        end = found.get("ss" if client_first else "cr")
        other_duration = end - other_start if end is not None else 0
        out.append(JSpan(trace_id, span_id, s.name or "", parent or 0, other_start, other_duration, flags,
                         [KV("span.kind", "string", other_kind)], [], service, list(process_tags)))
    return out


def _log_fields(value: str) -> list[KV]:
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and all(isinstance(v, str) for v in parsed.values()):
        return [KV(k, "string", v) for k, v in parsed.items()]
    return [KV("event", "string", value)]


# --- the query service's adjusters ----------------------------------------------------------


def go_duration(us: int) -> str:
    """Go's ``time.Duration.String`` for a whole number of microseconds."""
    ns = us * 1000
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000:
        return f"{sign}{_frac(ns, 1000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_frac(ns, 1_000_000)}ms"
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    out = f"{h}h" if h else ""
    if h or m:
        out += f"{m}m"
    return f"{sign}{out}{_frac(rest, 1_000_000_000)}s"


def _frac(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def adjust(spans: list[JSpan]) -> list[JSpan]:
    dedupe_span_ids(spans)
    _clock_skew(spans)
    for s in spans:  # IPTagAdjuster, then the process tags sorted
        for tags in (s.tags, s.process_tags):
            for i, t in enumerate(tags):
                if t.key in ("ip", "peer.ipv4") and t.vtype in ("int64", "float64"):
                    tags[i] = KV(t.key, "string", str(ipaddress.IPv4Address(int(t.value) & 0xFFFFFFFF)))
        s.process_tags.sort(key=_kv_order)
    for s in spans:  # SortLogFields: "event" first, the rest sorted
        for _, fields in s.logs:
            offset = 0
            for i, f in enumerate(fields):
                if f.key == "event" and f.vtype == "string":
                    fields[0], fields[i] = fields[i], fields[0]
                    offset = 1
                    break
            fields[offset:] = sorted(fields[offset:], key=_kv_order)
    return spans


def _kv_order(kv: KV) -> tuple[str, int, str]:
    # KeyValues.Sort: by key, then value type (the proto enum order), then value.
    return kv.key, ("string", "bool", "int64", "float64", "binary").index(kv.vtype), kv.as_string()


def dedupe_span_ids(spans: list[JSpan]) -> None:
    by_id: dict[int, list[JSpan]] = {}
    for s in spans:
        by_id.setdefault(s.span_id, []).append(s)
    max_used = 0
    renamed: dict[int, int] = {}
    for s in spans:
        if s.kind == "server" and any(o.kind == "client" for o in by_id[s.span_id]):
            new_id = max_used + 1
            while new_id in by_id:
                new_id += 1
            max_used = new_id
            renamed[s.span_id] = new_id
            s.parent_id = s.span_id  # the previously shared id is the new parent
            s.span_id = new_id
    for s in spans:
        if s.parent_id in renamed and s.span_id != renamed[s.parent_id]:
            s.parent_id = renamed[s.parent_id]


def _clock_skew(spans: list[JSpan]) -> None:
    """``ClockSkew(0)``: where a child from another host does not fit its parent, the delta is
    only reported (adjustment is disabled by default in 1.27)."""
    nodes: dict[int, JSpan] = {}
    for s in spans:
        if s.span_id in nodes:
            s.warnings.append("duplicate span IDs; skipping clock skew adjustment")
        else:
            nodes[s.span_id] = s
    children: dict[int, list[JSpan]] = {}
    roots: list[JSpan] = []
    for s in nodes.values():
        if s.parent_id == 0:
            roots.append(s)
        elif s.parent_id in nodes:
            children.setdefault(s.parent_id, []).append(s)
        else:
            s.warnings.append(f"invalid parent span IDs={s.parent_id:016x}; skipping clock skew adjustment")
            roots.append(s)

    def host(s: JSpan) -> str:
        ip = next((t for t in s.process_tags if t.key == "ip"), None)
        if ip is None:
            return ""
        return str(ip.value) if ip.vtype == "string" else str(ipaddress.IPv4Address(int(ip.value) & 0xFFFFFFFF))

    def walk(n: JSpan, parent: JSpan | None, skew_host: str, delta: int) -> None:
        if parent is not None and (host(n) != skew_host or host(n) == ""):
            skew_host, delta = host(n), _skew(n, parent)
        if delta:
            n.warnings.append(f"clock skew adjustment disabled; not applying calculated delta of {go_duration(delta)}")
        for c in children.get(n.span_id, ()):
            walk(c, n, skew_host, delta)

    for r in roots:
        walk(r, None, host(r), 0)


def _skew(child: JSpan, parent: JSpan) -> int:
    if child.duration > parent.duration:
        return parent.start - child.start if child.start < parent.start else 0
    if child.start >= parent.start and child.start + child.duration <= parent.start + parent.duration:
        return 0
    latency = (parent.duration - child.duration) // 2
    return parent.start + latency - child.start


# --- the UI JSON (model/json, FromDomain) ---------------------------------------------------


def _kv_json(kv: KV) -> dict[str, Any]:
    value = base64.b64encode(kv.value).decode() if kv.vtype == "binary" else kv.value
    return {"key": kv.key, "type": kv.vtype, "value": value}


def trace_json(spans: list[JSpan]) -> dict[str, Any]:
    processes: list[tuple[str, list[KV]]] = []
    keys: list[str] = []
    out_spans = []
    for s in spans:
        proc = (s.service, s.process_tags)
        for i, p in enumerate(processes):
            if p[0] == proc[0] and [(k.key, k.vtype, k.value) for k in p[1]] == [(k.key, k.vtype, k.value) for k in proc[1]]:
                pid = keys[i]
                break
        else:
            processes.append(proc)
            pid = f"p{len(processes)}"
            keys.append(pid)
        span: dict[str, Any] = {"traceID": s.trace_id, "spanID": f"{s.span_id:016x}"}
        if s.flags:
            span["flags"] = s.flags
        span["operationName"] = s.operation
        span["references"] = (
            [{"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": f"{s.parent_id:016x}"}] if s.parent_id else []
        )
        span.update(startTime=s.start, duration=s.duration, tags=[_kv_json(t) for t in s.tags],
                    logs=[{"timestamp": ts, "fields": [_kv_json(f) for f in fields]} for ts, fields in s.logs],
                    processID=pid, warnings=s.warnings or None)
        out_spans.append(span)
    procs = {pid: {"serviceName": p[0], "tags": [_kv_json(t) for t in p[1]]} for pid, p in zip(keys, processes, strict=True)}
    return {"traceID": spans[0].trace_id if spans else "", "spans": out_spans, "processes": dict(sorted(procs.items())),
            "warnings": None}


def go_json(value: Any) -> bytes:
    """``encoding/json``'s bytes: orjson's, with Go's HTML-safe escapes."""
    out = orjson.dumps(value)
    for raw, esc in ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"),
                     ("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029")):
        out = out.replace(raw, esc)
    return out
