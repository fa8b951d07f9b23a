"""HTTP/1 framing decisions, as Envoy's codec makes them."""

from __future__ import annotations

from sluice.http import http1
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders


def test_headers_only_response_gets_content_length_zero() -> None:
    data, chunked = http1.encode_response_head(ResponseHeaders(404, [["date", "d"], ["server", "envoy"]]), True, False)
    assert data == b"HTTP/1.1 404 Not Found\r\ndate: d\r\nserver: envoy\r\ncontent-length: 0\r\n\r\n"
    assert not chunked


def test_head_response_without_length_is_marked_chunked_but_has_no_body() -> None:
    data, chunked = http1.encode_response_head(ResponseHeaders(404, []), True, True)
    assert data.endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert not chunked


def test_204_gets_no_framing_header() -> None:
    data, chunked = http1.encode_response_head(ResponseHeaders(204, []), False, False)
    assert data == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert not chunked


def test_streamed_response_is_chunked() -> None:
    data, chunked = http1.encode_response_head(ResponseHeaders(200, []), False, False)
    assert data.endswith(b"transfer-encoding: chunked\r\n\r\n") and chunked
    assert http1.encode_chunk(b"hello") == b"5\r\nhello\r\n"


def test_request_head_puts_host_first() -> None:
    h = RequestHeaders("GET", "/x", "example.com", [["accept", "*/*"]])
    data, chunked = http1.encode_request_head(h, True)
    assert data == b"GET /x HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\n\r\n"
    assert not chunked
    post = RequestHeaders("POST", "/x", "a", [])
    assert http1.encode_request_head(post, True)[0].endswith(b"content-length: 0\r\n\r\n")
    assert http1.encode_request_head(post, False) == (
        b"POST /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n",
        True,
    )


def test_unknown_status_reason() -> None:
    assert http1.status_line(299) == b"HTTP/1.1 299 Unknown\r\n"


def test_header_map_set_replaces_in_place() -> None:
    h = HeaderMap([["server", "upstream"], ["a", "1"], ["server", "dup"]])
    h.set("server", "envoy")
    assert h.entries == [["server", "envoy"], ["a", "1"]]
    h.append_value("a", "2")
    assert h.get("a") == "1,2"
    assert h.remove("a") == 1 and "a" not in h
