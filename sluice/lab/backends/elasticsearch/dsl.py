"""The query DSL, parsed into plain nodes with ES's request-level errors (``parsing_exception``:
an unknown query, a malformed clause, an unsupported parameter). Nothing here knows a mapping:
what a field means is decided per index by :mod:`.compile` (errors there are shard failures)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from sluice.lab.backends.elasticsearch.errors import EsError, parsing


@dataclass(slots=True)
class Q:
    boost: float = 1.0


@dataclass(slots=True)
class MatchAll(Q):
    pass


@dataclass(slots=True)
class MatchNone(Q):
    pass


@dataclass(slots=True)
class Term(Q):
    field: str = ""
    value: Any = None
    case_insensitive: bool = False


@dataclass(slots=True)
class Terms(Q):
    field: str = ""
    values: list[Any] = dc_field(default_factory=list)


@dataclass(slots=True)
class Range(Q):
    field: str = ""
    gte: Any = None
    gt: Any = None
    lte: Any = None
    lt: Any = None
    format: str | None = None
    time_zone: str | None = None


@dataclass(slots=True)
class Exists(Q):
    field: str = ""


@dataclass(slots=True)
class QueryError(Q):
    """A query_string that did not parse: a shard failure when compiled (ES parses it per shard)."""

    error: EsError | None = None


@dataclass(slots=True)
class Prefix(Q):
    field: str = ""
    value: str = ""
    case_insensitive: bool = False
    analyzed: bool = False
    """From query_string: lowercased on ``text`` fields (the analyzer's normalizer)."""


@dataclass(slots=True)
class Wildcard(Q):
    field: str = ""
    value: str = ""
    case_insensitive: bool = False
    analyzed: bool = False
    """From query_string: lowercased on ``text`` fields (the analyzer's normalizer)."""


@dataclass(slots=True)
class Regexp(Q):
    field: str = ""
    value: str = ""
    case_insensitive: bool = False
    analyzed: bool = False
    """From query_string: lowercased on ``text`` fields (the analyzer's normalizer)."""


@dataclass(slots=True)
class Fuzzy(Q):
    field: str = ""
    value: str = ""
    fuzziness: str = "AUTO"
    analyzed: bool = False


@dataclass(slots=True)
class Ids(Q):
    values: list[str] = dc_field(default_factory=list)


@dataclass(slots=True)
class Match(Q):
    field: str = ""
    query: Any = None
    operator: str = "or"
    minimum_should_match: Any = None
    zero_terms_none: bool = True
    lenient: bool = False
    fuzziness: str | None = None


@dataclass(slots=True)
class MatchPhrase(Q):
    field: str = ""
    query: Any = None
    slop: int = 0
    prefix: bool = False


@dataclass(slots=True)
class MultiMatch(Q):
    fields: list[str] = dc_field(default_factory=list)
    query: Any = None
    type: str = "best_fields"
    operator: str = "or"
    minimum_should_match: Any = None
    lenient: bool = False
    slop: int = 0


@dataclass(slots=True)
class QueryString(Q):
    query: str = ""
    default_field: str | None = None
    fields: list[str] = dc_field(default_factory=list)
    default_operator: str = "or"
    lenient: bool | None = None
    analyze_wildcard: bool = False
    allow_leading_wildcard: bool = True
    time_zone: str | None = None
    simple: bool = False


@dataclass(slots=True)
class Bool(Q):
    must: list[Q] = dc_field(default_factory=list)
    filter: list[Q] = dc_field(default_factory=list)
    should: list[Q] = dc_field(default_factory=list)
    must_not: list[Q] = dc_field(default_factory=list)
    minimum_should_match: Any = None


@dataclass(slots=True)
class ConstantScore(Q):
    filter: Q = dc_field(default_factory=MatchAll)


# --- parsing ------------------------------------------------------------------------------------

_UNSUPPORTED = {
    "function_score", "script_score", "script", "geo_bounding_box", "geo_distance", "geo_polygon", "geo_shape", "shape",
    "more_like_this", "percolate", "has_child", "has_parent", "parent_id", "span_term", "span_first", "span_near", "span_or",
    "span_not", "span_containing", "span_within", "span_multi", "field_masking_span", "intervals", "distance_feature",
    "pinned", "wrapper", "terms_set", "rank_feature", "combined_fields", "boosting",
}


def _num(v: Any, what: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise parsing(f"[{what}] failed to parse field [boost]") from None


def _bool(v: Any, name: str, what: str) -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return bool(v == "true")
    raise parsing(f"[{what}] failed to parse field [{name}]", caused_by=EsError(
        400, "illegal_argument_exception", f"Failed to parse value [{v}] as only [true] or [false] are allowed."))


def _scalar(v: Any, what: str) -> Any:
    if isinstance(v, (dict, list)):
        if isinstance(v, list):
            raise parsing(f"[{what}] query does not support array of values")
        raise parsing(f"[{what}] unknown token [START_OBJECT]")
    return v


def _one_field(body: Any, what: str, extra: tuple[str, ...] = ()) -> tuple[str, Any, dict[str, Any]]:
    """Queries of the shape ``{"<field>": value-or-params}``; ``extra`` keys may sit beside the field."""
    if not isinstance(body, dict):
        raise parsing(f"[{what}] query malformed, no start_object after query name")
    fields = [k for k in body if k not in extra]
    if not fields:
        raise parsing(f"[{what}] query malformed, no field specified" if what != "exists" else "[exists] must be provided with a [field]")
    if len(fields) > 1:
        raise parsing(f"[{what}] query doesn't support multiple fields, found [{fields[0]}] and [{fields[1]}]")
    name = fields[0]
    return name, body[name], {k: body[k] for k in extra if k in body}


def _long_form(value: Any, what: str, allowed: set[str], value_keys: tuple[str, ...] = ("value",)) -> tuple[Any, dict[str, Any]]:
    if not isinstance(value, dict):
        return _scalar(value, what), {}
    for k in value:
        if k not in allowed and k not in value_keys:
            raise parsing(f"[{what}] query does not support [{k}]")
    for k in value_keys:
        if k in value:
            return _scalar(value[k], what), value
    raise parsing(f"[{what}] query requires a value" if what != "term" else "[term] query requires a value")


def _common(q: Q, params: dict[str, Any], what: str) -> Q:
    if "boost" in params:
        q.boost = _num(params["boost"], what)
    return q


def _match_all(body: Any) -> Q:
    if not isinstance(body, dict):
        raise parsing("[match_all] query malformed, no start_object after query name")
    for k in body:
        if k not in ("boost", "_name"):
            raise parsing(f"[match_all] query does not support [{k}]")
    return _common(MatchAll(), body, "match_all")


def _term(body: Any) -> Q:
    name, raw, _ = _one_field(body, "term")
    value, params = _long_form(raw, "term", {"boost", "_name", "case_insensitive"})
    q = Term(field=name, value=value, case_insensitive=_bool(params.get("case_insensitive", False), "case_insensitive", "term"))
    return _common(q, params, "term")


def _terms(body: Any) -> Q:
    name, raw, params = _one_field(body, "terms", ("boost", "_name"))
    if isinstance(raw, dict):
        raise EsError(400, "illegal_argument_exception", "terms lookup is not supported by this stand-in")
    if not isinstance(raw, list):
        raise parsing(f"[terms] query does not support [{name}]")
    return _common(Terms(field=name, values=[_scalar(v, "terms") for v in raw]), params, "terms")


_RANGE_KEYS = {"gte", "gt", "lte", "lt", "from", "to", "include_lower", "include_upper", "format", "time_zone", "boost", "relation",
               "_name"}


def _range(body: Any) -> Q:
    name, raw, _ = _one_field(body, "range")
    if not isinstance(raw, dict):
        raise parsing(f"[range] query does not support [{name}]")
    for k in raw:
        if k not in _RANGE_KEYS:
            raise parsing(f"[range] query does not support [{k}]")
    q = Range(field=name, format=raw.get("format"), time_zone=raw.get("time_zone"))
    lower_inc = _bool(raw.get("include_lower", True), "include_lower", "range")
    upper_inc = _bool(raw.get("include_upper", True), "include_upper", "range")
    if raw.get("from") is not None:
        if lower_inc:
            q.gte = _scalar(raw["from"], "range")
        else:
            q.gt = _scalar(raw["from"], "range")
    if raw.get("to") is not None:
        if upper_inc:
            q.lte = _scalar(raw["to"], "range")
        else:
            q.lt = _scalar(raw["to"], "range")
    for k in ("gte", "gt", "lte", "lt"):
        if raw.get(k) is not None:
            setattr(q, k, _scalar(raw[k], "range"))
    return _common(q, raw, "range")


def _exists(body: Any) -> Q:
    if not isinstance(body, dict) or "field" not in body:
        raise parsing("[exists] must be provided with a [field]")
    for k in body:
        if k not in ("field", "boost", "_name"):
            raise parsing(f"[exists] query does not support [{k}]")
    return _common(Exists(field=str(body["field"])), body, "exists")


def _prefix_like(cls: type[Prefix] | type[Wildcard] | type[Regexp], what: str, value_keys: tuple[str, ...]) -> Any:
    def parse(body: Any) -> Q:
        name, raw, _ = _one_field(body, what)
        allowed = {"boost", "_name", "rewrite", "case_insensitive", "flags", "max_determinized_states"}
        value, params = _long_form(raw, what, allowed, value_keys)
        q = cls(field=name, value=str(value), case_insensitive=_bool(params.get("case_insensitive", False), "case_insensitive", what))
        return _common(q, params, what)

    return parse


def _fuzzy(body: Any) -> Q:
    name, raw, _ = _one_field(body, "fuzzy")
    allowed = {"boost", "_name", "fuzziness", "prefix_length", "max_expansions", "transpositions", "rewrite"}
    value, params = _long_form(raw, "fuzzy", allowed)
    return _common(Fuzzy(field=name, value=str(value), fuzziness=str(params.get("fuzziness", "AUTO"))), params, "fuzzy")


def _ids(body: Any) -> Q:
    if not isinstance(body, dict):
        raise parsing("[ids] query malformed, no start_object after query name")
    for k in body:
        if k not in ("values", "boost", "_name", "type", "types"):
            raise parsing(f"[ids] query does not support [{k}]")
    values = body.get("values", [])
    if not isinstance(values, list):
        raise parsing("[ids] failed to parse field [values]")
    return _common(Ids(values=[str(v) for v in values]), body, "ids")


_MATCH_KEYS = {"query", "operator", "minimum_should_match", "zero_terms_query", "lenient", "fuzziness", "analyzer", "boost",
               "prefix_length", "max_expansions", "fuzzy_transpositions", "auto_generate_synonyms_phrase_query",
               "cutoff_frequency", "fuzzy_rewrite", "_name"}


def _match(body: Any) -> Q:
    name, raw, _ = _one_field(body, "match")
    query, params = _long_form(raw, "match", _MATCH_KEYS, ("query",))
    if query is None:
        raise parsing("No text specified for text query")
    q = Match(field=name, query=query, operator=_operator(params.get("operator", "or"), "match"),
              minimum_should_match=params.get("minimum_should_match"),
              zero_terms_none=str(params.get("zero_terms_query", "none")).lower() != "all",
              lenient=_bool(params.get("lenient", False), "lenient", "match"),
              fuzziness=None if params.get("fuzziness") is None else str(params["fuzziness"]))
    return _common(q, params, "match")


def _operator(v: Any, what: str) -> str:
    s = str(v).lower()
    if s not in ("or", "and"):
        raise parsing(f"[{what}] failed to parse field [operator]",
                      caused_by=EsError(400, "illegal_argument_exception", f"operator needs to be either [and] or [or], but not [{v}]"))
    return s


def _match_phrase(prefix: bool) -> Any:
    what = "match_phrase_prefix" if prefix else "match_phrase"

    def parse(body: Any) -> Q:
        name, raw, _ = _one_field(body, what)
        query, params = _long_form(raw, what, {"slop", "analyzer", "boost", "zero_terms_query", "max_expansions", "_name"}, ("query",))
        return _common(MatchPhrase(field=name, query=query, slop=int(params.get("slop", 0)), prefix=prefix), params, what)

    return parse


_MULTI_KEYS = {"query", "fields", "type", "operator", "minimum_should_match", "lenient", "slop", "tie_breaker", "boost", "analyzer",
               "fuzziness", "zero_terms_query", "_name", "auto_generate_synonyms_phrase_query", "prefix_length", "max_expansions",
               "cutoff_frequency", "fuzzy_transpositions", "fuzzy_rewrite"}


def _multi_match(body: Any) -> Q:
    if not isinstance(body, dict):
        raise parsing("[multi_match] query malformed, no start_object after query name")
    for k in body:
        if k not in _MULTI_KEYS:
            raise parsing(f"[multi_match] query does not support [{k}]")
    if "query" not in body:
        raise parsing("No text specified for multi_match query")
    fields = body.get("fields", [])
    fields = [fields] if isinstance(fields, str) else [str(f) for f in fields]
    q = MultiMatch(fields=fields, query=body["query"], type=str(body.get("type", "best_fields")),
                   operator=_operator(body.get("operator", "or"), "multi_match"), minimum_should_match=body.get("minimum_should_match"),
                   lenient=_bool(body.get("lenient", False), "lenient", "multi_match"), slop=int(body.get("slop", 0)))
    return _common(q, body, "multi_match")


_QS_KEYS = {"query", "default_field", "fields", "default_operator", "analyze_wildcard", "lenient", "allow_leading_wildcard", "boost",
            "analyzer", "quote_field_suffix", "phrase_slop", "fuzziness", "time_zone", "minimum_should_match",
            "auto_generate_synonyms_phrase_query", "enable_position_increments", "fuzzy_max_expansions", "fuzzy_prefix_length",
            "fuzzy_transpositions", "max_determinized_states", "quote_analyzer", "rewrite", "type", "tie_breaker", "escape", "_name",
            "flags", "fuzzy_rewrite"}


def _query_string(simple: bool) -> Any:
    what = "simple_query_string" if simple else "query_string"

    def parse(body: Any) -> Q:
        if not isinstance(body, dict):
            raise parsing(f"[{what}] query malformed, no start_object after query name")
        for k in body:
            if k not in _QS_KEYS:
                raise parsing(f"[{what}] query does not support [{k}]")
        if "query" not in body:
            raise parsing(f"[{what}] must be provided with a [query]")
        fields = body.get("fields", [])
        fields = [fields] if isinstance(fields, str) else [str(f) for f in fields]
        lenient = body.get("lenient")
        q = QueryString(query=str(body["query"]), default_field=body.get("default_field"), fields=fields,
                        default_operator=_operator(body.get("default_operator", "or"), what),
                        lenient=None if lenient is None else _bool(lenient, "lenient", what),
                        analyze_wildcard=_bool(body.get("analyze_wildcard", False), "analyze_wildcard", what),
                        allow_leading_wildcard=_bool(body.get("allow_leading_wildcard", True), "allow_leading_wildcard", what),
                        time_zone=body.get("time_zone"), simple=simple)
        return _common(q, body, what)

    return parse


def _clauses(v: Any) -> list[Q]:
    if isinstance(v, list):
        return [parse_query(x) for x in v]
    return [parse_query(v)]


def _bool_q(body: Any) -> Q:
    if not isinstance(body, dict):
        raise parsing("[bool] query malformed, no start_object after query name")
    q = Bool()
    for k, v in body.items():
        if k in ("must", "filter", "should", "must_not"):
            getattr(q, k).extend(_clauses(v))
        elif k == "minimum_should_match":
            q.minimum_should_match = v
        elif k not in ("boost", "_name", "adjust_pure_negative", "disable_coord"):
            raise parsing(f"[bool] query does not support [{k}]")
    return _common(q, body, "bool")


def _constant_score(body: Any) -> Q:
    if not isinstance(body, dict):
        raise parsing("[constant_score] query malformed, no start_object after query name")
    if "filter" not in body:
        raise parsing("[constant_score] requires a 'filter' element")
    for k in body:
        if k not in ("filter", "boost", "_name"):
            raise parsing(f"[constant_score] query does not support [{k}]")
    return _common(ConstantScore(filter=parse_query(body["filter"])), body, "constant_score")


def _dis_max(body: Any) -> Q:
    # Deliberate difference: dis_max scores as a bool "should" (a sum, not the best clause).
    if not isinstance(body, dict) or not isinstance(body.get("queries"), list):
        raise parsing("[dis_max] requires 'queries' field with at least one clause")
    return _common(Bool(should=[parse_query(x) for x in body["queries"]]), body, "dis_max")


def _nested(body: Any) -> Q:
    # Deliberate difference: no nested documents; the inner query runs on the flattened fields.
    if not isinstance(body, dict) or "query" not in body or "path" not in body:
        raise parsing("[nested] requires 'path' and 'query' fields")
    return parse_query(body["query"])


PARSERS: dict[str, Any] = {
    "match_all": _match_all,
    "match_none": lambda body: MatchNone(),
    "term": _term,
    "terms": _terms,
    "range": _range,
    "exists": _exists,
    "prefix": _prefix_like(Prefix, "prefix", ("value", "prefix")),
    "wildcard": _prefix_like(Wildcard, "wildcard", ("value", "wildcard")),
    "regexp": _prefix_like(Regexp, "regexp", ("value",)),
    "fuzzy": _fuzzy,
    "ids": _ids,
    "match": _match,
    "match_phrase": _match_phrase(False),
    "match_phrase_prefix": _match_phrase(True),
    "match_bool_prefix": _match,
    "multi_match": _multi_match,
    "query_string": _query_string(False),
    "simple_query_string": _query_string(True),
    "bool": _bool_q,
    "constant_score": _constant_score,
    "dis_max": _dis_max,
    "nested": _nested,
}


def parse_query(obj: Any) -> Q:
    if not isinstance(obj, dict):
        raise parsing("[_na] query malformed, must start with start_object")
    if not obj:
        raise parsing("query malformed, empty clause found")
    if len(obj) > 1:
        first = next(iter(obj))
        raise parsing(f"[{first}] malformed query, expected [END_OBJECT] but found [FIELD_NAME]")
    name, body = next(iter(obj.items()))
    parser = PARSERS.get(name)
    if parser is None:
        if name in _UNSUPPORTED:
            raise EsError(400, "illegal_argument_exception", f"[{name}] queries are not supported by this stand-in")
        close = difflib.get_close_matches(name, list(PARSERS), n=1)
        hint = f" did you mean [{close[0]}]?" if close else ""
        raise parsing(f"unknown query [{name}]{hint}",
                      caused_by=EsError(400, "named_object_not_found_exception", f"[1:1] unknown field [{name}]"))
    q: Q = parser(body)
    return q


def should_match(spec: Any, optional: int) -> int:
    """``minimum_should_match`` (``2``, ``-1``, ``"75%"``, ``"-25%"``) for ``optional`` clauses."""
    if spec is None:
        return 0
    s = str(spec).strip()
    try:
        if s.endswith("%"):
            pct = float(s[:-1])
            n = int(optional * abs(pct) / 100)
            n = optional - n if pct < 0 else n
        else:
            n = int(s)
            n = optional + n if n < 0 else n
    except ValueError:
        raise parsing(f"[bool] failed to parse field [minimum_should_match] ({spec})") from None
    return max(0, min(n, optional))
