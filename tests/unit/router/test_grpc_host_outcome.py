"""A gRPC response's success for its host (``rq_success`` / ``rq_error``), as Envoy's router
decides it (handleNon5xxResponseHeaders, onUpstreamTrailers, onUpstreamData, chargeUpstreamAbort);
the differential side is tests/integration/test_grpc_differential.py (``host:`` stats)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.router import upstream_outcome as outcome
from sluice.stats.blocks import ClusterStats
from sluice.stats.store import Store


def _req() -> Any:
    host = SimpleNamespace(stats=SimpleNamespace(rq_success=0, rq_error=0))
    cluster = SimpleNamespace(stats=ClusterStats.declare(Store(), "cluster.c."))
    return SimpleNamespace(host=host, cluster=cluster, upgrade=False, grpc_deferred=False)


def _grpc_request() -> RequestHeaders:
    return RequestHeaders("POST", "/pkg.Svc/M", "h", [["content-type", "application/grpc"]])


def _host(req: Any) -> tuple[int, int]:
    return req.host.stats.rq_success, req.host.stats.rq_error


@pytest.mark.parametrize(
    ("grpc_status", "want"),
    [("0", (1, 0)), ("7", (1, 0)), ("8", (1, 0)), ("14", (0, 1)), ("13", (0, 1)), ("2", (0, 1)), ("x", (0, 1)), (None, (0, 1))],
)
def test_a_trailers_only_answer_is_judged_by_its_grpc_status(grpc_status: str | None, want: tuple[int, int]) -> None:
    # OK, PERMISSION_DENIED (403), RESOURCE_EXHAUSTED (429) succeed; UNAVAILABLE (503),
    # INTERNAL (500), UNKNOWN (500), an invalid value and none at all are errors.
    headers = ResponseHeaders(200, [["content-type", "application/grpc"]] + ([["grpc-status", grpc_status]] if grpc_status else []))
    grpc, status = outcome.grpc_response(_grpc_request(), headers)
    req = _req()
    outcome.charge(req, 200, False, None, grpc, status, end_stream=True)
    assert grpc and _host(req) == want and not req.grpc_deferred


def test_an_answer_with_a_body_waits_for_its_trailers() -> None:
    req = _req()
    outcome.charge(req, 200, False, None, True, None, end_stream=False)
    assert _host(req) == (0, 0) and req.grpc_deferred
    outcome.grpc_trailers(req, HeaderMap([["grpc-status", "14"]]))
    assert _host(req) == (0, 1) and not req.grpc_deferred
    outcome.grpc_trailers(req, HeaderMap([["grpc-status", "0"]]))  # (decided once)
    assert _host(req) == (0, 1)


def test_ok_trailers_succeed_and_no_trailers_is_an_error() -> None:
    ok, bare = _req(), _req()
    for r in (ok, bare):
        outcome.charge(r, 200, False, None, True, None, end_stream=False)
    outcome.grpc_trailers(ok, HeaderMap([["grpc-status", "0"]]))
    outcome.grpc_trailers(bare, None)
    assert _host(ok) == (1, 0) and _host(bare) == (0, 1)


def test_a_reset_after_the_response_started_counts_the_deferred_error() -> None:
    req = _req()
    counted: list[int] = []
    hcm = SimpleNamespace(rq_reset_after_downstream_response_started=SimpleNamespace(inc=lambda: counted.append(1)))
    outcome.abort_after_response(req, hcm)  # (nothing deferred: nothing counted)
    assert counted == [] and _host(req) == (0, 0)
    outcome.charge(req, 200, False, None, True, None, end_stream=False)
    outcome.abort_after_response(req, hcm)
    assert counted == [1] and _host(req) == (0, 1)


def test_plain_http_and_5xx_are_judged_by_the_status() -> None:
    plain = RequestHeaders("GET", "/", "h", [])
    grpc, status = outcome.grpc_response(plain, ResponseHeaders(200, [["grpc-status", "14"]]))
    assert (grpc, status) == (False, None)
    ok, bad = _req(), _req()
    outcome.charge(ok, 200, False, None, grpc, status, end_stream=True)
    outcome.charge(bad, 503, False, None, True, 0, end_stream=True)
    assert _host(ok) == (1, 0) and _host(bad) == (0, 1)
    assert outcome.outlier_code(200, 14) == 503 and outcome.outlier_code(200, None) == 200
