"""Fixtures for the admin handler tests: a small Server built from inline YAML, and a caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sluice.admin import handlers
from sluice.admin.server import AdminRequest
from sluice.config.loader import load_bootstrap
from sluice.server import Server

CONFIG = """
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
layered_runtime:
  layers:
  - name: admin
    admin_layer: {}
static_resources:
  listeners:
  - name: listener_0
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: demoapp
              domains: ['*']
              routes:
              - match: {prefix: /}
                route: {cluster: demoappv10}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: demoappv10
    connect_timeout: 0.25s
    type: STATIC
    load_assignment:
      cluster_name: demoappv10
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.11, port_value: 18803}}}
        - endpoint: {address: {socket_address: {address: 127.0.0.12, port_value: 18803}}}
  - name: demoappv11
    connect_timeout: 0.25s
    type: STATIC
    circuit_breakers:
      thresholds:
      - priority: HIGH
        max_retries: 7
    load_assignment:
      cluster_name: demoappv11
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.21, port_value: 18803}}}
"""

Call = Callable[..., tuple[int, str, str]]


@pytest.fixture
def server() -> Iterator[Server]:
    """A Server as after start-up (LIVE), built inside an event loop that stays open."""
    loop = asyncio.new_event_loop()

    async def build() -> Server:
        return Server(load_bootstrap(config_yaml=CONFIG))

    srv = loop.run_until_complete(build())
    srv.state = "LIVE"
    yield srv
    loop.close()


@pytest.fixture
def call(server: Server) -> Call:
    """``call("GET", "/ready")`` → ``(status, content_type, body)``; extra leading headers are dropped."""

    def do(method: str, path: str, body: bytes = b"", content_type: str = "") -> Any:
        status, ctype, payload, *_ = handlers.dispatch(server, AdminRequest(method, path, body, content_type))
        return status, ctype, payload if isinstance(payload, str) else payload.decode()

    return do


@pytest.fixture
def golden() -> Any:
    """The captures of the real Envoy 1.40 (``tests/golden/envoy-part1-2``, copied from the team's
    shared captures so that a clone stands alone)."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "golden" / "envoy-part1-2"
    assert path.is_dir(), f"golden captures missing: {path} (they are part of the repository)"
    return path
