"""The HTTP/1.1 client codec, sans I/O: response bytes in, response events out.

Envoy's ``Http1::ClientConnectionImpl`` (Balsa in 1.40), for the upstream side of the router:
:meth:`ClientCodec.expect` announces a request written to the connection, :meth:`feed` takes what
the upstream sent, :meth:`eof` tells that it closed. Events go to :class:`ResponseCallbacks`.
A response the codec refuses makes ``feed`` / ``eof`` return :data:`PROTOCOL_ERROR`; the
connection then counts ``upstream_cx_protocol_error``, closes, and the router answers 502 (UPE)
before the response started, or resets the downstream after it.

The rules, checked against Envoy 1.40 by tests/integration/test_edge_upstream_differential.py:

- The head ends at the first empty line; lines end with CRLF or a bare LF, a CR elsewhere in a
  line is dropped. It is limited to ``max_headers_bytes`` and ``max_headers_count`` headers.
- Status line ``HTTP/<d>.<d> <code>[ <reason>]``: any one-digit version (not 1.1 means the
  connection closes after the response unless ``connection: keep-alive``), a code of digits
  that is at least 100 (Envoy passes ``2000`` on), the reason is ignored.
- Header names are tokens (no space before the colon, not empty); values have no NUL, CTL or
  DEL; obs-fold continuation lines join the previous value with one space.
- Framing: ``transfer-encoding`` only as one header whose value is ``chunked``; with a
  ``content-length`` too, refused; one ``content-length`` of digits only (two, even equal, are
  refused); neither means the body ends with the connection (it is not reused). 1xx (not 101)
  are interim: passed to ``on_informational``, with a body length refused; 101, 204, 304 and
  a HEAD's response have no body (204 with a length or chunked framing is refused); a 101
  to anything but an allowed upgrade that switches (``upgrade`` and ``connection: upgrade``)
  loses its ``upgrade`` header; one that switches makes the rest of the connection raw bytes.
- Bytes with no request outstanding (after a complete response: a smuggled second response,
  or a HEAD response's body) are a protocol error; so is a close with part of a response read.

Chunked bodies go through httptools (llhttp), fed a canonical head: its chunk-size, extension
and trailer rules are Envoy's for every case the differential suite has.
"""

from __future__ import annotations

import re
from typing import Protocol

import httptools

PROTOCOL_ERROR = "protocol error"
"""The reset reason of a response the codec refused (Envoy's ``ProtocolError``)."""

DEFAULT_MAX_HEADERS_BYTES = 80 * 1024
"""Envoy 1.40's response head limit (its upstream default is 80 KiB, not the request side's 60)."""
DEFAULT_MAX_HEADERS_COUNT = 100

# The end of the head: the first LF followed by LF or CRLF. Searched from its literal LF (the
# regex engine skips to each LF), not as `\r?\n\r?\n`, which was tried at every offset.
_HEAD_END = re.compile(rb"\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d+)(?: [^\x00]*)?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
# A head every rule above accepts as it is: a three-digit status, CRLF line ends, no bare CR,
# no obs-fold, token names, clean values. Anything else takes the line-by-line path.
# (Possessive quantifiers: no class here takes CR or ":" that follows it, so backtracking could
# never find another match; without it the engine keeps less state per header.)
_CLEAN_HEAD = re.compile(rb"HTTP/\d\.\d [1-9]\d\d(?: [^\x00\r\n]*+)?+(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]++:[^\x00-\x08\x0a-\x1f\x7f]*+)*+")

# Body framing of the response being read (_TUNNEL: after an upgrade's 101, raw both ways).
_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _IDLE, _TUNNEL = range(6)


class ResponseCallbacks(Protocol):
    """Where the codec reports a response."""

    def on_informational(self, status: int, headers: list[list[str]]) -> None:
        """A 1xx interim response (not 101): not forwarded, only counted."""

    def on_headers(self, status: int, headers: list[list[str]], end_stream: bool) -> None:
        """The final response head; ``end_stream`` when it has no body."""

    def on_body(self, data: bytes, end_stream: bool) -> None:
        """Body bytes; ``end_stream`` on the last call (``data`` may be empty)."""


class _Refused(Exception):
    pass


def _switches(headers: list[list[str]]) -> bool:
    """A 101 that switches: an ``upgrade`` header and ``upgrade`` in ``connection``."""
    if not any(k == "upgrade" for k, _ in headers):
        return False
    return any(t.strip().lower() == "upgrade" for k, v in headers if k == "connection" for t in v.split(","))


class ClientCodec:
    """One upstream HTTP/1.1 connection's response parser (see the module docstring)."""

    __slots__ = (
        "callbacks",
        "max_headers_bytes",
        "max_headers_count",
        "_state",
        "_buf",
        "_left",
        "_head_request",
        "_chunked",
        "_chunked_done",
        "keep_alive",
        "close_notify",
        "error",
        "started",
        "_upgrade",
    )

    def __init__(
        self,
        callbacks: ResponseCallbacks,
        max_headers_bytes: int = DEFAULT_MAX_HEADERS_BYTES,
        max_headers_count: int = DEFAULT_MAX_HEADERS_COUNT,
    ) -> None:
        self.callbacks = callbacks
        self.max_headers_bytes = max_headers_bytes
        self.max_headers_count = max_headers_count
        self._state = _IDLE
        self._buf = b""
        self._left = 0
        self._head_request = False
        self._chunked: httptools.HttpResponseParser | None = None
        self._chunked_done = False
        self.keep_alive = True
        """Whether the connection may carry another request after this response."""
        self.close_notify = False
        """The response asked for the close (``connection: close``, or HTTP/1.0 without
        keep-alive): Envoy's ``upstream_cx_close_notify``."""
        self.error: str | None = None
        self.started = False
        """Some byte of the current response has arrived."""
        self._upgrade = False
        """The request asked for an upgrade that is allowed: a 101 that switches starts a tunnel."""

    # -- driven by the connection ----------------------------------------------------------
    def expect(self, head_request: bool, upgrade: bool = False) -> None:
        """A request went out: the next bytes are its response (``upgrade``: an allowed upgrade
        request, whose 101 switches the connection to raw bytes)."""
        self._state = _HEAD
        self._buf = b""
        self._head_request = head_request
        self._upgrade = upgrade
        self.keep_alive = True
        self.close_notify = False
        self.started = False

    @property
    def idle(self) -> bool:
        """No response is outstanding (the last one is complete)."""
        return self._state == _IDLE

    @property
    def until_close(self) -> bool:
        """The response's body ends when the connection closes."""
        return self._state == _UNTIL_CLOSE

    def feed(self, data: bytes) -> str | None:
        """Parse ``data``; :data:`PROTOCOL_ERROR` if the response is refused (then the codec
        takes nothing more)."""
        if self.error is not None:
            return self.error
        try:
            self._feed(data)
        except _Refused:
            self.error = PROTOCOL_ERROR
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__
            if cause is not None and not isinstance(cause, (httptools.HttpParserError, _Refused)):
                raise
            self.error = PROTOCOL_ERROR
        return self.error

    def eof(self) -> str | None:
        """The upstream closed. :data:`PROTOCOL_ERROR` when part of a response was read (a
        truncated head or body); ``None`` when the response ends with the close (its body is
        then complete), or when nothing of it arrived (the caller reports a termination)."""
        if self.error is not None:
            return self.error
        state = self._state
        if state == _UNTIL_CLOSE:
            self._state = _IDLE
            self.callbacks.on_body(b"", True)
            return None
        if state == _TUNNEL:
            return None  # (the tunnel's end: the caller reports the termination)
        if state == _IDLE or (state == _HEAD and not self._buf and not self.started):
            return None
        self.error = PROTOCOL_ERROR
        return self.error

    # -- parsing ---------------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        while data:
            state = self._state
            if state == _IDLE:
                raise _Refused  # bytes with no request outstanding
            self.started = True
            if state == _HEAD:
                data = self._feed_head(data)
            elif state == _LENGTH:
                left = self._left
                if len(data) < left:
                    self._left = left - len(data)
                    self.callbacks.on_body(data, False)
                    return
                body, data = data[:left], data[left:]
                self._left = 0
                self._state = _IDLE
                self.callbacks.on_body(body, True)
            elif state == _CHUNKED:
                parser = self._chunked
                assert parser is not None
                parser.feed_data(data)
                return
            else:  # _UNTIL_CLOSE, _TUNNEL
                self.callbacks.on_body(data, False)
                return

    def _feed_head(self, data: bytes) -> bytes:
        buf = self._buf + data if self._buf else data
        m = _HEAD_END.search(buf)
        if m is None:
            if len(buf) > self.max_headers_bytes:
                raise _Refused
            self._buf = buf
            return b""
        self._buf = b""
        lf, end = m.span()
        # (A CR before that first LF belongs to the end too: the head ends at the first
        # `\r?\n\r?\n`.)
        head, rest = buf[: lf - 1 if lf and buf[lf - 1] == 13 else lf], buf[end:]
        if len(head) > self.max_headers_bytes:
            raise _Refused
        self._on_head(head)
        return rest

    def _on_head(self, head: bytes) -> None:
        if _CLEAN_HEAD.fullmatch(head) is not None:
            # The usual head (CRLF lines, tokens, clean values): one regex checks it all, and
            # it is split without a regex per line.
            lines = head.decode("latin-1").split("\r\n")
            first = lines[0]
            headers: list[list[str]] = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append([name.lower(), value.strip(" \t")])
            if len(headers) > self.max_headers_count:
                raise _Refused
            self._on_headers(int(first[9:12]), first[5:8] == "1.1", headers)
            return
        self._on_head_slow(head)

    def _on_head_slow(self, head: bytes) -> None:
        lines = head.split(b"\n")
        status_line = lines[0].rstrip(b"\r").replace(b"\r", b"")
        sm = _STATUS_LINE.fullmatch(status_line)
        if sm is None:
            raise _Refused
        status = int(sm.group(3))
        if status < 100:
            raise _Refused
        http11 = sm.group(1) == b"1" and sm.group(2) == b"1"
        headers: list[list[str]] = []
        for raw in lines[1:]:
            line = raw.replace(b"\r", b"")
            if line[:1] in (b" ", b"\t"):
                # obs-fold: the line continues the previous header's value.
                if not headers or _BAD_VALUE.search(line):
                    raise _Refused
                prev = headers[-1]
                folded = line.strip(b" \t").decode("latin-1")
                prev[1] = f"{prev[1]} {folded}" if prev[1] else folded
                continue
            name, sep, value = line.partition(b":")
            if not sep or _TOKEN.fullmatch(name) is None or _BAD_VALUE.search(value):
                raise _Refused
            headers.append([name.decode("latin-1").lower(), value.strip(b" \t").decode("latin-1")])
        if len(headers) > self.max_headers_count:
            raise _Refused
        self._on_headers(status, http11, headers)

    def _on_headers(self, status: int, http11: bool, headers: list[list[str]]) -> None:
        length: str | None = None
        te: str | None = None
        close = keep = False
        for k, v in headers:
            if k == "content-length":
                if length is not None or not v.isdigit() or not v.isascii():
                    raise _Refused
                length = v
            elif k == "transfer-encoding":
                if te is not None or v.lower() != "chunked":
                    raise _Refused
                te = v
            elif k == "connection":
                for token in v.split(","):
                    token = token.strip().lower()
                    close = close or token == "close"
                    keep = keep or token == "keep-alive"
        if te is not None and length is not None:
            raise _Refused
        if 100 <= status < 200 and status != 101:
            if length is not None or te is not None:
                raise _Refused
            self.callbacks.on_informational(status, headers)
            return  # (still in _HEAD: the final response follows)
        if status == 204 and length == "0" and te is None:
            # Envoy's client codec (cannotHaveBody) removes a "content-length: 0" from a 204
            # and passes the response on (differential: test_http2_downstream
            # upstream-status-codes); any other length, or chunked framing, is refused.
            headers[:] = [e for e in headers if e[0] != "content-length"]
            length = None
        if status == 204 and (length is not None or te is not None):
            raise _Refused
        self.close_notify = close or (not http11 and not keep)
        self.keep_alive = not self.close_notify
        if status == 101 and self._upgrade and _switches(headers):
            # An upgrade's 101: kept whole (upgrade and connection), no body; every byte after
            # it is the new protocol's, passed on raw; the connection is never reused.
            self._state = _TUNNEL
            self.keep_alive = False
            self.callbacks.on_headers(status, headers, False)
            return
        if self._head_request or status in (101, 204, 304):
            if status == 101:
                # Not an upgrade that switches: Envoy passes the 101 on without its ``upgrade``
                # header, as a response with no body. Any byte of the
                # new protocol that follows is one with no request outstanding: refused.
                headers = [h for h in headers if h[0] != "upgrade"]
            self._state = _IDLE
            self.callbacks.on_headers(status, headers, True)
            return
        if te is not None:
            self._state = _CHUNKED
            self._chunked_done = False
            parser = httptools.HttpResponseParser(self)
            parser.feed_data(_CHUNKED_HEAD)
            self._chunked = parser
            self.callbacks.on_headers(status, headers, False)
        elif length is not None:
            n = int(length)
            if n == 0:
                self._state = _IDLE
                self.callbacks.on_headers(status, headers, True)
                return
            self._state = _LENGTH
            self._left = n
            self.callbacks.on_headers(status, headers, False)
        else:
            self._state = _UNTIL_CLOSE
            self.keep_alive = False
            self.callbacks.on_headers(status, headers, False)

    # -- httptools callbacks (the chunked body) --------------------------------------------
    def on_message_begin(self) -> None:
        if self._chunked_done:
            raise _Refused  # a second message after the chunked one: no request for it

    def on_body(self, body: bytes) -> None:
        self.callbacks.on_body(body, False)

    def on_message_complete(self) -> None:
        self._chunked_done = True
        self._state = _IDLE
        self.callbacks.on_body(b"", True)
