"""Cluster-level endpoints: ``/``, ``_license``, ``_xpack``, ILM policies, ``_cluster/*``,
``_nodes``, templates (legacy, composable, component) and ``_cat``."""

from __future__ import annotations

import hashlib
import time
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from sluice.lab.backends.elasticsearch import cat, resolve
from sluice.lab.backends.elasticsearch.app import Ctx, Result, Text
from sluice.lab.backends.elasticsearch.datemath import DateFormat
from sluice.lab.backends.elasticsearch.errors import EsError
from sluice.lab.backends.elasticsearch.indices import index_settings, nest
from sluice.lab.backends.elasticsearch.mapping import Mapping

if TYPE_CHECKING:
    from sluice.lab.backends.elasticsearch.app import App

VERSION = "7.14.2"
BUILD_HASH = "6bc13727ce758c0e943c3c21653b3da82f627f75"
BUILD_DATE = "2021-09-15T10:18:09.722761972Z"
LUCENE = "8.9.0"
_FEATURES = ("aggregate_metric", "analytics", "ccr", "data_frame", "data_streams", "data_tiers", "enrich", "eql", "frozen_indices",
             "graph", "ilm", "logstash", "ml", "monitoring", "rollup", "runtime_fields", "searchable_snapshots", "security", "slm",
             "spatial", "sql", "transform", "vectors", "voting_only", "watcher")
_BASIC = {"aggregate_metric", "analytics", "data_frame", "data_streams", "data_tiers", "enrich", "eql", "frozen_indices", "ilm",
          "logstash", "rollup", "runtime_fields", "security", "slm", "spatial", "sql", "transform", "vectors", "voting_only"}


def _iso(ms: int) -> str:
    return DateFormat.of("strict_date_optional_time").format(ms)


def root(app: App, ctx: Ctx) -> Result:
    body = {
        "name": app.settings.node_name,
        "cluster_name": app.settings.cluster_name,
        "cluster_uuid": app.store.cluster_uuid,
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "build_type": "docker",
            "build_hash": BUILD_HASH,
            "build_date": BUILD_DATE,
            "build_snapshot": False,
            "lucene_version": LUCENE,
            "minimum_wire_compatibility_version": "6.8.0",
            "minimum_index_compatibility_version": "6.0.0-beta1",
        },
        "tagline": "You Know, for Search",
    }
    return 200, body


def _license_uid(app: App) -> str:
    h = hashlib.sha1(app.store.cluster_uuid.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _license_issued(app: App) -> int:
    return app.store.created_ms


def license_get(app: App, ctx: Ctx) -> Result:
    issued = _license_issued(app)
    kind = app.settings.license_type
    body: dict[str, Any] = {"status": "active", "uid": _license_uid(app), "type": kind, "issue_date": _iso(issued),
                            "issue_date_in_millis": issued}
    if kind == "trial":
        body["expiry_date"] = _iso(issued + 30 * 86_400_000)
        body["expiry_date_in_millis"] = issued + 30 * 86_400_000
    body.update({"max_nodes": 1000, "max_resource_units": None, "issued_to": app.settings.cluster_name, "issuer": "elasticsearch",
                 "start_date_in_millis": -1})
    return 200, {"license": body}


def xpack(app: App, ctx: Ctx) -> Result:
    kind = app.settings.license_type
    categories = set(ctx.params.get("categories", "build,license,features").split(","))
    out: dict[str, Any] = {}
    if "build" in categories:
        out["build"] = {"hash": BUILD_HASH, "date": BUILD_DATE}
    if "license" in categories:
        out["license"] = {"uid": _license_uid(app), "type": kind, "mode": kind, "status": "active"}
    if "features" in categories:
        security = app.settings.get("xpack.security.enabled", "false").lower() == "true"
        out["features"] = {
            name: {"available": kind == "trial" or name in _BASIC,
                   "enabled": security if name == "security" else name not in ("ml",) or kind == "trial"}
            for name in _FEATURES
        }
    out["tagline"] = "You know, for X"
    return 200, out


# --- ILM --------------------------------------------------------------------------------------------


def ilm_get(app: App, ctx: Ctx) -> Result:
    policies = app.store.objects("ilm")
    name = ctx.vars.get("name")
    if name is None:
        return 200, dict(sorted(policies.items()))
    chosen = {n: p for n, p in policies.items() if any(fnmatchcase(n, pat) for pat in name.split(","))}
    if not chosen:
        raise EsError(404, "resource_not_found_exception", f"Lifecycle policy not found: {name}")
    return 200, chosen


def ilm_put(app: App, ctx: Ctx) -> Result:
    name = ctx.var("name")
    body = ctx.json()
    if not isinstance(body, dict) or not isinstance(body.get("policy"), dict):
        raise EsError(400, "parse_exception", "request body is required") if body is None else EsError(
            400, "x_content_parse_exception", "[1:2] [put_lifecycle_request] policy is required")
    old = app.store.objects("ilm").get(name)
    version = (old["version"] + 1) if old else 1
    app.store.put_object("ilm", name, {"version": version, "modified_date": _iso(int(time.time() * 1000)), "policy": body["policy"]})
    return 200, {"acknowledged": True}


def ilm_delete(app: App, ctx: Ctx) -> Result:
    name = ctx.var("name")
    if not app.store.delete_object("ilm", name):
        raise EsError(404, "resource_not_found_exception", f"Lifecycle policy not found: {name}")
    return 200, {"acknowledged": True}


def ilm_status(app: App, ctx: Ctx) -> Result:
    return 200, {"operation_mode": "RUNNING"}


# --- cluster ----------------------------------------------------------------------------------------

_RANK = {"green": 0, "yellow": 1, "red": 2}


def _shard_counts(metas: list[Any]) -> tuple[int, int, int]:
    primaries = sum(m.shards for m in metas)
    unassigned = sum(m.shards * m.replicas for m in metas)
    return primaries, primaries, unassigned


def _status(metas: list[Any]) -> str:
    return max((m.health for m in metas), key=lambda h: _RANK[h], default="green")


def cluster_health(app: App, ctx: Ctx) -> Result:
    indices = app.store.indices()
    names = resolve.resolve(indices, ctx.vars.get("index"), expand_wildcards="all", allow_no_indices=True) if "index" in ctx.vars \
        else sorted(indices)
    metas = [indices[n] for n in names]
    active, primaries, unassigned = _shard_counts(metas)
    status = _status(metas)
    want = ctx.params.get("wait_for_status", "").lower()
    timed_out = bool(want) and want in _RANK and _RANK[status] > _RANK[want]
    pct = 100.0 if active + unassigned == 0 else active * 100.0 / (active + unassigned)
    body: dict[str, Any] = {
        "cluster_name": app.settings.cluster_name, "status": status, "timed_out": timed_out, "number_of_nodes": 1,
        "number_of_data_nodes": 1, "active_primary_shards": primaries, "active_shards": active, "relocating_shards": 0,
        "initializing_shards": 0, "unassigned_shards": unassigned, "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0, "active_shards_percent_as_number": pct,
    }
    if ctx.params.get("level") in ("indices", "shards"):
        body["indices"] = {
            m.name: {"status": m.health, "number_of_shards": m.shards, "number_of_replicas": m.replicas, "active_primary_shards": m.shards,
                     "active_shards": m.shards, "relocating_shards": 0, "initializing_shards": 0,
                     "unassigned_shards": m.shards * m.replicas}
            for m in metas
        }
    # Deliberate difference: wait_for_* never waits (a single node's health does not change by waiting).
    return (408 if timed_out else 200), body


def cluster_settings_get(app: App, ctx: Ctx) -> Result:
    return 200, {k: nest(v) if not ctx.flag("flat_settings") else v for k, v in app.cluster_settings.items()}


def cluster_settings_put(app: App, ctx: Ctx) -> Result:
    # Deliberate difference: cluster settings are kept in memory only, and none changes behaviour.
    body = ctx.json() or {}
    out: dict[str, Any] = {"acknowledged": True}
    for scope in ("persistent", "transient"):
        raw = _flat(body.get(scope) or {})
        for k, v in raw.items():
            if v is None:
                app.cluster_settings[scope].pop(k, None)
            else:
                app.cluster_settings[scope][k] = v
        out[scope] = nest({k: v for k, v in raw.items() if v is not None})
    return 200, out


def _flat(body: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in body.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
    return out


def nodes(app: App, ctx: Ctx) -> Result:
    host, _, port = app.http_address.rpartition(":")
    node = {
        "name": app.settings.node_name, "transport_address": f"{host}:9300", "host": host, "ip": host, "version": VERSION,
        "build_flavor": "default", "build_type": "docker", "build_hash": BUILD_HASH,
        "roles": ["data", "data_cold", "data_content", "data_frozen", "data_hot", "data_warm", "ingest", "master", "ml",
                  "remote_cluster_client", "transform"],
        "attributes": {"xpack.installed": "true", "transform.node": "true"},
        "http": {"bound_address": [app.http_address], "publish_address": app.http_address,
                 "max_content_length_in_bytes": app.settings.max_content_length},
    }
    return 200, {"_nodes": {"total": 1, "successful": 1, "failed": 0}, "cluster_name": app.settings.cluster_name,
                 "nodes": {app.store.node_id: node}}


# --- templates --------------------------------------------------------------------------------------


def _check_mappings(body: Any) -> None:
    if body:
        Mapping().merge(body)


def template_put(app: App, ctx: Ctx) -> Result:
    name = ctx.var("name")
    body = ctx.json()
    if not isinstance(body, dict):
        raise EsError(400, "parse_exception", "request body is required")
    patterns = body.get("index_patterns", body.get("template"))
    if not patterns:
        raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: index patterns are missing;")
    if ctx.flag("create") and name in app.store.objects("template"):
        raise EsError(400, "illegal_argument_exception", f"index_template [{name}] already exists")
    _check_mappings(body.get("mappings"))
    stored = {"order": int(body.get("order", 0)), "index_patterns": [patterns] if isinstance(patterns, str) else list(patterns),
              "settings": index_settings(body.get("settings")), "mappings": body.get("mappings") or {},
              "aliases": body.get("aliases") or {}}
    if "version" in body:
        stored["version"] = body["version"]
    app.store.put_object("template", name, stored)
    return 200, {"acknowledged": True}


def _legacy_view(t: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"order": t.get("order", 0)}
    if "version" in t:
        out["version"] = t["version"]
    out["index_patterns"] = t.get("index_patterns", [])
    settings = t.get("settings") or {}
    out["settings"] = nest(settings) if settings else {}
    out["mappings"] = t.get("mappings") or {}
    out["aliases"] = t.get("aliases") or {}
    return out


def template_get(app: App, ctx: Ctx) -> Result:
    templates = app.store.objects("template")
    name = ctx.vars.get("name")
    chosen = {n: _legacy_view(t) for n, t in sorted(templates.items()) if name is None or any(fnmatchcase(n, p) for p in name.split(","))}
    if name is not None and not chosen:
        return 404, {}
    return 200, chosen


def template_delete(app: App, ctx: Ctx) -> Result:
    name = ctx.var("name")
    if not app.store.delete_object("template", name):
        raise EsError(404, "index_template_missing_exception", f"index_template [{name}] missing")
    return 200, {"acknowledged": True}


def index_template_put(app: App, ctx: Ctx) -> Result:
    kind = "component_template" if "_component_template" in ctx.path else "index_template"
    name = ctx.var("name")
    body = ctx.json()
    if not isinstance(body, dict):
        raise EsError(400, "parse_exception", "request body is required")
    if kind == "index_template" and not body.get("index_patterns"):
        raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: index patterns are missing;")
    template = body.get("template") or {}
    _check_mappings(template.get("mappings"))
    app.store.put_object(kind, name, body)
    return 200, {"acknowledged": True}


def index_template_get(app: App, ctx: Ctx) -> Result:
    kind = "component_template" if "_component_template" in ctx.path else "index_template"
    name = ctx.vars.get("name")
    items = [{"name": n, kind: t} for n, t in sorted(app.store.objects(kind).items())
             if name is None or any(fnmatchcase(n, p) for p in name.split(","))]
    if name is not None and not items:
        what = "component template" if kind == "component_template" else "index template"
        raise EsError(404, "resource_not_found_exception", f"{what} matching [{name}] not found")
    return 200, {kind + "s": items}


def index_template_delete(app: App, ctx: Ctx) -> Result:
    kind = "component_template" if "_component_template" in ctx.path else "index_template"
    name = ctx.var("name")
    if not app.store.delete_object(kind, name):
        raise EsError(404, "resource_not_found_exception", f"{kind.replace('_', ' ')} matching [{name}] not found")
    return 200, {"acknowledged": True}


# --- _cat -------------------------------------------------------------------------------------------


def _cat(table: cat.Table, ctx: Ctx) -> Text:
    body, ctype = cat.render(table, ctx.params)
    return Text(body, ctype)


def cat_root(app: App, ctx: Ctx) -> Text:
    return Text(cat.CAT_INDEX.encode())


def cat_indices(app: App, ctx: Ctx) -> Text:
    indices = app.store.indices()
    names = resolve.resolve(indices, ctx.vars.get("index"), expand_wildcards=ctx.params.get("expand_wildcards", "all"))
    metas = [indices[n] for n in names]
    return _cat(cat.indices_table(metas, app.store.searchable_docs(metas), ctx.params.get("health")), ctx)


def cat_health(app: App, ctx: Ctx) -> Text:
    metas = list(app.store.indices().values())
    active, primaries, unassigned = _shard_counts(metas)
    return _cat(cat.health_table(app.settings.cluster_name, _status(metas), active, primaries, unassigned, ctx.params), ctx)


def cat_templates(app: App, ctx: Ctx) -> Text:
    table = cat.templates_table(app.store.objects("template"), app.store.objects("index_template"), ctx.vars.get("name"))
    return _cat(table, ctx)


def cat_count(app: App, ctx: Ctx) -> Text:
    res = app.searcher.count(ctx.vars.get("index"), {}, None)
    return _cat(cat.count_table(int(res["count"]), ctx.params), ctx)


def cat_aliases(app: App, ctx: Ctx) -> Text:
    indices = app.store.indices()
    return _cat(cat.aliases_table([indices[n] for n in sorted(indices)], ctx.vars.get("name")), ctx)


def cat_nodes(app: App, ctx: Ctx) -> Text:
    host = app.http_address.rpartition(":")[0]
    return _cat(cat.nodes_table(host, app.settings.node_name, app.store.node_id), ctx)


def cat_shards(app: App, ctx: Ctx) -> Text:
    indices = app.store.indices()
    names = resolve.resolve(indices, ctx.vars.get("index"), expand_wildcards="all")
    host = app.http_address.rpartition(":")[0]
    metas = [indices[n] for n in names]
    return _cat(cat.shards_table(metas, app.store.searchable_docs(metas), host, app.settings.node_name), ctx)


def cat_master(app: App, ctx: Ctx) -> Text:
    host = app.http_address.rpartition(":")[0]
    return _cat(cat.master_table(app.store.node_id, host, app.settings.node_name), ctx)
