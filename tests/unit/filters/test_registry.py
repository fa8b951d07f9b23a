"""HTTP filters are found by @type or by name; unknown ones and a missing router are errors."""

from __future__ import annotations

import pytest

from sluice.config.loader import load_bootstrap
from sluice.errors import ConfigError, UnsupportedError
from sluice.filters import registry
from sluice.server import Server

BASE = """
static_resources:
  listeners:
  - name: l0
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          route_config: {{virtual_hosts: [{{name: v, domains: ["*"], routes: []}}]}}
          http_filters: {filters}
"""


def server(filters: str) -> Server:
    return Server(load_bootstrap(config_yaml=BASE.format(filters=filters)))


def test_lookup_by_type_and_by_name() -> None:
    by_name = registry.lookup("", "envoy.filters.http.router")
    by_type = registry.lookup("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", "anything")
    assert by_name is not None and by_name is by_type and by_name.terminal
    assert registry.lookup("", "envoy.filters.http.nope") is None


def test_router_by_name_only_builds() -> None:
    s = server("[{name: envoy.filters.http.router}]")
    assert len(s.listeners[0].hcm.filter_factories) == 1


def test_unimplemented_filter_is_named_with_its_path() -> None:
    with pytest.raises(UnsupportedError, match=r"http_filters\[0\]: HTTP filter 'envoy.filters.http.buffer' is not implemented yet"):
        server(
            '[{name: envoy.filters.http.buffer, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer,'
            ' max_request_bytes: 10}}, {name: envoy.filters.http.router}]'
        )


def test_fault_filter_is_registered() -> None:
    entry = registry.lookup("type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault", "x")
    assert entry is not None and not entry.terminal and entry is registry.lookup("", "envoy.filters.http.fault")
    s = server('[{name: envoy.filters.http.fault, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}}, {name: envoy.filters.http.router}]')
    assert len(s.listeners[0].hcm.filter_factories) == 2


def test_http_filters_must_end_with_the_router() -> None:
    with pytest.raises(ConfigError):
        server("[]")
