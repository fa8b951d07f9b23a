"""Part 1, lab http-traffic-shifting: a route's ``runtime_fraction`` moves traffic from v1.0 to v1.1.

The seed config runs unchanged (only addresses localized) in Sluice as a subprocess; the
numbers to match are Envoy's, from ``golden/envoy-part1-2/traffic_shifting/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from harness import (
    GOLDEN,
    Fleet,
    ProxyProcess,
    assert_binomial,
    free_port,
    load_seed,
    localize,
    quiesce,
    run_load,
    stats_delta,
    version_counts,
)

LAB = "http-traffic-shifting"
KEY = "routing.traffic_shift.demoapp"
N = 2000
GOLD = json.loads((GOLDEN / "traffic_shifting" / "shifting.json").read_text(encoding="utf-8"))
EDGE = json.loads((GOLDEN / "traffic_shifting" / "runtime_modify_edge_cases.json").read_text(encoding="utf-8"))
V10, V11 = "cluster.demoappv10.upstream_rq_total", "cluster.demoappv11.upstream_rq_total"


@pytest.fixture(scope="module")
def lab(start_fleet: Callable[[str], Fleet], start_proxy: Callable[[str, dict[str, Any]], ProxyProcess]) -> tuple[Fleet, ProxyProcess]:
    fleet = start_fleet(LAB)
    config = localize(load_seed(LAB), fleet.endpoints, free_port(), [free_port()])
    return fleet, start_proxy("sluice", config)


def _balanced(counts: dict[str, int], names: list[str]) -> bool:
    """Round robin inside a cluster: the replicas' counts differ by at most one."""
    values = [counts[n] for n in names]
    return max(values) - min(values) <= 1


def _load(fleet: Fleet, proxy: ProxyProcess, n: int = N) -> tuple[dict[str, int], dict[str, int]]:
    fleet.clear()
    before = quiesce(proxy)
    responses = run_load(proxy.port, n)
    assert {r.status for r in responses} == {200}
    counts = version_counts(responses)
    delta = stats_delta(before, quiesce(proxy), [V10, V11])
    # What the clients saw, what the apps got and what the proxy counted all agree.
    assert counts["demoapp-v1.0"] == fleet.count("demoappv10") == delta[V10]
    assert counts["demoapp-v1.1"] == fleet.count("demoappv11") == delta[V11]
    return dict(counts), fleet.per_instance()


def test_default_sends_everything_to_v10(lab: tuple[Fleet, ProxyProcess]) -> None:
    fleet, proxy = lab
    proxy.runtime_modify(**{KEY: ""})  # an empty value removes any override
    assert proxy.runtime() == GOLD["runtime_before_any_modify"]["json"]
    counts, per = _load(fleet, proxy)
    assert counts == {"demoapp-v1.0": N}
    assert _balanced(per, ["demoapp-v1.0-1", "demoapp-v1.0-2", "demoapp-v1.0-3"])


def test_runtime_modify_90_gives_90_10(lab: tuple[Fleet, ProxyProcess]) -> None:
    fleet, proxy = lab
    resp = proxy.runtime_modify(**{KEY: "90"})
    gold = GOLD["runtime_modify_POST_responses"]["90"]
    assert [(k.lower(), v) for k, v in resp.headers if k.lower() != "date"] == [(k, v) for k, v in gold["headers"] if k != "date"]
    raw = proxy.admin("GET", "/runtime")
    assert raw.body.decode() == GOLD["runtime_after_modify_90"]["raw_body"]
    counts, per = _load(fleet, proxy)
    assert_binomial(counts.get("demoapp-v1.1", 0), N, 0.10, "v1.1 share at 90")
    assert counts["demoapp-v1.0"] + counts.get("demoapp-v1.1", 0) == N
    assert _balanced(per, ["demoapp-v1.0-1", "demoapp-v1.0-2", "demoapp-v1.0-3"])
    assert _balanced(per, ["demoapp-v1.1-1", "demoapp-v1.1-2"])


def test_runtime_modify_0_sends_everything_to_v11(lab: tuple[Fleet, ProxyProcess]) -> None:
    fleet, proxy = lab
    proxy.runtime_modify(**{KEY: "0"})
    assert proxy.runtime()["entries"] == {KEY: {"final_value": "0", "layer_values": ["0"]}}
    counts, per = _load(fleet, proxy)
    assert counts == {"demoapp-v1.1": N}
    assert per["demoapp-v1.1-1"] == per["demoapp-v1.1-2"] == N // 2


# How a runtime_fraction numerator is read (golden runtime_modify_edge_cases.json): the expected
# v1.0 share for each value the course's admin call could be given.
EDGE_VALUES = [("abc", 1.0), ("150", 1.0), ("-1", 1.0), ("0.5", 0.0), ("50.7", 0.5), (" 30", 0.3)]


@pytest.mark.parametrize(("value", "p_v10"), EDGE_VALUES, ids=[v for v, _ in EDGE_VALUES])
def test_runtime_value_parsing(lab: tuple[Fleet, ProxyProcess], value: str, p_v10: float) -> None:
    fleet, proxy = lab
    gold = EDGE[f"value={value!r}"]
    proxy.runtime_modify(**{KEY: value})
    assert proxy.runtime()["entries"][KEY] == gold["runtime_entry_after"]
    n = 1000
    counts, _ = _load(fleet, proxy, n)
    if p_v10 in (0.0, 1.0):
        assert counts.get("demoapp-v1.0", 0) == n * p_v10
        assert gold["split_after_1000"]["demoapp-v1.0"] == n * p_v10
    else:
        assert_binomial(counts.get("demoapp-v1.0", 0), n, p_v10, f"v1.0 share at {value!r}")
        assert_binomial(gold["split_after_1000"]["demoapp-v1.0"], n, p_v10, "golden")


def test_get_runtime_modify_is_rejected(lab: tuple[Fleet, ProxyProcess]) -> None:
    _, proxy = lab
    proxy.runtime_modify(**{KEY: "100"})
    resp = proxy.admin("GET", f"/runtime_modify?{KEY}=5")
    gold = EDGE["GET_instead_of_POST"]["response"]
    assert (resp.status, resp.body.decode()) == (gold["status"], gold["body"])
    assert proxy.runtime()["entries"][KEY] == {"final_value": "100", "layer_values": ["100"]}
