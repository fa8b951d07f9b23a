"""An index's mapping: the ES-shaped tree (what ``GET /<index>/_mapping`` shows) and, beside it,
a flat table of fields by dotted path (what indexing and queries use), with ES's dynamic rules.

Every field that stores values has a *number*: column ``c<num>`` of the index's document table
holds its doc values and ``<num>x…`` are its terms in the FTS5 index (:mod:`.analysis`). The
number and a ``multi`` flag (some document held several values) are kept beside the ES mapping
(the *layout*), so a restart finds the same columns.

Storage kinds: ``text`` (FTS5 tokens only), ``keyword`` (string doc values + exact terms),
``long``, ``double``, ``date`` (epoch milliseconds, with a B-tree index on the column), ``bool``
(0/1), ``object`` (no values) and ``none`` (kept in ``_source`` only).

Dynamic mapping (``dynamic: true``): ``dynamic_templates`` first, then a string that parses with
``dynamic_date_formats`` (and is not a bare number) → ``date``; other strings → ``text`` with a
``keyword`` sub-field (``ignore_above: 256``); integers → ``long``; floats → ``float``; booleans →
``boolean``; objects → ``object``. ``dynamic: false`` leaves new fields in ``_source`` only;
``strict`` rejects the document.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from sluice.lab.backends.elasticsearch.analysis import TEXT_COLUMNS
from sluice.lab.backends.elasticsearch.datemath import DateError, DateFormat
from sluice.lab.backends.elasticsearch.errors import EsError

KINDS = {
    "text": "text",
    "match_only_text": "text",
    "search_as_you_type": "text",
    "keyword": "keyword",
    "constant_keyword": "keyword",
    "wildcard": "keyword",
    "ip": "keyword",
    "version": "keyword",
    "long": "long",
    "integer": "long",
    "short": "long",
    "byte": "long",
    "unsigned_long": "long",
    "double": "double",
    "float": "double",
    "half_float": "double",
    "scaled_float": "double",
    "date": "date",
    "date_nanos": "date",
    "boolean": "bool",
    "object": "object",
    "nested": "object",
    # Deliberate difference: these are kept in _source but not indexed (no queries, no aggregations).
    "flattened": "none",
    "geo_point": "none",
    "geo_shape": "none",
    "binary": "none",
    "alias": "none",
    "histogram": "none",
    "dense_vector": "none",
    "integer_range": "none",
    "long_range": "none",
    "date_range": "none",
    "ip_range": "none",
    "float_range": "none",
    "double_range": "none",
    "completion": "none",
    "rank_feature": "none",
    "rank_features": "none",
    "percolator": "none",
    "join": "none",
    "token_count": "none",
    "murmur3": "none",
}
_INT_BITS = {"long": 64, "integer": 32, "short": 16, "byte": 8, "unsigned_long": 64}
_ROOT_PARAMS = {"properties", "dynamic", "dynamic_templates", "date_detection", "numeric_detection", "dynamic_date_formats",
                "_meta", "_source", "_routing", "_field_names", "_all", "enabled", "runtime", "_data_stream_timestamp"}
DEFAULT_DYNAMIC_DATE_FORMATS = ["strict_date_optional_time", "yyyy/MM/dd HH:mm:ss Z||yyyy/MM/dd Z"]
TOTAL_FIELDS_LIMIT = 1000


def mapper_parsing(reason: str, caused_by: EsError | None = None) -> EsError:
    return EsError(400, "mapper_parsing_exception", reason, caused_by=caused_by)


@dataclass(slots=True)
class Field:
    path: str
    type: str
    kind: str
    num: int = 0
    multi: bool = False
    ignore_above: int | None = None
    fmt: DateFormat | None = None
    indexed: bool = True
    doc_values: bool = True
    int_bits: int = 64
    parent: str | None = None
    """For a multi-field (``url.keyword``): the field whose values it indexes (``url``)."""
    subfields: list[str] = field(default_factory=list)
    dynamic: str | None = None
    """For an object: its own ``dynamic`` setting, when it has one."""
    enabled: bool = True
    col: int = 0
    """For a text field: its FTS5 column ``t<col>`` (0: none left, its terms go to column ``k``)."""
    exact: bool = False
    """Its exact values are FTS5 terms (``keyword``/``long``/``boolean`` fields that are not a
    text field's multi-field: those are found through the parent's tokens)."""
    fast: tuple[int, str, int, int, bool] | None = None
    """How a string value is indexed, precomputed for the document walk's fast path:
    (FTS5 column, presence marker, keyword column, ignore_above, exact terms); see
    :meth:`Mapping.string_plan`."""
    fast_ready: bool = False

    @property
    def searchable(self) -> bool:
        return self.kind not in ("object", "none") and self.indexed

    @property
    def aggregatable(self) -> bool:
        return self.kind in ("keyword", "long", "double", "date", "bool") and self.doc_values

    @property
    def column(self) -> str:
        return f"c{self.num}"


class Mapping:
    """Mutable while a writer builds the next version; readers only ever see published copies
    (see :meth:`copy`)."""

    def __init__(self, body: dict[str, Any] | None = None, layout: dict[str, Any] | None = None) -> None:
        self.root: dict[str, Any] = {}
        """Root parameters other than ``properties`` (``dynamic``, ``dynamic_templates``, ``_meta``…)."""
        self.props: dict[str, Any] = {}
        self.fields: dict[str, Field] = {}
        self.total_fields_limit = TOTAL_FIELDS_LIMIT
        self.shapes: dict[tuple[str, ...], list[Any]] = {}
        """Top-level keys → indexing plans of documents with them (:mod:`.documents`: a cache
        for this version)."""
        self.shapes_fields = 0
        """The field count the plans were made with."""
        saved = (layout or {}).get("fields", {})
        self.next_num = max([int(v[0]) for v in saved.values()] + [0]) + 1
        self.next_col = max([int(v[2]) for v in saved.values() if len(v) > 2] + [0]) + 1
        if body:
            self.merge(body, saved)
        for path, (num, multi, *_) in saved.items():
            f = self.fields.get(path)
            if f is not None and f.num == int(num):
                f.multi = bool(multi)

    # --- building -----------------------------------------------------------------------------

    def merge(self, body: dict[str, Any], saved: dict[str, Any] | None = None) -> None:
        """Add a mapping body (index creation, a template, ``PUT _mapping``) to this one."""
        if not isinstance(body, dict):
            raise mapper_parsing("Failed to parse mapping: mapping must be an object")
        unknown = {k: v for k, v in body.items() if k not in _ROOT_PARAMS}
        if unknown:
            shown = ", ".join(f"{k} : {_java_repr(v)}" for k, v in unknown.items())
            raise mapper_parsing(f"Root mapping definition has unsupported parameters:  [{shown}]")
        for k, v in body.items():
            if k == "properties":
                continue
            if k == "dynamic_templates":
                names = {next(iter(t)) for t in v if isinstance(t, dict) and t}
                kept = [t for t in self.root.get("dynamic_templates", []) if next(iter(t)) not in names]
                self.root[k] = kept + list(v)
            else:
                self.root[k] = copy.deepcopy(v)
        props = body.get("properties", {})
        if not isinstance(props, dict):
            raise mapper_parsing("Failed to parse mapping: properties must be a map type")
        self._merge_props(self.props, props, "", saved or {})

    def _merge_props(self, into: dict[str, Any], props: dict[str, Any], prefix: str, saved: dict[str, Any]) -> None:
        for name, spec in props.items():
            path = prefix + name
            if not isinstance(spec, dict):
                raise mapper_parsing(f"Expected map for property [fields] on field [{path}] but got a class java.lang.String")
            self.add_field(path, spec, into=into, name=name, saved=saved)

    def add_field(self, path: str, spec: dict[str, Any], *, into: dict[str, Any] | None = None, name: str | None = None,
                  saved: dict[str, Any] | None = None) -> list[Field]:
        """Map ``path`` as ``spec`` (ES mapping JSON); intermediate objects are created as needed.
        Returns the fields created."""
        if into is None or name is None:
            parent, _, name = path.rpartition(".")
            into = self._object_props(parent) if parent else self.props
        type_ = spec.get("type", "object" if "properties" in spec or "type" not in spec else None)
        if not isinstance(type_, str) or type_ not in KINDS:
            raise mapper_parsing(f"No handler for type [{type_}] declared on field [{name}]")
        existing = self.fields.get(path)
        created: list[Field] = []
        if existing is not None:
            if existing.type != type_ and not (existing.kind == "object" and type_ == "object"):
                raise EsError(400, "illegal_argument_exception",
                              f"mapper [{path}] cannot be changed from type [{existing.type}] to [{type_}]")
        if KINDS[type_] == "object":
            node = into.setdefault(name, {})
            for k, v in spec.items():
                # An object's "type" is implied (ES prints it only for an object with no properties).
                if k != "properties" and not (k == "type" and v == "object"):
                    node[k] = copy.deepcopy(v)
            if existing is None:
                f = Field(path, type_, "object", dynamic=_dyn(spec.get("dynamic")), enabled=spec.get("enabled", True) is not False)
                self.fields[path] = f
                created.append(f)
            elif "dynamic" in spec:
                existing.dynamic = _dyn(spec["dynamic"])
            sub = spec.get("properties", {})
            if sub:
                node_props = node.setdefault("properties", {})
                for sub_name, sub_spec in sub.items():
                    if not isinstance(sub_spec, dict):
                        raise mapper_parsing(f"Expected map for property [{sub_name}] on field [{path}]")
                    created += self.add_field(f"{path}.{sub_name}", sub_spec, into=node_props, name=sub_name, saved=saved)
            return created
        node = into.setdefault(name, {})
        for k, v in spec.items():
            if k != "fields":
                node[k] = copy.deepcopy(v)
        if existing is None:
            f = self._leaf(path, type_, spec, saved)
            self.fields[path] = f
            created.append(f)
        else:
            f = existing
        subs = spec.get("fields", {})
        if subs:
            if not isinstance(subs, dict):
                raise mapper_parsing(f"Expected map for property [fields] on field [{path}]")
            node_subs = node.setdefault("fields", {})
            for sub_name, sub_spec in subs.items():
                sub_type = sub_spec.get("type", "object") if isinstance(sub_spec, dict) else None
                if not isinstance(sub_type, str) or KINDS.get(sub_type) in (None, "object"):
                    raise mapper_parsing(f"No handler for type [{sub_type}] declared on field [{sub_name}]")
                node_subs[sub_name] = copy.deepcopy(sub_spec)
                sub_path = f"{path}.{sub_name}"
                if sub_path not in self.fields:
                    sf = self._leaf(sub_path, sub_type, sub_spec, saved)
                    sf.parent = path
                    sf.exact = sf.exact and f.kind != "text"
                    self.fields[sub_path] = sf
                    f.subfields.append(sub_path)
                    f.fast_ready = False
                    created.append(sf)
        return created

    def _leaf(self, path: str, type_: str, spec: dict[str, Any], saved: dict[str, Any] | None) -> Field:
        kind = KINDS[type_]
        f = Field(path, type_, kind)
        if kind != "none":
            prior = (saved or {}).get(path)
            if prior is not None:
                f.num, f.multi = int(prior[0]), bool(prior[1])
                f.col = int(prior[2]) if len(prior) > 2 else 0
            else:
                f.num = self.next_num
                self.next_num += 1
                if kind == "text" and self.next_col <= TEXT_COLUMNS and spec.get("index", True) is not False:
                    f.col = self.next_col
                    self.next_col += 1
        f.indexed = spec.get("index", True) is not False
        f.doc_values = spec.get("doc_values", True) is not False and kind != "text"
        if "ignore_above" in spec:
            f.ignore_above = int(spec["ignore_above"])
        if kind == "date":
            try:
                f.fmt = DateFormat.of(spec.get("format"))
            except DateError as exc:
                raise mapper_parsing(f"Invalid format: [{spec.get('format')}]: {exc}") from None
        if kind == "long":
            f.int_bits = _INT_BITS.get(type_, 64)
        f.exact = kind in ("keyword", "long", "bool") and f.indexed
        return f

    def _object_props(self, path: str) -> dict[str, Any]:
        """The ``properties`` dict of object ``path``, creating objects on the way (dynamic)."""
        node: dict[str, Any] = {"properties": self.props}
        walked = ""
        for part in path.split("."):
            walked = f"{walked}.{part}" if walked else part
            props = node.setdefault("properties", {})
            node = props.setdefault(part, {})
            if walked not in self.fields:
                self.fields[walked] = Field(walked, "object", "object")
            elif self.fields[walked].kind != "object":
                raise mapper_parsing(f"Could not dynamically add mapping for field [{path}]. Existing mapping for [{walked}] "
                                     f"must be of type object but found [{self.fields[walked].type}].")
        found: dict[str, Any] = node.setdefault("properties", {})
        return found

    def string_plan(self, f: Field) -> tuple[int, str, int, int, bool] | None:
        """``f.fast`` (computed once per mapping version): None when a string value of ``f``
        needs the general path (no FTS5 column of its own, sub-fields other than one keyword,
        not indexed, no doc values)."""
        plan: tuple[int, str, int, int, bool] | None = None
        limit = 1 << 30
        if f.kind == "text" and f.col and f.indexed:
            subs = [self.fields[s] for s in f.subfields]
            if not subs:
                plan = (f.col, f"{f.num}e", 0, limit, False)
            elif len(subs) == 1 and subs[0].kind == "keyword" and subs[0].doc_values and not subs[0].exact:
                kw = subs[0]
                plan = (f.col, f"{f.num}e", kw.num, kw.ignore_above if kw.ignore_above is not None else limit, False)
        elif f.kind == "keyword" and not f.subfields and f.doc_values:
            plan = (0, "", f.num, f.ignore_above if f.ignore_above is not None else limit, f.exact)
        f.fast, f.fast_ready = plan, True
        return plan

    def source_paths(self) -> dict[int, str]:
        """FTS5 column → the JSON path (SQLite syntax) of its text field in a plain source."""
        out: dict[int, str] = {}
        for f in self.fields.values():
            if f.kind == "text" and f.col:
                path = f.parent or f.path
                out[f.col] = "$" + "".join('."' + part + '"' for part in path.split("."))
        return out

    def copy(self) -> Mapping:
        twin = Mapping.__new__(Mapping)
        twin.root = copy.deepcopy(self.root)
        twin.props = copy.deepcopy(self.props)
        twin.fields = {p: copy.copy(f) for p, f in self.fields.items()}
        for f in twin.fields.values():
            f.subfields = list(f.subfields)
        twin.next_num = self.next_num
        twin.next_col = self.next_col
        twin.total_fields_limit = self.total_fields_limit
        twin.shapes = {}
        twin.shapes_fields = 0
        return twin

    # --- reading ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in ("dynamic", "_meta", "_source", "_routing", "date_detection", "numeric_detection", "dynamic_date_formats",
                  "dynamic_templates", "runtime", "_data_stream_timestamp"):
            if k in self.root:
                out[k] = copy.deepcopy(self.root[k])
        if self.props:
            out["properties"] = _sorted_props(self.props)
        return out

    def layout(self) -> dict[str, Any]:
        return {"fields": {p: [f.num, f.multi, f.col] for p, f in self.fields.items() if f.num}}

    def get(self, path: str) -> Field | None:
        return self.fields.get(path)

    def leaves(self) -> list[Field]:
        return [f for f in self.fields.values() if f.kind != "object"]

    def expand(self, pattern: str) -> list[Field]:
        """Fields matching a name or a ``*`` pattern (``*`` alone: every searchable leaf)."""
        if "*" not in pattern:
            f = self.fields.get(pattern)
            return [f] if f is not None else []
        return [f for p, f in self.fields.items() if f.kind != "object" and fnmatchcase(p, pattern.replace("[", "[[]").replace("?", "[?]"))]

    def dynamic_at(self, path: str) -> str:
        """The ``dynamic`` setting that governs new fields under object ``path`` ("" = root)."""
        while path:
            f = self.fields.get(path)
            if f is not None and f.dynamic is not None:
                return f.dynamic
            path = path.rpartition(".")[0]
        return _dyn(self.root.get("dynamic")) or "true"

    def object_enabled(self, path: str) -> bool:
        f = self.fields.get(path)
        return f is None or f.enabled

    # --- dynamic mapping ----------------------------------------------------------------------

    def dynamic_spec(self, path: str, value: Any) -> dict[str, Any] | None:
        """The mapping ES would add for a new field at ``path`` holding ``value`` (None: none)."""
        if isinstance(value, bool):
            kind, default = "boolean", {"type": "boolean"}
        elif isinstance(value, int):
            kind, default = "long", {"type": "long"}
        elif isinstance(value, float):
            kind, default = "double", {"type": "float"}
        elif isinstance(value, dict):
            kind, default = "object", {"type": "object"}
        elif isinstance(value, str):
            kind, default = self._string_kind(value)
        else:
            return None
        name = path.rpartition(".")[2]
        for entry in self.root.get("dynamic_templates", []):
            if not isinstance(entry, dict) or not entry:
                continue
            spec = next(iter(entry.values()))
            if isinstance(spec, dict) and _template_matches(spec, path, name, kind):
                mapping = spec.get("mapping", {})
                out: dict[str, Any] = _substitute(copy.deepcopy(mapping), name, "string" if kind == "string" else kind)
                if "type" not in out:
                    out["type"] = default["type"] if kind != "string" else "text"
                return out
        return default

    def _string_kind(self, value: str) -> tuple[str, dict[str, Any]]:
        numeric = _is_number(value)
        if numeric and self.root.get("numeric_detection") is True:
            return ("long", {"type": "long"}) if re.fullmatch(r"[+-]?\d+", value) else ("double", {"type": "float"})
        if not numeric and self.root.get("date_detection", True) is not False:
            for spec in self.root.get("dynamic_date_formats", DEFAULT_DYNAMIC_DATE_FORMATS):
                try:
                    DateFormat.of(spec).parse(value)
                except DateError:
                    continue
                out: dict[str, Any] = {"type": "date"}
                if spec != "strict_date_optional_time":
                    out["format"] = spec
                return "date", out
        return "string", {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}

    def count(self) -> int:
        return len(self.fields)


def _dyn(v: Any) -> str | None:
    if v is None:
        return None
    return str(v).lower()


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return s.strip() == s and s.lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


def _template_matches(spec: dict[str, Any], path: str, name: str, kind: str) -> bool:
    mmt = spec.get("match_mapping_type")
    if mmt not in (None, "*") and mmt != kind:
        return False
    regex = spec.get("match_pattern") == "regex"

    def hit(pattern: Any, value: str) -> bool:
        pats = pattern if isinstance(pattern, list) else [pattern]
        return any(re.fullmatch(str(p), value) if regex else fnmatchcase(value, str(p)) for p in pats)

    if "match" in spec and not hit(spec["match"], name):
        return False
    if "unmatch" in spec and hit(spec["unmatch"], name):
        return False
    if "path_match" in spec and not hit(spec["path_match"], path):
        return False
    if "path_unmatch" in spec and hit(spec["path_unmatch"], path):
        return False
    return True


def _substitute(v: Any, name: str, dynamic_type: str) -> Any:
    if isinstance(v, str):
        return v.replace("{name}", name).replace("{dynamic_type}", dynamic_type)
    if isinstance(v, dict):
        return {k: _substitute(x, name, dynamic_type) for k, x in v.items()}
    if isinstance(v, list):
        return [_substitute(x, name, dynamic_type) for x in v]
    return v


def _sorted_props(props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted(props):
        node = dict(props[name])
        if "properties" in node:
            node["properties"] = _sorted_props(node["properties"])
        elif node.get("type") is None and "fields" not in node:
            node = {"type": "object", **node}
        if "fields" in node:
            node["fields"] = {k: node["fields"][k] for k in sorted(node["fields"])}
        out[name] = node
    return out


def _java_repr(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_java_repr(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_java_repr(x) for x in v) + "]"
    return str(v).lower() if isinstance(v, bool) else str(v)


# --- values as a field type reads them ----------------------------------------------------------


def to_long(v: Any, f: Field) -> int:
    if isinstance(v, bool):
        raise ValueError(f"Current token (VALUE_{str(v).upper()}) not numeric, can not use numeric value accessors")
    if isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"[{f.type}] supports only finite values, but got [{v}]")
        n = int(v)
    elif isinstance(v, str):
        s = v.strip()
        try:
            n = int(s)
        except ValueError:
            try:
                n = int(float(s))
            except ValueError:
                raise ValueError(f'For input string: "{v}"') from None
    else:
        raise ValueError(f"Current token ({type(v).__name__}) not numeric")
    lo, hi = (0, 2**64 - 1) if f.type == "unsigned_long" else (-(2 ** (f.int_bits - 1)), 2 ** (f.int_bits - 1) - 1)
    if not lo <= n <= hi:
        raise ValueError(f"Value [{v}] is out of range for {'an' if f.type == 'integer' else 'a'} {f.type}")
    return n


def to_double(v: Any, f: Field) -> float:
    if isinstance(v, bool):
        raise ValueError(f"Current token (VALUE_{str(v).upper()}) not numeric, can not use numeric value accessors")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            raise ValueError(f'For input string: "{v}"') from None
    raise ValueError(f"Current token ({type(v).__name__}) not numeric")


def to_bool(v: Any) -> int:
    if v is True or v == "true":
        return 1
    if v is False or v in ("false", ""):
        return 0
    raise ValueError(f"Failed to parse value [{v}] as only [true] or [false] are allowed.")


def to_date(v: Any, f: Field) -> int:
    fmt = f.fmt or DateFormat.of(None)
    if isinstance(v, bool):
        raise ValueError(f"failed to parse date field [{v}] with format [{fmt.spec}]")
    if isinstance(v, (int, float)):
        return int(v)
    try:
        return fmt.parse(str(v))
    except DateError as exc:
        raise ValueError(str(exc)) from None


def to_string(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return repr(v)
    return v if isinstance(v, str) else str(v)
