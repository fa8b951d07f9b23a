"""B3 extraction and injection (``sluice.tracing.b3``) on the cases Envoy 1.40's extractor
distinguishes (the differential test checks the same against the real Envoy end to end)."""

from __future__ import annotations

import pytest

from sluice.http.headers import RequestHeaders
from sluice.tracing import b3

T128 = "80f198ee56343ba864fe8b2a57d3eff7"


def headers(*entries: tuple[str, str]) -> RequestHeaders:
    return RequestHeaders("GET", "/", "h", [list(e) for e in entries])


@pytest.mark.parametrize(
    ("entries", "sampled"),
    [
        ((), None),
        ((("x-b3-sampled", "1"),), True),
        ((("x-b3-sampled", "true"),), True),
        ((("x-b3-sampled", "0"),), False),
        ((("x-b3-sampled", "yes"),), False),
        ((("b3", "0"),), False),
        ((("b3", "d"),), True),
        ((("b3", "x"),), None),  # (an invalid flag: no decision)
        ((("b3", f"{T128}-e457b5a2e4d86bd1-0"),), False),
        ((("b3", "a0b1c2d3e4f50617-1122334455667788-1-05e3ac9a4f6e3b90"),), True),
        ((("b3", "a0b1c2d3e4f50617-1122334455667788"),), None),  # (no flag)
        ((("b3", "0"), ("x-b3-sampled", "1")), False),  # (b3 wins)
    ],
)
def test_the_sampled_flag(entries: tuple[tuple[str, str], ...], sampled: bool | None) -> None:
    assert b3.extract_sampled(b3.scan(headers(*entries))) is sampled


def test_multi_headers_give_a_context_with_128_bit_and_0x_ids() -> None:
    found = b3.scan(headers(("x-b3-traceid", T128), ("x-b3-spanid", "0x1122334455667788"), ("x-b3-parentspanid", ""), ("x-b3-spanid", "9")))
    ctx = b3.extract_context(found, True)  # (the first value of a repeated header)
    assert ctx is not None
    assert (ctx.trace_id_high, ctx.trace_id, ctx.span_id, ctx.parent_id) == (0x80F198EE56343BA8, 0x64FE8B2A57D3EFF7, 0x1122334455667788, 0)
    assert b3.extract_context(b3.scan(headers(("x-b3-traceid", "a0b1c2d3e4f50617"))), True) is None  # (no span id: no context)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("", "empty"),
        ("x", "invalid sampling flag x"),
        ("abc", "truncated"),
        ("a0b1c2d3e4f50617-1122334455667788-1-05e3ac9a4f6e3b90-ffff", "truncated"),
        (f"{T128}-1122334455667788-1-05e3ac9a4f6e3b90-f", "too long"),
        ("a0b1c2d3e4f5061z-1122334455667788-1", "invalid trace id a0b1c2d3e4f5061z"),
        ("a0b1c2d3e4f50617-1122334455667788-2", "invalid sampling flag 2"),
        ("a0b1c2d3e4f50617-1122334455667788-", "truncated"),
        ("a0b1c2d3e4f50617-1122334455667788-1-05e3", "truncated"),
    ],
)
def test_malformed_single_headers_raise_as_envoys_extractor(value: str, error: str) -> None:
    with pytest.raises(b3.ExtractorError, match=error):
        b3.extract_context(b3.scan(headers(("b3", value))), True)


def test_bad_multi_header_hex_raises() -> None:
    with pytest.raises(b3.ExtractorError):
        b3.extract_context(b3.scan(headers(("x-b3-traceid", "xyz"), ("x-b3-spanid", "1"))), True)
    with pytest.raises(b3.ExtractorError):
        b3.extract_context(b3.scan(headers(("x-b3-traceid", "1"), ("x-b3-spanid", ""))), True)


def test_injection_moves_the_headers_to_the_end_and_keeps_the_format() -> None:
    h = headers(("x-b3-traceid", "1"), ("accept", "*/*"), ("x-b3-spanid", "2"))
    b3.inject(h, 0, 0xA, 0xB, 0xC, True, single=False)
    assert h.entries == [
        ["accept", "*/*"],
        ["x-b3-traceid", "000000000000000a"],
        ["x-b3-spanid", "000000000000000b"],
        ["x-b3-parentspanid", "000000000000000c"],
        ["x-b3-sampled", "1"],
    ]
    h = headers(("b3", "0"), ("accept", "*/*"))
    b3.inject(h, 1, 2, 3, 0, False, single=True)
    assert h.entries == [["accept", "*/*"], ["b3", "00000000000000010000000000000002-0000000000000003-0"]]
