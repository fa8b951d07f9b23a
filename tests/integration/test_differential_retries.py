"""Differential: retries and per-try/route timeouts through the real Envoy and Sluice, on the
same config and the same upstream. Status, response header names (in order), body, the number
of upstream attempts with their ``x-envoy-attempt-count`` and request header names, and the
retry stats must match."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from harness import (
    ROUTER_TYPED_CONFIG,
    Client,
    LoopThread,
    ProxyProcess,
    free_port,
    stats_delta,
)
from test_retries import CONFIG, BadApp, ScriptedApp

pytestmark = pytest.mark.envoy

RETRY_STATS = [
    f"cluster.{c}.{n}"
    for c in ("probe", "closed")
    for n in (
        "upstream_rq_retry",
        "upstream_rq_retry_success",
        "upstream_rq_retry_limit_exceeded",
        "upstream_rq_retry_overflow",
        "upstream_rq_retry_backoff_exponential",
        "upstream_rq_per_try_timeout",
        "upstream_rq_timeout",
        "upstream_rq_total",
        "upstream_rq_503",
        "upstream_rq_504",
        "upstream_rq_5xx",
        "upstream_rq_completed",
        "upstream_rq_rx_reset",
        "upstream_rq_per_try_idle_timeout",
        "retry_or_shadow_abandoned",
        "retry.upstream_rq_503",
        "retry.upstream_rq_502",
        "retry.upstream_rq_5xx",
        "retry.upstream_rq_418",
        "retry.upstream_rq_4xx",
    )
]

CASES = [
    "/r5xx3/status/503",
    "/r5xx3/status/404",
    "/gw/status/502",
    "/gw/status/500",
    "/codes/status/418",
    "/closed-retry/x",
    "/r5xx3/close",
    "/pertry/delay/1000",
    "/pertry-connfail-only/delay/1000",
    "/pertry-gt-timeout/delay/2000",
    "/idle/delay/1000",
    "/timeout0/status/200",
    "/closed/x",
    "/empty-path-is-fine/status/200",
]


def _config(app_port: int, bad_port: int) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(CONFIG.format(port=app_port, closed=free_port(), bad=bad_port))
    cfg["admin"]["address"]["socket_address"]["port_value"] = free_port()
    cfg["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = free_port()
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0]["typed_config"] = ROUTER_TYPED_CONFIG
    # A second listener whose loopback clients are internal: retry/timeout headers apply.
    internal = copy.deepcopy(cfg["static_resources"]["listeners"][0])
    internal["name"] = "internal"
    internal["address"]["socket_address"]["port_value"] = free_port()
    ihcm = internal["filter_chains"][0]["filters"][0]["typed_config"]
    ihcm["use_remote_address"] = True
    ihcm["internal_address_config"] = {"cidr_ranges": [{"address_prefix": "127.0.0.0", "prefix_len": 8}]}
    cfg["static_resources"]["listeners"].append(internal)
    return cfg


@pytest.fixture(scope="module")
def setup(loop: LoopThread) -> Iterator[tuple[ScriptedApp, ProxyProcess, ProxyProcess]]:
    app = ScriptedApp("probe")
    bad = BadApp("bad")
    loop.run(app.start("127.0.0.1", 0))
    loop.run(bad.start("127.0.0.1", 0))
    cfg = _config(app.port, bad.port)
    envoy = ProxyProcess("envoy", cfg).start()
    try:
        sluice = ProxyProcess("sluice", _config(app.port, bad.port)).start()
    except BaseException:
        envoy.stop()
        raise
    yield app, envoy, sluice
    sluice.stop()
    envoy.stop()
    loop.run(app.stop())
    loop.run(bad.stop())


def _observe(
    app: ScriptedApp, proxy: ProxyProcess, path: str, headers: list[tuple[str, str]] | None = None, listener: int = 0
) -> dict[str, Any]:
    app.requests.clear()
    before = proxy.stats()
    with Client(proxy.listener_ports[listener]) as c:
        resp = c.get(path, headers)
    after = proxy.stats()
    return {
        "status": resp.status,
        "headers": resp.names,
        "body": resp.body,
        "attempt_count": resp.header("x-envoy-attempt-count"),
        "upstream": [[k for k, _ in r.headers] for r in app.requests],
        "upstream_attempts": [r.header("x-envoy-attempt-count") for r in app.requests],
        "expected_timeout": [r.header("x-envoy-expected-rq-timeout-ms") for r in app.requests][:1],
        "stats": stats_delta(before, after, RETRY_STATS),
    }


@pytest.mark.parametrize("path", CASES)
def test_same_as_envoy(setup: tuple[ScriptedApp, ProxyProcess, ProxyProcess], path: str) -> None:
    app, envoy, sluice = setup
    want = _observe(app, envoy, path)
    got = _observe(app, sluice, path)
    assert got == want


RETRY_ON = ("x-envoy-retry-on", "5xx")
INTERNAL_CASES = [
    ("/noretry/status/503", [RETRY_ON]),
    ("/noretry/status/503", [RETRY_ON, ("x-envoy-max-retries", "2")]),
    ("/noretry/status/503", [("x-envoy-max-retries", "2")]),
    ("/noretry/status/503", [("x-envoy-retry-on", "bogus"), ("x-envoy-max-retries", "2")]),
    ("/noretry/status/503", [RETRY_ON, ("x-forwarded-for", "10.1.2.3")]),  # two XFF hops: external
    ("/r5xx3/status/503", [("x-envoy-max-retries", "1")]),
    ("/r5xx3/status/503", [("x-envoy-max-retries", "5")]),
    ("/r5xx3/status/409", [("x-envoy-retry-on", "retriable-4xx")]),
    ("/noretry/status/418", [("x-envoy-retry-on", "retriable-status-codes"), ("x-envoy-retriable-status-codes", "418")]),
    ("/noretry/status/200", [("x-envoy-retry-on", "retriable-headers"), ("x-envoy-retriable-header-names", "x-dup")]),
    ("/noretry/delay/400", [("x-envoy-upstream-rq-timeout-ms", "100")]),
    ("/noretry/status/502", [("x-envoy-retry-on", "connect-failure, gateway-error")]),
    ("/noretry/status/503", [RETRY_ON, ("x-envoy-max-retries", " 2")]),
    ("/noretry/status/503", [RETRY_ON, ("x-envoy-max-retries", "two")]),
    ("/noretry/status/200", [("x-envoy-upstream-rq-timeout-ms", "0")]),
    ("/noretry/delay/300", [("x-envoy-upstream-rq-timeout-ms", "1x")]),
    ("/noretry/delay/400", [RETRY_ON, ("x-envoy-upstream-rq-per-try-timeout-ms", "100"), ("x-envoy-max-retries", "1")]),
]


@pytest.mark.parametrize(("path", "headers"), INTERNAL_CASES, ids=[f"{p} {h}" for p, h in INTERNAL_CASES])
def test_internal_request_headers_same_as_envoy(
    setup: tuple[ScriptedApp, ProxyProcess, ProxyProcess], path: str, headers: list[tuple[str, str]]
) -> None:
    app, envoy, sluice = setup
    want = _observe(app, envoy, path, headers, listener=1)
    got = _observe(app, sluice, path, headers, listener=1)
    assert got == want


@pytest.mark.parametrize("size", [1024 * 1024, 1024 * 1024 + 1])
def test_retry_buffer_limit_same_as_envoy(setup: tuple[ScriptedApp, ProxyProcess, ProxyProcess], size: int) -> None:
    """A body over 1 MiB cannot be replayed: retries are abandoned (``retry_or_shadow_abandoned``)."""
    app, envoy, sluice = setup
    seen = []
    for proxy in (envoy, sluice):
        app.requests.clear()
        before = proxy.stats()
        with Client(proxy.port) as c:
            resp = c.request("POST", "/r5xx3/status/503", [("content-type", "text/plain")], b"x" * size)
        seen.append((resp.status, len(app.requests), stats_delta(before, proxy.stats(), RETRY_STATS)))
    assert seen[1] == seen[0]
