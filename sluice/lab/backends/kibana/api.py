"""Kibana's HTTP API subset the course and the pages use, in Kibana 7.14's shapes.

Public: ``/api/status``, ``/api/kibana/settings``, ``/api/saved_objects/…`` (index patterns and
the config object), ``/api/index_patterns/_fields_for_wildcard``, ``/api/console/proxy``.
Internal (the pages' own calls): ``/internal/index-pattern-management/resolve_index/{query}``,
``/internal/search/es`` (a search request in the query DSL, forwarded to Elasticsearch) and
``/internal/discover/search``.

Deliberate difference: Kibana's browser code compiles KQL and posts the query DSL to
``/internal/search/es``; here Discover posts its state (index pattern, query text and language,
time range, interval) to ``/internal/discover/search`` and the server builds the request with
:mod:`.discover` and :mod:`.kql`, so the translation lives in one place (and is unit tested in
Python). The request it built comes back with the answer (Discover's "Inspect").

Deliberate difference: ``/api/status``'s ``metrics`` hold a subset of Kibana's (load, memory,
uptimes, response times, request counts), and the statuses list only the services here.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from sluice.lab.backends.kibana import BUILD_HASH, BUILD_NUMBER, VERSION, datemath, discover, kql
from sluice.lab.backends.kibana.es import ESUnavailable
from sluice.lab.backends.kibana.index_patterns import IndexPatternError, fields_for_wildcard, resolve_index
from sluice.lab.backends.kibana.saved_objects import SavedObjectsError
from sluice.lab.backends.kibana.web import HttpError, Reply, Request, json_reply

if TYPE_CHECKING:
    from sluice.lab.backends.kibana.server import Kibana

_LEGACY = {
    "available": ("green", "Green", "Looking good", "success", "secondary"),
    "degraded": ("yellow", "Yellow", "I'll be back", "warning", "warning"),
    "unavailable": ("red", "Red", "Danger Will Robinson! Danger!", "danger", "danger"),
}
_PLUGINS = ("data", "discover", "indexPatternManagement", "console", "home")


def _so_error(exc: SavedObjectsError) -> HttpError:
    return HttpError(exc.status, exc.message)


def _ip_error(exc: IndexPatternError) -> HttpError:
    return HttpError(exc.status, exc.message, {"code": exc.code} if exc.code else None)


# --- status ----------------------------------------------------------------------------------


def status(app: Kibana, req: Request) -> Reply:
    es_ok, es_message = app.es_status()
    level = "available" if es_ok else "unavailable"
    now = dt.datetime.now(dt.UTC)
    since = datemath.iso(now)
    if (req.param("v8format") or "").lower() == "true":
        summary = "All services are available" if es_ok else "1 service is unavailable: elasticsearch"
        status_info: dict[str, Any] = {
            "overall": {"level": level, "summary": summary},
            "core": {
                "elasticsearch": {"level": level, "summary": es_message},
                "savedObjects": {"level": level, "summary": "SavedObjects service has completed migrations and is available"
                                 if es_ok else "SavedObjects service is not available without a healthy Elasticearch connection"},
            },
            "plugins": {p: {"level": level, "summary": "All dependencies are available"} for p in _PLUGINS},
        }
    else:
        state, title, nickname, icon, color = _LEGACY[level]
        component = {"state": state, "icon": icon, "uiColor": color, "since": since}
        statuses = [
            {"id": f"core:elasticsearch@{VERSION}", "message": es_message, **component},
            {"id": f"core:savedObjects@{VERSION}", "message": "SavedObjects service has completed migrations and is available",
             **component},
        ] + [{"id": f"plugin:{p}@{VERSION}", "message": "All dependencies are available", **component} for p in _PLUGINS]
        status_info = {"overall": {"since": since, "state": state, "title": title, "nickname": nickname, "icon": icon, "uiColor": color},
                       "statuses": statuses}
    body: dict[str, Any] = {
        "name": app.settings.server_name,
        "uuid": app.uuid,
        "version": {"number": VERSION, "build_hash": BUILD_HASH, "build_number": BUILD_NUMBER, "build_snapshot": False},
        "status": status_info,
    }
    with app.metrics_lock:
        body["metrics"] = app.metrics.snapshot(now)
    return json_reply(200 if es_ok else 503, body)


# --- advanced settings -----------------------------------------------------------------------


def _settings_body(attrs: dict[str, Any]) -> dict[str, Any]:
    return {"settings": {k: {"userValue": v} for k, v in attrs.items() if v is not None}}


def settings_get(app: Kibana, req: Request) -> Reply:
    try:
        return json_reply(200, _settings_body(app.repo.ui_settings()))
    except SavedObjectsError as exc:
        raise _so_error(exc) from None


def settings_post(app: Kibana, req: Request) -> Reply:
    body = req.json_object()
    changes = body.get("changes")
    if not isinstance(changes, dict):
        raise HttpError(400, "[request body.changes]: expected value of type [object] but got [undefined]")
    try:
        return json_reply(200, _settings_body(app.repo.set_ui_settings(changes)))
    except SavedObjectsError as exc:
        raise _so_error(exc) from None


# --- saved objects ---------------------------------------------------------------------------


def so_create(app: Kibana, req: Request, type_: str, id_: str | None = None) -> Reply:
    body = req.json_object()
    attributes = body.get("attributes")
    if not isinstance(attributes, dict):
        raise HttpError(400, f"[request body.attributes]: expected value of type [object] but got [{_js_type(attributes)}]")
    references = body.get("references")
    if references is not None and not isinstance(references, list):
        raise HttpError(400, f"[request body.references]: expected value of type [array] but got [{_js_type(references)}]")
    overwrite = (req.param("overwrite") or "false").lower() == "true"
    try:
        obj = app.repo.create(urllib.parse.unquote(type_), attributes, id_=urllib.parse.unquote(id_) if id_ else None,
                              overwrite=overwrite, references=references)
    except SavedObjectsError as exc:
        raise _so_error(exc) from None
    return json_reply(200, obj)


def so_get(app: Kibana, req: Request, type_: str, id_: str) -> Reply:
    try:
        return json_reply(200, app.repo.get(urllib.parse.unquote(type_), urllib.parse.unquote(id_)))
    except SavedObjectsError as exc:
        raise _so_error(exc) from None


def so_update(app: Kibana, req: Request, type_: str, id_: str) -> Reply:
    body = req.json_object()
    attributes = body.get("attributes")
    if not isinstance(attributes, dict):
        raise HttpError(400, f"[request body.attributes]: expected value of type [object] but got [{_js_type(attributes)}]")
    try:
        obj = app.repo.update(urllib.parse.unquote(type_), urllib.parse.unquote(id_), attributes,
                              references=body.get("references"), version=body.get("version"))
    except SavedObjectsError as exc:
        raise _so_error(exc) from None
    return json_reply(200, obj)


def so_delete(app: Kibana, req: Request, type_: str, id_: str) -> Reply:
    try:
        app.repo.delete(urllib.parse.unquote(type_), urllib.parse.unquote(id_))
    except SavedObjectsError as exc:
        raise _so_error(exc) from None
    return json_reply(200, {})


def so_find(app: Kibana, req: Request) -> Reply:
    types = req.params("type")
    if not types:
        raise HttpError(400, "[request query.type]: expected at least one defined value but got [undefined]")
    page = _int(req, "page", 1, 1)
    per_page = _int(req, "per_page", 20, 0)
    if page * per_page > 10000:
        raise HttpError(400, f"Result window is too large, page * perPage [{page * per_page}] must be <= 10000: Bad Request")
    try:
        found = app.repo.find(types, page=page, per_page=per_page, search=req.param("search"),
                              search_fields=req.params("search_fields") or None, fields=req.params("fields") or None,
                              sort_field=req.param("sort_field"), sort_order=req.param("sort_order") or "asc")
    except SavedObjectsError as exc:
        raise _so_error(exc) from None
    return json_reply(200, found)


def _int(req: Request, name: str, default: int, least: int) -> int:
    raw = req.param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"[request query.{name}]: expected value of type [number] but got [string]") from None
    if value < least:
        raise HttpError(400, f"[request query.{name}]: Value must be equal to or greater than [{least}].")
    return value


def _js_type(v: Any) -> str:
    return {type(None): "undefined", list: "Array", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(v), "Object")


# --- index patterns --------------------------------------------------------------------------


def fields_for_wildcard_route(app: Kibana, req: Request) -> Reply:
    pattern = req.param("pattern")
    if not pattern:
        raise HttpError(400, "[request query.pattern]: expected value of type [string] but got [undefined]")
    meta = req.params("meta_fields")
    if len(meta) == 1 and meta[0].startswith("["):
        meta = [m.strip(' "[]') for m in meta[0].split(",")]
    try:
        fields = fields_for_wildcard(app.es, pattern, meta_fields=meta or [],
                                     allow_no_index=(req.param("allow_no_index") or "").lower() == "true")
    except IndexPatternError as exc:
        raise _ip_error(exc) from None
    return json_reply(200, {"fields": fields})


def resolve_index_route(app: Kibana, req: Request, query: str) -> Reply:
    try:
        found = resolve_index(app.es, urllib.parse.unquote(query), expand_wildcards=req.param("expand_wildcards") or "open")
    except IndexPatternError as exc:
        raise _ip_error(exc) from None
    return json_reply(200, found)


# --- search ----------------------------------------------------------------------------------


def _search(app: Kibana, index: str, body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    path = "/" + urllib.parse.quote(index, safe="*,-_.+") + "/_search" if index else "/_search"
    try:
        reply = app.es.request("POST", path, body, params=params)
    except ESUnavailable as exc:
        raise HttpError(503, str(exc)) from None
    if not reply.ok or not isinstance(reply.body, dict):
        err = reply.body.get("error") if isinstance(reply.body, dict) else None
        message = err.get("type", "error") if isinstance(err, dict) else str(reply.body)[:200]
        raise HttpError(reply.status if reply.status >= 400 else 502, str(message), {"error": err if err is not None else reply.body})
    return reply.body


def _kibana_response(raw: dict[str, Any]) -> dict[str, Any]:
    shards = raw.get("_shards") or {}
    loaded = int(shards.get("successful", 0)) + int(shards.get("failed", 0)) + int(shards.get("skipped", 0))
    return {"isPartial": False, "isRunning": False, "rawResponse": raw, "total": int(shards.get("total", 0)), "loaded": loaded}


def search_es(app: Kibana, req: Request) -> Reply:
    body = req.json_object()
    params = body.get("params")
    if not isinstance(params, dict):
        raise HttpError(400, "[request body.params]: expected value of type [object] but got [undefined]")
    index = params.get("index") or ""
    es_params = {k: v for k, v in params.items() if k not in ("index", "body")}
    es_params.setdefault("ignore_unavailable", True)
    raw = _search(app, ",".join(index) if isinstance(index, list) else str(index), params.get("body") or {}, es_params)
    return json_reply(200, _kibana_response(raw))


def discover_search(app: Kibana, req: Request) -> Reply:
    body = req.json_object()
    pattern_id = body.get("index")
    if not isinstance(pattern_id, str) or not pattern_id:
        raise HttpError(400, "[request body.index]: expected the id of an index pattern")
    try:
        pattern = app.repo.get("index-pattern", pattern_id)["attributes"]
    except SavedObjectsError as exc:
        raise _so_error(exc) from None
    title = str(pattern.get("title") or "")
    time_field = pattern.get("timeFieldName") or None
    query = body.get("query") or {}
    text = str(query.get("query", "")) if isinstance(query, dict) else ""
    language = str(query.get("language", "kuery")) if isinstance(query, dict) else "kuery"
    tz_name = str(body.get("timeZone") or "UTC")
    tz = datemath.zone(tz_name)
    span = None
    interval = None
    if time_field:
        time = body.get("time") or {}
        try:
            span = discover.time_range(str(time.get("from", "now-15m")), str(time.get("to", "now")), now=dt.datetime.now(dt.UTC), tz=tz)
            interval = discover.interval_for(str(body.get("interval") or "auto"), span.duration_ms)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None
    try:
        fields = [kql.Field(f["name"], f.get("type", ""), (f.get("subType") or {}).get("nested", {}).get("path"))
                  for f in fields_for_wildcard(app.es, title, allow_no_index=True)]
    except IndexPatternError as exc:
        raise _ip_error(exc) from None
    size = body.get("size", discover.SAMPLE_SIZE)
    try:
        es_body = discover.search_body(time_field=time_field, fields=fields, query=text, language=language, span=span,
                                       interval=interval, time_zone=tz_name, size=int(size))
    except kql.KQLSyntaxError as exc:
        raise HttpError(400, str(exc), {"type": "KQLSyntaxError", "offset": exc.offset}) from None
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None
    raw = _search(app, title, es_body, {"ignore_unavailable": True, "preference": body.get("preference")})
    out: dict[str, Any] = {
        **_kibana_response(raw),
        "request": {"index": title, "body": es_body},
        "indexPattern": {"id": pattern_id, "title": title, "timeFieldName": time_field},
        "timeRange": {"from": datemath.iso(span.start), "to": datemath.iso(span.end)} if span else None,
        "interval": None if interval is None else {
            "ms": interval.ms, "expression": interval.expression, "description": interval.description,
            "scaled": interval.scaled, "esParam": interval.es_param,
        },
    }
    return json_reply(200, out)


# --- console ---------------------------------------------------------------------------------


def console_proxy(app: Kibana, req: Request) -> Reply:
    method = (req.param("method") or "").upper()
    path = req.param("path")
    if method not in ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH") or not path:
        raise HttpError(400, "[request query.method]: expected a method and a path")
    target = path if path.startswith("/") else "/" + path
    ctype = req.headers.get("Content-Type") or "application/json"
    try:
        reply = app.es.request(method, target, raw_body=req.body or None, content_type=ctype)
    except ESUnavailable as exc:
        raise HttpError(502, str(exc)) from None
    keep = [(k, v) for k, v in reply.headers.items() if k in ("warning", "x-elastic-product")]
    return Reply(reply.status, reply.raw, reply.headers.get("content-type", "application/json; charset=utf-8"), keep)


# --- metrics (for /api/status) ----------------------------------------------------------------


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.total = 0
        self.codes: dict[str, int] = {}
        self.response_ms: list[float] = []
        self.connections = 0

    def observe(self, status: int, ms: float) -> None:
        self.total += 1
        self.codes[str(status)] = self.codes.get(str(status), 0) + 1
        self.response_ms = (self.response_ms + [ms])[-500:]

    def snapshot(self, now: dt.datetime) -> dict[str, Any]:
        rss = 0
        try:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
        load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        times = self.response_ms or [0.0]
        uptime = int((time.time() - self.started) * 1000)
        return {
            "last_updated": datemath.iso(now),
            "collection_interval_in_millis": 5000,
            "os": {"platform": "linux", "platformRelease": f"linux-{os.uname().release}",
                   "load": {"1m": load[0], "5m": load[1], "15m": load[2]}, "uptime_in_millis": uptime},
            "process": {"memory": {"resident_set_size_in_bytes": rss}, "pid": os.getpid(), "event_loop_delay": 0,
                        "uptime_in_millis": uptime},
            "response_times": {"avg_in_millis": sum(times) / len(times), "max_in_millis": max(times)},
            "concurrent_connections": self.connections,
            "requests": {"disconnects": 0, "total": self.total, "statusCodes": dict(self.codes), "status_codes": dict(self.codes)},
        }
