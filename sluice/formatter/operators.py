"""Envoy's command operators (``%COMMAND(ARG):N%``): each compiles once into a provider, a
function from a :class:`FormatContext` to a typed value.

Values are typed as Envoy's ``formatValue`` types them (numbers for codes, byte counts,
durations, attempts, ids and ports; strings otherwise; metadata as JSON values), and ``None``
for a missing value (``-`` in text, ``null`` in JSON). Tables follow
``source/common/formatter/stream_info_formatter.cc`` and ``http_specific_formatter.cc``.

Operators whose facts Sluice does not record yet (wire and header byte meters, QUIC, connect
timing, upstream filter state) are refused by name at config load, never printed wrong.
TLS operators print ``-``: Sluice has no TLS listener or upstream, and that is what Envoy
prints for a plaintext connection.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from sluice.errors import UnsupportedError
from sluice.formatter.context import FormatContext
from sluice.formatter.time_format import compile_time_format
from sluice.http import grpc
from sluice.http.stream_info import StreamInfo

Value = Any
"""str | int | float | bool | dict | list | None (a JSON value; None when missing)."""
Provider = Callable[[FormatContext], Value]

# CommandSyntaxChecker flags
COMMAND_ONLY = 0
PARAMS_REQUIRED = 1
PARAMS_OPTIONAL = 2
LENGTH_ALLOWED = 4


def _truncate(value: str | None, n: int | None) -> str | None:
    return value[:n] if value is not None and n is not None else value


def _ms(delta: float | None) -> int | None:
    return None if delta is None else int(delta * 1000)


# -- headers -------------------------------------------------------------------------------
def _header_names(arg: str, command: str) -> tuple[str, str]:
    parts = arg.split("?")
    if len(parts) > 2:
        raise ValueError(f"More than 1 alternative header specified in token: {arg}")
    if "\n" in arg or "\r" in arg or "\0" in arg:
        raise ValueError("Invalid header configuration. Format string contains newline.")
    main = parts[0].lower()
    alt = parts[1].lower() if len(parts) == 2 else ""
    return main, alt


def _getter(name: str, request: bool) -> Callable[[Any], str | None]:
    """How to read one header of a map: a request's pseudo-headers are attributes (a CONNECT
    request has no :path: Sluice keeps it as ""), a response's :status its code."""
    if request:
        if name == ":path":
            return lambda h: h.path or None
        if name == ":method":
            return lambda h: h.method
        if name in (":authority", "host"):
            return lambda h: h.authority
        if name == ":scheme":
            return lambda h: h.scheme or None
        if name[:1] == ":":
            return lambda h: None
    elif name == ":status":
        return lambda h: str(h.status) if hasattr(h, "status") else None

    return lambda h: h.get(name)


def wire_text(value: str | None) -> str | None:
    """A header value (its bytes as latin-1, Sluice's wire strings) as the text of a log
    line: UTF-8 decoded, a byte that is not UTF-8 kept as a surrogate escape, so the file gets
    the request's own bytes (and JSON escapes it as Envoy does, ``\u00ff``)."""
    if value is None or value.isascii():
        return value
    return value.encode("latin-1", "surrogateescape").decode("utf-8", "surrogateescape")


def _header(which: str, arg: str, n: int | None) -> Provider:
    main, alt = _header_names(arg, which)
    request = which == "request_headers"
    first = _getter(main, request)
    second = _getter(alt, request) if alt else None

    def provide(ctx: FormatContext) -> Value:
        h = getattr(ctx, which)
        if h is None:
            return None
        v = first(h)
        if v is None and second is not None:
            v = second(h)
        # (Envoy truncates bytes: a cut UTF-8 sequence becomes escaped bytes.)
        return wire_text(v[:n] if v is not None and n is not None else v)

    return provide


def _req(arg: str, n: int | None) -> Provider:
    return _header("request_headers", arg, n)


def _resp(arg: str, n: int | None) -> Provider:
    return _header("response_headers", arg, n)


def _trailer(arg: str, n: int | None) -> Provider:
    return _header("response_trailers", arg, n)


def _request_headers_bytes(ctx: FormatContext) -> int:
    h = ctx.request_headers
    if h is None:
        return 0
    # Envoy's byteSize counts the pseudo-headers as entries (":method" + "GET", …).
    size = h.byte_size() + 7 + len(h.method)
    if h.path:  # (a CONNECT request has no :path)
        size += 5 + len(h.path)
    if h.scheme:
        size += 7 + len(h.scheme)
    if h.authority is not None:
        size += 10 + len(h.authority)
    return size


def _response_headers_bytes(ctx: FormatContext) -> int:
    h = ctx.response_headers
    return 0 if h is None else h.byte_size() + 7 + len(str(h.status))


def _response_trailers_bytes(ctx: FormatContext) -> int:
    t = ctx.response_trailers
    return 0 if t is None else t.byte_size()


# -- gRPC status ---------------------------------------------------------------------------
_GRPC_CAMEL = (
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
    "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
    "Internal", "Unavailable", "DataLoss", "Unauthenticated",
)
_GRPC_SNAKE = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)


def _grpc_status_code(ctx: FormatContext) -> int | None:
    # Envoy validates the request is gRPC first (validate_grpc_header_before_log_grpc_status).
    if ctx.request_headers is None or not grpc.is_grpc_request(ctx.request_headers):
        return None
    code: int | None = None
    if ctx.response_trailers is not None:
        code = grpc.grpc_status_of(ctx.response_trailers, True)
    if code is None and ctx.response_headers is not None:
        code = grpc.grpc_status_of(ctx.response_headers, True)
    if code is None and ctx.stream_info.response_code:
        code = grpc.http_to_grpc_status(ctx.stream_info.response_code)
    if code is None or code == grpc.INVALID_CODE:
        return None if code is None else code
    return code


def _grpc_status(arg: str, n: int | None) -> Provider:
    if arg in ("", "CAMEL_STRING"):
        names: tuple[str, ...] | None = _GRPC_CAMEL
    elif arg == "SNAKE_STRING":
        names = _GRPC_SNAKE
    elif arg == "NUMBER":
        names = None
    else:
        raise ValueError("GrpcStatusFormatter only supports CAMEL_STRING, SNAKE_STRING or NUMBER.")

    def provide(ctx: FormatContext) -> Value:
        code = _grpc_status_code(ctx)
        if code is None:
            return None
        if names is None:
            return code
        return names[code] if 0 <= code < len(names) else str(code)

    return provide


# -- times and durations -------------------------------------------------------------------
def _time(which: str, local: bool) -> Callable[[str, int | None], Provider]:
    def factory(arg: str, n: int | None) -> Provider:
        render = compile_time_format(arg, local=local)
        if which == "start":
            return lambda ctx: render(ctx.stream_info.start_wall)
        return lambda ctx: render(ctx.stream_info.clock.wall())

    return factory


def _since_start(get: Callable[[StreamInfo], float | None]) -> Provider:
    def provide(ctx: FormatContext) -> Value:
        info = ctx.stream_info
        t = get(info)
        return None if t is None else int((t - info.start_time) * 1000)

    return provide


def _first_upstream_rx(info: StreamInfo) -> float | None:
    up = info.upstream_timing
    return up.first_rx if up is not None else None


def _last_upstream_tx(info: StreamInfo) -> float | None:
    up = info.upstream_timing
    return up.last_tx if up is not None else None


def _response_tx_duration(ctx: FormatContext) -> Value:
    info = ctx.stream_info
    first_rx = _first_upstream_rx(info)
    if first_rx is None or info.last_downstream_tx is None:
        return None
    return int((info.last_downstream_tx - first_rx) * 1000)


def _pool_ready_duration(ctx: FormatContext) -> Value:
    up = ctx.stream_info.upstream_timing
    return _ms(up.pool_ready_latency) if up is not None else None


# COMMON_DURATION time points (Envoy's names); None when the stream has no such moment.
_TIME_POINTS: dict[str, Callable[[StreamInfo], float | None]] = {
    "DS_RX_BEG": lambda i: i.start_time,
    "DS_RX_END": lambda i: i.request_complete,
    "US_TX_BEG": lambda i: i.upstream_timing.first_tx if i.upstream_timing else None,
    "US_TX_END": lambda i: i.upstream_timing.last_tx if i.upstream_timing else None,
    "US_RX_BEG": lambda i: i.upstream_timing.first_rx if i.upstream_timing else None,
    "US_RX_BODY_BEG": lambda i: i.upstream_timing.first_rx_body if i.upstream_timing else None,
    "US_RX_END": lambda i: i.upstream_timing.last_rx if i.upstream_timing else None,
    "DS_TX_BEG": lambda i: i.first_downstream_tx,
    "DS_TX_END": lambda i: i.last_downstream_tx,
}
_UNRECORDED_POINTS = ("US_CX_BEG", "US_CX_END", "US_HS_END")


def _no_time_point(_info: StreamInfo) -> float | None:
    return None


def _common_duration(arg: str, n: int | None) -> Provider:
    parts = arg.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"Invalid common duration configuration: {arg}.")
    scale = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}.get(parts[2] if len(parts) == 3 else "ms")
    if scale is None:
        raise ValueError(f"Invalid common duration precision: {parts[2]}.")
    getters = []
    for point in parts[:2]:
        if point in _UNRECORDED_POINTS:
            raise UnsupportedError(f"COMMON_DURATION time point '{point}' (upstream connect timing) is not recorded by Sluice yet")
        # A name Envoy does not know is a custom downstream timing set by a filter: none does.
        getters.append(_TIME_POINTS.get(point, _no_time_point))
    beg, end = getters

    def provide(ctx: FormatContext) -> Value:
        b, e = beg(ctx.stream_info), end(ctx.stream_info)
        if b is None or e is None or e < b:
            return None
        return int((e - b) * scale)

    return provide


# -- addresses -----------------------------------------------------------------------------
def _address(get: Callable[[StreamInfo], tuple[str, int] | None], mode: str) -> Provider:
    def provide(ctx: FormatContext) -> Value:
        a = get(ctx.stream_info)
        if a is None:
            return None
        ip, port = a[0], a[1]
        if mode == "port":
            return port
        if mode == "ip":
            return ip
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    return provide


def _split_host(address: str | None) -> tuple[str, int] | None:
    if not address:
        return None
    host, _, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() else None


def _upstream_host(info: StreamInfo) -> tuple[str, int] | None:
    return _split_host(info.upstream_host)


def _upstream_local(info: StreamInfo) -> tuple[str, int] | None:
    up = info.upstream_timing
    return up.local_address if up is not None else None


def _upstream_protocol(info: StreamInfo) -> str | None:
    up = info.upstream_timing
    return up.protocol if up is not None else None


def _upstream_connection_id(info: StreamInfo) -> int:
    up = info.upstream_timing
    return up.connection_id if up is not None else 0


def _transport_failure(info: StreamInfo) -> str | None:
    up = info.upstream_timing
    return up.transport_failure or None if up is not None else None


# -- metadata and filter state -------------------------------------------------------------
def _metadata(get: Callable[[StreamInfo], dict[str, Any] | None]) -> Callable[[str, int | None], Provider]:
    def factory(arg: str, n: int | None) -> Provider:
        namespace, *path = arg.split(":")

        def provide(ctx: FormatContext) -> Value:
            md = get(ctx.stream_info)
            value: Any = (md or {}).get(namespace)
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is None:
                return None
            if n is not None:
                text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
                return text[:n]
            return value

        return provide

    return factory


def _filter_state(arg: str, n: int | None) -> Provider:
    key, _, rest = arg.partition(":")
    kind, _, field = rest.partition(":")
    if not key:
        raise ValueError("Invalid filter state configuration, key cannot be empty.")
    kind = kind or "TYPED"
    if kind not in ("PLAIN", "TYPED", "FIELD"):
        raise ValueError("Invalid filter state serialize type, only support PLAIN/TYPED/FIELD.")
    if (kind == "FIELD") != bool(field):
        raise ValueError("Invalid filter state serialize type, FIELD should be used with the field name.")

    def provide(ctx: FormatContext) -> Value:
        value = ctx.stream_info.filter_state.get(key)
        if value is None:
            return None
        if kind == "FIELD":
            value = value.get(field) if isinstance(value, dict) else None
            if value is None:
                return None
        if kind == "PLAIN" or n is not None:
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            return _truncate(text, n)
        return value

    return provide


def _environment(arg: str, n: int | None) -> Provider:
    value = _truncate(os.environ.get(arg), n)
    fixed = value if value is not None else "-"  # Envoy resolves it once, '-' when unset
    return lambda ctx: fixed


def _hostname() -> str | None:
    try:
        return socket.gethostname()
    except OSError:
        return None


def _stream_info(get: Callable[[StreamInfo], Value]) -> Callable[[str, int | None], Provider]:
    return lambda arg, n: lambda ctx: get(ctx.stream_info)


def _constant(value: Value) -> Callable[[str, int | None], Provider]:
    return lambda arg, n: lambda ctx: value


def _details(arg: str, n: int | None) -> Provider:
    keep = arg == "ALLOW_WHITESPACES"

    def provide(ctx: FormatContext) -> Value:
        d = ctx.stream_info.response_code_details
        if not d:
            return None
        return d if keep else "_".join(d.split(" ")).replace("\t", "_").replace("\n", "_").replace("\r", "_")

    return provide


def _underscored(get: Callable[[StreamInfo], str | None]) -> Callable[[str, int | None], Provider]:
    def factory(arg: str, n: int | None) -> Provider:
        def provide(ctx: FormatContext) -> Value:
            v = get(ctx.stream_info)
            return v.replace(" ", "_") if v else None

        return provide

    return factory


def _upstream_host_name(strip_port: bool) -> Callable[[str, int | None], Provider]:
    def factory(arg: str, n: int | None) -> Provider:
        def provide(ctx: FormatContext) -> Value:
            info = ctx.stream_info
            name = info.upstream_host_name or info.upstream_host
            if not name:
                return None
            if strip_port:
                host = _split_host(name)
                return host[0] if host is not None else name
            return name

        return provide

    return factory


def _refused(what: str) -> Callable[[str, int | None], Provider]:
    def factory(arg: str, n: int | None) -> Provider:
        raise UnsupportedError(what)

    return factory


_NO_TLS = _constant(None)
"""A TLS fact of a plaintext connection: Envoy prints '-' (Sluice has no TLS)."""

_Entry = tuple[int, Callable[[str, int | None], Provider]]


def _direct_remote(info: StreamInfo) -> tuple[str, int] | None:
    return info.downstream_direct_remote_address


OPERATORS: dict[str, _Entry] = {
    # HTTP-specific (http_specific_formatter.cc)
    "REQ": (PARAMS_REQUIRED | LENGTH_ALLOWED, _req),
    "RESP": (PARAMS_REQUIRED | LENGTH_ALLOWED, _resp),
    "TRAILER": (PARAMS_REQUIRED | LENGTH_ALLOWED, _trailer),
    "LOCAL_REPLY_BODY": (COMMAND_ONLY, lambda a, n: lambda ctx: ctx.local_reply_body),
    "ACCESS_LOG_TYPE": (COMMAND_ONLY, lambda a, n: lambda ctx: ctx.log_type.value),
    "GRPC_STATUS": (PARAMS_OPTIONAL, _grpc_status),
    "GRPC_STATUS_NUMBER": (COMMAND_ONLY, lambda a, n: _grpc_status("NUMBER", None)),
    "REQUEST_HEADERS_BYTES": (COMMAND_ONLY, lambda a, n: _request_headers_bytes),
    "RESPONSE_HEADERS_BYTES": (COMMAND_ONLY, lambda a, n: _response_headers_bytes),
    "RESPONSE_TRAILERS_BYTES": (COMMAND_ONLY, lambda a, n: _response_trailers_bytes),
    "STREAM_INFO_REQ": (PARAMS_REQUIRED | LENGTH_ALLOWED, _req),
    # No tracer: no active span, so no trace id (Envoy's null span gives '-').
    "TRACE_ID": (COMMAND_ONLY, _constant(None)),
    # Stream info (stream_info_formatter.cc)
    "REQUEST_DURATION": (COMMAND_ONLY, lambda a, n: _since_start(lambda i: i.request_complete)),
    "REQUEST_TX_DURATION": (COMMAND_ONLY, lambda a, n: _since_start(_last_upstream_tx)),
    "RESPONSE_DURATION": (COMMAND_ONLY, lambda a, n: _since_start(_first_upstream_rx)),
    "RESPONSE_TX_DURATION": (COMMAND_ONLY, lambda a, n: _response_tx_duration),
    "DOWNSTREAM_HANDSHAKE_DURATION": (COMMAND_ONLY, _NO_TLS),
    "ROUNDTRIP_DURATION": (COMMAND_ONLY, _constant(None)),  # QUIC only
    "UPSTREAM_CONNECTION_POOL_READY_DURATION": (COMMAND_ONLY, lambda a, n: _pool_ready_duration),
    "DURATION": (COMMAND_ONLY, _stream_info(lambda i: i.duration_ms())),
    "COMMON_DURATION": (PARAMS_REQUIRED, _common_duration),
    "BYTES_RECEIVED": (COMMAND_ONLY, _stream_info(lambda i: i.bytes_received)),
    "BYTES_SENT": (COMMAND_ONLY, _stream_info(lambda i: i.bytes_sent)),
    "PROTOCOL": (COMMAND_ONLY, _stream_info(lambda i: i.protocol or None)),
    "UPSTREAM_PROTOCOL": (COMMAND_ONLY, _stream_info(_upstream_protocol)),
    "RESPONSE_CODE": (COMMAND_ONLY, _stream_info(lambda i: i.response_code or 0)),
    "RESPONSE_CODE_DETAILS": (PARAMS_OPTIONAL, _details),
    "CONNECTION_TERMINATION_DETAILS": (COMMAND_ONLY, _stream_info(lambda i: i.connection_termination_details)),
    "CUSTOM_FLAGS": (COMMAND_ONLY, _stream_info(lambda i: i.custom_flags)),
    "RESPONSE_FLAGS": (COMMAND_ONLY, _stream_info(lambda i: i.flags_short())),
    "RESPONSE_FLAGS_LONG": (COMMAND_ONLY, _stream_info(lambda i: i.flags_long())),
    "UPSTREAM_HOST": (COMMAND_ONLY, lambda a, n: _address(_upstream_host, "full")),
    "UPSTREAM_HOST_NAME": (COMMAND_ONLY, _upstream_host_name(False)),
    "UPSTREAM_HOST_NAME_WITHOUT_PORT": (COMMAND_ONLY, _upstream_host_name(True)),
    "UPSTREAM_CONNECTION_ID": (COMMAND_ONLY, _stream_info(_upstream_connection_id)),
    "UPSTREAM_CLUSTER": (COMMAND_ONLY, _stream_info(lambda i: i.upstream_cluster or None)),
    "UPSTREAM_CLUSTER_RAW": (COMMAND_ONLY, _stream_info(lambda i: i.upstream_cluster or None)),
    "UPSTREAM_LOCAL_ADDRESS": (COMMAND_ONLY, lambda a, n: _address(_upstream_local, "full")),
    "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": (COMMAND_ONLY, lambda a, n: _address(_upstream_local, "ip")),
    "UPSTREAM_LOCAL_PORT": (COMMAND_ONLY, lambda a, n: _address(_upstream_local, "port")),
    "UPSTREAM_REMOTE_ADDRESS": (COMMAND_ONLY, lambda a, n: _address(_upstream_host, "full")),
    "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": (COMMAND_ONLY, lambda a, n: _address(_upstream_host, "ip")),
    "UPSTREAM_REMOTE_PORT": (COMMAND_ONLY, lambda a, n: _address(_upstream_host, "port")),
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": (COMMAND_ONLY, _stream_info(lambda i: i.attempt_count)),
    "UPSTREAM_TRANSPORT_FAILURE_REASON": (COMMAND_ONLY, _underscored(_transport_failure)),
    "DOWNSTREAM_TRANSPORT_FAILURE_REASON": (COMMAND_ONLY, _NO_TLS),
    "DOWNSTREAM_LOCAL_ADDRESS": (COMMAND_ONLY, lambda a, n: _address(lambda i: i.downstream_local_address, "full")),
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": (COMMAND_ONLY, lambda a, n: _address(lambda i: i.downstream_local_address, "ip")),
    "DOWNSTREAM_LOCAL_PORT": (COMMAND_ONLY, lambda a, n: _address(lambda i: i.downstream_local_address, "port")),
    "DOWNSTREAM_DIRECT_LOCAL_ADDRESS": (COMMAND_ONLY, lambda a, n: _address(lambda i: i.downstream_local_address, "full")),
    "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT": (COMMAND_ONLY, lambda a, n: _address(lambda i: i.downstream_local_address, "ip")),
    "DOWNSTREAM_DIRECT_LOCAL_PORT": (COMMAND_ONLY, lambda a, n: _address(lambda i: i.downstream_local_address, "port")),
    "DOWNSTREAM_REMOTE_ADDRESS": (COMMAND_ONLY, lambda a, n: _address(lambda i: i.downstream_remote_address, "full")),
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": (COMMAND_ONLY, lambda a, n: _address(lambda i: i.downstream_remote_address, "ip")),
    "DOWNSTREAM_REMOTE_PORT": (COMMAND_ONLY, lambda a, n: _address(lambda i: i.downstream_remote_address, "port")),
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS": (COMMAND_ONLY, lambda a, n: _address(_direct_remote, "full")),
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT": (COMMAND_ONLY, lambda a, n: _address(_direct_remote, "ip")),
    "DOWNSTREAM_DIRECT_REMOTE_PORT": (COMMAND_ONLY, lambda a, n: _address(_direct_remote, "port")),
    "CONNECTION_ID": (COMMAND_ONLY, _stream_info(lambda i: i.connection_id)),
    "REQUESTED_SERVER_NAME": (COMMAND_ONLY, _NO_TLS),  # SNI: TLS only
    "ROUTE_NAME": (COMMAND_ONLY, _stream_info(lambda i: i.route_name or None)),
    "VIRTUAL_CLUSTER_NAME": (COMMAND_ONLY, _stream_info(lambda i: i.virtual_cluster_name)),
    "FILTER_CHAIN_NAME": (COMMAND_ONLY, _stream_info(lambda i: i.filter_chain_name or None)),
    "HOSTNAME": (COMMAND_ONLY, lambda a, n: (lambda name: lambda ctx: name)(_hostname())),
    "UNIQUE_ID": (COMMAND_ONLY, lambda a, n: lambda ctx: str(uuid.uuid4())),
    "STREAM_ID": (COMMAND_ONLY, _stream_info(lambda i: i.request_id)),
    "START_TIME": (PARAMS_OPTIONAL, _time("start", False)),
    "START_TIME_LOCAL": (PARAMS_OPTIONAL, _time("start", True)),
    "EMIT_TIME": (PARAMS_OPTIONAL, _time("emit", False)),
    "EMIT_TIME_LOCAL": (PARAMS_OPTIONAL, _time("emit", True)),
    "DYNAMIC_METADATA": (PARAMS_REQUIRED | LENGTH_ALLOWED, _metadata(lambda i: i.dynamic_metadata)),
    "CLUSTER_METADATA": (PARAMS_REQUIRED | LENGTH_ALLOWED, _metadata(lambda i: i.cluster_metadata)),
    "UPSTREAM_METADATA": (PARAMS_REQUIRED | LENGTH_ALLOWED, _metadata(lambda i: i.upstream_host_metadata)),
    "FILTER_STATE": (PARAMS_OPTIONAL | LENGTH_ALLOWED, _filter_state),
    "ENVIRONMENT": (PARAMS_REQUIRED | LENGTH_ALLOWED, _environment),
    "TLS_JA3_FINGERPRINT": (COMMAND_ONLY, _NO_TLS),
    "TLS_JA4_FINGERPRINT": (COMMAND_ONLY, _NO_TLS),
}

# Facts Sluice does not record yet: refused by name rather than printed wrong.
for _name in (
    "UPSTREAM_WIRE_BYTES_SENT", "UPSTREAM_WIRE_BYTES_RECEIVED", "UPSTREAM_HEADER_BYTES_SENT",
    "UPSTREAM_HEADER_BYTES_RECEIVED", "UPSTREAM_DECOMPRESSED_HEADER_BYTES_SENT",
    "UPSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED", "DOWNSTREAM_WIRE_BYTES_SENT", "DOWNSTREAM_WIRE_BYTES_RECEIVED",
    "DOWNSTREAM_HEADER_BYTES_SENT", "DOWNSTREAM_HEADER_BYTES_RECEIVED", "DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_SENT",
    "DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED", "BYTES_RETRANSMITTED", "PACKETS_RETRANSMITTED",
):
    OPERATORS[_name] = (COMMAND_ONLY, _refused(f"command operator %{_name}% (per-stream wire/header byte meters) is not implemented yet"))
OPERATORS["UPSTREAM_FILTER_STATE"] = (
    PARAMS_OPTIONAL | LENGTH_ALLOWED, _refused("command operator %UPSTREAM_FILTER_STATE% is not implemented yet")
)
for _name in (
    "UPSTREAM_TLS_CIPHER", "UPSTREAM_TLS_VERSION", "UPSTREAM_TLS_SESSION_ID", "UPSTREAM_PEER_ISSUER",
    "UPSTREAM_PEER_CERT", "UPSTREAM_PEER_SUBJECT", "UPSTREAM_PEER_URI_SAN", "UPSTREAM_PEER_DNS_SAN",
    "UPSTREAM_PEER_IP_SAN", "UPSTREAM_LOCAL_URI_SAN", "UPSTREAM_LOCAL_DNS_SAN", "UPSTREAM_LOCAL_IP_SAN",
    "DOWNSTREAM_PEER_URI_SAN", "DOWNSTREAM_PEER_DNS_SAN", "DOWNSTREAM_PEER_IP_SAN", "DOWNSTREAM_PEER_EMAIL_SAN",
    "DOWNSTREAM_PEER_OTHERNAME_SAN", "DOWNSTREAM_LOCAL_URI_SAN", "DOWNSTREAM_LOCAL_DNS_SAN", "DOWNSTREAM_LOCAL_IP_SAN",
    "DOWNSTREAM_LOCAL_EMAIL_SAN", "DOWNSTREAM_LOCAL_OTHERNAME_SAN", "DOWNSTREAM_PEER_SUBJECT",
    "DOWNSTREAM_LOCAL_SUBJECT", "DOWNSTREAM_TLS_SESSION_ID", "DOWNSTREAM_TLS_CIPHER", "DOWNSTREAM_TLS_VERSION",
    "DOWNSTREAM_PEER_FINGERPRINT_256", "DOWNSTREAM_PEER_FINGERPRINT_1", "DOWNSTREAM_PEER_SERIAL",
    "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256", "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1", "DOWNSTREAM_PEER_CHAIN_SERIALS",
    "DOWNSTREAM_PEER_ISSUER", "DOWNSTREAM_PEER_CERT",
):
    OPERATORS[_name] = (COMMAND_ONLY, _NO_TLS)
for _name in ("DOWNSTREAM_PEER_CERT_V_START", "DOWNSTREAM_PEER_CERT_V_END", "UPSTREAM_PEER_CERT_V_START", "UPSTREAM_PEER_CERT_V_END"):
    OPERATORS[_name] = (PARAMS_OPTIONAL, lambda a, n: (compile_time_format(a), _constant(None)(a, n))[1])
