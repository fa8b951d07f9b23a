"""An index pattern's fields and the indices it matches, from Elasticsearch's own APIs.

- ``fields_for_wildcard``: ``_field_caps?fields=*`` read as Kibana 7.14's
  ``readFieldCapsResponse`` does (Kibana types from ES types, ``conflict`` across indices,
  ``readFromDocValues``, multi-field and nested ``subType``s, object/nested parents dropped),
  then the ``metaFields`` (``_source``, ``_id``, ``_type``, ``_index``, ``_score``) with their
  overrides, sorted by name.
- ``resolve_index``: what the creation wizard lists under the name box.

Deliberate difference: ``resolve_index`` reads ``_cat/indices`` and ``_cat/aliases`` (which every
Elasticsearch 7 has) instead of ``_resolve/index``; it lists no data streams, and counts an index
or alias as hidden when its name starts with a dot (as the system indices' do).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from sluice.lab.backends.kibana.es import Client, ESUnavailable

META_FIELDS = ["_source", "_id", "_type", "_index", "_score"]
_KBN_TYPES = {
    "string": ("text", "keyword", "_type", "_id", "_index", "string", "version", "constant_keyword", "wildcard", "match_only_text"),
    "number": ("float", "half_float", "scaled_float", "double", "integer", "long", "unsigned_long", "short", "byte", "token_count"),
    "date": ("date", "date_nanos"),
    "ip": ("ip",),
    "boolean": ("boolean",),
    "object": ("object",),
    "nested": ("nested",),
    "geo_point": ("geo_point",),
    "geo_shape": ("geo_shape", "shape"),
    "attachment": ("attachment",),
    "murmur3": ("murmur3",),
    "_source": ("_source",),
    "histogram": ("histogram",),
}
ES_TO_KBN = {es: kbn for kbn, ess in _KBN_TYPES.items() for es in ess}
OVERRIDES: dict[str, dict[str, Any]] = {
    "_source": {"type": "_source"},
    "_index": {"type": "string"},
    "_type": {"type": "string"},
    "_id": {"type": "string"},
    "_timestamp": {"type": "date", "searchable": True, "aggregatable": True},
    "_score": {"type": "number", "searchable": False, "aggregatable": False},
}


class IndexPatternError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def kbn_type(es_type: str) -> str:
    return ES_TO_KBN.get(es_type, "unknown")


def read_doc_values(aggregatable: bool, es_type: str) -> bool:
    return aggregatable and es_type not in ("text", "geo_shape") and not es_type.startswith("_")


def read_field_caps(caps: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    by_name: dict[str, dict[str, Any]] = {}
    for name, by_type in caps.items():
        types = list(by_type)
        searchable = any(bool(c.get("searchable")) or bool(c.get("non_searchable_indices")) for c in by_type.values())
        aggregatable = any(bool(c.get("aggregatable")) or bool(c.get("non_aggregatable_indices")) for c in by_type.values())
        if len({kbn_type(t) for t in types}) > 1:
            by_name[name] = {"name": name, "type": "conflict", "esTypes": types, "searchable": searchable, "aggregatable": aggregatable,
                             "readFromDocValues": False,
                             "conflictDescriptions": {t: by_type[t].get("indices") for t in types}}
            continue
        by_name[name] = {"name": name, "type": kbn_type(types[0]), "esTypes": types, "searchable": searchable,
                         "aggregatable": aggregatable, "readFromDocValues": read_doc_values(aggregatable, types[0])}
    for name, field in by_name.items():
        if "." not in name:
            continue
        parts = name.split(".")[:-1]
        parents = [by_name.get(".".join(parts[: i + 1])) for i in range(len(parts))][::-1]
        sub: dict[str, Any] = {}
        first = parents[0]
        if first is not None and first["type"] not in ("object", "nested"):
            sub["multi"] = {"parent": first["name"]}
        nested = next((p for p in parents if p is not None and p["type"] == "nested"), None)
        if nested is not None:
            sub["nested"] = {"path": nested["name"]}
        if sub:
            field["subType"] = sub
    return [f for f in by_name.values() if f["type"] not in ("object", "nested")]


def _index_path(pattern: str) -> str:
    return urllib.parse.quote(pattern, safe="*,-_.+")


def fields_for_wildcard(
    es: Client, pattern: str, *, meta_fields: list[str] | None = None, allow_no_index: bool = False
) -> list[dict[str, Any]]:
    meta = META_FIELDS if meta_fields is None else meta_fields
    try:
        reply = es.request("GET", f"/{_index_path(pattern)}/_field_caps",
                           params={"fields": "*", "ignore_unavailable": True, "allow_no_indices": False})
    except ESUnavailable as exc:
        raise IndexPatternError(503, str(exc)) from None
    caps: dict[str, Any] = {}
    if reply.status == 404 or (reply.ok and not (reply.body or {}).get("indices", ["?"])):
        if not allow_no_index:
            raise IndexPatternError(404, f'No indices match pattern "{pattern}"', "no_matching_indices")
    elif not reply.ok:
        err = (reply.body or {}).get("error") if isinstance(reply.body, dict) else None
        reason = err.get("reason") if isinstance(err, dict) else str(reply.body)
        raise IndexPatternError(reply.status, str(reason))
    else:
        caps = reply.body.get("fields") or {}
    from_caps = {f["name"]: f for f in read_field_caps(caps)}
    names: list[str] = []
    for name in [n for n in from_caps if not n.startswith("_")] + list(meta):
        if name not in names:
            names.append(name)
    out = []
    for name in names:
        field = dict(from_caps.get(name) or {"name": name, "type": "string", "searchable": False, "aggregatable": False,
                                              "readFromDocValues": False})
        field.update(OVERRIDES.get(name, {}))
        out.append(field)
    return sorted(out, key=lambda f: str(f["name"]))


def resolve_index(es: Client, query: str, *, expand_wildcards: str = "open") -> dict[str, Any]:
    """``{"indices": [{"name", "attributes"}], "aliases": [{"name", "indices"}], "data_streams": []}``."""
    path = _index_path(query or "*")
    try:
        ind = es.request("GET", f"/_cat/indices/{path}",
                         params={"format": "json", "h": "index,status", "expand_wildcards": expand_wildcards})
        ali = es.request("GET", f"/_cat/aliases/{path}", params={"format": "json", "h": "alias,index"})
    except ESUnavailable as exc:
        raise IndexPatternError(503, str(exc)) from None
    indices = []
    if ind.ok and isinstance(ind.body, list):
        for row in ind.body:
            name = str(row.get("index", ""))
            hidden = name.startswith(".")
            if hidden and expand_wildcards != "all":
                continue
            attributes = [str(row.get("status", "open"))] + (["hidden"] if hidden else [])
            indices.append({"name": name, "attributes": attributes})
    aliases: dict[str, list[str]] = {}
    if ali.ok and isinstance(ali.body, list):
        for row in ali.body:
            name = str(row.get("alias", ""))
            if name.startswith(".") and expand_wildcards != "all":
                continue
            aliases.setdefault(name, []).append(str(row.get("index", "")))
    return {
        "indices": sorted(indices, key=lambda i: i["name"]),
        "aliases": [{"name": k, "indices": sorted(v)} for k, v in sorted(aliases.items())],
        "data_streams": [],
    }
