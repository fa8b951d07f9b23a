"""KnownRequests (sluice/codec/http2_validation.py): a remembered header list gives the same
request as the checks do, as a fresh object each time; refusals are never remembered."""

from __future__ import annotations

import pytest

from sluice.codec.http2_validation import KnownRequests, Malformed, Overflow, request, validate

GET = [(b":method", b"GET"), (b":path", b"/p"), (b":scheme", b"http"), (b":authority", b"h"), (b"cookie", b"a=1"),
       (b"x-a", b"1"), (b"cookie", b"b=2")]  # fmt: skip


def _shape(h: object) -> tuple[object, ...]:
    return tuple(getattr(h, a) for a in ("method", "path", "authority", "scheme", "version", "entries"))


def test_hit_equals_the_checks_and_is_a_fresh_object() -> None:
    known = KnownRequests(60 * 1024, 100, False)
    want = _shape(request(*validate(GET, 60 * 1024, 100, False)))
    first = known.parse(GET)
    assert _shape(first) == want
    first.entries[0][1] = "mutated"  # (the connection manager edits its request)
    first.entries.append(["x-forwarded-for", "1.2.3.4"])
    second = known.parse(list(GET))
    assert _shape(second) == want
    assert second is not first and second.entries is not first.entries


def test_refusals_are_checked_each_time() -> None:
    known = KnownRequests(60 * 1024, 3, False)
    with pytest.raises(Overflow):
        known.parse(GET)
    with pytest.raises(Overflow):
        known.parse(GET)
    bad = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"h"), (b"Upper", b"x")]
    for _ in range(2):
        with pytest.raises(Malformed):
            KnownRequests(60 * 1024, 100, False).parse(bad)
    assert not known._known


def test_bounded() -> None:
    known = KnownRequests(60 * 1024, 100, False)
    for i in range(KnownRequests.MAX_KNOWN * 3):
        known.parse([*GET[:4], (b"x-n", str(i).encode())])
        assert len(known._known) <= KnownRequests.MAX_KNOWN
