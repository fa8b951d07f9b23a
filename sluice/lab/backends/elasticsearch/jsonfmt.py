"""JSON in and out as Elasticsearch writes it: compact by default, Jackson's pretty printer for
``?pretty`` (two-space indent, ``"key" : value``, ``[ ]`` and ``{ }`` for empty containers), and
``filter_path`` response filtering (``errors,items.*.status``; ``*`` one level, ``**`` any depth,
a leading ``-`` excludes)."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from sluice.lab.backends.elasticsearch.errors import EsError


def loads(data: bytes | str) -> Any:
    """Parse a request body; a syntax error is ES's 400 ``json_parse_exception``-style answer."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EsError(400, "json_parse_exception", _jackson_reason(exc)) from None


def _jackson_reason(exc: orjson.JSONDecodeError) -> str:
    # Deliberate difference: the reason names orjson's finding, not Jackson's wording.
    return f"Unexpected character at [Source: (byte[]); line: {exc.lineno}, column: {exc.colno}]: {exc.msg}"


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    if pretty:
        out: list[str] = []
        _pretty(obj, 0, out)
        out.append("\n")
        return "".join(out).encode()
    try:
        return orjson.dumps(obj)
    except TypeError:  # integers beyond 64 bits, which only json handles
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _scalar(v: Any) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return '"NaN"' if math.isnan(v) else ('"Infinity"' if v > 0 else '"-Infinity"')
    return json.dumps(v, ensure_ascii=False)


def _pretty(v: Any, level: int, out: list[str]) -> None:
    if isinstance(v, dict):
        if not v:
            out.append("{ }")
            return
        pad = "  " * (level + 1)
        out.append("{\n")
        first = True
        for k, item in v.items():
            if not first:
                out.append(",\n")
            first = False
            out.append(f"{pad}{json.dumps(str(k), ensure_ascii=False)} : ")
            _pretty(item, level + 1, out)
        out.append("\n" + "  " * level + "}")
    elif isinstance(v, (list, tuple)):
        if not v:
            out.append("[ ]")
            return
        pad = "  " * (level + 1)
        out.append("[\n")
        for i, item in enumerate(v):
            if i:
                out.append(",\n")
            out.append(pad)
            _pretty(item, level + 1, out)
        out.append("\n" + "  " * level + "]")
    else:
        out.append(_scalar(v))


# --- filter_path ------------------------------------------------------------------------------


def filter_path(obj: Any, spec: str) -> Any:
    """``FilterPath`` as ES applies it to a response (arrays are transparent)."""
    root, excludes = _compiled(spec)
    result = obj
    if root is not None:
        kept = _include(obj, root)
        result = kept if kept is not _NOTHING else {}
    if excludes:
        result = _exclude(result, excludes)
    return result


_NOTHING = object()
_MAX_SPECS = 64
_MAX_KEYS = 256
"""Transitions kept per state: a ``**`` or ``*`` state sees every key of a search's sources."""


class _State:
    """The include paths still to match below one level of a response, with the next state
    for each key seen (the same keys recur in every item of a bulk answer, so each key is
    matched against the patterns once per distinct filter, not once per item)."""

    __slots__ = ("paths", "whole", "trans")

    def __init__(self, paths: list[list[str]]) -> None:
        self.paths = paths
        self.whole = any(not p for p in paths)
        self.trans: dict[str, _State | None] = {}

    def step(self, key: str) -> _State | None:
        nxt = self.trans.get(key, _UNSEEN)
        if nxt is not _UNSEEN:
            return nxt
        rest: list[list[str]] = []
        for p in self.paths:
            head = p[0]
            if head == "**":
                rest.append(p)  # ** may swallow this level…
                if len(p) > 1 and _match(p[1], key):
                    rest.append(p[2:])  # …or end here
            elif _match(head, key):
                rest.append(p[1:])
        state = _State(rest) if rest else None
        if len(self.trans) < _MAX_KEYS:
            self.trans[key] = state
        return state


_UNSEEN = _State([])
"""A key not looked at yet (a sentinel, never a real state)."""
_SPECS: dict[str, tuple[_State | None, list[list[str]]]] = {}


def _compiled(spec: str) -> tuple[_State | None, list[list[str]]]:
    """A ``filter_path`` value, split once per distinct value (clients send the same one with
    every request)."""
    got = _SPECS.get(spec)
    if got is None:
        includes = [p.split(".") for p in spec.split(",") if p and not p.startswith("-")]
        excludes = [p[1:].split(".") for p in spec.split(",") if p.startswith("-") and len(p) > 1]
        got = (_State(includes) if includes else None, excludes)
        if len(_SPECS) >= _MAX_SPECS:
            _SPECS.clear()
        _SPECS[spec] = got
    return got


def _match(pattern: str, key: str) -> bool:
    if pattern == "*":
        return True
    if "*" not in pattern:
        return pattern == key
    from fnmatch import fnmatchcase

    return fnmatchcase(key, pattern.replace("[", "[[]").replace("?", "[?]"))


def _include(v: Any, state: _State) -> Any:
    if state.whole:
        return v
    if isinstance(v, list):
        items = [x for x in (_include(i, state) for i in v) if x is not _NOTHING]
        return items if items else _NOTHING
    if not isinstance(v, dict):
        return _NOTHING
    out: dict[str, Any] = {}
    trans = state.trans
    for k, item in v.items():
        nxt = trans.get(k, _UNSEEN)
        if nxt is _UNSEEN:
            nxt = state.step(k)
        if nxt is not None:
            kept = _include(item, nxt)
            if kept is not _NOTHING:
                out[k] = kept
    return out if out else _NOTHING


def _exclude(v: Any, paths: list[list[str]]) -> Any:
    if isinstance(v, list):
        return [_exclude(i, paths) for i in v]
    if not isinstance(v, dict):
        return v
    out: dict[str, Any] = {}
    for k, item in v.items():
        rest = [p[1:] for p in paths if _match(p[0], k)]
        if any(not r for r in rest):
            continue
        out[k] = _exclude(item, rest) if rest else item
    return out
