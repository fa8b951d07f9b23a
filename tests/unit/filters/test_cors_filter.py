"""The CORS filter in a real ActiveStream without sockets (a fake connection and a fake upstream as
the terminal filter), plus policy parsing, the registry entry and the support table. The
expectations are Envoy 1.40's (``shared/golden/envoy-part1-2/cors`` and the differential test in
``tests/integration/test_cors.py``)."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from google.protobuf import json_format

from sluice.config.loader import load_bootstrap
from sluice.config.support import unsupported_features
from sluice.filters import registry
from sluice.filters.cors.config import CorsFilterConfig
from sluice.filters.cors.filter import CorsFilter, cors_factory, policies_for
from sluice.http.conn_manager import ActiveStream, HcmConfig
from sluice.http.headers import RequestHeaders
from sluice.route.cors_policy import CorsPolicy
from sluice.route.table import RouteTable
from sluice.runtime import Layer, Runtime
from sluice.stats.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from test_fault_filter import FakeConn, Upstream  # noqa: E402
from test_fault_rate_limiter import Clock  # noqa: E402

TYPED = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
FULL = {
    "allow_origin_string_match": [{"exact": "http://a.example.com"}, {"prefix": "http://b."}],
    "allow_methods": "GET, POST, PUT",
    "allow_headers": "content-type, x-custom",
    "expose_headers": "x-expose-1, x-expose-2",
    "max_age": "600",
    "allow_credentials": True,
}
PREFLIGHT = [("origin", "http://a.example.com"), ("access-control-request-method", "POST")]


def routes(route_cors: dict[str, Any] | None = None, vh_cors: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    action: dict[str, Any] = {"cluster": "svc"}
    if route_cors is not None:
        action["cors"] = route_cors
    route: dict[str, Any] = {"match": {"prefix": "/"}, "route": action, **extra.pop("route_extra", {})}
    vh: dict[str, Any] = {"name": "v", "domains": ["*"], "routes": [route], **extra.pop("vh_extra", {})}
    if vh_cors is not None:
        vh["cors"] = vh_cors
    return {"virtual_hosts": [vh], **extra}


class Harness:
    def __init__(self, rc: dict[str, Any], filter_name: str = "envoy.filters.http.cors", **runtime: str) -> None:
        self.clock = Clock()
        self.runtime = Runtime([Layer("admin", "admin")])
        if runtime:
            self.runtime.merge_admin(runtime)
        self.store = Store()
        table = RouteTable(json_format.ParseDict(rc, RouteConfiguration()), "rc", self.runtime)
        self.config = CorsFilterConfig.build(
            self.store, "http.t.", self.runtime, random.Random(7), filter_name, table.typed_cors.get(filter_name)
        )
        self.hcm = HcmConfig(
            stat_prefix="t",
            store=self.store,
            route_table=table,
            filter_factories=[cors_factory(self.config), lambda s: Upstream(s, self)],  # type: ignore[arg-type]
            rng=random.Random(1),
            call_later=self.clock.call_later,
        )
        self.upstream: list[list[list[str]]] = []
        self.upstream_bodies: list[bytes] = []
        self.response_body: bytes | None = b"ok"
        self.chunk = 1 << 30

    def send(self, headers: list[tuple[str, str]], method: str = "OPTIONS") -> tuple[str, list[tuple[str, str]], bytes]:
        conn = FakeConn(self.hcm, self.clock)
        s = ActiveStream(conn, RequestHeaders(method, "/p", "host", [[k, v] for k, v in headers]), True)  # type: ignore[arg-type]
        s.start()
        self.last = s
        return conn.response()

    def stats(self) -> tuple[int, int]:
        return self.store.value("http.t.cors.origin_valid"), self.store.value("http.t.cors.origin_invalid")


def names(headers: list[tuple[str, str]]) -> list[str]:
    return [k for k, _ in headers]


# -- preflights -----------------------------------------------------------------------------------
def test_allowed_preflight_is_answered_in_envoys_order() -> None:
    h = Harness(routes(FULL))
    line, headers, body = h.send([*PREFLIGHT, ("access-control-request-headers", "x-other")])
    assert line == "HTTP/1.1 200 OK" and body == b"" and h.upstream == []
    assert headers == [
        ("access-control-allow-origin", "http://a.example.com"),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "GET, POST, PUT"),
        ("access-control-allow-headers", "content-type, x-custom"),
        ("access-control-max-age", "600"),
        ("access-control-expose-headers", "x-expose-1, x-expose-2"),
        ("date", headers[6][1]),
        ("server", "envoy"),
        ("content-length", "0"),
    ]
    assert h.last.stream_info.response_code_details == "cors_response"
    assert h.stats() == (1, 0)


@pytest.mark.parametrize("origin", ["http://evil.com", "HTTP://A.EXAMPLE.COM"])
def test_refused_preflight_goes_upstream_unchanged(origin: str) -> None:
    h = Harness(routes(FULL))
    line, headers, body = h.send([("origin", origin), ("access-control-request-method", "POST")])
    assert body == b"ok" and not any(k.startswith("access-control") for k in names(headers))
    assert ["origin", origin] in h.upstream[0] and ["access-control-request-method", "POST"] in h.upstream[0]
    assert h.stats() == (0, 1)


def test_refused_preflight_answered_without_origin_when_not_forwarded() -> None:
    h = Harness(routes({**FULL, "forward_not_matching_preflights": False}))
    line, headers, body = h.send([("origin", "http://evil.com"), ("access-control-request-method", "POST")])
    assert h.upstream == [] and line == "HTTP/1.1 200 OK"
    assert names(headers)[:4] == ["access-control-allow-credentials", "access-control-allow-methods",
                                  "access-control-allow-headers", "access-control-max-age"]  # fmt: skip
    assert "access-control-allow-origin" not in names(headers) and "access-control-expose-headers" not in names(headers)


@pytest.mark.parametrize(
    ("headers", "method", "upstream"),
    [
        ([("origin", "http://a.example.com")], "OPTIONS", True),  # no access-control-request-method
        ([("origin", "http://a.example.com"), ("access-control-request-method", "")], "OPTIONS", True),
        ([("access-control-request-method", "POST")], "OPTIONS", True),  # no origin
        ([("origin", ""), ("access-control-request-method", "POST")], "OPTIONS", True),
        (PREFLIGHT, "GET", True),
        (PREFLIGHT, "options", True),  # the method is compared exactly
    ],
)
def test_not_a_preflight(headers: list[tuple[str, str]], method: str, upstream: bool) -> None:
    h = Harness(routes(FULL))
    h.send(headers, method)
    assert len(h.upstream) == 1


def test_star_methods_and_headers_echo_the_request_and_star_origin_echoes_origin() -> None:
    h = Harness(routes({"allow_origin_string_match": [{"exact": "*"}], "allow_methods": "*", "allow_headers": "*"}))
    _, headers, _ = h.send([("origin", "http://x"), ("access-control-request-method", "DELETE"),
                            ("access-control-request-headers", "x-a, x-b")])  # fmt: skip
    assert headers[:3] == [
        ("access-control-allow-origin", "http://x"),
        ("access-control-allow-methods", "DELETE"),
        ("access-control-allow-headers", "x-a, x-b"),
    ]
    _, headers, _ = h.send([("origin", "http://x"), ("access-control-request-method", "DELETE")])
    assert ("access-control-allow-headers", "") in headers  # Envoy sets it even when empty


def test_private_network_access() -> None:
    h = Harness(routes({"allow_origin_string_match": [{"exact": "http://a.example.com"}], "allow_private_network_access": True}))
    _, headers, _ = h.send([*PREFLIGHT, ("access-control-request-private-network", "true")])
    assert names(headers)[:2] == ["access-control-allow-origin", "access-control-allow-private-network"]
    _, headers, _ = h.send([*PREFLIGHT, ("access-control-request-private-network", "TRUE")])
    assert "access-control-allow-private-network" not in names(headers)


# -- actual requests ------------------------------------------------------------------------------------
def test_allowed_request_gets_origin_credentials_and_expose_appended() -> None:
    h = Harness(routes(FULL))
    _, headers, body = h.send([("origin", "http://b.foo")], "GET")
    assert body == b"ok"
    assert headers[1:4] == [  # after the upstream's headers, before date and server
        ("access-control-allow-origin", "http://b.foo"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "x-expose-1, x-expose-2"),
    ]
    assert ["origin", "http://b.foo"] in h.upstream[0]


def test_refused_or_missing_origin_leaves_the_response_alone() -> None:
    h = Harness(routes(FULL))
    for hdrs in ([("origin", "http://evil.com")], []):
        _, headers, _ = h.send(hdrs, "GET")
        assert not any(k.startswith("access-control") for k in names(headers))
    assert h.stats() == (0, 1)  # no origin, no count


# -- which policy -----------------------------------------------------------------------------------
def test_route_settings_win_and_unset_ones_come_from_the_virtual_host() -> None:
    vh = {"allow_origin_string_match": [{"safe_regex": {"regex": r"http://[a-z]+\.vh"}}], "allow_credentials": True,
          "expose_headers": "x-vh", "max_age": "60", "allow_methods": "GET"}  # fmt: skip
    h = Harness(routes({"allow_methods": "PATCH", "allow_credentials": False}, vh))
    _, headers, _ = h.send([("origin", "http://one.vh"), ("access-control-request-method", "GET")])
    assert headers[:4] == [
        ("access-control-allow-origin", "http://one.vh"),
        ("access-control-allow-methods", "PATCH"),  # the route's; its explicit false drops credentials
        ("access-control-max-age", "60"),
        ("access-control-expose-headers", "x-vh"),
    ]
    _, headers, _ = h.send([("origin", "http://one.vh.x")], "GET")  # regex is a full match
    assert not any(k.startswith("access-control") for k in names(headers))


def test_typed_per_filter_config_replaces_the_legacy_policies() -> None:
    typed_vh = {"envoy.filters.http.cors": {"@type": TYPED, "allow_origin_string_match": [{"exact": "http://t"}], "max_age": "5"}}
    typed_route = {"envoy.filters.http.cors": {"@type": TYPED, "expose_headers": "x-r"}}
    rc = routes({"allow_origin_string_match": [{"exact": "http://legacy"}]}, vh_extra={"typed_per_filter_config": typed_vh},
                route_extra={"typed_per_filter_config": typed_route})  # fmt: skip
    h = Harness(rc)
    _, headers, _ = h.send([("origin", "http://t"), ("access-control-request-method", "GET")])
    assert headers[:3] == [("access-control-allow-origin", "http://t"), ("access-control-max-age", "5"),
                           ("access-control-expose-headers", "x-r")]  # fmt: skip
    h.send([("origin", "http://legacy"), ("access-control-request-method", "GET")])
    assert len(h.upstream) == 1


def test_typed_policy_is_looked_up_by_the_filters_name() -> None:
    typed = {"my_cors": {"@type": TYPED, "allow_origin_string_match": [{"exact": "http://t"}]}}
    rc = routes({"allow_origin_string_match": [{"exact": "http://legacy"}]}, route_extra={"typed_per_filter_config": typed})
    h = Harness(rc)  # filter named envoy.filters.http.cors: the entry is not for it
    h.send([("origin", "http://legacy"), ("access-control-request-method", "GET")])
    assert h.upstream == []
    h = Harness(rc, filter_name="my_cors")
    h.send([("origin", "http://t"), ("access-control-request-method", "GET")])
    assert h.upstream == []


def test_route_configuration_policy_is_the_least_specific() -> None:
    rc_typed = {"envoy.filters.http.cors": {"@type": TYPED, "allow_origin_string_match": [{"exact": "http://rc"}], "max_age": "9"}}
    rc = routes(route_extra={"typed_per_filter_config": {"envoy.filters.http.cors": {"@type": TYPED, "max_age": "1"}}},
                typed_per_filter_config=rc_typed)  # fmt: skip
    h = Harness(rc)
    _, headers, _ = h.send([("origin", "http://rc"), ("access-control-request-method", "GET")])
    assert headers[:2] == [("access-control-allow-origin", "http://rc"), ("access-control-max-age", "1")]


def test_direct_response_and_redirect_routes_have_no_cors() -> None:
    rc = {"virtual_hosts": [{"name": "v", "domains": ["*"], "cors": FULL,
                             "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]}  # fmt: skip
    h = Harness(rc)
    line, headers, _ = h.send(PREFLIGHT)
    assert not any(k.startswith("access-control") for k in names(headers))
    assert policies_for(h.last, h.config) == () and h.stats() == (0, 0)


# -- filter_enabled / shadow_enabled ---------------------------------------------------------------------
OFF = {"default_value": {"numerator": 0}}
ON = {"default_value": {"numerator": 100}}


def test_disabled_policy_does_nothing_and_counts_nothing() -> None:
    h = Harness(routes({**FULL, "filter_enabled": OFF}))
    h.send(PREFLIGHT)
    assert len(h.upstream) == 1 and h.stats() == (0, 0)


def test_shadow_mode_counts_but_does_not_act() -> None:
    h = Harness(routes({**FULL, "filter_enabled": OFF, "shadow_enabled": ON}))
    _, headers, _ = h.send(PREFLIGHT)
    h.send([("origin", "http://evil")], "GET")
    assert len(h.upstream) == 2 and not any(k.startswith("access-control") for k in names(headers))
    assert h.stats() == (1, 1)


def test_enabled_wins_over_shadow() -> None:
    h = Harness(routes({**FULL, "filter_enabled": ON, "shadow_enabled": ON}))
    h.send(PREFLIGHT)
    assert h.upstream == []


def test_runtime_keys_switch_the_filter() -> None:
    cors = {**FULL, "filter_enabled": {"runtime_key": "cors.on", "default_value": {"numerator": 100}}}
    h = Harness(routes(cors), **{"cors.on": "0"})
    h.send(PREFLIGHT)
    assert len(h.upstream) == 1
    h.runtime.merge_admin({"cors.on": "100"})
    h.send(PREFLIGHT)
    assert len(h.upstream) == 1 and h.stats() == (1, 0)


def test_only_the_first_policy_decides_enabled() -> None:
    # The route's policy (enabled by default) decides, not the disabled vhost policy.
    h = Harness(routes({"max_age": "1"}, {**FULL, "filter_enabled": OFF}))
    h.send(PREFLIGHT)
    assert h.upstream == []


# -- parsing, registry, support ------------------------------------------------------------------------
def test_policy_parsing_and_matchers() -> None:
    from envoy.config.route.v3.route_components_pb2 import CorsPolicy as Proto

    p = CorsPolicy.from_proto(
        json_format.ParseDict(
            {"allow_origin_string_match": [{"exact": "http://IC", "ignore_case": True}, {"suffix": ".sfx"}, {"contains": "mid"}],
             "allow_credentials": False},
            Proto(),
        ),
        "p",
    )  # fmt: skip
    tests = p.allow_origins
    assert tests[0]("http://ic") and not tests[0]("http://icx") and tests[1]("a.sfx") and tests[2]("amidb")
    assert p.allow_credentials is False and p.allow_private_network_access is None and p.forward_not_matching_preflights is None
    assert p.allow_methods == "" and p.filter_enabled is None


def test_registry_entry() -> None:
    entry = registry.lookup("type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors", "whatever")
    assert entry is not None and not entry.terminal
    assert registry.lookup("", "envoy.filters.http.cors") is entry


BOOT = """
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          route_config:
            typed_per_filter_config:
              envoy.filters.http.cors: {"@type": %(typed)s, max_age: "1"}
            virtual_hosts:
            - name: v
              domains: ["*"]
              cors: {allow_origin_string_match: [{exact: x}], filter_enabled: {default_value: {numerator: 1}}}
              typed_per_filter_config:
                envoy.filters.http.cors: {"@type": %(typed)s, allow_methods: GET}
              routes:
              - match: {prefix: /}
                route: {cluster: c, cors: {allow_credentials: true, forward_not_matching_preflights: false}}
                typed_per_filter_config:
                  envoy.filters.http.cors: {"@type": %(typed)s, allow_private_network_access: true}
          http_filters:
          - name: envoy.filters.http.cors
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: c
    load_assignment: {cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}}]}]}
"""


def test_cors_config_is_fully_supported() -> None:
    assert unsupported_features(load_bootstrap(path=None, config_yaml=BOOT % {"typed": TYPED})) == []


def test_other_per_filter_configs_are_reported() -> None:
    other = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
    found = unsupported_features(load_bootstrap(path=None, config_yaml=BOOT.replace('%(typed)s, max_age: "1"', other) % {"typed": TYPED}))
    assert len(found) == 1 and "HTTPFault" in found[0] and "typed_per_filter_config" in found[0]


def test_filter_instance_repr() -> None:
    h = Harness(routes(FULL))
    h.send([("origin", "http://a.example.com")], "GET")
    assert isinstance(CorsFilter(h.config, h.last), CorsFilter)
    assert repr(CorsFilter(h.config, h.last)) == "<CorsFilter cors=False origin=''>"
