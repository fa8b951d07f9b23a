"""Saved objects in the ``.kibana`` index, as Kibana 7.14's repository keeps them: document id
``<type>:<id>``, source ``{"<type>": attributes, "type", "references", "migrationVersion",
"coreMigrationVersion", "updated_at"}`` (the default space: no ``namespace`` field), writes with
``refresh=wait_for``, ``version`` = base64 of ``[_seq_no, _primary_term]`` (and optimistic
concurrency through it on update).

Deliberate difference: the types this stand-in knows are ``index-pattern`` and ``config``
(advanced settings, one object per Kibana version: ``config:7.14.2``, created on first read with
``buildNum``); others (dashboards, visualizations, saved searches) are "Unsupported saved object
type", as for a type no plugin registered. Only the default space exists.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

from sluice.lab.backends.kibana import BUILD_NUMBER, VERSION
from sluice.lab.backends.kibana.es import Client, ESUnavailable

TYPES = {"index-pattern": "7.11.0", "config": "7.13.0"}
"""type → the last migration Kibana 7.14 has for it (``migrationVersion``)."""
_ROOT_FIELDS = ["namespace", "namespaces", "type", "references", "migrationVersion", "coreMigrationVersion", "updated_at", "originId"]


class SavedObjectsError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
    t = dt.datetime.now(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def encode_version(seq_no: int, primary_term: int) -> str:
    return base64.b64encode(json.dumps([seq_no, primary_term], separators=(",", ":")).encode()).decode()


def decode_version(version: str) -> tuple[int, int]:
    try:
        seq_no, term = json.loads(base64.b64decode(version, validate=True))
        return int(seq_no), int(term)
    except (ValueError, TypeError):
        raise SavedObjectsError(400, f"Invalid version [{version}]") from None


class Repository:
    def __init__(self, es: Client, index: str = ".kibana") -> None:
        self.es = es
        self.index = index

    def _check(self, type_: str) -> None:
        if type_ not in TYPES:
            raise SavedObjectsError(400, f"Unsupported saved object type: '{type_}': Bad Request")

    def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        try:
            return self.es.request(method, path, body, params=params or None)
        except ESUnavailable as exc:
            raise SavedObjectsError(503, str(exc)) from None

    @staticmethod
    def _raw_id(type_: str, id_: str) -> str:
        return f"{type_}:{id_}"

    def _from_hit(self, hit: dict[str, Any], type_: str, id_: str) -> dict[str, Any]:
        src = hit.get("_source") or {}
        obj: dict[str, Any] = {"id": id_, "type": type_, "namespaces": ["default"]}
        if src.get("originId"):
            obj["originId"] = src["originId"]
        if src.get("updated_at"):
            obj["updated_at"] = src["updated_at"]
        if "_seq_no" in hit:
            obj["version"] = encode_version(int(hit["_seq_no"]), int(hit.get("_primary_term", 1)))
        obj["attributes"] = src.get(type_) or {}
        obj["references"] = src.get("references") or []
        obj["migrationVersion"] = src.get("migrationVersion") or {}
        obj["coreMigrationVersion"] = src.get("coreMigrationVersion", VERSION)
        return obj

    def create(
        self,
        type_: str,
        attributes: dict[str, Any],
        *,
        id_: str | None = None,
        overwrite: bool = False,
        references: list[Any] | None = None,
    ) -> dict[str, Any]:
        self._check(type_)
        id_ = id_ or str(uuid.uuid1())
        updated = _now()
        source = {type_: attributes, "type": type_, "references": references or [], "migrationVersion": {type_: TYPES[type_]},
                  "coreMigrationVersion": VERSION, "updated_at": updated}
        verb = "_doc" if overwrite else "_create"
        reply = self._call("PUT", f"/{self.index}/{verb}/{self._raw_id(type_, id_)}", source, refresh="wait_for")
        if reply.status == 409:
            raise SavedObjectsError(409, f"Saved object [{type_}/{id_}] conflict")
        if not reply.ok:
            raise SavedObjectsError(reply.status if reply.status >= 400 else 500, _reason(reply.body))
        hit = {"_source": source, "_seq_no": reply.body.get("_seq_no", 0), "_primary_term": reply.body.get("_primary_term", 1)}
        return self._from_hit(hit, type_, id_)

    def get(self, type_: str, id_: str) -> dict[str, Any]:
        self._check(type_)
        reply = self._call("GET", f"/{self.index}/_doc/{self._raw_id(type_, id_)}")
        body = reply.body if isinstance(reply.body, dict) else {}
        src = body.get("_source") or {}
        if reply.status == 404 or not body.get("found") or src.get("type") != type_ or src.get("namespace"):
            if reply.status not in (200, 404):
                raise SavedObjectsError(reply.status, _reason(reply.body))
            raise SavedObjectsError(404, f"Saved object [{type_}/{id_}] not found")
        return self._from_hit(body, type_, id_)

    def update(self, type_: str, id_: str, attributes: dict[str, Any], *, references: list[Any] | None = None,
               version: str | None = None) -> dict[str, Any]:
        self._check(type_)
        updated = _now()
        doc: dict[str, Any] = {type_: attributes, "updated_at": updated}
        if references is not None:
            doc["references"] = references
        params: dict[str, Any] = {"refresh": "wait_for"}
        if version:
            params["if_seq_no"], params["if_primary_term"] = decode_version(version)
        reply = self._call("POST", f"/{self.index}/_update/{self._raw_id(type_, id_)}", {"doc": doc}, **params)
        if reply.status == 404:
            raise SavedObjectsError(404, f"Saved object [{type_}/{id_}] not found")
        if reply.status == 409:
            raise SavedObjectsError(409, f"Saved object [{type_}/{id_}] conflict")
        if not reply.ok:
            raise SavedObjectsError(reply.status, _reason(reply.body))
        obj: dict[str, Any] = {"id": id_, "type": type_, "updated_at": updated,
                               "version": encode_version(int(reply.body.get("_seq_no", 0)), int(reply.body.get("_primary_term", 1))),
                               "references": references or [], "namespaces": ["default"], "attributes": attributes}
        return obj

    def delete(self, type_: str, id_: str) -> None:
        self._check(type_)
        reply = self._call("DELETE", f"/{self.index}/_doc/{self._raw_id(type_, id_)}", refresh="wait_for")
        if reply.status == 404:
            raise SavedObjectsError(404, f"Saved object [{type_}/{id_}] not found")
        if not reply.ok:
            raise SavedObjectsError(reply.status, _reason(reply.body))

    def find(
        self,
        types: list[str],
        *,
        page: int = 1,
        per_page: int = 20,
        search: str | None = None,
        search_fields: list[str] | None = None,
        fields: list[str] | None = None,
        sort_field: str | None = None,
        sort_order: str = "asc",
    ) -> dict[str, Any]:
        known = [t for t in types if t in TYPES]
        result: dict[str, Any] = {"page": page, "per_page": per_page, "total": 0, "saved_objects": []}
        if not known:
            return result
        should = [{"bool": {"must": [{"term": {"type": t}}], "must_not": [{"exists": {"field": "namespace"}}]}} for t in known]
        query: dict[str, Any] = {"bool": {"filter": [{"bool": {"should": should, "minimum_should_match": 1}}]}}
        if search:
            names = [f"{t}.{f}" for t in known for f in (search_fields or ["*"])]
            query["bool"]["must"] = [{"simple_query_string": {"query": search, "fields": names, "default_operator": "OR"}}]
        body: dict[str, Any] = {"seq_no_primary_term": True, "from": (page - 1) * per_page, "size": per_page, "query": query}
        if sort_field:
            key = sort_field if sort_field in ("type", "updated_at") else f"{known[0]}.{sort_field}"
            body["sort"] = [{key: {"order": sort_order, "unmapped_type": "keyword"}}]
        if fields:
            body["_source"] = [f"{t}.{f}" for t in known for f in fields] + _ROOT_FIELDS
        reply = self._call("POST", f"/{self.index}/_search", body, rest_total_hits_as_int=True, ignore_unavailable=True)
        if reply.status == 404:
            return result
        if not reply.ok:
            raise SavedObjectsError(reply.status, _reason(reply.body))
        hits = reply.body.get("hits") or {}
        result["total"] = hits.get("total", 0)
        for hit in hits.get("hits") or []:
            type_, _, id_ = str(hit.get("_id", "")).partition(":")
            obj = self._from_hit(hit, type_, id_)
            obj["score"] = hit.get("_score") or 0
            result["saved_objects"].append(obj)
        return result

    # --- advanced settings (the config object) ----------------------------------------------

    def ui_settings(self) -> dict[str, Any]:
        """The ``config:<version>`` attributes, created with ``buildNum`` on first read."""
        try:
            return dict(self.get("config", VERSION)["attributes"])
        except SavedObjectsError as exc:
            if exc.status != 404:
                raise
        try:
            return dict(self.create("config", {"buildNum": BUILD_NUMBER}, id_=VERSION)["attributes"])
        except SavedObjectsError as exc:
            if exc.status != 409:  # another request created it first
                raise
            return dict(self.get("config", VERSION)["attributes"])

    def set_ui_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        current = self.ui_settings()
        current.update(changes)
        self.update("config", VERSION, changes)
        return current


def _reason(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("reason") or body["error"].get("type") or "error")
    return str(body)[:200]
