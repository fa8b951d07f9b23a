"""``x-envoy-upstream-alt-stat-name``: the header consumed, the alternate tree's names (as Envoy
1.40 spells them, tests/integration/test_differential_alt_stat_name.py) and what each response
charges, with the cluster's own ``internal.`` stats."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sluice.http.headers import RequestHeaders
from sluice.router import upstream_outcome as outcome
from sluice.stats.blocks import ClusterStats
from sluice.stats.store import Store


def _cluster() -> Any:
    return SimpleNamespace(stats=ClusterStats.declare(Store(), "cluster.c."))


def _headers(*alt: str) -> RequestHeaders:
    return RequestHeaders("GET", "/", "h", [["x-a", "1"], *([outcome.ALT_STAT_NAME, v] for v in alt), ["x-b", "2"]])


def _moved(cluster: Any) -> dict[str, int]:
    return {n: c.value for n, c in cluster.stats.store.counters.items() if c.value}


@pytest.mark.parametrize(
    ("values", "prefix"),
    [
        (["alt"], "alt."),
        (["a.b"], "a.b."),
        (["tr.."], "tr."),  # trailing dots dropped (StatNameDynamicStorage)
        ([".lead"], ".lead."),
        ([""], "."),  # cluster.c..upstream_rq_200, as Envoy
        (["."], "."),
        (["x:y Z"], "x:y Z."),
        (["m1", "", "m2"], "m1,m2."),  # one inline header: joined with ',', empty lines add nothing
    ],
)
def test_the_header_is_consumed_and_names_the_prefix(values: list[str], prefix: str) -> None:
    cluster = _cluster()
    headers = _headers(*values)
    alt = outcome.take_alt_stats(headers, cluster)
    assert alt is cluster.stats.code_scope(prefix)
    assert [k for k, _ in headers.entries] == ["x-a", "x-b"]


def test_no_header_no_tree() -> None:
    cluster = _cluster()
    headers = _headers()
    assert outcome.take_alt_stats(headers, cluster) is None
    assert len(headers) == 2


def test_one_scope_per_prefix_and_no_stat_before_a_response() -> None:
    cluster = _cluster()
    before = set(cluster.stats.store.counters) | set(cluster.stats.store.histograms)
    a = outcome.take_alt_stats(_headers("alt"), cluster)
    b = outcome.take_alt_stats(_headers("alt"), cluster)
    assert a is b and a is not None
    assert set(cluster.stats.store.counters) | set(cluster.stats.store.histograms) == before


def test_an_internal_response_charges_the_cluster_its_internal_scope_and_the_tree() -> None:
    cluster = _cluster()
    alt = outcome.take_alt_stats(_headers("alt"), cluster)
    outcome.charge_code(cluster, 200, True, alt)
    outcome.charge_code(cluster, 503, True, alt)
    names = ("upstream_rq_200", "upstream_rq_2xx", "upstream_rq_503", "upstream_rq_5xx")
    want = {f"cluster.c.{p}{n}": 1 for p in ("", "internal.", "alt.", "alt.internal.") for n in names}
    want |= {f"cluster.c.{p}upstream_rq_completed": 2 for p in ("", "internal.", "alt.", "alt.internal.")}
    assert _moved(cluster) == want
    # Envoy makes no external twins for an internal response.
    assert not [n for n in cluster.stats.store.counters if "external." in n]


def test_an_external_response_charges_no_internal_or_alternate_stat() -> None:
    cluster = _cluster()
    outcome.charge_code(cluster, 200, False)
    assert _moved(cluster) == {
        f"cluster.c.{p}{n}": 1 for p in ("", "external.") for n in ("upstream_rq_200", "upstream_rq_2xx", "upstream_rq_completed")
    }
    assert not [n for n in cluster.stats.store.counters if "internal." in n]


@pytest.mark.parametrize("code", [99, 600, 1000])
def test_a_code_outside_100_599_is_unknown_without_a_class(code: int) -> None:
    cluster = _cluster()
    outcome.charge_code(cluster, code, True, outcome.take_alt_stats(_headers("alt"), cluster))
    assert _moved(cluster) == {
        f"cluster.c.{p}{n}": 1 for p in ("", "internal.", "alt.", "alt.internal.") for n in ("upstream_rq_unknown", "upstream_rq_completed")
    }


def test_internal_timing_goes_to_the_internal_and_alternate_histograms() -> None:
    cluster = _cluster()
    alt = outcome.take_alt_stats(_headers("alt"), cluster)
    outcome.charge_internal_time(cluster.stats, 12.0, alt)
    outcome.charge_internal_time(cluster.stats, 3.0, None)
    hist = cluster.stats.store.histograms
    assert {n: h.count for n, h in hist.items() if n.endswith("upstream_rq_time")} == {
        "cluster.c.internal.upstream_rq_time": 2,
        "cluster.c.alt.upstream_rq_time": 1,
        "cluster.c.alt.internal.upstream_rq_time": 1,
    }
