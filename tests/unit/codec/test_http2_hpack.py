"""The remembering HPACK coders (sluice/codec/http2_hpack.py) against hpack's own: every block
decodes (and encodes) to what a fresh hpack coder fed the same sequence gives, hits included."""

from __future__ import annotations

import random

import hpack
import pytest
from hpack import NeverIndexedHeaderTuple
from hpack.exceptions import OversizedHeaderListError

from sluice.codec import http2_hpack

REQ = [(b":method", b"GET"), (b":path", b"/x"), (b":scheme", b"http"), (b":authority", b"h"), (b"user-agent", b"t")]


def test_repeated_block_is_remembered_and_decodes_the_same() -> None:
    enc = hpack.Encoder()
    ours = http2_hpack.Decoder()
    first, steady = enc.encode(REQ), enc.encode(REQ)
    assert ours.decode(first, raw=True) == REQ
    assert ours.decode(steady, raw=True) == REQ
    assert steady in ours._known  # (all indexed: the table did not change)
    got = ours.decode(steady, raw=True)
    assert got == REQ
    got.append((b"x", b"y"))  # a caller's list is its own
    assert ours.decode(steady, raw=True) == REQ


def test_table_change_invalidates_a_remembered_block() -> None:
    # The same index bytes mean other headers once the table has moved: 0xbe is dynamic index 1
    # (62), the newest entry.
    ours = http2_hpack.Decoder()
    peer = hpack.Encoder()
    ours.decode(peer.encode([(b"a", b"1")]), raw=True)
    assert ours.decode(b"\xbe", raw=True) == [(b"a", b"1")]
    ours.decode(peer.encode([(b"b", b"2")]), raw=True)
    assert ours.decode(b"\xbe", raw=True) == [(b"b", b"2")]


def test_size_update_invalidates() -> None:
    ours = http2_hpack.Decoder()
    ours.decode(hpack.Encoder().encode([(b"a", b"1")]), raw=True)
    assert ours.decode(b"\xbe", raw=True) == [(b"a", b"1")]
    ours.decode(b"\x20", raw=True)  # dynamic table size update to 0: the table empties
    with pytest.raises(Exception):  # noqa: B017 - hpack's InvalidTableIndex (an HPACKDecodingError)
        ours.decode(b"\xbe", raw=True)


def test_limit_applies_to_a_remembered_block() -> None:
    ours = http2_hpack.Decoder()
    peer = hpack.Encoder()
    ours.decode(peer.encode(REQ), raw=True)
    steady = peer.encode(REQ)
    ours.decode(steady, raw=True)
    ours.max_header_list_size = 10
    with pytest.raises(OversizedHeaderListError):
        ours.decode(steady, raw=True)


def test_random_sequences_match_hpack() -> None:
    rng = random.Random(7)
    names = [b"a", b"b", b"content-type", b"x-long-name"]
    values = [b"1", b"2", b"text/plain", b"v" * 300]
    for _ in range(20):
        peer, ours_enc, ref_enc = hpack.Encoder(), http2_hpack.Encoder(), hpack.Encoder()
        ours_dec, ref_dec = http2_hpack.Decoder(), hpack.Decoder()
        for step in range(60):
            headers = [(rng.choice(names), rng.choice(values)) for _ in range(rng.randint(1, 4))]
            if rng.random() < 0.1:
                size = rng.choice([0, 256, 4096])
                peer.header_table_size = size
                ours_enc.header_table_size = ref_enc.header_table_size = size
            block = peer.encode(headers)
            assert ours_dec.decode(block, raw=True) == ref_dec.decode(block, raw=True) == headers, step
            if rng.random() < 0.3:
                block = peer.encode(headers)  # (a repeat, as clients send them)
                assert ours_dec.decode(block, raw=True) == ref_dec.decode(block, raw=True) == headers
            out = ours_enc.encode(headers)
            assert out == ref_enc.encode(headers), step  # byte for byte, hits included
            assert http2_hpack.Encoder().header_table is not ours_enc.header_table


def test_encoder_remembers_only_unchanged_tables_and_plain_tuples() -> None:
    enc = http2_hpack.Encoder()
    h = [(b":status", b"200"), (b"server", b"envoy")]
    first = enc.encode(h)
    second = enc.encode(h)
    assert first != second  # (the first added server: envoy)
    assert enc.encode(h) == second
    assert tuple(h) in enc._known
    secret = [(b":status", b"200"), NeverIndexedHeaderTuple(b"authorization", b"x")]
    enc.encode(secret)
    assert tuple(secret) not in enc._known
    enc.header_table_size = 256  # a size update leads the next block, once
    resized = enc.encode(h)
    assert resized != second and resized.endswith(second)
    assert enc.encode(h) == second


def test_memory_is_bounded_and_forgotten_on_a_table_change() -> None:
    dec = http2_hpack.Decoder()
    peer = hpack.Encoder()
    dec.decode(peer.encode([(b"a", b"1")]), raw=True)
    dec.decode(b"\xbe", raw=True)
    assert list(dec._known) == [b"\xbe"]
    dec.decode(peer.encode([(b"b", b"2")]), raw=True)  # (the table changed)
    assert not dec._known
    big = hpack.Encoder()
    block = big.encode([NeverIndexedHeaderTuple(b"x", b"v" * 400)])  # (no table change, but long)
    assert http2_hpack.Decoder().decode(block, raw=True) == [(b"x", b"v" * 400)]
    d2 = http2_hpack.Decoder()
    d2.decode(block, raw=True)
    assert not d2._known
    enc = http2_hpack.Encoder()
    for i in range(http2_hpack.MAX_REMEMBERED * 3):
        h = [(b":status", b"200"), (b"x-n", str(i).encode())]
        enc.encode(h)
        enc.encode(h)
        assert len(enc._known) <= http2_hpack.MAX_REMEMBERED
    long = [(b":status", b"200"), (b"x-long", b"v" * 2000)]
    enc.encode(long)
    enc.encode(long)
    assert tuple(long) not in enc._known
