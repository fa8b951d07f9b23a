"""sluice.router.timeouts: Envoy 1.40's FilterUtility::finalTimeout and setTimeoutHeaders as pure
functions over a compiled route and the request headers (tests/integration/test_grpc_timeout.py
checks the same rules against the real Envoy)."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from google.protobuf import json_format

from sluice.http.headers import RequestHeaders
from sluice.route.table import RouteEntry, RouteTable
from sluice.router.timeouts import Timeouts, expected_timeout_ms, final_timeout, rewrites_grpc_timeout, set_timeout_headers
from sluice.runtime import Runtime

GRPC = ("content-type", "application/grpc")


def route(**action: Any) -> RouteEntry:
    rc = {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c", **action}}]}]}
    entry: RouteEntry = RouteTable(json_format.ParseDict(rc, RouteConfiguration()), "rc", Runtime([])).virtual_hosts[0].routes[0]
    return entry


def req(*entries: tuple[str, str]) -> RequestHeaders:
    return RequestHeaders("POST", "/pkg.Svc/Method", "host", [[k, v] for k, v in entries])


# -- the global timeout ---------------------------------------------------------------------
def test_a_route_without_grpc_fields_takes_its_timeout_whatever_the_header() -> None:
    assert final_timeout(route(timeout="0.2s"), req(GRPC, ("grpc-timeout", "10S")), False) == Timeouts(0.2, 0.0, 0.0, False)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("200m", 0.2),
        ("1S", 1.0),
        (None, 0.0),  # no header, max 0: no timeout at all (the route's 5 s is not used)
        ("1x", 0.0),  # malformed: as no header
        ("123456789m", 0.0),  # over 8 digits: as no header
    ],
)
def test_legacy_max_zero_takes_the_header_as_is(header: str | None, expected: float) -> None:
    h = req(GRPC) if header is None else req(GRPC, ("grpc-timeout", header))
    assert final_timeout(route(timeout="5s", max_grpc_timeout="0s"), h, False) == Timeouts(expected, 0.0, 0.0, True)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("250m", 0.2),  # minus the 50 ms offset
        ("10S", 0.3),  # capped at the max (after the offset)
        (None, 0.3),  # no header: the max
        ("1x", 0.3),
        ("40m", 0.04),  # an offset not below the header is not applied
        ("50m", 0.05),
    ],
)
def test_legacy_max_caps_the_header_minus_the_offset(header: str | None, expected: float) -> None:
    r = route(timeout="5s", max_grpc_timeout="0.3s", grpc_timeout_offset="0.05s")
    h = req(GRPC) if header is None else req(GRPC, ("grpc-timeout", header))
    assert final_timeout(r, h, False).global_timeout == pytest.approx(expected)


def test_legacy_fields_leave_a_non_grpc_request_alone() -> None:
    r = route(timeout="5s", max_grpc_timeout="0.3s")
    assert final_timeout(r, req(("grpc-timeout", "200m")), False) == Timeouts(5.0, 0.0, 0.0, False)
    # gRPC-Web is not gRPC (Grpc::Common::hasGrpcContentType)
    assert final_timeout(r, req(("content-type", "application/grpc-web"), ("grpc-timeout", "200m")), False).global_timeout == 5.0
    assert final_timeout(r, req(("content-type", "application/grpc+proto")), False).global_timeout == 0.3


def test_max_stream_duration_means_no_route_timeout() -> None:
    r = route(timeout="0.2s", max_grpc_timeout="1s", max_stream_duration={"grpc_timeout_header_max": "1s"})
    assert final_timeout(r, req(GRPC, ("grpc-timeout", "100m")), False) == Timeouts(0.0, 0.0, 0.0, False)
    assert final_timeout(r, req(), False) == Timeouts(0.0, 0.0, 0.0, False)


# -- the request's timeout headers (internal requests) ----------------------------------------
def test_an_internal_requests_header_wins_over_the_grpc_timeout_and_is_removed() -> None:
    h = req(GRPC, ("grpc-timeout", "10S"), ("x-envoy-upstream-rq-timeout-ms", "250"))
    assert final_timeout(route(max_grpc_timeout="0s"), h, True) == Timeouts(0.25, 0.0, 0.0, True)
    assert "x-envoy-upstream-rq-timeout-ms" not in h


def test_a_header_that_is_no_number_is_ignored_and_removed() -> None:
    h = req(("x-envoy-upstream-rq-timeout-ms", "soon"), ("x-envoy-upstream-rq-per-try-timeout-ms", "-1"))
    assert final_timeout(route(timeout="3s"), h, True) == Timeouts(3.0, 0.0, 0.0, False)
    assert "x-envoy-upstream-rq-timeout-ms" not in h and "x-envoy-upstream-rq-per-try-timeout-ms" not in h


def test_an_external_request_is_not_read() -> None:
    """(The connection manager already removed them from an external request.)"""
    h = req(("x-envoy-upstream-rq-timeout-ms", "250"))
    assert final_timeout(route(timeout="3s"), h, False).global_timeout == 3.0


def test_the_header_also_sets_a_timeout_under_max_stream_duration() -> None:
    h = req(("x-envoy-upstream-rq-timeout-ms", "250"))
    assert final_timeout(route(max_stream_duration={}), h, True).global_timeout == 0.25


# -- per-try timeouts -----------------------------------------------------------------------
RETRY = {"retry_on": "5xx", "num_retries": 1, "per_try_timeout": "0.15s", "per_try_idle_timeout": "0.5s"}


def test_per_try_below_the_grpc_timeout_is_kept() -> None:
    t = final_timeout(route(max_grpc_timeout="0s", retry_policy=RETRY), req(GRPC, ("grpc-timeout", "1S")), False)
    assert t == Timeouts(1.0, 0.15, 0.5, True)


def test_per_try_at_or_above_the_global_timeout_is_dropped() -> None:
    r = route(max_grpc_timeout="0s", retry_policy=RETRY)
    assert final_timeout(r, req(GRPC, ("grpc-timeout", "100m")), False).per_try == 0.0
    assert final_timeout(r, req(GRPC, ("grpc-timeout", "150m")), False).per_try == 0.0


def test_per_try_is_kept_without_a_global_timeout() -> None:
    assert final_timeout(route(max_stream_duration={}, retry_policy=RETRY), req(GRPC), False).per_try == 0.15
    assert final_timeout(route(max_grpc_timeout="0s", retry_policy=RETRY), req(GRPC), False).per_try == 0.15


def test_an_internal_per_try_header_replaces_the_policys() -> None:
    h = req(("x-envoy-upstream-rq-per-try-timeout-ms", "40"))
    assert final_timeout(route(timeout="1s", retry_policy=RETRY), h, True).per_try == 0.04


# -- the headers written upstream -----------------------------------------------------------
@pytest.mark.parametrize(
    ("global_timeout", "per_try", "elapsed", "expected"),
    [
        (15.0, 0.0, 0, 15000),
        (1.0, 0.15, 0, 150),  # the per-try timeout when there is one
        (1.0, 0.15, 900, 100),  # capped by what is left of the global timeout
        (1.0, 0.15, 1000, 1),  # none left: 1 ms (0 would mean infinite)
        (1.0, 0.15, 5000, 1),
        (0.0, 0.15, 5000, 150),  # no global timeout: the per-try one, uncapped
        (0.0, 0.0, 0, 0),  # none
    ],
)
def test_expected_timeout(global_timeout: float, per_try: float, elapsed: int, expected: int) -> None:
    assert expected_timeout_ms(global_timeout, per_try, elapsed) == expected


def test_set_timeout_headers_rewrites_grpc_timeout_in_place() -> None:
    h = req(GRPC, ("grpc-timeout", "10S"), ("te", "trailers"))
    set_timeout_headers(h, 0.3, 0.0, 0, True)
    assert h.entries == [
        ["content-type", "application/grpc"],
        ["grpc-timeout", "300m"],
        ["te", "trailers"],
        ["x-envoy-expected-rq-timeout-ms", "300"],
    ]


def test_set_timeout_headers_adds_grpc_timeout_after_the_expected_timeout() -> None:
    h = req(GRPC)
    set_timeout_headers(h, 200.0, 0.0, 0, True)
    assert h.entries[1:] == [["x-envoy-expected-rq-timeout-ms", "200000"], ["grpc-timeout", "200000m"]]
    h = req(GRPC)
    set_timeout_headers(h, 200_000.0, 0.0, 0, True)  # (toGrpcTimeout: seconds past 8 digits of ms)
    assert h.get("grpc-timeout") == "200000S"


def test_set_timeout_headers_writes_nothing_without_a_timeout() -> None:
    h = req(GRPC, ("grpc-timeout", "1x"))
    set_timeout_headers(h, 0.0, 0.0, 0, True)
    assert h.entries == [["content-type", "application/grpc"], ["grpc-timeout", "1x"]]


def test_set_timeout_headers_leaves_grpc_timeout_unless_asked() -> None:
    h = req(GRPC, ("grpc-timeout", "10S"))
    set_timeout_headers(h, 0.2, 0.0, 0, False)
    assert h.get("grpc-timeout") == "10S" and h.get("x-envoy-expected-rq-timeout-ms") == "200"


def test_rewrites_grpc_timeout_only_for_grpc_on_a_legacy_route() -> None:
    legacy = route(max_grpc_timeout="0s")
    assert rewrites_grpc_timeout(legacy, req(GRPC))
    assert not rewrites_grpc_timeout(legacy, req())
    assert not rewrites_grpc_timeout(route(), req(GRPC))
    assert not rewrites_grpc_timeout(route(max_grpc_timeout="0s", max_stream_duration={}), req(GRPC))
