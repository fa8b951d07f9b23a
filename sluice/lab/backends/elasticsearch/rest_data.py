"""Index and document endpoints: index create/exists/get/delete, ``_mapping``, ``_settings``,
aliases, ``_refresh``/``_flush``, ``_doc``/``_create``/``_update``/``_source``, ``_mget``,
``_bulk``, ``_search``, ``_count``, ``_msearch``, ``_field_caps``, ``_delete_by_query``."""

from __future__ import annotations

import time
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import orjson

from sluice.lab.backends.elasticsearch import indices as idx
from sluice.lab.backends.elasticsearch import jsonfmt, resolve
from sluice.lab.backends.elasticsearch.app import Ctx, Result
from sluice.lab.backends.elasticsearch.bulk import parse_bulk
from sluice.lab.backends.elasticsearch.documents import filter_source
from sluice.lab.backends.elasticsearch.errors import EsError, RawError, index_not_found
from sluice.lab.backends.elasticsearch.writer import Op

if TYPE_CHECKING:
    from sluice.lab.backends.elasticsearch.app import App


def _names(app: App, ctx: Ctx, *, strict: bool = True, wildcards: str = "open") -> list[str]:
    return resolve.resolve(app.store.indices(), ctx.vars.get("index"),
                           ignore_unavailable=ctx.flag("ignore_unavailable", not strict),
                           allow_no_indices=ctx.flag("allow_no_indices", True),
                           expand_wildcards=ctx.params.get("expand_wildcards", wildcards))


# --- indices ----------------------------------------------------------------------------------------


def index_create(app: App, ctx: Ctx) -> Result:
    body = ctx.json()
    if body is not None and not isinstance(body, dict):
        raise EsError(400, "parse_exception", "Failed to parse content to map")
    meta = idx.create_index(app.store, ctx.var("index"), body)
    app.log("info", "o.e.c.m.MetadataCreateIndexService",
            f"[{meta.name}] creating index, cause [api], templates [], shards [{meta.shards}]/[{meta.replicas}]")
    return 200, {"acknowledged": True, "shards_acknowledged": True, "index": meta.name}


def index_exists(app: App, ctx: Ctx) -> Result:
    try:
        names = _names(app, ctx, wildcards="open,closed")
    except EsError:
        return 404, {}
    return (200 if names else 404), {}


def index_get(app: App, ctx: Ctx) -> Result:
    names = _names(app, ctx, wildcards="open,closed")
    if not names and "*" not in ctx.var("index"):
        raise index_not_found(ctx.var("index"))
    return 200, {n: idx.index_view(app.store.indices()[n]) for n in names}


def index_delete(app: App, ctx: Ctx) -> Result:
    expr = ctx.var("index")
    if expr in ("_all", "*") and app.settings.get("action.destructive_requires_name", "false") == "true":
        raise EsError(400, "illegal_argument_exception", "Wildcard expressions or all indices are not allowed")
    idx.delete_indices(app.store, expr, ignore_unavailable=ctx.flag("ignore_unavailable"),
                       allow_no_indices=ctx.flag("allow_no_indices", True))
    return 200, {"acknowledged": True}


def mapping_get(app: App, ctx: Ctx) -> Result:
    names = _names(app, ctx, wildcards="open,closed")
    return 200, {n: {"mappings": app.store.indices()[n].mapping.to_json()} for n in names}


def mapping_put(app: App, ctx: Ctx) -> Result:
    names = idx.require(app.store, ctx.vars.get("index"))
    idx.put_mapping(app.store, names, ctx.json())
    return 200, {"acknowledged": True}


def settings_get(app: App, ctx: Ctx) -> Result:
    names = _names(app, ctx, wildcards="open,closed")
    flat = ctx.flag("flat_settings")
    out = {}
    for n in names:
        meta = app.store.indices()[n]
        out[n] = {"settings": dict(sorted(meta.settings.items())) if flat else idx.settings_view(meta)}
    return 200, out


def settings_put(app: App, ctx: Ctx) -> Result:
    names = idx.require(app.store, ctx.vars.get("index"))
    idx.put_settings(app.store, names, ctx.json())
    return 200, {"acknowledged": True}


def _refresh_after(app: App, ctx: Ctx) -> None:
    """``?refresh=true|wait_for`` on a write: make it searchable before answering."""
    if ctx.params.get("refresh", "false").lower() in ("", "true", "wait_for"):
        app.store.refresh()


def refresh(app: App, ctx: Ctx) -> Result:
    names = _names(app, ctx)
    app.store.refresh(names)
    shards = sum(m.shards * (1 + m.replicas) for m in (app.store.indices()[n] for n in names))
    ok = sum(app.store.indices()[n].shards for n in names)
    if "_flush" in ctx.path:
        app.store.checkpoint()
    return 200, {"_shards": {"total": shards, "successful": ok, "failed": 0}}


# --- aliases ----------------------------------------------------------------------------------------


def alias_get(app: App, ctx: Ctx) -> Result:
    return 200, idx.get_aliases(app.store, ctx.vars.get("index"), ctx.vars.get("name"))


def alias_head(app: App, ctx: Ctx) -> Result:
    try:
        idx.get_aliases(app.store, ctx.vars.get("index"), ctx.vars.get("name"))
    except EsError:
        return 404, {}
    return 200, {}


def alias_put(app: App, ctx: Ctx) -> Result:
    body = ctx.json() or {}
    idx.update_aliases(app.store, [("add", ctx.var("index"), ctx.var("name"), body)])
    return 200, {"acknowledged": True}


def alias_delete(app: App, ctx: Ctx) -> Result:
    idx.update_aliases(app.store, [("remove", ctx.var("index"), ctx.var("name"), {})])
    return 200, {"acknowledged": True}


def aliases_post(app: App, ctx: Ctx) -> Result:
    body = ctx.json()
    if not isinstance(body, dict) or not isinstance(body.get("actions"), list):
        raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no action requested;")
    actions: list[tuple[str, str, str, dict[str, Any]]] = []
    for item in body["actions"]:
        if not isinstance(item, dict) or len(item) != 1:
            raise EsError(400, "illegal_argument_exception", "Expected one action per item")
        op, spec = next(iter(item.items()))
        if op not in ("add", "remove", "remove_index") or not isinstance(spec, dict):
            raise EsError(400, "illegal_argument_exception", f"Unsupported action [{op}]")
        targets = spec.get("indices", spec.get("index"))
        targets = ",".join(targets) if isinstance(targets, list) else targets
        names = spec.get("aliases", spec.get("alias", ""))
        names = names if isinstance(names, list) else [names]
        if not targets:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: One of [index] or [indices] is required;")
        for alias in names if op != "remove_index" else [""]:
            actions.append((op, str(targets), str(alias), spec))
    idx.update_aliases(app.store, actions)
    return 200, {"acknowledged": True}


# --- documents --------------------------------------------------------------------------------------


def _write_params(ctx: Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("if_seq_no", "if_primary_term", "version"):
        if k in ctx.params:
            try:
                out[k] = int(ctx.params[k])
            except ValueError:
                why = f"Failed to parse int parameter [{k}] with value [{ctx.params[k]}]"
                raise EsError(400, "illegal_argument_exception", why) from None
    for k in ("version_type", "op_type"):
        if k in ctx.params:
            out[k] = ctx.params[k]
    if ctx.flag("require_alias"):
        out["require_alias"] = True
    return out


def _single(app: App, ctx: Ctx, op: Op) -> Result:
    item = app.writer.execute([op])[0][op.action]
    _refresh_after(app, ctx)
    status = int(item.pop("status"))
    if "error" in item:
        err = item["error"]
        exc = EsError(status, err["type"], err["reason"], meta={k: v for k, v in err.items() if k not in ("type", "reason", "caused_by")})
        if "caused_by" in err:
            cb = err["caused_by"]
            exc.caused_by = EsError(status, cb["type"], cb["reason"])
        raise exc
    return status, item


def doc_index(app: App, ctx: Ctx) -> Result:
    body = ctx.body
    if not body.strip():
        raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: source is missing;")
    params = _write_params(ctx)
    action = "create" if ("_create" in ctx.path or params.get("op_type") == "create") else "index"
    return _single(app, ctx, Op(action, ctx.var("index"), ctx.vars.get("id"), body.strip(), params))


def doc_update(app: App, ctx: Ctx) -> Result:
    return _single(app, ctx, Op("update", ctx.var("index"), ctx.var("id"), ctx.body, _write_params(ctx)))


def doc_delete(app: App, ctx: Ctx) -> Result:
    name = ctx.var("index")
    if resolve.write_target(app.store.indices(), resolve.date_math(name)) is None:
        raise index_not_found(name)
    return _single(app, ctx, Op("delete", name, ctx.var("id"), None, _write_params(ctx)))


def _lookup(app: App, index: str, doc_id: str) -> tuple[str, tuple[Any, ...] | None]:
    indices = app.store.indices()
    name = resolve.date_math(index)
    if name not in indices:
        targets = resolve.resolve(indices, name)
        if len(targets) != 1:
            raise EsError(400, "illegal_argument_exception",
                          f"alias [{name}] has more than one index associated with it [{targets}], can't execute a single index op")
        name = targets[0]
    meta = indices[name]
    row = app.store.reader().execute(f"SELECT _id, _ver, _seq, _src FROM d{meta.num} WHERE _id = ?", (doc_id,)).fetchone()
    return name, row


def _source_view(ctx: Ctx, src: bytes) -> Any:
    doc = orjson.loads(src)
    inc = ctx.params.get("_source_includes", ctx.params.get("_source", ""))
    exc = ctx.params.get("_source_excludes", "")
    if inc.lower() in ("true", "false", ""):
        inc = ""
    if inc or exc:
        doc = filter_source(doc, [p for p in inc.split(",") if p], [p for p in exc.split(",") if p])
    return doc


def doc_get(app: App, ctx: Ctx) -> Result:
    name, row = _lookup(app, ctx.var("index"), ctx.var("id"))
    if row is None:
        return 404, {"_index": name, "_type": "_doc", "_id": ctx.var("id"), "found": False}
    out: dict[str, Any] = {"_index": name, "_type": "_doc", "_id": row[0], "_version": row[1], "_seq_no": row[2], "_primary_term": 1,
                           "found": True}
    if ctx.params.get("_source", "true").lower() != "false":
        out["_source"] = _source_view(ctx, bytes(row[3]))
    return 200, out


def source_get(app: App, ctx: Ctx) -> Result:
    name, row = _lookup(app, ctx.var("index"), ctx.var("id"))
    if row is None:
        raise EsError(404, "resource_not_found_exception", f"Document not found [{name}]/[_doc]/[{ctx.var('id')}]")
    return 200, _source_view(ctx, bytes(row[3]))


def mget(app: App, ctx: Ctx) -> Result:
    body = ctx.json()
    if not isinstance(body, dict):
        raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no documents to get;")
    specs = body.get("docs") or [{"_id": i} for i in body.get("ids", [])]
    if not specs:
        raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no documents to get;")
    docs = []
    for spec in specs:
        index = spec.get("_index", ctx.vars.get("index"))
        doc_id = str(spec.get("_id"))
        if index is None:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing for doc 0;")
        try:
            name, row = _lookup(app, index, doc_id)
        except EsError as exc:
            docs.append({"_index": index, "_type": "_doc", "_id": doc_id, "error": exc.to_dict()})
            continue
        if row is None:
            docs.append({"_index": name, "_type": "_doc", "_id": doc_id, "found": False})
        else:
            docs.append({"_index": name, "_type": "_doc", "_id": row[0], "_version": row[1], "_seq_no": row[2], "_primary_term": 1,
                         "found": True, "_source": orjson.loads(bytes(row[3]))})
    return 200, {"docs": docs}


def bulk(app: App, ctx: Ctx) -> Result:
    started = time.perf_counter()
    ops = parse_bulk(ctx.body, default_index=ctx.vars.get("index"), params=ctx.params)
    items = app.writer.execute(ops)
    _refresh_after(app, ctx)
    errors = any("error" in next(iter(i.values())) for i in items)
    return 200, {"took": int((time.perf_counter() - started) * 1000), "errors": errors, "items": items}


# --- search -----------------------------------------------------------------------------------------


def search(app: App, ctx: Ctx) -> Result:
    return 200, app.searcher.search(ctx.vars.get("index"), ctx.params, ctx.json())


def count(app: App, ctx: Ctx) -> Result:
    return 200, app.searcher.count(ctx.vars.get("index"), ctx.params, ctx.json())


def msearch(app: App, ctx: Ctx) -> Result:
    raw = ctx.body
    if not raw.strip():
        raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")
    if not raw.endswith(b"\n"):
        raise EsError(400, "illegal_argument_exception", "The msearch request must be terminated by a newline [\\n]")
    lines = [jsonfmt.loads(line) if line.strip() else {} for line in raw.split(b"\n")[:-1]]
    if len(lines) % 2:
        lines.append({})
    return 200, app.searcher.msearch(ctx.vars.get("index"), ctx.params, lines)


_META_CAPS = [("_id", "_id", True, True), ("_ignored", "_ignored", True, False), ("_index", "_index", True, True),
              ("_routing", "_routing", True, False), ("_seq_no", "_seq_no", True, True), ("_source", "_source", False, False),
              ("_type", "_type", True, True), ("_version", "_version", False, False), ("_field_names", "_field_names", True, False),
              ("_feature", "_feature", True, False), ("_doc_count", "_doc_count", False, False),
              ("_data_stream_timestamp", "_data_stream_timestamp", False, False), ("_nested_path", "_nested_path", True, False),
              ("_tier", "_tier", True, True)]


def field_caps(app: App, ctx: Ctx) -> Result:
    body = ctx.json() or {}
    raw = ctx.params.get("fields") or (",".join(body["fields"]) if isinstance(body.get("fields"), list) else body.get("fields"))
    if not raw:
        raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: specified fields can't be null or empty;")
    patterns = [p for p in str(raw).split(",") if p]
    names = _names(app, ctx, strict=False)
    metas = [app.store.indices()[n] for n in names]
    by_field: dict[str, dict[str, dict[str, Any]]] = {}
    for m in metas:
        seen: dict[str, tuple[str, bool, bool]] = {}
        for path, f in m.mapping.fields.items():
            searchable = f.kind not in ("object", "none") and f.indexed
            aggregatable = f.aggregatable
            seen[path] = (f.type, searchable, aggregatable)
        for name, type_, s, a in _META_CAPS:
            seen[name] = (type_, s, a)
        for path, (type_, s, a) in seen.items():
            if any(fnmatchcase(path, p) for p in patterns):
                types = by_field.setdefault(path, {})
                entry = types.get(type_)
                if entry is None:
                    entry = types[type_] = {"type": type_, "searchable": s, "aggregatable": a, "_idx": [], "_ns": [], "_na": []}
                entry["searchable"] = entry["searchable"] and s  # on every index (ES's definition)
                entry["aggregatable"] = entry["aggregatable"] and a
                entry["_idx"].append(m.name)
                if not s:
                    entry["_ns"].append(m.name)
                if not a:
                    entry["_na"].append(m.name)
    fields: dict[str, Any] = {}
    for path in sorted(by_field):
        types = by_field[path]
        out: dict[str, Any] = {}
        for type_, e in types.items():
            item = {"type": e["type"], "searchable": bool(e["searchable"]), "aggregatable": bool(e["aggregatable"])}
            if len(types) > 1 or (ctx.flag("include_unmapped") and len(e["_idx"]) < len(metas)):
                item["indices"] = e["_idx"]
            if e["_ns"] and len(e["_ns"]) < len(e["_idx"]):
                item["non_searchable_indices"] = e["_ns"]
            if e["_na"] and len(e["_na"]) < len(e["_idx"]):
                item["non_aggregatable_indices"] = e["_na"]
            out[type_] = item
        if ctx.flag("include_unmapped"):
            mapped = {i for e in types.values() for i in e["_idx"]}
            missing = [m.name for m in metas if m.name not in mapped]
            if missing:
                out["unmapped"] = {"type": "unmapped", "searchable": False, "aggregatable": False, "indices": missing}
        fields[path] = out
    return 200, {"indices": names, "fields": fields}


def delete_by_query(app: App, ctx: Ctx) -> Result:
    started = time.perf_counter()
    body = ctx.json() or {}
    query = {"query": body["query"]} if "query" in body else {}
    names = idx.require(app.store, ctx.var("index"))
    deleted = total = batches = 0
    while True:
        res = app.searcher.search(",".join(names), {k: v for k, v in ctx.params.items() if k in ("q", "df", "default_operator")},
                                  {**query, "size": 1000, "_source": False, "sort": ["_doc"], "track_total_hits": True})
        hits = res["hits"]["hits"]
        if batches == 0:
            total = res["hits"]["total"]["value"]
        if not hits:
            break
        batches += 1
        items = app.writer.execute([Op("delete", h["_index"], h["_id"]) for h in hits])
        deleted += sum(1 for i in items if i["delete"].get("result") == "deleted")
        if len(hits) < 1000:
            break
    return 200, {"took": int((time.perf_counter() - started) * 1000), "timed_out": False, "total": total, "deleted": deleted,
                 "batches": batches, "version_conflicts": 0, "noops": 0, "retries": {"bulk": 0, "search": 0}, "throttled_millis": 0,
                 "requests_per_second": -1.0, "throttled_until_millis": 0, "failures": []}


def not_supported(app: App, ctx: Ctx) -> Result:
    raise RawError(400, "", f"{ctx.method} {ctx.path} is not supported by this stand-in")
