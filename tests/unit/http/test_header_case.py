"""sluice.http.header_case and the proper-cased response head (Envoy's ProperCaseHeaderKeyFormatter)."""

from __future__ import annotations

import pytest

from sluice.http import http1
from sluice.http.header_case import proper_case
from sluice.http.headers import ResponseHeaders


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("content-length", "Content-Length"),
        ("x-envoy-upstream-service-time", "X-Envoy-Upstream-Service-Time"),
        ("x-mixed_case-9z", "X-Mixed_Case-9z"),  # after '_' a capital; after a digit none
        ("1abc", "1abc"),
        ("a--b.c~d", "A--B.C~D"),
        ("www-authenticate", "Www-Authenticate"),
        ("\xe9trange-x", "\xe9Trange-X"),  # a non-ASCII byte is no letter: the next one is capitalised
        ("", ""),
    ],
)
def test_proper_case_is_envoys_rule(name: str, expected: str) -> None:
    assert proper_case(name) == expected


def _headers(status: int, *entries: tuple[str, str]) -> ResponseHeaders:
    h = ResponseHeaders(status)
    for k, v in entries:
        h.add(k, v)
    return h


def test_proper_cased_head_recases_the_framing_headers_and_keeps_values() -> None:
    h = _headers(200, ("x-a_b", "MiXed: value"), ("server", "envoy"))
    head, chunked = http1.encode_response_head(h, False, False, proper_case=True)
    assert chunked
    assert head == b"HTTP/1.1 200 OK\r\nX-A_B: MiXed: value\r\nServer: envoy\r\nTransfer-Encoding: chunked\r\n\r\n"
    head, chunked = http1.encode_response_head(_headers(404, ("x", "1")), True, False, proper_case=True)
    assert (head, chunked) == (b"HTTP/1.1 404 Not Found\r\nX: 1\r\nContent-Length: 0\r\n\r\n", False)


def test_the_default_head_is_lower_case() -> None:
    head, _ = http1.encode_response_head(_headers(200, ("x-a", "1")), True, False)
    assert head == b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n"
