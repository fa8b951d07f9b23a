"""The small admin endpoints, their errors and their texts, against the real Envoy's captures."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from sluice.admin import handlers
from sluice.server import Server

TEXT = "text/plain; charset=UTF-8"
JSON = "application/json"


def help_blocks(text: str) -> dict[str, list[str]]:
    """``/help`` text → endpoint path → its lines (the endpoint line and its parameter lines)."""
    lines = text.splitlines()
    assert lines[0] == "admin commands are:"
    blocks: dict[str, list[str]] = {}
    current = ""
    for line in lines[1:]:
        if line.startswith("  /"):
            current = line.split(":", 1)[0].removesuffix(" (POST)").strip()
            blocks[current] = [line]
        else:
            blocks[current].append(line)
    return blocks


def test_help_is_envoys_text_for_each_implemented_endpoint(call: Any, golden: Path) -> None:
    status, ctype, body = call("GET", "/help")
    assert (status, ctype) == (200, TEXT)
    ours, envoys = help_blocks(body), help_blocks((golden / "admin" / "help.txt").read_text())
    assert set(ours) == set(handlers.ENDPOINTS)
    for path, lines in ours.items():
        assert lines == envoys[path], path
    assert list(ours) == [p for p in envoys if p in ours]  # Envoy's order
    assert body.endswith("\n") and body.count("\n") == sum(len(v) for v in ours.values()) + 1


def test_unknown_path_is_404_with_help(call: Any, golden: Path) -> None:
    status, ctype, body = call("GET", "/nonexistent")
    assert (status, ctype) == (404, TEXT)
    assert body == "invalid path. " + handlers.help_text()
    captured = json.loads((golden / "admin" / "admin.json").read_text())["GET /nonexistent"]
    assert captured["status"] == 404 and captured["body"].startswith("invalid path. admin commands are:\n  /: Admin home page\n")
    for path in ("/ready/", "/READY", "/ready/.", "/stats/prometheus/", "/cpuprofiler"):
        assert call("GET", path)[0] == 404
    assert call("GET", "//x/../%72eady") == (200, TEXT, "LIVE\n")  # normalized first, as Envoy does


@pytest.mark.parametrize("path", [p for p, ep in handlers.ENDPOINTS.items() if ep.post_only])
def test_post_only_endpoints_refuse_get(call: Any, server: Server, path: str) -> None:
    before = server.runtime.snapshot_json()
    assert call("GET", path + "?a=b") == (405, TEXT, "Method GET not allowed, POST required.")
    assert call("HEAD", path)[:2] == (405, TEXT)
    assert server.runtime.snapshot_json() == before
    assert not server.draining


def test_get_endpoints_answer_post_too(call: Any) -> None:
    assert call("POST", "/ready") == (200, TEXT, "LIVE\n")
    assert call("POST", "/stats?filter=^server.live$") == (200, TEXT, "server.live: 1\n")


def test_healthcheck_fail_and_ok_sequence(call: Any, server: Server, golden: Path) -> None:
    seq = json.loads((golden / "admin" / "admin.json").read_text())["healthcheck_sequence"]
    assert call("GET", "/ready") == (200, TEXT, "LIVE\n")
    assert call("POST", "/healthcheck/fail") == (200, TEXT, seq["POST /healthcheck/fail"]["body"])
    assert call("GET", "/ready") == (503, TEXT, seq["GET /ready after fail"]["body"])
    assert json.loads(call("GET", "/server_info")[2])["state"] == seq["server_info.state after fail"] == "DRAINING"
    assert call("GET", "/stats?filter=^server.live$")[2] == "server.live: 0\n"
    assert call("POST", "/healthcheck/ok") == (200, TEXT, seq["POST /healthcheck/ok"]["body"])
    assert call("GET", "/ready") == (200, TEXT, seq["GET /ready after ok"]["body"])
    assert json.loads(call("GET", "/server_info")[2])["state"] == "LIVE"
    assert call("GET", "/stats?filter=^server.live$")[2] == "server.live: 1\n"


def test_ready_before_initialization(call: Any, server: Server) -> None:
    server.state = "PRE_INITIALIZING"
    server.draining = True  # a failed health check does not hide the init state
    assert call("GET", "/ready") == (503, TEXT, "PRE_INITIALIZING\n")


def test_server_info_has_envoys_keys(call: Any, server: Server, golden: Path) -> None:
    captured = json.loads((golden / "admin" / "admin.json").read_text())["GET /server_info"]
    status, ctype, body = call("GET", "/server_info")
    assert (status, ctype) == (200, JSON)
    assert body.startswith('{\n "version": ') and body.endswith("\n}\n")
    info = json.loads(body)
    assert list(info) == captured["top_level_keys"]
    assert list(info["command_line_options"]) == captured["command_line_options_keys"]
    assert info["state"] == "LIVE"
    assert info["command_line_options"]["drain_time"] == "600s"
    assert list(info["node"])[:4] == ["id", "cluster", "user_agent_name", "user_agent_build_version"]
    assert list(info["node"])[-1] == "dynamic_parameters"
    assert info["uptime_current_epoch"].endswith("s") and info["hot_restart_initializing"] is False


def test_listeners_text_and_json(call: Any, server: Server, golden: Path) -> None:
    captured = json.loads((golden / "admin" / "admin.json").read_text())
    server.listeners[0].port = 18091
    status, ctype, body = call("GET", "/listeners")
    assert (status, ctype, body) == (200, TEXT, captured["GET /listeners"]["body"])
    status, ctype, body = call("GET", "/listeners?format=json")
    assert (status, ctype) == (200, JSON)
    assert json.loads(body) == captured["GET /listeners?format=json"]["body"]
    assert body == json.dumps(captured["GET /listeners?format=json"]["body"], indent=1) + "\n"
    assert call("GET", "/listeners?format=bogus")[2] == captured["GET /listeners"]["body"]


def test_runtime_bodies_match_envoy_byte_for_byte(call: Any, golden: Path) -> None:
    shifting = json.loads((golden / "traffic_shifting" / "shifting.json").read_text())
    assert call("GET", "/runtime") == (200, JSON, shifting["runtime_before_any_modify"]["raw_body"])
    assert call("POST", "/runtime_modify?routing.traffic_shift.demoapp=90") == (200, TEXT, "OK\n")
    assert call("GET", "/runtime") == (200, JSON, shifting["runtime_after_modify_90"]["raw_body"])


def test_runtime_modify_edge_cases(call: Any, server: Server, golden: Path) -> None:
    cases = json.loads((golden / "traffic_shifting" / "runtime_modify_edge_cases.json").read_text())
    key = "routing.traffic_shift.demoapp"

    def entry() -> Any:
        return json.loads(call("GET", "/runtime")[2])["entries"].get(key)

    usage = cases["POST_no_params"]["response"]
    assert call("POST", "/runtime_modify") == (usage["status"], TEXT, usage["body"])
    for name in ("value='abc'", "value='150'", "value='-1'", "value='0.5'", "value='50.7'", "value=' 30'"):
        value = name[7:-1]
        assert call("POST", f"/runtime_modify?{key}={value.replace(' ', '%20')}") == (200, TEXT, "OK\n")
        assert entry() == cases[name]["runtime_entry_after"], name
    assert call("POST", f"/runtime_modify?{key}=") == (200, TEXT, "OK\n")  # an empty value removes it
    assert entry() is cases["value=''"]["runtime_entry_after"] is None
    form = "application/x-www-form-urlencoded"
    assert call("POST", "/runtime_modify", f"{key}=20".encode(), form) == (200, TEXT, "OK\n")
    assert entry() == cases["POST_form_body_value_20"]["runtime_entry_after"]
    assert call("POST", f"/runtime_modify?{key}=70&some.other.key=hello") == (200, TEXT, "OK\n")
    assert json.loads(call("GET", "/runtime")[2]) == cases["POST_two_keys"]["runtime_after"]
    # The query wins: a form body is only read when the query string has no parameters.
    assert call("POST", f"/runtime_modify?{key}=5", b"e=7", form)[0] == 200
    assert entry()["final_value"] == "5" and "e" not in json.loads(call("GET", "/runtime")[2])["entries"]
    assert call("GET", "/stats?filter=^runtime.admin_overrides_active$")[2] == "runtime.admin_overrides_active: 1\n"


def test_runtime_modify_without_an_admin_layer(call: Any, server: Server) -> None:
    server.runtime.layers.clear()
    server.runtime._admin = None  # type: ignore[attr-defined]
    assert call("POST", "/runtime_modify?a=1") == (503, TEXT, "No admin layer specified")


def test_small_endpoints(call: Any, server: Server, golden: Path) -> None:
    others = json.loads((golden / "admin" / "admin.json").read_text())["other_GET_endpoints"]
    for path in ("/certs", "/init_dump", "/contention", "/stats/recentlookups"):
        want = others[path]
        got = call("GET", path)
        assert got[:2] == (want["status"], want["content-type"]), path
        if path != "/stats/recentlookups":
            assert got[2] == want["body_first_300"], path
    assert call("GET", "/stats/recentlookups")[2] == (
        "Lookup tracking is not enabled. Use /stats/recentlookups/enable to enable.\n\ntotal: 0\n"
    )
    assert call("POST", "/stats/recentlookups/enable") == (200, TEXT, "OK\n")
    assert call("GET", "/stats/recentlookups")[2] == "   Count Lookup\n\ntotal: 0\n"
    assert call("POST", "/stats/recentlookups/disable") == (200, TEXT, "OK\n")
    assert call("GET", "/stats/recentlookups")[2].startswith("Lookup tracking is not enabled.")
    assert call("GET", "/hot_restart_version") == (200, TEXT, "disabled")
    status, ctype, body = call("GET", "/memory")
    assert (status, ctype) == (200, JSON)
    assert list(json.loads(body)) == list(json.loads(others["/memory"]["body_first_300"]))


def test_reset_counters(call: Any, server: Server) -> None:
    server.store.counter("cluster.demoappv10.upstream_rq_total").inc(5)
    server.store.gauge("cluster.demoappv10.upstream_cx_active").set(2)
    assert call("POST", "/reset_counters") == (200, TEXT, "OK\n")
    assert server.store.value("cluster.demoappv10.upstream_rq_total") == 0
    assert server.store.value("cluster.demoappv10.upstream_cx_active") == 2  # gauges are kept


def test_logging_lists_and_changes_levels(call: Any) -> None:
    admin_logger = logging.getLogger("sluice.admin")
    saved = (logging.getLogger("sluice").level, admin_logger.level)
    try:
        status, ctype, body = call("POST", "/logging?admin=debug")
        assert (status, ctype) == (200, TEXT)
        assert body.startswith("active loggers:\n") and "  admin: debug\n" in body and body.endswith("\n\n")
        assert admin_logger.getEffectiveLevel() == logging.DEBUG
        assert call("POST", "/logging?paths=admin:trace,main:warning")[0] == 200
        assert admin_logger.getEffectiveLevel() < logging.DEBUG
        assert logging.getLogger("sluice").level == logging.WARNING
        assert call("POST", "/logging?level=error")[0] == 200
        assert admin_logger.getEffectiveLevel() == logging.ERROR
        for query, error in [
            ("level=warn", "unknown logger level"),
            ("nosuch=debug", "unknown logger name"),
            ("paths=admin", "empty logger name or empty logger level"),
            ("level=info&admin=debug", "invalid number of parameters"),
            ("group=admin:info", "group parameter requires fine-grain logging to be enabled"),
        ]:
            status, _, body = call("POST", f"/logging?{query}")
            assert status == 400, query
            assert body.startswith(f"error: {error}\n\nusage: /logging?<name>=<level> (change single level)\n"), query
            assert "levels: trace debug info warning error critical off \nactive loggers:\n" in body
        assert admin_logger.getEffectiveLevel() == logging.ERROR  # errors change nothing
        assert call("POST", "/logging?level=")[0] == 200  # an empty value is ignored
    finally:
        logging.getLogger("sluice").setLevel(saved[0])
        admin_logger.setLevel(saved[1])


def test_home_page_lists_the_endpoints_like_envoy(call: Any, golden: Path) -> None:
    status, ctype, body = call("GET", "/")
    assert (status, ctype) == (200, "text/html; charset=UTF-8")
    envoy = (golden / "admin" / "root.html").read_text()
    assert body.startswith("<!DOCTYPE html>\n<html lang='en'>\n<head>\n") and body.endswith("    </tbody>\n  </table>\n</body>\n</html>\n")
    for snippet in (
        # A GET endpoint without parameters is a link; with parameters, a form; POST-only, a post form.
        "<td class='home-data'><a href='certs'>certs</a></td>\n  <td class='home-data'>print certs on machine</td>",
        "<form action='clusters' method='get' id='clusters' class='home-form'>\n    <button class='button-as-link'>clusters</button>",
        "<form action='quitquitquit' method='post' id='quitquitquit' class='home-form'>\n    <button>quitquitquit</button>\n  </form></td>",
        "<option value='' selected></option>",
        "E.g. ?key1=value1&amp;key2=value2...</td>",
        "this will change all loggers&#39;s level</label>",
    ):
        assert snippet in body and snippet in envoy, snippet
    assert body.count("<tr class='vert-space'>") == len(handlers.ENDPOINTS) - 1
    assert "id='param-" in body and "form='stats'" in body
