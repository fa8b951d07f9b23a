"""Document writes (``index``, ``create``, ``delete``, ``update``) as ES's bulk executes them,
item by item and in order, all in one SQLite transaction committed before the answer (an
acknowledged document is on disk; a failure of the store itself rolls the whole request back
and answers 500, which Filebeat retries).

The hot path — ``create``/``index`` without an ``_id``, Filebeat's only operation — never reads:
the id is new, so rows are queued and inserted with one ``executemany`` per table. Any other
operation first flushes the queue, so later items always see earlier ones.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from sluice.lab.backends.elasticsearch import documents, resolve
from sluice.lab.backends.elasticsearch.documents import MappingBox
from sluice.lab.backends.elasticsearch.errors import EsError, index_not_found
from sluice.lab.backends.elasticsearch.indices import build_index
from sluice.lab.backends.elasticsearch.mapping import Mapping
from sluice.lab.backends.elasticsearch.store import IndexMeta, Store


@dataclass(slots=True)
class Op:
    action: str
    """``index``, ``create``, ``delete`` or ``update``."""
    index: str | None
    id: str | None
    source: bytes | None = None
    params: dict[str, Any] = field(default_factory=dict)
    error: EsError | None = None
    """An item that failed before it reached the store (its source did not parse)."""
    prepared: tuple[Mapping, documents.Row, bytes] | None = None
    """The document parsed ahead, outside the write lock, under that (published) mapping."""


class _Defer(Exception):
    """The document needs a mapping change: parse it under the write lock instead."""


class _ReadOnlyBox(MappingBox):
    __slots__ = ()

    def writable(self) -> Mapping:
        raise _Defer


@dataclass(slots=True)
class _Work:
    """One index's state during a request."""

    meta: IndexMeta
    box: MappingBox
    columns: frozenset[int]
    docs: int
    size: int
    seq: int
    next_rowid: int
    checked: int = 0
    """The mapping's ``next_num`` when the columns were last brought up to date."""
    pending: list[tuple[int, str, int, bytes, dict[int, Any], documents.Row]] = field(default_factory=list)
    _shards: dict[str, int] | None = None

    def shards(self) -> dict[str, int]:
        return {"total": 1 + self.meta.replicas, "successful": 1, "failed": 0}

    @property
    def shared_shards(self) -> dict[str, int]:
        """One ``_shards`` object for all of a request's items on this index (answers only read it)."""
        if self._shards is None:
            self._shards = self.shards()
        return self._shards


def prepare(store: Store, ops: list[Op]) -> None:
    """Parse ``index``/``create`` sources against the published mappings without the write
    lock, so one request's Python work overlaps another's SQLite work (which releases the
    GIL). A document that needs a mapping change, or whose mapping has changed by the time the
    lock is held, is parsed again under the lock."""
    indices = store.indices()
    boxes: dict[str, _ReadOnlyBox] = {}  # one per index: a read-only box never changes state
    for op in ops:
        if op.error is not None or op.action not in ("index", "create") or not op.source or not op.index:
            continue
        box = boxes.get(op.index)
        if box is None:
            meta = indices.get(op.index)
            if meta is None:
                continue
            box = boxes[op.index] = _ReadOnlyBox(meta.mapping, meta.total_fields_limit)
        try:
            src = orjson.loads(op.source)
            if not isinstance(src, dict):
                continue
            row = documents.parse(box, src, op.id or "_")
        except Exception:  # noqa: BLE001 - any trouble: the locked path reports it properly
            continue
        op.prepared = (box.published, row, op.source.strip())


class Writer:
    def __init__(self, store: Store, *, auto_create: str = "true") -> None:
        self.store = store
        self.auto_create = auto_create
        self._python = threading.Lock()

    def execute(self, ops: list[Op]) -> list[dict[str, Any]]:
        # One request's Python at a time: two GIL-bound threads stepping SQLite row by row
        # hand the GIL back and forth at every row (each wait up to the 5 ms switch interval).
        # The refresher's FTS5 work needs no GIL, so it overlaps this request's parsing.
        with self._python:
            return self._execute(ops)

    def _execute(self, ops: list[Op]) -> list[dict[str, Any]]:
        prepare(self.store, ops)
        items: list[dict[str, Any]] = []
        works: dict[str, _Work] = {}
        with self.store.transaction() as db:
            for op in ops:
                try:
                    if op.error is not None:
                        raise op.error
                    w = self._work(db, works, op)
                    item = self._apply(db, w, op)
                except EsError as exc:
                    item = self._error_item(op, works, exc)
                items.append({op.action: item})
            metas = []
            for w in works.values():
                self._flush(db, w)
                fresh = replace(w.meta, mapping=w.box.mapping, docs=w.docs, bytes=w.size, seq=w.seq,
                                next_rowid=w.next_rowid, columns=w.columns)
                self.store.save_meta(db, fresh, mapping_changed=w.box.changed)
                metas.append(fresh)
            self.store.publish(metas)
        return items

    # --- items ----------------------------------------------------------------------------------

    def _target(self, op: Op) -> str:
        if not op.index:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
        if op.index[0] != "<":
            return op.index  # not date math (which is <…>): skip reading the clock
        return resolve.date_math(op.index)

    def _work(self, db: sqlite3.Connection, works: dict[str, _Work], op: Op) -> _Work:
        name = self._target(op)
        for w in works.values():
            if w.meta.name == name:
                return w
        # Indices created by this request are not published before the commit: look in both.
        known: dict[str, IndexMeta] = {**self.store.indices(), **{n: w.meta for n, w in works.items()}}
        concrete = resolve.write_target(known, name)
        if concrete is None:
            if op.params.get("require_alias"):
                raise EsError(404, "index_not_found_exception", f"[{name}] is not an alias",
                              meta={"index_uuid": "_na_", "index": name})
            if op.action in ("delete", "update"):
                raise index_not_found(name)
            if not resolve.auto_create_allowed(self.auto_create, name):
                if self.auto_create.strip().lower() == "false":
                    raise index_not_found(name)
                raise EsError(404, "index_not_found_exception",
                              f"no such index [{name}] and [action.auto_create_index] ([{self.auto_create}]) doesn't match",
                              meta={"index_uuid": "_na_", "index": name})
            meta = build_index(self.store, db, name, None, also=known)
        elif concrete in works:
            return works[concrete]
        else:
            meta = known[concrete]
        w = _Work(meta, MappingBox(meta.mapping, meta.total_fields_limit), meta.columns, meta.docs, meta.bytes, meta.seq,
                  meta.next_rowid, meta.mapping.next_num)
        works[meta.name] = w
        return w

    def _error_item(self, op: Op, works: dict[str, _Work], exc: EsError) -> dict[str, Any]:
        name = op.index or ""
        for w in works.values():
            if name in (w.meta.name, *w.meta.aliases):
                name = w.meta.name
        return {"_index": name, "_type": "_doc", "_id": op.id, "status": exc.status, "error": exc.to_dict()}

    def _apply(self, db: sqlite3.Connection, w: _Work, op: Op) -> dict[str, Any]:
        if op.action in ("index", "create"):
            return self._index(db, w, op)
        if op.action == "delete":
            return self._delete(db, w, op)
        return self._update(db, w, op)

    def _parse_source(self, db: sqlite3.Connection, w: _Work, op: Op, doc_id: str) -> tuple[bytes, documents.Row]:
        if op.prepared is not None and op.prepared[0] is w.box.mapping:
            return op.prepared[2], op.prepared[1]
        raw = op.source or b""
        try:
            src = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EsError(400, "mapper_parsing_exception", "failed to parse",
                          caused_by=EsError(400, "json_parse_exception", f"{exc.msg} at line {exc.lineno} column {exc.colno}")) from None
        if not isinstance(src, dict):
            raise EsError(400, "mapper_parsing_exception", "failed to parse",
                          caused_by=EsError(400, "not_x_content_exception",
                                            "Compressor detection can only be called on some xcontent bytes or compressed xcontent "
                                            "bytes"))
        row = documents.parse(w.box, src, doc_id)
        self._columns(db, w)
        return raw.strip(), row

    def _columns(self, db: sqlite3.Connection, w: _Work) -> None:
        mapping = w.box.mapping
        if mapping.next_num == w.checked:
            return
        w.checked = mapping.next_num
        self._flush(db, w)
        w.columns = self.store.add_columns(db, replace(w.meta, columns=w.columns), mapping)

    def _index(self, db: sqlite3.Connection, w: _Work, op: Op) -> dict[str, Any]:
        if op.id is None:
            # A new id: nothing to look up, the row is queued for the next executemany.
            doc_id = op.id = self.store.new_id()
            raw, row = self._parse_source(db, w, op, doc_id)
            w.seq += 1
            rowid = w.next_rowid
            w.next_rowid += 1
            w.pending.append((rowid, doc_id, w.seq, raw, row.values, row))
            w.docs += 1
            w.size += len(raw)
            return self._ok(w, doc_id, 1, "created", 201)
        doc_id = op.id
        if not doc_id or len(doc_id.encode()) > 512:
            raise EsError(400, "illegal_argument_exception",
                          "if _id is specified it must not be empty" if not doc_id else
                          f"id [{doc_id}] is too long, must be no longer than 512 bytes but was: {len(doc_id.encode())}")
        create = op.action == "create" or op.params.get("op_type") == "create"
        raw, row = self._parse_source(db, w, op, doc_id)
        self._flush(db, w)
        old = self._lookup(db, w, doc_id)
        if old is not None:
            rowid, ver, seq, old_src = old
            if create:
                raise self._conflict(w, doc_id, f"[{doc_id}]: version conflict, document already exists (current version [{ver}])")
            self._check_seq(w, op, doc_id, seq, ver)
            self._replace(db, w, rowid, old_src, doc_id, ver + 1, raw, row)
            return self._ok(w, doc_id, ver + 1, "updated", 200)
        self._check_seq(w, op, doc_id, None, None)
        w.seq += 1
        rowid = w.next_rowid
        w.next_rowid += 1
        self._write_row(db, w, rowid, doc_id, 1, w.seq, raw, row)
        w.docs += 1
        w.size += len(raw)
        return self._ok(w, doc_id, 1, "created", 201)

    def _delete(self, db: sqlite3.Connection, w: _Work, op: Op) -> dict[str, Any]:
        doc_id = op.id or ""
        self._flush(db, w)
        old = self._lookup(db, w, doc_id)
        if old is None:
            self._check_seq(w, op, doc_id, None, None)
            w.seq += 1
            return self._ok(w, doc_id, 1, "not_found", 404)
        rowid, ver, seq, old_src = old
        self._check_seq(w, op, doc_id, seq, ver)
        self.store.bury(db, w.meta, rowid)
        db.execute(f"DELETE FROM d{w.meta.num} WHERE rowid = ?", (rowid,))
        w.seq += 1
        w.docs -= 1
        w.size -= len(old_src)
        return self._ok(w, doc_id, ver + 1, "deleted", 200)

    def _update(self, db: sqlite3.Connection, w: _Work, op: Op) -> dict[str, Any]:
        doc_id = op.id or ""
        try:
            body = orjson.loads(op.source or b"")
        except orjson.JSONDecodeError as exc:
            raise EsError(400, "x_content_parse_exception", f"[1:1] Failed to parse update request: {exc.msg}") from None
        if not isinstance(body, dict):
            raise EsError(400, "x_content_parse_exception", "[1:1] update request must be an object")
        if "script" in body:
            raise EsError(400, "illegal_argument_exception", "script updates are not supported by this stand-in")
        unknown = [k for k in body if k not in ("doc", "upsert", "doc_as_upsert", "detect_noop", "scripted_upsert", "_source")]
        if unknown:
            raise EsError(400, "x_content_parse_exception", f"[1:2] [UpdateRequest] unknown field [{unknown[0]}]")
        doc = body.get("doc")
        if not isinstance(doc, dict):
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: script or doc is missing;")
        self._flush(db, w)
        old = self._lookup(db, w, doc_id)
        if old is None:
            upsert = doc if body.get("doc_as_upsert") else body.get("upsert")
            if not isinstance(upsert, dict):
                raise EsError(404, "document_missing_exception", f"[_doc][{doc_id}]: document missing",
                              meta={"index_uuid": w.meta.uuid, "shard": "0", "index": w.meta.name})
            op.source = orjson.dumps(upsert)
            return self._index(db, w, Op("index", w.meta.name, doc_id, op.source, op.params))
        rowid, ver, seq, old_src = old
        self._check_seq(w, op, doc_id, seq, ver)
        current = orjson.loads(old_src)
        merged = _merge(current, doc)
        if body.get("detect_noop", True) and merged == current:
            return {"_index": w.meta.name, "_type": "_doc", "_id": doc_id, "_version": ver, "result": "noop",
                    "_shards": {"total": 0, "successful": 0, "failed": 0}, "_seq_no": seq, "_primary_term": 1, "status": 200}
        op.source = orjson.dumps(merged)
        raw, row = self._parse_source(db, w, op, doc_id)
        self._replace(db, w, rowid, old_src, doc_id, ver + 1, raw, row)
        return self._ok(w, doc_id, ver + 1, "updated", 200)

    # --- helpers --------------------------------------------------------------------------------

    def _ok(self, w: _Work, doc_id: str, version: int, result: str, status: int) -> dict[str, Any]:
        return {"_index": w.meta.name, "_type": "_doc", "_id": doc_id, "_version": version, "result": result,
                "_shards": w.shared_shards, "_seq_no": w.seq, "_primary_term": 1, "status": status}

    def _conflict(self, w: _Work, doc_id: str, reason: str) -> EsError:
        return EsError(409, "version_conflict_engine_exception", reason,
                       meta={"index_uuid": w.meta.uuid, "shard": "0", "index": w.meta.name})

    def _check_seq(self, w: _Work, op: Op, doc_id: str, seq: int | None, ver: int | None) -> None:
        want_seq, want_term = op.params.get("if_seq_no"), op.params.get("if_primary_term")
        if want_seq is not None or want_term is not None:
            if seq is None:
                raise self._conflict(w, doc_id, f"[{doc_id}]: version conflict, required seqNo [{want_seq}], primary term "
                                     f"[{want_term}] but no document was found")
            if int(want_seq if want_seq is not None else -2) != seq or int(want_term if want_term is not None else 1) != 1:
                raise self._conflict(w, doc_id, f"[{doc_id}]: version conflict, required seqNo [{want_seq}], primary term "
                                     f"[{want_term}]. current document has seqNo [{seq}] and primary term [1]")
        if op.params.get("version") is not None and op.params.get("version_type") in ("external", "external_gt"):
            want = int(op.params["version"])
            if ver is not None and want <= ver:
                raise self._conflict(w, doc_id, f"[{doc_id}]: version conflict, current version [{ver}] is higher or equal "
                                     f"to the one provided [{want}]")

    def _lookup(self, db: sqlite3.Connection, w: _Work, doc_id: str) -> tuple[int, int, int, bytes] | None:
        row = db.execute(f"SELECT rowid, _ver, _seq, _src FROM d{w.meta.num} WHERE _id = ?", (doc_id,)).fetchone()
        return None if row is None else (row[0], row[1], row[2], bytes(row[3]))

    def _replace(self, db: sqlite3.Connection, w: _Work, rowid: int, old_src: bytes, doc_id: str, ver: int, raw: bytes,
                 row: documents.Row) -> None:
        """A new version of a document is a new row (a new rowid, not searchable until the next
        refresh, as a new document in ES)."""
        self.store.bury(db, w.meta, rowid)
        db.execute(f"DELETE FROM d{w.meta.num} WHERE rowid = ?", (rowid,))
        w.seq += 1
        new = w.next_rowid
        w.next_rowid += 1
        self._write_row(db, w, new, doc_id, ver, w.seq, raw, row)
        w.size += len(raw) - len(old_src)

    def _write_row(self, db: sqlite3.Connection, w: _Work, rowid: int, doc_id: str, ver: int, seq: int, raw: bytes,
                   row: documents.Row) -> None:
        cols = sorted(w.columns)
        db.execute(_insert_sql(w.meta.num, cols), (rowid, doc_id, ver, seq, raw, *_fts(row), *(row.values.get(c) for c in cols)))

    def _flush(self, db: sqlite3.Connection, w: _Work) -> None:
        if not w.pending:
            return
        cols = sorted(w.columns)
        db.executemany(_insert_sql(w.meta.num, cols),
                       [(r, i, 1, s, raw, *_fts(row), *map(v.get, cols)) for r, i, s, raw, v, row in w.pending])
        w.pending.clear()


def _fts(row: documents.Row) -> tuple[Any, ...]:
    """``_x, _k, _t`` of a new row (see ``refresh.text_values``)."""
    if row.explicit:
        return (0, row.k, orjson.dumps(row.cols))
    return (row.ncols, row.k, None)


_INSERTS: dict[tuple[int, tuple[int, ...]], str] = {}


def _insert_sql(num: int, cols: list[int]) -> str:
    key = (num, tuple(cols))
    sql = _INSERTS.get(key)
    if sql is None:
        names = ["rowid", "_id", "_ver", "_seq", "_src", "_x", "_k", "_t", *(f"c{c}" for c in cols)]
        sql = f"INSERT INTO d{num}({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        if len(_INSERTS) > 512:
            _INSERTS.clear()
        _INSERTS[key] = sql
    return sql


def _merge(old: Any, new: Any) -> Any:
    """ES's ``XContentHelper.update``: maps merge recursively, anything else is replaced."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out = dict(old)
    for k, v in new.items():
        out[k] = _merge(old[k], v) if k in old and isinstance(old[k], dict) and isinstance(v, dict) else v
    return out
