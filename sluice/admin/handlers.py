"""Admin endpoint handlers: each returns ``(status, content_type, body)``.

The table below is the single list of endpoints: path → handler, help text, POST-only flag.
A POST-only endpoint called with GET answers ``405 Method GET not allowed, POST required.``
(no newline), as Envoy does; an unknown path answers 404 with the help text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from sluice import __version__

if TYPE_CHECKING:
    from sluice.admin.server import AdminRequest
    from sluice.server import Server

TEXT = "text/plain; charset=UTF-8"
JSON = "application/json"
HTML = "text/html; charset=UTF-8"

Response = tuple[int, str, "str | bytes"]
Handler = Callable[["Server", "AdminRequest"], Response]

VERSION = f"sluice/{__version__}/Clean/RELEASE/Python"


class Endpoint(NamedTuple):
    handler: Handler
    help: str
    post_only: bool
    params: tuple[tuple[str, str], ...] = ()


def _ready(server: Server, req: AdminRequest) -> Response:
    state = server.state
    if server.draining and state == "LIVE":
        state = "DRAINING"
    return (200 if state == "LIVE" else 503), TEXT, f"{state}\n"


def _runtime(server: Server, req: AdminRequest) -> Response:
    return 200, JSON, json.dumps(server.runtime.snapshot_json(), indent=1) + "\n"


RUNTIME_MODIFY_USAGE = "usage: /runtime_modify?key1=value1&key2=value2&keyN=valueN\n       or send the parameters as form values\nuse an empty value to remove a previously added override"


def _runtime_modify(server: Server, req: AdminRequest) -> Response:
    if not req.params:
        return 400, TEXT, RUNTIME_MODIFY_USAGE
    if not server.runtime.has_admin_layer:
        return 503, TEXT, "No admin layer specified"
    server.runtime.merge_admin(dict(req.params))
    server.runtime_stats.admin_overrides_active.set(
        sum(len(layer.values) for layer in server.runtime.layers if layer.kind == "admin")
    )
    server.runtime_stats.num_keys.set(len(server.runtime.snapshot_json()["entries"]))  # type: ignore[arg-type]
    return 200, TEXT, "OK\n"


def _healthcheck_fail(server: Server, req: AdminRequest) -> Response:
    server.draining = True
    return 200, TEXT, "OK\n"


def _healthcheck_ok(server: Server, req: AdminRequest) -> Response:
    server.draining = False
    return 200, TEXT, "OK\n"


def _quit(server: Server, req: AdminRequest) -> Response:
    # The server stops after this response is written (AdminFilter calls request_stop).
    return 200, TEXT, "OK\n"


def _format_hist(values: list[float]) -> str:
    from sluice.stats.store import QUANTILES, Histogram

    qs = Histogram.quantiles(values)
    parts = []
    for q, v in zip(QUANTILES, qs, strict=True):
        label = f"P{q * 100:g}"
        parts.append(f"{label}({_num(v)},{_num(v)})")
    return " ".join(parts)


def _num(v: float) -> str:
    if math.isnan(v):
        return "nan"
    return f"{v:g}"


def _stats(server: Server, req: AdminRequest) -> Response:
    store = server.store
    flt = req.params.get("filter")
    rx = None
    if flt:
        try:
            rx = re.compile(flt)
        except re.error as exc:
            return 400, TEXT, f"Invalid re2 regex: {exc}"
    used_only = "usedonly" in req.params
    fmt = req.params.get("format")
    scalars: dict[str, int] = {}
    for name, c in store.counters.items():
        if (not used_only or c.used) and (rx is None or rx.search(name)):
            scalars[name] = c.value
    for name, g in store.gauges.items():
        if (not used_only or g.used) and (rx is None or rx.search(name)):
            scalars[name] = g.value
    hists = {
        name: h
        for name, h in store.histograms.items()
        if (not used_only or h.used) and (rx is None or rx.search(name))
    }
    if fmt == "json":
        items: list[dict[str, object]] = [{"name": k, "value": scalars[k]} for k in sorted(scalars)]
        return 200, JSON, json.dumps({"stats": items}) + "\n"
    lines = [f"{k}: {scalars[k]}" for k in sorted(scalars)]
    for name in sorted(hists):
        h = hists[name]
        h.merge_interval()
        lines.append(f"{name}: " + (_format_hist(h.cumulative) if h.cumulative else "No recorded values"))
    return 200, TEXT, "\n".join(lines) + ("\n" if lines else "")


def _clusters(server: Server, req: AdminRequest) -> Response:
    out: list[str] = []
    for name, c in server.cluster_manager.clusters.items():
        out.append(f"{name}::observability_name::{name}")
        for prio in ("default", "high"):
            out.append(f"{name}::{prio}_priority::max_connections::1024")
            out.append(f"{name}::{prio}_priority::max_pending_requests::1024")
            out.append(f"{name}::{prio}_priority::max_requests::1024")
            out.append(f"{name}::{prio}_priority::max_retries::3")
        out.append(f"{name}::added_via_api::false")
        for h in c.hosts:
            pre = f"{name}::{h.address}"
            s = h.stats
            pending = sum(len(p.waiters) for a, p in c.pools.items() if a == h.address)
            out.extend(
                [
                    f"{pre}::cx_active::{s.cx_active}",
                    f"{pre}::cx_connect_fail::{s.cx_connect_fail}",
                    f"{pre}::cx_total::{s.cx_total}",
                    f"{pre}::rq_active::{s.rq_active}",
                    f"{pre}::rq_error::{s.rq_error}",
                    f"{pre}::rq_pending_active::{pending}",
                    f"{pre}::rq_success::{s.rq_success}",
                    f"{pre}::rq_timeout::{s.rq_timeout}",
                    f"{pre}::rq_total::{s.rq_total}",
                    f"{pre}::hostname::{h.hostname}",
                    f"{pre}::health_flags::{h.health_flags}",
                    f"{pre}::weight::{h.weight}",
                    f"{pre}::region::",
                    f"{pre}::zone::",
                    f"{pre}::sub_zone::",
                    f"{pre}::canary::false",
                    f"{pre}::priority::0",
                    f"{pre}::success_rate::-1",
                    f"{pre}::local_origin_success_rate::-1",
                ]
            )
    return 200, TEXT, "\n".join(out) + "\n"


def _listeners(server: Server, req: AdminRequest) -> Response:
    if req.params.get("format") == "json":
        body = {
            "listener_statuses": [
                {
                    "name": lst.name,
                    "local_address": {"socket_address": {"address": lst.ip, "port_value": lst.port}},
                }
                for lst in server.listeners
            ]
        }
        return 200, JSON, json.dumps(body) + "\n"
    return 200, TEXT, "".join(f"{lst.name}::{lst.address}\n" for lst in server.listeners)


def _server_info(server: Server, req: AdminRequest) -> Response:
    state = "DRAINING" if server.draining and server.state == "LIVE" else server.state
    info = {
        "version": VERSION,
        "state": state,
        "uptime_current_epoch": f"{server.uptime()}s",
        "uptime_all_epochs": f"{server.uptime()}s",
        "hot_restart_version": "disabled",
        "command_line_options": {
            "concurrency": server.options.concurrency,
            "service_cluster": server.options.service_cluster,
            "service_node": server.options.service_node,
            "drain_time": f"{server.options.drain_time_s:g}s",
        },
        "node": {"id": server.bootstrap.node.id, "cluster": server.bootstrap.node.cluster},
        "hot_restart_initializing": False,
    }
    return 200, JSON, json.dumps(info, indent=1) + "\n"


def _config_dump(server: Server, req: AdminRequest) -> Response:
    from google.protobuf import json_format

    boot = json_format.MessageToDict(server.bootstrap, preserving_proto_field_name=True)
    body = {
        "configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": boot},
        ]
    }
    return 200, JSON, json.dumps(body, indent=1) + "\n"


def _help_text() -> str:
    lines = ["admin commands are:"]
    for path in sorted(ENDPOINTS):
        ep = ENDPOINTS[path]
        lines.append(f"  {path}{' (POST)' if ep.post_only else ''}: {ep.help}")
        for pname, phelp in ep.params:
            lines.append(f"      {pname}: {phelp}")
    return "\n".join(lines) + "\n"


def _help(server: Server, req: AdminRequest) -> Response:
    return 200, TEXT, _help_text()


def _root(server: Server, req: AdminRequest) -> Response:
    rows = "".join(
        f"<tr><td><a href='{p}'>{p}</a></td><td>{ENDPOINTS[p].help}</td></tr>" for p in sorted(ENDPOINTS)
    )
    return 200, HTML, f"<html><head><title>Envoy Admin</title></head><body><table>{rows}</table></body></html>"


ENDPOINTS: dict[str, Endpoint] = {
    "/": Endpoint(_root, "Admin home page", False),
    "/help": Endpoint(_help, "print out list of admin commands", False),
    "/ready": Endpoint(_ready, "print server state, return 200 if LIVE, otherwise return 503", False),
    "/server_info": Endpoint(_server_info, "print server version/status information", False),
    "/clusters": Endpoint(_clusters, "upstream cluster status", False),
    "/listeners": Endpoint(_listeners, "print listener info", False, (("format", "File format to use; One of (text, json)"),)),
    "/config_dump": Endpoint(_config_dump, "dump current Envoy configs", False),
    "/runtime": Endpoint(_runtime, "print runtime values", False),
    "/runtime_modify": Endpoint(_runtime_modify, "Adds or modifies runtime values as passed in query parameters. To delete a previously added key, use an empty string as the value. Note that deletion only applies to overrides added via this endpoint; values loaded from disk can be modified via override but not deleted. E.g. ?key1=value1&key2=value2...", True),
    "/healthcheck/fail": Endpoint(_healthcheck_fail, "cause the server to fail health checks", True),
    "/healthcheck/ok": Endpoint(_healthcheck_ok, "cause the server to pass health checks", True),
    "/quitquitquit": Endpoint(_quit, "exit the server", True),
    "/stats": Endpoint(_stats, "print server stats", False, (("usedonly", "Only include stats that have been written by system since restart"), ("filter", "Regular expression (Google re2) for filtering stats"), ("format", "Format to use; One of (html, active-html, text, json)"))),
}


def dispatch(server: Server, req: AdminRequest) -> Response:
    ep = ENDPOINTS.get(req.path)
    if ep is None:
        return 404, TEXT, "invalid path. " + _help_text()
    if ep.post_only and req.method != "POST":
        return 405, TEXT, f"Method {req.method} not allowed, POST required."
    return ep.handler(server, req)
