"""One document under a mapping: its doc values and FTS5 terms for storage (extending the
mapping as ES's dynamic rules say), and the views a search returns (``_source`` filtering, the
``fields`` option).

Parsing follows ES's ``DocumentParser``: arrays are flattened (objects inside them included),
``null`` is skipped, dotted keys are paths (``{"a.b": 1}`` is ``a: {b: 1}``), a value that does
not fit its field's type rejects the whole document with ``mapper_parsing_exception``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from itertools import compress
from operator import itemgetter, le
from typing import Any

import orjson

from sluice.lab.backends.elasticsearch import analysis
from sluice.lab.backends.elasticsearch.analysis import TEXT_COLUMNS
from sluice.lab.backends.elasticsearch.datemath import DateFormat, full_iso_ms
from sluice.lab.backends.elasticsearch.errors import EsError
from sluice.lab.backends.elasticsearch.mapping import Field, Mapping, mapper_parsing, to_bool, to_date, to_double, to_long, to_string


@dataclass(slots=True)
class Row:
    values: dict[int, Any]
    """Column number → scalar, or the JSON array (bytes) of several values."""
    k: str
    """FTS5 column ``k``: presence markers, exact values, overflow text terms."""
    cols: list[str | None]
    """FTS5 columns ``t1 … t32`` (index 0 unused)."""
    explicit: bool = False
    ncols: int = 0
    """How many FTS5 text columns the mapping had after this document."""
    """The text values are not where :meth:`Mapping.source_paths` says (dotted keys, arrays,
    coerced values): store ``cols`` rather than let the refresher read them from ``_src``."""


class MappingBox:
    """The mapping a write works against: the published one until a document needs a change,
    then a private copy that the store publishes after the commit (readers never see a
    mapping whose columns are not committed yet). A document that fails leaves no mapping
    change behind (:meth:`rollback_doc`), as in ES."""

    __slots__ = ("published", "mapping", "changed", "limit", "backup")

    def __init__(self, mapping: Mapping, limit: int) -> None:
        self.published = mapping
        self.mapping = mapping
        self.changed = False
        self.limit = limit
        self.backup: Mapping | None = None

    def writable(self) -> Mapping:
        if self.backup is None:
            self.backup = self.mapping
            self.mapping = self.mapping.copy()
            self.changed = True
        return self.mapping

    def commit_doc(self) -> None:
        self.backup = None

    def rollback_doc(self) -> None:
        if self.backup is not None:
            self.mapping = self.backup
            self.backup = None
            self.changed = self.mapping is not self.published


def _preview(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_preview(x)}" for k, x in v.items()) + "}"
    return str(v)


def _strict(path: str) -> EsError:
    parent = path.rpartition(".")[0] or "_doc"
    name = path.rpartition(".")[2]
    return EsError(400, "strict_dynamic_mapping_exception",
                   f"mapping set to strict, dynamic introduction of [{name}] within [{parent}] is not allowed")


class _Parse:
    """One document's walk. The loop in :meth:`walk` handles the common shapes (a mapped field
    holding a string, an integer, an object) inline; anything else — new fields, arrays, nulls,
    coercions, errors — goes through :meth:`value`."""

    __slots__ = ("box", "doc_id", "fields", "values", "multi", "texts", "k", "cols", "explicit")

    def __init__(self, box: MappingBox, doc_id: str) -> None:
        self.box = box
        self.doc_id = doc_id
        self.fields = box.mapping.fields
        self.values: dict[int, Any] = {}
        self.multi: set[int] = set()
        self.texts: dict[int, list[Any]] = {}
        """Text fields without a column of their own: number → [field, value, value…]."""
        self.k: list[str] = []
        self.cols: list[str | None] = [None] * (TEXT_COLUMNS + 1)
        self.explicit = False

    def walk(self, obj: dict[str, Any], prefix: str) -> None:
        fields = self.fields
        values = self.values
        cols = self.cols
        k = self.k
        for key, value in obj.items():
            path = prefix + key
            f = fields.get(path)
            if f is not None:
                t = type(value)
                if t is str:
                    plan = f.fast if f.fast_ready else self.box.mapping.string_plan(f)
                    if plan is not None:
                        col, marker, kwn, limit, exact = plan
                        if col:
                            cur = cols[col]
                            if cur is None:
                                cols[col] = value
                                k.append(marker)
                                if "." in key or '"' in key:
                                    self.explicit = True
                            else:
                                cols[col] = f"{cur} {analysis.GAP} {value}"
                                self.explicit = True
                        if kwn and len(value) <= limit:
                            if kwn in values:
                                self.store_more(kwn, value)
                            else:
                                values[kwn] = value
                            if exact:
                                k.append(f"{kwn}x{value.encode().hex()}")
                        continue
                elif t is int:
                    if f.kind == "long" and f.type == "long" and f.doc_values and -(1 << 63) <= value < (1 << 63) and not f.subfields:
                        num = f.num
                        if num in values:
                            self.store_more(num, value)
                        else:
                            values[num] = value
                        if f.exact:
                            k.append(f"{num}x{str(value).encode().hex()}")
                        continue
                elif t is dict and f.kind == "object":
                    if f.enabled:
                        self.walk(value, path + ".")
                    continue
            self.check_key(prefix, key)
            self.value(path, value)
            fields = self.fields

    def store_more(self, num: int, v: Any) -> None:
        values = self.values
        if num in self.multi:
            values[num].append(v)
        else:
            values[num] = [values[num], v]
            self.multi.add(num)

    @staticmethod
    def check_key(prefix: str, key: str) -> None:
        if not key.strip():
            raise mapper_parsing("field name cannot be an empty string" if not key else
                                 f"object field cannot contain only whitespace: ['{prefix}{key}']")
        if key.strip(".") != key or ".." in key:
            raise mapper_parsing(f"object field starting or ending with a [.] makes object resolution ambiguous: [{key}]")

    def store(self, f: Field, v: Any) -> None:
        if not f.doc_values:
            return
        if f.num in self.values:
            self.store_more(f.num, v)
        else:
            self.values[f.num] = v

    def text(self, f: Field, s: str) -> None:
        """A text value reached by the general path (arrays, coercions, new fields): always
        stored explicitly."""
        if not f.indexed:
            return
        if f.col:
            self.explicit = True
            cur = self.cols[f.col]
            if cur is None:
                self.cols[f.col] = s
                self.k.append(f"{f.num}e")
            else:
                self.cols[f.col] = f"{cur} {analysis.GAP} {s}"
            return
        entry = self.texts.get(f.num)
        if entry is None:
            self.texts[f.num] = [f, s]
            self.k.append(f"{f.num}e")
        else:
            entry.append(s)

    def keyword(self, f: Field, s: str) -> None:
        if f.ignore_above is not None and len(s) > f.ignore_above:
            return
        self.store(f, s)
        if f.exact:
            self.k.append(f"{f.num}x{s.encode().hex()}")

    def value(self, path: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, list):
            for item in value:
                self.value(path, item)
            return
        f = self.fields.get(path)
        if isinstance(value, dict):
            if f is None:
                if not self._may_add(path):
                    return
                self._add(path, value)
                f = self.fields[path]
            if f.kind != "object":
                raise self._bad(f, value, None)
            if f.enabled:
                self.walk(value, path + ".")
            return
        if f is None:
            if not self._may_add(path):
                return
            self._add(path, value)
            f = self.fields.get(path)
            if f is None:
                return
        if f.kind == "object":
            raise mapper_parsing(f"object mapping for [{path}] tried to parse field [{path.rpartition('.')[2]}] as object, "
                                 "but found a concrete value")
        self.leaf(f, value)
        for sub in f.subfields:
            self.leaf(self.fields[sub], value)

    def _may_add(self, path: str) -> bool:
        parent = path.rpartition(".")[0]
        if parent and not self.box.mapping.object_enabled(parent):
            return False
        dyn = self.box.mapping.dynamic_at(parent)
        if dyn == "strict":
            raise _strict(path)
        return dyn in ("true", "runtime")

    def _add(self, path: str, value: Any) -> None:
        spec = self.box.mapping.dynamic_spec(path, value)
        if spec is None:
            return
        mapping = self.box.writable()
        mapping.add_field(path, spec)
        self.fields = mapping.fields
        if mapping.count() > self.box.limit:
            raise EsError(400, "illegal_argument_exception", f"Limit of total fields [{self.box.limit}] has been exceeded")

    def _bad(self, f: Field, value: Any, exc: ValueError | None) -> EsError:
        cause = EsError(400, "illegal_argument_exception", str(exc)) if exc is not None else None
        return mapper_parsing(
            f"failed to parse field [{f.path}] of type [{f.type}] in document with id '{self.doc_id}'. "
            f"Preview of field's value: '{_preview(value)}'",
            caused_by=cause,
        )

    def leaf(self, f: Field, value: Any) -> None:
        """Any value for a mapped leaf: coerced as ES coerces, or the document is rejected."""
        kind = f.kind
        if isinstance(value, dict):
            raise self._bad(f, value, None)
        try:
            if kind == "keyword":
                self.keyword(f, to_string(value))
                return
            if kind == "text":
                self.text(f, to_string(value))
                return
            if kind == "long":
                v: Any = to_long(value, f)
            elif kind == "date":
                v = to_date(value, f)
            elif kind == "double":
                v = to_double(value, f)
            elif kind == "bool":
                v = to_bool(value)
            else:
                return
        except ValueError as exc:
            raise self._bad(f, value, exc) from None
        self.store(f, v)
        if f.exact:
            self.k.append(f"{f.num}x{str(v).encode().hex()}")

    def row(self) -> Row:
        values = self.values
        if self.multi:
            by_num = {f.num: f for f in self.fields.values() if f.num}
            for num in self.multi:
                values[num] = orjson.dumps(values[num])
                if not by_num[num].multi:
                    mapping = self.box.writable()
                    self.fields = mapping.fields
                    next(f for f in mapping.fields.values() if f.num == num).multi = True
        k = self.k
        for entry in self.texts.values():
            k.append(analysis.overflow_terms(entry[0].num, entry[1:]))
        return Row(values, " ".join(k), self.cols, self.explicit, self.box.mapping.next_col - 1)


def parse(box: MappingBox, source: dict[str, Any], doc_id: str) -> Row:
    """Doc values and FTS5 text of ``source`` (raises ``mapper_parsing_exception``, leaving the
    box's mapping as it was before this document)."""
    row = _planned(box.mapping, source)
    if row is not None:
        return row
    p = _Parse(box, doc_id)
    try:
        p.walk(source, "")
        row = p.row()
    except BaseException:
        box.rollback_doc()
        raise
    box.commit_doc()
    return row


# --- documents of a known shape -------------------------------------------------------------------
#
# Filebeat sends the same document shape (keys, value types, nesting) over and over. For a shape
# whose every value takes one of the walk's fast branches, what the walk does depends only on the
# shape, except for the values themselves: a plan made once per shape (and mapping version)
# reproduces the walk's Row — the same values, the same ``k`` terms in the same order, the same
# columns — with a few C-level checks instead of the per-key work. A value the plan cannot take
# as it is (an integer beyond 64 bits, a date that does not parse) sends the document to the walk,
# which handles or rejects it.

MAX_SHAPES = 256
"""Top-level key sets with plans, per mapping version; documents with other keys are walked."""
MAX_PLANS = 4
"""Plans (or failed attempts) per top-level key set."""


def _planned(mapping: Mapping, source: dict[str, Any]) -> Row | None:
    """``source``'s Row by a plan of its shape, or None: walk it."""
    plans = mapping.shapes
    if mapping.shapes_fields != len(mapping.fields):
        # Fields are only ever added (an existing path keeps its Field): a plan made with
        # fewer fields may miss a sub-field, so plans last as long as the field count.
        plans.clear()
        mapping.shapes_fields = len(mapping.fields)
    keys = tuple(source)
    tried: list[_Plan | None] | None = plans.get(keys)
    if tried is None:
        if len(plans) >= MAX_SHAPES:
            return None
        tried = plans[keys] = []
    for plan in tried:
        if plan is not None:
            flat = plan.match(source)
            if flat is not None:
                return plan.row(flat, mapping.next_col - 1)
    if len(tried) >= MAX_PLANS:
        return None
    plan = _compile(mapping, source)
    tried.append(plan)
    if plan is None:
        return None
    flat = plan.match(source)
    return None if flat is None else plan.row(flat, mapping.next_col - 1)


class _Plan:
    """The walk of one document shape, as indices into the document's values: the top-level
    ones, then those of each object in :attr:`nested` order (and a ``None`` after them all, for
    the columns no field fills)."""

    __slots__ = ("nested", "types", "cols", "kw", "kw_nums", "kw_limits", "exact", "longs", "long_nums", "long_terms", "dates",
                 "k", "explicit")

    def __init__(self, nested: list[tuple[int, tuple[str, ...]]], types: list[type], cols: list[int],
                 kw: list[tuple[int, int, int]], exact: list[tuple[int, int, int, int]], longs: list[tuple[int, int, int]],
                 dates: list[tuple[int, Field]], k: list[str | None], explicit: bool) -> None:
        self.nested = tuple(nested)
        """(value, its keys): the objects walked into, each after the one holding it."""
        self.types = tuple(types)
        self.cols = itemgetter(*cols)
        # Keyword doc values (value, field number, ignore_above), read in one pass each way.
        self.kw = _getter([i for i, _, _ in kw])
        self.kw_nums = tuple(num for _, num, _ in kw)
        self.kw_limits = tuple(limit for _, _, limit in kw)
        self.exact = tuple(exact)
        """(value, field number, ignore_above, slot in ``k``): keyword doc values with exact terms."""
        self.longs = _getter([i for i, _, _ in longs])
        self.long_nums = tuple(num for _, num, _ in longs)
        self.long_terms = tuple((j, num, slot) for j, (_, num, slot) in enumerate(longs) if slot >= 0)
        """(position among the longs, field number, slot in ``k``)."""
        self.dates = tuple((i, f, (f.fmt or DateFormat.of(None)).iso_first) for i, f in dates)
        self.k = k
        """``k``'s terms as the walk appends them: presence markers, None where a value's exact
        term goes (left out when the value is not indexed)."""
        self.explicit = explicit

    def match(self, source: dict[str, Any]) -> list[Any] | None:
        """The document's values if it has this shape (its top-level keys are known to match)."""
        flat: list[Any] = [*source.values()]
        for i, keys in self.nested:
            sub = flat[i]
            if type(sub) is not dict or tuple(sub) != keys:
                return None
            flat += sub.values()
        if tuple(map(type, flat)) != self.types:
            return None
        flat.append(None)
        return flat

    def row(self, flat: list[Any], ncols: int) -> Row | None:
        kws = self.kw(flat)
        values: dict[int, Any] = dict(compress(zip(self.kw_nums, kws, strict=True), map(le, map(len, kws), self.kw_limits)))
        k = self.k.copy()
        for i, num, limit, slot in self.exact:
            v = flat[i]
            if len(v) <= limit:
                values[num] = v
                k[slot] = f"{num}x{v.encode().hex()}"
        if self.long_nums:
            longs = self.longs(flat)
            if min(longs) < -(1 << 63) or max(longs) >= 1 << 63:
                return None
            values.update(zip(self.long_nums, longs, strict=True))
            for j, num, slot in self.long_terms:
                k[slot] = f"{num}x{str(longs[j]).encode().hex()}"
        for i, f, iso in self.dates:
            v = flat[i]
            ms = full_iso_ms(v) if iso else None
            if ms is None:
                try:
                    ms = to_date(v, f)
                except ValueError:
                    return None
            values[f.num] = ms
        return Row(values, " ".join(filter(None, k)), list(self.cols(flat)), self.explicit, ncols)


def _getter(indices: list[int]) -> Callable[[list[Any]], tuple[Any, ...]]:
    """The values at ``indices``, always as a tuple (``itemgetter`` of one index is not)."""
    if len(indices) > 1:
        return itemgetter(*indices)
    return lambda flat: tuple(flat[i] for i in indices)


def _compile(mapping: Mapping, source: dict[str, Any]) -> _Plan | None:
    """The plan of ``source``'s shape under ``mapping``, or None when some value of it needs
    the walk's general path (a new or unmapped field, an array, a null, a coercion, a key the
    general path checks, a field met twice). Mirrors :meth:`_Parse.walk` branch for branch."""
    fields = mapping.fields
    nested: list[tuple[int, tuple[str, ...]]] = []
    types: list[type] = []
    cols: list[int] = [-1] * (TEXT_COLUMNS + 1)
    kw: list[tuple[int, int, int]] = []
    exact: list[tuple[int, int, int, int]] = []
    longs: list[tuple[int, int, int]] = []
    dates: list[tuple[int, Field]] = []
    k: list[str | None] = []
    nums: set[int] = set()
    explicit = False

    def walk(obj: dict[str, Any], prefix: str, base: int) -> bool:
        nonlocal explicit
        for j, (key, value) in enumerate(obj.items()):
            i = base + j
            path = prefix + key
            f = fields.get(path)
            if f is None:
                return False
            t = type(value)
            types[i] = t
            if t is str and f.kind != "date":
                plan = f.fast if f.fast_ready else mapping.string_plan(f)
                if plan is None:
                    return False
                col, marker, kwn, limit, is_exact = plan
                if col:
                    if cols[col] >= 0:
                        return False
                    cols[col] = i
                    k.append(marker)
                    if "." in key or '"' in key:
                        explicit = True
                if kwn:
                    if kwn in nums:
                        return False
                    nums.add(kwn)
                    if is_exact:
                        exact.append((i, kwn, limit, len(k)))
                        k.append(None)
                    else:
                        kw.append((i, kwn, limit))
            elif t is str:
                # The walk's general path for a date string: the key's checks, then leaf().
                if f.subfields or not f.doc_values or f.exact or f.num in nums or not _plain_key(key):
                    return False
                nums.add(f.num)
                dates.append((i, f))
            elif t is int:
                if not (f.kind == "long" and f.type == "long" and f.doc_values and not f.subfields) or f.num in nums:
                    return False
                nums.add(f.num)
                if f.exact:
                    longs.append((i, f.num, len(k)))
                    k.append(None)
                else:
                    longs.append((i, f.num, -1))
            elif t is dict and f.kind == "object":
                if f.enabled:
                    start = len(types)
                    nested.append((i, tuple(value)))
                    types.extend([object] * len(value))
                    if not walk(value, path + ".", start):
                        return False
            else:
                return False
        return True

    types.extend([object] * len(source))
    if not walk(source, "", 0):
        return None
    end = len(types)  # the None after the values
    return _Plan(nested, types, [end if c < 0 else c for c in cols], kw, exact, longs, dates, k, explicit)


def _plain_key(key: str) -> bool:
    """The key passes :meth:`_Parse.check_key`."""
    return bool(key.strip()) and key.strip(".") == key and ".." not in key


# --- views of a stored document -----------------------------------------------------------------


def _compile_patterns(patterns: list[str]) -> Callable[[str], bool]:
    pats = [p.replace("[", "[[]").replace("?", "[?]") for p in patterns]
    return lambda path: any(fnmatchcase(path, p) for p in pats)


def _may_lead(path: str, patterns: list[str]) -> bool:
    prefix = path + "."
    for p in patterns:
        star = p.find("*")
        head = p if star < 0 else p[:star]
        if head.startswith(prefix) or (star >= 0 and prefix.startswith(head)):
            return True
    return False


def filter_source(src: dict[str, Any], includes: list[str], excludes: list[str]) -> dict[str, Any]:
    """``_source`` includes/excludes with ``*`` wildcards on dotted paths (ES's
    ``XContentMapValues.filter``)."""
    inc = _compile_patterns(includes) if includes else None
    exc = _compile_patterns(excludes) if excludes else None

    def obj(o: dict[str, Any], prefix: str, whole: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in o.items():
            path = prefix + k
            if exc is not None and exc(path):
                continue
            full = whole or inc is None or inc(path)
            if not full and not _may_lead(path, includes):
                continue
            kept = item(v, path, full)
            if kept is not _SKIP:
                out[k] = kept
        return out

    def item(v: Any, path: str, full: bool) -> Any:
        if isinstance(v, dict):
            sub = obj(v, path + ".", full)
            return sub if (sub or full) else _SKIP
        if isinstance(v, list):
            items = [x for x in (item(i, path, full) for i in v) if x is not _SKIP]
            return items if (items or full) else _SKIP
        return v if full else _SKIP

    return obj(src, "", False)


_SKIP = object()


def source_values(src: Any, path: str) -> list[Any]:
    """Every value at dotted ``path`` in a source (through arrays and dotted keys)."""
    out: list[Any] = []

    def walk(v: Any, rest: str) -> None:
        if isinstance(v, list):
            for x in v:
                walk(x, rest)
            return
        if not rest:
            if v is not None:
                out.append(v)
            return
        if not isinstance(v, dict):
            return
        for k, x in v.items():
            if k == rest:
                walk(x, "")
            elif rest.startswith(k + "."):
                walk(x, rest[len(k) + 1 :])

    walk(src, path)
    return out


def field_values(f: Field, src: dict[str, Any], fmt: str | None = None) -> list[Any]:
    """The ``fields`` option's values of one mapped field, as its type renders them."""
    raw = source_values(src, f.parent or f.path)
    out: list[Any] = []
    for v in raw:
        if isinstance(v, dict):
            continue
        try:
            if f.kind == "date":
                ms = to_date(v, f)
                out.append(DateFormat.of(fmt or "strict_date_optional_time").format(ms))
            elif f.kind == "long":
                out.append(to_long(v, f))
            elif f.kind == "double":
                out.append(to_double(v, f))
            elif f.kind == "bool":
                out.append(bool(to_bool(v)))
            elif f.kind == "keyword":
                s = to_string(v)
                if f.ignore_above is None or len(s) <= f.ignore_above:
                    out.append(s)
            elif f.kind == "text":
                out.append(to_string(v))
        except ValueError:
            continue
    return out


def unmapped_leaves(src: Any, prefix: str = "") -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}

    def walk(v: Any, path: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{path}.{k}" if path else k)
        elif isinstance(v, list):
            for x in v:
                walk(x, path)
        elif v is not None:
            out.setdefault(path, []).append(v)

    walk(src, prefix)
    return out
