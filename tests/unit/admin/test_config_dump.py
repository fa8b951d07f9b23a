"""``/config_dump``: Envoy's dump types, order and query parameters."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sluice.admin import handlers
from sluice.admin.server import AdminRequest
from sluice.server import Server

ADMIN = "type.googleapis.com/envoy.admin.v3."
PLAIN = "text/plain"


def test_dump_types_and_shapes_match_envoy(call: Any, golden: Path) -> None:
    captured = json.loads((golden / "admin" / "admin.json").read_text())["GET /config_dump"]
    envoy = json.loads((golden / "admin" / "config_dump.json").read_text())
    status, ctype, body = call("GET", "/config_dump")
    assert (status, ctype) == (200, "application/json")
    assert body.startswith('{\n "configs": [\n  {\n   "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",\n')
    dump = json.loads(body)
    assert [c["@type"] for c in dump["configs"]] == captured["configs_types"]
    for ours, theirs in zip(dump["configs"], envoy["configs"], strict=True):
        assert list(ours) == list(theirs), ours["@type"]
    boot = dump["configs"][0]
    assert list(boot["bootstrap"]) == ["node", "static_resources", "admin", "layered_runtime"]
    assert list(boot["bootstrap"]["node"])[:2] == ["user_agent_name", "user_agent_build_version"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", boot["last_updated"])
    clusters = dump["configs"][1]["static_clusters"]
    assert [list(c) for c in clusters] == [["cluster", "last_updated"]] * 2
    first = clusters[0]["cluster"]
    # Fields in number order, defaults (lb_policy ROUND_ROBIN) omitted, durations as Envoy spells them.
    assert list(first) == ["@type", "name", "type", "connect_timeout", "load_assignment"]
    assert first["connect_timeout"] == "0.250s" == envoy["configs"][1]["static_clusters"][0]["cluster"]["connect_timeout"]
    listener = dump["configs"][2]["static_listeners"][0]["listener"]
    assert listener["@type"] == "type.googleapis.com/envoy.config.listener.v3.Listener"
    route = dump["configs"][4]["static_route_configs"][0]
    assert route["route_config"]["@type"] == "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    assert route["route_config"]["name"] == "local_route"


def test_resource(call: Any, golden: Path) -> None:
    captured = json.loads((golden / "admin" / "admin.json").read_text())
    assert call("GET", "/config_dump?resource=dynamic_active_clusters") == (
        200,
        "application/json",
        captured["GET /config_dump?resource=dynamic_active_clusters"]["body"],
    )
    dump = json.loads(call("GET", "/config_dump?resource=static_clusters")[2])
    assert [c["@type"] for c in dump["configs"]] == [ADMIN + "ClustersConfigDump.StaticCluster"] * 2
    assert dump["configs"][0]["cluster"]["name"] == "demoappv10"
    assert call("GET", "/config_dump?resource=static_route_configs&name_regex=nomatch")[2] == "{}\n"
    eds = json.loads(call("GET", "/config_dump?resource=static_endpoint_configs&include_eds")[2])
    cla = eds["configs"][0]["endpoint_config"]
    assert cla["cluster_name"] == "demoappv10" and cla["policy"] == {"overprovisioning_factor": 140}
    assert cla["endpoints"][0]["lb_endpoints"][0]["health_status"] == "HEALTHY"
    assert call("GET", "/config_dump?resource=static_endpoint_configs") == (
        404,
        PLAIN,
        "static_endpoint_configs not found in config dump",
    )
    assert call("GET", "/config_dump?resource=bootstrap") == (
        400,
        PLAIN,
        "bootstrap is not a repeated field. Use ?mask=bootstrap to get only this field",
    )


def test_errors_put_a_nosniff_header_first(server: Server) -> None:
    status, ctype, body, leading = handlers.dispatch(server, AdminRequest("GET", "/config_dump?resource=bogus", b"", ""))  # type: ignore[misc]
    assert (status, ctype, body) == (404, PLAIN, "bogus not found in config dump")
    assert leading == (("x-content-type-options", "nosniff"),)


def test_mask_and_name_regex(call: Any) -> None:
    admin_only = json.loads(call("GET", "/config_dump?mask=bootstrap.admin")[2])
    assert admin_only == {
        "configs": [
            {
                "@type": ADMIN + "BootstrapConfigDump",
                "bootstrap": {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}},
            }
        ]
    }
    names = json.loads(call("GET", "/config_dump?resource=static_clusters&mask=cluster.name")[2])
    assert names["configs"][1] == {
        "@type": ADMIN + "ClustersConfigDump.StaticCluster",
        "cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "demoappv11"},
    }
    only_v11 = json.loads(call("GET", "/config_dump?mask=static_clusters&name_regex=demoappv11")[2])
    assert [c["cluster"]["name"] for c in only_v11["configs"][0]["static_clusters"]] == ["demoappv11"]
    # name_regex must match the whole name.
    assert json.loads(call("GET", "/config_dump?mask=static_clusters&name_regex=v11")[2]) == {
        "configs": [{"@type": ADMIN + "ClustersConfigDump"}]
    }
    assert call("GET", "/config_dump?mask=bogus") == (
        400,
        PLAIN,
        "FieldMask bogus could not be successfully applied to any configs.",
    )
    status, _, body = call("GET", "/config_dump?resource=static_clusters&mask=a,b")
    assert status == 400
    assert re.fullmatch(r'FieldMask goo.gle/debug\w+    \npaths: "a"\npaths: "b"\n could not be successfully used.', body)
    assert call("GET", "/config_dump?name_regex=(") == (
        400,
        PLAIN,
        "INVALID_ARGUMENT: Error while parsing name_regex from (: missing ): (",
    )
