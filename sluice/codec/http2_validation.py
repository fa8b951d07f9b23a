"""oghttp2's request header rules (``quiche/http2/adapter/header_validator.cc``) and Envoy's
``saveHeader`` limits, for :mod:`sluice.codec.http2`: one pass per header list, compiled
patterns, no per-byte Python loop."""

from __future__ import annotations

import re
from collections.abc import Iterable

import h2.exceptions
from hpack import NeverIndexedHeaderTuple

from sluice.http.headers import RequestHeaders

_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
# oghttp2's GetInvalidHttp2HeaderSet plus "upgrade" (RFC 9113 8.2.2).
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_NAME = re.compile(rb"[!#$%&'*+\-.0-9^_`a-z|~]+")  # oghttp2 kHttp2HeaderNameAllowedChars
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # outside tab, SP, VCHAR, obs-text
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a method
_AUTHORITY = re.compile(rb"[A-Za-z0-9\-._~%!$&'()\[\]*+,;=:]*")  # oghttp2 kValidAuthorityChars


class Malformed(Exception):
    """A header list oghttp2 calls invalid (HEADER_FIELD_INVALID / HTTP_MESSAGING)."""


class Overflow(Exception):
    """Over max_headers_kb (``count`` false) or max_headers_count (``count`` true)."""

    def __init__(self, count: bool) -> None:
        super().__init__("header count" if count else "header bytes")
        self.count = count


def validate(
    headers: Iterable[tuple[bytes, bytes]], max_bytes: int, max_count: int, allow_connect: bool
) -> tuple[dict[bytes, bytes], list[list[str]]]:
    """Pseudo-headers and entries of a request (or trailer) header list, checked as oghttp2 and
    Envoy's ``saveHeader`` check them. Cookie crumbs are joined with "; " and appended last, as
    Envoy's ``reconstituteCrumbledCookies`` does at the end of the block (and, as there, they
    count toward neither limit). ``host`` after ``:authority`` is discarded
    (``http2_discard_host_header``); alone, it is the authority."""
    pseudo: dict[bytes, bytes] = {}
    entries: list[list[str]] = []
    cookies: list[bytes] = []
    size = count = 0
    for name, value in headers:
        if _BAD_VALUE.search(value) is not None:
            raise Malformed
        if name[:1] == b":":
            if entries or cookies or name not in _PSEUDO or name in pseudo:
                raise Malformed  # after a regular header, unknown, or repeated
            pseudo[name] = value
        elif _NAME.fullmatch(name) is None or name in _CONNECTION_SPECIFIC:
            raise Malformed
        elif name == b"cookie":
            cookies.append(value)
            continue
        elif name == b"host":
            if b":authority" in pseudo:
                continue
            pseudo[b":authority"] = value
        elif name == b"te" and value != b"trailers":
            raise Malformed
        else:
            entries.append([name.decode("latin-1"), value.decode("latin-1")])
        size += len(name) + len(value)
        count += 1
    if size > max_bytes:
        raise Overflow(False)
    if count > max_count:
        raise Overflow(True)
    if cookies:
        entries.append(["cookie", b"; ".join(cookies).decode("latin-1")])
    if b":protocol" in pseudo and not allow_connect:
        raise Malformed
    return pseudo, entries


def request(pseudo: dict[bytes, bytes], entries: list[list[str]]) -> RequestHeaders:
    """oghttp2's ValidateRequestHeaders: which pseudo-headers a request must (and must not) have."""
    method = pseudo.get(b":method")
    authority = pseudo.get(b":authority")
    if method is None or _TOKEN.fullmatch(method) is None:
        raise Malformed
    if authority is not None and _AUTHORITY.fullmatch(authority) is None:
        raise Malformed
    path = pseudo.get(b":path")
    scheme = pseudo.get(b":scheme")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        # RFC 9113 8.5: :method and a non-empty :authority only. Sluice's CONNECT shape is
        # http1's: no path, the target as authority.
        if not authority or path is not None or scheme is not None:
            raise Malformed
        return RequestHeaders("CONNECT", "", authority.decode("latin-1"), entries, "http", "2")
    if authority is None or path is None or scheme is None:
        raise Malformed  # oghttp2 requires :authority (or host) too
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
        raise Malformed
    protocol = pseudo.get(b":protocol")
    m = method.decode("latin-1")
    if protocol is not None:
        if m != "CONNECT":
            raise Malformed
        # Extended CONNECT becomes an HTTP/1 upgrade (Envoy's transformUpgradeRequestFromH2toH1).
        m = "GET"
        entries.append(["upgrade", protocol.decode("latin-1")])
        entries.append(["connection", "upgrade"])
    return RequestHeaders(m, path.decode("latin-1"), authority.decode("latin-1"), entries, scheme.decode("latin-1"), "2")


class KnownRequests:
    """:func:`validate` then :func:`request`, remembered per header list: a client sends the same
    request headers again and again (h2load, a browser's asset fetches, a gRPC channel), and the
    checks are a pure function of the list and the codec's limits. Only accepted lists are
    remembered (a refused one is checked each time), of at most :data:`MAX_KNOWN_BYTES` (names and
    values), :data:`MAX_KNOWN` of them per connection, then forgotten at once: a few KiB per
    connection at most. Each call returns a fresh :class:`RequestHeaders` (the connection manager
    mutates it)."""

    __slots__ = ("_known", "max_bytes", "max_count", "allow_connect")

    MAX_KNOWN = 16
    MAX_KNOWN_BYTES = 1024

    def __init__(self, max_bytes: int, max_count: int, allow_connect: bool) -> None:
        self._known: dict[tuple[tuple[bytes, bytes], ...], tuple[str, str, str | None, tuple[tuple[str, str], ...], str]] = {}
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.allow_connect = allow_connect

    def parse(self, headers: Iterable[tuple[bytes, bytes]]) -> RequestHeaders:
        """The request, or :class:`Malformed` / :class:`Overflow` as :func:`validate` and
        :func:`request` raise them."""
        key = tuple(headers)
        hit = self._known.get(key)
        if hit is None:
            h = request(*validate(key, self.max_bytes, self.max_count, self.allow_connect))
            if sum(len(n) + len(v) for n, v in key) > self.MAX_KNOWN_BYTES:
                return h
            known = self._known
            if len(known) >= self.MAX_KNOWN:
                known.clear()
            known[key] = (h.method, h.path, h.authority, tuple((k, v) for k, v in h.entries), h.scheme)
            return h
        return RequestHeaders(hit[0], hit[1], hit[2], [[k, v] for k, v in hit[3]], hit[4], "2")


# What h2's normalize_outbound_headers / validate_outbound_headers do to a response (or trailer)
# block, in one pass; the codec turns those h2 options off (each is a chain of generators, ~13 µs
# per response in bench/h2_hotpath.py).
_OUT_CONNECTION = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_OUT_SECURE = frozenset({b"authorization", b"proxy-authorization"})


def outbound(entries: Iterable[list[str]], block: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``entries`` appended to ``block`` as h2 would send them: names lowercased, names and values
    without surrounding whitespace, connection-specific headers dropped, ``authorization``,
    ``proxy-authorization`` and a ``cookie`` under 20 bytes never indexed (h2's
    ``_secure_headers``); a ``te`` other than ``trailers`` or a pseudo-header is refused with h2's
    ``ProtocolError``, as its ``validate_outbound_headers`` refuses them. (Names are lowercase
    tokens by :class:`~sluice.http.headers.HeaderMap`'s contract; they are lowercased and
    stripped all the same, as h2 did.)"""
    append = block.append
    for k, v in entries:
        name = k.encode("latin-1").lower().strip()
        if name in _OUT_CONNECTION:
            continue
        value = v.encode("latin-1").strip()
        if name in _OUT_SECURE or (name == b"cookie" and len(value) < 20):
            append(NeverIndexedHeaderTuple(name, value))
            continue
        if name[:1] == b":" or (name == b"te" and value.lower() != b"trailers"):
            raise h2.exceptions.ProtocolError(f"invalid outbound header {name!r}")
        append((name, value))
    return block
