"""Part 1, lab http-traffic-splitting: ``weighted_clusters`` with ``runtime_key_prefix``.

Weights come from ``routing.traffic_split.demoapp.<cluster>`` (admin ``/runtime_modify``);
expected shares are Envoy's, from ``golden/envoy-part1-2/traffic_splitting/splitting.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from harness import (
    GOLDEN,
    Client,
    Fleet,
    ProxyProcess,
    assert_binomial,
    free_port,
    load_seed,
    localize,
    normalise_headers,
    run_load,
    version_counts,
)

LAB = "http-traffic-splitting"
PREFIX = "routing.traffic_split.demoapp"
K10, K11 = f"{PREFIX}.demoappv10", f"{PREFIX}.demoappv11"
GOLD = json.loads((GOLDEN / "traffic_splitting" / "splitting.json").read_text(encoding="utf-8"))

# (golden case, demoappv10 value, demoappv11 value (None: no override), requests, expected v1.0
# share, or None when every request gets Envoy's 404).
CASES = [
    ("config_default_100_0", None, None, 2000, 1.0),
    ("0_100", "0", "100", 2000, 0.0),
    ("30_70", "30", "70", 2000, 0.3),
    ("30_30", "30", "30", 2000, 0.5),  # normalised by the actual sum, not total_weight
    ("200_0", "200", "0", 1000, 1.0),
    ("abc_50", "abc", "50", 2000, 2 / 3),  # invalid → the configured weight (100)
    ("only_demoappv11=50", None, "50", 2000, 2 / 3),
    ("0_0", "0", "0", 200, None),
    ("only_demoappv10=0", "0", None, 200, None),
]


@pytest.fixture(scope="module")
def lab(start_fleet: Callable[[str], Fleet], start_proxy: Callable[[str, dict[str, Any]], ProxyProcess]) -> tuple[Fleet, ProxyProcess]:
    fleet = start_fleet(LAB)
    config = localize(load_seed(LAB), fleet.endpoints, free_port(), [free_port()])
    return fleet, start_proxy("sluice", config)


def set_weights(proxy: ProxyProcess, v10: str | None, v11: str | None) -> None:
    proxy.runtime_modify(**{K10: v10 or "", K11: v11 or ""})  # "" removes an override


@pytest.mark.parametrize(("case", "v10", "v11", "n", "p_v10"), CASES, ids=[c[0] for c in CASES])
def test_split(lab: tuple[Fleet, ProxyProcess], case: str, v10: str | None, v11: str | None, n: int, p_v10: float | None) -> None:
    fleet, proxy = lab
    gold = GOLD["cases"][case]
    set_weights(proxy, v10, v11)
    assert proxy.runtime()["entries"] == gold.get("runtime_after", {})
    fleet.clear()
    responses = run_load(proxy.port, n)
    counts = version_counts(responses)
    if p_v10 is None:
        assert counts == {"status:404": n}
        assert fleet.count("demoappv10") == fleet.count("demoappv11") == 0
        assert gold["split"]["statuses"] == {"404": 2000}
        return
    assert {r.status for r in responses} == {200}
    got = counts.get("demoapp-v1.0", 0)
    assert got + counts.get("demoapp-v1.1", 0) == n
    assert fleet.count("demoappv10") == got
    if p_v10 in (0.0, 1.0):
        assert got == n * p_v10
        assert gold["split"]["demoapp-v1.0"] == gold["split"]["requests"] * p_v10
    else:
        assert_binomial(got, n, p_v10, f"v1.0 share for {case}")
        assert_binomial(gold["split"]["demoapp-v1.0"], gold["split"]["requests"], p_v10, "golden")


def test_all_zero_weights_is_404_with_empty_body(lab: tuple[Fleet, ProxyProcess]) -> None:
    _, proxy = lab
    set_weights(proxy, "0", "0")
    gold = GOLD["full_response_when_weights_0_0"]
    with Client(proxy.port) as c:
        for _ in range(3):
            resp = c.get("/hostname")
            assert (resp.status, resp.reason, resp.body) == (404, "Not Found", b"")
            assert normalise_headers(resp.headers) == [tuple(h) for h in gold["headers"]]
        assert c.reconnects == 1  # the connection stays open
    set_weights(proxy, None, None)
