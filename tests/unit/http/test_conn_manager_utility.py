"""ConnectionManagerUtility as pure functions: what the request headers become."""

from __future__ import annotations

import ipaddress
import random

from sluice.http import conn_manager_utility as util
from sluice.http.hcm_config import HcmConfig
from sluice.http.headers import RequestHeaders
from sluice.http.stream_info import StreamInfo
from sluice.stats.store import Store


def cfg(**kw: object) -> HcmConfig:
    return HcmConfig(stat_prefix="t", store=Store(), route_table=None, filter_factories=[], rng=random.Random(7), **kw)  # type: ignore[arg-type]


def run(c: HcmConfig, entries: list[list[str]], peer: str = "10.0.0.9") -> tuple[RequestHeaders, StreamInfo, bool, bool]:
    h = RequestHeaders("GET", "/", "h", [list(e) for e in entries])
    info = StreamInfo((peer, 1234), ("127.0.0.1", 80))
    names = {e[0] for e in h.entries}
    internal, close = util.mutate_request_headers(c, h, info, util.is_upgrade(h), names)
    return h, info, internal, close


def test_hop_by_hop_go_te_trailers_stays_and_close_is_reported() -> None:
    h, _, _, close = run(cfg(generate_request_id=False), [["connection", "close"], ["keep-alive", "1"], ["te", "trailers"], ["a", "1"]])
    assert close
    assert h.entries == [["te", "trailers"], ["a", "1"], ["x-forwarded-proto", "http"]]


def test_use_remote_address_appends_the_peer_and_is_edge() -> None:
    h, info, internal, _ = run(
        cfg(use_remote_address=True, generate_request_id=False), [["x-forwarded-for", "1.2.3.4"], ["x-envoy-internal", "true"]]
    )
    assert h.get("x-forwarded-for") == "1.2.3.4,10.0.0.9"
    assert h.get("x-envoy-external-address") == "10.0.0.9"
    assert "x-envoy-internal" not in h and not internal
    assert info.downstream_remote_address == ("10.0.0.9", 1234)


def test_without_use_remote_address_the_address_comes_from_xff() -> None:
    _, info, _, _ = run(cfg(generate_request_id=False), [["x-forwarded-for", "5.6.7.8"]])
    assert info.downstream_remote_address == ("5.6.7.8", 0)


def test_an_internal_range_marks_the_request_internal() -> None:
    c = cfg(use_remote_address=True, generate_request_id=False)
    c.internal_networks = (ipaddress.ip_network("10.0.0.0/8"),)
    h, _, internal, _ = run(c, [])
    assert internal and h.get("x-envoy-internal") == "true"


def test_request_id_generated_kept_or_replaced_at_the_edge() -> None:
    h, info, _, _ = run(cfg(), [])
    rid = h.get("x-request-id")
    assert rid is not None and len(rid) == 36 and rid[14] == "4" and info.request_id == rid
    h, _, _, _ = run(cfg(), [["x-request-id", "mine"]])
    assert h.get("x-request-id") == "mine"
    h, _, _, _ = run(cfg(use_remote_address=True), [["x-request-id", "mine"]])
    assert h.get("x-request-id") != "mine"


def test_xff_address_counts_from_the_right_and_wants_an_ip() -> None:
    h = RequestHeaders("GET", "/", "h", [["x-forwarded-for", "1.1.1.1, 2.2.2.2,bogus"]])
    assert util.xff_address(h, 0) is None
    assert util.xff_address(h, 1) == "2.2.2.2"
    assert util.xff_address(h, 2) == "1.1.1.1"
    assert util.xff_address(h, 3) is None
