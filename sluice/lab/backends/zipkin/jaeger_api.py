"""Jaeger all-in-one 1.27 over the same store: the Zipkin-compatible collector
(``cmd/collector/app/zipkin/http_handler.go``, on ``COLLECTOR_ZIPKIN_HOST_PORT``) and the query
API (``cmd/query/app/http_handler.go``, ``query_parser.go``; the ``memory`` store's semantics,
``plugin/storage/memory/memory.go``).

Every query answer is ``{"data":…,"total":n,"limit":0,"offset":0,"errors":…}``; an error is that
envelope with ``errors: [{"code": status, "msg": …}]`` written by ``http.Error`` (text/plain, a
trailing newline). Collector errors are ``Unable to process request body: <cause>``, the swagger
model's checks written as go-openapi does (``validation failure list:\\ntraceId in body is
required``).

Deliberate differences: Go ranges over maps in random order where this answers sorted (services,
operations, dependencies) or newest first (search results when under the limit).
"""

from __future__ import annotations

import gzip
import re
import time
import zlib
from typing import Any
from urllib.parse import parse_qs

import orjson

from sluice.lab.backends.zipkin import codec
from sluice.lab.backends.zipkin.http import Request, Response
from sluice.lab.backends.zipkin.jaeger_model import JSpan, adjust, canonical_trace_id, dedupe_span_ids, go_json, to_jaeger, trace_json
from sluice.lab.backends.zipkin.model import KINDS, Annotation, Span, endpoint, from_stored, parse_ip, write_span
from sluice.lab.backends.zipkin.store import Row, Store
from sluice.lab.backends.zipkin.ui import JAEGER as JAEGER_UI

TEXT = "text/plain; charset=utf-8"
_ID16 = re.compile(r"[a-z0-9]{16}")
_ID32 = re.compile(r"[a-z0-9]{16,32}")
_GO_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


class _Invalid(ValueError):
    pass


def http_error(status: int, message: str) -> Response:
    """``http.Error``: the body, a newline, text/plain, nosniff."""
    return Response(status, message.encode() + b"\n", TEXT, [("x-content-type-options", "nosniff")])


def envelope(data: Any, total: int = 0, errors: Any = None) -> Response:
    body = go_json({"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors})
    return Response(200, body, "application/json")


def api_error(status: int, message: str) -> Response:
    body = go_json({"data": None, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": status, "msg": message}]})
    return http_error(status, body.decode())


# --- collector -------------------------------------------------------------------------------


def _validate(doc: Any) -> list[Span]:
    """``models.ListOfSpans.Validate`` (the first span with problems, all of its problems),
    then the conversion's id parsing. Names keep their case (Jaeger does not lowercase)."""
    if not isinstance(doc, list):
        raise _Invalid("json: cannot unmarshal object into Go value of type models.ListOfSpans")
    # encoding/json reports the first type mismatch of the whole document (it decodes on after
    # one), before the model's Validate runs.
    for raw in doc:
        if raw is not None and not isinstance(raw, dict):
            raise _Invalid(f"json: cannot unmarshal {_json_kind(raw)} into Go value of type models.Span")
        mismatch = _go_mismatch(raw, _SPAN_FIELDS, "Span", "") if raw else None
        if mismatch:
            raise _Invalid(mismatch)
    spans = []
    for raw in doc:
        if raw is None:
            continue
        problems: list[str] = []
        trace_id, span_id, parent = raw.get("traceId"), raw.get("id"), raw.get("parentId") or ""
        for name, value, lo, hi, pattern in (("id", span_id, 16, 16, _ID16), ("traceId", trace_id, 16, 32, _ID32)):
            if value is None:
                problems.append(f"{name} in body is required")
            elif len(value) < lo:
                problems.append(f"{name} in body should be at least {lo} chars long")
            elif len(value) > hi:
                problems.append(f"{name} in body should be at most {hi} chars long")
            elif not pattern.search(value):
                problems.append(f"{name} in body should match '{pattern.pattern}'")
        if parent:
            if len(parent) != 16:
                problems.append(f"parentId in body should be {'at least' if len(parent) < 16 else 'at most'} 16 chars long")
            elif not _ID16.search(parent):
                problems.append("parentId in body should match '[a-z0-9]{16}'")
        kind = raw.get("kind") or ""
        if kind and kind not in KINDS:
            problems.append("kind in body should be one of [CLIENT SERVER PRODUCER CONSUMER]")
        duration = raw.get("duration") or 0
        if duration and duration < 1:
            problems.append("duration in body should be greater than or equal to 1")
        for key in ("localEndpoint", "remoteEndpoint"):
            ep = raw.get(key) or {}
            for family in ("ipv4", "ipv6"):
                value = ep.get(family)
                if value and parse_ip(value) == (None, None):
                    problems.append(f'{key}.{family} in body must be of type {family}: "{value}"')
        if problems:
            raise _Invalid("validation failure list:\n" + "\n".join(problems))
        try:
            for hexid in (span_id, parent):
                if hexid:
                    int(hexid, 16)
            canonical_trace_id(str(trace_id))
        except ValueError:
            bad_id = next(h for h in (span_id, parent, trace_id) if h and not all(c in "0123456789abcdef" for c in h))
            raise _Invalid(f'strconv.ParseUint: parsing "{bad_id}": invalid syntax') from None
        spans.append(_span(raw))
    return spans


# The swagger model's Go types (``swagger-gen/models``: span.go, endpoint.go, annotation.go).
_ENDPOINT_FIELDS = {"serviceName": "string", "ipv4": "strfmt.IPv4", "ipv6": "strfmt.IPv6", "port": "int64"}
_ANNOTATION_FIELDS = {"timestamp": "int64", "value": "string"}
_SPAN_FIELDS = {
    "traceId": "string", "id": "string", "parentId": "string", "name": "string", "kind": "string",
    "timestamp": "int64", "duration": "int64", "debug": "bool", "shared": "bool",
    "localEndpoint": "models.Endpoint", "remoteEndpoint": "models.Endpoint",
    "annotations": "[]*models.Annotation", "tags": "models.Tags",
}  # fmt: skip
_STRUCTS = {"models.Endpoint": ("Endpoint", _ENDPOINT_FIELDS)}


def _json_kind(value: Any) -> str:
    """The JSON kind encoding/json names in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _go_mismatch(obj: dict[str, Any], fields: dict[str, str], struct: str, stack: str) -> str | None:
    """encoding/json's first ``UnmarshalTypeError`` decoding ``obj`` into ``struct``: ``Go struct
    field <innermost struct>.<field path> of type <type>``; null leaves any field unset; unknown
    fields are ignored. (Deliberate difference: Go matches field names case-insensitively; this
    only exactly. A non-integral number is quoted as orjson read it, e.g. ``1000.0`` for ``1e3``.)
    Runs on every span the collector takes: the message is built only for a mismatch."""
    for key, value in obj.items():
        gotype = fields.get(key)
        if gotype is None or value is None:
            continue
        bad: Any = _NO_MISMATCH  # the value encoding/json names, and the Go type it wanted
        want = gotype
        if gotype == "int64":
            if type(value) is not int:
                bad = value
        elif gotype == "bool":
            if type(value) is not bool:
                bad = value
        elif gotype in _STRUCTS:
            if not isinstance(value, dict):
                bad = value
            else:
                inner, inner_fields = _STRUCTS[gotype]
                found = _go_mismatch(value, inner_fields, inner, f"{stack}{key}.")
                if found:
                    return found
        elif gotype == "models.Tags":
            if not isinstance(value, dict):
                bad = value
            else:
                bad = next((t for t in value.values() if t is not None and type(t) is not str), _NO_MISMATCH)
                want = "string"
        elif gotype == "[]*models.Annotation":
            if not isinstance(value, list):
                bad = value
            else:
                for item in value:
                    if item is None:
                        continue
                    if not isinstance(item, dict):
                        bad, want = item, "models.Annotation"
                        break
                    found = _go_mismatch(item, _ANNOTATION_FIELDS, "Annotation", f"{stack}{key}.")
                    if found:
                        return found
        elif type(value) is not str:  # string and the strfmt string types
            bad = value
        if bad is not _NO_MISMATCH:
            kind = f"number {bad!r}" if want == "int64" and type(bad) is float else _json_kind(bad)
            return f"json: cannot unmarshal {kind} into Go struct field {struct}.{stack}{key} of type {want}"
    return None


_NO_MISMATCH = object()


def _span(raw: dict[str, Any]) -> Span:
    def ep(d: Any) -> Any:
        if not isinstance(d, dict):
            return None
        return endpoint(d.get("serviceName"), parse_ip(d.get("ipv4") or d.get("ipv6")), int(d.get("port") or 0), lower=False)

    return Span(
        trace_id=canonical_trace_id(raw["traceId"]), id=raw["id"], parent_id=raw.get("parentId") or None, kind=raw.get("kind") or None,
        name=raw.get("name") or None, timestamp=int(raw.get("timestamp") or 0), duration=int(raw.get("duration") or 0),
        local=ep(raw.get("localEndpoint")), remote=ep(raw.get("remoteEndpoint")),
        annotations=[Annotation(int(a.get("timestamp") or 0), str(a.get("value") or "")) for a in raw.get("annotations") or () if a],
        # (a null tag value decodes to Go's zero string)
        tags={str(k): v or "" for k, v in sorted((raw.get("tags") or {}).items())}, debug=True if raw.get("debug") else None,
    )


class JaegerCollector:
    """``POST /api/v2/spans`` (and nothing else) on the Zipkin port."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def handle(self, req: Request) -> Response:
        if req.path != "/api/v2/spans":
            return http_error(404, "404 page not found")
        if req.method != "POST":
            return http_error(405, "405 method not allowed")
        body = req.body
        if "gzip" in req.headers.get("content-encoding", ""):
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error) as exc:
                return http_error(400, f"Unable to process request body: gzip: {exc}")
        ctype = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        try:
            if ctype == "application/json":
                try:
                    doc = orjson.loads(body)
                except orjson.JSONDecodeError:
                    raise _Invalid("unexpected end of JSON input" if not body.strip() else "invalid character in JSON input") from None
                spans = _validate(doc)
            elif ctype == "application/x-protobuf":
                try:
                    spans = codec.decode_proto3(body, lower=False)
                except codec.DecodeError as exc:
                    raise _Invalid(f"proto: {exc}") from None
                spans = [_span(orjson.loads(write_span(s))) for s in spans]
            elif not ctype:
                return http_error(400, "Cannot parse Content-Type: mime: no media type")
            else:
                return http_error(400, "Unsupported Content-Type")
        except _Invalid as exc:
            return http_error(400, f"Unable to process request body: {exc}")
        rows = []
        for s in spans:
            for j in to_jaeger(s)[:1]:
                names = (("op:" + j.kind, j.operation),)
                rows.append(Row(s.trace_id, j.start, j.service, write_span(s), names))
        self.store.add(rows)
        return Response(202, b"", None)


# --- query -------------------------------------------------------------------------------------


def parse_go_duration(text: str) -> int:
    """``time.ParseDuration`` → nanoseconds (Go's error texts)."""
    orig, s, sign = text, text, 1
    if s[:1] in "+-" and s:
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _GO_DURATION.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            unit = re.match(r"[0-9.]*([^0-9.]*)", s[pos:])
            if m is None and unit and unit.group(1) and re.match(r"[0-9.]+", s[pos:]):
                raise ValueError(f'time: unknown unit "{unit.group(1)}" in duration "{orig}"')
            if re.fullmatch(r"[0-9.]+", s[pos:]):
                raise ValueError(f'time: missing unit in duration "{orig}"')
            raise ValueError(f'time: invalid duration "{orig}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * int(total)


def _go_int(text: str, name: str, *, bits: int = 64) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(text)
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise ValueError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value


class JaegerQuery:
    def __init__(self, store: Store) -> None:
        self.store = store

    def handle(self, req: Request) -> Response:
        form = {k: v for k, v in parse_qs(req.query, keep_blank_values=True).items()}
        first = {k: v[0] for k, v in form.items()}
        path = req.path
        page = JAEGER_UI.serve(req)  # the UI: /static/… and the app for every non-/api path
        if page is not None:
            return page
        if req.method not in ("GET", "HEAD"):
            # gorilla/mux: a registered route with another method is 405 (empty body), else 404
            if path in ("/api/services", "/api/operations", "/api/traces", "/api/dependencies") or re.fullmatch(
                r"/api/(services/[^/]+/operations|traces/[^/]*)", path
            ):
                return Response(405, b"", None)
            return http_error(404, "404 page not found")
        try:
            if path == "/api/services":
                services = self.store.services()
                return envelope(services or None, len(services))
            m = re.fullmatch(r"/api/services/([^/]+)/operations", path)
            if m:
                names = sorted({v for _, v in self.store.names_like(m.group(1), "op:")})
                return envelope(names or None, len(names))
            if path == "/api/operations":
                service = first.get("service", "")
                if not service:
                    return api_error(400, "parameter 'service' is required")
                kind = first.get("spanKind", "")
                ops = [{"name": v, "spanKind": k[3:]} for k, v in self.store.names_like(service, "op:") if not kind or k[3:] == kind]
                ops.sort(key=lambda o: (o["name"], o["spanKind"]))
                return envelope(ops, len(ops))
            m = re.fullmatch(r"/api/traces/([^/]*)", path)
            if m:
                return self.get_trace(m.group(1))
            if path == "/api/traces":
                return self.search(first, form)
            if path == "/api/dependencies":
                return self.dependencies(first)
        except _Invalid as exc:
            return api_error(400, str(exc))
        return http_error(404, "404 page not found")

    def _trace(self, trace_id: str) -> list[JSpan]:
        low = trace_id[-16:]
        spans: list[JSpan] = []
        for _, text in self.store.trace(low):
            s = from_stored(orjson.loads(text))
            if s.trace_id == trace_id:
                spans.extend(to_jaeger(s))
        return spans

    def get_trace(self, raw: str) -> Response:
        try:
            if len(raw) > 32:
                raise ValueError(f"TraceID cannot be longer than 32 hex characters: {raw}")
            if not raw or not re.fullmatch(r"[0-9a-fA-F]+", raw):
                raise ValueError(f'strconv.ParseUint: parsing "{raw}": invalid syntax')
            trace_id = canonical_trace_id(raw.lower())
        except ValueError as exc:
            return api_error(400, str(exc))
        spans = self._trace(trace_id)
        if not spans:
            return api_error(404, "trace not found")
        return envelope([trace_json(adjust(spans))])

    def search(self, first: dict[str, str], form: dict[str, list[str]]) -> Response:
        now_us = int(time.time() * 1_000_000)
        try:
            start = _go_int(first["start"], "start") if first.get("start") else now_us - 2 * 86_400_000_000
        except ValueError as exc:
            raise _Invalid(f"unable to parse param 'start': {exc}") from None
        try:
            end = _go_int(first["end"], "end") if first.get("end") else now_us
        except ValueError as exc:
            raise _Invalid(f"unable to parse param 'end': {exc}") from None
        tags: dict[str, str] = {}
        for tag in form.get("tag", []):
            parts = tag.split(":")
            if len(parts) < 2:
                raise _Invalid(f"malformed 'tag' parameter, expecting key:value, received: {tag}")
            tags[parts[0]] = ":".join(parts[1:])
        for raw in form.get("tags", []):
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise _Invalid("malformed 'tags' parameter, cannot unmarshal JSON: invalid character in JSON input") from None
            if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
                raise _Invalid("malformed 'tags' parameter, cannot unmarshal JSON: json: cannot unmarshal into Go value of type string")
            tags.update(parsed)
        limit = 100
        if first.get("limit"):
            try:
                limit = _go_int(first["limit"], "limit", bits=32)
            except ValueError as exc:
                raise _Invalid(str(exc)) from None
        durations = []
        for name in ("minDuration", "maxDuration"):
            try:
                durations.append(parse_go_duration(first[name]) // 1000 if first.get(name) else 0)
            except ValueError as exc:
                raise _Invalid(f"unable to parse param '{name}': {exc}") from None
        min_d, max_d = durations
        trace_ids = []
        for raw in form.get("traceID", []):
            try:
                trace_ids.append(canonical_trace_id(raw))
            except ValueError:
                raise _Invalid(f'cannot parse traceID param: strconv.ParseUint: parsing "{raw}": invalid syntax') from None
        service = first.get("service", "")
        if not trace_ids and not service:
            raise _Invalid("parameter 'service' is required")
        if min_d and max_d and max_d < min_d:
            raise _Invalid("'maxDuration' should be greater than 'minDuration'")
        if trace_ids:
            found, errors = [], []
            for tid in trace_ids:
                spans = self._trace(tid)
                if spans:
                    found.append(trace_json(adjust(spans)))
                else:
                    errors.append({"msg": "trace not found", "traceID": tid})
            return envelope(found, 0, errors or None)
        operation = first.get("operation", "")
        matches: list[list[JSpan]] = []
        seen: set[str] = set()
        for low in self.store.trace_ids_by_time(start // 1000 - 1, end // 1000 + 1, service):
            for _, text in self.store.trace(low):
                tid = from_stored(orjson.loads(text)).trace_id
                if tid in seen:
                    continue
                seen.add(tid)
                spans = self._trace(tid)
                if any(_valid_span(s, service, operation, min_d, max_d, start, end, tags) for s in spans):
                    matches.append(spans)
        matches.sort(key=lambda t: t[0].start, reverse=True)
        if limit > 0:
            matches = matches[:limit]
        return envelope([trace_json(adjust(t)) for t in matches])

    def dependencies(self, first: dict[str, str]) -> Response:
        now_ms = int(time.time() * 1000)
        try:
            end_ms = _go_int(first["endTs"], "endTs") if first.get("endTs") else now_ms
        except ValueError as exc:
            raise _Invalid(f"unable to parse param 'endTs': {exc}") from None
        try:
            lookback = _go_int(first["lookback"], "lookback") if first.get("lookback") else 86_400_000
        except ValueError as exc:
            raise _Invalid(f"unable to parse param 'lookback': {exc}") from None
        start_us, end_us = (end_ms - lookback) * 1000, end_ms * 1000
        counts: dict[tuple[str, str], int] = {}
        traces: dict[str, None] = {}
        for low in self.store.trace_ids_by_time(0, 1 << 62):
            for _, text in self.store.trace(low):
                traces[from_stored(orjson.loads(text)).trace_id] = None
        for tid in traces:
            spans = self._trace(tid)
            dedupe_span_ids(spans)
            if not any(start_us < s.start < end_us for s in spans):
                continue
            for s in spans:
                parent = next((p for p in spans if p.span_id == s.parent_id), None) if s.parent_id else None
                if parent is None or parent.service == s.service:
                    continue
                counts[(parent.service, s.service)] = counts.get((parent.service, s.service), 0) + 1
        service = first.get("service", "")
        links = [{"parent": p, "child": c, "callCount": n} for (p, c), n in sorted(counts.items()) if not service or service in (p, c)]
        return envelope(links)


def _valid_span(s: JSpan, service: str, operation: str, min_d: int, max_d: int, start: int, end: int, tags: dict[str, str]) -> bool:
    """``memory.Store.validSpan`` (one span must satisfy every criterion)."""
    if service != s.service or (operation and operation != s.operation):
        return False
    if (min_d and s.duration < min_d) or (max_d and s.duration > max_d):
        return False
    if s.start < start or s.start > end:
        return False
    flat = list(s.tags) + list(s.process_tags) + [f for _, fields in s.logs for f in fields]
    return all(any(kv.key == k and kv.as_string() == v for kv in flat) for k, v in tags.items())
