"""The golden route-features capture replayed against Sluice: every case's status line, response
headers (names in order, values except volatile ones), body and the requests the upstreams
received must be what Envoy 1.40 produced (``golden/envoy-part1-2/route_features/``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import LoopThread, RouteFeatures, golden_route_feature, route_feature_cases

CASES = route_feature_cases()


@pytest.fixture(scope="module")
def sluice(loop: LoopThread) -> Iterator[RouteFeatures]:
    rf = RouteFeatures(loop, "sluice")
    yield rf
    rf.stop()


@pytest.mark.parametrize("name", list(CASES))
def test_case_matches_golden(sluice: RouteFeatures, name: str) -> None:
    assert sluice.run(name, CASES[name]) == golden_route_feature(name, CASES[name])
