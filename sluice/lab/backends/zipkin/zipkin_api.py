"""The Zipkin server's HTTP API (openzipkin/zipkin 2.27: ``ZipkinHttpCollector``,
``ZipkinQueryApiV2``, ``ZipkinUiConfiguration``, ``ZipkinHealthController``).

Errors are the server's: an ``IllegalArgumentException`` becomes 400 with its message as the body
(``BodyIsExceptionMessage``, content type ``text/*``, as Armeria writes ``ANY_TEXT_TYPE``); a
missing mandatory parameter is Armeria's ``Mandatory parameter/header is missing: <name>``; a
number that does not parse is Java's ``For input string: "<text>"``.
"""

from __future__ import annotations

import gzip
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import orjson

from sluice.lab.backends.zipkin import codec
from sluice.lab.backends.zipkin.http import Request, Response
from sluice.lab.backends.zipkin.linker import DependencyLinker, write_links
from sluice.lab.backends.zipkin.model import Span, SpanError, from_stored, normalize_trace_id, write_span
from sluice.lab.backends.zipkin.query import BadRequest, QueryRequest, parse_annotation_query
from sluice.lab.backends.zipkin.store import Row, Store
from sluice.lab.backends.zipkin.ui import ZIPKIN as ZIPKIN_UI

ANY_TEXT = "text/*"
JSON = "application/json"
JSON_UTF8 = "application/json; charset=utf-8"
_LONG = re.compile(r"[+-]?\d+")


@dataclass(slots=True)
class Settings:
    """What the image's environment configures (``zipkin-server-shared.yml``)."""

    lookback: int = 86_400_000
    """``QUERY_LOOKBACK``, ms."""
    strict_trace_id: bool = True
    search_enabled: bool = True
    autocomplete_keys: list[str] = field(default_factory=list)
    sample_rate: float = 1.0
    max_spans: int = 500_000
    names_max_age: int = 300
    ui_query_limit: int = 10
    ui_default_lookback: int = 900_000
    ui_environment: str = ""


def _bool(text: str) -> bool:
    return text.strip().lower() == "true"  # Spring's relaxed boolean binding, for the common forms


def settings_from_env(env: dict[str, str]) -> Settings:
    s = Settings()
    if env.get("QUERY_LOOKBACK"):
        s.lookback = int(env["QUERY_LOOKBACK"])
    if env.get("STRICT_TRACE_ID"):
        s.strict_trace_id = _bool(env["STRICT_TRACE_ID"])
    if env.get("SEARCH_ENABLED"):
        s.search_enabled = _bool(env["SEARCH_ENABLED"])
    if env.get("AUTOCOMPLETE_KEYS"):
        s.autocomplete_keys = [k.strip() for k in env["AUTOCOMPLETE_KEYS"].split(",") if k.strip()]
    if env.get("COLLECTOR_SAMPLE_RATE"):
        s.sample_rate = float(env["COLLECTOR_SAMPLE_RATE"])
    if env.get("MEM_MAX_SPANS"):
        s.max_spans = int(env["MEM_MAX_SPANS"])
    return s


def bad(message: str) -> Response:
    return Response(400, message.encode(), ANY_TEXT)


class _Params:
    """Armeria's ``@Param`` resolution over the query string (first value wins)."""

    def __init__(self, query: str) -> None:
        self.values: dict[str, str] = {}
        for k, v in parse_qsl(query, keep_blank_values=True):
            self.values.setdefault(k, v)

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.values.get(name)
        if value is None and required:
            raise BadRequest(f"Mandatory parameter/header is missing: {name}")
        return value

    def number(self, name: str, *, required: bool = False, bits: int = 64) -> int | None:
        value = self.string(name, required=required)
        if value is None:
            return None
        if not _LONG.fullmatch(value) or not -(1 << (bits - 1)) <= int(value) < (1 << (bits - 1)):
            raise BadRequest(f'For input string: "{value}"')
        return int(value)


def _sampled(span: Span, rate: float) -> bool:
    """``CollectorSampler.isSampled``: debug spans always; else the low 64 bits of the trace id
    against a boundary of ``Long.MAX_VALUE * rate``."""
    if rate >= 1.0 or span.debug:
        return True
    low = int(span.low_trace_id, 16)
    signed = low - (1 << 64) if low >= 1 << 63 else low
    magnitude = abs(signed)
    if magnitude == 1 << 63:  # Math.abs(Long.MIN_VALUE) stays negative, so it passes
        return True
    return magnitude <= int(((1 << 63) - 1) * rate)


class ZipkinApi:
    def __init__(self, store: Store, settings: Settings, log: Callable[[str], None] = lambda m: None) -> None:
        self.store = store
        self.settings = settings
        self.log = log
        self.service_count = 0
        """``ZipkinQueryApiV2.serviceCount``: name lists are cacheable above 3 services."""
        self.routes: dict[str, dict[str, Callable[[Request, _Params], Response]]] = {
            "/api/v2/spans": {"POST": self.post_spans, "GET": self.span_names},
            "/api/v2/services": {"GET": self.services},
            "/api/v2/remoteServices": {"GET": self.remote_services},
            "/api/v2/traces": {"GET": self.traces},
            "/api/v2/traceMany": {"GET": self.trace_many},
            "/api/v2/dependencies": {"GET": self.dependencies},
            "/api/v2/autocompleteKeys": {"GET": self.autocomplete_keys},
            "/api/v2/autocompleteValues": {"GET": self.autocomplete_values},
            "/health": {"GET": self.health},
            "/actuator/health": {"GET": self.health},
            "/zipkin/config.json": {"GET": self.ui_config},
        }

    def handle(self, req: Request) -> Response:
        method = "GET" if req.method == "HEAD" else req.method
        params = _Params(req.query)
        try:
            if req.path.startswith("/api/v2/trace/") and req.path.count("/") == 4:
                if method != "GET":
                    return Response(405, b"405 Method Not Allowed", "text/plain; charset=utf-8")
                return self.trace(req.path[len("/api/v2/trace/") :])
            if req.path in ("/", "/zipkin"):
                return Response(302, b"", None, [("location", "/zipkin/")])
            handlers = self.routes.get(req.path)
            if handlers is None:
                page = ZIPKIN_UI.serve(req)  # Lens: /zipkin/static/… and the app for its client-side routes
                if page is not None:
                    return page
                return Response(404, b"404 Not Found", "text/plain; charset=utf-8")
            handler = handlers.get(method)
            if handler is None:
                return Response(405, b"405 Method Not Allowed", "text/plain; charset=utf-8")
            return handler(req, params)
        except (BadRequest, SpanError) as exc:
            return bad(str(exc))

    # --- collector ---------------------------------------------------------------------------

    def post_spans(self, req: Request, _: _Params) -> Response:
        ctype = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        decoder = "PROTO3" if ctype == "application/x-protobuf" else "JSON_V2"
        body = req.body
        if body and "gzip" in req.headers.get("content-encoding", ""):
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error):
                body = b""
            if not body:
                # Armeria's decoder answers an empty body for a bad gzip stream.
                return bad("Cannot gunzip spans")
        if body == b"[]" or not body:
            return Response(202, b"", None)
        try:
            codec.check_list_format(body, decoder)
            spans = codec.decode_proto3(body) if decoder == "PROTO3" else codec.decode_json(body)
        except codec.DecodeError as exc:
            return bad(str(exc))
        spans = [s for s in spans if _sampled(s, self.settings.sample_rate)]
        self.store.add([self._row(s) for s in spans])
        return Response(202, b"", None)

    def _row(self, s: Span) -> Row:
        names: list[tuple[str, str]] = []
        if s.local_service is not None:
            if s.remote_service is not None:
                names.append(("remote", s.remote_service))
            if s.name is not None:
                names.append(("span", s.name))
        keys = self.settings.autocomplete_keys
        tags = tuple((k, v) for k, v in s.tags.items() if k in keys)
        return Row(s.trace_id, s.timestamp, s.local_service, write_span(s), tuple(names), tags)

    # --- names ---------------------------------------------------------------------------------

    def _names(self, cache: bool, values: list[str]) -> Response:
        headers = [("cache-control", f"max-age={self.settings.names_max_age}, must-revalidate")] if cache else []
        return Response(200, orjson.dumps(sorted(values)), JSON, headers)

    def services(self, req: Request, _: _Params) -> Response:
        names = self.store.services() if self.settings.search_enabled else []
        self.service_count = len(names)
        return self._names(self.service_count > 3, names)

    def span_names(self, req: Request, params: _Params) -> Response:
        service = params.string("serviceName", required=True) or ""
        names = self.store.names(service.lower(), "span") if service and self.settings.search_enabled else []
        return self._names(self.service_count > 3, names)

    def remote_services(self, req: Request, params: _Params) -> Response:
        service = params.string("serviceName", required=True) or ""
        names = self.store.names(service.lower(), "remote") if service and self.settings.search_enabled else []
        return self._names(self.service_count > 3, names)

    def autocomplete_keys(self, req: Request, _: _Params) -> Response:
        return self._names(True, list(self.settings.autocomplete_keys))

    def autocomplete_values(self, req: Request, params: _Params) -> Response:
        key = params.string("key", required=True)
        if not key:
            raise BadRequest("key was empty")
        values = self.store.autocomplete(key) if self.settings.search_enabled else []
        return self._names(len(values) > 3, values)

    # --- traces --------------------------------------------------------------------------------

    def _spans(self, rows: list[tuple[int, str]]) -> list[tuple[Span, str]]:
        """A trace's spans in ``InMemoryStorage.spansByTraceId`` order: grouped by millisecond
        timestamp in the order each was first seen, arrival order inside, equal spans once."""
        groups: dict[int, dict[str, None]] = {}
        for ts_ms, text in rows:
            groups.setdefault(ts_ms, {})[text] = None
        return [(from_stored(orjson.loads(t)), t) for group in groups.values() for t in group]

    @staticmethod
    def _strict(spans: list[tuple[Span, str]]) -> list[list[tuple[Span, str]]]:
        grouped: dict[str, list[tuple[Span, str]]] = {}
        for item in spans:
            grouped.setdefault(item[0].trace_id, []).append(item)
        return list(grouped.values())

    @staticmethod
    def _write_traces(traces: list[list[tuple[Span, str]]]) -> bytes:
        return ("[" + ",".join("[" + ",".join(t for _, t in trace) + "]" for trace in traces) + "]").encode()

    def traces(self, req: Request, params: _Params) -> Response:
        end_ts = params.number("endTs")
        lookback = params.number("lookback")
        limit = params.number("limit", bits=32)
        q = QueryRequest(
            end_ts=end_ts if end_ts is not None else int(time.time() * 1000),
            lookback=lookback if lookback is not None else self.settings.lookback,
            limit=limit if limit is not None else 10,
            service_name=params.string("serviceName"),
            remote_service_name=params.string("remoteServiceName"),
            span_name=params.string("spanName"),
            annotation_query=parse_annotation_query(params.string("annotationQuery")),
            min_duration=params.number("minDuration"),
            max_duration=params.number("maxDuration"),
        )
        if not self.settings.search_enabled:
            return Response(200, b"[]", JSON)
        lows = self.store.trace_ids_by_time(q.end_ts - q.lookback, q.end_ts, q.service_name)
        result: list[list[tuple[Span, str]]] = []
        for start in range(0, len(lows), 100):
            if len(result) >= q.limit:
                break
            batch = self.store.traces(lows[start : start + 100])
            for low in lows[start : start + 100]:
                if len(result) >= q.limit:
                    break
                spans = self._spans(batch[low])
                if not q.test([s for s, _ in spans]):
                    continue
                if not self.settings.strict_trace_id:
                    result.append(spans)
                    continue
                # re-run the query as now spans are strictly grouped
                result.extend(t for t in self._strict(spans) if q.test([s for s, _ in t]))
        return Response(200, self._write_traces(result), JSON)

    def trace(self, raw_id: str) -> Response:
        trace_id = normalize_trace_id(raw_id.strip())
        spans = self._spans(self.store.trace(trace_id[16:] if len(trace_id) == 32 else trace_id))
        if self.settings.strict_trace_id:
            spans = [item for item in spans if item[0].trace_id == trace_id]
        if not spans:
            return Response(404, f"{trace_id} not found".encode(), ANY_TEXT)
        return Response(200, ("[" + ",".join(t for _, t in spans) + "]").encode(), JSON)

    def trace_many(self, req: Request, params: _Params) -> Response:
        raw = params.string("traceIds", required=True) or ""
        if not raw:
            return bad("traceIds parameter is empty")
        normalized: dict[str, None] = {}
        for trace_id in raw.split(",", 999):
            n = normalize_trace_id(trace_id)
            if n in normalized:
                return bad(f"redundant traceId: {trace_id}")
            normalized[n] = None
        if len(normalized) == 1:
            return bad("Use /api/v2/trace/{traceId} endpoint to retrieve a single trace")
        lows = list(dict.fromkeys(t[16:] if len(t) == 32 else t for t in normalized))
        rows = self.store.traces(lows)
        result: list[list[tuple[Span, str]]] = []
        for low in lows:
            spans = self._spans(rows[low])
            if self.settings.strict_trace_id:
                result.extend(t for t in self._strict(spans) if t[0][0].trace_id in normalized)
            elif spans:
                result.append(spans)
        return Response(200, self._write_traces(result), JSON)

    def dependencies(self, req: Request, params: _Params) -> Response:
        end_ts = params.number("endTs", required=True)
        assert end_ts is not None
        lookback = params.number("lookback")
        lookback = lookback if lookback is not None else self.settings.lookback
        if end_ts <= 0:
            raise BadRequest("endTs <= 0")
        if lookback <= 0:
            raise BadRequest("lookback <= 0")
        lows = self.store.trace_ids_by_time(end_ts - lookback, end_ts)
        linker = DependencyLinker()
        for start in range(0, len(lows), 100):
            batch = self.store.traces(lows[start : start + 100])
            for low in lows[start : start + 100]:
                linker.put_trace([s for s, _ in self._spans(batch[low])])
        return Response(200, write_links(linker.links()), JSON)

    # --- server pages -----------------------------------------------------------------------------

    def health(self, req: Request, _: _Params) -> Response:
        # Zipkin names each storage component by its toString(); this one is the SQLite store
        # (the real image's default is "InMemoryStorage{}").
        body = (
            '{\n  "status" : "UP",\n  "zipkin" : {\n    "status" : "UP",\n    "details" : {\n'
            '      "SQLiteStorage{}" : {\n        "status" : "UP"\n      }\n    }\n  }\n}'
        )
        return Response(200, body.encode(), JSON_UTF8)

    def ui_config(self, req: Request, _: _Params) -> Response:
        s = self.settings
        body = (
            "{\n"
            f'  "environment" : {orjson.dumps(s.ui_environment).decode()},\n'
            f'  "queryLimit" : {s.ui_query_limit},\n'
            f'  "defaultLookback" : {s.ui_default_lookback},\n'
            f'  "searchEnabled" : {"true" if s.search_enabled else "false"},\n'
            '  "logsUrl" : null,\n  "supportUrl" : null,\n  "archivePostUrl" : null,\n  "archiveUrl" : null,\n'
            '  "dependency" : {\n    "enabled" : true,\n    "lowErrorRate" : 0.5,\n    "highErrorRate" : 0.75\n  }\n'
            "}"
        )
        return Response(200, body.encode(), JSON_UTF8, [("cache-control", "max-age=600")])
