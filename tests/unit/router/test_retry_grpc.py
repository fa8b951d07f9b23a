"""gRPC retry conditions, as Envoy's ``RetryStateImpl::wouldRetryFromHeaders`` reads them:
``grpc-status`` of the response headers (a trailers-only response), the five ``retry_on``
conditions, from the route or an internal request's ``x-envoy-retry-grpc-on``."""

from __future__ import annotations

import random

import pytest
from envoy.config.route.v3 import route_components_pb2
from google.protobuf import json_format

from sluice.http.headers import RequestHeaders, ResponseHeaders
from sluice.route.retry_policy import (
    RETRY_ON_GRPC_ANY,
    RETRY_ON_GRPC_CANCELLED,
    RETRY_ON_GRPC_DEADLINE_EXCEEDED,
    RETRY_ON_GRPC_INTERNAL,
    RETRY_ON_GRPC_RESOURCE_EXHAUSTED,
    RETRY_ON_GRPC_UNAVAILABLE,
    RetryPolicy,
    parse_retry_on,
)
from sluice.router.retry import Decision, RetryCounter, RetryState, RetryStatus, would_retry_grpc


class Counter:
    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class Stats:
    def __init__(self) -> None:
        for n in (
            "upstream_rq_retry",
            "upstream_rq_retry_success",
            "upstream_rq_retry_overflow",
            "upstream_rq_retry_limit_exceeded",
            "upstream_rq_retry_backoff_exponential",
        ):
            setattr(self, n, Counter())


def policy(**kw: object) -> RetryPolicy:
    return RetryPolicy.from_proto(json_format.ParseDict(kw, route_components_pb2.RetryPolicy()), "route.retry_policy")


def state(p: RetryPolicy | None, *headers: tuple[str, str], internal: bool = False) -> RetryState | None:
    req = RequestHeaders("POST", "/pkg.Svc/M", "h", [["content-type", "application/grpc"], *[[k, v] for k, v in headers]])
    return RetryState.create(p, req, internal, Stats(), RetryCounter(), random.Random(1))


def trailers_only(grpc_status: str | None, status: int = 200) -> ResponseHeaders:
    entries = [["content-type", "application/grpc"]]
    if grpc_status is not None:
        entries.append(["grpc-status", grpc_status])
    return ResponseHeaders(status, entries)


CONDITIONS = [
    ("cancelled", 1, RETRY_ON_GRPC_CANCELLED),
    ("deadline-exceeded", 4, RETRY_ON_GRPC_DEADLINE_EXCEEDED),
    ("resource-exhausted", 8, RETRY_ON_GRPC_RESOURCE_EXHAUSTED),
    ("internal", 13, RETRY_ON_GRPC_INTERNAL),
    ("unavailable", 14, RETRY_ON_GRPC_UNAVAILABLE),
]


@pytest.mark.parametrize(("name", "code", "bit"), CONDITIONS)
def test_each_condition_retries_its_status_only(name: str, code: int, bit: int) -> None:
    assert parse_retry_on(name, grpc=True) == (bit, True)
    for other in range(17):
        assert would_retry_grpc(bit, other) is (other == code)
    st = state(policy(retry_on=name))
    assert st is not None
    assert st.would_retry_headers(200, trailers_only(str(code))) is Decision.RETRY_WITH_BACKOFF
    assert st.would_retry_headers(200, trailers_only("0")) is Decision.NO_RETRY
    assert st.would_retry_grpc(code) is Decision.RETRY_WITH_BACKOFF


def test_all_five_bits() -> None:
    assert parse_retry_on("cancelled,deadline-exceeded,internal,resource-exhausted,unavailable", grpc=True)[0] == RETRY_ON_GRPC_ANY


def test_no_status_invalid_or_user_defined_never_retries() -> None:
    assert not would_retry_grpc(RETRY_ON_GRPC_ANY, None)
    assert not would_retry_grpc(RETRY_ON_GRPC_ANY, -1)
    st = state(policy(retry_on="cancelled,deadline-exceeded,internal,resource-exhausted,unavailable"))
    assert st is not None
    for value in (None, "", "abc", "99", "14x", "2"):
        assert st.would_retry_headers(200, trailers_only(value)) is Decision.NO_RETRY, value


def test_a_5xx_condition_does_not_read_grpc_status_and_vice_versa() -> None:
    st = state(policy(retry_on="5xx"))
    assert st is not None
    assert st.would_retry_headers(200, trailers_only("14")) is Decision.NO_RETRY
    st = state(policy(retry_on="unavailable"))
    assert st is not None
    assert st.would_retry_headers(503, ResponseHeaders(503)) is Decision.NO_RETRY


def test_grpc_status_on_a_non_200_still_counts() -> None:
    # Envoy reads grpc-status from the headers whatever :status says.
    st = state(policy(retry_on="unavailable"))
    assert st is not None
    assert st.would_retry_headers(503, trailers_only("14", status=503)) is Decision.RETRY_WITH_BACKOFF


def test_ratelimited_response_is_only_envoy_ratelimited() -> None:
    st = state(policy(retry_on="unavailable"))
    assert st is not None
    h = trailers_only("14")
    h.add("x-envoy-ratelimited", "true")
    assert st.would_retry_headers(200, h) is Decision.NO_RETRY


def test_caller_may_pass_the_parsed_status() -> None:
    st = state(policy(retry_on="internal"))
    assert st is not None
    # A status the caller read (e.g. from trailers it holds) is used instead of the headers'.
    assert st.would_retry_headers(200, trailers_only(None), grpc_status=13) is Decision.RETRY_WITH_BACKOFF
    assert st.would_retry_headers(200, trailers_only("13"), grpc_status=0) is Decision.NO_RETRY


def test_route_retry_on_mixes_http_and_grpc_tokens() -> None:
    p = policy(retry_on="5xx,unavailable")
    st = state(p)
    assert st is not None
    assert st.would_retry_headers(503, ResponseHeaders(503)) is Decision.RETRY_WITH_BACKOFF
    assert st.would_retry_headers(200, trailers_only("14")) is Decision.RETRY_WITH_BACKOFF
    assert st.would_retry_headers(200, trailers_only("13")) is Decision.NO_RETRY


def test_x_envoy_retry_grpc_on_from_an_internal_request() -> None:
    st = state(None, ("x-envoy-retry-grpc-on", "cancelled, unavailable"), internal=True)
    assert st is not None
    assert st.retry_on == RETRY_ON_GRPC_CANCELLED | RETRY_ON_GRPC_UNAVAILABLE
    assert st.would_retry_headers(200, trailers_only("1")) is Decision.RETRY_WITH_BACKOFF
    assert st.would_retry_headers(200, trailers_only("14")) is Decision.RETRY_WITH_BACKOFF
    assert st.would_retry_headers(200, trailers_only("4")) is Decision.NO_RETRY


def test_x_envoy_retry_grpc_on_ignored_from_an_external_request() -> None:
    # (The connection manager strips it from external requests before the router runs.)
    req = RequestHeaders("POST", "/", "h", [["x-envoy-retry-grpc-on", "unavailable"]])
    assert RetryState.create(None, req, False, Stats(), RetryCounter(), random.Random(1)) is None


def test_x_envoy_retry_grpc_on_merges_with_the_route() -> None:
    st = state(policy(retry_on="5xx"), ("x-envoy-retry-grpc-on", "internal"), internal=True)
    assert st is not None
    assert st.would_retry_headers(200, trailers_only("13")) is Decision.RETRY_WITH_BACKOFF
    assert st.would_retry_headers(500, ResponseHeaders(500)) is Decision.RETRY_WITH_BACKOFF


def test_http_tokens_in_the_grpc_header_are_ignored() -> None:
    st = state(None, ("x-envoy-retry-grpc-on", "5xx"), internal=True)
    assert st is not None  # the header alone makes a state, as Envoy's create()
    assert st.retry_on == 0
    assert st.would_retry_headers(503, ResponseHeaders(503)) is Decision.NO_RETRY


def test_a_grpc_retry_takes_the_budget_like_any_other() -> None:
    st = state(policy(retry_on="unavailable", num_retries=1))
    assert st is not None
    assert st.should_retry(st.would_retry_headers(200, trailers_only("14"))) is RetryStatus.YES
    assert st.should_retry(st.would_retry_headers(200, trailers_only("14"))) is RetryStatus.NO_RETRY_LIMIT_EXCEEDED
