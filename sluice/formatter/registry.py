"""From a parsed command to its provider: the syntax checks of Envoy's
``CommandSyntaxChecker``, then the operator's factory (``operators.OPERATORS``); and what the
compiled formats (``codegen``) know about each provider — its value's kind and, for the common
operators, an expression that computes it without a call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from sluice.formatter.operators import (
    COMMAND_ONLY,
    LENGTH_ALLOWED,
    OPERATORS,
    PARAMS_REQUIRED,
    Provider,
    wire_text,
)
from sluice.formatter.time_format import MILLIS, last_second, second_text
from sluice.http.headers import HeaderMap

# What each command's value is (the compiled formats skip the type tests for the known ones):
# "int" always an int, "int?" an int or None, "str" a str or None; anything else "any".
_INT = {
    "RESPONSE_CODE", "BYTES_RECEIVED", "BYTES_SENT", "DURATION", "UPSTREAM_REQUEST_ATTEMPT_COUNT", "CONNECTION_ID",
    "UPSTREAM_CONNECTION_ID", "REQUEST_HEADERS_BYTES", "RESPONSE_HEADERS_BYTES", "RESPONSE_TRAILERS_BYTES",
}  # fmt: skip
_OPT_INT = {
    "REQUEST_DURATION", "REQUEST_TX_DURATION", "RESPONSE_DURATION", "RESPONSE_TX_DURATION", "COMMON_DURATION",
    "UPSTREAM_CONNECTION_POOL_READY_DURATION", "DOWNSTREAM_REMOTE_PORT", "DOWNSTREAM_LOCAL_PORT",
    "DOWNSTREAM_DIRECT_REMOTE_PORT", "DOWNSTREAM_DIRECT_LOCAL_PORT", "UPSTREAM_LOCAL_PORT", "UPSTREAM_REMOTE_PORT",
}  # fmt: skip
_STR = {
    "REQ", "RESP", "TRAILER", "STREAM_INFO_REQ", "PROTOCOL", "UPSTREAM_PROTOCOL", "RESPONSE_CODE_DETAILS",
    "CONNECTION_TERMINATION_DETAILS", "RESPONSE_FLAGS", "RESPONSE_FLAGS_LONG", "UPSTREAM_HOST", "UPSTREAM_HOST_NAME",
    "UPSTREAM_HOST_NAME_WITHOUT_PORT", "UPSTREAM_CLUSTER", "UPSTREAM_CLUSTER_RAW", "UPSTREAM_LOCAL_ADDRESS",
    "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", "UPSTREAM_REMOTE_ADDRESS", "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "UPSTREAM_TRANSPORT_FAILURE_REASON", "DOWNSTREAM_LOCAL_ADDRESS", "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_DIRECT_LOCAL_ADDRESS", "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT", "DOWNSTREAM_REMOTE_ADDRESS",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", "DOWNSTREAM_DIRECT_REMOTE_ADDRESS",
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT", "ROUTE_NAME", "VIRTUAL_CLUSTER_NAME", "HOSTNAME", "UNIQUE_ID",
    "STREAM_ID", "START_TIME", "START_TIME_LOCAL", "EMIT_TIME", "EMIT_TIME_LOCAL", "ENVIRONMENT", "LOCAL_REPLY_BODY",
    "ACCESS_LOG_TYPE", "CUSTOM_FLAGS", "FILTER_CHAIN_NAME",
}  # fmt: skip

KINDS: weakref.WeakKeyDictionary[Provider, str] = weakref.WeakKeyDictionary()
"""Provider → its value kind ("int", "int?", "str", "str!" never None; absent: any JSON value)."""

INLINE_RAW: weakref.WeakKeyDictionary[Provider, str] = weakref.WeakKeyDictionary()
"""Provider → its :data:`INLINE` expression without the :func:`wire_text` conversion, where
that differs: a header value as the parser gave it (latin-1), non-ASCII only when the request
had such bytes. The fast JSON path uses these and falls back when its line is not ASCII."""

_NEVER_NONE = {"START_TIME", "RESPONSE_FLAGS"}
"""Commands whose inlined expression (below) is always a str (with no argument)."""


INLINE: weakref.WeakKeyDictionary[Provider, str] = weakref.WeakKeyDictionary()
"""Provider → a Python expression over ``ctx``/``info`` (and :data:`INLINE_NAMESPACE`) that
computes the same value: the compiled formats use it instead of calling the provider."""

def _wired(expr: str) -> str:
    """``wire_text(expr)`` without the call for the common case (ASCII or None)."""
    return f"(_w if (_w := {expr}) is None or _w.isascii() else wire_text(_w))"


_INLINE_INFO = {
    "RESPONSE_CODE": "(info.response_code or 0)",
    "BYTES_RECEIVED": "info.bytes_received",
    "BYTES_SENT": "info.bytes_sent",
    "DURATION": "int(((info.last_downstream_tx or info.clock.monotonic()) - info.start_time) * 1000)",  # duration_ms()
    "PROTOCOL": "(info.protocol or None)",
    "RESPONSE_FLAGS": "(info.flags_short() if info.flag_order else '-')",
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": "info.attempt_count",
    "CONNECTION_ID": "info.connection_id",
    "ROUTE_NAME": "(info.route_name or None)",
    "UPSTREAM_CLUSTER": "(info.upstream_cluster or None)",
    "UPSTREAM_CLUSTER_RAW": "(info.upstream_cluster or None)",
    "UPSTREAM_HOST": "info.upstream_host",
    "STREAM_ID": "info.request_id",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": "(None if (_a := info.downstream_remote_address) is None else _a[0])",
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": "(None if (_a := info.downstream_local_address) is None else _a[0])",
}
def _raw(expr: str) -> str:
    """``expr`` as it is (for the fast JSON path, which checks the whole line once instead)."""
    return expr


_INLINE_REQUEST_PSEUDO = {":method": "_h.method", ":authority": "{W}(_h.authority)", "host": "{W}(_h.authority)",
                          ":path": "{W}((_h.path or None))", ":scheme": "(_h.scheme or None)"}  # fmt: skip
_INLINE_REQUEST_RAW = {":method": "_h.method", ":authority": "_h.authority", "host": "_h.authority",
                       ":path": "(_h.path or None)", ":scheme": "(_h.scheme or None)"}  # fmt: skip


def _header_value(h: HeaderMap | None, name: str) -> str | None:
    """A header's first value (``None`` without the map or the header)."""
    return None if h is None else wire_text(h.get(name))


INLINE_NAMESPACE: dict[str, Any] = {
    "header_value": _header_value, "wire_text": wire_text, "second_text": second_text, "MILLIS": MILLIS,
    "_tc": last_second,
}  # fmt: skip

HEADER_LOOKUPS: weakref.WeakKeyDictionary[Provider, tuple[str, str | None]] = weakref.WeakKeyDictionary()
"""Provider → (``"request_headers"`` or ``"response_headers"``, the lowercase name of a plain
``%REQ(name)%`` / ``%RESP(name)%``, else None) for a provider whose inlined expression looks headers up
by name (``header_value(...)`` or ``_h.get(...)``): a format with such lookups builds a dict
of the map's first values once per line (``codegen``) rather than scanning the entries for
each (a dict from the entries is C work; a scan is a Python loop)."""


def _inline(command: str, arg: str, max_length: int | None, wired: Callable[[str], str]) -> str | None:
    """The inlined expression for a command (None: not inlined); ``wired`` wraps a header
    value's expression in the conversion of :func:`wire_text`."""
    if command in _INLINE_INFO:
        return _INLINE_INFO[command]
    if command == "START_TIME" and not arg:
        # default_time(info.start_wall), without the call
        return "((_tc[1] if _tc[0] == (_s := int(_t := info.start_wall)) else second_text(_s)) + MILLIS[int((_t - _s) * 1000)])"
    if command in ("REQ", "RESP") and max_length is None:
        attr = "ctx.request_headers" if command == "REQ" else "ctx.response_headers"
        if "?" not in arg:
            name = arg.lower()
            if command == "REQ" and name in _INLINE_REQUEST_PSEUDO:
                pseudo = _INLINE_REQUEST_PSEUDO[name]
                if pseudo.startswith("{W}("):
                    pseudo = wired(pseudo[4:-1])
                return f"(None if (_h := {attr}) is None else {pseudo})"
            if _plain_name(name):
                if wired is _raw:
                    return f"(None if (_h := {attr}) is None else _h.get({name!r}))"
                return f"header_value({attr}, {name!r})"
            return None
        # %REQ(main?alt)%: the first present of the two (each a pseudo-header or a plain name).
        main, alt = (_lookup(command, n.lower()) for n in arg.split("?", 1))
        if main is not None and alt is not None:
            return f"(None if (_h := {attr}) is None else {wired(f'_a if (_a := {main}) is not None else {alt}')})"
    return None


def _plain_name(name: str) -> bool:
    return bool(name) and name[:1] != ":" and name != "host" and name.isascii() and name.isprintable()


def _lookup(command: str, name: str) -> str | None:
    """An expression over the map ``_h`` for one header's raw value (None: not inlinable)."""
    if command == "REQ" and name in _INLINE_REQUEST_RAW:
        return _INLINE_REQUEST_RAW[name]
    return f"_h.get({name!r})" if _plain_name(name) else None


def build_provider(command: str, arg: str, max_length: int | None) -> Provider:
    """The provider for one command; ValueError with Envoy's message for a bad one."""
    provider = _build(command, arg, max_length)
    kind = "int" if command in _INT else "int?" if command in _OPT_INT else "str" if command in _STR else None
    expr = _inline(command, arg, max_length, _wired)
    if expr is not None:
        INLINE[provider] = expr
        raw = _inline(command, arg, max_length, _raw)
        if raw is not None and raw != expr:
            INLINE_RAW[provider] = raw
        if command in _NEVER_NONE:
            kind = "str!"
        if expr.startswith("header_value(") or "_h.get(" in expr:
            plain = arg.lower() if expr.startswith("header_value(") else None
            HEADER_LOOKUPS[provider] = ("request_headers" if command == "REQ" else "response_headers", plain)
    if kind is not None:
        KINDS[provider] = kind
    return provider


def _build(command: str, arg: str, max_length: int | None) -> Provider:
    entry = OPERATORS.get(command)
    if entry is None:
        raise ValueError(f"Not supported field in StreamInfo: {command}")
    flags, factory = entry
    if flags == COMMAND_ONLY and (arg or max_length is not None):
        raise ValueError(f"{command} does not take any parameters or length")
    if flags & PARAMS_REQUIRED and not arg:
        raise ValueError(f"{command} requires parameters")
    if not flags & LENGTH_ALLOWED and max_length is not None:
        raise ValueError(f"{command} does not allow length to be specified.")
    return factory(arg, max_length)
