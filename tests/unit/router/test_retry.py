"""RetryPolicy parsing and RetryState decisions (pure) and effects (budget, breaker, back-off)."""

from __future__ import annotations

import random

import pytest
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from google.protobuf import json_format

from sluice.errors import ConfigError
from sluice.http.headers import RequestHeaders, ResponseHeaders
from sluice.route.retry_policy import (
    RETRY_ON_5XX,
    RETRY_ON_CONNECT_FAILURE,
    RETRY_ON_GATEWAY_ERROR,
    RETRY_ON_GRPC_CANCELLED,
    RetryPolicy,
    parse_retry_on,
)
from sluice.router.retry import Decision, RetryCounter, RetryState, RetryStatus, retry_resource


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


assert previous_hosts_pb2  # registers the predicate's type URL for ParseDict

PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
}


def policy(**kw: object) -> RetryPolicy:
    msg = json_format.ParseDict(kw, route_components_pb2.RetryPolicy())
    return RetryPolicy.from_proto(msg, "route.retry_policy")


def req(*headers: tuple[str, str]) -> RequestHeaders:
    return RequestHeaders("GET", "/", "h", [[k, v] for k, v in headers], "http")


def state(p: RetryPolicy, *headers: tuple[str, str], internal: bool = False, seed: int = 1, limit: int = 3) -> RetryState:
    st = RetryState.create(p, req(*headers), internal, Stats(), RetryCounter(limit), random.Random(seed))
    assert st is not None
    return st


def resp(status: int, *headers: tuple[str, str]) -> ResponseHeaders:
    return ResponseHeaders(status, [[k, v] for k, v in headers])


# -- parsing ---------------------------------------------------------------------------------
def test_parse_retry_on_tokens() -> None:
    assert parse_retry_on("5xx, gateway-error ,connect-failure") == (
        RETRY_ON_5XX | RETRY_ON_GATEWAY_ERROR | RETRY_ON_CONNECT_FAILURE,
        True,
    )
    assert parse_retry_on("5xx,bogus") == (RETRY_ON_5XX, False)
    assert parse_retry_on("cancelled", grpc=True) == (RETRY_ON_GRPC_CANCELLED, True)


def test_policy_defaults_and_fields() -> None:
    p = policy(retry_on="5xx,cancelled")
    assert p.num_retries == 1 and p.per_try_timeout == 0 and p.retry_on == RETRY_ON_5XX | RETRY_ON_GRPC_CANCELLED
    p = policy(
        retry_on="retriable-status-codes",
        num_retries=4,
        per_try_timeout="0.3s",
        per_try_idle_timeout="1s",
        retriable_status_codes=[418, 409],
        retry_back_off={"base_interval": "0.1s", "max_interval": "0.5s"},
        retry_host_predicate=[PREVIOUS_HOSTS],
        host_selection_retry_max_attempts=3,
    )
    assert (p.num_retries, p.per_try_timeout, p.per_try_idle_timeout) == (4, 0.3, 1.0)
    assert p.retriable_status_codes == (418, 409)
    assert (p.base_interval_ms, p.max_interval_ms) == (100, 500)
    assert p.previous_hosts and p.host_selection_max_attempts == 3


def test_host_predicate_needs_a_typed_config() -> None:
    with pytest.raises(ConfigError, match="Didn't find a registered implementation"):
        policy(retry_on="5xx", retry_host_predicate=[{"name": "envoy.retry_host_predicates.previous_hosts"}])


def test_policy_back_off_checks() -> None:
    with pytest.raises(ConfigError, match="max_interval must be greater than or equal to the base_interval"):
        policy(retry_on="5xx", retry_back_off={"base_interval": "1s", "max_interval": "0.5s"})
    with pytest.raises(ConfigError, match="base_interval"):
        policy(retry_on="5xx", retry_back_off={"base_interval": "0s"})


# -- would_retry (pure) ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("retry_on", "status", "retry"),
    [
        ("5xx", 500, True),
        ("5xx", 503, True),
        ("5xx", 404, False),
        ("gateway-error", 500, False),
        ("gateway-error", 502, True),
        ("gateway-error", 503, True),
        ("gateway-error", 504, True),
        ("retriable-4xx", 409, True),
        ("retriable-4xx", 400, False),
        ("connect-failure", 503, False),
        ("reset", 503, False),
        ("cancelled,unavailable", 503, False),
    ],
)
def test_would_retry_headers(retry_on: str, status: int, retry: bool) -> None:
    st = state(policy(retry_on=retry_on))
    want = Decision.RETRY_WITH_BACKOFF if retry else Decision.NO_RETRY
    assert st.would_retry_headers(status, resp(status)) is want
    assert st.retries_remaining == 1  # pure: nothing taken


def test_would_retry_status_codes_and_headers() -> None:
    st = state(
        policy(
            retry_on="retriable-status-codes,retriable-headers",
            retriable_status_codes=[418],
            retriable_headers=[{"name": ":status", "string_match": {"exact": "429"}}, {"name": "x-again"}],
        )
    )
    assert st.would_retry_headers(418, resp(418)) is Decision.RETRY_WITH_BACKOFF
    assert st.would_retry_headers(429, resp(429)) is Decision.RETRY_WITH_BACKOFF
    assert st.would_retry_headers(200, resp(200, ("x-again", "1"))) is Decision.RETRY_WITH_BACKOFF
    assert st.would_retry_headers(200, resp(200)) is Decision.NO_RETRY


def test_envoy_ratelimited_only_under_its_condition() -> None:
    limited = resp(503, ("x-envoy-ratelimited", "true"))
    assert state(policy(retry_on="5xx")).would_retry_headers(503, limited) is Decision.NO_RETRY
    assert state(policy(retry_on="envoy-ratelimited")).would_retry_headers(503, limited) is Decision.RETRY_WITH_BACKOFF


@pytest.mark.parametrize(
    ("retry_on", "reason", "retry"),
    [
        ("connect-failure", "connect_failure", True),
        ("connect-failure", "local_reset", False),  # a per-try timeout
        ("connect-failure", "connection_termination", False),
        ("5xx", "local_reset", True),
        ("5xx", "connection_termination", True),
        ("gateway-error", "connect_failure", True),
        ("reset", "connection_termination", True),
        ("refused-stream", "refused_stream", True),
        ("refused-stream", "connection_termination", False),
        ("5xx", "overflow", False),
        ("retriable-4xx", "connect_failure", False),
    ],
)
def test_would_retry_reset(retry_on: str, reason: str, retry: bool) -> None:
    st = state(policy(retry_on=retry_on))
    assert (st.would_retry_reset(reason, True) is Decision.RETRY_WITH_BACKOFF) is retry


def test_reset_before_request() -> None:
    st = state(policy(retry_on="reset-before-request"))
    assert st.would_retry_reset("connection_termination", False) is Decision.RETRY_WITH_BACKOFF
    assert st.would_retry_reset("connection_termination", True) is Decision.NO_RETRY


# -- creation and request headers -------------------------------------------------------------
def test_no_state_without_retry_on() -> None:
    rng = random.Random(1)
    assert RetryState.create(None, req(), False, Stats(), RetryCounter(), rng) is None
    assert RetryState.create(policy(num_retries=3), req(), False, Stats(), RetryCounter(), rng) is None
    # External requests: retry headers are not read.
    assert RetryState.create(None, req(("x-envoy-retry-on", "5xx")), False, Stats(), RetryCounter(), rng) is None


def test_internal_request_headers_merge() -> None:
    h = req(("x-envoy-retry-on", "5xx"), ("x-envoy-max-retries", "2"), ("x-envoy-retriable-status-codes", "418, x"))
    st = RetryState.create(None, h, True, Stats(), RetryCounter(), random.Random(1))
    assert st is not None
    assert st.retry_on == RETRY_ON_5XX and st.retries_remaining == 2 and st.retriable_status_codes == [418]
    assert h.entries == []  # consumed
    # retry-on without max-retries: one retry (the default policy).
    st = state(policy(), ("x-envoy-retry-on", "gateway-error"), internal=True)
    assert st.retries_remaining == 1
    # max-retries overrides the route's num_retries.
    assert state(policy(retry_on="5xx", num_retries=3), ("x-envoy-max-retries", "5"), internal=True).retries_remaining == 5
    # bogus retry-on: no bits, max-retries ignored.
    st = state(policy(), ("x-envoy-retry-on", "bogus"), ("x-envoy-max-retries", "2"), internal=True)
    assert st.retry_on == 0 and st.retries_remaining == 1


def test_retriable_request_headers_gate_retries() -> None:
    p = policy(retry_on="5xx", retriable_request_headers=[{"name": ":method", "string_match": {"exact": "GET"}}])
    assert state(p).retry_on == RETRY_ON_5XX
    st = RetryState.create(p, RequestHeaders("POST", "/", "h", [], "http"), False, Stats(), RetryCounter(), random.Random(1))
    assert st is not None and st.retry_on == 0


# -- should_retry (effects) -------------------------------------------------------------------
def test_should_retry_budget_success_and_limit() -> None:
    counter = RetryCounter(3)
    stats = Stats()
    st = RetryState.create(policy(retry_on="5xx", num_retries=2), req(), False, stats, counter, random.Random(1))
    assert st is not None
    assert st.should_retry(Decision.RETRY_WITH_BACKOFF) is RetryStatus.YES
    assert counter.count == 1 and st.armed
    assert st.should_retry(Decision.RETRY_WITH_BACKOFF) is RetryStatus.YES
    assert counter.count == 1  # the previous slot was released first
    assert st.should_retry(Decision.RETRY_WITH_BACKOFF) is RetryStatus.NO_RETRY_LIMIT_EXCEEDED
    assert counter.count == 0
    assert (stats.upstream_rq_retry.value, stats.upstream_rq_retry_limit_exceeded.value) == (2, 1)
    assert stats.upstream_rq_retry_backoff_exponential.value == 2
    st2 = RetryState.create(policy(retry_on="5xx"), req(), False, stats, counter, random.Random(1))
    assert st2 is not None
    assert st2.should_retry(Decision.RETRY_WITH_BACKOFF) is RetryStatus.YES
    assert st2.should_retry(Decision.NO_RETRY) is RetryStatus.NO
    assert stats.upstream_rq_retry_success.value == 1 and counter.count == 0


def test_should_retry_overflow() -> None:
    counter = RetryCounter(1)
    stats = Stats()
    a = RetryState.create(policy(retry_on="5xx"), req(), False, stats, counter, random.Random(1))
    b = RetryState.create(policy(retry_on="5xx"), req(), False, stats, counter, random.Random(1))
    assert a is not None and b is not None
    assert a.should_retry(Decision.RETRY_WITH_BACKOFF) is RetryStatus.YES
    assert b.should_retry(Decision.RETRY_WITH_BACKOFF) is RetryStatus.NO_OVERFLOW
    assert stats.upstream_rq_retry_overflow.value == 1 and b.retries_remaining == 0
    a.release()
    assert counter.count == 0


def test_backoff_bounds_default_and_configured() -> None:
    # Envoy's JitteredExponentialBackOffStrategy: [0, min(base * 2^(n-1), max)).
    for seed in range(200):
        st = state(policy(retry_on="5xx", num_retries=10), seed=seed)
        bounds = [25, 50, 100, 200, 250, 250]
        for bound in bounds:
            assert 0 <= st.next_backoff_ms() < bound
    st = state(policy(retry_on="5xx", retry_back_off={"base_interval": "0.01s", "max_interval": "0.03s"}))
    assert st.next_interval == 10 and st.max_interval == 30
    draws = [st.next_backoff_ms() for _ in range(4)]
    assert draws[0] < 10 and all(d < 30 for d in draws)


def test_backoff_is_fully_jittered() -> None:
    st_values = []
    for seed in range(2000):
        st_values.append(state(policy(retry_on="5xx"), seed=seed).next_backoff_ms())
    # Uniform over [0, 25): mean 12, all values seen.
    assert set(st_values) == set(range(25))
    assert 11 < sum(st_values) / len(st_values) < 13


def test_previous_hosts_predicate() -> None:
    st = state(policy(retry_on="5xx", retry_host_predicate=[PREVIOUS_HOSTS]))
    a, b = object(), object()
    st.on_host_attempted(a)  # type: ignore[arg-type]
    assert st.would_select_another_host(a)  # type: ignore[arg-type]
    assert not st.would_select_another_host(b)  # type: ignore[arg-type]
    assert not state(policy(retry_on="5xx")).would_select_another_host(a)  # type: ignore[arg-type]


def test_retry_resource_prefers_cluster_resources() -> None:
    class RM:
        retry_budget = RetryCounter(7)

    class WithResources:
        resources = (RM(), RM())

    class Bare:
        pass

    assert retry_resource(WithResources()) is RM.retry_budget
    bare = Bare()
    r = retry_resource(bare)
    assert isinstance(r, RetryCounter) and r.max == 3 and retry_resource(bare) is r
