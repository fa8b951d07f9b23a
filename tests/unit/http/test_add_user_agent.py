"""``add_user_agent`` (ConnectionManagerUtility::mutateRequestHeaders), driven without sockets."""

from __future__ import annotations

import ipaddress

from sluice.http.conn_manager import ActiveStream
from sluice.http.headers import RequestHeaders

from .test_filter_manager import make


def mutate(entries: list[list[str]], *, user_agent: str | None = "mycluster", node: str = "front-envoy",
           edge: bool = True, internal: bool = False) -> list[list[str]]:
    cfg, conn = make(["terminal"], [], {})
    cfg.user_agent, cfg.service_node, cfg.use_remote_address = user_agent, node, edge
    cfg.generate_request_id = False
    if internal:
        cfg.internal_networks = (ipaddress.ip_network("10.0.0.0/8"),)
    h = RequestHeaders("GET", "/", "h", entries)
    ActiveStream(conn, h, True).start()  # type: ignore[arg-type]
    return [e for e in h.entries if e[0] not in ("x-forwarded-for", "x-forwarded-proto")]


def test_absent_user_agent_gets_the_cluster_and_both_headers_in_envoys_order() -> None:
    assert mutate([]) == [
        ["x-envoy-downstream-service-cluster", "mycluster"],
        ["user-agent", "mycluster"],
        ["x-envoy-downstream-service-node", "front-envoy"],
        ["x-envoy-external-address", "10.1.2.3"],
    ]


def test_a_client_user_agent_is_kept_an_empty_one_replaced_in_place() -> None:
    assert mutate([["user-agent", "curl/7.68.0"]])[0] == ["user-agent", "curl/7.68.0"]
    assert mutate([["user-agent", ""], ["accept", "*/*"]])[:2] == [["user-agent", "mycluster"], ["accept", "*/*"]]


def test_spoofed_downstream_headers_are_replaced_edge_or_internal() -> None:
    spoofed = [["x-envoy-downstream-service-cluster", "evil"], ["x-envoy-downstream-service-node", "evil"]]
    got = mutate([*spoofed, ["user-agent", "ua"]])
    assert ["x-envoy-downstream-service-cluster", "mycluster"] in got and ["x-envoy-downstream-service-node", "front-envoy"] in got
    got = mutate([*spoofed, ["user-agent", "ua"]], internal=True)  # internal: kept in place, values set
    assert got[:2] == [["x-envoy-downstream-service-cluster", "mycluster"], ["x-envoy-downstream-service-node", "front-envoy"]]


def test_no_node_name_no_node_header_and_an_empty_cluster_is_still_set() -> None:
    got = mutate([], user_agent="", node="")
    assert ["x-envoy-downstream-service-cluster", ""] in got and ["user-agent", ""] in got
    assert not any(e[0] == "x-envoy-downstream-service-node" for e in got)


def test_off_by_default() -> None:
    assert mutate([["user-agent", ""]], user_agent=None) == [["user-agent", ""], ["x-envoy-external-address", "10.1.2.3"]]


def test_a_client_external_address_is_overwritten_in_place_at_the_edge() -> None:
    # Envoy 1.40 (checked with a raw upstream): the edge's value replaces the client's where it
    # stands; the other edge-only headers are removed.
    got = mutate([["x-envoy-external-address", "spoof"], ["x-envoy-downstream-service-cluster", "sp"], ["x-a", "1"]], user_agent=None)
    assert got == [["x-envoy-external-address", "10.1.2.3"], ["x-a", "1"]]
