"""A cluster's upstream HTTP protocol options (cluster.protocol_options), parsed from protos."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import json_format

from sluice.errors import ConfigError
from sluice.upstream.cluster import HTTP_PROTOCOL_OPTIONS, protocol_options
from sluice.upstream.conn_pool import HTTP1, HTTP2


def cluster(**fields: Any) -> Any:
    return json_format.ParseDict({"name": "c", **fields}, cluster_pb2.Cluster())


def typed(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "typed_extension_protocol_options": {HTTP_PROTOCOL_OPTIONS: {"@type": f"type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}", **options}}
    }


def test_default_is_http1_with_envoys_idle_timeout() -> None:
    base, h2 = protocol_options(cluster(), "c")
    assert base.protocol == HTTP1 and h2 is None
    assert base.idle_timeout == 3600.0 and not base.idle_timer and base.max_requests_per_connection == 0


def test_explicit_http2_with_settings_and_common_options() -> None:
    c = cluster(
        **typed(
            {
                "explicit_http_config": {"http2_protocol_options": {"max_concurrent_streams": 7, "initial_stream_window_size": 65536}},
                "common_http_protocol_options": {"idle_timeout": "2s", "max_requests_per_connection": 5},
            }
        )
    )
    base, h2 = protocol_options(c, "c")
    assert h2 is None and base.protocol == HTTP2
    assert base.http2.max_concurrent_streams == 7 and base.http2.initial_stream_window_size == 65536
    assert base.idle_timeout == 2.0 and base.idle_timer and base.max_requests_per_connection == 5
    assert base.stream_capacity == 5


def test_explicit_http1() -> None:
    base, h2 = protocol_options(cluster(**typed({"explicit_http_config": {"http_protocol_options": {}}})), "c")
    assert base.protocol == HTTP1 and h2 is None


def test_use_downstream_protocol_config() -> None:
    c = cluster(**typed({"use_downstream_protocol_config": {"http2_protocol_options": {}}}))
    base, h2 = protocol_options(c, "c")
    assert base.protocol == HTTP1 and h2 is not None and h2.protocol == HTTP2
    only_h1 = cluster(**typed({"use_downstream_protocol_config": {"http_protocol_options": {}}}))
    assert protocol_options(only_h1, "c")[1] is None


def test_legacy_cluster_fields() -> None:
    base, _ = protocol_options(cluster(http2_protocol_options={"max_concurrent_streams": 3}, max_requests_per_connection=4), "c")
    assert base.protocol == HTTP2 and base.http2.max_concurrent_streams == 3 and base.max_requests_per_connection == 4


def test_the_extension_wins_over_legacy_fields() -> None:
    c = cluster(http2_protocol_options={}, **typed({"explicit_http_config": {"http_protocol_options": {}}}))
    assert protocol_options(c, "c")[0].protocol == HTTP1


def test_max_requests_in_both_places_is_refused_as_envoy_does() -> None:
    c = cluster(max_requests_per_connection=2, **typed({"common_http_protocol_options": {"max_requests_per_connection": 3}}))
    with pytest.raises(ConfigError, match="Only one of max_requests_per_connection from Cluster or HttpProtocolOptions"):
        protocol_options(c, "c")


def test_a_zero_idle_timeout_disables_it() -> None:
    base, _ = protocol_options(cluster(**typed({"common_http_protocol_options": {"idle_timeout": "0s"}})), "c")
    assert base.idle_timeout == 0 and not base.idle_timer
