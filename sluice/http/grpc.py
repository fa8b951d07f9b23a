"""gRPC as Envoy's HTTP layer sees it: pure functions, no I/O, no asyncio.

Envoy does not speak gRPC in the connection manager or the router; it recognises it by the
request's content-type and then changes a few things (each read from Envoy 1.40's source):

- **Recognition** (``Grpc::Common::hasGrpcContentType`` / ``isGrpcRequestHeaders``): the
  content-type is exactly ``application/grpc`` or starts with ``application/grpc+``
  (``application/grpc-web`` is not gRPC), and the request has a ``:path``.
- **Status mapping** (``Grpc::Utility::httpToGrpcStatus`` / ``grpcToHttpStatus``): the
  tables of gRPC's ``http-grpc-status-mapping.md`` and Google's API design guide.
- **Local replies** (``Http::Utility::prepareLocalReply``): a gRPC request answered by the proxy
  (no route, direct response, upstream reset, fault abort...) gets a *trailers-only* response:
  ``:status 200``, ``content-type: application/grpc``, ``grpc-status`` (the filter's gRPC status,
  else the HTTP status mapped), ``grpc-message`` (the body, percent-encoded; not for HEAD), no
  body — over HTTP/1.1 as well.
- **grpc-timeout** (``Grpc::Common::getGrpcTimeout`` / ``toGrpcTimeout``): a value of 0 to
  99999999 and one unit letter (anything else: no timeout from the header); Envoy works in
  whole milliseconds, rounding ``u``/``n`` up.
- **Route timeouts** (``FilterUtility::finalTimeout`` for the legacy ``max_grpc_timeout`` /
  ``grpc_timeout_offset``, applied by ``sluice/router/timeouts.py``;
  ``ActiveStream::refreshDurationTimeout`` for ``max_stream_duration`` and its
  ``grpc_timeout_header_max`` / ``grpc_timeout_header_offset``, applied by
  ``ActiveStream._refresh_duration_timeout``).

Times are seconds as floats, as elsewhere in Sluice; each is computed in integer milliseconds
first, as Envoy's ``std::chrono::milliseconds``, so the rounding is Envoy's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sluice.http.headers import ResponseHeaders

if TYPE_CHECKING:
    from sluice.http.headers import HeaderMap

# grpc::StatusCode (Envoy's Grpc::Status::WellKnownGrpcStatus).
OK: Final = 0
CANCELLED: Final = 1
UNKNOWN: Final = 2
INVALID_ARGUMENT: Final = 3
DEADLINE_EXCEEDED: Final = 4
NOT_FOUND: Final = 5
ALREADY_EXISTS: Final = 6
PERMISSION_DENIED: Final = 7
RESOURCE_EXHAUSTED: Final = 8
FAILED_PRECONDITION: Final = 9
ABORTED: Final = 10
OUT_OF_RANGE: Final = 11
UNIMPLEMENTED: Final = 12
INTERNAL: Final = 13
UNAVAILABLE: Final = 14
DATA_LOSS: Final = 15
UNAUTHENTICATED: Final = 16
MAXIMUM_KNOWN: Final = UNAUTHENTICATED
INVALID_CODE: Final = -1
"""What Envoy's ``getGrpcStatus`` yields for a ``grpc-status`` that is not a known code."""

GRPC_CONTENT_TYPE: Final = "application/grpc"
MAX_GRPC_TIMEOUT_VALUE: Final = 99_999_999
"""``Grpc::Common``'s limit on the grpc-timeout value ("at most 8 digits")."""


def _content_type(headers: HeaderMap) -> str | None:
    # Envoy's content-type is an inline header: a repeated one reads as its values joined.
    values = headers.get_all("content-type")
    if not values:
        return None
    return values[0] if len(values) == 1 else ",".join(values)


def has_grpc_content_type(headers: HeaderMap) -> bool:
    """``Grpc::Common::hasGrpcContentType``: ``application/grpc`` or ``application/grpc+...``."""
    ctype = _content_type(headers)
    if ctype is None or not ctype.startswith(GRPC_CONTENT_TYPE):
        return False
    return len(ctype) == len(GRPC_CONTENT_TYPE) or ctype[len(GRPC_CONTENT_TYPE)] == "+"


def is_grpc_request(headers: HeaderMap) -> bool:
    """``Grpc::Common::isGrpcRequestHeaders``: a gRPC content-type on a request with a path.

    A ``RequestHeaders`` always carries a path in Sluice (a CONNECT request's is empty); a map
    without the attribute is judged by its content-type alone."""
    path = getattr(headers, "path", "")
    if path is None or (path == "" and getattr(headers, "method", "") == "CONNECT"):
        return False
    return has_grpc_content_type(headers)


def grpc_status_of(headers: HeaderMap, allow_user_defined: bool = False) -> int | None:
    """``Grpc::Common::getGrpcStatus`` of response headers or trailers: None without a
    (non-empty) ``grpc-status``; :data:`INVALID_CODE` for one that is not a number, or above
    :data:`MAXIMUM_KNOWN` unless ``allow_user_defined``."""
    value = headers.get("grpc-status")
    if not value:
        return None
    code = _simple_atoi(value)
    if code is None or (code > MAXIMUM_KNOWN and not allow_user_defined):
        return INVALID_CODE
    return code


def _simple_atoi(value: str) -> int | None:
    """``absl::SimpleAtoi`` into an unsigned 64-bit value: ASCII whitespace around, one '+'."""
    v = value.strip(" \t\n\v\f\r")
    if v.startswith("+"):
        v = v[1:]
    if not v or not v.isascii() or not v.isdigit():
        return None
    n = int(v)
    return n if n < 1 << 64 else None


# -- status mapping -------------------------------------------------------------------------
_HTTP_TO_GRPC: Final = {
    400: INTERNAL,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: UNIMPLEMENTED,
    429: UNAVAILABLE,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: UNAVAILABLE,
}
_GRPC_TO_HTTP: Final = {
    OK: 200,
    CANCELLED: 499,  # client closed request
    UNKNOWN: 500,
    INVALID_ARGUMENT: 400,
    DEADLINE_EXCEEDED: 504,
    NOT_FOUND: 404,
    ALREADY_EXISTS: 409,
    PERMISSION_DENIED: 403,
    RESOURCE_EXHAUSTED: 429,
    FAILED_PRECONDITION: 400,
    ABORTED: 409,
    OUT_OF_RANGE: 400,
    UNIMPLEMENTED: 501,
    INTERNAL: 500,
    UNAVAILABLE: 503,
    DATA_LOSS: 500,
    UNAUTHENTICATED: 401,
}


def http_to_grpc_status(http_status: int) -> int:
    """``Grpc::Utility::httpToGrpcStatus``; any status not in the table is UNKNOWN (2)."""
    return _HTTP_TO_GRPC.get(http_status, UNKNOWN)


def grpc_to_http_status(grpc_status: int) -> int:
    """``Grpc::Utility::grpcToHttpStatus``; an unknown code (user-defined, invalid) is 500."""
    return _GRPC_TO_HTTP.get(grpc_status, 500)


# -- local replies --------------------------------------------------------------------------
def _percent_table() -> tuple[str, ...]:
    # Envoy's PercentEncoding::encode tests a signed char: below ' ', at or above '~', or '%'
    # is escaped — so '~' and every byte of a multi-byte UTF-8 sequence are escaped too (the
    # gRPC spec would leave '~' alone).
    return tuple(f"%{b:02X}" if b < 0x20 or b >= 0x7E or b == 0x25 else chr(b) for b in range(256))


_PERCENT: Final = _percent_table()


def encode_grpc_message(text: str) -> str:
    """``Http::Utility::PercentEncoding::encode`` of ``text``'s UTF-8 bytes (uppercase hex)."""
    data = text.encode("utf-8")
    table = _PERCENT
    return "".join([table[b] for b in data])


def local_reply_headers(
    http_status: int,
    body: str,
    grpc_status: int | None,
    *,
    is_head: bool = False,
    headers: ResponseHeaders | None = None,
) -> ResponseHeaders:
    """The trailers-only response Envoy's ``prepareLocalReply`` makes for a gRPC request: the
    caller encodes it with ``end_stream`` and no body.

    ``headers`` are the local reply's headers after its ``modify_headers`` (a route's or a
    filter's additions), when there are any: Envoy builds the gRPC fields on top of them —
    ``:status`` becomes 200, content-type is set (in place if present), ``grpc-status`` only when
    none was added, ``grpc-message`` set, content-length removed. A ``grpc_status`` given (a
    fault filter's ``abort.grpc_status``) wins over the mapped HTTP status."""
    h = headers if headers is not None else ResponseHeaders(http_status)
    h.status = 200
    h.set("content-type", GRPC_CONTENT_TYPE)
    if not h.get("grpc-status"):
        h.set("grpc-status", str(grpc_status if grpc_status is not None else http_to_grpc_status(http_status)))
    if body and not is_head:
        # Divergence from Envoy: Envoy also strips one trailing newline when a local_reply_config
        # formatter made the body JSON; Sluice has no local_reply_config.
        h.set("grpc-message", encode_grpc_message(body))
    if "content-length" in h:
        h.remove("content-length")
    return h


# -- grpc-timeout -----------------------------------------------------------------------------
_UNIT_MS: Final = {"H": 3_600_000, "M": 60_000, "S": 1000, "m": 1}


def parse_grpc_timeout_ms(value: str | None) -> int | None:
    """``Grpc::Common::getGrpcTimeout`` in whole milliseconds; None when absent or invalid.

    The value before the unit is read by ``absl::SimpleAtoi`` into an int64 and must be 0 to
    :data:`MAX_GRPC_TIMEOUT_VALUE`: Envoy checks the number, not the digit count, so leading
    zeros (``000000001S``), a '+', surrounding whitespace and a negative zero (``-0S``: 0 ms)
    pass, as in Envoy (checked with Envoy 1.40). Microseconds and nanoseconds round up to the
    next millisecond."""
    if not value:
        return None
    text = value[:-1].strip(" \t\n\v\f\r")
    if text.startswith("-"):
        digits = text[1:]
        n = 0 if digits.isascii() and digits.isdigit() and int(digits) == 0 else None
    else:
        n = _simple_atoi(text)
    if n is None or n > MAX_GRPC_TIMEOUT_VALUE:
        return None
    unit = value[-1]
    scale = _UNIT_MS.get(unit)
    if scale is not None:
        return n * scale
    if unit == "u":
        return -(-n // 1000)
    if unit == "n":
        return -(-n // 1_000_000)
    return None


def parse_grpc_timeout(value: str | None) -> float | None:
    """:func:`parse_grpc_timeout_ms` in seconds."""
    ms = parse_grpc_timeout_ms(value)
    return None if ms is None else ms / 1000


def encode_grpc_timeout_ms(ms: int) -> str:
    """``Grpc::Common::toGrpcTimeout``: milliseconds while they fit in 8 digits, then seconds,
    minutes, hours (truncating), clipped at 99999999H."""
    time = max(ms, 0)
    units = "mSMH"
    unit = 0
    if time > MAX_GRPC_TIMEOUT_VALUE:
        time //= 1000
        unit = 1
    while time > MAX_GRPC_TIMEOUT_VALUE:
        if units[unit] == "H":
            time = MAX_GRPC_TIMEOUT_VALUE
        else:
            time //= 60
            unit += 1
    return f"{time}{units[unit]}"


def encode_grpc_timeout(seconds: float) -> str:
    """:func:`encode_grpc_timeout_ms` of ``seconds`` (whole milliseconds, as Envoy holds them)."""
    return encode_grpc_timeout_ms(_ms(seconds))


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


# -- route timeouts ---------------------------------------------------------------------------
def grpc_route_timeout(
    route_timeout: float,
    headers: HeaderMap,
    max_grpc_timeout: float | None,
    offset: float | None,
    *,
    using_new_timeouts: bool = False,
) -> float:
    """The route's global timeout as ``FilterUtility::finalTimeout`` starts it (before the
    ``x-envoy-upstream-rq-timeout-ms`` headers); seconds, 0 = none.

    - A route with ``max_stream_duration`` set (``using_new_timeouts``) has no global timeout
      here at all: ``route.timeout`` is ignored, the stream duration timer governs
      (:func:`grpc_stream_duration`).
    - A gRPC request on a route with ``max_grpc_timeout``: the ``grpc-timeout`` header's value
      (none or invalid = 0, infinite), minus ``grpc_timeout_offset`` when that leaves it above
      0, capped at ``max_grpc_timeout`` unless that is 0 (an infinite header timeout is capped
      too).
    - Otherwise ``route_timeout``."""
    if using_new_timeouts:
        return 0.0
    if max_grpc_timeout is None or not is_grpc_request(headers):
        return route_timeout
    max_ms = _ms(max_grpc_timeout)
    grpc_ms = parse_grpc_timeout_ms(headers.get("grpc-timeout")) or 0
    if offset is not None:
        offset_ms = _ms(offset)
        if offset_ms < grpc_ms:
            grpc_ms -= offset_ms
    if max_ms != 0 and (grpc_ms == 0 or grpc_ms > max_ms):
        grpc_ms = max_ms
    return grpc_ms / 1000


def grpc_stream_duration(
    headers: HeaderMap,
    header_max: float | None,
    header_offset: float | None,
    route_max_stream_duration: float | None,
    hcm_max_stream_duration: float | None,
) -> float | None:
    """The stream duration limit ``ActiveStream::refreshDurationTimeout`` arms for a route;
    seconds, None = no timer (0 = expires at once, as Envoy's zero timer).

    With a ``grpc-timeout`` header and ``grpc_timeout_header_max`` set, the header's value
    capped at the max (unless 0), minus ``grpc_timeout_header_offset`` (an offset at or above
    the value leaves 0: the stream times out at once). Otherwise the route's
    ``max_stream_duration`` (0 = none), else the connection manager's (0 or unset = none).
    Envoy reads the header here whatever the content-type."""
    grpc_ms = parse_grpc_timeout_ms(headers.get("grpc-timeout"))
    if grpc_ms is None or header_max is None:
        if route_max_stream_duration is not None:
            return route_max_stream_duration if _ms(route_max_stream_duration) != 0 else None
        if hcm_max_stream_duration:
            return hcm_max_stream_duration
        return None
    timeout = grpc_ms
    max_ms = _ms(header_max)
    if max_ms != 0 and timeout > max_ms:
        timeout = max_ms
    if timeout != 0 and header_offset is not None:
        offset_ms = _ms(header_offset)
        timeout = timeout - offset_ms if offset_ms < timeout else 0
    return timeout / 1000

