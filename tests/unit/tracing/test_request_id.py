"""The UUID request-id extension: the trace status in character 14 and the id's integer, as
Envoy 1.40 reads and writes them (checked live by tests/integration/test_tracing_decision.py)."""

from __future__ import annotations

import pytest

from sluice.tracing.request_id import Reason, UuidRequestId, strtoull16

RID = "11111111-2222-4333-8444-555555555555"


@pytest.mark.parametrize(
    ("char", "reason"),
    [("9", Reason.Sampling), ("a", Reason.ServiceForced), ("b", Reason.ClientForced), ("4", Reason.NotTraceable), ("c", Reason.NotTraceable)],
)
def test_the_status_is_character_14(char: str, reason: Reason) -> None:
    rid = RID[:14] + char + RID[15:]
    assert UuidRequestId().reason(rid) is reason


def test_an_id_of_another_length_is_not_traceable_and_left_as_it_is() -> None:
    ext = UuidRequestId()
    for rid in (RID[:-1], RID + "0", "abc"):
        assert ext.reason(rid) is Reason.NotTraceable
        assert ext.with_reason(rid, Reason.Sampling) == rid


def test_packing_writes_the_reasons_character() -> None:
    ext = UuidRequestId()
    assert ext.with_reason(RID, Reason.Sampling) == "11111111-2222-9333-8444-555555555555"
    assert ext.with_reason(RID, Reason.ClientForced)[14] == "b"
    assert ext.with_reason(RID, Reason.ServiceForced)[14] == "a"
    assert ext.with_reason(ext.with_reason(RID, Reason.Sampling), Reason.NotTraceable) == RID
    off = UuidRequestId(pack_trace_reason=False)
    assert off.with_reason(RID, Reason.Sampling) == RID
    assert off.reason("11111111-2222-9333-8444-555555555555") is Reason.NotTraceable


@pytest.mark.parametrize(
    ("rid", "value"),
    [
        (RID, 0x11111111),
        ("ffffffff-anything", 0xFFFFFFFF),
        ("1111111-2222", None),  # ("1111111-" is not a number)
        ("abc", None),  # shorter than 8
        ("notauuid", None),
        ("0x12345f", 0x12345F),  # strtoull's prefix
        ("+1234567", 0x1234567),
        ("-0000001", 2**64 - 1),  # strtoull wraps a minus
        ("0xzzzzzz", None),
    ],
)
def test_the_integer_is_the_first_8_characters_read_by_strtoull(rid: str, value: int | None) -> None:
    assert UuidRequestId.integer(rid) == value


def test_strtoull_needs_the_whole_text() -> None:
    assert strtoull16("12 4") is None
    assert strtoull16("") is None
    assert strtoull16("  ff") == 255
