"""``_search``, ``_count`` and ``_msearch``: per index (ES's shards) compile, plan and run the
query on one WAL snapshot, then merge as ES's coordinating node does (sort keys, then index
name, then insertion order), count hits up to ``track_total_hits``, reduce aggregations and
shape the answer. A field-dependent error on some indices is a shard failure (``_shards.failed``
and ``failures``); on all of them, ``search_phase_execution_exception``."""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import orjson

from sluice.lab.backends.elasticsearch import aggs as aggs_mod
from sluice.lab.backends.elasticsearch import dsl, planner, resolve
from sluice.lab.backends.elasticsearch.compile import Compiler
from sluice.lab.backends.elasticsearch.documents import field_values, filter_source, unmapped_leaves
from sluice.lab.backends.elasticsearch.errors import EsError, ShardFailure, query_shard, shard_failures
from sluice.lab.backends.elasticsearch.request import SearchRequest, SortSpec, check_window, parse_search
from sluice.lab.backends.elasticsearch.store import IndexMeta, Store

LONG_MAX = 9223372036854775807
LONG_MIN = -9223372036854775808
_CONST = re.compile(r"^-?\d+(\.\d+)?$")
_TEXT_SORT = ("Text fields are not optimised for operations that require per-document field data like aggregations and sorting, "
              "so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on "
              "[{f}] in order to load field data by uninverting the inverted index. Note that this can use significant memory.")


@dataclass(slots=True)
class _Sort:
    expr: str
    kind: str
    """``score``, ``doc``, ``long``, ``double``, ``date``, ``keyword``, ``bool`` or ``none`` (unmapped)."""
    spec: SortSpec


class Searcher:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- entry points ---------------------------------------------------------------------------

    def search(self, expression: str | None, params: dict[str, str], body: Any) -> dict[str, Any]:
        started = time.perf_counter()
        req = parse_search(body, params)
        names = self._names(expression, params)
        return self.run(req, names, started)

    def count(self, expression: str | None, params: dict[str, str], body: Any) -> dict[str, Any]:
        if body is not None and (not isinstance(body, dict) or any(k != "query" for k in body)):
            bad = next(iter(body)) if isinstance(body, dict) else "_na_"
            raise EsError(400, "parsing_exception", f"request does not support [{bad}]")
        req = parse_search({"query": body["query"]} if body and "query" in body else None,
                           {k: v for k, v in params.items() if k in ("q", "df", "default_operator", "lenient", "analyze_wildcard")})
        req.size = 0
        req.track_total_hits = True
        names = self._names(expression, params)
        res = self.run(req, names, time.perf_counter())
        return {"count": res["hits"]["total"]["value"], "_shards": res["_shards"]}

    def msearch(self, expression: str | None, params: dict[str, str], lines: list[Any]) -> dict[str, Any]:
        started = time.perf_counter()
        responses: list[dict[str, Any]] = []
        for i in range(0, len(lines) - 1, 2):
            header, body = lines[i], lines[i + 1]
            try:
                if not isinstance(header, dict):
                    raise EsError(400, "illegal_argument_exception", "msearch header must be an object")
                p = dict(params)
                for k, v in header.items():
                    if k not in ("index", "indices"):
                        p[k] = str(v).lower() if isinstance(v, bool) else (",".join(v) if isinstance(v, list) else str(v))
                target = header.get("index", header.get("indices", expression))
                if isinstance(target, list):
                    target = ",".join(target)
                res = self.search(target, p, body)
                res["status"] = 200
                responses.append(res)
            except EsError as exc:
                out = exc.body()
                responses.append(out)
        return {"took": int((time.perf_counter() - started) * 1000), "responses": responses}

    def _names(self, expression: str | None, params: dict[str, str]) -> list[str]:
        return resolve.resolve(
            self.store.indices(),
            expression,
            ignore_unavailable=params.get("ignore_unavailable", "false").lower() in ("", "true"),
            allow_no_indices=params.get("allow_no_indices", "true").lower() in ("", "true"),
            expand_wildcards=params.get("expand_wildcards", "open"),
        )

    # --- execution --------------------------------------------------------------------------------

    def run(self, req: SearchRequest, names: list[str], started: float) -> dict[str, Any]:
        window = check_window(req)
        now = resolve.now_ms()
        failures: list[tuple[str, EsError]] = []
        indices = self.store.indices()
        metas = [indices[n] for n in names if n in indices]
        need_score = req.sorts_by_score or req.track_scores or req.min_score is not None
        qs_cache: dict[int, dsl.Q] = {}
        with self.store.read() as db:
            plans: list[tuple[planner.Plan, list[_Sort], str, dict[str, Any]]] = []
            for meta in metas:
                try:
                    if window is not None:
                        raise window
                    params: dict[str, Any] = {}
                    hwm = self.store.hwm(meta)
                    comp = Compiler(meta, db, params, now, qs_cache, hwm)
                    cond = comp.compile(req.query)
                    post = comp.compile(req.post_filter, False).sql if req.post_filter is not None else ""
                    plan = planner.build(meta, cond, params, db, need_score=need_score, hwm=hwm)
                    sorts = self._sorts(meta, req)
                    plans.append((plan, sorts, post, params))
                except EsError as exc:
                    failures.append((meta.name, exc))
            if metas and len(failures) == len(metas):
                raise ShardFailure(failures, self.store.node_id)
            total, relation = self._total(db, req, plans)
            hits = self._hits(db, req, plans) if req.size > 0 else []
            aggregations = (aggs_mod.run(req.aggs, [p for p, _, _, _ in plans], db, now, req.typed_keys, self.store.node_id)
                            if req.aggs else None)
        return self._answer(req, metas, failures, hits, total, relation, aggregations, started)

    def _sorts(self, meta: IndexMeta, req: SearchRequest) -> list[_Sort]:
        out: list[_Sort] = []
        for spec in req.sort or [SortSpec("_score", "desc")]:
            if spec.field == "_score":
                out.append(_Sort("_s", "score", spec))
            elif spec.field == "_doc":
                out.append(_Sort("d.rowid", "doc", spec))
            elif spec.field == "_id":
                out.append(_Sort("d._id", "keyword", spec))
            elif spec.field == "_index":
                out.append(_Sort(f"'{meta.name}'", "keyword", spec))
            else:
                f = meta.mapping.get(spec.field)
                if f is None or f.kind in ("object", "none"):
                    if spec.unmapped_type is None:
                        raise query_shard(f"No mapping found for [{spec.field}] in order to sort on", meta.name, meta.uuid)
                    kind = {"long": "long", "integer": "long", "short": "long", "byte": "long", "date": "date", "boolean": "long",
                            "double": "double", "float": "double", "keyword": "keyword"}.get(spec.unmapped_type, "long")
                    out.append(_Sort("NULL", kind, spec))
                elif f.kind == "text":
                    raise EsError(400, "illegal_argument_exception", _TEXT_SORT.format(f=spec.field))
                else:
                    col = f"d.c{f.num}"
                    expr = col
                    if f.multi:
                        mode = spec.mode or ("max" if spec.order == "desc" else "min")
                        agg = {"min": "min", "max": "max", "sum": "sum", "avg": "avg", "median": "avg"}.get(mode, "min")
                        expr = (f"(CASE WHEN typeof({col}) = 'blob' THEN (SELECT {agg}(value) FROM json_each(CAST({col} AS TEXT))) "
                                f"ELSE {col} END)")
                    out.append(_Sort(expr, "long" if f.kind == "bool" else f.kind, spec))
        return out

    def _total(self, db: sqlite3.Connection, req: SearchRequest,
               plans: list[tuple[planner.Plan, list[_Sort], str, dict[str, Any]]]) -> tuple[int, str]:
        track = req.track_total_hits
        if track is False:
            return 0, "eq"
        cap = None if track is True or track == -1 else int(track)
        total = 0
        for plan, _, post, params in plans:
            if plan.empty:
                continue
            where = plan.where + (f" AND {post}" if post else "")
            if req.min_score is not None:
                sql = f"SELECT 1 FROM {plan.from_sql}{plan.score_join} WHERE {where} AND ({plan.score or '0'}) >= :_min"
                params = {**params, "_min": req.min_score}
            else:
                sql = f"SELECT 1 FROM {plan.from_sql} WHERE {where}"
            if cap is None:
                total += int(db.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0])
            else:
                left = cap - total + 1
                if left <= 0:
                    break
                total += int(db.execute(f"SELECT count(*) FROM ({sql} LIMIT {left})", params).fetchone()[0])
        if cap is not None and total > cap:
            return cap, "gte"
        return total, "eq"

    def _hits(self, db: sqlite3.Connection, req: SearchRequest,
              plans: list[tuple[planner.Plan, list[_Sort], str, dict[str, Any]]]) -> list[tuple[Any, ...]]:
        k = req.from_ + req.size
        rows: list[tuple[Any, ...]] = []
        for pos, (plan, sorts, post, params) in enumerate(plans):
            if plan.empty:
                continue
            score = plan.score if plan.score else "0"
            order: list[str] = []
            for s in sorts:
                if s.kind == "score":
                    if not _CONST.match(score):
                        order.append("_s DESC" if s.spec.order == "desc" else "_s ASC")
                elif s.kind == "doc":
                    order.append("d.rowid " + s.spec.order.upper())
                elif s.expr != "NULL":
                    order.append(_order_sql(s, params))
            order.append("d.rowid ASC")
            where = plan.where + (f" AND {post}" if post else "")
            if req.min_score is not None:
                where += f" AND ({score}) >= :_min"
                params = {**params, "_min": req.min_score}
            keys = [f"({score})" if s.kind == "score" else f"({s.expr})" for s in sorts]
            cols = ", ".join(["d.rowid", "d._id", "d._src", "d._ver", "d._seq", f"({score}) AS _s", *keys])
            sql = f"SELECT {cols} FROM {plan.from_sql}{plan.score_join} WHERE {where} ORDER BY {', '.join(order)} LIMIT {k}"
            for r in db.execute(sql, params):
                rows.append((pos, plan.meta, sorts, r))
        if len(plans) > 1:
            rows.sort(key=functools.cmp_to_key(_compare))
        return rows[req.from_ : k]

    # --- the answer -------------------------------------------------------------------------------

    def _answer(self, req: SearchRequest, metas: list[IndexMeta], failures: list[tuple[str, EsError]], hits: list[tuple[Any, ...]],
                total: int, relation: str, aggregations: dict[str, Any] | None, started: float) -> dict[str, Any]:
        out_hits: list[dict[str, Any]] = []
        scored = req.sorts_by_score or req.track_scores
        max_score: float | None = None
        for _, meta, sorts, r in hits:
            rowid, doc_id, src, ver, seq, score = r[:6]
            h: dict[str, Any] = {"_index": meta.name, "_type": "_doc", "_id": doc_id}
            if req.version:
                h["_version"] = ver
            if req.seq_no_primary_term:
                h["_seq_no"] = seq
                h["_primary_term"] = 1
            s = float(score) if scored else None
            h["_score"] = s
            if s is not None:
                max_score = s if max_score is None else max(max_score, s)
            source: Any = None
            if req.source and not req.stored_none:
                source = orjson.loads(src)
                if req.includes or req.excludes:
                    source = filter_source(source, req.includes, req.excludes)
                h["_source"] = source
            if req.fields or req.docvalue_fields:
                doc = source if source is not None and not (req.includes or req.excludes) else orjson.loads(src)
                fields = _fields_option(meta, doc, req)
                if fields:
                    h["fields"] = fields
            if req.sort:
                h["sort"] = [_sort_value(s, r[6 + i], rowid) for i, s in enumerate(sorts)]
            out_hits.append(h)
        total_obj: Any = {"value": total, "relation": relation}
        if req.total_as_int:
            total_obj = total
        hits_obj: dict[str, Any] = {"total": total_obj, "max_score": max_score if (scored and out_hits) else None, "hits": out_hits}
        if req.track_total_hits is False:
            del hits_obj["total"]
        shards: dict[str, Any] = {"total": len(metas), "successful": len(metas) - len(failures), "skipped": 0, "failed": len(failures)}
        if failures:
            shards["failures"] = shard_failures(failures, self.store.node_id)
        out: dict[str, Any] = {"took": int((time.perf_counter() - started) * 1000), "timed_out": False, "_shards": shards, "hits": hits_obj}
        if aggregations is not None:
            out["aggregations"] = aggregations
        return out


def _order_sql(s: _Sort, params: dict[str, Any]) -> str:
    direction = s.spec.order.upper()
    missing = s.spec.missing
    if missing in ("_last", None):
        return f"({s.expr}) {direction} NULLS LAST"
    if missing == "_first":
        return f"({s.expr}) {direction} NULLS FIRST"
    name = f"_miss{len(params)}"
    params[name] = missing
    return f"COALESCE(({s.expr}), :{name}) {direction}"


def _compare(a: tuple[Any, ...], b: tuple[Any, ...]) -> int:
    pos_a, _, sorts, ra = a
    pos_b, _, _, rb = b
    for i, s in enumerate(sorts):
        if s.kind == "score":
            va, vb = ra[5], rb[5]
        elif s.kind == "doc":
            va, vb = ra[0], rb[0]
        else:
            va, vb = ra[6 + i], rb[6 + i]
        if va is None and vb is None:
            continue
        if va is None or vb is None:
            first = s.spec.missing == "_first"
            return (-1 if first else 1) if va is None else (1 if first else -1)
        if va == vb:
            continue
        try:
            less = va < vb
        except TypeError:
            less = str(va) < str(vb)
        c = -1 if less else 1
        return -c if s.spec.order == "desc" else c
    if pos_a != pos_b:
        return -1 if pos_a < pos_b else 1
    return -1 if ra[0] < rb[0] else (1 if ra[0] > rb[0] else 0)


def _sort_value(s: _Sort, v: Any, rowid: int) -> Any:
    if s.kind == "score":
        return None if v is None else float(v)
    if s.kind == "doc":
        return rowid - 1
    if v is None:
        if s.kind in ("long", "date"):
            return LONG_MIN if s.spec.order == "desc" else LONG_MAX
        if s.kind == "double":
            return "-Infinity" if s.spec.order == "desc" else "Infinity"
        return None
    if s.kind == "double":
        return float(v)
    if s.kind in ("long", "date") and isinstance(v, float):
        return int(v)
    if s.kind == "date" and s.spec.format:
        from sluice.lab.backends.elasticsearch.datemath import DateFormat

        return DateFormat.of(s.spec.format).format(int(v))
    return v


def _fields_option(meta: IndexMeta, doc: dict[str, Any], req: SearchRequest) -> dict[str, list[Any]]:
    from fnmatch import fnmatchcase

    out: dict[str, list[Any]] = {}
    for spec in [*req.fields, *req.docvalue_fields]:
        pattern = spec.pattern.replace("[", "[[]").replace("?", "[?]")
        matched: set[str] = set()
        for f in meta.mapping.leaves():
            if f.kind == "none" or not fnmatchcase(f.path, pattern):
                continue
            vals = field_values(f, doc, spec.format)
            if vals:
                out[f.path] = vals
                matched.add(f.path)
        if spec.include_unmapped:
            for path, vals in unmapped_leaves(doc).items():
                if path not in out and meta.mapping.get(path) is None and fnmatchcase(path, pattern):
                    out[path] = vals
    return dict(sorted(out.items()))
