"""Aggregations over the documents a query matched, reduced across indices in SQL (one
``UNION ALL`` of every index's matches, so ``terms`` counts are exact; ES's per-shard
``shard_size`` approximation does not arise).

Bucket aggregations: ``date_histogram`` (``fixed_interval``, ``calendar_interval``, legacy
``interval``; ``time_zone``, ``offset``, ``min_doc_count``, ``extended_bounds``, ``hard_bounds``,
``format``, ``order``, ``keyed``), ``histogram``, ``terms`` (``size``, ``order`` by count, key
or a metric sub-aggregation, ``min_doc_count``, ``include``/``exclude``, ``missing``),
``filter``, ``filters``, ``range``, ``date_range``, ``missing``; sub-aggregations run per bucket.
Metrics: ``min``, ``max``, ``avg``, ``sum``, ``value_count``, ``cardinality``, ``stats``,
``percentiles``.

Deliberate difference: ``cardinality`` and ``percentiles`` are exact (ES: HyperLogLog++ and
TDigest estimates).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone
from typing import Any

from sluice.lab.backends.elasticsearch import dsl
from sluice.lab.backends.elasticsearch.compile import Compiler
from sluice.lab.backends.elasticsearch.datemath import DateError, DateFormat, from_ms, next_unit, parse_math, parse_tz, round_down, to_ms
from sluice.lab.backends.elasticsearch.errors import EsError, ShardFailure, parsing
from sluice.lab.backends.elasticsearch.mapping import Field
from sluice.lab.backends.elasticsearch.planner import Plan

UTC = UTC
MAX_BUCKETS = 65535
_CALENDAR = {"minute": "m", "1m": "m", "hour": "h", "1h": "h", "day": "d", "1d": "d", "week": "w", "1w": "w", "month": "M", "1M": "M",
             "quarter": "q", "1q": "q", "year": "y", "1y": "y"}
_FIXED_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_TEXT_AGG = ("Text fields are not optimised for operations that require per-document field data like aggregations and sorting, "
             "so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on "
             "[{f}] in order to load field data by uninverting the inverted index. Note that this can use significant memory.")
_BUCKET = {"date_histogram", "histogram", "terms", "filter", "filters", "range", "date_range", "missing"}
_METRIC = {"min", "max", "avg", "sum", "value_count", "cardinality", "stats", "percentiles"}


@dataclass(slots=True)
class _Ctx:
    """One index's matching documents, narrowed by the enclosing buckets."""

    pos: int
    plan: Plan
    extra: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def narrowed(self, cond: str, params: dict[str, Any] | None = None) -> _Ctx:
        return _Ctx(self.pos, self.plan, [*self.extra, cond], {**self.params, **(params or {})})

    def where(self) -> str:
        return " AND ".join([self.plan.where, *self.extra])


@dataclass(slots=True)
class _Env:
    db: sqlite3.Connection
    now: int
    typed_keys: bool
    node_id: str


def run(spec: dict[str, Any], plans: list[Plan], db: sqlite3.Connection, now: int, typed_keys: bool = False,
        node_id: str = "") -> dict[str, Any]:
    ctxs = [_Ctx(i, p, [], dict(p.params)) for i, p in enumerate(plans) if not p.empty]
    return _aggs(spec, ctxs, _Env(db, now, typed_keys, node_id))


def _aggs(spec: dict[str, Any], ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, body in spec.items():
        if not isinstance(body, dict):
            raise parsing(f"Expected [START_OBJECT] under [{name}], but got a [VALUE_STRING] in [{name}]")
        kinds = [k for k in body if k not in ("aggs", "aggregations", "meta")]
        if not kinds:
            raise parsing(f"Missing definition for aggregation [{name}]")
        if len(kinds) > 1:
            raise parsing(f"Found two aggregation type definitions in [{name}]: [{kinds[0]}] and [{kinds[1]}]")
        kind = kinds[0]
        sub = body.get("aggs", body.get("aggregations"))
        if kind not in _BUCKET and kind not in _METRIC:
            raise parsing(f"Unknown aggregation type [{kind}] did you mean any of [{', '.join(sorted(_BUCKET | _METRIC))}]?")
        if kind in _METRIC and sub:
            raise EsError(400, "aggregation_initialization_exception",
                          f"Aggregator [{name}] of type [{kind}] cannot accept sub-aggregations")
        params = body[kind]
        if not isinstance(params, dict):
            raise parsing(f"Expected [START_OBJECT] under [{kind}], but got a [{type(params).__name__}] in [{name}]")
        handler: Callable[..., dict[str, Any]] = globals()["_" + kind]
        result = handler(name, params, sub if isinstance(sub, dict) else None, ctxs, env)
        if "meta" in body:
            result = {"meta": body["meta"], **result}
        out[f"{_typed(kind, params, ctxs)}#{name}" if env.typed_keys else name] = result
    return out


def _typed(kind: str, params: dict[str, Any], ctxs: list[_Ctx]) -> str:
    """The type prefix ``typed_keys`` shows (ES names ``terms`` results by their key type)."""
    if kind != "terms":
        return kind
    for c in ctxs:
        f = c.plan.meta.mapping.get(str(params.get("field")))
        if f is not None:
            return {"long": "lterms", "date": "lterms", "bool": "lterms", "double": "dterms"}.get(f.kind, "sterms")
    return "umterms"


# --- values ---------------------------------------------------------------------------------------


def _field(ctxs: list[_Ctx], name: Any, env: _Env) -> dict[int, Field]:
    """The field in each index where it is mapped (text fields: ES's fielddata error)."""
    if not isinstance(name, str):
        raise parsing("Required one of fields [field, script], but none were specified.")
    found: dict[int, Field] = {}
    failures: list[tuple[str, EsError]] = []
    for c in ctxs:
        f = c.plan.meta.mapping.get(name)
        if f is None or f.kind in ("object", "none"):
            continue
        if f.kind == "text":
            failures.append((c.plan.meta.name, EsError(400, "illegal_argument_exception", _TEXT_AGG.format(f=name))))
            continue
        found[c.pos] = f
    if failures:
        raise ShardFailure(failures, env.node_id)
    return found


def _scoped(sql: str, params: dict[str, Any], k: int) -> tuple[str, dict[str, Any]]:
    sql = re.sub(r":(\w+)", lambda m: f":i{k}_{m.group(1)}", sql)
    return sql, {f"i{k}_{n}": v for n, v in params.items()}


def _values_sql(ctxs: list[_Ctx], fields: dict[int, Field], value: str = "{v}") -> tuple[str, dict[str, Any], bool]:
    """``SELECT v, doc`` over every index's matches (``doc`` unique across indices); ``v`` is the
    field's value, one row per value for a multi-valued field."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    multi = False
    for c in ctxs:
        f = fields.get(c.pos)
        if f is None:
            continue
        col = f"d.c{f.num}"
        if f.multi:
            multi = True
            src = (f"{c.plan.from_sql} JOIN json_each(CASE WHEN typeof({col}) = 'blob' THEN CAST({col} AS TEXT) "
                   f"ELSE json_array({col}) END) AS j")
            v = value.format(v="j.value")
        else:
            src, v = c.plan.from_sql, value.format(v=col)
        base = "j.value" if f.multi else col
        sql = f"SELECT {v} AS v, ({c.pos} << 40) + d.rowid AS doc FROM {src} WHERE {c.where()} AND {base} IS NOT NULL"
        sql, ps = _scoped(sql, c.params, c.pos)
        parts.append(sql)
        params.update(ps)
    return " UNION ALL ".join(parts), params, multi


def _doc_count(ctxs: list[_Ctx], env: _Env) -> int:
    total = 0
    for c in ctxs:
        total += int(env.db.execute(f"SELECT count(*) FROM {c.plan.from_sql} WHERE {c.where()}", c.params).fetchone()[0])
    return total


def _narrow(ctxs: list[_Ctx], fields: dict[int, Field], template: str, params: dict[str, Any]) -> list[_Ctx]:
    """Each index's matches whose field has a value passing ``template`` (over ``{v}``). The
    template's parameters are renamed per nesting level, so buckets inside buckets do not clash."""
    out: list[_Ctx] = []
    for c in ctxs:
        f = fields.get(c.pos)
        if f is None:
            continue
        depth = len(c.extra)
        test = re.sub(r":(\w+)", rf":\1_{depth}", template)
        col = f"d.c{f.num}"
        if f.multi:
            cond = (f"(CASE WHEN typeof({col}) = 'blob' THEN EXISTS (SELECT 1 FROM json_each(CAST({col} AS TEXT)) WHERE "
                    f"{test.format(v='value')}) ELSE {test.format(v=col)} END)")
        else:
            cond = test.format(v=col)
        out.append(c.narrowed(cond, {f"{k}_{depth}": v for k, v in params.items()}))
    return out


def _sub(sub: dict[str, Any] | None, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    return _aggs(sub, ctxs, env) if sub else {}


def _kind(fields: dict[int, Field]) -> str:
    kinds = {f.kind for f in fields.values()}
    return kinds.pop() if len(kinds) == 1 else "keyword" if kinds else "none"


def _fmt_key(kind: str, key: Any, fmt: DateFormat | None, tz: Any = UTC) -> dict[str, Any]:
    if kind == "date":
        return {"key_as_string": (fmt or DateFormat.of(None)).format(int(key), tz), "key": int(key)}
    if kind == "bool":
        return {"key": int(key), "key_as_string": "true" if key else "false"}
    if kind == "double":
        return {"key": float(key)}
    return {"key": key}


# --- metrics --------------------------------------------------------------------------------------


def _metric(params: dict[str, Any], ctxs: list[_Ctx], env: _Env, select: str) -> tuple[Any, ...] | None:
    fields = _field(ctxs, params.get("field"), env)
    sql, ps, _ = _values_sql(ctxs, fields)
    if not sql:
        return None
    row = env.db.execute(f"SELECT {select} FROM ({sql})", ps).fetchone()
    return tuple(row)


def _with_string(value: Any, ctxs: list[_Ctx], params: dict[str, Any], env: _Env) -> dict[str, Any]:
    out: dict[str, Any] = {"value": None if value is None else float(value)}
    fields = _field(ctxs, params.get("field"), env)
    if value is not None and _kind(fields) == "date":
        fmt = _date_format(fields, params.get("format")) or DateFormat.of(None)
        out["value_as_string"] = fmt.format(int(value))
    return out


def _min(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    row = _metric(params, ctxs, env, "min(v)")
    return _with_string(row[0] if row else None, ctxs, params, env)


def _max(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    row = _metric(params, ctxs, env, "max(v)")
    return _with_string(row[0] if row else None, ctxs, params, env)


def _avg(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    row = _metric(params, ctxs, env, "avg(v)")
    return {"value": None if not row or row[0] is None else float(row[0])}


def _sum(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    row = _metric(params, ctxs, env, "total(v)")
    return {"value": float(row[0]) if row else 0.0}


def _value_count(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    row = _metric(params, ctxs, env, "count(v)")
    return {"value": int(row[0]) if row else 0}


def _cardinality(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    row = _metric(params, ctxs, env, "count(DISTINCT v)")
    return {"value": int(row[0]) if row else 0}


def _stats(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    row = _metric(params, ctxs, env, "count(v), min(v), max(v), avg(v), total(v)")
    if not row or not row[0]:
        return {"count": 0, "min": None, "max": None, "avg": None, "sum": 0.0}
    return {"count": int(row[0]), "min": float(row[1]), "max": float(row[2]), "avg": float(row[3]), "sum": float(row[4])}


def _percentiles(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    percents = [float(p) for p in params.get("percents", [1, 5, 25, 50, 75, 95, 99])]
    fields = _field(ctxs, params.get("field"), env)
    sql, ps, _ = _values_sql(ctxs, fields)
    values: dict[str, Any] = {}
    n = int(env.db.execute(f"SELECT count(*) FROM ({sql})", ps).fetchone()[0]) if sql else 0
    for p in percents:
        key = repr(p)
        if n == 0:
            values[key] = None
            continue
        rank = p / 100 * (n - 1)
        lo = int(rank)
        rows = env.db.execute(f"SELECT v FROM ({sql}) ORDER BY v LIMIT 2 OFFSET {lo}", ps).fetchall()
        a = float(rows[0][0])
        b = float(rows[1][0]) if len(rows) > 1 else a
        values[key] = a + (b - a) * (rank - lo)
    if params.get("keyed", True) is False:
        return {"values": [{"key": float(k), "value": v} for k, v in values.items()]}
    return {"values": values}


# --- buckets --------------------------------------------------------------------------------------


def _filter(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    q = dsl.parse_query(params)
    narrowed = _by_query(ctxs, q, env)
    return {"doc_count": _doc_count(narrowed, env), **_sub(sub, narrowed, env)}


def _by_query(ctxs: list[_Ctx], q: dsl.Q, env: _Env) -> list[_Ctx]:
    out: list[_Ctx] = []
    for c in ctxs:
        params = dict(c.params)
        cond = Compiler(c.plan.meta, env.db, params, env.now, hwm=c.plan.hwm).compile(q, False)
        if cond.const is False:
            continue
        out.append(_Ctx(c.pos, c.plan, [*c.extra, cond.sql], params))
    return out


def _filters(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    spec = params.get("filters")
    if isinstance(spec, dict):
        buckets: Any = {}
        for key, q in spec.items():
            narrowed = _by_query(ctxs, dsl.parse_query(q), env)
            buckets[key] = {"doc_count": _doc_count(narrowed, env), **_sub(sub, narrowed, env)}
        return {"buckets": buckets}
    if isinstance(spec, list):
        out = []
        for q in spec:
            narrowed = _by_query(ctxs, dsl.parse_query(q), env)
            out.append({"doc_count": _doc_count(narrowed, env), **_sub(sub, narrowed, env)})
        return {"buckets": out}
    raise parsing("[filters] requires a [filters] object or array")


def _missing(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    fields = _field(ctxs, params.get("field"), env)
    narrowed = [c.narrowed(f"d.c{fields[c.pos].num} IS NULL") if c.pos in fields else c for c in ctxs]
    return {"doc_count": _doc_count(narrowed, env), **_sub(sub, narrowed, env)}


def _terms(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    fields = _field(ctxs, params.get("field"), env)
    size = int(params.get("size", 10))
    min_count = int(params.get("min_doc_count", 1))
    order = params.get("order", {"_count": "desc"})
    order = order[0] if isinstance(order, list) and order else order
    key_name, direction = next(iter(order.items())) if isinstance(order, dict) and order else ("_count", "desc")
    direction = str(direction).upper()
    kind = _kind(fields)
    sql, ps, multi = _values_sql(ctxs, fields)
    if not sql:
        return {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0, "buckets": []}
    where = ["1"]
    inc, exc = params.get("include"), params.get("exclude")
    if isinstance(inc, str):
        where.append("v REGEXP :_inc")
        ps["_inc"] = inc
    elif isinstance(inc, list):
        where.append(f"v IN ({', '.join(f':_i{i}' for i in range(len(inc)))})")
        ps.update({f"_i{i}": v for i, v in enumerate(inc)})
    if isinstance(exc, str):
        where.append("NOT (v REGEXP :_exc)")
        ps["_exc"] = exc
    elif isinstance(exc, list):
        where.append(f"v NOT IN ({', '.join(f':_e{i}' for i in range(len(exc)))})")
        ps.update({f"_e{i}": v for i, v in enumerate(exc)})
    count = "count(DISTINCT doc)" if multi else "count(*)"
    grouped = f"SELECT v, {count} AS c FROM ({sql}) WHERE {' AND '.join(where)} GROUP BY v HAVING c >= {min_count}"
    by_metric = key_name not in ("_count", "_key", "_term")
    if key_name in ("_key", "_term"):
        ordering = f"v {direction}"
    else:
        ordering = f"c {direction}, v ASC"
    limit = "" if by_metric else f"LIMIT {size}"
    rows = env.db.execute(f"SELECT v, c, sum(c) OVER () FROM ({grouped}) ORDER BY {ordering} {limit}", ps).fetchall()
    total = int(rows[0][2]) if rows else 0
    buckets = []
    for v, c, _ in rows:
        narrowed = _narrow(ctxs, fields, "{v} = :_tk", {"_tk": v}) if sub else []
        b = {**_fmt_key(kind, v, _date_format(fields, params.get("format"))), "doc_count": int(c), **_sub(sub, narrowed, env)}
        buckets.append(b)
    if by_metric:
        metric, _, prop = str(key_name).partition(".")
        buckets.sort(key=lambda b: _metric_value(b, metric, prop), reverse=direction == "DESC")
        buckets = buckets[:size]
    shown = sum(b["doc_count"] for b in buckets)
    if "missing" in params and kind != "none":
        missing = [c.narrowed(f"d.c{fields[c.pos].num} IS NULL") if c.pos in fields else c for c in ctxs]
        n = _doc_count(missing, env)
        if n >= max(min_count, 1):
            buckets.append({"key": params["missing"], "doc_count": n, **_sub(sub, missing, env)})
    return {"doc_count_error_upper_bound": 0, "sum_other_doc_count": total - shown, "buckets": buckets}


def _metric_value(bucket: dict[str, Any], metric: str, prop: str) -> Any:
    agg = bucket.get(metric, {})
    v = agg.get(prop or "value") if isinstance(agg, dict) else None
    return (0, 0) if v is None else (1, v)


def _date_format(fields: dict[int, Field], spec: Any) -> DateFormat | None:
    if spec:
        return DateFormat.of(str(spec))
    for f in fields.values():
        if f.fmt is not None:
            return f.fmt
    return None


def _interval(params: dict[str, Any]) -> tuple[str, int]:
    """(``calendar`` unit | ``fixed``, milliseconds for fixed)."""
    if "calendar_interval" in params:
        raw = str(params["calendar_interval"])
        if raw not in _CALENDAR:
            raise EsError(400, "illegal_argument_exception", f"The supplied interval [{raw}] could not be parsed as a calendar interval.")
        return _CALENDAR[raw], 0
    raw = str(params.get("fixed_interval", params.get("interval", "")))
    if not raw:
        raise EsError(400, "illegal_argument_exception", "Invalid interval specified, must be non-null and non-empty")
    if "fixed_interval" not in params and raw in _CALENDAR:
        return _CALENDAR[raw], 0
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", raw)
    if not m or int(m.group(1)) == 0:
        raise EsError(400, "illegal_argument_exception",
                      f"failed to parse setting [date_histogram.fixedInterval] with value [{raw}] as a time value: "
                      "unit is missing or unrecognized")
    return "fixed", int(m.group(1)) * _FIXED_UNITS[m.group(2)]


def _offset_ms(raw: Any) -> int:
    if raw is None:
        return 0
    if isinstance(raw, (int, float)):
        return int(raw)
    m = re.fullmatch(r"([+-]?)(\d+)(ms|s|m|h|d)", str(raw))
    if not m:
        raise EsError(400, "illegal_argument_exception", f"failed to parse offset [{raw}]")
    return (-1 if m.group(1) == "-" else 1) * int(m.group(2)) * _FIXED_UNITS[m.group(3)]


def _date_histogram(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    fields = _field(ctxs, params.get("field"), env)
    unit, fixed = _interval(params)
    try:
        tz = parse_tz(str(params["time_zone"])) if params.get("time_zone") else UTC
    except DateError as exc:
        raise EsError(400, "illegal_argument_exception", str(exc)) from None
    offset = _offset_ms(params.get("offset"))
    fmt = _date_format(fields, params.get("format"))
    fixed_tz = tz if isinstance(tz, timezone) else None
    shift = (int(fixed_tz.utcoffset(None).total_seconds() * 1000) if fixed_tz else 0) - offset

    def key_of(ms: int) -> int:
        if unit == "fixed":
            if fixed_tz is not None:
                return (ms + shift) // fixed * fixed - shift
            local = ms + int((from_ms(ms, tz).utcoffset() or timedelta(0)).total_seconds() * 1000) - offset
            floored = local // fixed * fixed + offset
            naive = from_ms(floored, UTC).replace(tzinfo=None)
            return to_ms(naive.replace(tzinfo=tz))
        return round_down(ms - offset, unit, tz) + offset

    def next_of(key: int) -> int:
        if unit == "fixed":
            return key + fixed
        return next_unit(key - offset, unit, tz) + offset

    # SQL groups on a grain every bucket boundary falls on; Python maps each grain to its bucket.
    if fixed_tz is not None:
        grain = fixed if unit == "fixed" else {"m": 60_000, "h": 3_600_000, "w": 604_800_000}.get(unit, 86_400_000)
        gshift = shift - (4 * 86_400_000 if unit == "w" else 0)  # 1970-01-05 was a Monday
    else:
        grain = _gcd(fixed or 900_000, 900_000)
        if offset:
            grain = _gcd(grain, abs(offset))
        gshift = 0
    sql, ps, multi = _values_sql(ctxs, fields, "CAST({v} AS INTEGER)")
    counts: dict[int, int] = {}
    if sql:
        count = "count(DISTINCT doc)" if multi else "count(*)"
        gexpr = f"(v + {gshift}) - (((v + {gshift}) % {grain}) + {grain}) % {grain} - {gshift}"
        for g, c in env.db.execute(f"SELECT {gexpr} AS g, {count} FROM ({sql}) GROUP BY g", ps):
            k = key_of(int(g))
            counts[k] = counts.get(k, 0) + int(c)
    min_count = int(params.get("min_doc_count", 0))
    bounds = params.get("extended_bounds")
    hard = params.get("hard_bounds")
    lo_b = hi_b = None
    if isinstance(bounds, dict):
        f0 = next(iter(fields.values()), None)
        lo_b = _bound(bounds.get("min"), env, fmt or (f0.fmt if f0 else None), False)
        hi_b = _bound(bounds.get("max"), env, fmt or (f0.fmt if f0 else None), True)
    keys = sorted(counts)
    if min_count == 0 and (keys or lo_b is not None or hi_b is not None):
        first = min([*keys, *([key_of(lo_b)] if lo_b is not None else [])])
        last = max([*keys, *([key_of(hi_b)] if hi_b is not None else [])])
        keys, k = [], first
        while k <= last:
            keys.append(k)
            if len(keys) > MAX_BUCKETS:
                raise EsError(400, "too_many_buckets_exception",
                              f"Trying to create too many buckets. Must be less than or equal to: [{MAX_BUCKETS}] but was "
                              f"[{MAX_BUCKETS + 1}]. This limit can be set by changing the [search.max_buckets] cluster level setting.",
                              meta={"max_buckets": MAX_BUCKETS})
            k = next_of(k)
    if isinstance(hard, dict):
        hlo = _bound(hard.get("min"), env, fmt, False)
        hhi = _bound(hard.get("max"), env, fmt, True)
        keys = [k for k in keys if (hlo is None or next_of(k) > hlo) and (hhi is None or k <= hhi)]
    buckets = []
    for k in keys:
        c = counts.get(k, 0)
        if c < min_count:
            continue
        b: dict[str, Any] = {"key_as_string": (fmt or DateFormat.of(None)).format(k, tz), "key": k, "doc_count": c}
        if sub:
            narrowed = _narrow(ctxs, fields, "{v} >= :_lo AND {v} < :_hi", {"_lo": k, "_hi": next_of(k)})
            b.update(_sub(sub, narrowed, env))
        buckets.append(b)
    return _ordered(buckets, params)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def _bound(v: Any, env: _Env, fmt: DateFormat | None, round_up: bool) -> int | None:
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return int(v)
    try:
        return parse_math(str(v), env.now, fmt, round_up=round_up)
    except DateError as exc:
        raise EsError(400, "parse_exception", str(exc)) from None


def _ordered(buckets: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    order = params.get("order")
    if isinstance(order, dict) and order:
        key, direction = next(iter(order.items()))
        field_name = "doc_count" if key == "_count" else "key"
        buckets.sort(key=lambda b: (b[field_name], b["key"]), reverse=str(direction).lower() == "desc")
    if params.get("keyed"):
        return {"buckets": {str(b.get("key_as_string", b["key"])): b for b in buckets}}
    return {"buckets": buckets}


def _histogram(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    fields = _field(ctxs, params.get("field"), env)
    try:
        interval = float(params["interval"])
    except (KeyError, TypeError, ValueError):
        raise EsError(400, "illegal_argument_exception", "[interval] must be >0 for histogram aggregation [" + name + "]") from None
    if interval <= 0:
        raise EsError(400, "illegal_argument_exception", f"[interval] must be >0 for histogram aggregation [{name}]")
    offset = float(params.get("offset", 0))
    sql, ps, multi = _values_sql(ctxs, fields)
    counts: dict[float, int] = {}
    if sql:
        count = "count(DISTINCT doc)" if multi else "count(*)"
        expr = f"floor((v - {offset!r}) / {interval!r}) * {interval!r} + {offset!r}"
        for k, c in env.db.execute(f"SELECT {expr} AS k, {count} FROM ({sql}) GROUP BY k", ps):
            counts[float(k)] = int(c)
    min_count = int(params.get("min_doc_count", 0))
    keys = sorted(counts)
    if min_count == 0 and keys:
        keys = [keys[0] + i * interval for i in range(int(round((keys[-1] - keys[0]) / interval)) + 1)]
    buckets = []
    for k in keys:
        c = counts.get(k, 0)
        if c < min_count:
            continue
        b: dict[str, Any] = {"key": k, "doc_count": c}
        if sub:
            b.update(_sub(sub, _narrow(ctxs, fields, "{v} >= :_lo AND {v} < :_hi", {"_lo": k, "_hi": k + interval}), env))
        buckets.append(b)
    return _ordered(buckets, params)


def _range(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env, dates: bool = False) -> dict[str, Any]:
    fields = _field(ctxs, params.get("field"), env)
    ranges = params.get("ranges")
    if not isinstance(ranges, list):
        raise parsing(f"[{'date_range' if dates else 'range'}] requires [ranges]")
    fmt = _date_format(fields, params.get("format"))
    buckets = []
    for r in ranges:
        lo, hi = r.get("from"), r.get("to")
        if dates:
            lo, hi = _bound(lo, env, fmt, False), _bound(hi, env, fmt, False)
        tests, ps = [], {}
        if lo is not None:
            tests.append("{v} >= :_rlo")
            ps["_rlo"] = lo
        if hi is not None:
            tests.append("{v} < :_rhi")
            ps["_rhi"] = hi
        narrowed = _narrow(ctxs, fields, " AND ".join(tests) or "{v} IS NOT NULL", ps)
        def show(v: Any) -> str:
            return (fmt or DateFormat.of(None)).format(int(v)) if dates else repr(float(v))
        key = r.get("key") or f"{show(lo) if lo is not None else '*'}-{show(hi) if hi is not None else '*'}"
        b: dict[str, Any] = {"key": key}
        if lo is not None:
            b["from"] = float(lo)
            if dates:
                b["from_as_string"] = show(lo)
        if hi is not None:
            b["to"] = float(hi)
            if dates:
                b["to_as_string"] = show(hi)
        b["doc_count"] = _doc_count(narrowed, env)
        b.update(_sub(sub, narrowed, env))
        buckets.append(b)
    if params.get("keyed"):
        return {"buckets": {b["key"]: b for b in buckets}}
    return {"buckets": buckets}


def _date_range(name: str, params: dict[str, Any], sub: Any, ctxs: list[_Ctx], env: _Env) -> dict[str, Any]:
    return _range(name, params, sub, ctxs, env, dates=True)
