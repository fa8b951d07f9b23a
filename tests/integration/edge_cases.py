"""The edge table of issue 9: raw HTTP/1.1 requests at the edge, one :class:`EdgeCase` each.

Only data: a name, the exact bytes a client writes (in one write) and the listener they go to.
No expected answers — the differential suite (``test_edge_differential.py``) sends every case to
the real Envoy and to Sluice on the same config and compares what each answered and what each
forwarded. The table is codec-agnostic on purpose (raw bytes in, nothing about how they are
parsed), so a later codec's suite can reuse the ideas case by case.

Every request carries ``Host: x`` unless the case is about Host. Bodies are ``hello`` (5 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EdgeCase:
    name: str
    data: bytes
    listener: str = "default"
    note: str = ""


CRLF = b"\r\n"
KB = 1024


def msg(line: bytes, *headers: bytes, body: bytes = b"", eol: bytes = CRLF) -> bytes:
    """A request: the request line, header lines and a blank line (all ended by ``eol``), then ``body``."""
    return b"".join(x + eol for x in (line, *headers)) + eol + body


def get(*headers: bytes, target: bytes = b"/", version: bytes = b"HTTP/1.1", host: bool = True) -> bytes:
    """``GET target version`` with ``Host: x`` first (unless ``host`` is false), then ``headers``."""
    return msg(b"GET " + target + b" " + version, *((b"Host: x",) if host else ()), *headers)


def post(*headers: bytes, body: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return msg(b"POST / " + version, b"Host: x", *headers, body=body)


CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"
TE = b"Transfer-Encoding: chunked"
CL5 = b"Content-Length: 5"


def chunked(body: bytes, *headers: bytes) -> bytes:
    return post(TE, *headers, body=body)


CASES: list[EdgeCase] = [
    # ---------------------------------------------------------------- framing: Content-Length
    EdgeCase("cl-basic", post(CL5, body=b"hello")),
    EdgeCase("cl-zero", post(b"Content-Length: 0")),
    EdgeCase("cl-on-get", get(CL5) + b"hello"),
    EdgeCase("cl-two-same", post(CL5, CL5, body=b"hello")),
    EdgeCase("cl-two-different", post(CL5, b"Content-Length: 6", body=b"hello!")),
    EdgeCase("cl-list-same", post(b"Content-Length: 5, 5", body=b"hello")),
    EdgeCase("cl-list-different", post(b"Content-Length: 5, 6", body=b"hello!")),
    EdgeCase("cl-plus-sign", post(b"Content-Length: +5", body=b"hello")),
    EdgeCase("cl-minus-sign", post(b"Content-Length: -5", body=b"hello")),
    EdgeCase("cl-extra-ows", post(b"Content-Length:   5   ", body=b"hello")),
    EdgeCase("cl-inner-space", post(b"Content-Length: 1 0", body=b"helloworld")),
    EdgeCase("cl-hex", post(b"Content-Length: 0x5", body=b"hello")),
    EdgeCase("cl-leading-zeros", post(b"Content-Length: 0005", body=b"hello")),
    EdgeCase("cl-huge", post(b"Content-Length: 99999999999999999999999", body=b"hello")),
    EdgeCase("cl-empty", post(b"Content-Length: ", body=b"hello")),
    EdgeCase("cl-letters", post(b"Content-Length: five", body=b"hello")),
    EdgeCase("cl-body-short", post(b"Content-Length: 10", body=b"hello"), note="the proxy waits for 5 more bytes"),
    EdgeCase("cl-body-long", post(b"Content-Length: 3", body=b"hello"), note="'lo' starts the next request"),
    # ---------------------------------------------------------------- framing: Transfer-Encoding
    EdgeCase("te-chunked", chunked(CHUNKED)),
    EdgeCase("te-chunked-multi", chunked(b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n")),
    EdgeCase("te-chunked-on-get", get(TE) + CHUNKED),
    EdgeCase("cl-then-te", post(CL5, TE, body=CHUNKED)),
    EdgeCase("te-then-cl", post(TE, CL5, body=CHUNKED)),
    EdgeCase("cl-zero-and-te", post(b"Content-Length: 0", TE, body=CHUNKED)),
    EdgeCase("te-identity", post(b"Transfer-Encoding: identity", CL5, body=b"hello")),
    EdgeCase("te-identity-alone", post(b"Transfer-Encoding: identity", body=b"hello")),
    EdgeCase("te-gzip", post(b"Transfer-Encoding: gzip", body=b"hello")),
    EdgeCase("te-gzip-chunked", post(b"Transfer-Encoding: gzip, chunked", body=CHUNKED)),
    EdgeCase("te-chunked-gzip", post(b"Transfer-Encoding: chunked, gzip", body=CHUNKED)),
    EdgeCase("te-chunked-chunked", post(b"Transfer-Encoding: chunked, chunked", body=CHUNKED)),
    EdgeCase("te-two-headers", post(b"Transfer-Encoding: gzip", TE, body=CHUNKED)),
    EdgeCase("te-xchunked", post(b"Transfer-Encoding: xchunked", body=CHUNKED)),
    EdgeCase("te-chunked-capitalised", post(b"Transfer-Encoding: Chunked", body=CHUNKED)),
    EdgeCase("te-chunked-upper", post(b"Transfer-Encoding: CHUNKED", body=CHUNKED)),
    EdgeCase("te-chunked-trailing-ows", post(b"Transfer-Encoding: chunked  ", body=CHUNKED)),
    EdgeCase("te-empty", post(b"Transfer-Encoding: ", body=b"hello")),
    EdgeCase("te-comma-chunked", post(b"Transfer-Encoding: ,chunked", body=CHUNKED)),
    EdgeCase("te-http10", post(TE, body=CHUNKED, version=b"HTTP/1.0")),
    EdgeCase("te-http10-cl", post(TE, CL5, body=CHUNKED, version=b"HTTP/1.0")),
    # ---------------------------------------------------------------- framing: chunk syntax
    EdgeCase("chunk-extension", chunked(b"5;ext=1\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-extension-quoted", chunked(b'5;a="b c"\r\nhello\r\n0\r\n\r\n')),
    EdgeCase("chunk-extension-bare", chunked(b"5;\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-bad-hex", chunked(b"zz\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-0x-prefix", chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-negative", chunked(b"-5\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-uppercase-hex", chunked(b"A\r\n0123456789\r\n0\r\n\r\n")),
    EdgeCase("chunk-leading-zeros", chunked(b"0005\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-size-too-large", chunked(b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), note="17 hex digits overflow 64 bits"),
    EdgeCase("chunk-size-empty", chunked(b"\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-missing-crlf-after-data", chunked(b"5\r\nhelloX\r\n0\r\n\r\n")),
    EdgeCase("chunk-data-then-next-size", chunked(b"5\r\nhello0\r\n\r\n")),
    EdgeCase("chunk-lf-only", chunked(b"5\nhello\n0\n\n")),
    EdgeCase("chunk-size-lf", chunked(b"5\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-data-lf", chunked(b"5\r\nhello\n0\r\n\r\n")),
    EdgeCase("chunk-last-lf", chunked(b"5\r\nhello\r\n0\r\n\n")),
    EdgeCase("chunk-bare-lf-in-data", chunked(b"5\r\nhe\nlo\r\n0\r\n\r\n")),
    EdgeCase("chunk-bare-cr-in-size", chunked(b"5\rhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-size-space-before", chunked(b" 5\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-size-space-after", chunked(b"5 \r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-size-space-ext", chunked(b"5 ;x=y\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-size-tab-after", chunked(b"5\t\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-trailers", chunked(b"5\r\nhello\r\n0\r\nx-trailer: v\r\n\r\n")),
    EdgeCase("chunk-trailers-two", chunked(b"5\r\nhello\r\n0\r\nx-t1: a\r\nx-t2: b\r\n\r\n")),
    EdgeCase("chunk-trailer-bad-name", chunked(b"5\r\nhello\r\n0\r\nbad name: v\r\n\r\n")),
    EdgeCase("chunk-trailer-no-colon", chunked(b"5\r\nhello\r\n0\r\nnocolon\r\n\r\n")),
    EdgeCase("chunk-trailer-content-length", chunked(b"5\r\nhello\r\n0\r\ncontent-length: 5\r\n\r\n")),
    EdgeCase("chunk-incomplete", chunked(b"5\r\nhello\r\n"), note="no last chunk: the proxy waits"),
    # Balsa's chunk grammar, which Sluice's own decoder follows (sluice/codec/chunked.py)
    EdgeCase("chunk-extension-lone-cr", chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-extension-lone-lf", chunked(b"5;a\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-stray-bytes-after-data", chunked(b"5\r\nhelloXYZ\r\n3\r\nabc\r\n0\r\n\r\n")),
    EdgeCase("chunk-size-16-digits", chunked(b"0000000000000005\r\nhello\r\n0\r\n\r\n")),
    EdgeCase("chunk-last-with-extension", chunked(b"5\r\nhello\r\n0;x=1\r\n\r\n")),
    EdgeCase("chunk-last-size-zeros", chunked(b"5\r\nhello\r\n000\r\n\r\n")),
    EdgeCase("chunk-trailer-lf-end", chunked(b"5\r\nhello\r\n0\r\nx-t: 1\n\n")),
    EdgeCase("chunk-trailer-obs-fold", chunked(b"5\r\nhello\r\n0\r\nx-t: a\r\n b\r\n\r\n")),
    EdgeCase("chunk-trailer-underscore", chunked(b"5\r\nhello\r\n0\r\nx_t: 1\r\n\r\n")),
    EdgeCase("chunk-trailer-nul", chunked(b"5\r\nhello\r\n0\r\nx-t: a\x00b\r\n\r\n")),
    EdgeCase("chunk-many-small", chunked(b"".join(b"1\r\n%c\r\n" % c for c in b"abcdefghij") + b"0\r\n\r\n")),
    EdgeCase("chunk-then-pipelined-get", chunked(b"5\r\nhello\r\n0\r\n\r\n") + b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"),
    EdgeCase("chunk-then-pipelined-garbage", chunked(b"5\r\nhello\r\n0\r\n\r\n") + b"xyz"),
    EdgeCase("cl-then-pipelined-chunked", post(b"Content-Length: 2", body=b"hi") + chunked(b"3;x\r\nabcQ\r\n0\r\n\r\n")),
    # ---------------------------------------------------------------- header syntax
    EdgeCase("hdr-name-space", get(b"Bad Name: v")),
    EdgeCase("hdr-space-before-colon", get(b"x-a : v")),
    EdgeCase("hdr-tab-before-colon", get(b"x-a\t: v")),
    EdgeCase("hdr-name-at", get(b"x@y: v")),
    EdgeCase("hdr-name-paren", get(b"x(y): v")),
    EdgeCase("hdr-name-quote", get(b'x"y: v')),
    EdgeCase("hdr-name-brace", get(b"x{y}: v")),
    EdgeCase("hdr-name-slash", get(b"x/y: v")),
    EdgeCase("hdr-name-token-specials", get(b"x!#$%&'*+.^`|~: v"), note="all legal tchars"),
    EdgeCase("hdr-name-non-ascii", get("x-é: v".encode())),
    EdgeCase("hdr-name-empty", get(b": v")),
    EdgeCase("hdr-no-colon", get(b"x-a v")),
    EdgeCase("hdr-value-colon", get(b"x-a: b: c")),
    EdgeCase("hdr-name-uppercase", get(b"X-Custom-Header: MiXeD")),
    EdgeCase("hdr-value-nul", get(b"x-a: a\x00b")),
    EdgeCase("hdr-value-ctl", get(b"x-a: a\x01b")),
    EdgeCase("hdr-value-esc", get(b"x-a: a\x1bb")),
    EdgeCase("hdr-value-del", get(b"x-a: a\x7fb")),
    EdgeCase("hdr-value-tab", get(b"x-a: a\tb")),
    EdgeCase("hdr-value-bare-cr", get(b"x-a: a\rb")),
    EdgeCase("hdr-value-bare-lf", get(b"x-a: a\nx-b: c")),
    EdgeCase("hdr-value-utf8", get("x-a: café".encode())),
    EdgeCase("hdr-value-latin1", get(b"x-a: caf\xe9")),
    EdgeCase("hdr-value-empty", get(b"x-a:")),
    EdgeCase("hdr-value-ows", get(b"x-a: \t v \t ")),
    EdgeCase("hdr-obs-fold", get(b"x-a: a", b" b")),
    EdgeCase("hdr-obs-fold-tab", get(b"x-a: a", b"\tb")),
    EdgeCase("hdr-obs-fold-empty-value", get(b"x-a:", b" b")),
    EdgeCase("hdr-leading-ws-first-header", msg(b"GET / HTTP/1.1", b" x-a: v", b"Host: x")),
    EdgeCase("hdr-duplicate", get(b"x-a: 1", b"x-a: 2")),
    EdgeCase("hdr-lf-only", get(b"x-a: v").replace(CRLF, b"\n")),
    EdgeCase("hdr-mixed-eol", b"GET / HTTP/1.1\r\nHost: x\nx-a: v\r\n\r\n"),
    EdgeCase("hdr-very-long-value", get(b"x-long: " + b"v" * 16 * KB)),
    EdgeCase("hdr-underscore", get(b"x_under: 1"), note="headers_with_underscores_action default ALLOW"),
    EdgeCase("hdr-underscore-leading", get(b"_x: 1")),
    # ---------------------------------------------------------------- request line: methods
    EdgeCase("method-lowercase", msg(b"get / HTTP/1.1", b"Host: x")),
    EdgeCase("method-unknown-token", msg(b"FOO / HTTP/1.1", b"Host: x")),
    EdgeCase("method-webdav", msg(b"PROPFIND / HTTP/1.1", b"Host: x")),
    EdgeCase("method-invalid-chars", msg(b"G(T / HTTP/1.1", b"Host: x")),
    EdgeCase("method-non-ascii", msg("GÉT / HTTP/1.1".encode(), b"Host: x")),
    EdgeCase("method-delete-body", msg(b"DELETE / HTTP/1.1", b"Host: x", CL5, body=b"hello")),
    EdgeCase("method-options", msg(b"OPTIONS / HTTP/1.1", b"Host: x")),
    EdgeCase("method-options-asterisk", msg(b"OPTIONS * HTTP/1.1", b"Host: x")),
    # ---------------------------------------------------------------- request line: targets
    EdgeCase("target-asterisk-get", get(target=b"*")),
    EdgeCase("target-absolute", get(target=b"http://x/path?q=1")),
    EdgeCase("target-absolute-https", get(target=b"https://x/path")),
    EdgeCase("target-absolute-no-path", get(target=b"http://x")),
    EdgeCase("target-absolute-port", get(target=b"http://x:8080/p")),
    EdgeCase("target-absolute-userinfo", get(target=b"http://u:p@x/p")),
    EdgeCase("target-absolute-bad-scheme", get(target=b"ftp://x/p")),
    EdgeCase("target-authority-get", get(target=b"x:80")),
    EdgeCase("target-no-slash", get(target=b"path")),
    EdgeCase("target-fragment", get(target=b"/a#frag")),
    EdgeCase("target-query", get(target=b"/a?b=c&d=%20e")),
    EdgeCase("target-space", msg(b"GET /a b HTTP/1.1", b"Host: x")),
    EdgeCase("target-non-ascii", get(target="/café".encode())),
    EdgeCase("target-ctl", get(target=b"/a\x01b")),
    EdgeCase("target-percent", get(target=b"/a%20b")),
    EdgeCase("target-percent-bad", get(target=b"/a%zzb")),
    EdgeCase("target-percent-slash", get(target=b"/a%2Fb")),
    EdgeCase("target-dotdot", get(target=b"/a/../b")),
    EdgeCase("target-dot", get(target=b"/./a/.")),
    EdgeCase("target-dotdot-above-root", get(target=b"/../../a")),
    EdgeCase("target-double-slash", get(target=b"//a//b")),
    EdgeCase("target-backslash", get(target=b"/a\\b")),
    EdgeCase("target-empty", msg(b"GET  HTTP/1.1", b"Host: x")),
    # ---------------------------------------------------------------- request line: versions, spacing
    EdgeCase("version-1.0", get(version=b"HTTP/1.0", host=False)),
    EdgeCase("version-1.0-host", get(version=b"HTTP/1.0")),
    EdgeCase("version-1.0-keep-alive", get(b"Connection: keep-alive", version=b"HTTP/1.0")),
    EdgeCase("version-2.0", get(version=b"HTTP/2.0")),
    EdgeCase("version-1.2", get(version=b"HTTP/1.2")),
    EdgeCase("version-9.9", get(version=b"HTTP/9.9")),
    EdgeCase("version-lowercase", get(version=b"http/1.1")),
    EdgeCase("version-garbage", get(version=b"HTTP/1.x")),
    EdgeCase("version-missing", b"GET /\r\n\r\n", note="HTTP/0.9"),
    EdgeCase("version-missing-host", b"GET /\r\nHost: x\r\n\r\n"),
    EdgeCase("line-extra-spaces", msg(b"GET  /  HTTP/1.1", b"Host: x")),
    EdgeCase("line-trailing-space", msg(b"GET / HTTP/1.1 ", b"Host: x")),
    EdgeCase("line-tabs", msg(b"GET\t/\tHTTP/1.1", b"Host: x")),
    EdgeCase("line-lf-only", b"GET / HTTP/1.1\nHost: x\n\n"),
    EdgeCase("leading-crlf", CRLF + get()),
    EdgeCase("leading-crlf-twice", CRLF + CRLF + get()),
    EdgeCase("leading-lf", b"\n" + get()),
    EdgeCase("leading-space", b" " + get()),
    EdgeCase("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    # ---------------------------------------------------------------- Host and authority
    EdgeCase("host-missing", get(host=False)),
    EdgeCase("host-value-space", msg(b"GET / HTTP/1.1", b"Host: a b")),
    EdgeCase("host-slash", msg(b"GET / HTTP/1.1", b"Host: a/b")),
    EdgeCase("host-at", msg(b"GET / HTTP/1.1", b"Host: a@b")),
    EdgeCase("host-port", msg(b"GET / HTTP/1.1", b"Host: x:8080")),
    EdgeCase("host-bad-port", msg(b"GET / HTTP/1.1", b"Host: x:abc")),
    EdgeCase("host-port-too-big", msg(b"GET / HTTP/1.1", b"Host: x:99999")),
    EdgeCase("host-empty-port", msg(b"GET / HTTP/1.1", b"Host: x:")),
    EdgeCase("host-two-different", msg(b"GET / HTTP/1.1", b"Host: a", b"Host: b")),
    EdgeCase("host-two-same", msg(b"GET / HTTP/1.1", b"Host: a", b"Host: a")),
    EdgeCase("host-empty", msg(b"GET / HTTP/1.1", b"Host: ")),
    EdgeCase("host-ipv6", msg(b"GET / HTTP/1.1", b"Host: [::1]:8080")),
    EdgeCase("host-uppercase", msg(b"GET / HTTP/1.1", b"Host: X.Example.COM")),
    EdgeCase("host-trailing-dot", msg(b"GET / HTTP/1.1", b"Host: x.example.")),
    EdgeCase("host-underscore", msg(b"GET / HTTP/1.1", b"Host: a_b")),
    EdgeCase("host-absolute-different", msg(b"GET http://a/p HTTP/1.1", b"Host: b")),
    EdgeCase("host-absolute-no-host", msg(b"GET http://a/p HTTP/1.1")),
    EdgeCase("host-absolute-http10", msg(b"GET http://a/p HTTP/1.0")),
    # ---------------------------------------------------------------- hop-by-hop, Connection-named headers
    EdgeCase("conn-named-header", get(b"Connection: x-secret", b"x-secret: 1")),
    EdgeCase("conn-named-two", get(b"Connection: x-a, x-b", b"x-a: 1", b"x-b: 2", b"x-c: 3")),
    EdgeCase("conn-close", get(b"Connection: close")),
    EdgeCase("conn-close-uppercase", get(b"Connection: CLOSE")),
    EdgeCase("conn-close-and-named", get(b"Connection: close, x-a", b"x-a: 1")),
    EdgeCase("conn-keep-alive", get(b"Connection: keep-alive")),
    EdgeCase("keep-alive-header", get(b"Connection: keep-alive", b"Keep-Alive: timeout=5")),
    EdgeCase("proxy-connection", get(b"Proxy-Connection: keep-alive")),
    EdgeCase("te-trailers", get(b"TE: trailers")),
    EdgeCase("te-gzip-header", get(b"TE: gzip")),
    EdgeCase("te-trailers-and-conn-te", get(b"Connection: te", b"TE: trailers")),
    EdgeCase("upgrade-without-connection", get(b"Upgrade: foo")),
    EdgeCase("conn-names-content-length", post(b"Connection: content-length", CL5, body=b"hello")),
    EdgeCase("conn-two-headers", get(b"Connection: x-a", b"Connection: close", b"x-a: 1")),
    # ---------------------------------------------------------------- Expect
    EdgeCase("expect-100-with-body", post(b"Expect: 100-continue", CL5, body=b"hello")),
    EdgeCase("expect-100-no-body", post(b"Expect: 100-continue", CL5), note="the proxy waits for the body"),
    EdgeCase("expect-100-get", get(b"Expect: 100-continue")),
    EdgeCase("expect-100-capitalised", post(b"Expect: 100-Continue", CL5, body=b"hello")),
    EdgeCase("expect-100-http10", post(b"Expect: 100-continue", CL5, body=b"hello", version=b"HTTP/1.0")),
    EdgeCase("expect-foo", post(b"Expect: foo", CL5, body=b"hello")),
    # ---------------------------------------------------------------- CONNECT and upgrades
    EdgeCase("connect-host-port", msg(b"CONNECT x:443 HTTP/1.1", b"Host: x:443")),
    EdgeCase("connect-no-port", msg(b"CONNECT x HTTP/1.1", b"Host: x")),
    EdgeCase("connect-origin-form", msg(b"CONNECT / HTTP/1.1", b"Host: x")),
    EdgeCase("connect-http10", msg(b"CONNECT x:443 HTTP/1.0")),
    EdgeCase(
        "upgrade-websocket",
        get(b"Connection: Upgrade", b"Upgrade: websocket", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13"),
    ),
    EdgeCase("upgrade-h2c", get(b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA")),
    EdgeCase("upgrade-unknown", get(b"Connection: upgrade", b"Upgrade: foo/1")),
    EdgeCase("upgrade-websocket-post", post(b"Connection: Upgrade", b"Upgrade: websocket", CL5, body=b"hello")),
    # ---------------------------------------------------------------- pipelining
    EdgeCase("pipe-two-get", get(target=b"/1") + get(target=b"/2")),
    EdgeCase("pipe-three-get", get(target=b"/1") + get(target=b"/2") + get(target=b"/3")),
    EdgeCase("pipe-good-then-bad", get(target=b"/1") + msg(b"GET /2 HTTP/1.1", b"Host: x", b"Bad Name: v")),
    EdgeCase("pipe-bad-then-good", msg(b"GET /1 HTTP/1.1", b"Host: x", b"Bad Name: v") + get(target=b"/2")),
    EdgeCase("pipe-good-then-garbage", get(target=b"/1") + b"\x00\x01\x02garbage\r\n\r\n"),
    EdgeCase("pipe-cl-body-then-get", post(CL5, body=b"hello") + get(target=b"/2")),
    EdgeCase("pipe-chunked-then-get", chunked(CHUNKED) + get(target=b"/2")),
    EdgeCase("pipe-close-then-get", get(b"Connection: close", target=b"/1") + get(target=b"/2")),
    EdgeCase("pipe-get-then-http10", get(target=b"/1") + get(target=b"/2", version=b"HTTP/1.0")),
    EdgeCase("pipe-smuggle-cl-te", post(CL5, TE, body=b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")),
    EdgeCase(
        "pipe-smuggle-te-identity", post(b"Transfer-Encoding: chunked, identity", body=b"0\r\n\r\nGET /s HTTP/1.1\r\nHost: x\r\n\r\n")
    ),
    # ---------------------------------------------------------------- limits (defaults: 60 KiB of headers, 100 headers)
    EdgeCase("limit-header-59k", get(b"x-big: " + b"a" * 59 * KB)),
    EdgeCase("limit-header-61k", get(b"x-big: " + b"a" * 61 * KB)),
    EdgeCase("limit-100-headers", get(*(b"x-h%d: v" % i for i in range(99)))),
    EdgeCase("limit-101-headers", get(*(b"x-h%d: v" % i for i in range(100)))),
    EdgeCase("limit-url-59k", get(target=b"/" + b"p" * 59 * KB)),
    EdgeCase("limit-url-61k", get(target=b"/" + b"p" * 61 * KB)),
    EdgeCase("limit-header-name-16k", get(b"x-" + b"n" * 16 * KB + b": v")),
]
