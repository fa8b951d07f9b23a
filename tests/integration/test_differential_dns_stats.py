"""DNS clusters' stats, differentially: the same STRICT_DNS / LOGICAL_DNS clusters (a name that
resolves, one that does not, each lookup family) through the real Envoy and through Sluice;
after the first resolution (the refresh rate is long, so exactly one) the clusters' update and
membership counters, ``default.total_match_count`` and the resolver's ``dns.cares.*`` must be
equal. (``localhost`` is asked for IPv4 only: this machine's /etc/hosts has no ``::1`` line,
where c-ares answers ``::1`` for it anyway and getaddrinfo does not.)"""

from __future__ import annotations

import re
import time

import pytest
from harness import ProxyProcess, free_port, wait_until

pytestmark = pytest.mark.envoy


def _cluster(name: str, kind: str, address: str, family: str) -> dict[str, object]:
    return {
        "name": name, "connect_timeout": "0.25s", "type": kind, "dns_refresh_rate": "60s", "dns_lookup_family": family,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": address, "port_value": 9}}}}]}]},
    }  # fmt: skip


CLUSTERS = [
    _cluster("strict_ok", "STRICT_DNS", "localhost", "V4_ONLY"),
    _cluster("logical_ok", "LOGICAL_DNS", "localhost", "V4_ONLY"),
    _cluster("strict_nx", "STRICT_DNS", "nothing-here.invalid", "AUTO"),
    _cluster("logical_nx", "LOGICAL_DNS", "nothing-here.invalid", "V4_PREFERRED"),
    _cluster("strict_nx_v4", "STRICT_DNS", "nothing-here.invalid", "V4_ONLY"),
    {"name": "static", "connect_timeout": "0.25s", "type": "STATIC", "load_assignment": {"cluster_name": "static", "endpoints": [
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}},
                          {"endpoint": {"address": {"socket_address": {"address": "127.0.0.2", "port_value": 9}}}}]}]}},
]  # fmt: skip

WANTED = re.compile(
    r"^(dns\.cares\.|cluster\.[a-z_0-9]+\.(update_|membership_(change|total|healthy)|default\.total_match_count|max_host_weight))"
)


def _dns_stats(kind: str) -> dict[str, int]:
    cfg = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
           "static_resources": {"listeners": [], "clusters": CLUSTERS}}  # fmt: skip
    proc = ProxyProcess(kind, cfg).start()
    try:
        # Ready means every cluster finished its first resolution.
        assert wait_until(lambda: proc.stats().get("cluster.logical_nx.update_attempt", 0) >= 1, timeout=10)
        time.sleep(0.3)
        return {n: v for n, v in proc.stats().items() if WANTED.search(n)}
    finally:
        proc.stop()


def test_dns_cluster_and_resolver_stats_as_envoy() -> None:
    envoy, sluice = _dns_stats("envoy"), _dns_stats("sluice")
    assert envoy["dns.cares.resolve_total"] > 0 and envoy["dns.cares.not_found"] > 0  # the case tests something
    assert sluice == envoy
