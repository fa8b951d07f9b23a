"""``/clusters`` text and JSON, against the real Envoy's captures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sluice.server import Server

TEXT = "text/plain; charset=UTF-8"


def host_keys(lines: list[str]) -> list[str]:
    """``c::1.2.3.4:80::cx_active::1`` → ``cx_active``."""
    return [line.split("::")[2] for line in lines]


def test_text_lines_follow_envoys_order(call: Any, server: Server, golden: Path) -> None:
    captured = json.loads((golden / "admin" / "admin.json").read_text())["GET /clusters"]
    host = server.cluster_manager.clusters["demoappv10"].hosts[0]
    host.stats.cx_active = host.stats.cx_total = 1
    host.stats.rq_success = host.stats.rq_total = 3
    status, ctype, body = call("GET", "/clusters")
    assert (status, ctype) == (200, TEXT)
    lines = body.splitlines()
    assert body.endswith("\n")
    # demoappv10: cluster lines exactly as Envoy's, then 19 lines per host.
    assert lines[:10] == captured["cluster_level_lines_demoappv10"]
    first_host = lines[10:29]
    assert host_keys(first_host) == host_keys(captured["lines_for_one_host_of_demoappv10"])
    want = [
        line.replace("127.0.0.11:18803::hostname::127.0.0.11", "127.0.0.11:18803::hostname::")
        for line in captured["lines_for_one_host_of_demoappv10"]
    ]
    assert first_host == want  # a STATIC endpoint without a hostname shows an empty one
    assert all(line.startswith("demoappv10::127.0.0.12:18803::") for line in lines[29:48])
    # demoappv11 configures max_retries 7 for the HIGH priority.
    assert lines[48] == "demoappv11::observability_name::demoappv11"
    assert "demoappv11::high_priority::max_retries::7" in lines and "demoappv11::default_priority::max_retries::3" in lines
    assert len(lines) == 10 + 2 * 19 + 10 + 19


def test_filter(call: Any) -> None:
    body = call("GET", "/clusters?filter=v11$")[2]
    assert body.startswith("demoappv11::") and "demoappv10" not in body
    assert call("GET", "/clusters?filter=(") == (400, TEXT, "Invalid re2 regex")
    assert call("GET", "/clusters?format=text")[2] == call("GET", "/clusters")[2]


def test_json_has_envoys_shape(call: Any, server: Server, golden: Path) -> None:
    envoy = json.loads((golden / "admin" / "clusters_format_json.json").read_text())
    host = server.cluster_manager.clusters["demoappv10"].hosts[0]
    host.stats.cx_active = host.stats.cx_total = 1
    host.stats.rq_success = host.stats.rq_total = 3
    status, ctype, body = call("GET", "/clusters?format=json")
    assert (status, ctype) == (200, "application/json")
    assert body.startswith('{\n "cluster_statuses": [\n  {\n   "name": "demoappv10",\n') and body.endswith("}\n")
    ours = json.loads(body)
    by_name = {c["name"]: c for c in envoy["cluster_statuses"]}
    for cluster in ours["cluster_statuses"]:
        theirs = by_name[cluster["name"]]
        assert list(cluster) == list(theirs)
        # A STATIC endpoint without a hostname has none to print (proto3 omits the empty string).
        assert list(cluster["host_statuses"][0]) == [k for k in theirs["host_statuses"][0] if k != "hostname"]
    ten = ours["cluster_statuses"][0]
    # Same stats entries as Envoy's first demoappv10 host (zero values omitted, counts as strings).
    assert ten["host_statuses"][0]["stats"] == by_name["demoappv10"]["host_statuses"][0]["stats"]
    assert ten["host_statuses"][1]["stats"] == by_name["demoappv11"]["host_statuses"][0]["stats"]
    assert ten["circuit_breakers"] == by_name["demoappv10"]["circuit_breakers"]
    assert ten["host_statuses"][0]["health_status"] == {"eds_health_status": "HEALTHY"}
    assert ten["host_statuses"][0]["locality"] == {}
    eleven = ours["cluster_statuses"][1]
    assert eleven["circuit_breakers"]["thresholds"][1] == {
        "priority": "HIGH", "max_connections": 1024, "max_pending_requests": 1024, "max_requests": 1024, "max_retries": 7,
    }  # fmt: skip
