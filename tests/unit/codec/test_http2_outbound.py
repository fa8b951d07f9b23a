"""http2_validation.outbound against what it replaces: h2's normalize_outbound_headers then
validate_outbound_headers on a response block (same headers, same never-indexed marks, same refusals)."""

from __future__ import annotations

import h2.exceptions
import pytest
from h2.utilities import HeaderValidationFlags, normalize_outbound_headers, validate_outbound_headers

from sluice.codec.http2_validation import outbound

FLAGS = HeaderValidationFlags(is_client=False, is_trailer=False, is_response_header=True, is_push_promise=False)


def _h2(entries: list[list[str]]) -> list[tuple[bytes, bytes]]:
    block = [(b":status", b"200")] + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in entries]
    return list(validate_outbound_headers(normalize_outbound_headers(block, FLAGS, False), FLAGS))


@pytest.mark.parametrize(
    "entries",
    [
        [["content-type", "text/plain"], ["content-length", "14"], ["server", "envoy"]],
        [["X-Upper", "v"], ["x-space", "  padded \t"], [" x-name ", "v"]],
        [["connection", "close"], ["keep-alive", "5"], ["upgrade", "h2c"], ["transfer-encoding", "chunked"], ["a", "b"]],
        [["authorization", "secret"], ["proxy-authorization", "p"], ["cookie", "short=1"], ["cookie", "x" * 30]],
        [["te", "trailers"], ["set-cookie", "a=1"], ["x-latin", "caf\xe9"]],
    ],
)
def test_same_as_h2(entries: list[list[str]]) -> None:
    ours = outbound(entries, [(b":status", b"200")])
    theirs = _h2(entries)
    assert ours == theirs
    assert [type(h).__name__ for h in ours[1:]] == [type(h).__name__ for h in theirs[1:]]


@pytest.mark.parametrize("entries", [[["te", "gzip"]], [[":path", "/"]]])
def test_refused_as_h2(entries: list[list[str]]) -> None:
    with pytest.raises(h2.exceptions.ProtocolError):
        _h2(entries)
    with pytest.raises(h2.exceptions.ProtocolError):
        outbound(entries, [(b":status", b"200")])
