"""Formats compiled to one Python function each: a line is then a single ``"".join`` of
constants and provider calls, with each value's conversion chosen at config load from the
provider's kind (``registry.KINDS``) instead of tested per line. An access log runs once per
request, so this is on the request path (``bench/access_log_cost.py`` measures it).

The generated source holds only ``repr()`` of constant strings and names bound in its own
namespace; no config text is ever evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sluice.formatter.context import FormatContext
from sluice.formatter.operators import Provider
from sluice.formatter.registry import INLINE, INLINE_NAMESPACE, KINDS

Step = tuple[int, Any]
"""``(CONST, str)``, ``(VALUE, provider)`` (a JSON value, or text in a text format) or
``(STRING, pieces)`` (JSON: a string made of literal pieces and providers)."""
CONST, VALUE, STRING = 0, 1, 2

Compiled = Callable[[FormatContext], str]


def _text_expr(call: str, kind: str | None, empty: str) -> str:
    """A provider's value (``call``: its expression) as text (``empty`` when missing)."""
    if kind == "int":
        return f"str({call})"
    if kind == "str":
        return f"(_v if (_v := {call}) is not None else {empty!r})"
    if kind == "int?":
        return f"(str(_v) if (_v := {call}) is not None else {empty!r})"
    return f"(to_text(_v) if (_v := {call}) is not None else {empty!r})"


def _json_expr(call: str, kind: str | None) -> str:
    """A provider's value (``call``: its expression) as JSON (``null`` when missing)."""
    if kind == "int":
        return f"str({call})"
    if kind == "str":
        return f"('null' if (_v := {call}) is None else enc(_v))"
    if kind == "int?":
        return f"('null' if (_v := {call}) is None else str(_v))"
    return f"json_value({call})"


def compile_steps(steps: Sequence[Step], *, json: bool, empty: str, helpers: dict[str, Any]) -> Compiled:
    """One function for ``steps``. ``helpers`` gives ``to_text`` (and, for JSON, ``enc`` and
    ``json_value``)."""
    namespace: dict[str, Any] = {**INLINE_NAMESPACE, **helpers}
    parts: list[str] = []
    providers = 0

    def bind(p: Provider) -> str:
        """The expression for ``p``'s value: inlined (see ``registry.INLINE``) or a call."""
        nonlocal providers
        expr = INLINE.get(p)
        if expr is not None:
            return expr
        name = f"p{providers}"
        providers += 1
        namespace[name] = p
        return f"{name}(ctx)"

    for kind, data in steps:
        if kind == CONST:
            if data:
                parts.append(repr(data))
        elif kind == VALUE:
            name = bind(data)
            parts.append(_json_expr(name, KINDS.get(data)) if json else _text_expr(name, KINDS.get(data), empty))
        else:
            inner = []
            for piece in data:
                if isinstance(piece, str):
                    inner.append(repr(piece))
                else:
                    inner.append(_text_expr(bind(piece), KINDS.get(piece), empty))
            parts.append(f"enc(''.join(({', '.join(inner)},)))" if inner else "enc('')")
    if not parts:
        body = "''"
    elif len(parts) == 1:
        body = parts[0]
    else:
        body = f"''.join(({', '.join(parts)},))"
    source = f"def format_line(ctx):\n    info = ctx.stream_info\n    return {body}\n"
    exec(compile(source, "<access log format>", "exec"), namespace)  # noqa: S102 (our own source, see the docstring)
    fn: Compiled = namespace["format_line"]
    return fn
