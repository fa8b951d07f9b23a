"""Admin endpoint handlers: each returns ``(status, content_type, body)``, plus, rarely, headers
that go before the usual ones.

The table at the bottom is the single list of endpoints: path → handler, help text, POST-only
flag and parameters; ``/help``, the home page and the 404 text are generated from it, in
Envoy's format. Dispatch rules, as Envoy 1.40 answers:
- the path is normalized (:func:`sluice.admin.formats.normalize_path`), then matched exactly,
  without the query (``/ready/`` and ``/READY`` are unknown);
- an unknown path answers ``404`` with ``invalid path. `` followed by the help text;
- a POST-only endpoint called with another method answers
  ``405 Method GET not allowed, POST required.`` (no newline) and changes nothing;
- a GET endpoint answers any method.

Sluice lists only the endpoints it implements; Envoy's profilers, heap dumps and tcmalloc stats
are unknown paths here.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from google.protobuf import duration_pb2, json_format

from sluice.admin import clusters_handler, config_dump, home_page, logging_handler, prometheus, stats_handler
from sluice.admin.formats import HTML, JSON, TEXT, Response
from sluice.version import build_version

if TYPE_CHECKING:
    from sluice.admin.server import AdminRequest
    from sluice.server import Server

__all__ = ["ENDPOINTS", "HTML", "JSON", "TEXT", "Endpoint", "Param", "Response", "dispatch", "help_text"]

Handler = Callable[["Server", "AdminRequest"], Response]

HOT_RESTART_VERSION = "disabled"  # Sluice has no hot restart, as Envoy with --disable-hot-restart.


class Param(NamedTuple):
    name: str
    help: str
    kind: str = "string"  # "bool" (checkbox), "string" (text box) or "enum" (one of ``choices``)
    choices: tuple[str, ...] = ()


class Endpoint(NamedTuple):
    handler: Handler
    help: str
    post_only: bool
    params: tuple[Param, ...] = ()


class AdminState:
    """What the admin keeps between requests of one server."""

    __slots__ = ("recent_lookups",)

    def __init__(self) -> None:
        self.recent_lookups = False


_STATE: weakref.WeakKeyDictionary[Server, AdminState] = weakref.WeakKeyDictionary()


def admin_state(server: Server) -> AdminState:
    state = _STATE.get(server)
    if state is None:
        state = _STATE[server] = AdminState()
    return state


def server_state(server: Server) -> str:
    """Envoy's ``ServerInfo.State``: LIVE turns DRAINING once health checks fail."""
    if server.draining and server.state == "LIVE":
        return "DRAINING"
    return str(server.state)


def _ok(server: Server, req: AdminRequest) -> Response:
    return 200, TEXT, "OK\n"


def _reopen_logs(server: Server, req: AdminRequest) -> Response:
    server.reopen_access_logs()
    return 200, TEXT, "OK\n"


def _ready(server: Server, req: AdminRequest) -> Response:
    state = server_state(server)
    return (200 if state == "LIVE" else 503), TEXT, f"{state}\n"


def _runtime(server: Server, req: AdminRequest) -> Response:
    return 200, JSON, json.dumps(server.runtime.snapshot_json(), indent=1) + "\n"


RUNTIME_MODIFY_USAGE = (
    "usage: /runtime_modify?key1=value1&key2=value2&keyN=valueN\n"
    "       or send the parameters as form values\n"
    "use an empty value to remove a previously added override"
)


def _runtime_modify(server: Server, req: AdminRequest) -> Response:
    if not req.pairs:
        return 400, TEXT, RUNTIME_MODIFY_USAGE
    if not server.runtime.has_admin_layer:
        return 503, TEXT, "No admin layer specified"
    server.runtime.merge_admin(dict(req.pairs))
    admin_keys = sum(len(layer.values) for layer in server.runtime.layers if layer.kind == "admin")
    server.runtime_stats.admin_overrides_active.set(1 if admin_keys else 0)
    server.runtime_loaded()  # each change loads a new snapshot
    return 200, TEXT, "OK\n"


def _healthcheck_fail(server: Server, req: AdminRequest) -> Response:
    server.draining = True
    server.server_stats.live.set(0)
    return 200, TEXT, "OK\n"


def _healthcheck_ok(server: Server, req: AdminRequest) -> Response:
    server.draining = False
    server.server_stats.live.set(1)
    return 200, TEXT, "OK\n"


def _quit(server: Server, req: AdminRequest) -> Response:
    # The server stops after this response is written (AdminFilter calls request_stop).
    return 200, TEXT, "OK\n"


def _reset_counters(server: Server, req: AdminRequest) -> Response:
    for c in server.store.counters.values():
        c.reset()  # zero, keeps "used"; the next flush's delta starts from zero
    return 200, TEXT, "OK\n"


def _drain_listeners(server: Server, req: AdminRequest) -> Response:
    """Stop accepting on every listener (after the drain time with ``graceful``); with
    ``skip_exit`` the listeners keep accepting. ``inboundonly``: Sluice's listeners are all inbound.

    With ``graceful`` the open HTTP/2 connections get the drain's shutdown-notice GOAWAY
    (``ConnectionManager.drain_gracefully``). Divergence from Envoy: open HTTP/1 connections are
    not told to close (no drain manager yet).
    """
    if "skip_exit" in req.params:
        return 200, TEXT, "OK\n"

    def close() -> None:
        for lst in server.listeners:
            if lst.server is not None:
                lst.server.close()

    if "graceful" in req.params:
        for lst in server.listeners:
            for conn in list(lst.connections):
                notify = getattr(conn.handler, "drain_gracefully", None)
                if notify is not None:
                    notify()
        server.clock.call_later(server.options.drain_time_s, close)
    else:
        close()
    return 200, TEXT, "OK\n"


def _certs(server: Server, req: AdminRequest) -> Response:
    return 200, JSON, '{\n "certificates": []\n}\n'


def _memory(server: Server, req: AdminRequest) -> Response:
    """Envoy reports tcmalloc's figures; Sluice reports the process's resident and data sizes."""
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            fields = [int(x) for x in f.read().split()]
        resident, data = fields[1] * page, fields[5] * page
    except (OSError, ValueError, IndexError):
        resident = data = 0
    body = {
        "allocated": str(resident),
        "heap_size": str(data),
        "pageheap_unmapped": "0",
        "pageheap_free": "0",
        "total_thread_cache": "0",
        "total_physical_bytes": str(resident),
    }
    return 200, JSON, json.dumps(body, indent=1) + "\n"


def _hot_restart_version(server: Server, req: AdminRequest) -> Response:
    return 200, TEXT, HOT_RESTART_VERSION


def _init_dump(server: Server, req: AdminRequest) -> Response:
    # Nothing is left unready once the server is up, which is what Envoy prints then.
    return 200, JSON, "{}\n"


def _contention(server: Server, req: AdminRequest) -> Response:
    return 200, TEXT, "Mutex contention tracing is not enabled. To enable, run Envoy with flag --enable-mutex-tracing."


def _recent_lookups(server: Server, req: AdminRequest) -> Response:
    # Sluice looks stat names up once, at config time, so there is nothing recent to show.
    if admin_state(server).recent_lookups:
        return 200, TEXT, "   Count Lookup\n\ntotal: 0\n"
    return 200, TEXT, "Lookup tracking is not enabled. Use /stats/recentlookups/enable to enable.\n\ntotal: 0\n"


def _recent_lookups_enable(server: Server, req: AdminRequest) -> Response:
    admin_state(server).recent_lookups = True
    return 200, TEXT, "OK\n"


def _recent_lookups_disable(server: Server, req: AdminRequest) -> Response:
    admin_state(server).recent_lookups = False
    return 200, TEXT, "OK\n"


def _listeners(server: Server, req: AdminRequest) -> Response:
    if req.params.get("format") == "json":
        body = {
            "listener_statuses": [
                {"name": lst.name, "local_address": {"socket_address": {"address": lst.ip, "port_value": lst.port}}}
                for lst in server.listeners
            ]
        }
        return 200, JSON, json.dumps(body, indent=1) + "\n"
    lines = (f"{lst.name}::{f'[{lst.ip}]' if ':' in lst.ip else lst.ip}:{lst.port}\n" for lst in server.listeners)
    return 200, TEXT, "".join(lines)


def _duration(seconds: float) -> str:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return str(d.ToJsonString())


def _ordered(value: object, descriptor: Any) -> object:
    """A proto's dict with its keys in field-number order, as Envoy prints all fields."""
    if not isinstance(value, dict) or descriptor is None or descriptor.full_name.startswith("google.protobuf."):
        return value
    out = {}
    for f in sorted(descriptor.fields, key=lambda f: f.number):
        if f.name in value:
            sub = f.message_type if f.message_type is not None and not f.message_type.GetOptions().map_entry else None
            v = value[f.name]
            out[f.name] = [_ordered(x, sub) for x in v] if isinstance(v, list) else _ordered(v, sub)
    return out


def command_line_options(server: Server) -> dict[str, object]:
    """Envoy's ``CommandLineOptions``, every field in Envoy's order, with Sluice's values."""
    o = server.options
    return {
        "base_id": str(getattr(o, "base_id", 0)),
        "concurrency": o.concurrency,
        "config_path": getattr(o, "config_path", None) or "",
        "config_yaml": getattr(o, "config_yaml", None) or "",
        "allow_unknown_static_fields": False,
        "admin_address_path": o.admin_address_path or "",
        "local_address_ip_version": "v4",
        "log_level": getattr(o, "log_level", "info"),
        "component_log_level": "",
        "log_format": "[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v",
        "log_path": "",
        "service_cluster": o.service_cluster,
        "service_node": o.service_node,
        "service_zone": "",
        "file_flush_interval": _duration(o.file_flush_interval_s),
        "drain_time": _duration(o.drain_time_s),
        "parent_shutdown_time": _duration(getattr(o, "parent_shutdown_time_s", 900.0)),
        "mode": {"serve": "Serve", "validate": "Validate", "init_only": "InitOnly"}.get(getattr(o, "mode", "serve"), "Serve"),
        "disable_hot_restart": True,
        "enable_mutex_tracing": False,
        "restart_epoch": 0,
        "cpuset_threads": False,
        "reject_unknown_dynamic_fields": False,
        "log_format_escaped": False,
        "disabled_extensions": [],
        "ignore_unknown_dynamic_fields": False,
        "use_dynamic_base_id": False,
        "base_id_path": "",
        "drain_strategy": "Gradual",
        "enable_fine_grain_logging": False,
        "socket_path": "@envoy_domain_socket",
        "socket_mode": 0,
        "enable_core_dump": False,
        "stats_tag": [],
        "skip_hot_restart_on_no_parent": False,
        "skip_hot_restart_parent_stats": False,
        "skip_deprecated_logs": False,
        "file_flush_min_size": 0,
        "log_stacktrace_single_entry": False,
    }


def _server_info(server: Server, req: AdminRequest) -> Response:
    node = config_dump.node_proto(server)
    node_dict = json_format.MessageToDict(node, always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
    info = {
        "version": build_version(),  # cached: git is asked once per process
        "state": server_state(server),
        "uptime_current_epoch": f"{server.uptime()}s",
        "uptime_all_epochs": f"{server.uptime()}s",
        "hot_restart_version": HOT_RESTART_VERSION,
        "command_line_options": command_line_options(server),
        "node": _ordered(node_dict, node.DESCRIPTOR),
        "hot_restart_initializing": False,
    }
    return 200, JSON, json.dumps(info, indent=1) + "\n"


def help_text() -> str:
    lines = ["admin commands are:"]
    for path in sorted(ENDPOINTS):
        ep = ENDPOINTS[path]
        lines.append(f"  {path}{' (POST)' if ep.post_only else ''}: {ep.help}")
        for p in ep.params:
            suffix = f"; One of ({', '.join(p.choices)})" if p.kind == "enum" else ""
            lines.append(f"      {p.name}: {p.help}{suffix}")
    return "\n".join(lines) + "\n"


def _help(server: Server, req: AdminRequest) -> Response:
    return 200, TEXT, help_text()


def _root(server: Server, req: AdminRequest) -> Response:
    return 200, HTML, home_page.render((p, ENDPOINTS[p]) for p in sorted(ENDPOINTS))


def _bool(name: str, text: str) -> Param:
    return Param(name, text, "bool")


def _enum(name: str, text: str, *choices: str) -> Param:
    return Param(name, text, "enum", choices)


FILTER_HELP = "Regular expression (Google re2) for filtering stats"
USED_ONLY_HELP = "Only include stats that have been written by system since restart"

ENDPOINTS: dict[str, Endpoint] = {
    "/": Endpoint(_root, "Admin home page", False),
    "/certs": Endpoint(_certs, "print certs on machine", False),
    "/clusters": Endpoint(
        clusters_handler.handle,
        "upstream cluster status",
        False,
        (Param("filter", "Regular expression (Google re2) for filtering clusters by name"),),
    ),
    "/config_dump": Endpoint(
        config_dump.handle,
        "dump current Envoy configs",
        False,
        (
            Param("resource", "The resource to dump"),
            Param(
                "mask",
                (
                    "The mask to apply. When both resource and mask are specified, the mask is applied to every "
                    "element in the desired repeated field so that only a subset of fields are returned. The "
                    "mask is parsed as a Protobuf::FieldMask"
                ),
            ),
            Param(
                "name_regex",
                (
                    "Dump only the currently loaded configurations whose names match the specified regex. Can "
                    "be used with both resource and mask query parameters."
                ),
            ),
            _bool("include_eds", ("Dump currently loaded configuration including EDS. See the response definition for more information")),
        ),
    ),
    "/contention": Endpoint(_contention, "dump current Envoy mutex contention stats (if enabled)", False),
    "/drain_listeners": Endpoint(
        _drain_listeners,
        "drain listeners",
        True,
        (
            _bool(
                "graceful",
                (
                    "When draining listeners, enter a graceful drain period prior to closing listeners. This "
                    "behaviour and duration is configurable via server options or CLI"
                ),
            ),
            _bool(
                "skip_exit",
                (
                    "When draining listeners, drain the connections but never stop the listeners. The graceful "
                    "parameter has no effect when this is set, since the drain period only delays stopping the "
                    "listeners"
                ),
            ),
            _bool(
                "inboundonly",
                (
                    "Drains all inbound listeners. traffic_direction field in "
                    "envoy_v3_api_msg_config.listener.v3.Listener is used to determine whether a listener is "
                    "inbound or outbound."
                ),
            ),
        ),
    ),
    "/healthcheck/fail": Endpoint(_healthcheck_fail, "cause the server to fail health checks", True),
    "/healthcheck/ok": Endpoint(_healthcheck_ok, "cause the server to pass health checks", True),
    "/help": Endpoint(_help, "print out list of admin commands", False),
    "/hot_restart_version": Endpoint(_hot_restart_version, "print the hot restart compatibility version", False),
    "/init_dump": Endpoint(
        _init_dump,
        "dump current Envoy init manager information (experimental)",
        False,
        (
            Param(
                "mask",
                (
                    "The desired component to dump unready targets. The mask is parsed as a "
                    "Protobuf::FieldMask. For example, get the unready targets of all listeners with "
                    "/init_dump?mask=listener`"
                ),
            ),
        ),
    ),
    "/listeners": Endpoint(_listeners, "print listener info", False, (_enum("format", "File format to use", "text", "json"),)),
    "/logging": Endpoint(
        logging_handler.handle,
        "query/change logging levels",
        True,
        (
            Param(
                "paths",
                (
                    "Change multiple logging levels by setting to "
                    "<logger_name1>:<desired_level1>,<logger_name2>:<desired_level2>. If fine grain logging is "
                    "enabled, use __FILE__ or a glob experision as the logger name. For example, "
                    "source/common*:warning"
                ),
            ),
            Param(
                "group",
                (
                    "Change given logger group to desired level, set to <logger_group_name>:<desired_level>. "
                    "logger_group_name must be a logger name."
                ),
            ),
            _enum("level", "desired logging level, this will change all loggers's level", "", *logging_handler.LEVELS),
        ),
    ),
    "/memory": Endpoint(_memory, "print current allocation/heap usage", False),
    "/quitquitquit": Endpoint(_quit, "exit the server", True),
    "/ready": Endpoint(_ready, "print server state, return 200 if LIVE, otherwise return 503", False),
    "/reopen_logs": Endpoint(_reopen_logs, "reopen access logs", True),
    "/reset_counters": Endpoint(_reset_counters, "reset all counters to zero", True),
    "/runtime": Endpoint(_runtime, "print runtime values", False),
    "/runtime_modify": Endpoint(
        _runtime_modify,
        (
            "Adds or modifies runtime values as passed in query parameters. To delete a previously "
            "added key, use an empty string as the value. Note that deletion only applies to overrides "
            "added via this endpoint; values loaded from disk can be modified via override but not "
            "deleted. E.g. ?key1=value1&key2=value2..."
        ),
        True,
    ),
    "/server_info": Endpoint(_server_info, "print server version/status information", False),
    "/stats": Endpoint(
        stats_handler.handle,
        "print server stats",
        False,
        (
            _bool("usedonly", USED_ONLY_HELP),
            Param("filter", FILTER_HELP),
            _bool("invert_filter", "Invert the filter regex"),
            _enum("format", "Format to use", *stats_handler.FORMATS),
            _enum("type", "Stat types to include.", *stats_handler.TYPES),
            _enum("histogram_buckets", "Histogram bucket display mode", *stats_handler.BUCKET_MODES),
        ),
    ),
    "/stats/prometheus": Endpoint(
        stats_handler.handle,
        "print server stats in prometheus format",
        False,
        (
            _bool("usedonly", USED_ONLY_HELP),
            _bool("text_readouts", "Render text_readouts as new gaugues with value 0 (increases Prometheus data size)"),
            Param("filter", FILTER_HELP),
            _bool("invert_filter", "Invert the filter regex"),
            _enum("histogram_buckets", "Histogram bucket display mode", *prometheus.BUCKET_MODES),
        ),
    ),
    "/stats/recentlookups": Endpoint(_recent_lookups, "Show recent stat-name lookups", False),
    "/stats/recentlookups/clear": Endpoint(_ok, "clear list of stat-name lookups and counter", True),
    "/stats/recentlookups/disable": Endpoint(_recent_lookups_disable, "disable recording of reset stat-name lookup names", True),
    "/stats/recentlookups/enable": Endpoint(_recent_lookups_enable, "enable recording of reset stat-name lookup names", True),
}


def dispatch(server: Server, req: AdminRequest) -> Response:
    ep = ENDPOINTS.get(req.path)
    if ep is None:
        return 404, TEXT, "invalid path. " + help_text()
    if ep.post_only and req.method != "POST":
        return 405, TEXT, f"Method {req.method} not allowed, POST required."
    return ep.handler(server, req)
