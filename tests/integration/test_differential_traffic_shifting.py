"""Differential: the http-traffic-shifting seed config through the real Envoy and through Sluice.

Same fleet, same request sequences: responses (status, header names in order, values except
volatile ones, bodies), what the upstreams received, the split counts (within 5 sigma) and
stats deltas must agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from harness import (
    INGRESS_STATS,
    PROBE_REQUESTS,
    Pair,
    assert_same_exchanges,
    check_rates,
    cluster_stats,
    measured_load,
    response_view,
    run_sequence,
)

pytestmark = pytest.mark.envoy

LAB = "http-traffic-shifting"
KEY = "routing.traffic_shift.demoapp"
STATS = INGRESS_STATS + cluster_stats("demoappv10", "demoappv11")
N = 2000


@pytest.fixture(scope="module")
def pair(start_pair: Callable[[str], Pair]) -> Pair:
    return start_pair(LAB)


def test_probe_sequence(pair: Pair) -> None:
    pair.runtime_modify(**{KEY: ""})
    envoy, sluice = (run_sequence(p, pair.fleet, PROBE_REQUESTS) for p in pair.both())
    assert_same_exchanges(envoy, sluice)


def test_admin_runtime_calls(pair: Pair) -> None:
    views = []
    for proxy in pair.both():
        seen = []
        for method, path in [
            ("POST", f"/runtime_modify?{KEY}=90"),
            ("GET", "/runtime"),
            ("GET", f"/runtime_modify?{KEY}=5"),
            ("POST", "/runtime_modify"),
            ("POST", f"/runtime_modify?{KEY}="),
            ("GET", "/runtime"),
        ]:
            resp = proxy.admin(method, path)
            view = response_view(resp, proxy.port)
            if path == "/runtime":
                # Envoy prints its runtime map in hash order (it varies run to run): compare the JSON.
                view["body"] = json.loads(resp.body)
            seen.append((method, path, view))
        views.append(seen)
    assert views[1] == views[0]


# runtime value → expected v1.0 share
SHARES = [("", 1.0), ("90", 0.9), ("0", 0.0), ("50.7", 0.5)]


@pytest.mark.parametrize(("value", "p_v10"), SHARES, ids=[v or "default" for v, _ in SHARES])
def test_split_counts_and_stats(pair: Pair, value: str, p_v10: float) -> None:
    pair.runtime_modify(**{KEY: value})
    n = N if value in ("", "90", "0") else 1000
    (e_counts, e_stats), (s_counts, s_stats) = (measured_load(p, pair.fleet, n, STATS) for p in pair.both())
    p_v11 = 1.0 - p_v10
    check_rates(
        n,
        {"demoapp-v1.0": p_v10, "demoapp-v1.1": p_v11},
        dict(e_counts),  # type: ignore[arg-type]
        dict(s_counts),  # type: ignore[arg-type]
    )
    expected = {
        "http.ingress_http.downstream_rq_total": 1.0,
        "http.ingress_http.downstream_rq_2xx": 1.0,
        "http.ingress_http.downstream_rq_4xx": 0.0,
        "http.ingress_http.downstream_rq_5xx": 0.0,
        "http.ingress_http.no_route": 0.0,
        "cluster.demoappv10.upstream_rq_total": p_v10,
        "cluster.demoappv10.upstream_rq_200": p_v10,
        "cluster.demoappv11.upstream_rq_total": p_v11,
        "cluster.demoappv11.upstream_rq_200": p_v11,
    }
    check_rates(n, expected, e_stats, s_stats)
    # Each proxy's stats agree with what its clients saw.
    for counts, stats in ((e_counts, e_stats), (s_counts, s_stats)):
        assert (stats["cluster.demoappv11.upstream_rq_total"] or 0) == counts["demoapp-v1.1"]
