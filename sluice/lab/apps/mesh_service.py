"""Built-in equivalents of the ``build:`` Go services (``service_a``, ``service_b`` and ``service_c``) in the
zipkin-tracing, jaeger-tracing, monitoring and monitoring-and-accesslog labs. Run one as::

    python -m sluice.lab.apps.mesh_service --main-go PATH [--host IP] [--variant NAME] [--port N]
                                           [--upstream-override HOST:PORT=IP:PORT ...]

Every lab builds the same Dockerfile (``FROM golang:alpine; COPY main.go main.go; CMD go run main.go``).
Only main.go differs, and it comes in four variants. A variant is recognised by the SHA-256 of main.go
with all whitespace removed. A main.go matching none of them is an error that names the file; the
error also says to pass ``--variant`` to force one:

============== ======== ================================================================ ==========================
variant        listens  behaviour                                                        main.go of
============== ======== ================================================================ ==========================
tracing-a      :8081    ``Calling Service B: `` + GET http://localhost:8788/ + ``Hello   zipkin-tracing, jaeger-
                        from service A.\\n`` + GET http://localhost:8791/                 tracing service_a
monitoring-a   :8081    the same, but calling http://service_a_envoy:8788/ and :8791/    monitoring, monitoring-
                                                                                         and-accesslog service_a
hello-b        :8082    ``Hello from service B.\\n``                                      service_b (all four)
hello-c        :8083    ``Hello from service C.\\n``                                      service_c (all four)
============== ======== ================================================================ ==========================

The two ``-a`` variants differ only in where they call. In the tracing labs service_a shares
service_a_envoy's network namespace (``network_mode: service:``), so localhost:8788 is the sidecar's
egress listener. In the monitoring labs service_a is its own container and calls the sidecar by its
alias.

What is reproduced from Go 1.19's net/http (checked byte for byte against the real main.go files built
with Go 1.19):

* The handler is registered on ``/``, so every method and path runs it, with these exceptions.
  A path that ``path.Clean`` changes gets ServeMux's 301 to the cleaned path. ``OPTIONS *`` gives
  ``200`` with ``Content-Length: 0``. Any other ``*`` target gives ``400`` and the connection closes.
  An unparsable request, a bad %-escape, a missing Host on HTTP/1.1 or two Host headers gives Go's bare
  ``400 Bad Request`` and the connection closes.
* Response headers are ``Date, Content-Length, Content-Type: text/plain; charset=utf-8``, plus
  ``Connection: close``/``keep-alive`` as Go decides them. The body goes through a 2048-byte buffer:
  a longer body is sent chunked as the buffer fills. HEAD gets the headers only. Keep-alive and
  pipelining follow Go. The status line is HTTP/1.0 for HTTP/1.0 requests.
* ``fmt.Fprintf(w, string(body))`` passes the upstream body as a *format string*, so ``%`` sequences
  come out as Go prints them with no arguments (``%!d(MISSING)``, ``%!(NOVERB)``, ``%%`` -> ``%``).
* The outgoing request is ``GET / HTTP/1.1`` with ``Host: <host:port of the URL>``,
  ``User-Agent: Go-http-client/1.1``, then the seven propagated headers in Go's sorted canonical
  form, then ``Accept-Encoding: gzip``:

    ``X-B3-Flags, X-B3-Parentspanid, X-B3-Sampled, X-B3-Spanid, X-B3-Traceid, X-Ot-Span-Context,
    X-Request-Id``

  Each takes the incoming header's first value, trimmed. An absent header is still sent, with an empty
  value (``X-B3-Flags: ``).
* The client pools connections like http.DefaultTransport: at most 2 idle per host, a 90 s idle
  timeout, and the most recently used one first. A GET that fails on a reused connection before any
  response byte is retried once on a new one. The client follows up to 10 redirects, with Referer
  set, and gunzips a ``Content-Encoding: gzip`` answer.
* An error from ``client.Do`` is printed to stdout with no newline, e.g.
  ``Get "http://localhost:8788/": dial tcp 127.0.0.1:8788: connect: connection refused``. The
  following ``defer resp.Body.Close()`` then panics on the nil response. Go logs
  ``2026/11/24 21:45:22 http: panic serving 127.0.0.1:59590: runtime error: invalid memory address or
  nil pointer dereference`` and closes the connection without answering. Anything past the 2048-byte
  buffer has already gone out by then. A body cut short prints ``unexpected EOF`` and keeps what
  arrived.

Divergences: the goroutine stack trace after the panic line is shortened. A failed name lookup reads
``dial tcp: lookup NAME: no such host`` (Go names its DNS server too). Nothing is printed at start-up,
as with ``go run``. It also starts in milliseconds, not after a compile.

Go's fmt and http.Client are in ``gonet.py``; the ServeMux/response-writer half is here.

``--upstream-override localhost:8788=127.0.0.1:40001`` (repeatable) dials the given address instead of
resolving the URL's host. The request bytes, Host header included, are unchanged, so tests can run a
recording service on a free loopback port. ``--port`` replaces the variant's port (for tests as well).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import sys
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import TextIO
from urllib.parse import quote, unquote

import httptools

from sluice.lab.apps.gonet import GoClient, go_sprintf
from sluice.lab.apps.runner import serve_forever

# -- variants ----------------------------------------------------------------------------------------

PROPAGATED = ("x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "x-ot-span-context")


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    port: int
    """The port of ``http.ListenAndServe(":PORT", nil)``."""
    steps: tuple[tuple[str, str], ...]
    """The handler: ("write", literal Fprintf format) or ("call", URL whose body is Fprintf'd)."""
    defer_lines: tuple[int, ...] = ()
    """main.go line of each call's ``defer resp.Body.Close()``, for the panic log."""
    labs: tuple[str, ...] = field(default=())
    """The labs whose main.go this is (documentation only)."""


def _service_a(name: str, host: str, labs: tuple[str, ...]) -> Variant:
    steps = (
        ("write", "Calling Service B: "),
        ("call", f"http://{host}:8788/"),
        ("write", "Hello from service A.\n"),
        ("call", f"http://{host}:8791/"),
    )
    return Variant(name, 8081, steps, (35, 63), labs)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        _service_a("tracing-a", "localhost", ("zipkin-tracing", "jaeger-tracing")),
        _service_a("monitoring-a", "service_a_envoy", ("monitoring", "monitoring-and-accesslog")),
        Variant("hello-b", 8082, (("write", "Hello from service B.\n"),), labs=("all four",)),
        Variant("hello-c", 8083, (("write", "Hello from service C.\n"),), labs=("all four",)),
    )
}

# sha256 of main.go with every whitespace character removed -> variant.
KNOWN_SOURCES: dict[str, str] = {
    "038515804ceb97210f3e266fa18b0d0c7ea9cce9d96380dbbd292a5a08053bde": "tracing-a",
    "6e4c330dff12600666378b5e538a7902acd921d347545af3aba6ac070f81f1db": "monitoring-a",
    "b158bf680c56c484caf40a0d209758b06eb7de70b00331261998e8cd7d363d00": "hello-b",
    "6883683825e1372291719eb6c0d92d841b50aaec0370735291b1f62efb66cdc8": "hello-c",
}


class UnknownMainGo(ValueError):
    pass


def source_digest(source: bytes) -> str:
    return hashlib.sha256(re.sub(rb"\s+", b"", source)).hexdigest()


def identify(path: str | Path) -> Variant:
    digest = source_digest(Path(path).read_bytes())
    name = KNOWN_SOURCES.get(digest)
    if name is None:
        raise UnknownMainGo(
            f"{path}: main.go matches no known variant (sha256 without whitespace {digest[:16]}...); "
            f"pass --variant with one of {', '.join(VARIANTS)}"
        )
    return VARIANTS[name]


# -- Go's net/http server --------------------------------------------------------------------------

_STATUS_TEXT = {200: "OK", 301: "Moved Permanently", 400: "Bad Request"}
BUFFER = 2048
"""bufferBeforeChunkingSize: the response buffer in front of the chunk writer."""


class _Request:
    __slots__ = ("method", "target", "major", "minor", "headers", "body_len", "chunked")

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]], body_len: int, chunked: bool) -> None:
        self.method = method
        self.target = target
        major, _, minor = version.partition(".")
        self.major = int(major or 1)
        self.minor = int(minor or 0)
        self.headers = headers
        self.body_len = body_len
        self.chunked = chunked

    def get(self, name: str) -> str:
        """``r.Header.Get``: the first value, trimmed, or ""."""
        for k, v in self.headers:
            if k == name:
                return v.strip(" \t")
        return ""

    def tokens(self, name: str) -> set[str]:
        return {t.strip(" \t").lower() for k, v in self.headers if k == name for t in v.split(",")}

    @property
    def http11(self) -> bool:
        return (self.major, self.minor) >= (1, 1)


class _ReqSink:
    def __init__(self) -> None:
        self.ready: list[_Request] = []
        self.parser: httptools.HttpRequestParser | None = None
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._body_len = 0

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body_len = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None
        chunked = any(k == "transfer-encoding" and "chunked" in v.lower() for k, v in self._headers)
        req = _Request(
            self.parser.get_method().decode("latin-1"),
            self._url.decode("latin-1"),
            self.parser.get_http_version(),
            self._headers,
            self._body_len,
            chunked,
        )
        self.ready.append(req)


class _ResponseWriter:
    """Go's response + chunkWriter: a 2048-byte bufio.Writer in front of a writer that emits the header
    on its first write and then raw or chunked body bytes."""

    def __init__(self, out: asyncio.StreamWriter, req: _Request, close_after: bool) -> None:
        self.out = out
        self.req = req
        self.close_after = close_after
        self.status = 200
        self.header: list[tuple[str, str]] = []
        self.buf = bytearray()
        self.wrote_header = False
        self.chunking = False
        self.done = False

    def write(self, p: bytes) -> None:
        while len(p) > BUFFER - len(self.buf):
            if not self.buf:
                self._cw_write(p)
                return
            n = BUFFER - len(self.buf)
            self.buf += p[:n]
            p = p[n:]
            self._cw_write(bytes(self.buf))
            self.buf.clear()
        self.buf += p

    def finish(self) -> None:
        self.done = True
        if self.buf:
            self._cw_write(bytes(self.buf))
            self.buf.clear()
        if not self.wrote_header:
            self._write_header(b"")
        if self.chunking:
            self.out.write(b"0\r\n\r\n")

    def _cw_write(self, p: bytes) -> None:
        if not self.wrote_header:
            self._write_header(p)
        if self.req.method == "HEAD":
            return
        if self.chunking:
            self.out.write(f"{len(p):x}\r\n".encode() + p + b"\r\n")
        else:
            self.out.write(p)

    def _write_header(self, p: bytes) -> None:
        self.wrote_header = True
        req = self.req
        is_head = req.method == "HEAD"
        has_cl = any(k == "Content-Length" for k, _ in self.header)
        has_ct = any(k == "Content-Type" for k, _ in self.header)
        content_length: int | None = None
        if self.done and not has_cl and (not is_head or len(p) > 0):
            content_length = len(p)
        keep10 = False
        if not req.http11 and "keep-alive" in req.tokens("connection") and "close" not in req.tokens("connection"):
            keep10 = content_length is not None or has_cl
            self.close_after = not keep10
        if is_head or has_cl or content_length is not None:
            pass
        elif req.http11:
            self.chunking = True
        else:
            self.close_after = True
        connection = ""
        if self.close_after and not any(k == "Connection" and "close" in v.lower() for k, v in self.header):
            connection = "close" if req.http11 else ""
        elif keep10:
            connection = "keep-alive"
        content_type = ""
        if not has_ct and p:
            content_type = _sniff(p)
        proto = "HTTP/1.1" if req.http11 else "HTTP/1.0"
        lines = [f"{proto} {self.status} {_STATUS_TEXT[self.status]}"]
        lines += [f"{k}: {v}" for k, v in sorted(self.header, key=lambda kv: kv[0])]
        lines.append(f"Date: {formatdate(usegmt=True)}")
        if content_length is not None:
            lines.append(f"Content-Length: {content_length}")
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        if connection:
            lines.append(f"Connection: {connection}")
        if self.chunking:
            lines.append("Transfer-Encoding: chunked")
        self.out.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace"))


def _sniff(p: bytes) -> str:
    """http.DetectContentType for bodies that start with plain text: text unless a binary byte shows
    up in the first 512."""
    for b in p[:512]:
        if b <= 0x08 or b == 0x0B or 0x0E <= b <= 0x1A or 0x1C <= b <= 0x1F:
            return "application/octet-stream"
    return "text/plain; charset=utf-8"


def go_clean_path(p: str) -> str:
    """net/http's cleanPath: path.Clean, keeping a trailing slash."""
    if p == "":
        return "/"
    if p[0] != "/":
        p = "/" + p
    out: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    np = "/" + "/".join(out)
    if p.endswith("/") and np != "/":
        np += "/"
    return np


_BAD_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")
_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"}


def _hex_escape_non_ascii(s: str) -> str:
    return "".join(ch if ord(ch) < 0x80 else "".join(f"%{b:02X}" for b in ch.encode()) for ch in s)


class MeshService:
    """One Go service. ``stdout``/``stderr`` receive exactly what the Go process would print."""

    def __init__(
        self,
        variant: Variant,
        *,
        overrides: dict[str, tuple[str, int]] | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.variant = variant
        self.client = GoClient(overrides)
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self._goroutine = 5

    async def start(self, host: str, port: int | None = None) -> None:
        listen = self.variant.port if port is None else port
        self.server = await asyncio.start_server(self._serve, host or None, listen, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        self.client.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._goroutine += 1
        peer = writer.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if peer else "?"
        sink = _ReqSink()
        parser = httptools.HttpRequestParser(sink)
        sink.parser = parser
        broken = False
        try:
            while True:
                while not sink.ready and not broken:
                    data = await reader.read(65536)
                    if not data:
                        return
                    try:
                        parser.feed_data(data)
                    except httptools.HttpParserUpgrade:
                        pass
                    except httptools.HttpParserError:
                        broken = True
                while sink.ready:
                    req = sink.ready.pop(0)
                    keep = await self._handle(req, writer, remote)
                    await writer.drain()
                    if not keep:
                        return
                if broken:
                    writer.write(_bad_request())
                    await writer.drain()
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, req: _Request, writer: asyncio.StreamWriter, remote: str) -> bool:
        """One request; returns whether the connection stays open."""
        hosts = [v for k, v in req.headers if k == "host"]
        if req.http11 and not hosts:
            writer.write(_bad_request("missing required Host header"))
            return False
        if len(hosts) > 1:
            writer.write(_bad_request())
            return False
        conn_tokens = req.tokens("connection")
        if req.http11:
            close_after = "close" in conn_tokens
        else:
            close_after = "close" in conn_tokens or "keep-alive" not in conn_tokens
        if "100-continue" in req.tokens("expect") and (req.body_len or req.chunked):
            close_after = True
        rw = _ResponseWriter(writer, req, close_after)
        if req.target == "*":
            if req.method == "OPTIONS":
                rw.header = [("Content-Length", "0")]
            else:
                # ServeMux: Connection: close (HTTP/1.1 only) and 400; Content-Length: 0 is Go's own.
                rw.status = 400
                rw.header = [("Connection", "close")] if req.http11 else []
                rw.close_after = True
            rw.finish()
            return not rw.close_after
        path, raw_query = self._parse_target(req.target)
        if path is None:
            writer.write(_bad_request())
            return False
        cleaned = go_clean_path(path)
        if cleaned != path and req.method != "CONNECT":
            self._redirect(rw, cleaned, raw_query)
            rw.finish()
            return not rw.close_after
        ok = await self._run_handler(req, rw, remote)
        if not ok:
            return False
        rw.finish()
        return not rw.close_after

    @staticmethod
    def _parse_target(target: str) -> tuple[str | None, str]:
        raw, _, query = target.partition("?")
        if not raw.startswith("/"):
            m = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*", raw)
            if m is None:
                return None, query
            raw = raw[m.end() :]
        if _BAD_ESCAPE.search(raw) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
            return None, query
        return unquote(raw, errors="surrogateescape"), query

    @staticmethod
    def _redirect(rw: _ResponseWriter, cleaned: str, raw_query: str) -> None:
        url = quote(cleaned, safe="/$&+,:;=@", errors="surrogateescape") + (f"?{raw_query}" if raw_query else "")
        rw.status = 301
        rw.header = [("Location", _hex_escape_non_ascii(url))]
        if rw.req.method in ("GET", "HEAD"):
            rw.header.append(("Content-Type", "text/html; charset=utf-8"))
        if rw.req.method == "GET":
            escaped = "".join(_HTML_ESCAPES.get(c, c) for c in url)
            rw.write(f'<a href="{escaped}">Moved Permanently</a>.\n\n'.encode("utf-8", "surrogateescape"))

    async def _run_handler(self, req: _Request, rw: _ResponseWriter, remote: str) -> bool:
        """main.handler; False when it panicked (the connection is then dropped)."""
        call_index = 0
        for kind, arg in self.variant.steps:
            if kind == "write":
                rw.write(go_sprintf(arg.encode()))
                continue
            result = await self.client.get(arg, [(name, req.get(name)) for name in PROPAGATED])
            if result.do_error is not None:
                self._print(result.do_error)
            if not result.has_response:
                self._panic(remote, call_index)
                return False
            if result.read_error is not None:
                self._print(result.read_error)
            rw.write(go_sprintf(result.body))
            call_index += 1
        return True

    def _print(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def _panic(self, remote: str, call_index: int) -> None:
        line = self.variant.defer_lines[call_index] if call_index < len(self.variant.defer_lines) else 0
        ts = time.strftime("%Y/%m/%d %H:%M:%S")
        self.stderr.write(
            f"{ts} http: panic serving {remote}: runtime error: invalid memory address or nil pointer dereference\n"
            f"goroutine {self._goroutine} [running]:\n"
            f"main.handler(...)\n\t/go/main.go:{line}\n"
        )
        self.stderr.flush()


def _bad_request(text: str = "") -> bytes:
    public = "400 Bad Request" + (f": {text}" if text else "")
    return f"HTTP/1.1 {public}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n{public}".encode()


def _parse_override(spec: str) -> tuple[str, tuple[str, int]]:
    key, sep, target = spec.partition("=")
    ip, colon, port = target.rpartition(":")
    if not sep or not colon or not port.isdigit() or ":" not in key:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT=IP:PORT, got {spec!r}")
    return key, (ip.strip("[]"), int(port))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sluice.lab.apps.mesh_service", description=__doc__.split("\n\n")[0])
    p.add_argument("--main-go", help="the lab's main.go; picks the variant")
    p.add_argument("--variant", choices=sorted(VARIANTS), help="force a variant (required without --main-go)")
    p.add_argument("--host", default="0.0.0.0", help="listen address (Go listens on all of them)")
    p.add_argument("--port", type=int, default=None, help="replace the variant's port")
    p.add_argument("--upstream-override", type=_parse_override, action="append", default=[], metavar="HOST:PORT=IP:PORT")
    args = p.parse_args(argv)
    if args.variant:
        variant = VARIANTS[args.variant]
    elif args.main_go:
        try:
            variant = identify(args.main_go)
        except (UnknownMainGo, OSError) as e:
            print(f"mesh_service: {e}", file=sys.stderr)
            return 2
    else:
        p.error("one of --main-go or --variant is required")

    async def start() -> None:
        svc = MeshService(variant, overrides=dict(args.upstream_override))
        await svc.start(args.host, args.port)

    return serve_forever(start)


if __name__ == "__main__":
    sys.exit(main())
