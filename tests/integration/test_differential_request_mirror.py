"""Differential: the http-request-mirror seed config through the real Envoy and Sluice.

Exchanges compare the client's response and both copies the upstreams received (primary and
shadow: Host with ``-shadow``, x-envoy-internal, x-forwarded-for with the proxy's own address,
same x-request-id, the body); shadow counts within 5 sigma; stats deltas.
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

LAB = "http-request-mirror"
KEY = "routing.request_mirror.demoapp"
STATS = INGRESS_STATS + cluster_stats("demoappv10", "demoappv11")

HOSTS = ["demoapp.example.com", "example.com:8080", "10.0.0.1", "[::1]:80", "UPPER.Example.com"]


@pytest.fixture(scope="module")
def pair(start_pair: Callable[[str], Pair]) -> Pair:
    return start_pair(LAB)


def test_probe_sequence_fully_mirrored(pair: Pair) -> None:
    pair.runtime_modify(**{KEY: "100"})
    requests = PROBE_REQUESTS + [Req("GET", "/hostname?x=1", [("Host", h)]) for h in HOSTS]
    requests.append(Req("POST", "/hostname", [("Content-Type", "text/plain")], b"hello-mirror-body"))
    envoy, sluice = (run_sequence(p, pair.fleet, requests) for p in pair.both())
    assert_same_exchanges(envoy, sluice)
    assert all(len(x["upstream"]["demoappv11"]) == 1 for x in envoy)  # every request was mirrored


def test_probe_sequence_not_mirrored(pair: Pair) -> None:
    pair.runtime_modify(**{KEY: "0"})
    envoy, sluice = (run_sequence(p, pair.fleet, PROBE_REQUESTS) for p in pair.both())
    assert_same_exchanges(envoy, sluice)


# runtime value → expected shadow share
SHARES = [("", 0.2, 2000), ("100", 1.0, 1000), ("abc", 0.2, 1000)]


@pytest.mark.parametrize(("value", "p", "n"), SHARES, ids=["default", "100", "abc"])
def test_shadow_counts_and_stats(pair: Pair, value: str, p: float, n: int) -> None:
    pair.runtime_modify(**{KEY: value})
    (e_counts, e_stats), (s_counts, s_stats) = (measured_load(p_, pair.fleet, n, STATS) for p_ in pair.both())
    # Clients only ever see the primary.
    assert e_counts == s_counts == {"demoapp-v1.0": n}
    expected = {
        "http.ingress_http.downstream_rq_total": 1.0,
        "http.ingress_http.downstream_rq_2xx": 1.0,
        "http.ingress_http.downstream_rq_4xx": 0.0,
        "http.ingress_http.downstream_rq_5xx": 0.0,
        "http.ingress_http.no_route": 0.0,
        "cluster.demoappv10.upstream_rq_total": 1.0,
        "cluster.demoappv10.upstream_rq_200": 1.0,
        "cluster.demoappv11.upstream_rq_total": p,
        "cluster.demoappv11.upstream_rq_200": p,
    }
    check_rates(n, expected, e_stats, s_stats)
