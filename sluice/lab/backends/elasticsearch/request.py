"""A search request (body and URL parameters, as ``RestSearchAction`` merges them) parsed into a
:class:`SearchRequest`, with ES's request-level errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sluice.lab.backends.elasticsearch import dsl
from sluice.lab.backends.elasticsearch.errors import EsError, parsing

DEFAULT_TRACK_TOTAL_HITS = 10000
MAX_RESULT_WINDOW = 10000


@dataclass(slots=True)
class SortSpec:
    field: str
    order: str = "asc"
    missing: Any = "_last"
    unmapped_type: str | None = None
    mode: str | None = None
    format: str | None = None


@dataclass(slots=True)
class FieldSpec:
    pattern: str
    format: str | None = None
    include_unmapped: bool = False


@dataclass(slots=True)
class SearchRequest:
    query: dsl.Q = field(default_factory=dsl.MatchAll)
    size: int = 10
    from_: int = 0
    sort: list[SortSpec] | None = None
    source: bool = True
    includes: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    track_total_hits: bool | int = DEFAULT_TRACK_TOTAL_HITS
    aggs: dict[str, Any] | None = None
    fields: list[FieldSpec] = field(default_factory=list)
    docvalue_fields: list[FieldSpec] = field(default_factory=list)
    version: bool = False
    seq_no_primary_term: bool = False
    track_scores: bool = False
    min_score: float | None = None
    post_filter: dsl.Q | None = None
    terminate_after: int | None = None
    stored_none: bool = False
    total_as_int: bool = False
    typed_keys: bool = False

    @property
    def sorts_by_score(self) -> bool:
        return not self.sort or self.sort[0].field == "_score"


def _int(v: Any, name: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise EsError(400, "illegal_argument_exception", f"Failed to parse int parameter [{name}] with value [{v}]") from None


def _bool_param(v: Any) -> bool:
    return v is True or str(v).lower() in ("", "true")


def _token_name(v: Any) -> str:
    if isinstance(v, dict):
        return "START_OBJECT"
    if isinstance(v, list):
        return "START_ARRAY"
    if isinstance(v, bool):
        return "VALUE_BOOLEAN"
    if isinstance(v, (int, float)):
        return "VALUE_NUMBER"
    if v is None:
        return "VALUE_NULL"
    return "VALUE_STRING"


def parse_sort(raw: Any) -> list[SortSpec]:
    items = raw if isinstance(raw, list) else [raw]
    out: list[SortSpec] = []
    for item in items:
        if isinstance(item, str):
            out.append(SortSpec(item, "desc" if item == "_score" else "asc"))
            continue
        if not isinstance(item, dict) or len(item) != 1:
            raise parsing("[sort] failed to parse: expected a field name or an object with one field")
        name, spec = next(iter(item.items()))
        s = SortSpec(name, "desc" if name == "_score" else "asc")
        if isinstance(spec, str):
            s.order = spec.lower()
        elif isinstance(spec, dict):
            for k, v in spec.items():
                if k == "order":
                    s.order = str(v).lower()
                elif k == "missing":
                    s.missing = v
                elif k == "unmapped_type":
                    s.unmapped_type = str(v)
                elif k == "mode":
                    s.mode = str(v)
                elif k == "format":
                    s.format = str(v)
                elif k not in ("numeric_type", "nested", "nested_path", "nested_filter"):
                    raise parsing(f"[field_sort] unknown field [{k}]")
        else:
            raise parsing(f"[sort] failed to parse field [{name}]")
        if s.order not in ("asc", "desc"):
            raise EsError(400, "illegal_argument_exception", f"Unknown SortOrder [{s.order}]")
        out.append(s)
    return out


def _fields(raw: Any, what: str) -> list[FieldSpec]:
    if not isinstance(raw, list):
        raw = [raw]
    out: list[FieldSpec] = []
    for item in raw:
        if isinstance(item, str):
            out.append(FieldSpec(item))
        elif isinstance(item, dict) and "field" in item:
            out.append(FieldSpec(str(item["field"]), item.get("format"), _bool_param(item.get("include_unmapped", False))))
        else:
            raise parsing(f"[{what}] failed to parse: expected a field name or an object with a [field]")
    return out


def _source_spec(req: SearchRequest, v: Any) -> None:
    if isinstance(v, bool):
        req.source = v
    elif isinstance(v, str):
        req.includes = [v]
    elif isinstance(v, list):
        req.includes = [str(x) for x in v]
    elif isinstance(v, dict):
        inc = v.get("includes", v.get("include")) or []
        exc = v.get("excludes", v.get("exclude")) or []
        req.includes = [inc] if isinstance(inc, str) else [str(x) for x in inc]
        req.excludes = [exc] if isinstance(exc, str) else [str(x) for x in exc]
    else:
        raise parsing("[_source] failed to parse")


_IGNORED = {"highlight", "script_fields", "stored_fields", "explain", "profile", "indices_boost", "runtime_mappings", "timeout",
            "stats", "_name", "ext", "rescore", "slice", "pit"}


def parse_search(body: Any, params: dict[str, str]) -> SearchRequest:
    req = SearchRequest()
    if body is not None and not isinstance(body, dict):
        raise parsing("Expected [START_OBJECT] but found [" + _token_name(body) + "]")
    for key, v in (body or {}).items():
        if key == "query":
            req.query = dsl.parse_query(v)
        elif key == "size":
            req.size = _int(v, "size")
        elif key == "from":
            req.from_ = _int(v, "from")
        elif key == "sort":
            req.sort = parse_sort(v)
        elif key == "_source":
            _source_spec(req, v)
        elif key == "track_total_hits":
            req.track_total_hits = v if isinstance(v, bool) else _int(v, "track_total_hits")
        elif key in ("aggs", "aggregations"):
            if not isinstance(v, dict):
                raise parsing(f"Unknown key for a {_token_name(v)} in [{key}].")
            req.aggs = v
        elif key == "fields":
            req.fields = _fields(v, "fields")
        elif key == "docvalue_fields":
            req.docvalue_fields = _fields(v, "docvalue_fields")
        elif key == "version":
            req.version = bool(v)
        elif key == "seq_no_primary_term":
            req.seq_no_primary_term = bool(v)
        elif key == "track_scores":
            req.track_scores = bool(v)
        elif key == "min_score":
            req.min_score = float(v)
        elif key == "post_filter":
            req.post_filter = dsl.parse_query(v)
        elif key == "terminate_after":
            req.terminate_after = _int(v, "terminate_after")
        elif key == "search_after":
            raise EsError(400, "illegal_argument_exception", "[search_after] is not supported by this stand-in")
        elif key == "collapse" or key == "suggest":
            raise EsError(400, "illegal_argument_exception", f"[{key}] is not supported by this stand-in")
        elif key == "stored_fields" and v == "_none_":
            req.stored_none = True
        elif key not in _IGNORED:
            raise parsing(f"Unknown key for a {_token_name(v)} in [{key}].")
    _apply_params(req, params)
    if req.size < 0:
        raise EsError(400, "illegal_argument_exception", f"[size] parameter cannot be negative, found [{req.size}]")
    if req.from_ < 0:
        raise EsError(400, "illegal_argument_exception", f"[from] parameter cannot be negative, found [{req.from_}]")
    if isinstance(req.track_total_hits, int) and not isinstance(req.track_total_hits, bool) and req.track_total_hits < -1:
        raise EsError(400, "illegal_argument_exception", f"[track_total_hits] parameter must be positive or equals to -1, got "
                      f"{req.track_total_hits}")
    return req


def _apply_params(req: SearchRequest, params: dict[str, str]) -> None:
    if "q" in params:
        req.query = dsl.QueryString(query=params["q"], default_field=params.get("df"),
                                    default_operator=params.get("default_operator", "OR").lower(),
                                    lenient=_bool_param(params["lenient"]) if "lenient" in params else None,
                                    analyze_wildcard=_bool_param(params.get("analyze_wildcard", "false")))
        if params.get("default_operator", "OR").lower() not in ("or", "and"):
            raise EsError(400, "illegal_argument_exception", f"Unsupported default_operator [{params['default_operator']}]")
    if "size" in params:
        req.size = _int(params["size"], "size")
    if "from" in params:
        req.from_ = _int(params["from"], "from")
    if "sort" in params:
        specs = []
        for part in params["sort"].split(","):
            name, _, order = part.partition(":")
            specs.append(SortSpec(name, order.lower() if order else ("desc" if name == "_score" else "asc")))
        req.sort = specs
    if "_source" in params:
        v = params["_source"]
        if v.lower() in ("true", "false"):
            req.source = v.lower() == "true"
        else:
            req.includes = v.split(",")
    if "_source_includes" in params:
        req.includes = params["_source_includes"].split(",")
    if "_source_excludes" in params:
        req.excludes = params["_source_excludes"].split(",")
    if "track_total_hits" in params:
        v = params["track_total_hits"].lower()
        req.track_total_hits = v in ("", "true") if v in ("", "true", "false") else _int(v, "track_total_hits")
    if "track_scores" in params:
        req.track_scores = _bool_param(params["track_scores"])
    if "version" in params:
        req.version = _bool_param(params["version"])
    if "seq_no_primary_term" in params:
        req.seq_no_primary_term = _bool_param(params["seq_no_primary_term"])
    if "docvalue_fields" in params:
        req.docvalue_fields = [FieldSpec(p) for p in params["docvalue_fields"].split(",") if p]
    if "terminate_after" in params:
        req.terminate_after = _int(params["terminate_after"], "terminate_after")
    if "scroll" in params:
        raise EsError(400, "illegal_argument_exception", "[scroll] is not supported by this stand-in")
    req.total_as_int = _bool_param(params.get("rest_total_hits_as_int", "false"))
    if req.total_as_int and req.track_total_hits is not False:
        req.track_total_hits = True
    req.typed_keys = _bool_param(params.get("typed_keys", "false"))


def check_window(req: SearchRequest, max_window: int = MAX_RESULT_WINDOW) -> EsError | None:
    if req.from_ + req.size > max_window:
        return EsError(400, "illegal_argument_exception",
                       f"Result window is too large, from + size must be less than or equal to: [{max_window}] but was "
                       f"[{req.from_ + req.size}]. See the scroll api for a more efficient way to request large data sets. "
                       "This limit can be set by changing the [index.max_result_window] index level setting.")
    return None
