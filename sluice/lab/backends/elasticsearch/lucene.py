"""Lucene query syntax (``q=`` and ``query_string``), parsed with luqum into :mod:`.dsl` nodes.

A bare term becomes a ``match`` on the default fields (``*``: every field, leniently, as ES's
``index.query.default_field``), ``"a b"`` a ``match_phrase``, ``a*`` a ``wildcard``, ``[a TO b]``
/ ``>=a`` a ``range``, ``/re/`` a ``regexp``, ``a~1`` a ``fuzzy``, ``"a b"~2`` a sloppy phrase,
``_exists_:f`` an ``exists``; ``+``/``-``/``NOT``/``AND``/``OR`` and the implicit operator
(``default_operator``) build ``bool`` queries.

Deliberate difference: luqum gives ``AND`` precedence over ``OR`` (Lucene's classic parser
applies modifiers left to right, so ``a AND b OR c`` differs), and a parse error's wording is
luqum's.
"""

from __future__ import annotations

import threading
from typing import Any

from luqum import tree  # type: ignore[import-untyped]
from luqum.exceptions import ParseError  # type: ignore[import-untyped]
from luqum.parser import parser as _parser  # type: ignore[import-untyped]

from sluice.lab.backends.elasticsearch import dsl
from sluice.lab.backends.elasticsearch.errors import EsError

_LOCK = threading.Lock()  # ply's parser keeps state between calls


def parse(text: str) -> tree.Item:
    with _LOCK:
        return _parser.parse(text)


def to_query(qs: dsl.QueryString) -> dsl.Q:
    """The DSL tree for a query_string; a syntax error becomes a :class:`dsl.QueryError` that
    each index reports as its shard failure (``query_shard_exception``)."""
    text = qs.query.strip()
    if not text:
        return dsl.MatchNone()
    try:
        item = parse(text)
    except (ParseError, Exception) as exc:  # luqum raises a few kinds, ply more
        cause = EsError(400, "parse_exception", f"Cannot parse '{qs.query}': {exc}")
        return dsl.QueryError(error=EsError(400, "query_shard_exception", f"Failed to parse query [{qs.query}]", caused_by=cause))
    fields = qs.fields or [qs.default_field or "*"]
    lenient = qs.lenient if qs.lenient is not None else any("*" in f for f in fields)
    return _Builder(qs, lenient).build(item, fields)


def _unescape(s: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _has_wildcard(s: str) -> bool:
    i = 0
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s[i] in "*?":
            return True
        i += 1
    return False


class _Builder:
    def __init__(self, qs: dsl.QueryString, lenient: bool) -> None:
        self.qs = qs
        self.lenient = lenient

    def build(self, item: tree.Item, fields: list[str]) -> dsl.Q:
        if isinstance(item, tree.SearchField):
            name = _unescape(str(item.name))
            if name == "_exists_":
                return dsl.Exists(field=_unescape(str(item.expr).strip('"')))
            return self.build(item.expr, [name])
        if isinstance(item, (tree.Group, tree.FieldGroup)):
            return self.build(item.expr, fields)
        if isinstance(item, tree.AndOperation):
            return dsl.Bool(must=[self.build(c, fields) for c in item.children])
        if isinstance(item, tree.OrOperation):
            return dsl.Bool(should=[self.build(c, fields) for c in item.children])
        if isinstance(item, tree.UnknownOperation):
            return self._implicit(item, fields)
        if isinstance(item, (tree.Not, tree.Prohibit)):
            return dsl.Bool(must=[dsl.MatchAll()], must_not=[self.build(item.a, fields)])
        if isinstance(item, tree.Plus):
            return self.build(item.a, fields)
        if isinstance(item, tree.Boost):
            q = self.build(item.expr, fields)
            q.boost = float(item.force)
            return q
        return self._per_field(item, fields)

    def _implicit(self, item: tree.UnknownOperation, fields: list[str]) -> dsl.Q:
        q = dsl.Bool()
        for child in item.children:
            if isinstance(child, (tree.Not, tree.Prohibit)):
                q.must_not.append(self.build(child.a, fields))
            elif isinstance(child, tree.Plus):
                q.must.append(self.build(child.a, fields))
            elif self.qs.default_operator == "and":
                q.must.append(self.build(child, fields))
            else:
                q.should.append(self.build(child, fields))
        if q.should and not q.must:
            q.minimum_should_match = 1
        if q.must_not and not q.must and not q.should:
            q.must.append(dsl.MatchAll())
        return q

    def _per_field(self, item: tree.Item, fields: list[str]) -> dsl.Q:
        queries = [self._leaf(item, f) for f in fields]
        return queries[0] if len(queries) == 1 else dsl.Bool(should=queries, minimum_should_match=1)

    def _leaf(self, item: tree.Item, field: str) -> dsl.Q:
        if isinstance(item, tree.Proximity) and isinstance(item.term, tree.Phrase):
            return dsl.MatchPhrase(field=field, query=_unescape(item.term.value[1:-1]), slop=int(item.degree or 0))
        if isinstance(item, tree.Phrase):
            return dsl.MatchPhrase(field=field, query=_unescape(item.value[1:-1]))
        if isinstance(item, tree.Fuzzy):
            value = _unescape(str(item.term.value))
            implicit = getattr(item, "_implicit_degree", False) or item.degree is None
            return dsl.Fuzzy(field=field, value=value, fuzziness="AUTO" if implicit else str(int(item.degree)), analyzed=True)
        if isinstance(item, tree.Regex):
            return dsl.Regexp(field=field, value=item.value[1:-1], analyzed=True)
        if isinstance(item, tree.Range):
            return self._range(field, item.low, item.high, item.include_low, item.include_high)
        if isinstance(item, tree.From):
            return self._range(field, item.a, None, item.include, False)
        if isinstance(item, tree.To):
            return self._range(field, None, item.a, False, item.include)
        if isinstance(item, tree.Term):
            raw = str(item.value)
            if raw == "*":
                return dsl.MatchAll() if field == "*" else dsl.Exists(field=field)
            if _has_wildcard(raw):
                if raw.endswith("*") and not _has_wildcard(raw[:-1]):
                    return dsl.Prefix(field=field, value=_unescape(raw[:-1]), analyzed=True)
                return dsl.Wildcard(field=field, value=raw, analyzed=True)
            return dsl.Match(field=field, query=_unescape(raw), lenient=self.lenient)
        raise EsError(400, "query_shard_exception", f"Failed to parse query [{self.qs.query}]")

    def _range(self, field: str, low: Any, high: Any, inc_low: bool, inc_high: bool) -> dsl.Q:
        q = dsl.Range(field=field, time_zone=self.qs.time_zone)
        lo, hi = _bound(low), _bound(high)
        if lo is not None:
            if inc_low:
                q.gte = lo
            else:
                q.gt = lo
        if hi is not None:
            if inc_high:
                q.lte = hi
            else:
                q.lt = hi
        return q


def _bound(item: Any) -> str | None:
    if item is None:
        return None
    text = str(getattr(item, "value", item)).strip()
    if text == "*":
        return None
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        text = text[1:-1]
    return _unescape(text)
