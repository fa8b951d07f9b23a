"""The tracing decision (``mutateTracingRequestHeader``) without sockets: which reason, what it
does to the x-request-id, and the sampling fractions with their runtime keys."""

from __future__ import annotations

import random
from typing import Any

from sluice.http.headers import RequestHeaders
from sluice.runtime import Layer, Runtime
from sluice.tracing.decision import Sampling, TracingConfig, decide, decorate_request
from sluice.tracing.request_id import Reason, UuidRequestId

RID = "11111111-2222-4333-8444-555555555555"
ALL = Sampling((100, 100), (10_000, 10_000), (10_000, 10_000))


def runtime(values: dict[str, str] | None = None) -> Runtime:
    rt = Runtime([Layer("admin", "admin")])
    if values:
        rt.merge_admin(values)
    return rt


def request(*extra: tuple[str, str], rid: str | None = RID) -> RequestHeaders:
    entries = [[k, v] for k, v in extra]
    if rid is not None:
        entries.insert(0, ["x-request-id", rid])
    return RequestHeaders("GET", "/", "h", entries)


def run(h: RequestHeaders, sampling: Sampling = ALL, route: Sampling | None = None, rt: Runtime | None = None, **kw: Any) -> Reason:
    return decide(h, TracingConfig(sampling, UuidRequestId(**kw)), route, rt or runtime(), random.Random(1))


def test_random_sampling_marks_the_id_9() -> None:
    h = request()
    assert run(h) is Reason.Sampling
    assert h.get("x-request-id") == "11111111-2222-9333-8444-555555555555"


def test_a_client_trace_id_forces_b_and_force_trace_a() -> None:
    h = request(("x-client-trace-id", "abc"))
    assert run(h) is Reason.ClientForced and h.get("x-request-id")[14] == "b"  # type: ignore[index]
    h = request(("x-envoy-force-trace", "1"))
    assert run(h) is Reason.ServiceForced and h.get("x-request-id")[14] == "a"  # type: ignore[index]


def test_an_id_already_traced_keeps_its_reason() -> None:
    h = request(("x-client-trace-id", "abc"), rid=RID[:14] + "9" + RID[15:])
    assert run(h) is Reason.Sampling


def test_no_or_bad_id_is_not_traceable_and_unchanged() -> None:
    assert run(request(rid=None)) is Reason.NotTraceable
    h = request(rid="notauuid")
    assert run(h) is Reason.NotTraceable and h.get("x-request-id") == "notauuid"


def test_an_id_of_35_characters_is_sampled_but_not_rewritten() -> None:
    h = request(rid="ffffffff-2222-4333-8444-55555555555")
    assert run(h) is Reason.Sampling and h.get("x-request-id") == "ffffffff-2222-4333-8444-55555555555"


def test_random_sampling_is_decided_on_the_ids_integer() -> None:
    """rid % 10000 < numerator: deterministic per id, so each id is its own case."""
    half = Sampling((100, 100), (5000, 10_000), (10_000, 10_000))
    for head, traced in (("00000000", True), ("00001387", True), ("00001388", False), ("0000270f", False)):  # 0, 4999, 5000, 9999
        assert (run(request(rid=head + RID[8:]), half) is Reason.Sampling) is traced, head


def test_overall_sampling_undoes_the_decision() -> None:
    h = request(("x-client-trace-id", "abc"))
    assert run(h, Sampling((100, 100), (10_000, 10_000), (0, 10_000))) is Reason.NotTraceable
    assert h.get("x-request-id") == RID  # (back to 4)


def test_a_routes_sampling_replaces_the_hcms() -> None:
    h = request()
    assert run(h, route=Sampling((100, 100), (0, 100), (100, 100))) is Reason.NotTraceable
    assert h.get("x-request-id") == RID


def test_runtime_keys_override_as_percentages() -> None:
    assert run(request(), rt=runtime({"tracing.random_sampling": "0"})) is Reason.NotTraceable
    assert run(request(), rt=runtime({"tracing.global_enabled": "0"})) is Reason.NotTraceable
    h = request(("x-client-trace-id", "abc"))
    assert run(h, rt=runtime({"tracing.client_enabled": "0"})) is Reason.Sampling  # (then sampled at random)


def test_client_sampling_is_random_within_bounds() -> None:
    """client_sampling 30 %: of 4000 requests the client-forced share is within 6 sigma of 0.3
    (sigma about 0.0072), so this does not flake."""
    cfg = TracingConfig(Sampling((30, 100), (0, 10_000), (10_000, 10_000)), UuidRequestId())
    rng, rt = random.Random(7), runtime()
    forced = sum(decide(request(("x-client-trace-id", "c")), cfg, None, rt, rng) is Reason.ClientForced for _ in range(4000))
    assert abs(forced / 4000 - 0.3) < 6 * (0.3 * 0.7 / 4000) ** 0.5


def test_without_using_the_id_every_request_is_sampled_and_left_alone() -> None:
    h = request()
    assert run(h, use_for_sampling=False) is Reason.Sampling and h.get("x-request-id") == RID


def test_the_decorator_goes_upstream_on_egress_and_back_on_ingress() -> None:
    egress = TracingConfig(ALL, UuidRequestId(), egress=True)
    h = request(("x-envoy-decorator-operation", "client"))
    assert decorate_request(h, egress, ("op", True)) is None and h.get("x-envoy-decorator-operation") == "op"
    h = request(("x-envoy-decorator-operation", "client"))
    assert decorate_request(h, egress, ("op", False)) is None and h.get("x-envoy-decorator-operation") == "client"
    ingress = TracingConfig(ALL, UuidRequestId())
    h = request(("x-envoy-decorator-operation", "client"))
    assert decorate_request(h, ingress, ("op", True)) is None  # (the caller's operation wins)
    assert "x-envoy-decorator-operation" not in h
    h = request(("x-envoy-decorator-operation", ""))
    assert decorate_request(h, ingress, ("op", True)) == "op" and "x-envoy-decorator-operation" not in h
    assert decorate_request(request(), ingress, ("op", False)) is None
