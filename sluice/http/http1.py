"""HTTP/1.1 serialisation, sans I/O: request and response heads, chunk framing.

The framing decisions copy Envoy's HTTP/1 codec (``StreamEncoderImpl::encodeHeadersBase``):
- a message with ``content-length`` is sent as is;
- 1xx, 204 and 304 responses get neither ``content-length`` nor ``transfer-encoding``;
- a headers-only message gets ``content-length: 0`` (not a response to HEAD, not a request
  whose method has no body);
- anything else is chunked — including a response to HEAD without a length, which gets the
  ``transfer-encoding: chunked`` header but no body, as Envoy does.
"""

from __future__ import annotations

from http import HTTPStatus

from sluice.http.header_case import proper_case
from sluice.http.headers import RequestHeaders, ResponseHeaders

_REASONS: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}
# Where Envoy's table (CodeUtility::toString) differs from Python's; checked for 0-599 against
# Envoy 1.40 (codes it does not name are "Unknown").
_REASONS.update({
    413: "Payload Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable", 425: "Too Early",
    599: "Last Unassigned Server Error Code",
})  # fmt: skip
for _code in (102, 103, 418, 451):
    del _REASONS[_code]
_STATUS_LINES: dict[int, bytes] = {}

# Envoy's HeaderUtility::requestShouldHaveNoBody (OPTIONS is not one: it gets content-length: 0).
BODILESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "CONNECT", "TRACE"})

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
    }
)
"""Headers that describe one hop and are removed before forwarding (Envoy strips these)."""

LAST_CHUNK = b"0\r\n\r\n"


def status_line(status: int, http10: bool = False) -> bytes:
    if http10:
        return b"HTTP/1.0" + status_line(status)[8:]
    line = _STATUS_LINES.get(status)
    if line is None:
        # Envoy writes the reason phrase it knows, or "Unknown" for codes it does not.
        reason = _REASONS.get(status, "Unknown")
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")
    return line


def needs_chunking(headers: ResponseHeaders, end_stream: bool, head_request: bool) -> bool:
    """Whether :func:`encode_response_head` frames this response as chunked (an HTTP/1.0
    client cannot take that: Envoy sends the body as it is and closes the connection)."""
    if "content-length" in headers:
        return False
    status = headers.status
    if status < 200 or status in (204, 304):
        return False
    return not end_stream or head_request


def encode_response_head(
    headers: ResponseHeaders, end_stream: bool, head_request: bool, http10: bool = False, proper_case: bool = False
) -> tuple[bytes, bool]:
    """Serialise a response head; returns the bytes and whether the body is chunk-framed.
    For an HTTP/1.0 request (``http10``) the status line says HTTP/1.0 and nothing is chunked:
    the caller closes the connection after a body without a length. ``proper_case``: the
    names are written in Envoy's ``proper_case_words`` form (:mod:`sluice.http.header_case`)."""
    if proper_case:
        return _encode_response_head_proper_case(headers, end_stream, head_request, http10)
    parts = [status_line(headers.status, http10)]
    saw_length = False
    for k, v in headers.entries:
        if k == "content-length":
            saw_length = True
        parts.append(f"{k}: {v}\r\n".encode("latin-1"))
    status = headers.status
    chunked = False
    if saw_length:
        pass
    elif status < 200 or status in (204, 304):
        pass  # (a 304 keeps its length-less head, as Envoy sends it)
    elif end_stream and not head_request:
        parts.append(b"content-length: 0\r\n")
    elif not http10:
        parts.append(b"transfer-encoding: chunked\r\n")
        chunked = not head_request
    parts.append(b"\r\n")
    return b"".join(parts), chunked


def _encode_response_head_proper_case(
    headers: ResponseHeaders, end_stream: bool, head_request: bool, http10: bool
) -> tuple[bytes, bool]:
    # The framing headers are added lower-case, so the whole head is re-cased: one rule for all.
    head, chunked = encode_response_head(headers, end_stream, head_request, http10)
    status, _, rest = head.partition(b"\r\n")
    lines = [status]
    for line in rest.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        lines.append(proper_case(name.decode("latin-1")).encode("latin-1") + sep + value if sep else line)
    return b"\r\n".join(lines), chunked


def encode_request_head(headers: RequestHeaders, end_stream: bool, upgrade: bool = False) -> tuple[bytes, bool]:
    """Serialise a request head (``host`` first, from ``:authority``); returns (bytes, chunked).
    An upgrade gets no framing added: its body is the new protocol's raw bytes (Envoy's)."""
    parts = [f"{headers.method} {headers.path} HTTP/1.1\r\n"]
    if headers.authority is not None:
        parts.append(f"host: {headers.authority}\r\n")
    saw_length = False
    for k, v in headers.entries:
        if k == "content-length":
            saw_length = True
        parts.append(f"{k}: {v}\r\n")
    chunked = False
    if not saw_length and not upgrade:
        if end_stream:
            if headers.method not in BODILESS_METHODS:
                parts.append("content-length: 0\r\n")
        else:
            parts.append("transfer-encoding: chunked\r\n")
            chunked = True
    parts.append("\r\n")
    return "".join(parts).encode("latin-1"), chunked


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)
