"""DSL nodes → SQL for one index (ES's shard-level query building: what a field *is* decides
what a query on it means, and field-dependent errors are ``query_shard_exception``\\ s).

Every node compiles to a :class:`Cond`: a SQL boolean over the index's document row ``d``, plus,
where one exists, an equivalent FTS5 expression (an indexed way in) or a date range on an
indexed column. :mod:`.planner` picks the way in; the rest are evaluated per row. Column
references are written ``+d.cN`` (SQLite's "do not use an index here") so that only the way in
the planner chose drives the scan.

Values per field kind: ``text`` lives only in FTS5 (``match`` analyzes the query; ``term`` looks
for the exact token, as ES); ``keyword``/``long``/``double``/``date``/``bool`` in their column
(multi-valued fields hold a JSON array, searched with ``json_each``). Scores: matched ``text``
clauses in query context add FTS5's BM25; other clauses in query context add their boost;
filter context adds nothing.

Deliberate difference: ``_score`` is FTS5's BM25 over the document's whole term list (all of its
fields), not Lucene's per-field BM25; term/range/etc. score their boost (ES: an IDF-based score).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from sluice.lab.backends.elasticsearch import analysis, dsl, lucene
from sluice.lab.backends.elasticsearch.datemath import DateError, DateFormat, parse_math, parse_tz
from sluice.lab.backends.elasticsearch.errors import EsError, query_shard
from sluice.lab.backends.elasticsearch.mapping import Field, to_bool, to_string
from sluice.lab.backends.elasticsearch.store import IndexMeta

MAX_EXPANSIONS = 1024


@dataclass(slots=True)
class Cond:
    sql: str
    fts: str | None = None
    date: str | None = None
    """The same condition on the *indexed* date column (no ``+``), when it is a date range."""
    const: bool | None = None
    score: str = "0"
    score_fts: list[str] = field(default_factory=list)
    conj: list[Cond] = field(default_factory=list)
    """The AND-ed parts a planner may pick a way in from (``[self]`` for a leaf)."""
    exact: bool = True
    """``fts`` matches exactly the documents ``sql`` does (else: a superset, to narrow with)."""

    def parts(self) -> list[Cond]:
        return self.conj or [self]


def _all(score: str = "0") -> Cond:
    return Cond("1", const=True, score=score)


def _none() -> Cond:
    return Cond("0", const=False)


def _or(conds: list[Cond], score: str = "0") -> Cond:
    live = [c for c in conds if c.const is not False]
    if not live:
        return _none()
    if any(c.const is True for c in live):
        return _all(score)
    if len(live) == 1:
        return live[0]
    fts = analysis.q_or([c.fts for c in live if c.fts]) if all(c.fts for c in live) else None
    return Cond("(" + " OR ".join(c.sql for c in live) + ")", fts=fts, score=score,
                score_fts=[s for c in live for s in c.score_fts], exact=all(c.exact for c in live))


class Compiler:
    def __init__(self, meta: IndexMeta, db: sqlite3.Connection, params: dict[str, Any], now_ms: int,
                 qs_cache: dict[int, dsl.Q] | None = None, hwm: int = 0) -> None:
        self.meta = meta
        self.mapping = meta.mapping
        self.db = db
        self.params = params
        self.now = now_ms
        self.fts_table = f"f{meta.num}"
        self.hwm = hwm
        """Documents up to this rowid are searchable (see ``Store.refreshed``)."""
        self.qs_cache = qs_cache if qs_cache is not None else {}

    # --- helpers ----------------------------------------------------------------------------------

    def p(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return ":" + name

    def shard_error(self, reason: str, cause: EsError | None = None) -> EsError:
        return query_shard(reason, self.meta.name, self.meta.uuid, cause)

    def create_error(self, exc: Exception, java: str = "number_format_exception") -> EsError:
        msg = str(exc)
        if isinstance(exc, DateError):
            cause = EsError(400, "parse_exception", f"{msg}: [{msg}]", caused_by=EsError(400, "illegal_argument_exception", msg))
            return self.shard_error(f"failed to create query: {msg}", cause)
        return self.shard_error(f"failed to create query: {msg}", EsError(400, java, msg))

    def fts_in(self, expr: str) -> str:
        return f"+d.rowid IN (SELECT rowid FROM x.{self.fts_table} WHERE {self.fts_table} MATCH {self.p(expr)})"

    def fts_cond(self, expr: str, scoring: bool) -> Cond:
        if not expr:
            return _none()
        return Cond(self.fts_in(expr), fts=expr, score_fts=[expr] if scoring else [])

    def narrowed(self, f: Field, sql: str, value: str, score: str) -> Cond:
        """An exact test on ``f``, with an FTS5 way in when one exists: its own exact terms, or
        (a text field's ``.keyword``) the parent's tokens, a superset to test row by row."""
        if f.exact:
            return Cond(sql, fts=analysis.q_exact(f.num, value), score=score)
        parent = self.mapping.get(f.parent) if f.parent else None
        if parent is not None and parent.kind == "text" and parent.indexed:
            expr = analysis.q_phrase(parent.col, parent.num, analysis.tokens(value))
            if expr:
                return Cond(sql, fts=expr, score=score, exact=False)
        return Cond(sql, score=score)

    def pred(self, f: Field, *tests: tuple[str, Any]) -> str:
        """``value <op> <param>`` tests that one value of ``f`` must pass (every test)."""
        col = f"d.c{f.num}"
        phs = [(op, self.p(v)) for op, v in tests]
        scalar = " AND ".join(f"+{col} {op} {ph}" for op, ph in phs)
        if not f.multi:
            return f"({scalar})" if len(phs) > 1 else scalar
        each = " AND ".join(f"value {op} {ph}" for op, ph in phs)
        return (f"(CASE WHEN typeof({col}) = 'blob' THEN EXISTS (SELECT 1 FROM json_each(CAST({col} AS TEXT)) WHERE {each}) "
                f"ELSE {scalar} END)")

    def pred_sql(self, f: Field, template: str) -> str:
        """A test written over ``{v}`` (one value of ``f``)."""
        col = f"d.c{f.num}"
        if not f.multi:
            return template.format(v=f"+{col}")
        return (f"(CASE WHEN typeof({col}) = 'blob' THEN EXISTS (SELECT 1 FROM json_each(CAST({col} AS TEXT)) "
                f"WHERE {template.format(v='value')}) ELSE {template.format(v='+' + col)} END)")

    def fields_for(self, name: str) -> list[Field]:
        return self.mapping.expand(name) if "*" in name else [f for f in [self.mapping.get(name)] if f is not None]

    def check_indexed(self, f: Field) -> None:
        if not f.indexed and not f.doc_values:
            why = f"Cannot search on field [{f.path}] since it is not indexed."
            raise self.shard_error(f"failed to create query: {why}", EsError(400, "illegal_argument_exception", why))

    # --- entry ------------------------------------------------------------------------------------

    def compile(self, q: dsl.Q, scoring: bool = True) -> Cond:
        method = getattr(self, "c_" + type(q).__name__, None)
        if method is None:
            raise EsError(400, "illegal_argument_exception", f"[{type(q).__name__}] is not supported")
        cond: Cond = method(q, scoring)
        return cond

    def c_QueryError(self, q: dsl.QueryError, scoring: bool) -> Cond:
        err = q.error or EsError(400, "query_shard_exception", "failed to parse query")
        meta = {"index_uuid": self.meta.uuid, "index": self.meta.name}
        raise EsError(err.status, err.type, err.reason, caused_by=err.caused_by, meta=meta)

    def c_QueryString(self, q: dsl.QueryString, scoring: bool) -> Cond:
        tree = self.qs_cache.get(id(q))
        if tree is None:
            tree = self.qs_cache[id(q)] = lucene.to_query(q)
        return self.compile(tree, scoring)

    def c_MatchAll(self, q: dsl.MatchAll, scoring: bool) -> Cond:
        return _all(repr(q.boost) if scoring else "0")

    def c_MatchNone(self, q: dsl.MatchNone, scoring: bool) -> Cond:
        return _none()

    def c_ConstantScore(self, q: dsl.ConstantScore, scoring: bool) -> Cond:
        inner = self.compile(q.filter, False)
        inner.score = repr(q.boost) if scoring else "0"
        inner.score_fts = []
        return inner

    def c_Ids(self, q: dsl.Ids, scoring: bool) -> Cond:
        if not q.values:
            return _none()
        return Cond(f"d._id IN ({', '.join(self.p(v) for v in q.values)})", score=repr(q.boost) if scoring else "0")

    def _meta_field(self, name: str, values: list[Any], scoring: bool, boost: float) -> Cond | None:
        score = repr(boost) if scoring else "0"
        if name == "_id":
            return Cond(f"d._id IN ({', '.join(self.p(to_string(v)) for v in values)})", score=score)
        if name == "_index":
            return _all(score) if self.meta.name in [to_string(v) for v in values] else _none()
        if name == "_type":
            return _all(score) if "_doc" in [to_string(v) for v in values] else _none()
        return None

    # --- term-level ---------------------------------------------------------------------------------

    def c_Term(self, q: dsl.Term, scoring: bool) -> Cond:
        special = self._meta_field(q.field, [q.value], scoring, q.boost)
        if special is not None:
            return special
        return _or([self.term(f, q.value, scoring, q.boost, ci=q.case_insensitive) for f in self.fields_for(q.field)])

    def term(self, f: Field, value: Any, scoring: bool, boost: float = 1.0, *, ci: bool = False, lenient: bool = False) -> Cond:
        score = repr(boost) if scoring else "0"
        kind = f.kind
        if kind in ("object", "none"):
            return _none()
        self.check_indexed(f)
        if kind == "text":
            token = to_string(value)
            if token != token.lower():
                return _none()  # indexed tokens are lowercase: ES's term query finds nothing either
            return self.fts_cond(analysis.q_word(f.col, f.num, token), scoring)
        try:
            if kind == "keyword":
                s = to_string(value)
                if f.ignore_above is not None and len(s) > f.ignore_above:
                    return _none()
                if ci:
                    return Cond(self.pred_sql(f, f"lower({{v}}) = lower({self.p(s)})"), score=score)
                return self.narrowed(f, self.pred(f, ("=", s)), s, score)
            if kind == "long":
                n = _number(value)
                if n != int(n):
                    return _none()
                return self.narrowed(f, self.pred(f, ("=", int(n))), str(int(n)), score)
            if kind == "double":
                return Cond(self.pred(f, ("=", _number(value))), score=score)
            if kind == "bool":
                b = to_bool(value if not isinstance(value, str) else value.strip().lower())
                return self.narrowed(f, self.pred(f, ("=", b)), str(b), score)
            if kind == "date":
                text = to_string(value)
                lo = self._date(f, text, None, False, None)
                hi = self._date(f, text, None, True, None)
                return self._date_range(f, [(">=", lo), ("<=", hi)], score)
        except (ValueError, DateError) as exc:
            if lenient:
                return _none()
            raise self.create_error(exc) from None
        return _none()

    def c_Terms(self, q: dsl.Terms, scoring: bool) -> Cond:
        special = self._meta_field(q.field, q.values, scoring, q.boost)
        if special is not None:
            return special
        out: list[Cond] = []
        for f in self.fields_for(q.field):
            if f.kind == "keyword" and not f.multi and f.exact:
                vals = [to_string(v) for v in q.values if f.ignore_above is None or len(to_string(v)) <= f.ignore_above]
                if vals:
                    sql = f"+d.c{f.num} IN ({', '.join(self.p(v) for v in vals)})"
                    fts = analysis.q_or([analysis.q_exact(f.num, v) for v in vals])
                    out.append(Cond(sql, fts=fts, score=repr(q.boost) if scoring else "0"))
            else:
                out.append(_or([self.term(f, v, scoring, q.boost) for v in q.values]))
        return _or(out, repr(q.boost) if scoring else "0")

    def _date(self, f: Field, value: Any, fmt: str | None, round_up: bool, tz: str | None) -> int:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
        zone = parse_tz(tz) if tz else None
        return parse_math(str(value), self.now, DateFormat.of(fmt) if fmt else (f.fmt or DateFormat.of(None)), round_up=round_up, tz=zone)

    def _date_range(self, f: Field, tests: list[tuple[str, int]], score: str) -> Cond:
        cond = Cond(self.pred(f, *tests), score=score)
        if not f.multi and tests:
            cond.date = " AND ".join(f"d.c{f.num} {op} {self.p(v)}" for op, v in tests)
        return cond

    def c_Range(self, q: dsl.Range, scoring: bool) -> Cond:
        score = repr(q.boost) if scoring else "0"
        out: list[Cond] = []
        for f in self.fields_for(q.field):
            if f.kind in ("object", "none", "text"):
                continue  # Deliberate difference: no term ranges on text fields
            self.check_indexed(f)
            bounds = [(">=", q.gte, False), (">", q.gt, True), ("<=", q.lte, True), ("<", q.lt, False)]
            tests: list[tuple[str, Any]] = []
            try:
                for op, v, round_up in bounds:
                    if v is None:
                        continue
                    if f.kind == "date":
                        tests.append((op, self._date(f, v, q.format, round_up, q.time_zone)))
                    elif f.kind in ("long", "double"):
                        tests.append((op, _number(v)))
                    elif f.kind == "bool":
                        tests.append((op, to_bool(v)))
                    else:
                        tests.append((op, to_string(v)))
            except (ValueError, DateError) as exc:
                raise self.create_error(exc) from None
            if not tests:
                out.append(Cond(f"+d.c{f.num} IS NOT NULL", score=score))
            elif f.kind == "date":
                out.append(self._date_range(f, tests, score))
            else:
                out.append(Cond(self.pred(f, *tests), score=score))
        return _or(out, score)

    def c_Exists(self, q: dsl.Exists, scoring: bool) -> Cond:
        score = repr(q.boost) if scoring else "0"
        if q.field in ("_id", "_index", "_type", "_source"):
            return _all(score)
        targets = self.fields_for(q.field)
        obj = self.mapping.get(q.field)
        if obj is not None and obj.kind == "object":
            targets = [f for p, f in self.mapping.fields.items() if p.startswith(q.field + ".") and f.kind != "object"]
        out: list[Cond] = []
        for f in targets:
            if f.kind == "text" and f.indexed:
                out.append(Cond(self.fts_in(analysis.q_exists(f.num)), fts=analysis.q_exists(f.num), score=score))
            elif f.kind in ("keyword", "long", "double", "date", "bool") and f.doc_values:
                out.append(Cond(f"+d.c{f.num} IS NOT NULL", score=score))
        return _or(out, score)

    def c_Prefix(self, q: dsl.Prefix, scoring: bool) -> Cond:
        score = repr(q.boost) if scoring else "0"
        if q.field == "_id":
            return Cond(f"substr(d._id, 1, {len(q.value)}) = {self.p(q.value)}", score=score)
        if q.field == "_index":
            return _all(score) if self.meta.name.startswith(q.value) else _none()
        out: list[Cond] = []
        for f in self.fields_for(q.field):
            if f.kind == "text":
                value = q.value.lower() if (q.analyzed or q.case_insensitive) else q.value
                expr = analysis.q_text_prefix(f.col, f.num, value)
                if expr:
                    out.append(Cond(self.fts_in(expr), fts=expr, score=score))
            elif f.kind == "keyword":
                n, ph = len(q.value), self.p(q.value)
                if q.case_insensitive:
                    out.append(Cond(self.pred_sql(f, f"lower(substr({{v}}, 1, {n})) = lower({ph})"), score=score))
                else:
                    test = self.pred_sql(f, f"substr({{v}}, 1, {n}) = {ph}")
                    out.append(Cond(test, fts=analysis.q_exact_prefix(f.num, q.value) if f.exact else None, score=score))
            elif f.kind in ("long", "double", "date", "bool") and "*" not in q.field:
                raise self.shard_error(f"failed to create query: Can only use prefix queries on keyword, text and wildcard fields - "
                                       f"not on [{f.path}] which is of type [{f.type}]")
        return _or(out, score)

    def c_Wildcard(self, q: dsl.Wildcard, scoring: bool) -> Cond:
        score = repr(q.boost) if scoring else "0"
        out: list[Cond] = []
        for f in self.fields_for(q.field):
            if f.kind == "text":
                pattern = q.value.lower() if q.analyzed else q.value
                out.append(self._expand(f, _matcher(_wildcard_regex(pattern)), _literal_prefix(pattern), scoring))
            elif f.kind == "keyword":
                value = q.value.lower() if q.case_insensitive else q.value
                ph = self.p(_glob(value))
                test = f"lower({{v}}) GLOB {ph}" if q.case_insensitive else f"{{v}} GLOB {ph}"
                out.append(Cond(self.pred_sql(f, test), score=score))
        return _or(out, score)

    def c_Regexp(self, q: dsl.Regexp, scoring: bool) -> Cond:
        score = repr(q.boost) if scoring else "0"
        out: list[Cond] = []
        for f in self.fields_for(q.field):
            try:
                rx = re.compile(q.value, re.I if q.case_insensitive else 0)
            except re.error as exc:
                raise self.shard_error(f"failed to create query: {exc}", EsError(400, "illegal_argument_exception", str(exc))) from None
            if f.kind == "text":
                out.append(self._expand(f, _matcher(rx), "", scoring))
            elif f.kind == "keyword":
                pattern = ("(?i)" if q.case_insensitive else "") + q.value
                out.append(Cond(self.pred_sql(f, f"{{v}} REGEXP {self.p(pattern)}"), score=score))
        return _or(out, score)

    def c_Fuzzy(self, q: dsl.Fuzzy, scoring: bool) -> Cond:
        out: list[Cond] = []
        for f in self.fields_for(q.field):
            if f.kind in ("text", "keyword"):
                value = q.value.lower() if (q.analyzed and f.kind == "text") else q.value
                out.append(self._fuzzy(f, value, q.fuzziness, scoring))
        return _or(out, repr(q.boost) if scoring else "0")

    def _fuzzy(self, f: Field, value: str, fuzziness: str, scoring: bool) -> Cond:
        edits = _edits(fuzziness, value)
        return self._expand(f, lambda t: _within(t, value, edits), "", scoring)

    def _expand(self, f: Field, keep: Callable[[str], bool], prefix: str, scoring: bool) -> Cond:
        """A multi-term query on ``f``: the matching terms of the index's vocabulary, OR-ed."""
        if f.kind != "text":
            return self._expand_values(f, keep, prefix)
        if f.col:
            col, head, cut = f"t{f.col}", prefix, 0
        else:
            col, head = "k", f"{f.num}x{prefix}"
            cut = len(f"{f.num}x")
        if not self.hwm:
            return _none()  # nothing searchable yet, and no vocabulary table
        rows = self.db.execute(f"SELECT DISTINCT term FROM x.v{self.meta.num} WHERE col = ? AND term >= ? AND term < ?",
                               (col, head, head + "\U0010ffff"))
        terms: list[str] = []
        for (term,) in rows:
            text = term[cut:]
            if keep(text):
                terms.append(text)
                if len(terms) >= MAX_EXPANSIONS:
                    break
        if not terms:
            return _none()
        return self.fts_cond(analysis.q_text_terms(f.col, f.num, terms), scoring)

    def _expand_values(self, f: Field, keep: Callable[[str], bool], prefix: str) -> Cond:
        """A multi-term query on a keyword field: its distinct doc values, tested in Python."""
        rows = self.db.execute(f"SELECT DISTINCT c{f.num} FROM d{self.meta.num} WHERE c{f.num} >= ? AND c{f.num} < ?",
                               (prefix, prefix + "\U0010ffff")) if f.num in self.meta.columns else []
        terms = [v for (v,) in rows if isinstance(v, str) and keep(v)][:MAX_EXPANSIONS * 16]
        if not terms:
            return _none()
        return Cond(self.pred_sql(f, f"{{v}} IN ({', '.join(self.p(t) for t in terms)})"))

    # --- full text ----------------------------------------------------------------------------------

    def c_Match(self, q: dsl.Match, scoring: bool) -> Cond:
        fields = self.fields_for(q.field)
        lenient = q.lenient or "*" in q.field
        return _or([self.match(f, q, scoring, lenient) for f in fields if f.kind not in ("object", "none")])

    def match(self, f: Field, q: dsl.Match, scoring: bool, lenient: bool) -> Cond:
        if f.kind != "text":
            return self.term(f, q.query, scoring, q.boost, lenient=lenient)
        toks = analysis.tokens(to_string(q.query))
        if not toks:
            return _none() if q.zero_terms_none else _all()
        if q.fuzziness is not None:
            parts = [self._fuzzy(f, t, q.fuzziness, scoring) for t in toks]
            if q.operator == "and":
                return self._and(parts, scoring)
            return _or(parts)
        terms = [t for t in (analysis.q_word(f.col, f.num, t) for t in dict.fromkeys(toks)) if t]
        if not terms:
            return _none() if q.zero_terms_none else _all()
        if q.operator == "and":
            return self.fts_cond(analysis.q_and(terms), scoring)
        need = dsl.should_match(q.minimum_should_match, len(terms)) if q.minimum_should_match is not None else 1
        if need <= 1:
            return self.fts_cond(analysis.q_or(terms), scoring)
        if need >= len(terms):
            return self.fts_cond(analysis.q_and(terms), scoring)
        combos = list(combinations(terms, need))
        if len(combos) > 64:
            return self.fts_cond(analysis.q_or(terms), scoring)
        return self.fts_cond(analysis.q_or([analysis.q_and(list(c)) for c in combos]), scoring)

    def c_MatchPhrase(self, q: dsl.MatchPhrase, scoring: bool) -> Cond:
        out: list[Cond] = []
        lenient = "*" in q.field
        for f in self.fields_for(q.field):
            if f.kind in ("object", "none"):
                continue
            if f.kind == "keyword" and q.prefix:
                out.append(self.c_Prefix(dsl.Prefix(field=f.path, value=to_string(q.query), boost=q.boost), scoring))
            elif f.kind != "text":
                out.append(self.term(f, q.query, scoring, q.boost, lenient=lenient))
            else:
                toks = analysis.tokens(to_string(q.query))
                if not toks:
                    continue
                if q.slop and len(toks) > 1 and not q.prefix:
                    expr = analysis.q_near(f.col, f.num, toks, q.slop)
                else:
                    expr = analysis.q_phrase(f.col, f.num, toks, prefix_last=q.prefix)
                out.append(self.fts_cond(expr, scoring))
        return _or(out)

    def c_MultiMatch(self, q: dsl.MultiMatch, scoring: bool) -> Cond:
        names = [re.sub(r"\^[\d.]+$", "", n) for n in (q.fields or ["*"])]
        out: list[Cond] = []
        for name in names:
            if q.type in ("phrase", "phrase_prefix"):
                phrase = dsl.MatchPhrase(field=name, query=q.query, slop=q.slop, prefix=q.type == "phrase_prefix")
                out.append(self.c_MatchPhrase(phrase, scoring))
            else:
                m = dsl.Match(field=name, query=q.query, operator=q.operator, minimum_should_match=q.minimum_should_match,
                              lenient=q.lenient or "*" in name, boost=q.boost)
                out.append(self.c_Match(m, scoring))
        return _or(out)

    # --- compound -----------------------------------------------------------------------------------

    def _and(self, conds: list[Cond], scoring: bool) -> Cond:
        if any(c.const is False for c in conds):
            return _none()
        live = [c for c in conds if c.const is not True]
        score = " + ".join(c.score for c in conds if c.score != "0") or "0"
        if not live:
            return _all(score)
        out = Cond(" AND ".join(c.sql for c in live), score=score, score_fts=[s for c in conds for s in c.score_fts],
                   exact=all(c.exact for c in live))
        if all(c.fts for c in live):
            out.fts = analysis.q_and([c.fts for c in live if c.fts])
        out.conj = [part for c in live for part in c.parts()]
        if len(out.conj) == 1:
            only = out.conj[0]
            out.date = only.date
        return out

    def c_Bool(self, q: dsl.Bool, scoring: bool) -> Cond:
        must = [self.compile(c, scoring) for c in q.must]
        filters = [self.compile(c, False) for c in q.filter]
        should = [self.compile(c, scoring) for c in q.should]
        must_not = [self.compile(c, False) for c in q.must_not]
        if q.minimum_should_match is not None:
            need = dsl.should_match(q.minimum_should_match, len(should))
        else:
            need = 1 if should and not must and not filters else 0
        required = must + filters
        if need >= 1 and should:
            if need == 1:
                required.append(_or(should))
            elif need > len([s for s in should if s.const is not False]):
                return _none()
            else:
                summed = " + ".join(f"COALESCE(({s.sql}), 0)" for s in should)
                required.append(Cond(f"({summed}) >= {need}"))
        elif need > 0 and not should:
            return _none()
        negatives = [c for c in must_not if c.const is not False]
        if any(c.const is True for c in negatives):
            return _none()
        if negatives:
            neg = _or(negatives)
            pos_fts = analysis.q_and([c.fts for c in required if c.fts]) if required and all(c.fts for c in required) else None
            if not neg.exact:
                pos_fts = None
            cond_neg = Cond(f"({neg.sql}) IS NOT 1")
            required.append(cond_neg)
            out = self._and(required, scoring)
            if pos_fts and neg.fts:
                out.fts = f"({pos_fts}) NOT ({neg.fts})"
                out.exact = all(c.exact for c in required)
        else:
            out = self._and(required, scoring) if required else _all()
        if scoring:
            extra = [f"(CASE WHEN ({s.sql}) THEN {s.score} ELSE 0 END)" for s in should if s.score != "0" and s.const is not False]
            base = [c.score for c in must if c.score != "0"]
            out.score = " + ".join(base + extra) or ("0" if required or must_not else "1.0")
            if not q.must and not q.should and (q.filter or q.must_not):
                out.score = "0"
            out.score_fts = [s for c in must for s in c.score_fts] + [s for c in should for s in c.score_fts]
        else:
            out.score, out.score_fts = "0", []
        return out


def _number(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"For input string: \"{str(v).lower()}\"")
    if isinstance(v, (int, float)):
        return v
    try:
        s = str(v).strip()
        return int(s) if re.fullmatch(r"[+-]?\d+", s) else float(s)
    except ValueError:
        raise ValueError(f'For input string: "{v}"') from None


def _matcher(rx: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda term: rx.fullmatch(term) is not None


def _glob(pattern: str) -> str:
    """An ES wildcard (``*``, ``?``, ``\\`` escapes) as a SQLite GLOB pattern."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(f"[{nxt}]" if nxt in "*?[" else nxt)
            i += 2
            continue
        out.append("[[]" if c == "[" else c)
        i += 1
    return "".join(out)


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.S)


def _literal_prefix(pattern: str) -> str:
    m = re.match(r"[^*?\\]*", pattern)
    return m.group(0) if m else ""


def _edits(fuzziness: str, term: str) -> int:
    f = fuzziness.upper()
    if f.startswith("AUTO"):
        lo, hi = 3, 6
        if ":" in f:
            a, b = f[5:].split(",")
            lo, hi = int(a), int(b)
        return 0 if len(term) < lo else 1 if len(term) < hi else 2
    try:
        return min(2, int(float(f)))
    except ValueError:
        return 2


def _within(a: str, b: str, k: int) -> bool:
    """Damerau-Levenshtein (optimal string alignment) distance of ``a`` and ``b`` ≤ ``k``."""
    if abs(len(a) - len(b)) > k:
        return False
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > k:
            return False
        prev2, prev = prev, cur
    return prev[len(b)] <= k
