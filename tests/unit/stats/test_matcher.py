"""stats_config: the stats matcher (rejected stats are null and listed nowhere) and the load-time
checks of stats_tags, with Envoy 1.40's messages."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format

from sluice.config.checks import check_bootstrap
from sluice.config.support import unsupported_features
from sluice.stats.blocks import ServerStats
from sluice.stats.matcher import NULL_COUNTER, NULL_GAUGE, NULL_HISTOGRAM, MatchingStore, store_for
from sluice.stats.store import Store


def bootstrap(stats_config: dict[str, Any]) -> bootstrap_pb2.Bootstrap:
    return json_format.ParseDict({"stats_config": stats_config}, bootstrap_pb2.Bootstrap())


def test_no_matcher_means_the_plain_store() -> None:
    assert type(store_for(bootstrap_pb2.Bootstrap())) is Store
    assert type(store_for(bootstrap({"stats_matcher": {"reject_all": False}}))) is Store


@pytest.mark.parametrize(
    ("matcher", "kept", "rejected"),
    [
        ({"reject_all": True}, [], ["server.live", "cluster.a.upstream_rq_total"]),
        ({"exclusion_list": {"patterns": [{"prefix": "cluster."}]}}, ["server.live"], ["cluster.a.upstream_rq_total"]),
        ({"inclusion_list": {"patterns": [{"suffix": ".live"}, {"exact": "server.state"}]}}, ["server.live", "server.state"],
         ["server.uptime"]),
        ({"inclusion_list": {"patterns": [{"safe_regex": {"regex": r"cluster\.[^.]+\.upstream_rq_\d+"}}]}},
         ["cluster.a.upstream_rq_200"], ["cluster.a.upstream_rq_200x", "x.cluster.a.upstream_rq_200"]),  # a full match
        ({"exclusion_list": {"patterns": [{"contains": "UPSTREAM", "ignore_case": True}]}}, ["server.live"],
         ["cluster.a.upstream_rq_total"]),
    ],
)  # fmt: skip
def test_matcher_kinds(matcher: dict[str, Any], kept: list[str], rejected: list[str]) -> None:
    store = store_for(bootstrap({"stats_matcher": matcher}))
    assert isinstance(store, MatchingStore)
    for name in kept:
        assert store.counter(name) is not NULL_COUNTER and name in store.counters
    for name in rejected:
        assert store.counter(name) is NULL_COUNTER
        assert store.gauge(name) is NULL_GAUGE
        assert store.histogram(name) is NULL_HISTOGRAM
        assert name not in store.counters and name not in store.gauges and name not in store.histograms


def test_null_stats_count_nothing() -> None:
    store = store_for(bootstrap({"stats_matcher": {"exclusion_list": {"patterns": [{"prefix": "server."}]}}}))
    stats = ServerStats.declare(store, "server.")  # a whole declared block, as a subsystem makes it
    stats.live.set(1)
    stats.live.inc()
    stats.total_connections.inc()
    stats.initialization_time_ms.record(12)
    NULL_COUNTER.value += 5  # hot paths bump value directly
    assert (stats.live.value, stats.live.used, NULL_COUNTER.value, NULL_COUNTER.used, NULL_COUNTER.latch()) == (0, False, 0, False, 0)
    assert NULL_HISTOGRAM.count == 0 and not NULL_HISTOGRAM.used
    assert not any(n.startswith("server.") for n in (*store.counters, *store.gauges, *store.histograms))


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ([{"tag_name": "foo", "regex": "(bad"}],
         "stats_config.stats_tags[0].regex: Invalid regex '(bad': The expression contained mismatched ( and )."),
        ([{"tag_name": "ok", "fixed_value": "v"}, {"tag_name": "foo", "regex": "[z-a]"}],
         "stats_config.stats_tags[1].regex: Invalid regex '[z-a]': "
         "The expression contained an invalid character range, such as [b-a] in most encodings."),
        ([{"tag_name": "foo", "regex": "a{2,1}"}],
         "stats_config.stats_tags[0].regex: Invalid regex 'a{2,1}': The expression contained an invalid range in a {} expression."),
        ([{"tag_name": "foo", "regex": "\\"}],
         "stats_config.stats_tags[0].regex: Invalid regex '\\': "
         "The expression contained an invalid escaped character, or a trailing escape."),
        ([{"tag_name": "foo"}],
         "stats_config.stats_tags[0]: No regex specified for tag specifier and no default regex for name: 'foo'"),
        ([{"tag_name": "", "regex": "x"}], "stats_config.stats_tags[0].tag_name: tag_name cannot be empty"),
    ],
)  # fmt: skip
def test_stats_tags_problems_are_envoys(tags: list[dict[str, str]], problem: str) -> None:
    assert check_bootstrap(bootstrap({"stats_tags": tags})) == [problem]


def test_good_stats_config_passes_and_is_supported() -> None:
    boot = bootstrap(
        {
            "stats_tags": [
                {"tag_name": "envoy.cluster_name"},
                {"tag_name": "t", "regex": "a(?=b)(c)"},
                {"tag_name": "f", "fixed_value": "v"},
            ],
            "use_all_default_tags": False,
            "stats_matcher": {"inclusion_list": {"patterns": [{"prefix": "cluster."}]}},
        }
    )
    assert check_bootstrap(boot) == []  # std::regex reads lookaheads
    assert [p for p in unsupported_features(boot) if "stats_config" in p] == []


def test_a_bad_matcher_regex_is_reported() -> None:
    problems = check_bootstrap(bootstrap({"stats_matcher": {"inclusion_list": {"patterns": [{"safe_regex": {"regex": "(bad"}}]}}}))
    assert len(problems) == 1 and problems[0].startswith("stats_config.stats_matcher.inclusion_list.patterns[0].safe_regex.regex: ")


def test_rejected_stats_stay_unused_when_envoy_would_mark_them_at_creation() -> None:
    store = store_for(bootstrap({"stats_matcher": {"exclusion_list": {"patterns": [{"prefix": "server."}]}}}))
    stats = ServerStats.declare(store, "server.")
    assert not stats.static_unknown_fields.used and not stats.memory_allocated.used
