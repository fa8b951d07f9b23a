"""From a parsed command to its provider: the syntax checks of Envoy's
``CommandSyntaxChecker``, then the operator's factory (``operators.OPERATORS``); and what the
compiled formats (``codegen``) know about each provider — its value's kind and, for the common
operators, an expression that computes it without a call.
"""

from __future__ import annotations

import weakref
from typing import Any

from sluice.formatter.operators import (
    COMMAND_ONLY,
    LENGTH_ALLOWED,
    OPERATORS,
    PARAMS_REQUIRED,
    Provider,
    wire_text,
)
from sluice.formatter.time_format import default_time
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
"""Provider → its value kind ("int", "int?", "str"; absent: any JSON value)."""


INLINE: weakref.WeakKeyDictionary[Provider, str] = weakref.WeakKeyDictionary()
"""Provider → a Python expression over ``ctx``/``info`` (and :data:`INLINE_NAMESPACE`) that
computes the same value: the compiled formats use it instead of calling the provider."""

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
_INLINE_REQUEST_PSEUDO = {":method": "_h.method", ":authority": "wire_text(_h.authority)",
                          "host": "wire_text(_h.authority)", ":path": "wire_text(_h.path or None)",
                          ":scheme": "(_h.scheme or None)"}  # fmt: skip
_INLINE_REQUEST_RAW = {":method": "_h.method", ":authority": "_h.authority", "host": "_h.authority",
                       ":path": "(_h.path or None)", ":scheme": "(_h.scheme or None)"}  # fmt: skip


def _header_value(h: HeaderMap | None, name: str) -> str | None:
    """A header's first value (``None`` without the map or the header)."""
    return None if h is None else wire_text(h.get(name))


INLINE_NAMESPACE: dict[str, Any] = {"header_value": _header_value, "default_time": default_time, "wire_text": wire_text}

HEADER_LOOKUPS: weakref.WeakKeyDictionary[Provider, tuple[str, str]] = weakref.WeakKeyDictionary()
"""Provider → (``"request_headers"`` or ``"response_headers"``, lowercase name) for a plain
``%REQ(name)%`` / ``%RESP(name)%``: a format with several lookups in one map builds a dict
of the map's first values once per line instead of scanning the entries for each."""


def _inline(command: str, arg: str, max_length: int | None) -> str | None:
    if command in _INLINE_INFO:
        return _INLINE_INFO[command]
    if command == "START_TIME" and not arg:
        return "default_time(info.start_wall)"
    if command in ("REQ", "RESP") and max_length is None:
        attr = "ctx.request_headers" if command == "REQ" else "ctx.response_headers"
        if "?" not in arg:
            name = arg.lower()
            if command == "REQ" and name in _INLINE_REQUEST_PSEUDO:
                return f"(None if (_h := {attr}) is None else {_INLINE_REQUEST_PSEUDO[name]})"
            if _plain_name(name):
                return f"header_value({attr}, {name!r})"
            return None
        # %REQ(main?alt)%: the first present of the two (each a pseudo-header or a plain name).
        main, alt = (_lookup(command, n.lower()) for n in arg.split("?", 1))
        if main is not None and alt is not None:
            return f"(None if (_h := {attr}) is None else wire_text(_a if (_a := {main}) is not None else {alt}))"
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
    if kind is not None:
        KINDS[provider] = kind
    expr = _inline(command, arg, max_length)
    if expr is not None:
        INLINE[provider] = expr
        if expr.startswith("header_value("):
            HEADER_LOOKUPS[provider] = ("request_headers" if command == "REQ" else "response_headers", arg.lower())
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
