"""Index administration: create (with legacy and composable templates, date-math names),
delete, mappings, settings and aliases — each in one transaction, published after the commit."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from fnmatch import fnmatchcase
from typing import Any

from sluice.lab.backends.elasticsearch import resolve
from sluice.lab.backends.elasticsearch.errors import EsError, RawError, index_not_found
from sluice.lab.backends.elasticsearch.mapping import Mapping
from sluice.lab.backends.elasticsearch.store import VERSION_CREATED, IndexMeta, Store, es_uuid

_STATIC = {"index.number_of_shards", "index.uuid", "index.creation_date", "index.version.created", "index.provided_name",
           "index.number_of_routing_shards"}


def flatten(body: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in body.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def index_settings(body: Any) -> dict[str, Any]:
    """Settings as ES stores them: flat, ``index.``-prefixed, values as strings."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise EsError(400, "illegal_argument_exception", "settings must be an object")
    out: dict[str, Any] = {}
    for k, v in flatten(body).items():
        key = k if k.startswith("index.") else f"index.{k}"
        out[key] = [_s(x) for x in v] if isinstance(v, list) else _s(v)
    for key, least in (("index.number_of_shards", 1), ("index.number_of_replicas", 0)):
        if key in out:
            try:
                n = int(out[key])
            except (TypeError, ValueError):
                raise EsError(400, "illegal_argument_exception", f"Failed to parse value [{out[key]}] for setting [{key}]") from None
            if n < least:
                raise EsError(400, "illegal_argument_exception", f"Failed to parse value [{n}] for setting [{key}] must be >= {least}")
    return out


def _s(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    return None if v is None else str(v)


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                nxt = node[p] = {"": nxt}
            node = nxt
        node[parts[-1]] = v
    return out


def _aliases(body: Any) -> dict[str, dict[str, Any]]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise EsError(400, "parse_exception", "Failed to parse aliases: must be an object")
    out: dict[str, dict[str, Any]] = {}
    for name, spec in body.items():
        if spec is not None and not isinstance(spec, dict):
            raise EsError(400, "parse_exception", f"Failed to parse alias [{name}]")
        out[name] = dict(spec or {})
    return out


def _templates_for(store: Store, name: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Settings, mapping bodies (in merge order) and aliases the templates give a new index."""
    settings: dict[str, Any] = {}
    mappings: list[dict[str, Any]] = []
    aliases: dict[str, dict[str, Any]] = {}
    composable = [
        (t.get("priority", 0), n, t) for n, t in store.objects("index_template").items()
        if any(fnmatchcase(name, p) for p in _patterns(t))
    ]
    if composable:
        _, _, best = max(composable, key=lambda x: (x[0], x[1]))
        parts = [store.objects("component_template").get(c, {}).get("template", {}) for c in best.get("composed_of", [])]
        parts.append(best.get("template", {}))
        for part in parts:
            settings.update(index_settings(part.get("settings")))
            if part.get("mappings"):
                mappings.append(part["mappings"])
            aliases.update(_aliases(part.get("aliases")))
        return settings, mappings, aliases
    legacy = sorted(
        ((t.get("order", 0), n, t) for n, t in store.objects("template").items() if any(fnmatchcase(name, p) for p in _patterns(t))),
        key=lambda x: (x[0], x[1]),
    )
    for _, _, t in legacy:
        settings.update(index_settings(t.get("settings")))
        if t.get("mappings"):
            mappings.append(t["mappings"])
        aliases.update(_aliases(t.get("aliases")))
    return settings, mappings, aliases


def _patterns(t: dict[str, Any]) -> list[str]:
    pats = t.get("index_patterns", [])
    return [pats] if isinstance(pats, str) else [str(p) for p in pats]


def build_index(store: Store, db: sqlite3.Connection, provided: str, body: dict[str, Any] | None,
                also: dict[str, IndexMeta] | None = None) -> IndexMeta:
    """Create an index inside the caller's transaction (the bulk path auto-creates this way;
    ``also`` holds indices it created earlier in the same transaction)."""
    name = resolve.date_math(provided)
    resolve.validate_new_name(name)
    indices = also if also is not None else store.indices()
    if name in indices:
        meta = indices[name]
        raise EsError(400, "resource_already_exists_exception", f"index [{name}/{meta.uuid}] already exists",
                      meta={"index_uuid": meta.uuid, "index": name})
    for other in indices.values():
        if name in other.aliases:
            raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], already exists as alias",
                          meta={"index_uuid": "_na_", "index": name})
    body = body or {}
    for key in body:
        if key not in ("settings", "mappings", "aliases"):
            raise EsError(400, "parse_exception", f"unknown key [{key}] for create index")
    t_settings, t_mappings, t_aliases = _templates_for(store, name)
    settings = {
        "index.routing.allocation.include._tier_preference": "data_content",
        "index.number_of_shards": "1",
        "index.number_of_replicas": "1",
        **t_settings,
        **index_settings(body.get("settings")),
    }
    settings["index.provided_name"] = provided
    settings["index.creation_date"] = str(int(time.time() * 1000))
    settings["index.uuid"] = es_uuid()
    settings["index.version.created"] = VERSION_CREATED
    mapping = Mapping()
    for m in [*t_mappings, body.get("mappings") or {}]:
        mapping.merge(m)
    aliases = {**t_aliases, **_aliases(body.get("aliases"))}
    for alias in aliases:
        if alias in indices:
            raise EsError(400, "invalid_alias_name_exception",
                          f"Invalid alias name [{alias}], an index exists with the same name as the alias",
                          meta={"index_uuid": "_na_", "index": alias})
        if aliases[alias].get("is_write_index") is True:
            for other in indices.values():
                if other.aliases.get(alias, {}).get("is_write_index") is True:
                    raise EsError(400, "illegal_state_exception",
                                  f"alias [{alias}] has more than one write index [{other.name},{name}]")
    return store.insert_index(db, name, settings, mapping, aliases)


def create_index(store: Store, provided: str, body: dict[str, Any] | None) -> IndexMeta:
    with store.transaction() as db:
        meta = build_index(store, db, provided, body)
        store.publish([meta])
    return meta


def delete_indices(store: Store, expression: str, *, ignore_unavailable: bool = False, allow_no_indices: bool = True) -> None:
    if expression in ("_all", "*"):
        names = list(store.indices())
    else:
        names = resolve.resolve(store.indices(), expression, ignore_unavailable=ignore_unavailable,
                                allow_no_indices=allow_no_indices, expand_wildcards="open,closed")
    with store.transaction() as db:
        metas = [store.indices()[n] for n in names if n in store.indices()]
        for meta in metas:
            store.drop_index(db, meta)
        store.publish([], removed=tuple(names))


def put_mapping(store: Store, names: list[str], body: Any) -> None:
    if not isinstance(body, dict):
        raise EsError(400, "mapper_parsing_exception", "Failed to parse mapping: mapping must be an object")
    updated: list[IndexMeta] = []
    with store.transaction() as db:
        for name in names:
            meta = store.indices()[name]
            mapping = meta.mapping.copy()
            mapping.merge(body)
            if mapping.to_json() == meta.mapping.to_json():
                continue
            fresh = replace(meta, mapping=mapping)
            fresh = replace(fresh, columns=store.add_columns(db, fresh, mapping))
            store.save_meta(db, fresh, mapping_changed=True)
            updated.append(fresh)
        store.publish(updated)


def put_settings(store: Store, names: list[str], body: Any) -> None:
    raw = body.get("settings", body) if isinstance(body, dict) else body
    changes = index_settings(raw)
    static = sorted(k for k in changes if k in _STATIC)
    if static:
        shown = ", ".join(static)
        raise EsError(400, "illegal_argument_exception", f"Can't update non dynamic settings [[{shown}]] for open indices "
                      f"[{', '.join(f'[{n}/{store.indices()[n].uuid}]' for n in names)}]")
    updated: list[IndexMeta] = []
    with store.transaction() as db:
        for name in names:
            meta = store.indices()[name]
            settings = dict(meta.settings)
            for k, v in changes.items():
                if v is None:
                    settings.pop(k, None)
                else:
                    settings[k] = v
            fresh = replace(meta, settings=settings)
            fresh.mapping.total_fields_limit = fresh.total_fields_limit
            store.save_settings_aliases(db, fresh)
            updated.append(fresh)
        store.publish(updated)


def update_aliases(store: Store, actions: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    """``(op, index, alias, body)`` with op ``add`` / ``remove`` / ``remove_index``; all or nothing."""
    with store.transaction() as db:
        indices = dict(store.indices())
        touched: dict[str, IndexMeta] = {}
        removed: list[str] = []
        for op, index_expr, alias, body in actions:
            if op == "remove_index":
                for n in resolve.resolve(indices, index_expr):
                    removed.append(n)
                    indices.pop(n)
                continue
            for n in resolve.resolve(indices, index_expr, allow_no_indices=False):
                meta = touched.get(n, indices[n])
                aliases = dict(meta.aliases)
                if op == "add":
                    if alias in indices:
                        raise EsError(400, "invalid_alias_name_exception",
                                      f"Invalid alias name [{alias}], an index exists with the same name as the alias",
                                      meta={"index_uuid": "_na_", "index": alias})
                    aliases[alias] = {k: v for k, v in body.items() if k not in ("index", "indices", "alias", "aliases")}
                else:
                    matched = [a for a in aliases if fnmatchcase(a, alias)]
                    if not matched:
                        raise RawError(404, "aliases_not_found_exception", f"aliases [{alias}] missing")
                    for a in matched:
                        aliases.pop(a)
                touched[n] = replace(meta, aliases=aliases)
        for n in removed:
            store.drop_index(db, store.indices()[n])
        kept = [m for m in touched.values() if m.name not in removed]
        for meta in kept:
            store.save_settings_aliases(db, meta)
        store.publish(kept, removed=tuple(removed))


def get_aliases(store: Store, index_expr: str | None, alias_expr: str | None) -> dict[str, Any]:
    names = resolve.resolve(store.indices(), index_expr, ignore_unavailable=False, expand_wildcards="all")
    patterns = [p for p in (alias_expr or "").split(",") if p and p not in ("_all", "*")]
    out: dict[str, Any] = {}
    found: set[str] = set()
    for n in names:
        meta = store.indices()[n]
        chosen = {a: b for a, b in sorted(meta.aliases.items()) if not patterns or any(fnmatchcase(a, p) for p in patterns)}
        found.update(chosen)
        if chosen or not patterns:
            out[n] = {"aliases": chosen}
    if patterns:
        missing = [p for p in patterns if "*" not in p and p not in found]
        if missing:
            raise RawError(404, "aliases_not_found_exception", f"alias [{','.join(missing)}] missing")
    return out


def settings_view(meta: IndexMeta) -> dict[str, Any]:
    return {"index": nest({k[len("index."):]: v for k, v in sorted(meta.settings.items())})}


def index_view(meta: IndexMeta) -> dict[str, Any]:
    return {"aliases": meta.aliases, "mappings": meta.mapping.to_json(), "settings": settings_view(meta)}


def require(store: Store, expression: str | None, **kw: Any) -> list[str]:
    names = resolve.resolve(store.indices(), expression, **kw)
    if not names and expression and "*" not in expression and expression != "_all":
        raise index_not_found(expression)
    return names
