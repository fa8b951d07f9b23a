"""KQL (the Kibana Query Language) → Elasticsearch query DSL, as ``@kbn/es-query`` 7.14 does.

The parser follows Kibana's PEG grammar (``kuery.peg``) rule for rule, with its quirks: an
unquoted value may hold spaces (``message: hello world`` is one value), ``or``/``and`` need
spaces around them, ``not`` ends a value wherever it starts a word followed by a space, numbers
and ``true``/``false``/``null`` are typed, ``*`` makes a wildcard, ``\\`` escapes ``\\():<>"*{}``
and the keywords. ``a or b or c`` nests to the right, as Kibana's function nodes do.

The translation needs the index pattern's fields (name, Kibana type, sub types) the way Kibana
resolves them: a field the pattern does not have is queried by the given name all the same; a
date field turns ``field:value`` into a ``range`` with both ends (and the browser's time zone);
wildcard field names expand to every matching field.

Deliberate difference: a syntax error names what was expected at the furthest offset in this
parser's own words ("Expected ")" or whitespace but end of input found."), close to but not
always the same list as peg.js gives; the query line and the caret are Kibana's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

WILDCARD = "\ue000"
"""Stands for an unescaped ``*`` inside a value (Kibana's ``@kuery-wildcard@``)."""

_SPECIAL = set('\\():<>"*{}')
_SPACE = " \t\r\n"
_QS_RESERVED = re.compile(r'[+\-=&|><!(){}\[\]^"~*?:\\/]')
_REGEX_SPECIAL = re.compile(r"[.*+?^${}()|\[\]\\]")
_JS_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class KQLSyntaxError(ValueError):
    """Shown as Kibana shows it: the message, then the query and a caret under the offset."""

    def __init__(self, message: str, query: str, offset: int) -> None:
        self.short = message
        self.query = query
        self.offset = offset
        super().__init__(f"{message}\n{query}\n{'-' * offset}^")


# --- nodes ---------------------------------------------------------------------------------

Scalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Literal:
    value: Scalar


@dataclass(frozen=True, slots=True)
class Wildcard:
    value: str
    """The text with :data:`WILDCARD` where the user typed an unescaped ``*``."""

    def es(self) -> str:
        return self.value.replace(WILDCARD, "*")

    def query_string(self) -> str:
        return "*".join(_QS_RESERVED.sub(lambda m: "\\" + m.group(0), part) for part in self.value.split(WILDCARD))

    def matches(self, text: str) -> bool:
        pattern = "[\\s\\S]*".join(_REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), p) for p in self.value.split(WILDCARD))
        return re.fullmatch(pattern, text) is not None


Value = Literal | Wildcard


@dataclass(frozen=True, slots=True)
class Is:
    field: Value
    value: Value
    phrase: bool


@dataclass(frozen=True, slots=True)
class Range:
    field: Value
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class Nested:
    path: Value
    child: Node


Node = Is | Range | And | Or | Not | Nested

MATCH_ALL = Is(Wildcard(WILDCARD), Wildcard(WILDCARD), False)


# --- parser --------------------------------------------------------------------------------


class _Fail(Exception):
    pass


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.far = 0
        self.expected: set[str] = set()

    # Failure bookkeeping, as peg.js reports "Expected … but … found." at the furthest offset.
    def fail(self, pos: int, what: str) -> _Fail:
        if pos > self.far:
            self.far, self.expected = pos, {what}
        elif pos == self.far:
            self.expected.add(what)
        return _Fail()

    def spaces(self, pos: int) -> int:
        while pos < self.n and self.s[pos] in _SPACE:
            pos += 1
        return pos

    def _word(self, pos: int, word: str) -> bool:
        return self.s[pos : pos + len(word)].lower() == word

    def or_at(self, pos: int) -> int | None:
        return self._binary_kw(pos, "or")

    def and_at(self, pos: int) -> int | None:
        return self._binary_kw(pos, "and")

    def _binary_kw(self, pos: int, word: str) -> int | None:
        p = self.spaces(pos)
        if p == pos or not self._word(p, word):
            return None
        q = self.spaces(p + len(word))
        return q if q > p + len(word) else None

    def not_at(self, pos: int) -> int | None:
        if not self._word(pos, "not"):
            return None
        q = self.spaces(pos + 3)
        return q if q > pos + 3 else None

    def keyword_at(self, pos: int) -> bool:
        return self.or_at(pos) is not None or self.and_at(pos) is not None or self.not_at(pos) is not None

    # start = Space* query:OrQuery? Space*
    def start(self) -> Node:
        pos = self.spaces(0)
        query: Node | None = None
        try:
            query, pos = self.or_query(pos)
        except _Fail:
            pos = self.spaces(0)
        pos = self.spaces(pos)
        if pos != self.n:
            self.fail(pos, "end of input")
            raise self.error()
        return query if query is not None else MATCH_ALL

    def error(self) -> KQLSyntaxError:
        wants = sorted(self.expected - {"end of input"}) + (["end of input"] if "end of input" in self.expected else [])
        if len(wants) > 1:
            listed = ", ".join(wants[:-1]) + " or " + wants[-1]
        else:
            listed = wants[0] if wants else "input"
        found = "end of input" if self.far >= self.n else '"' + self.s[self.far] + '"'
        return KQLSyntaxError(f"Expected {listed} but {found} found.", self.s, self.far)

    def _chain(self, pos: int, item: Any, sep: Any) -> tuple[list[Any], int]:
        first, pos = item(pos)
        items = [first]
        while True:
            after = sep(pos)
            if after is None:
                self.fail(self.spaces(pos), "whitespace")
                break
            try:
                nxt, end = item(after)
            except _Fail:
                break
            items.append(nxt)
            pos = end
        return items, pos

    @staticmethod
    def _fold(items: list[Any], make: Any) -> Any:
        node = items[-1]
        for left in reversed(items[:-1]):
            node = make(left, node)
        return node

    def or_query(self, pos: int) -> tuple[Node, int]:
        items, pos = self._chain(pos, self.and_query, self.or_at)
        return self._fold(items, lambda a, b: Or((a, b))), pos

    def and_query(self, pos: int) -> tuple[Node, int]:
        items, pos = self._chain(pos, self.not_query, self.and_at)
        return self._fold(items, lambda a, b: And((a, b))), pos

    def not_query(self, pos: int) -> tuple[Node, int]:
        after = self.not_at(pos)
        if after is not None:
            try:
                child, end = self.sub_query(after)
                return Not(child), end
            except _Fail:
                pass
        return self.sub_query(pos)

    def sub_query(self, pos: int) -> tuple[Node, int]:
        if pos < self.n and self.s[pos] == "(":
            try:
                query, p = self.or_query(self.spaces(pos + 1))
                p = self.spaces(p)
                if p < self.n and self.s[p] == ")":
                    return query, p + 1
                raise self.fail(p, '")"')
            except _Fail:
                pass
        else:
            self.fail(pos, '"("')
        return self.nested_query(pos)

    def nested_query(self, pos: int) -> tuple[Node, int]:
        try:
            field, p = self.literal(pos)
            p = self.spaces(p)
            if p < self.n and self.s[p] == ":":
                p = self.spaces(p + 1)
                if p < self.n and self.s[p] == "{":
                    query, p = self.or_query(self.spaces(p + 1))
                    p = self.spaces(p)
                    if p < self.n and self.s[p] == "}":
                        return Nested(field, query), p + 1
                    raise self.fail(p, '"}"')
                self.fail(p, '"{"')
        except _Fail:
            pass
        return self.expression(pos)

    def expression(self, pos: int) -> tuple[Node, int]:
        try:
            return self.range_expression(pos)
        except _Fail:
            pass
        try:
            return self.field_value_expression(pos)
        except _Fail:
            pass
        make, end = self.value(pos)
        return make(Literal(None)), end

    def range_expression(self, pos: int) -> tuple[Node, int]:
        field, p = self.literal(pos)
        p = self.spaces(p)
        for text, op in (("<=", "lte"), (">=", "gte"), ("<", "lt"), (">", "gt")):
            if self.s.startswith(text, p):
                value, end = self.literal(self.spaces(p + len(text)))
                return Range(field, op, value), end
        raise self.fail(p, "range operator")

    def field_value_expression(self, pos: int) -> tuple[Node, int]:
        field, p = self.literal(pos)
        p = self.spaces(p)
        if p >= self.n or self.s[p] != ":":
            raise self.fail(p, '":"')
        make, end = self.list_of_values(self.spaces(p + 1))
        return make(field), end

    # Values after "field:" are functions of the field, as the grammar's partials are.
    def list_of_values(self, pos: int) -> tuple[Any, int]:
        if pos < self.n and self.s[pos] == "(":
            try:
                make, p = self.or_values(self.spaces(pos + 1))
                p = self.spaces(p)
                if p < self.n and self.s[p] == ")":
                    return make, p + 1
                raise self.fail(p, '")"')
            except _Fail:
                pass
        else:
            self.fail(pos, '"("')
        return self.value(pos)

    def or_values(self, pos: int) -> tuple[Any, int]:
        items, pos = self._chain(pos, self.and_values, self.or_at)
        return self._fold(items, lambda a, b: lambda f: Or((a(f), b(f)))), pos

    def and_values(self, pos: int) -> tuple[Any, int]:
        items, pos = self._chain(pos, self.not_values, self.and_at)
        return self._fold(items, lambda a, b: lambda f: And((a(f), b(f)))), pos

    def not_values(self, pos: int) -> tuple[Any, int]:
        after = self.not_at(pos)
        if after is not None:
            try:
                make, end = self.list_of_values(after)
                return (lambda f: Not(make(f))), end
            except _Fail:
                pass
        return self.list_of_values(pos)

    def value(self, pos: int) -> tuple[Any, int]:
        if pos < self.n and self.s[pos] == '"':
            text, end = self.quoted(pos)
            lit = Literal(text)
            return (lambda f: Is(f, lit, True)), end
        val, end = self.unquoted(pos)
        return (lambda f: Is(f, val, False)), end

    def literal(self, pos: int) -> tuple[Value, int]:
        if pos < self.n and self.s[pos] == '"':
            text, end = self.quoted(pos)
            return Literal(text), end
        return self.unquoted(pos)

    def quoted(self, pos: int) -> tuple[str, int]:
        p = pos + 1
        out: list[str] = []
        while p < self.n:
            c = self.s[p]
            if c == "\\" and p + 1 < self.n and self.s[p + 1] in "trn":
                out.append({"t": "\t", "r": "\r", "n": "\n"}[self.s[p + 1]])
                p += 2
            elif c == "\\" and p + 1 < self.n and self.s[p + 1] in '\\"':
                out.append(self.s[p + 1])
                p += 2
            elif c == '"':
                return "".join(out), p + 1
            else:
                out.append(c)
                p += 1
        raise self.fail(p, '"\\""')

    def unquoted(self, pos: int) -> tuple[Value, int]:
        p = pos
        chars: list[str] = []
        while p < self.n:
            c = self.s[p]
            if c == "\\" and p + 1 < self.n:
                nxt = self.s[p + 1]
                if nxt in "trn":
                    chars.append({"t": "\t", "r": "\r", "n": "\n"}[nxt])
                    p += 2
                    continue
                if nxt in _SPECIAL:
                    chars.append(nxt)
                    p += 2
                    continue
                word = next((w for w in ("and", "not", "or") if self._word(p + 1, w)), None)
                if word is not None:
                    chars.append(self.s[p + 1 : p + 1 + len(word)])
                    p += 1 + len(word)
                    continue
            if c == "*":
                chars.append(WILDCARD)
                p += 1
                continue
            if c in _SPECIAL or self.keyword_at(p):
                break
            chars.append(c)
            p += 1
        if not chars:
            raise self.fail(pos, "value")
        sequence = "".join(chars).strip(_SPACE)
        if sequence == "null":
            return Literal(None), p
        if sequence in ("true", "false"):
            return Literal(sequence == "true"), p
        if WILDCARD in chars:
            return Wildcard(sequence), p
        number = js_number(sequence)
        return Literal(sequence if number is None else number), p


def js_number(text: str) -> int | float | None:
    """JavaScript's ``Number(text)``, or None for NaN; integral values as ``int`` (JSON shows
    ``503`` either way)."""
    s = text.strip()
    if s == "":
        return 0
    value: float
    if _JS_DECIMAL.fullmatch(s):
        value = float(s)
    elif re.fullmatch(r"[+-]?Infinity", s):
        value = -math.inf if s.startswith("-") else math.inf
    elif re.fullmatch(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+", s):
        return int(s, 0)
    else:
        return None
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return int(value)
    return value


def parse(query: str) -> Node:
    """A KQL expression → its syntax tree (an empty query matches everything)."""
    parser = _Parser(query)
    try:
        return parser.start()
    except _Fail:
        raise parser.error() from None


# --- to the query DSL ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """What the translation needs of an index pattern's field."""

    name: str
    type: str = ""
    nested_path: str | None = None


def js_string(value: Scalar) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _name(node: Value) -> str:
    return node.es() if isinstance(node, Wildcard) else js_string(node.value)


def _value(node: Value) -> Scalar:
    return node.es() if isinstance(node, Wildcard) else node.value


class Translator:
    def __init__(self, fields: list[Field] | None = None, *, time_zone: str | None = None) -> None:
        self.fields = fields
        self.time_zone = time_zone

    def _full_name(self, node: Value, nested: str | None) -> Value:
        if nested is None or (isinstance(node, Literal) and node.value is None):
            return node
        if isinstance(node, Wildcard):
            return Wildcard(f"{nested}.{node.value}")
        return Literal(f"{nested}.{js_string(node.value)}")

    def _fields(self, node: Value) -> list[Field]:
        if self.fields is None:
            return []
        if isinstance(node, Wildcard):
            return [f for f in self.fields if node.matches(f.name)]
        name = js_string(node.value)
        return [f for f in self.fields if f.name == name][:1]

    def to_dsl(self, node: Node, nested: str | None = None) -> dict[str, Any]:
        if isinstance(node, And):
            return {"bool": {"filter": [self.to_dsl(c, nested) for c in node.children]}}
        if isinstance(node, Or):
            return {"bool": {"should": [self.to_dsl(c, nested) for c in node.children], "minimum_should_match": 1}}
        if isinstance(node, Not):
            return {"bool": {"must_not": self.to_dsl(node.child, nested)}}
        if isinstance(node, Nested):
            path = _name(node.path) if nested is None else f"{nested}.{_name(node.path)}"
            return {"nested": {"path": path, "query": self.to_dsl(node.child, path), "score_mode": "none"}}
        if isinstance(node, Range):
            return self._range(node, nested)
        return self._is(node, nested)

    def _tz(self) -> dict[str, Any]:
        return {"time_zone": self.time_zone} if self.time_zone else {}

    def _wrap(self, field_node: Value, field: Field, query: dict[str, Any], nested: str | None) -> dict[str, Any]:
        # Wildcard field names may reach nested fields: Kibana wraps those in a nested query.
        if not isinstance(field_node, Wildcard) or field.nested_path is None or nested is not None:
            return query
        return {"nested": {"path": field.nested_path, "query": query, "score_mode": "none"}}

    def _is(self, node: Is, nested: str | None) -> dict[str, Any]:
        value_node = node.value
        exists = isinstance(value_node, Wildcard) and value_node.value == WILDCARD
        all_fields = isinstance(node.field, Wildcard) and node.field.value == WILDCARD
        if exists and all_fields:
            return {"match_all": {}}
        field_node = self._full_name(node.field, nested)
        kind = "phrase" if node.phrase else "best_fields"
        if isinstance(field_node, Literal) and field_node.value is None:
            if isinstance(value_node, Wildcard):
                return {"query_string": {"query": value_node.query_string()}}
            return {"multi_match": {"type": kind, "query": _value(value_node), "lenient": True}}
        fields = self._fields(field_node)
        if not fields:
            fields = [Field(_name(field_node))]
        if exists and (not fields or (self.fields is not None and len(fields) == len(self.fields))):
            return {"match_all": {}}
        queries: list[dict[str, Any]] = []
        for f in fields:
            if exists:
                q: dict[str, Any] = {"exists": {"field": f.name}}
            elif isinstance(value_node, Wildcard):
                q = {"query_string": {"fields": [f.name], "query": value_node.query_string()}}
            elif f.type == "date":
                q = {"range": {f.name: {"gte": value_node.value, "lte": value_node.value, **self._tz()}}}
            else:
                q = {"match_phrase" if node.phrase else "match": {f.name: value_node.value}}
            queries.append(self._wrap(field_node, f, q, nested))
        return {"bool": {"should": queries, "minimum_should_match": 1}}

    def _range(self, node: Range, nested: str | None) -> dict[str, Any]:
        field_node = self._full_name(node.field, nested)
        fields = self._fields(field_node) or [Field(_name(field_node))]
        params = {node.op: _value(node.value)}
        queries = []
        for f in fields:
            body = {**params, **self._tz()} if f.type == "date" else dict(params)
            queries.append(self._wrap(field_node, f, {"range": {f.name: body}}, nested))
        return {"bool": {"should": queries, "minimum_should_match": 1}}


def to_dsl(query: str, fields: list[Field] | None = None, *, time_zone: str | None = None) -> dict[str, Any]:
    """``fromKueryExpression`` + ``toElasticsearchQuery`` in one call."""
    return Translator(fields, time_zone=time_zone).to_dsl(parse(query))
