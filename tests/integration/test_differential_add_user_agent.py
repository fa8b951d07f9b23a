"""Differential: ``add_user_agent`` on the course's monitoring front proxy
(``labs/monitoring/front_envoy/envoy-config.yaml``: ``use_remote_address: true``,
``add_user_agent: true``, node ``front-envoy``/``mycluster``) through the real Envoy and Sluice.

What the upstream receives must match header for header: ``x-envoy-downstream-service-cluster``
(always set, spoofed values replaced), ``user-agent`` (the cluster name only when absent or
empty), ``x-envoy-downstream-service-node``, and their order among the edge headers. Variants:
the seed; an internal request (``internal_address_config`` lists loopback, so the request is
not an edge request); a node without a cluster (the user agent is then empty; the sink becomes
UDP because a TCP sink needs the node's cluster).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from harness import Fleet, LoopThread, ProxyProcess, Req, assert_same_exchanges, free_port, load_seed, localize, run_sequence

pytestmark = pytest.mark.envoy

LAB = "monitoring"
SPOOFED = [("x-envoy-downstream-service-cluster", "evil"), ("x-envoy-downstream-service-node", "evil-node")]
INTERNAL_ONLY = [("x-envoy-max-retries", "3"), ("x-envoy-retriable-status-codes", "503"), ("x-envoy-internal", "true")]
REQUESTS = [
    Req("GET", "/echo", [("User-Agent", "curl/7.68.0"), ("Accept", "*/*")]),
    Req("GET", "/echo"),
    Req("GET", "/echo", [("User-Agent", "")]),
    Req("GET", "/echo", [("User-Agent", "curl/7.68.0"), *SPOOFED]),
    Req("GET", "/echo", SPOOFED),
    Req("GET", "/echo", [("X-Forwarded-For", "203.0.113.9"), ("User-Agent", "ua"), ("X-Envoy-Decorator-Operation", "op")]),
    # Internal-only headers: kept only for an internal request. Without use_remote_address (the
    # seed) only XFF's single address can make it internal, not the loopback peer.
    Req("GET", "/echo", INTERNAL_ONLY),
    Req("GET", "/echo", [("X-Forwarded-For", "127.0.0.5"), *INTERNAL_ONLY]),
    Req("GET", "/echo", [("X-Forwarded-For", "203.0.113.9, 127.0.0.5"), *INTERNAL_ONLY]),
]


def _seed() -> dict[str, Any]:
    cfg = load_seed(LAB, "front_envoy/envoy-config.yaml")
    # The seed writes its one filter chain as a mapping (a v2 habit Sluice reads as a list);
    # the harness and Envoy 1.40 want the list.
    for lst in cfg["static_resources"]["listeners"]:
        if isinstance(lst["filter_chains"], dict):
            lst["filter_chains"] = [lst["filter_chains"]]
    return cfg


def _internal(cfg: dict[str, Any]) -> None:
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["internal_address_config"] = {"cidr_ranges": [{"address_prefix": "127.0.0.0", "prefix_len": 8}]}


def _no_cluster(cfg: dict[str, Any]) -> None:
    del cfg["node"]["cluster"]
    sink = cfg["stats_sinks"][0]["typed_config"]
    del sink["tcp_cluster_name"]
    sink["address"] = {"socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": free_port()}}


def _internal_from_xff(cfg: dict[str, Any]) -> None:
    """Internal ranges without use_remote_address: only XFF's single address can be internal."""
    _internal(cfg)
    cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["use_remote_address"] = False


VARIANTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "seed": lambda cfg: None,
    "internal": _internal,
    "internal_from_xff": _internal_from_xff,
    "no_cluster": _no_cluster,
}


@pytest.fixture(scope="module")
def fleet(loop: LoopThread) -> Iterator[Fleet]:
    f = Fleet(loop, {"service_a_envoy": ["service_a"]})
    yield f
    f.stop()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_upstream_headers_match_envoy(
    variant: str, fleet: Fleet, start_proxy: Callable[[str, dict[str, Any]], ProxyProcess]
) -> None:
    # Nothing listens on the StatsD port: the sink's failures must not show in the exchanges.
    endpoints = {**fleet.endpoints, "statsd_exporter": [("127.0.0.1", free_port())]}
    results = []
    for kind in ("envoy", "sluice"):
        seed = copy.deepcopy(_seed())
        VARIANTS[variant](seed)
        proxy = start_proxy(kind, localize(seed, endpoints, free_port(), [free_port()], for_envoy=kind == "envoy"))
        results.append(run_sequence(proxy, fleet, REQUESTS))
    envoy, sluice = results
    assert_same_exchanges(envoy, sluice)
    got = envoy[1]["upstream"]["service_a_envoy"][0]["headers"]
    if variant != "no_cluster":
        assert ("user-agent", "mycluster") in got and ("x-envoy-downstream-service-cluster", "mycluster") in got
    assert ("x-envoy-downstream-service-node", "front-envoy") in got
