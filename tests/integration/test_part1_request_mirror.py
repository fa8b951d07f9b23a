"""Part 1, lab http-request-mirror: ``request_mirror_policies`` shadows a runtime fraction of the
requests to demoappv11 while clients are answered by demoappv10 only.

Expected behaviour is Envoy's, from ``golden/envoy-part1-2/mirror/mirror.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from harness import (
    GOLDEN,
    Client,
    Fleet,
    ProxyProcess,
    assert_binomial,
    free_port,
    golden_mirror_view,
    hostname_of,
    load_seed,
    localize,
    mirror_view,
    run_load,
    settle,
)

LAB = "http-request-mirror"
KEY = "routing.request_mirror.demoapp"
N = 2000
GOLD = json.loads((GOLDEN / "mirror" / "mirror.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def lab(start_fleet: Callable[[str], Fleet], start_proxy: Callable[[str, dict[str, Any]], ProxyProcess]) -> tuple[Fleet, ProxyProcess]:
    fleet = start_fleet(LAB)
    config = localize(load_seed(LAB), fleet.endpoints, free_port(), [free_port()])
    return fleet, start_proxy("sluice", config)


def _mirror_load(fleet: Fleet, proxy: ProxyProcess, value: str, n: int) -> int:
    """Set the runtime value, send ``n`` GETs; returns the number of shadow requests."""
    proxy.runtime_modify(**{KEY: value})
    fleet.clear()
    before = proxy.stats()
    responses = run_load(proxy.port, n)
    assert {r.status for r in responses} == {200}
    # The client is always answered by the primary (v1.0), round robin over its replicas.
    names = [hostname_of(r) for r in responses]
    assert all(name.startswith("demoapp-v1.0-") for name in names), set(names)
    per = fleet.per_instance()
    assert max(per[f"demoapp-v1.0-{i}"] for i in (1, 2, 3)) - min(per[f"demoapp-v1.0-{i}"] for i in (1, 2, 3)) <= 1
    shadows = settle(proxy, fleet, "demoappv11", before)
    primary_ids = {r.header("x-request-id") for r in fleet.received("demoappv10")}
    assert len(primary_ids) == n
    assert all(r.header("x-request-id") in primary_ids for r in fleet.received("demoappv11"))
    return shadows


def test_default_mirrors_20_percent(lab: tuple[Fleet, ProxyProcess]) -> None:
    fleet, proxy = lab
    shadows = _mirror_load(fleet, proxy, "", N)  # "" removes any override: the config's 20%
    assert proxy.runtime()["entries"] == {}
    assert_binomial(shadows, N, 0.20, "shadow requests")
    assert_binomial(GOLD["mirror_counts_by_runtime_value"]["default_20"]["shadow_v1.1_received"], N, 0.2, "golden")


def test_runtime_100_mirrors_everything(lab: tuple[Fleet, ProxyProcess]) -> None:
    fleet, proxy = lab
    assert _mirror_load(fleet, proxy, "100", N) == N
    per = fleet.per_instance()
    assert per["demoapp-v1.1-1"] == per["demoapp-v1.1-2"] == N // 2


# runtime value → expected shadow fraction (golden: 10000 caps at 100%, abc falls back to 20%).
VALUES = [("0", 0.0), ("50", 0.5), ("10000", 1.0), ("abc", 0.2)]


@pytest.mark.parametrize(("value", "p"), VALUES, ids=[v for v, _ in VALUES])
def test_runtime_values(lab: tuple[Fleet, ProxyProcess], value: str, p: float) -> None:
    fleet, proxy = lab
    n = 1000
    shadows = _mirror_load(fleet, proxy, value, n)
    if p in (0.0, 1.0):
        assert shadows == n * p
    else:
        assert_binomial(shadows, n, p, f"shadows at {value!r}")
    gold = GOLD["mirror_counts_by_runtime_value"][value]
    assert_binomial(gold["shadow_v1.1_received"], gold["client_requests"], p, "golden")


@pytest.mark.parametrize("case", list(GOLD["headers_seen"]))
def test_shadow_request_headers(lab: tuple[Fleet, ProxyProcess], case: str) -> None:
    fleet, proxy = lab
    gold = GOLD["headers_seen"][case]
    proxy.runtime_modify(**{KEY: "100"})
    fleet.clear()
    host = gold["primary_request"]["headers"][0][1]
    if host == "127.0.0.1:18082":  # the capture's own listener address
        host = f"127.0.0.1:{proxy.port}"
    before = proxy.stats()
    with Client(proxy.port) as c:
        resp = c.get("/hostname?x=1", headers=[("Host", host)])
    assert resp.status == 200 and hostname_of(resp).startswith("demoapp-v1.0-")
    assert [k for k, _ in resp.headers] == [k for k, _ in gold["client_response"]["headers"]]
    assert settle(proxy, fleet, "demoappv11", before) == 1
    # Shadow Host gets "-shadow" before the port; x-envoy-internal and x-forwarded-for (the
    # proxy's own address) are on the shadow only; both carry the same x-request-id.
    assert mirror_view(fleet, proxy.port) == golden_mirror_view(gold["primary_request"], gold["shadow_request"])


def test_post_body_is_mirrored(lab: tuple[Fleet, ProxyProcess]) -> None:
    fleet, proxy = lab
    gold = GOLD["post_with_body"]
    proxy.runtime_modify(**{KEY: "100"})
    fleet.clear()
    before = proxy.stats()
    with Client(proxy.port) as c:
        resp = c.request("POST", "/hostname", headers=[("Content-Type", "text/plain")], body=b"hello-mirror-body")
    assert resp.status == 200 and hostname_of(resp).startswith("demoapp-v1.0-")
    assert settle(proxy, fleet, "demoappv11", before) == 1
    assert mirror_view(fleet, proxy.port) == golden_mirror_view(gold["primary"][0], gold["shadow"][0])
    (primary,) = fleet.received("demoappv10")
    (shadow,) = fleet.received("demoappv11")
    assert primary.body == shadow.body == b"hello-mirror-body"
