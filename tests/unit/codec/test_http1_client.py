"""The upstream response codec (sluice/codec/http1_client.py), byte by byte where it matters."""

from __future__ import annotations

import pytest

from sluice.codec.http1_client import PROTOCOL_ERROR, ClientCodec


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def on_informational(self, status: int, headers: list[list[str]]) -> None:
        self.events.append(("1xx", status))

    def on_headers(self, status: int, headers: list[list[str]], end_stream: bool) -> None:
        self.events.append(("headers", status, [tuple(h) for h in headers], end_stream))

    def on_body(self, data: bytes, end_stream: bool) -> None:
        self.events.append(("body", data, end_stream))


def codec(head_request: bool = False) -> tuple[ClientCodec, Recorder]:
    rec = Recorder()
    c = ClientCodec(rec)
    c.expect(head_request)
    return c, rec


def test_content_length_body_in_pieces() -> None:
    c, rec = codec()
    for piece in (b"HTTP/1.1 200 OK\r\ncontent-le", b"ngth: 4\r\nx-a:  b \r\n\r\nab", b"cd"):
        assert c.feed(piece) is None
    assert rec.events == [("headers", 200, [("content-length", "4"), ("x-a", "b")], False), ("body", b"ab", False), ("body", b"cd", True)]
    assert c.idle and c.keep_alive


def test_chunked_body_with_extension_and_trailers() -> None:
    c, rec = codec()
    assert c.feed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;x=1\r\nok\r\n0\r\nx-t: v\r\n\r\n") is None
    assert rec.events[1:] == [("body", b"ok", False), ("body", b"", True)]
    assert c.idle


def test_lenient_where_envoy_is() -> None:
    c, rec = codec()
    assert c.feed(b"HTTP/1.1 2000\ncontent-length: 0\nx-a: a\rb\nx-f: one\r\n  two\r\n\r\n") is None
    assert rec.events == [("headers", 2000, [("content-length", "0"), ("x-a", "ab"), ("x-f", "one two")], True)]


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"http/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-a : b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-a: a\x00b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-a: a\x7fb\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\ncontent-length: 1\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nab",  # a byte after the response
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(101)) + b"\r\n",
    ],
)
def test_refused(data: bytes) -> None:
    c, _ = codec()
    assert c.feed(data) == PROTOCOL_ERROR
    assert c.feed(b"more") == PROTOCOL_ERROR  # nothing more is parsed


def test_head_limit_counts_an_incomplete_head() -> None:
    rec = Recorder()
    c = ClientCodec(rec, max_headers_bytes=100)
    c.expect(False)
    assert c.feed(b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 100) == PROTOCOL_ERROR


def test_interim_then_final_and_head_request() -> None:
    c, rec = codec(head_request=True)
    assert c.feed(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n") is None
    assert rec.events == [("1xx", 103), ("headers", 200, [("content-length", "9")], True)]
    assert c.feed(b"x") == PROTOCOL_ERROR  # a HEAD response's body


def test_eof_rules() -> None:
    c, rec = codec()
    assert c.eof() is None  # nothing arrived: the caller reports a termination
    c, rec = codec()
    c.feed(b"HTTP/1.0 200 OK\r\n\r\nbody")
    assert c.until_close and c.close_notify and not c.keep_alive
    assert c.eof() is None and rec.events[-1] == ("body", b"", True)
    c, _ = codec()
    c.feed(b"HTTP/1.1 200 OK\r\ncontent-len")
    assert c.eof() == PROTOCOL_ERROR
    c, _ = codec()
    c.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab")
    assert c.eof() == PROTOCOL_ERROR


def test_keep_alive_rules() -> None:
    for head, keep, notify in [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", True, False),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", False, True),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n", True, False),
        (b"HTTP/1.2 200 OK\r\ncontent-length: 0\r\n\r\n", False, True),
    ]:
        c, _ = codec()
        assert c.feed(head) is None
        assert (c.keep_alive, c.close_notify) == (keep, notify), head


def test_101_loses_its_upgrade_header() -> None:
    c, rec = codec()
    assert c.feed(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: foo\r\nconnection: upgrade\r\n\r\n") is None
    assert rec.events == [("headers", 101, [("connection", "upgrade")], True)]


def test_an_allowed_upgrade_s_101_switches_to_raw_bytes() -> None:
    rec = Recorder()
    c = ClientCodec(rec)
    c.expect(False, upgrade=True)
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    assert c.feed(head + b"\x81\x02hi") is None
    assert c.feed(b"HTTP/1.1 200 OK\r\n\r\n") is None  # (just bytes of the new protocol)
    assert rec.events == [
        ("headers", 101, [("upgrade", "websocket"), ("connection", "Upgrade")], False),
        ("body", b"\x81\x02hi", False),
        ("body", b"HTTP/1.1 200 OK\r\n\r\n", False),
    ]
    assert not c.keep_alive and not c.idle and not c.until_close
    assert c.eof() is None  # (the tunnel's end: a termination, not a protocol error)


def test_a_101_that_does_not_switch_ends_without_its_upgrade_header() -> None:
    for upgrade, head in ((False, b"Upgrade: websocket\r\nConnection: Upgrade\r\n"), (True, b"Upgrade: websocket\r\n")):
        rec = Recorder()
        c = ClientCodec(rec)
        c.expect(False, upgrade=upgrade)
        assert c.feed(b"HTTP/1.1 101 Switching Protocols\r\n" + head + b"\r\n") is None
        assert rec.events[0][0] == "headers" and rec.events[0][3] is True
        assert ("upgrade", "websocket") not in rec.events[0][2]
        assert c.idle
