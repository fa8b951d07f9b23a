"""Route table: virtual-host selection, matchers, weighted clusters, header mutations."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from sluice.errors import ConfigError
from sluice.http.headers import HeaderMap, RequestHeaders
from sluice.route.table import RouteTable
from sluice.runtime import Layer, Runtime


def table(rc: dict, runtime: Runtime | None = None) -> RouteTable:
    msg = json_format.ParseDict(rc, route_pb2.RouteConfiguration())
    return RouteTable(msg, "route_config", runtime or Runtime([Layer("admin", "admin")]))


def req(path: str = "/", host: str = "example.com", headers: list[list[str]] | None = None) -> RequestHeaders:
    return RequestHeaders("GET", path, host, headers or [])


def vhosts_config() -> dict:
    return {
        "virtual_hosts": [
            {"name": "exact", "domains": ["named.example.com"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}]},
            {"name": "suffix", "domains": ["*.wild.example.com"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "b"}}]},
            {"name": "longer-suffix", "domains": ["*.x.wild.example.com"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "e"}}]},
            {"name": "prefix", "domains": ["api.*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"}}]},
            {"name": "default", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "d"}}]},
        ]
    }


@pytest.mark.parametrize(
    ("host", "vhost"),
    [
        ("named.example.com", "exact"),
        ("NAMED.Example.COM", "exact"),  # case-insensitive
        ("named.example.com:80", "default"),  # the port is not stripped
        ("a.wild.example.com", "suffix"),
        ("a.x.wild.example.com", "longer-suffix"),  # longest wildcard wins
        ("api.foo", "prefix"),
        ("other", "default"),
    ],
)
def test_virtual_host_selection(host: str, vhost: str) -> None:
    vh = table(vhosts_config()).virtual_host(host)
    assert vh is not None and vh.name == vhost


def test_duplicate_domain_is_an_error() -> None:
    cfg = {"name": "rc", "virtual_hosts": [
        {"name": "a", "domains": ["x.com"], "routes": []},
        {"name": "b", "domains": ["x.com"], "routes": []},
    ]}  # fmt: skip
    with pytest.raises(ConfigError, match=r"virtual_hosts\[1\]\.domains\[0\]: domain 'x.com'"):
        table(cfg)


def routes(*entries: dict) -> dict:
    return {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": list(entries)}]}


def test_first_match_wins_and_matchers() -> None:
    t = table(
        routes(
            {"name": "exact", "match": {"path": "/exact"}, "route": {"cluster": "p"}},
            {"name": "ci", "match": {"prefix": "/CaSe/", "case_sensitive": False}, "route": {"cluster": "ci"}},
            {"name": "re", "match": {"safe_regex": {"regex": "/re/[0-9]+"}}, "route": {"cluster": "re"}},
            {"name": "sep", "match": {"path_separated_prefix": "/api"}, "route": {"cluster": "sep"}},
            {"name": "hdr", "match": {"prefix": "/", "headers": [{"name": "x-canary", "string_match": {"exact": "1"}}]}, "route": {"cluster": "canary"}},
            {"name": "qp", "match": {"prefix": "/", "query_parameters": [{"name": "v", "string_match": {"exact": "2"}}]}, "route": {"cluster": "q"}},
            {"name": "inv", "match": {"prefix": "/inv", "headers": [{"name": "x-a", "present_match": True, "invert_match": True}]}, "route": {"cluster": "inv"}},
            {"name": "range", "match": {"prefix": "/r", "headers": [{"name": "x-n", "range_match": {"start": 10, "end": 20}}]}, "route": {"cluster": "range"}},
            {"name": "all", "match": {"prefix": "/"}, "route": {"cluster": "all"}},
        )
    )

    def name(path: str, headers: list[list[str]] | None = None) -> str:
        r = t.route(req(path, headers=headers), 0)
        assert r is not None
        return r.name

    assert name("/exact") == "exact"
    assert name("/exact?x=1") == "exact"  # the query string is not part of the path match
    assert name("/exact/") == "all"
    assert name("/case/x") == "ci"
    assert name("/re/123") == "re"
    assert name("/re/123x") == "all"  # safe_regex must match the whole path
    assert name("/api") == "sep"
    assert name("/api/v1") == "sep"
    assert name("/apiv1") == "all"
    assert name("/x", [["x-canary", "1"]]) == "hdr"
    assert name("/x", [["x-canary", "2"]]) == "all"
    assert name("/x?v=2") == "qp"
    assert name("/inv") == "inv"
    assert name("/inv", [["x-a", "1"]]) == "all"
    assert name("/r", [["x-n", "15"]]) == "range"
    assert name("/r", [["x-n", "20"]]) == "all"


def test_bad_regex_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\]\.match\.safe_regex\.regex: invalid regex"):
        table(routes({"match": {"safe_regex": {"regex": "/re/[0-9"}}, "route": {"cluster": "a"}}))


def runtime_fraction_table(rt: Runtime) -> RouteTable:
    return table(
        routes(
            {"name": "v10", "match": {"prefix": "/", "runtime_fraction": {
                "default_value": {"numerator": 100, "denominator": "HUNDRED"},
                "runtime_key": "routing.traffic_shift.demoapp"}}, "route": {"cluster": "v10"}},
            {"name": "v11", "match": {"prefix": "/"}, "route": {"cluster": "v11"}},
        ),
        rt,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected_share"),
    [(None, 100), ("90", 90), ("0", 0), ("150", 100), ("abc", 100), ("-1", 100), ("0.5", 0), ("50.7", 50), (" 30", 30)],
)
def test_runtime_fraction_reads_values_as_envoy(value: str | None, expected_share: int) -> None:
    rt = Runtime([Layer("admin", "admin")])
    if value is not None:
        rt.merge_admin({"routing.traffic_shift.demoapp": value})
    t = runtime_fraction_table(rt)
    # Every random value modulo 100 once: the share is exact, no statistics needed.
    hits = sum(1 for rv in range(100) if t.route(req(), rv).name == "v10")  # type: ignore[union-attr]
    assert hits == expected_share


def weighted_table(rt: Runtime) -> RouteTable:
    return table(
        routes({"match": {"prefix": "/"}, "route": {"weighted_clusters": {
            "clusters": [{"name": "v10", "weight": 100}, {"name": "v11", "weight": 0}],
            "total_weight": 100, "runtime_key_prefix": "routing.traffic_split.demoapp"}}}),
        rt,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("v10", "v11", "share_v10", "total"),
    [(None, None, 100, 100), ("0", "100", 0, 100), ("30", "70", 30, 100), ("30", "30", 30, 60), ("abc", "50", 100, 150), ("0", "0", 0, 0)],
)
def test_weighted_clusters_with_runtime_weights(v10: str | None, v11: str | None, share_v10: int, total: int) -> None:
    rt = Runtime([Layer("admin", "admin")])
    if v10 is not None:
        rt.merge_admin({"routing.traffic_split.demoapp.v10": v10, "routing.traffic_split.demoapp.v11": v11 or ""})
    t = weighted_table(rt)
    r = t.route(req(), 0)
    assert r is not None
    picks = [r.pick_cluster(req(), rt, rv)[0] for rv in range(max(total, 1))]
    if total == 0:
        assert picks == [""]  # all weights zero: no cluster (Envoy answers 404)
    else:
        assert picks.count("v10") == share_v10


def test_header_mutations_follow_envoy_order() -> None:
    t = table(
        routes({"match": {"prefix": "/"}, "route": {"cluster": "a"},
                "request_headers_to_add": [
                    {"header": {"key": "x-ua", "value": "%REQ(user-agent)%"}},
                    {"header": {"key": "x-missing", "value": "%REQ(x-nope)%"}},
                    {"header": {"key": "x-dup", "value": "from-envoy"}},
                    {"header": {"key": "x-ow", "value": "from-envoy"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
                ],
                "request_headers_to_remove": ["x-remove-me"],
                "response_headers_to_add": [{"header": {"key": "content-type", "value": "text/x-added"}}]})
    )  # fmt: skip
    r = t.route(req(), 0)
    assert r is not None
    h = req(headers=[["user-agent", "curl"], ["x-remove-me", "1"], ["x-dup", "client"], ["x-ow", "client"]])
    r.mutations[0].apply(h, h, None)
    assert h.entries == [
        ["user-agent", "curl"],
        ["x-dup", "client"],
        ["x-ow", "from-envoy"],  # overwrite = remove, then append, before the plain adds
        ["x-ua", "curl"],
        ["x-dup", "from-envoy"],  # a non-inline header gets a second entry
    ]
    resp = HeaderMap([["content-type", "application/json"]])
    r.mutations[1].apply(resp, h, None)
    assert resp.entries == [["content-type", "application/json,text/x-added"]]  # inline: joined


def test_unknown_header_command_is_rejected() -> None:
    # The access-log formatter's own error, as Envoy's (header values use that formatter).
    with pytest.raises(ConfigError, match=r"request_headers_to_add\[0\]\.header\.value: Not supported field in StreamInfo: NOPE"):
        table(routes({"match": {"prefix": "/"}, "route": {"cluster": "a"},
                      "request_headers_to_add": [{"header": {"key": "x", "value": "%NOPE%"}}]}))  # fmt: skip


def test_route_without_action_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\]: route needs one of"):
        table(routes({"match": {"prefix": "/"}}))
