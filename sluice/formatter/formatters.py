"""Compiled access-log formats: text lines and JSON objects (Envoy's ``FormatterImpl`` and
``JsonFormatterImpl``), built from a format string, a ``json_format`` struct or a
``SubstitutionFormatString``.

Text: each command's value, ``-`` when missing (nothing with ``omit_empty_values``). JSON: one
compact line per request with keys sorted; a value that is a single command keeps its type
(numbers stay numbers, a missing value is ``null`` — or the key is dropped with
``omit_empty_values``); a value mixing text and commands is a string.
"""

from __future__ import annotations

import json
import json.encoder as _json_encoder
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sluice.errors import ConfigError, UnsupportedError
from sluice.formatter.codegen import CONST, VALUE, Compiled, Node, compile_json_tree, compile_steps
from sluice.formatter.context import FormatContext
from sluice.formatter.operators import Provider, Value
from sluice.formatter.parser import Piece, parse
from sluice.paths import host_path

DEFAULT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "
    '"%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" '
    '"%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n'
)
"""Envoy's ``SubstitutionFormatUtils::DEFAULT_FORMAT``."""


class Formatter(Protocol):
    content_type: str

    def format(self, ctx: FormatContext) -> str: ...


def to_text(value: Value) -> str:
    """A typed value as text (Envoy's string form of a ``Protobuf::Value``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _number(value: float) -> str:
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


_encode_basestring: Callable[[str], str] = _json_encoder.encode_basestring
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _json_string(text: str) -> str:
    """A JSON string as Envoy's sanitizer writes it: control characters as ``\\uXXXX`` (``\\n``,
    ``\\t``… in their short forms), other characters as UTF-8, and a byte that was not UTF-8
    (a surrogate escape, see ``operators.wire_text``) as ``\\u00XX`` — and then every non-ASCII
    byte of the string so. (The C encoder of json.dumps, then that rule.)"""
    out = _encode_basestring(text)
    if not out.isascii() and _NOT_UTF8.search(out):
        # Not valid UTF-8: Envoy then escapes every byte above 0x7f of the string, each alone.
        out = "".join(c if c < "\x80" else "".join(f"\\u00{b:02x}" for b in c.encode("utf-8", "surrogateescape")) for c in out)
    return out


def _json_value(value: Value) -> str:
    t = type(value)
    if t is str:
        return _json_string(value)
    if t is int:
        return str(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is float:
        return _number(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


class TextFormatter:
    """A compiled text format."""

    __slots__ = ("pieces", "empty", "content_type", "format")

    def __init__(self, pieces: list[Piece], *, omit_empty: bool = False, content_type: str = "text/plain") -> None:
        self.pieces = pieces
        self.empty = "" if omit_empty else "-"
        self.content_type = content_type
        steps = [(CONST, p) if isinstance(p, str) else (VALUE, p) for p in pieces]
        self.format: Compiled = compile_steps(steps, json=False, empty=self.empty, helpers=_HELPERS)
        """``format(ctx) -> str``: the line (a compiled function, see ``codegen``)."""


class JsonFormatter:
    """A compiled ``json_format``: one sorted, compact JSON object per line."""

    __slots__ = ("root", "omit_empty", "content_type", "program", "format", "format_bytes")

    def __init__(self, struct: Mapping[str, Any], path: str, *, omit_empty: bool = False,
                 content_type: str = "application/json") -> None:
        self.omit_empty = omit_empty
        self.content_type = content_type
        self.root = self._compile_map(struct, path)
        # Without omit_empty_values nothing is ever dropped: the tree flattens into constant
        # JSON text between values (one pass, no recursion per line).
        self.program: list[tuple[int, Any]] | None = None if omit_empty else self._flatten()
        self.format: Compiled = self._render_line
        """``format(ctx) -> str``: the line. Without omit_empty_values a compiled function
        (see ``codegen``); with it, the tree is walked for each line."""
        self.format_bytes: Callable[[FormatContext], bytes] | None = None
        """The line as the log file writes it (UTF-8, surrogate escapes back to their bytes),
        straight from orjson when the format allows (see ``codegen.compile_json_tree``)."""
        if self.program is not None:
            self.format = compile_steps(self.program, json=True, empty="-", helpers=_HELPERS)
            self.format_bytes = compile_json_tree(self.root, self.format, _HELPERS)

    def _flatten(self) -> list[tuple[int, Any]]:
        steps: list[tuple[int, Any]] = []
        text: list[str] = []

        def const(piece: str) -> None:
            text.append(piece)

        def walk(node: Node) -> None:
            kind, data = node
            if kind == "const":
                const(data)
            elif kind in ("one", "pieces"):
                if text:
                    steps.append((0, "".join(text)))
                    text.clear()
                steps.append((1 if kind == "one" else 2, data))
            elif kind == "list":
                const("[")
                for i, item in enumerate(data):
                    if i:
                        const(",")
                    walk(item)
                const("]")
            else:
                const("{")
                for i, (key, item) in enumerate(data):
                    const(key if i == 0 else "," + key)
                    walk(item)
                const("}")

        walk(self.root)
        const("\n")
        steps.append((0, "".join(text)))
        return steps

    # -- compile ----------------------------------------------------------------------------
    def _compile(self, value: Any, path: str) -> Node | None:
        if isinstance(value, str):
            if "%" not in value:
                return ("const", _json_string(value))
            pieces = parse(value, path)
            if len(pieces) == 1:
                p = pieces[0]
                return ("const", _json_string(p)) if isinstance(p, str) else ("one", p)
            return ("pieces", pieces)
        if isinstance(value, bool):
            return ("const", "true" if value else "false")
        if isinstance(value, (int, float)):
            return ("const", _number(float(value)))
        if value is None:
            return None if self.omit_empty else ("const", "null")
        if isinstance(value, Mapping):
            return self._compile_map(value, path)
        if isinstance(value, Sequence):
            items = [self._compile(v, f"{path}[{i}]") for i, v in enumerate(value)]
            return ("list", [n for n in items if n is not None])
        raise ConfigError(f"{path}: a json_format value must be a string, number, bool, list or object")

    def _compile_map(self, struct: Mapping[str, Any], path: str) -> Node:
        fields = []
        for key in sorted(struct):
            node = self._compile(struct[key], f"{path}.{key}")
            if node is not None:
                fields.append((_json_string(key) + ":", node))
        return ("map", fields)

    # -- render -----------------------------------------------------------------------------
    def _render_line(self, ctx: FormatContext) -> str:
        out: list[str] = []
        if not self._render(self.root, ctx, out):
            out.append("{}")
        out.append("\n")
        return "".join(out)

    def _render(self, node: Node, ctx: FormatContext, out: list[str]) -> bool:
        """Append ``node``; False (nothing appended) when omit_empty drops it."""
        kind, data = node
        if kind == "const":
            out.append(data)
            return True
        if kind == "one":
            v = data(ctx)
            if v is None and self.omit_empty:
                return False
            out.append(_json_value(v))
            return True
        if kind == "pieces":
            out.append(_json_string(_join_pieces(data, ctx, "" if self.omit_empty else "-")))
            return True
        if kind == "list":
            out.append("[")
            first = True
            for item in data:
                mark = len(out)
                if not first:
                    out.append(",")
                if self._render(item, ctx, out):
                    first = False
                else:
                    del out[mark:]
            out.append("]")
            return True
        # map
        start = len(out)
        out.append("{")
        empty_map = True
        for key, item in data:
            mark = len(out)
            out.append(key if empty_map else "," + key)
            if self._render(item, ctx, out):
                empty_map = False
            else:
                del out[mark:]
        if empty_map and self.omit_empty:
            del out[start:]
            return False
        out.append("}")
        return True


def _join_pieces(pieces: list[Piece], ctx: FormatContext, empty: str) -> str:
    text = []
    for p in pieces:
        if isinstance(p, str):
            text.append(p)
        else:
            v = p(ctx)
            text.append(empty if v is None else v if type(v) is str else to_text(v))
    return "".join(text)


_HELPERS: dict[str, Any] = {"to_text": to_text, "enc": _json_string, "json_value": _json_value}


def compile_text(text: str, path: str, *, omit_empty: bool = False, content_type: str = "text/plain") -> TextFormatter:
    return TextFormatter(parse(text, path), omit_empty=omit_empty, content_type=content_type)


def compile_json(struct: Mapping[str, Any], path: str, *, omit_empty: bool = False,
                 content_type: str = "application/json") -> JsonFormatter:
    if not isinstance(struct, Mapping):
        raise ConfigError(f"{path}: json_format must be an object")
    return JsonFormatter(struct, path, omit_empty=omit_empty, content_type=content_type)


_DEFAULT: TextFormatter | None = None


def default_formatter() -> TextFormatter:
    """Envoy's default access-log line (compiled once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = compile_text(DEFAULT_FORMAT, "default access log format")
    return _DEFAULT


def compile_substitution(msg: Any, path: str) -> Formatter:
    """A ``SubstitutionFormatString`` (``log_format``, local reply ``body_format``)."""
    from google.protobuf import json_format as pb_json

    if len(msg.formatters):
        names = ", ".join(f"'{f.name}'" for f in msg.formatters)
        raise UnsupportedError(f"{path}.formatters: formatter extension {names} is not implemented yet")
    omit = bool(msg.omit_empty_values)
    kind = msg.WhichOneof("format")
    if kind == "json_format":
        ctype = msg.content_type or "application/json"
        return compile_json(pb_json.MessageToDict(msg.json_format), f"{path}.json_format", omit_empty=omit, content_type=ctype)
    ctype = msg.content_type or "text/plain"
    if kind == "text_format":
        return compile_text(msg.text_format, f"{path}.text_format", omit_empty=omit, content_type=ctype)
    if kind == "text_format_source":
        text = _data_source(msg.text_format_source, f"{path}.text_format_source")
        return compile_text(text, f"{path}.text_format_source", omit_empty=omit, content_type=ctype)
    # Neither set: Envoy formats an empty string (no line content).
    return compile_text("", f"{path}", omit_empty=omit, content_type=ctype)


def _data_source(src: Any, path: str) -> str:
    kind = src.WhichOneof("specifier")
    if kind == "inline_string":
        return str(src.inline_string)
    if kind == "inline_bytes":
        return bytes(src.inline_bytes).decode("utf-8", "replace")
    if kind == "filename":
        try:
            with open(host_path(src.filename), encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise ConfigError(f"{path}.filename: cannot read '{src.filename}': {exc.strerror}") from None
    if kind == "environment_variable":
        raise UnsupportedError(f"{path}.environment_variable: is not implemented yet")
    raise ConfigError(f"{path}: a data source needs inline_string, inline_bytes or filename")


__all__ = [
    "DEFAULT_FORMAT", "Formatter", "JsonFormatter", "Provider", "TextFormatter", "compile_json",
    "compile_substitution", "compile_text", "default_formatter", "to_text",
]
