"""sluice.codec.chunked (Balsa's chunked-body grammar) and the server codec's take-over of
chunked bodies: the same events however the bytes are split into reads."""

from __future__ import annotations

import random

import pytest

from sluice.codec import http1
from sluice.codec.chunked import ChunkedDecoder, ChunkError, head_end

from .test_http1_server import Conn


def decode(data: bytes, max_trailers: int = 1024) -> tuple[bytes, int, bytes]:
    """(body, index past the end, trailer block); raises ChunkError."""
    dec = ChunkedDecoder(max_trailers)
    body: list[bytes] = []
    end = dec.feed(data, 0, body)
    return b"".join(body), end, bytes(dec.trailers)


@pytest.mark.parametrize(
    ("data", "body", "trailers"),
    [
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello", b""),
        (b"5;\r\nhello\r\n0\r\n\r\n", b"hello", b""),  # an empty extension (llhttp refuses it)
        (b"5 ; a=b\r\nhello\r\n0\r\n\r\n", b"hello", b""),
        (b"5\t\r\nhello\r\n0\r\n\r\n", b"hello", b""),
        (b"5\r\nhelloX\r\n0\r\n\r\n", b"hello", b""),  # stray bytes before the chunk's LF are skipped
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", b""),
        (b"00005\r\nhello\r\n0\r\n\r\n", b"hello", b""),
        (b"5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n", b"hello", b"x-t: 1\r\n\r\n"),
        (b"5\r\nhello\r\n0\r\nx-t: 1\n\n", b"hello", b"x-t: 1\n\n"),
        (b"5\r\nhello\r\n0\r\n\n", b"hello", b""),  # LF CR LF after the size line's LF
    ],
)
def test_what_balsa_takes(data: bytes, body: bytes, trailers: bytes) -> None:
    assert decode(data + b"NEXT") == (body, len(data), trailers)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\r\nhello", "HPE_INVALID_CHUNK_SIZE"),  # no digit
        (b"5x\r\nhello", "HPE_INVALID_CHUNK_SIZE"),
        (b"-5\r\n", "HPE_INVALID_CHUNK_SIZE"),
        (b"0x5\r\n", "HPE_INVALID_CHUNK_SIZE"),
        (b"1" * 17 + b"\r\n", "CHUNK_LENGTH_OVERFLOW"),
        (b"5\nhello\r\n", "INVALID_CHUNK_EXTENSION"),  # a lone LF ends the size line
        (b"5;a\rb\r\nhello\r\n", "INVALID_CHUNK_EXTENSION"),  # a lone CR in the extension
    ],
)
def test_what_balsa_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(ChunkError) as info:
        decode(data)
    assert info.value.reason == reason and not info.value.in_trailers


def test_trailers_are_bounded_by_the_header_limit() -> None:
    with pytest.raises(ChunkError) as info:
        decode(b"0\r\nx: " + b"v" * 100 + b"\r\n\r\n", max_trailers=50)
    assert info.value.reason == "trailers size exceeds limit" and info.value.in_trailers


def test_sixteen_hex_digits_fit_and_seventeen_overflow() -> None:
    dec = ChunkedDecoder(1024)
    assert dec.feed(b"ffffffffffffffff\r\nab", 0, []) == -1 and dec.size == 2**64 - 1 - 2


@pytest.mark.parametrize(
    "data",
    [b"5\r\nhello\r\n0\r\n\r\n", b"3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nx-a: 1\r\nx-b: 2\r\n\r\n", b"1\r\naX\r\n0\r\n\r\n"],
)
def test_every_split_gives_the_same_result(data: bytes) -> None:
    whole = decode(data)
    for cut in range(1, len(data)):
        dec = ChunkedDecoder(1024)
        body: list[bytes] = []
        assert dec.feed(data[:cut], 0, body) == -1
        end = dec.feed(data[cut:], 0, body)
        assert (b"".join(body), cut + end, bytes(dec.trailers)) == whole, cut


def test_a_lone_cr_at_the_end_of_a_read_is_refused_when_the_next_byte_is_no_lf() -> None:
    dec = ChunkedDecoder(1024)
    assert dec.feed(b"5;a\r", 0, []) == -1
    with pytest.raises(ChunkError):
        dec.feed(b"b\r\nhello", 0, [])
    dec = ChunkedDecoder(1024)
    assert dec.feed(b"5;a\r", 0, []) == -1
    assert dec.feed(b"\nhello\r\n0\r\n\r\n", 0, []) == 13


def test_head_end() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    assert head_end(head + b"body", 0) == len(head)
    assert head_end(b"\r\n\r\n" + head, 0) == 4 + len(head)  # line ends before a request are skipped
    assert head_end(b"GET / HTTP/1.1\nHost: h\n\nbody", 0) == 24
    assert head_end(head[:10], 0) == -1
    # a head that began in an earlier read: its blank line may start there
    assert head_end(b"\r\nbody", 0, tail=b"h\r\n"[-2:]) == 2
    assert head_end(b"\nbody", 0, tail=b"\r\n\r"[-2:]) == 1
    assert head_end(b"st: h\r\n\r\nbody", 0, tail=b"Ho") == 9


# -- the codec: chunked bodies taken over, whatever the reads ---------------------------------
PIPELINE = (
    b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n3\r\nabcX\r\n0\r\nx-t: 1\r\n\r\n"
    b"\r\nGET /c HTTP/1.1\r\nHost: h\r\n\r\n"
    b"POST /d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\n"
    b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok"
)
EXPECTED = [("/a", b"abc"), ("/b", b"helloabc"), ("/c", b""), ("/d", b"hi"), ("/e", b"ok")]


def _run(reads: list[bytes]) -> list[tuple[str, bytes]]:
    conn = Conn()
    codec = http1.ServerCodec(conn, 60 * 1024, 100)
    for r in reads:
        assert codec.feed(r) is None
    out = []
    for s in conn.streams:
        assert s.end == (not s.body) and (not s.body or s.body[-1][1]), s.headers.path
        out.append((s.headers.path, b"".join(b for b, _ in s.body)))
    return out


def test_pipelined_requests_in_one_read() -> None:
    assert _run([PIPELINE]) == EXPECTED


def test_pipelined_requests_split_at_every_byte() -> None:
    for cut in range(1, len(PIPELINE)):
        assert _run([PIPELINE[:cut], PIPELINE[cut:]]) == EXPECTED, cut


def test_pipelined_requests_in_random_reads() -> None:
    rng = random.Random(9)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(PIPELINE)), rng.randint(2, 12)))
        reads = [PIPELINE[a:b] for a, b in zip([0, *cuts], [*cuts, len(PIPELINE)], strict=True)]
        assert _run(reads) == EXPECTED, cuts


def test_a_refused_chunk_passes_no_body_a_refused_trailer_passes_it_first() -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    conn = Conn()
    err = http1.ServerCodec(conn, 60 * 1024, 100).feed(head + b"5\r\nhello\r\nzz\r\n")
    assert err is not None and err.status == 400 and conn.streams[0].body == []
    conn = Conn()
    err = http1.ServerCodec(conn, 60 * 1024, 100).feed(head + b"5\r\nhello\r\n0\r\nbad name: v\r\n\r\n")
    assert err is not None and err.status == 400 and conn.streams[0].body == [(b"hello", False)]


def test_trailers_count_against_the_header_limits_only_with_enable_trailers() -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    trailers = b"0\r\n" + b"".join(b"t%d: v\r\n" % i for i in range(5)) + b"\r\n"
    on = http1.Http1Settings(enable_trailers=True)
    # their own budget: 5 trailers fit a limit of 5 the headers (2) did not use up
    assert http1.ServerCodec(Conn(), 60 * 1024, 5, on).feed(head + trailers) is None
    assert http1.ServerCodec(Conn(), 60 * 1024, 4, on).feed(head + trailers) == http1.HEADERS_TOO_LARGE
    conn = Conn()
    assert http1.ServerCodec(conn, 60 * 1024, 4).feed(head + trailers) is None
    assert conn.streams[0].body == [(b"", True)]
    underscore = head + b"0\r\nx_t: 1\r\n\r\n"
    reject = http1.Http1Settings(headers_with_underscores="REJECT_REQUEST")
    assert http1.ServerCodec(Conn(), 60 * 1024, 100, reject).feed(underscore) is None
    reject_on = http1.Http1Settings(headers_with_underscores="REJECT_REQUEST", enable_trailers=True)
    assert http1.ServerCodec(Conn(), 60 * 1024, 100, reject_on).feed(underscore) == http1.UNDERSCORE_IN_HEADER


def test_a_pipelined_request_line_refused_before_it_ends_waits_for_more_bytes() -> None:
    conn = Conn()
    codec = http1.ServerCodec(conn, 60 * 1024, 100)
    assert codec.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nhello") is None
    assert [s.body for s in conn.streams] == [[(b"hel", True)]]
    err = codec.feed(b" / HTTP/1.1\r\n\r\n")
    assert err is not None and err.status == 400
    # a refused first request, or a complete refused line, is answered at once
    assert http1.ServerCodec(Conn(), 60 * 1024, 100).feed(b"lo") is not None
    codec = http1.ServerCodec(Conn(), 60 * 1024, 100)
    assert codec.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nlo / HTTP/1.1\r\n") is not None


def test_garbage_after_a_chunked_request_in_the_same_read_waits_too() -> None:
    codec = http1.ServerCodec(Conn(), 60 * 1024, 100)
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert codec.feed(head + b"0\r\n\r\nxyz") is None
    assert codec.feed(b"!") is not None


def test_a_folded_trailer_is_taken_as_envoy_takes_it() -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    conn = Conn()
    assert http1.ServerCodec(conn, 60 * 1024, 100).feed(head + b"0\r\nx-t: a\r\n b\r\n\r\n") is None
    assert conn.streams[0].body == [(b"", True)]
