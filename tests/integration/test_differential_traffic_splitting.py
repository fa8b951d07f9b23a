"""Differential: the http-traffic-splitting seed config through the real Envoy and Sluice.

Same fleet, same requests: exchanges (responses and what the upstreams received), split counts
within 5 sigma and stats deltas must agree, including the all-zero-weights 404.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness import (
    INGRESS_STATS,
    PROBE_REQUESTS,
    Pair,
    Req,
    assert_same_exchanges,
    check_rates,
    cluster_stats,
    measured_load,
    run_sequence,
)

pytestmark = pytest.mark.envoy

LAB = "http-traffic-splitting"
K10, K11 = "routing.traffic_split.demoapp.demoappv10", "routing.traffic_split.demoapp.demoappv11"
STATS = INGRESS_STATS + cluster_stats("demoappv10", "demoappv11")


@pytest.fixture(scope="module")
def pair(start_pair: Callable[[str], Pair]) -> Pair:
    return start_pair(LAB)


@pytest.mark.parametrize(("v10", "v11"), [("", ""), ("0", "100")], ids=["default", "0_100"])
def test_probe_sequence(pair: Pair, v10: str, v11: str) -> None:
    pair.runtime_modify(**{K10: v10, K11: v11})
    envoy, sluice = (run_sequence(p, pair.fleet, PROBE_REQUESTS) for p in pair.both())
    assert_same_exchanges(envoy, sluice)


def test_all_zero_weights_exchanges(pair: Pair) -> None:
    pair.runtime_modify(**{K10: "0", K11: "0"})
    requests = [Req("GET", "/hostname"), Req("HEAD", "/hostname"), Req("POST", "/echo", body=b"abc"), Req("GET", "/x")]
    envoy, sluice = (run_sequence(p, pair.fleet, requests) for p in pair.both())
    assert_same_exchanges(envoy, sluice)
    assert envoy[0]["response"]["status"] == 404


# (v10, v11, n, expected v1.0 share or None for all-404)
SPLITS = [("", "", 1000, 1.0), ("30", "70", 2000, 0.3), ("60", "60", 1000, 0.5), ("0", "0", 300, None)]


@pytest.mark.parametrize(("v10", "v11", "n", "p_v10"), SPLITS, ids=["default", "30_70", "60_60", "0_0"])
def test_split_counts_and_stats(pair: Pair, v10: str, v11: str, n: int, p_v10: float | None) -> None:
    pair.runtime_modify(**{K10: v10, K11: v11})
    (e_counts, e_stats), (s_counts, s_stats) = (measured_load(p, pair.fleet, n, STATS) for p in pair.both())
    if p_v10 is None:
        assert e_counts == s_counts == {"status:404": n}
        expected = {s: 0.0 for s in STATS} | {
            "http.ingress_http.downstream_rq_total": 1.0,
            "http.ingress_http.downstream_rq_4xx": 1.0,
        }
        # Whether Envoy counts this as no_route is whatever it does: Sluice must do the same.
        expected.pop("http.ingress_http.no_route")
        assert e_stats["http.ingress_http.no_route"] == s_stats["http.ingress_http.no_route"]
    else:
        p_v11 = 1.0 - p_v10
        check_rates(n, {"demoapp-v1.0": p_v10, "demoapp-v1.1": p_v11}, dict(e_counts), dict(s_counts))  # type: ignore[arg-type]
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
