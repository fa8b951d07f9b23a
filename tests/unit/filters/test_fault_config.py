"""HTTPFault → FaultSettings: providers, header parsing, runtime keys, stats, support table."""

from __future__ import annotations

import random
from typing import Any

import pytest
from envoy.extensions.filters.http.fault.v3.fault_pb2 import HTTPFault
from google.protobuf import json_format

from sluice.config.loader import load_bootstrap
from sluice.config.support import unsupported_features
from sluice.errors import ConfigError
from sluice.filters.fault.config import (
    ABORT_PERCENT_KEY,
    DELAY_DURATION_KEY,
    FaultFilterConfig,
    FaultSettings,
    FaultStats,
    Percent,
    simple_atoi,
)
from sluice.http.headers import RequestHeaders
from sluice.runtime import Layer, Runtime
from sluice.stats.store import Store


def settings(d: dict[str, Any]) -> FaultSettings:
    return FaultSettings.from_proto(json_format.ParseDict(d, HTTPFault()), "f")


def req(*headers: tuple[str, str]) -> RequestHeaders:
    return RequestHeaders("GET", "/", "h", [[k, v] for k, v in headers])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("503", 503), (" 503 ", 503), ("+503", 503), ("0503", 503), ("0", 0), ("\t7\n", 7),
        ("-5", None), ("0x10", None), ("4_18", None), ("5.0", None), ("", None), ("abc", None),
        ("+", None), ("1 2", None), ("٥", None), (str(2**64), None), (str(2**64 - 1), 2**64 - 1), (None, None),
    ],
)  # fmt: skip
def test_simple_atoi_is_abseils(value: str | None, expected: int | None) -> None:
    assert simple_atoi(value) == expected


def test_simple_atoi_uint32_for_percentages() -> None:
    assert simple_atoi(str(2**32 - 1), 2**32 - 1) == 2**32 - 1
    assert simple_atoi(str(2**32), 2**32 - 1) is None


def test_defaults_and_runtime_key_overrides() -> None:
    s = settings({})
    assert (s.abort, s.delay, s.response_rate_limit, s.max_active_faults) == (None, None, None, None)
    assert s.abort_percent_runtime == ABORT_PERCENT_KEY and s.delay_duration_runtime == DELAY_DURATION_KEY
    assert s.response_rate_limit_percent_runtime == "fault.http.rate_limit.response_percent"
    assert s.max_active_faults_runtime == "fault.http.max_active_faults"
    s = settings({"abort_percent_runtime": "my.abort", "delay_duration_runtime": "my.ms", "max_active_faults": 0})
    assert s.abort_percent_runtime == "my.abort" and s.delay_duration_runtime == "my.ms"
    assert s.delay_percent_runtime == "fault.http.delay.fixed_delay_percent"
    assert s.max_active_faults == 0  # set to 0 is not "unlimited"


def test_fixed_providers() -> None:
    s = settings(
        {
            "abort": {"http_status": 418, "percentage": {"numerator": 5, "denominator": "TEN_THOUSAND"}},
            "delay": {"fixed_delay": "0.3005s", "percentage": {"numerator": 7}},
            "response_rate_limit": {"fixed_limit": {"limit_kbps": 50}, "percentage": {"numerator": 100}},
        }
    )
    h = req(("x-envoy-fault-abort-request", "503"), ("x-envoy-fault-abort-request-percentage", "1"))
    assert s.abort is not None and s.delay is not None and s.response_rate_limit is not None
    assert s.abort.http_status_code(h) == 418 and s.abort.grpc_status_code(h) is None
    assert s.abort.percentage(h) == Percent(5, 10_000)  # header percentages only with header_abort
    assert s.delay.duration_ms(req(("x-envoy-fault-delay-request", "9"))) == 300  # whole ms
    assert s.delay.percentage(h) == Percent(7, 100)
    assert s.response_rate_limit.rate_kbps(req(("x-envoy-fault-throughput-response", "1"))) == 50
    g = settings({"abort": {"grpc_status": 14}})
    assert g.abort is not None and (g.abort.http_status_code(h), g.abort.grpc_status_code(h)) == (None, 14)
    assert g.abort.percentage(h) == Percent(0, 100)  # no percentage: never


def test_header_abort() -> None:
    s = settings({"abort": {"header_abort": {}, "percentage": {"numerator": 20}}})
    a = s.abort
    assert a is not None
    for value, code in [("503", 503), ("200", 200), ("599", 599), ("503 ", 503), ("199", None), ("600", None), ("99", None), ("abc", None)]:
        assert a.http_status_code(req(("x-envoy-fault-abort-request", value))) == code, value
    assert a.http_status_code(req()) is None
    # The first value counts.
    assert a.http_status_code(req(("x-envoy-fault-abort-request", "418"), ("x-envoy-fault-abort-request", "503"))) == 418
    assert a.grpc_status_code(req(("x-envoy-fault-abort-grpc-request", "99"))) == 99  # not range-checked
    # Percentage: min(header, configured), configured denominator; invalid headers ignored.
    assert a.percentage(req()) == Percent(20, 100)
    assert a.percentage(req(("x-envoy-fault-abort-request-percentage", "10"))) == Percent(10, 100)
    assert a.percentage(req(("x-envoy-fault-abort-request-percentage", "150"))) == Percent(20, 100)
    assert a.percentage(req(("x-envoy-fault-abort-request-percentage", "-5"))) == Percent(20, 100)
    assert a.percentage(req(("x-envoy-fault-abort-request-percentage", str(2**32)))) == Percent(20, 100)


def test_header_delay_and_header_limit() -> None:
    s = settings(
        {
            "delay": {"header_delay": {}, "percentage": {"numerator": 50, "denominator": "MILLION"}},
            "response_rate_limit": {"header_limit": {}, "percentage": {"numerator": 100}},
        }
    )
    d, r = s.delay, s.response_rate_limit
    assert d is not None and r is not None
    assert d.duration_ms(req(("x-envoy-fault-delay-request", "1500"))) == 1500
    assert d.duration_ms(req(("x-envoy-fault-delay-request", "0"))) == 0  # filtered later (> 0 only)
    assert d.duration_ms(req(("x-envoy-fault-delay-request", "abc"))) is None
    assert d.percentage(req(("x-envoy-fault-delay-request-percentage", "7"))) == Percent(7, 1_000_000)
    assert r.rate_kbps(req(("x-envoy-fault-throughput-response", "200"))) == 200
    assert r.rate_kbps(req(("x-envoy-fault-throughput-response", "0"))) is None
    assert r.rate_kbps(req(("x-envoy-fault-throttle-response", "20"))) is None  # not Envoy's header
    assert r.percentage(req(("x-envoy-fault-throughput-response-percentage", "30"))) == Percent(30, 100)


def test_missing_oneof_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"f.abort: one of http_status, grpc_status, header_abort is required"):
        settings({"abort": {"percentage": {"numerator": 1}}})
    with pytest.raises(ConfigError, match=r"f.delay: one of fixed_delay, header_delay"):
        settings({"delay": {}})
    with pytest.raises(ConfigError, match=r"f.response_rate_limit: one of fixed_limit, header_limit"):
        settings({"response_rate_limit": {}})


def config_with_runtime(**values: str) -> FaultFilterConfig:
    runtime = Runtime([Layer("admin", "admin")])
    runtime.merge_admin(values)
    return FaultFilterConfig(settings({}), runtime, FaultStats.declare(Store(), "x."))


def test_feature_enabled_runtime_integer_is_out_of_100() -> None:
    rng = random.Random(3)
    pct = Percent(1, 10_000)
    cfg = config_with_runtime(**{"k.50": "50", "k.101": "101", "k.bad": "abc", "k.100": "100"})
    hits = sum(cfg.feature_enabled("k.50", pct, rng.getrandbits(64)) for _ in range(4000))
    assert 1700 < hits < 2300  # 50 out of 100, not 50 out of 10 000
    assert all(cfg.feature_enabled("k.101", Percent(0, 100), rng.getrandbits(64)) for _ in range(100))
    assert all(cfg.feature_enabled("k.100", Percent(0, 1_000_000), rng.getrandbits(64)) for _ in range(100))
    assert not any(cfg.feature_enabled("k.bad", Percent(0, 100), rng.getrandbits(64)) for _ in range(100))
    assert not any(cfg.feature_enabled("", Percent(0, 100), rng.getrandbits(64)) for _ in range(100))
    assert cfg.feature_enabled("missing", Percent(5, 100), 104) and not cfg.feature_enabled("missing", Percent(5, 100), 105)


BOOTSTRAP = """
static_resources:
  listeners:
  - name: l0
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: []}]}
          http_filters:
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              max_active_faults: 100
              abort: {http_status: 503, percentage: {numerator: 10, denominator: HUNDRED}}
              delay: {header_delay: {}, percentage: {numerator: 100}}
              response_rate_limit: {header_limit: {}, percentage: {numerator: 100}}
              headers: [{name: x-a, string_match: {exact: "1"}}]
              downstream_nodes: [n1]
              upstream_cluster: c
              abort_percent_runtime: a.b
              disable_downstream_cluster_stats: true
              %s
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"""


def test_every_field_but_filter_metadata_is_supported() -> None:
    assert unsupported_features(load_bootstrap(config_yaml=BOOTSTRAP % "")) == []
    lines = unsupported_features(load_bootstrap(config_yaml=BOOTSTRAP % "filter_metadata: {k: v}"))
    assert lines == [
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.filter_metadata: "
        "field 'filter_metadata' is not implemented yet"
    ]


def test_stats_are_declared_when_the_server_is_built() -> None:
    from sluice.server import Server

    server = Server(load_bootstrap(config_yaml=BOOTSTRAP % ""))
    names = {n for n in [*server.store.counters, *server.store.gauges] if ".fault." in n}
    assert names == {
        "http.ingress_http.fault.aborts_injected",
        "http.ingress_http.fault.delays_injected",
        "http.ingress_http.fault.faults_overflow",
        "http.ingress_http.fault.response_rl_injected",
        "http.ingress_http.fault.active_faults",
    }
    assert "http.ingress_http.fault.active_faults" in server.store.gauges
