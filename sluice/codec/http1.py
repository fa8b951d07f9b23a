"""The HTTP/1.1 server codec, sans I/O: request bytes in, request events out.

Envoy's ``Http1::ServerConnectionImpl``: it owns the parser (httptools, i.e. llhttp), assembles
the request line and headers into :class:`RequestHeaders`, enforces the header limits
(``max_request_headers_kb``, ``max_headers_count``) and the framing rules, and hands each
request to the connection as a stream: ``new_stream(headers, end_stream)`` returns the
:class:`RequestDecoder` that then gets the body. A request the codec refuses comes back from
:meth:`ServerCodec.feed` as a :class:`CodecError` (status, body, details), which the connection
turns into Envoy's local reply; once that happened the codec takes no more bytes.

One Python call per parser event: httptools calls this object's ``on_*`` methods, which call
the request decoder directly; the connection is called once per request (``new_stream``), and
at the start of a request only when it asked for it (its timers).

A chunked body is not llhttp's: it is stricter there than Envoy's parser (Balsa), and a refusal
after the head was forwarded would leave the upstream with half of what Envoy forwards whole.
llhttp is stopped at the end of the head and :mod:`sluice.codec.chunked` decodes the body with
Balsa's rules; a fresh llhttp parser takes the bytes after it. llhttp reports no offsets, so
where a head ended is found again from the bytes (only then: the plain GET path pays one list
append per request).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httptools

from sluice.codec.chunked import ChunkedDecoder, ChunkError, head_end
from sluice.codec.connection_header import sanitize_connection
from sluice.http.headers import RequestHeaders

if TYPE_CHECKING:
    from sluice.stats.blocks import Http1CodecStats


@dataclass(frozen=True, slots=True)
class Http1Settings:
    """The HCM's ``http_protocol_options`` and ``headers_with_underscores_action`` that the
    codec applies (Envoy's ``Http1Settings``)."""

    accept_http_10: bool = False
    default_host_for_http_10: str = ""
    allow_absolute_url: bool = True
    """Envoy 1.40's default (the field is a BoolValue; unset is true)."""
    allow_chunked_length: bool = False
    """A request with both ``transfer-encoding: chunked`` and ``content-length`` is taken (the
    length is dropped) rather than refused."""
    headers_with_underscores: str = "ALLOW"
    """``ALLOW``, ``REJECT_REQUEST`` (400) or ``DROP_HEADER``."""
    proper_case_words: bool = False
    """``header_key_format.proper_case_words``: response header names written Proper-Cased."""
    enable_trailers: bool = False
    """Request trailers are checked as headers are (limits on their own budget, the underscore
    rule), as Envoy's codec does when it decodes them; without it only their names and size.
    Then they are dropped, which is what Envoy forwards with an HTTP/1 upstream: its upstream
    codec drops request trailers, and decodes none from the response, unless the cluster's own
    ``http_protocol_options.enable_trailers`` is set, which Sluice refuses (no cluster
    ``http_protocol_options`` yet); no Sluice filter adds trailers. Checked against Envoy 1.40
    in ``tests/integration/test_hcm_options.py``. An HTTP/2 upstream (the core-seams issue) is
    where trailers first cross the proxy."""


DEFAULT_SETTINGS = Http1Settings()


@dataclass(frozen=True, slots=True)
class CodecError:
    """A request the codec refuses: Envoy's ``sendProtocolError`` (status, body, details)."""

    status: int
    body: str
    details: str


HEADERS_TOO_LARGE = CodecError(431, "Request Header Fields Too Large", "http1.headers_too_large")
TOO_MANY_HEADERS = CodecError(431, "Request Header Fields Too Large", "http1.too_many_headers")
INVALID_TRANSFER_ENCODING = CodecError(501, "Not Implemented", "http1.invalid_transfer_encoding")
UPGRADE_REQUIRED = CodecError(426, "Upgrade Required", "low_version")
CHUNKED_WITH_CONTENT_LENGTH = CodecError(400, "Bad Request", "http1.content_length_and_chunked_not_allowed")
INVALID_AUTHORITY = CodecError(400, "Bad Request", "http.invalid_authority")
INVALID_URL = CodecError(400, "Bad Request", "http1.invalid_url")
INVALID_SCHEME = CodecError(400, "Bad Request", "http1.invalid_scheme")
# Envoy 1.40's HTTP/1 parser (Balsa) reports most refusals with these two details only
# (checked against Envoy 1.40 over the edge table, %RESPONSE_CODE_DETAILS%): control
# characters in the target, a header value or a trailer; everything else is a codec error.
CODEC_ERROR = CodecError(400, "Bad Request", "http1.codec_error")
INVALID_CHARACTERS = CodecError(400, "Bad Request", "http1.invalid_characters")
H2C_WITH_CHUNKED_BODY = CodecError(400, "Bad Request", "http1.h2c_upgrade_with_chunked_body")
UNDERSCORE_IN_HEADER = CodecError(400, "Bad Request", "http1.unexpected_underscore")
CONNECTION_HEADER_REJECTED = CodecError(400, "Bad Request", "http1.connection_header_rejected")

log = logging.getLogger("sluice.http")

_WATCHED = frozenset({"transfer-encoding", "content-length", "connection"})

# Envoy's check_authority_h1_h2 table: the bytes a Host / :authority may hold.
_AUTHORITY = re.compile(r"[!$%&'()*+,\-.0-9:;=@A-Z\[\]_a-z~]*")


def _valid_authority(value: str) -> bool:
    return _AUTHORITY.fullmatch(value) is not None


def _absolute_url(url: str, authority: str | None) -> tuple[str, str | None]:
    """A request target that is not origin-form: an absolute URL gives the path and replaces
    the Host (Envoy's ``handlePath`` with ``allow_absolute_url``, its default); anything else
    is an invalid URL (400)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise _Refusal(INVALID_URL)
    if scheme.lower() not in ("http", "https"):
        raise _Refusal(INVALID_SCHEME)
    slash = rest.find("/")
    query = rest.find("?")
    cut = min(i for i in (slash, query, len(rest)) if i >= 0)
    host, path = rest[:cut], rest[cut:]
    host = host.rpartition("@")[2]  # (user information is not part of the authority)
    if not host:
        raise _Refusal(INVALID_URL)
    # (A query without a path stays as it is: the connection manager answers it 404.)
    return path or "/", host




class RequestDecoder(Protocol):
    """Where a request's body goes (the stream)."""

    def on_request_body(self, data: bytes, end_stream: bool) -> None: ...


class ServerCallbacks(Protocol):
    """What the codec calls on its connection."""

    def on_message_begin(self) -> None:
        """The first byte of a request (called only when ``ServerCodec.notify_begin`` is set)."""

    def new_stream(self, headers: RequestHeaders, end_stream: bool) -> RequestDecoder:
        """A request's headers are complete; ``end_stream`` when it has no body."""
        ...


class _Refusal(Exception):
    """Raised in a parser callback to stop parsing with a :class:`CodecError`."""

    def __init__(self, error: CodecError) -> None:
        super().__init__(error.details)
        self.error = error


class _TakeOver(Exception):
    """Raised at the end of a chunked request's head: the codec decodes the body itself."""


_IDLE, _HEAD, _BODY = range(3)
_OBS_FOLD = re.compile(rb"\r?\n[ \t]+")


class _TrailerCheck:
    """httptools callbacks for a trailer block. Envoy's parser checks every trailer's name;
    with ``enable_trailers`` its codec also takes each one as a header: the header limits, on
    their own budget (not what the headers left), and the underscore rule. Nothing is kept."""

    __slots__ = ("settings", "stats", "count", "bytes")

    def __init__(self, codec: ServerCodec) -> None:
        self.settings = codec.settings if codec.settings.enable_trailers else None
        self.stats = codec.stats
        self.count = codec.max_headers_count
        self.bytes = codec.max_headers_bytes

    def on_header(self, name: bytes, value: bytes) -> None:
        settings = self.settings
        if settings is None:
            return
        self.bytes -= len(name) + len(value)
        self.count -= 1
        if self.bytes < 0 or self.count < 0:
            raise _Refusal(HEADERS_TOO_LARGE)
        if b"_" in name and settings.headers_with_underscores != "ALLOW":
            if settings.headers_with_underscores == "DROP_HEADER":
                if self.stats is not None:
                    self.stats.dropped_headers_with_underscores.inc()
                return
            if self.stats is not None:
                self.stats.requests_rejected_with_underscores_in_headers.inc()
            raise _Refusal(UNDERSCORE_IN_HEADER)


def _chunk_error(reason: str) -> CodecError:
    # (Envoy's details name no reason for a bad chunk: llhttp's reason goes to the debug log.)
    log.debug("chunked body refused: %s", reason)
    return CODEC_ERROR


class InternalError(Exception):
    """A bug of ours raised inside a parser callback (``__cause__`` is the original)."""


def _parser_error(reason: str, data: bytes = b"") -> CodecError:
    if reason == "Invalid HTTP version":
        # A well-formed version other than 1.x (HTTP/9.9, HTTP/1.2): Envoy answers 426.
        return UPGRADE_REQUIRED
    if reason in ("Request has invalid `Transfer-Encoding`", "Invalid `Transfer-Encoding` header value", "Empty Transfer-Encoding"):
        # llhttp refuses these while reading the header; Envoy's rule (one "chunked") gives 501.
        return INVALID_TRANSFER_ENCODING
    # Envoy's codec errors carry the status text as body ("Bad Request", 11 bytes).
    if reason == "Invalid header value char":
        return INVALID_CHARACTERS
    if reason in ("Invalid char in url path", "Invalid characters in url", "Invalid char in url query",
                  "Invalid char in url fragment start") and _CTL.search(data.split(b"\n", 1)[0]):
        return INVALID_CHARACTERS
    log.debug("request refused by the HTTP/1 parser: %s", reason)
    return CODEC_ERROR


_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ServerCodec:
    """One downstream HTTP/1.1 connection's request parser (see the module docstring)."""

    __slots__ = (
        "callbacks",
        "settings",
        "stats",
        "parser",
        "max_headers_bytes",
        "max_headers_count",
        "notify_begin",
        "in_message",
        "in_headers",
        "got_request",
        "error",
        "upgraded",
        "_upgrade",
        "_h2c",
        "_h2c_body",
        "_body",
        "_trailer_error",
        "_chunked",
        "_in_body",
        "_log",
        "_feed_body",
        "_feed_data",
        "_feed_state",
        "_tail",
        "_feed_tail",
        "_deferred",
        "_ended_in_feed",
        "_url",
        "_headers",
        "_host",
        "_hbytes",
        "_hleft",
    )

    def __init__(
        self,
        callbacks: ServerCallbacks,
        max_headers_bytes: int,
        max_headers_count: int,
        settings: Http1Settings = DEFAULT_SETTINGS,
        stats: Http1CodecStats | None = None,
    ) -> None:
        self.callbacks = callbacks
        self.settings = settings
        self.stats = stats
        self.parser = self._new_parser()
        self.max_headers_bytes = max_headers_bytes
        self.max_headers_count = max_headers_count
        self.notify_begin = False
        """Call ``callbacks.on_message_begin()`` at each request's first byte."""
        self.in_message: RequestDecoder | None = None
        """The request whose body is being parsed (headers done, message not complete)."""
        self.in_headers = False
        """Between a request's first byte and the end of its headers."""
        self.got_request = False
        """A request began on this connection (Envoy has created its codec)."""
        self.error: CodecError | None = None
        """Set once the codec refused the input: it parses nothing more."""
        self.upgraded = False
        """An upgrade (or CONNECT) request was handed over: the codec parses nothing more. The
        bytes after an upgrade request's head (and its body, if it has a length) are the new
        protocol's: they go to that request's decoder as body, never ending it (Envoy's codec
        in upgrade mode); a CONNECT (or a refused upgrade) gets them too, and ignores them."""
        self._upgrade = False
        """The current request is an upgrade (not h2c, not CONNECT): its end is not passed on."""
        self._h2c = False
        """The current request asked for h2c, which Envoy ignores: parsing goes on after it."""
        self._h2c_body = 0
        """Body bytes of an h2c request still to pass on: llhttp leaves an upgrade request's
        body unparsed (it is the new protocol's), so the codec frames it by its length."""
        self._body: list[bytes] = []
        """Body bytes of the current request parsed in this ``feed`` (passed on once)."""
        self._trailer_error = False
        """The refusal came in the trailers, after the last chunk: the body read with it goes
        on first, as Envoy has passed it on by then."""
        self._chunked: ChunkedDecoder | None = None
        """The current request's chunked body, decoded as Envoy decodes it (:mod:`.chunked`)."""
        self._in_body = False
        """llhttp is inside a request's (Content-Length) body."""
        # Where requests start in this feed's data, found again only when needed (a chunked
        # body to take over, a refusal to place): llhttp reports no offsets. Each request
        # llhttp completed in this pass logs its body bytes in it; the heads are re-framed.
        self._log: list[int] = []
        self._feed_body = 0
        self._feed_data = b""
        self._feed_state = _IDLE
        self._tail = b""
        """The last bytes of a head still incomplete at the end of a read."""
        self._feed_tail = b""
        """``_tail`` as this feed's data began: what a head continued from the earlier read
        ended with (kept apart, as ``_tail`` is renewed when the feed ends and
        ``message_begun`` re-frames this feed's data afterwards)."""
        self._ended_in_feed = False
        """A chunked request ended in this ``feed`` (llhttp's log starts after it)."""
        self._deferred: CodecError | None = None
        """A refusal of a pipelined request whose first line had not ended: sent only when
        more bytes come (Envoy parses such leftover bytes at the next read)."""
        self._url = b""
        self._headers: list[list[str]] = []
        self._host: str | None = None
        """The current request's Host (several joined with ","): kept out of ``_headers``."""
        self._hbytes = max_headers_bytes
        """Bytes of request line and headers the current request may still use."""
        self._hleft = max_headers_count
        """Headers the current request may still have."""

    def feed(self, data: bytes) -> CodecError | None:
        """Parse ``data``; the error that stopped parsing, if any (then also :attr:`error`).

        Raises :class:`InternalError` when a callback (the connection's or a stream's) failed
        with anything but a refusal: a bug, which must cost only this connection."""
        if self.error is not None or self.upgraded:
            if self.upgraded and data and self.in_message is not None:
                # The upgraded connection's raw bytes: the stream's body, as they arrive.
                self.in_message.on_request_body(data, False)
            return self.error
        if self._deferred is not None:
            if data:
                self.error = self._deferred
            return self.error
        self._ended_in_feed = False
        while True:
            if self._chunked is not None:
                end = self._feed_chunked(data)
                if end < 0:
                    break
                data = data[end:]
                self.parser = self._new_parser()
                self._ended_in_feed = True
                if not data:
                    # (nothing after the request in this read: message_begun must not look at
                    # a previous pass's bytes)
                    self._feed_data, self._feed_state, self._log = b"", _IDLE, []
                    break
            if self._h2c_body:
                body = data[: self._h2c_body]
                self._h2c_body -= len(body)
                data = data[len(body) :]
                if body:
                    self.on_body(body)
                if self._h2c_body:
                    break
                self.on_message_complete()
                if not data:
                    break
            self._feed_data = data
            self._feed_tail = self._tail
            self._feed_state = _HEAD if self.in_headers else _BODY if self._in_body else _IDLE
            self._feed_body = 0
            if self._log:
                self._log = []
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
                if not self._h2c:
                    self.upgraded = True
                    if self._upgrade and offset < len(data):
                        # What followed the head in this read goes on with the body read in
                        # this pass (one piece, after it), as Envoy's codec hands it over.
                        self._body.append(data[offset:])
                    break
                # llhttp stopped at the end of an h2c upgrade request whose upgrade headers
                # were dropped: carry on with a fresh parser after it, as Envoy does.
                self._h2c = False
                data = data[offset:]
                self.parser = self._new_parser()
                continue
            except httptools.HttpParserError as exc:
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, _TakeOver):
                    # llhttp stopped at the end of a chunked request's head: the body is ours.
                    end = self._head_end(self._message_start(), self._feed_state == _HEAD and not self._log)
                    if end < 0:
                        raise InternalError("a chunked request's head end was not found") from cause
                    self._chunked = ChunkedDecoder(self.max_headers_bytes)
                    data = data[end:]
                    continue
                if isinstance(cause, _Refusal):
                    self.error = cause.error
                elif cause is not None and not isinstance(cause, httptools.HttpParserError):
                    raise InternalError(repr(cause)) from cause
                elif (self._log or self._ended_in_feed) and self._line_incomplete(self._message_start()):
                    # A pipelined request's first line refused before it ended (llhttp checks
                    # the method as it comes; Envoy's parser reads the whole line, and leftover
                    # bytes only at the next read): the refusal waits for more bytes.
                    self._deferred = _parser_error(str(exc), data)
                    self._body = []
                    return None
                else:
                    self.error = _parser_error(str(exc), data)
            break
        self._tail = (self._tail + data)[-2:] if self.in_headers else b""
        pending = self._body
        if pending:
            # The body read in this pass goes on as one piece, as Envoy's codec dispatches its
            # buffered body once per read (a chunked body is re-chunked by what arrived
            # together); after a refusal it is dropped, not forwarded.
            self._body = []
            decoder = self.in_message
            if decoder is not None and (self.error is None or self._trailer_error):
                decoder.on_request_body(pending[0] if len(pending) == 1 else b"".join(pending), False)
        return self.error

    def message_begun(self) -> bool:
        """Whether bytes of a request no stream has yet arrived after the last complete one (a
        head still arriving, a refusal waiting for its line's end, or only line ends): Envoy's
        parser begins a message, and its connection manager a stream, at the first such byte.
        Asked when the connection closes."""
        if self.error is not None or self.upgraded or self.in_message is not None:
            return False
        if self.in_headers or self._deferred is not None:
            return True
        data = self._feed_data
        if not self._log:
            # Nothing ended in the last read: it was only line ends, or it ended a chunked
            # request (the rest of that read is what this pass's data holds).
            return bool(data) and self._feed_state == _IDLE
        return self._message_start(skip_line_ends=False) < len(data)

    def _message_start(self, skip_line_ends: bool = True) -> int:
        """Where the request llhttp is on began in this pass's data (0 if before it)."""
        data = self._feed_data
        pos = 0
        first = True
        for body in self._log:
            if first and self._feed_state == _BODY:
                pos = body
            else:
                end = self._head_end(pos, first and self._feed_state == _HEAD)
                if end < 0:
                    raise InternalError("a completed request's head end was not found")
                pos = end + body
            first = False
        n = len(data)
        while skip_line_ends and pos < n and data[pos] in (0x0A, 0x0D):
            pos += 1  # (llhttp skips line ends between requests)
        return pos

    def _head_end(self, pos: int, continued: bool) -> int:
        return head_end(self._feed_data, pos, self._feed_tail if continued else b"")

    def _line_incomplete(self, start: int) -> bool:
        return self._feed_data.find(b"\n", start) < 0

    def _feed_chunked(self, data: bytes) -> int:
        """Feed a chunked body; the index past the request's end in ``data``, or -1 (more
        needed, or refused: then :attr:`error` is set)."""
        decoder = self._chunked
        assert decoder is not None
        try:
            end = decoder.feed(data, 0, self._body)
        except ChunkError as exc:
            self._chunked = None
            self._trailer_error = exc.in_trailers
            self.error = HEADERS_TOO_LARGE if exc.reason == "trailers size exceeds limit" else _chunk_error(exc.reason)
            return -1
        if end < 0:
            return -1
        self._chunked = None
        if decoder.trailers and not self._check_trailers(bytes(decoder.trailers)):
            return -1
        self._end_message()
        return end

    def _check_trailers(self, block: bytes) -> bool:
        """Trailers are checked (:class:`_TrailerCheck`), then dropped: Envoy forwards none to
        an HTTP/1 upstream (see :attr:`Http1Settings.enable_trailers`)."""
        parser = httptools.HttpRequestParser(_TrailerCheck(self))
        parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        # Balsa takes continuation lines (obs-fold) in trailers; llhttp would refuse them.
        block = _OBS_FOLD.sub(b" ", block)
        try:
            parser.feed_data(b"GET / HTTP/1.1\r\n" + block)
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__
            self.error = cause.error if isinstance(cause, _Refusal) else _parser_error(str(exc), block)
            self._trailer_error = True
            return False
        return True

    def _new_parser(self) -> httptools.HttpRequestParser:
        parser = httptools.HttpRequestParser(self)
        # Where llhttp is stricter than Envoy's parser (Balsa): spaces or tabs after a chunk
        # size, a bare LF ending a line. Content-Length with Transfer-Encoding is let through
        # llhttp so that on_headers_complete applies Envoy's rule (400 unless
        # allow_chunked_length, which drops the length).
        parser.set_dangerous_leniencies(
            lenient_spaces_after_chunk_size=True, lenient_optional_cr_before_lf=True, lenient_chunked_length=True
        )
        return parser

    # -- httptools callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._host = None
        self.got_request = self.in_headers = True
        self._hbytes = self.max_headers_bytes
        self._hleft = self.max_headers_count
        if self.notify_begin:
            self.callbacks.on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._hbytes -= len(url)
        if self._hbytes < 0:
            raise _Refusal(HEADERS_TOO_LARGE)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Envoy's limits (431): max_request_headers_kb and max_headers_count.
        self._hbytes -= len(name) + len(value)
        self._hleft -= 1
        if self._hbytes < 0:
            raise _Refusal(HEADERS_TOO_LARGE)
        if self._hleft < 0:
            raise _Refusal(TOO_MANY_HEADERS)
        key = name.decode("latin-1").lower()
        if "_" in key and self.settings.headers_with_underscores != "ALLOW":
            if self.settings.headers_with_underscores == "DROP_HEADER":
                if self.stats is not None:
                    self.stats.dropped_headers_with_underscores.inc()
                return
            if self.stats is not None:
                self.stats.requests_rejected_with_underscores_in_headers.inc()
            raise _Refusal(UNDERSCORE_IN_HEADER)
        # httptools keeps trailing whitespace of a value; Envoy's codec strips it (RFC 9110 OWS).
        text = value.decode("latin-1").rstrip(" \t")
        if key == "host":
            # The authority, not an entry: taken out here rather than by a second pass over
            # the entries; several Host headers become one value, joined as Envoy's header
            # map joins them.
            host = self._host
            self._host = text if host is None else f"{host},{text}"
            return
        self._headers.append([key, text])

    def on_headers_complete(self) -> None:
        self.in_headers = False
        parser = self.parser
        version = parser.get_http_version()
        method = parser.get_method().decode("latin-1")
        entries = self._headers
        te: str | None = None
        te_count = cl_count = 0
        has_body = False
        connection = False
        for k, v in entries:
            if k in _WATCHED:
                if k == "transfer-encoding":
                    te = v
                    te_count += 1
                elif k == "content-length":
                    cl_count += 1
                    if v.strip() != "0":
                        has_body = True
                else:
                    connection = True
        if te is not None:
            # Envoy (Balsa) refuses a length with any Transfer-Encoding (400), then takes one
            # Transfer-Encoding, and only "chunked" (501 otherwise).
            if cl_count and not self.settings.allow_chunked_length:
                raise _Refusal(CHUNKED_WITH_CONTENT_LENGTH)
            if te_count > 1 or te.strip().lower() != "chunked":
                raise _Refusal(INVALID_TRANSFER_ENCODING)
            if cl_count:
                # allow_chunked_length: the chunked framing wins; the length goes.
                entries = [e for e in entries if e[0] != "content-length"]
            has_body = True
        if version != "1.1" and (version not in ("1.0", "0.9") or not self.settings.accept_http_10):
            # Envoy's codec refuses HTTP/1.0 (and 0.9, which it takes as 1.0) unless
            # accept_http_10 is set, and any other version (HTTP/2.0 on an HTTP/1 connection),
            # once the framing was checked.
            raise _Refusal(UPGRADE_REQUIRED)
        authority = self._host
        if connection:
            sanitized = sanitize_connection(entries)
            if sanitized is None:
                raise _Refusal(CONNECTION_HEADER_REJECTED)
            entries = sanitized
            entries = self._drop_h2c_upgrade(entries)
        url = self._url.decode("latin-1")
        if method == "CONNECT":
            # Authority-form: the target is the authority (with its port), and there is no path.
            host, colon, port = url.rpartition(":")
            if not colon or not host or not port.isdigit():
                raise _Refusal(INVALID_URL)
            authority, url = url, ""
        elif url[:1] != "/" and not (method == "OPTIONS" and url == "*") and self.settings.allow_absolute_url:
            url, authority = _absolute_url(url, authority)
        if authority is not None and not _valid_authority(authority):
            raise _Refusal(INVALID_AUTHORITY)
        if connection and method != "CONNECT" and not self._h2c and parser.should_upgrade():
            # An upgrade (llhttp's flag: an upgrade header and "upgrade" in connection): Envoy's
            # codec enters upgrade mode; the request never ends, what follows is its body.
            self._upgrade = has_body = True
        headers = RequestHeaders(method, url, authority, entries, "http", version)
        self.in_message = self.callbacks.new_stream(headers, not has_body)
        if not has_body:
            # (llhttp still calls on_message_complete; the stream already has its end.)
            self.in_message = None
        elif te is not None and not self._upgrade:
            raise _TakeOver
        else:
            self._in_body = True

    def _drop_h2c_upgrade(self, entries: list[list[str]]) -> list[list[str]]:
        """Envoy's HTTP/1 codec ignores an ``Upgrade: h2c`` request's upgrade: ``upgrade`` and
        ``http2-settings`` go, and so do those tokens of ``connection``."""
        upgrade = next((v for k, v in entries if k == "upgrade"), None)
        if upgrade is None or upgrade.strip().lower() != "h2c":
            return entries
        if not any(t.strip().lower() == "upgrade" for k, v in entries if k == "connection" for t in v.split(",")):
            return entries
        if any(k == "transfer-encoding" for k, _ in entries):
            # llhttp would leave a chunked body unparsed after the upgrade; refused before
            # anything is forwarded. Divergence from Envoy, which passes it on.
            raise _Refusal(H2C_WITH_CHUNKED_BODY)
        self._h2c = True
        length = next((v for k, v in entries if k == "content-length"), "0").strip()
        self._h2c_body = int(length) if length.isdigit() else 0
        out: list[list[str]] = []
        for e in entries:
            if e[0] in ("upgrade", "http2-settings"):
                continue
            if e[0] == "connection":
                kept = [t.strip() for t in e[1].split(",") if t.strip().lower() not in ("upgrade", "http2-settings")]
                kept = [t for t in kept if t]
                if not kept:
                    continue
                e[1] = ",".join(kept)
            out.append(e)
        return out

    def on_body(self, body: bytes) -> None:
        self._feed_body += len(body)
        if self.in_message is not None:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._log.append(self._feed_body)
        self._feed_body = 0
        if self._h2c_body or self._upgrade:
            # (An h2c request's body follows: feed() passes it on, then ends it. An upgrade
            # request does not end: the new protocol's bytes follow as its body.)
            return
        self._end_message()

    def _end_message(self) -> None:
        """The request's last body bytes (those read in this pass, as one piece) and its end."""
        decoder = self.in_message
        self.in_message = None
        body = self._body
        if body:
            self._body = []
        if decoder is not None:
            decoder.on_request_body(b"".join(body) if body else b"", True)
