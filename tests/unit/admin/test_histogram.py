"""Histogram buckets and quantiles, against values printed by the real Envoy 1.40.

Each expected list was read off ``/stats`` of Envoy after recording the same samples (the bucket
contents were confirmed with ``?histogram_buckets=detailed``).
"""

from __future__ import annotations

import math

import pytest

from sluice.stats.store import Histogram, bucket_bounds, bucket_key


def merged(values: list[float]) -> Histogram:
    h = Histogram("h")
    for v in values:
        h.record(v)
    h.merge()
    return h


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        # upstream_rq_time over 12 requests: buckets 0:2, 3:2, 46:1, 47:1, 120s:3, 250s:2, 1500s:1
        (
            [0, 0, 3, 3, 46, 47, 122, 123, 124, 253, 256, 1520],
            [0, 3.033333333333333, 47.5, 127.5, 256.6666666666667, 1550, 1550, 1550, 1550, 1550],
        ),
        # connections_accepted_per_socket_event: twenty 1s
        (
            [1] * 20,
            [1.0047619047619047, 1.0238095238095237, 1.0476190476190477, 1.0714285714285714, 1.0857142857142856,
             1.0904761904761906, 1.0952380952380953, 1.0952380952380953, 1.0952380952380953, 1.0952380952380953],
        ),
        ([1] * 4, [1.02, 1.02, 1.04, 1.06, 1.08, 1.08, 1.08, 1.08, 1.08, 1.08]),
        ([4], [4.05] * 10),
        ([15], [15.5] * 10),
        ([0] * 16 + [1] * 4, [0, 0, 0, 0, 1.04, 1.06, 1.08, 1.08, 1.08, 1.08]),
        ([89123], [89500] * 10),
    ],
)  # fmt: skip
def test_quantiles_match_envoy(samples: list[float], expected: list[float]) -> None:
    h = merged(samples)
    assert h.cumulative_quantiles() == expected
    assert h.interval_quantiles() == expected


def test_durations_are_truncated_to_whole_milliseconds() -> None:
    assert merged([3.99, 3.01]).detailed(True) == [(3.0, 0.1, 2)]
    assert merged([-1, 0.4]).detailed(True) == [(0.0, 0.0, 2)]


def test_bucket_bounds_have_two_significant_digits() -> None:
    assert bucket_bounds(bucket_key(7)) == (7.0, 0.1)
    assert bucket_bounds(bucket_key(47)) == (47.0, 1.0)
    assert bucket_bounds(bucket_key(256)) == (250.0, 10.0)
    assert bucket_bounds(bucket_key(1520)) == (1500.0, 100.0)
    assert bucket_bounds(bucket_key(89123)) == (89000.0, 1000.0)
    assert bucket_key(0) < bucket_key(1) < bucket_key(9) < bucket_key(10) < bucket_key(99) < bucket_key(100)


def test_bucket_counts_match_envoy() -> None:
    h = merged([0, 0, 3, 3, 46, 47, 122, 123, 124, 253, 256, 1520])
    # Envoy: B0.5(0,2) B1(0,2) B5(0,4) B10(0,4) B25(0,4) B50(0,6) B100(0,6) B250(0,11) ... B2500(0,12)
    assert h.cumulative_buckets() == [2, 2, 4, 4, 4, 6, 6, 11, 11, 11, 12, 12, 12, 12, 12, 12, 12, 12, 12]
    assert h.detailed(True) == [
        (0.0, 0.0, 2), (3.0, 0.1, 2), (46.0, 1.0, 1), (47.0, 1.0, 1),
        (120.0, 10.0, 3), (250.0, 10.0, 2), (1500.0, 100.0, 1),
    ]  # fmt: skip


def test_samples_show_only_after_a_flush_and_intervals_empty_out() -> None:
    h = Histogram("h")
    h.record(4)
    assert not h.used  # recorded but not yet flushed: "No recorded values"
    assert all(math.isnan(q) for q in h.cumulative_quantiles())
    h.merge()
    assert h.used
    assert h.interval_quantiles()[0] == 4.05
    h.merge()  # a flush with no new samples: the interval is empty, the cumulative set stays
    assert all(math.isnan(q) for q in h.interval_quantiles())
    assert h.cumulative_quantiles()[0] == 4.05
    h.record(15)
    h.merge()
    assert h.interval_quantiles()[0] == 15.5
    assert h.cumulative_quantiles() == [4.05, 4.05, 4.05, 15.5, 15.5, 15.5, 15.5, 15.5, 15.5, 15.5]
