"""Formats compiled to one Python function each: a line is then a single ``"".join`` of
constants and provider calls, with each value's conversion chosen at config load from the
provider's kind (``registry.KINDS``) instead of tested per line. An access log runs once per
request, so this is on the request path (``bench/access_log_cost.py`` measures it).

A JSON format without ``omit_empty_values`` compiles twice: a fast function that builds the
object as a Python dict and encodes it with orjson in one C call, and the general one it falls
back to when a value is something orjson would write differently from Envoy (a float, a
struct, an integer beyond 64 bits, text that is not UTF-8: orjson raises, or ``plain`` does).
orjson escapes strings exactly as ``json.encoder.encode_basestring`` does (checked over every
code point in the unit tests), which is the escaping the general path uses.

The generated source holds only ``repr()`` of constant strings and names bound in its own
namespace; no config text is ever evaluated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import orjson

from sluice.formatter.context import FormatContext
from sluice.formatter.operators import Provider
from sluice.formatter.registry import HEADER_LOOKUPS, INLINE, INLINE_NAMESPACE, INLINE_RAW, KINDS

Step = tuple[int, Any]
"""``(CONST, str)``, ``(VALUE, provider)`` (a JSON value, or text in a text format) or
``(STRING, pieces)`` (JSON: a string made of literal pieces and providers)."""
CONST, VALUE, STRING = 0, 1, 2

Compiled = Callable[[FormatContext], str]


def _text_expr(call: str, kind: str | None, empty: str) -> str:
    """A provider's value (``call``: its expression) as text (``empty`` when missing)."""
    if kind == "int":
        return f"str({call})"
    if kind == "str!":
        return call
    if kind == "str":
        return f"(_v if (_v := {call}) is not None else {empty!r})"
    if kind == "int?":
        return f"(str(_v) if (_v := {call}) is not None else {empty!r})"
    return f"(to_text(_v) if (_v := {call}) is not None else {empty!r})"


def _json_expr(call: str, kind: str | None) -> str:
    """A provider's value (``call``: its expression) as JSON (``null`` when missing)."""
    if kind == "int":
        return f"str({call})"
    if kind == "str!":
        return f"enc({call})"
    if kind == "str":
        return f"('null' if (_v := {call}) is None else enc(_v))"
    if kind == "int?":
        return f"('null' if (_v := {call}) is None else str(_v))"
    return f"json_value({call})"


class _Binder:
    """The namespace of one generated function and the expressions of its providers."""

    def __init__(self, helpers: dict[str, Any], providers: Iterable[Provider], *, raw: bool = False) -> None:
        self.namespace: dict[str, Any] = {**INLINE_NAMESPACE, **helpers}
        self.raw = raw
        """Header values as the parser gave them (see ``registry.INLINE_RAW``)."""
        self.count = 0
        lookups: dict[str, int] = {}
        for p in providers:
            where = HEADER_LOOKUPS.get(p)
            if where is not None:
                lookups[where[0]] = lookups.get(where[0], 0) + 1
        # A map read for two headers or more: its first values as one dict, built once a line
        # (for one header a scan of a few entries costs less than the dict).
        self.dicts = sorted(m for m, n in lookups.items() if n >= 2)

    def prelude(self) -> str:
        return "".join(
            f"    _d_{m} = {{}} if (_m := ctx.{m}) is None else dict(reversed(_m.entries))\n" for m in self.dicts
        )

    def bind(self, p: Provider) -> str:
        """The expression for ``p``'s value: inlined (see ``registry.INLINE``) or a call."""
        expr = (self.raw and INLINE_RAW.get(p)) or INLINE.get(p)
        if expr is not None:
            where = HEADER_LOOKUPS.get(p)
            if where is not None and where[0] in self.dicts:
                # (a lookup in the inlined expression: header_value(ctx.<map>, name) or _h.get(name))
                if where[1] is None:
                    return expr.replace("_h.get(", f"_d_{where[0]}.get(")
                if self.raw:
                    return f"_d_{where[0]}.get({where[1]!r})"
                return f"(_w if (_w := _d_{where[0]}.get({where[1]!r})) is None or _w.isascii() else wire_text(_w))"
            return expr
        name = f"p{self.count}"
        self.count += 1
        self.namespace[name] = p
        return f"{name}(ctx)"

    def define(self, body: str) -> Callable[[FormatContext], Any]:
        """``format_line(ctx)`` with ``body`` (the caller knows what it returns)."""
        text = f"{self.prelude()}{body}"
        hoisted = ""
        for m in ("request_headers", "response_headers"):
            if text.count(f"ctx.{m}") >= 2:  # (read once into a local)
                text = text.replace(f"ctx.{m}", f"_{m}")
                hoisted += f"    _{m} = ctx.{m}\n"
        source = f"def format_line(ctx):\n    info = ctx.stream_info\n{hoisted}{text}"
        exec(compile(source, "<access log format>", "exec"), self.namespace)  # noqa: S102 (our own source, see the docstring)
        fn: Callable[[FormatContext], Any] = self.namespace["format_line"]
        return fn


def _providers(steps: Sequence[Step]) -> list[Provider]:
    out: list[Provider] = []
    for kind, data in steps:
        if kind == VALUE:
            out.append(data)
        elif kind == STRING:
            out.extend(p for p in data if not isinstance(p, str))
    return out


def _pieces_text(b: _Binder, pieces: Sequence[Any], empty: str) -> str:
    """Literal pieces and providers as one text expression."""
    inner = [repr(p) if isinstance(p, str) else _text_expr(b.bind(p), KINDS.get(p), empty) for p in pieces]
    if len(inner) <= 3:  # (a few pieces: concatenated, cheaper than a tuple and a join)
        return f"({' + '.join(inner)})" if inner else "''"
    return f"''.join(({', '.join(inner)},))"


def compile_steps(steps: Sequence[Step], *, json: bool, empty: str, helpers: dict[str, Any]) -> Compiled:
    """One function for ``steps``. ``helpers`` gives ``to_text`` (and, for JSON, ``enc`` and
    ``json_value``)."""
    b = _Binder(helpers, _providers(steps))
    parts: list[str] = []
    for kind, data in steps:
        if kind == CONST:
            if data:
                parts.append(repr(data))
        elif kind == VALUE:
            name = b.bind(data)
            parts.append(_json_expr(name, KINDS.get(data)) if json else _text_expr(name, KINDS.get(data), empty))
        else:
            parts.append(f"enc({_pieces_text(b, data, empty)})")
    if not parts:
        body = "''"
    elif len(parts) == 1:
        body = parts[0]
    else:
        body = f"''.join(({', '.join(parts)},))"
    fn: Compiled = b.define(f"    return {body}\n")
    return fn


class _NotPlain(Exception):
    """A value the fast JSON path leaves to the general one."""


def _plain(value: Any) -> Any:
    """``value`` if orjson writes it as Envoy does (text, an integer, a bool, null)."""
    if value is None or type(value) in (str, int, bool):
        return value
    raise _NotPlain


Node = tuple[str, Any]
"""A JSON template node (see ``formatters.JsonFormatter``): ``("const", json_text)``,
``("one", provider)``, ``("pieces", pieces)``, ``("list", nodes)``, ``("map", [(key_json + ":", node)])``."""


def compile_json_tree(root: Node, fallback: Compiled, helpers: dict[str, Any]) -> Callable[[FormatContext], bytes] | None:
    """The fast function for a JSON template: the line (newline included) as UTF-8 bytes, a
    byte that was not UTF-8 as it came (``surrogateescape``, as the log file writes text). None
    when a constant of the template is not plain JSON (then the general path is the only one).
    ``helpers`` gives ``to_text``."""
    nodes = list(_nodes(root))
    providers = [p for kind, data in nodes if kind in ("one", "pieces") for p in (data if kind == "pieces" else [data])
                 if not isinstance(p, str)]  # fmt: skip
    # With every constant ASCII, a line that is not came from a value (header bytes past ASCII,
    # text from metadata): one check of the line then replaces a conversion per header value.
    raw = all(_ascii(kind, data) for kind, data in nodes)
    b = _Binder({**helpers, "dumps": orjson.dumps, "NL": orjson.OPT_APPEND_NEWLINE, "plain": _plain,
                 "NotPlain": _NotPlain, "fallback": fallback}, providers, raw=raw)  # fmt: skip

    def expr(node: Node) -> str:
        kind, data = node
        if kind == "const":
            return repr(json.loads(data))
        if kind == "one":
            call = b.bind(data)
            return call if KINDS.get(data) is not None else f"plain({call})"
        if kind == "pieces":
            return _pieces_text(b, data, "-")
        if kind == "list":
            return f"[{', '.join(expr(item) for item in data)}]"
        return "{" + ", ".join(f"{json.loads(key[:-1])!r}: {expr(item)}" for key, item in data) + "}"

    try:
        if root[0] == "map" and len(root[1]) > _CONST_KEY_MAP_MAX:
            # Python builds a literal of more than 15 pairs one pair at a time (growing the
            # dict twice on the way): 15 in the literal, the rest stored into it, cost less.
            head, rest = root[1][:_CONST_KEY_MAP_MAX], root[1][_CONST_KEY_MAP_MAX:]
            build = f"        _o = {expr(('map', head))}\n" + "".join(
                f"        _o[{json.loads(key[:-1])!r}] = {expr(item)}\n" for key, item in rest
            )
            obj = "_o"
        else:
            build, obj = "", expr(root)
    except ValueError:  # a constant such as 'inf' (from a YAML .inf): not JSON orjson would write
        return None
    fn: Callable[[FormatContext], bytes] = b.define(
        f"    try:\n{build}        line = dumps({obj}, None, NL)\n"
        "    except (TypeError, NotPlain):  # (orjson's JSONEncodeError is a TypeError)\n"
        "        return fallback(ctx).encode('utf-8', 'surrogateescape')\n"
        + ("    return line if line.isascii() else fallback(ctx).encode('utf-8', 'surrogateescape')\n" if raw else "    return line\n")
    )
    return fn


_CONST_KEY_MAP_MAX = 15
"""The most pairs CPython 3.11 builds a dict literal of at once (BUILD_CONST_KEY_MAP)."""


def _nodes(node: Node) -> Iterator[Node]:
    """Every node of a JSON template, a map's keys as ``("key", key_json)`` nodes."""
    yield node
    kind, data = node
    if kind == "list":
        for item in data:
            yield from _nodes(item)
    elif kind == "map":
        for key, item in data:
            yield ("key", key)
            yield from _nodes(item)


def _ascii(kind: str, data: Any) -> bool:
    """Whether a node's constants (a key, a constant value, literal pieces) are ASCII as orjson writes them."""
    if kind == "key":
        return bool(json.loads(data[:-1]).isascii())
    if kind == "const":
        try:
            return orjson.dumps(json.loads(data)).isascii()
        except (ValueError, TypeError):  # (not JSON orjson writes: compile_json_tree gives up anyway)
            return False
    if kind == "pieces":
        return all(p.isascii() for p in data if isinstance(p, str))
    return True
