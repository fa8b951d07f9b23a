"""``/clusters``: per-cluster settings and per-host stats, as text lines or Envoy's JSON.

Text: for each cluster, ``observability_name``, the circuit-breaker thresholds of both
priorities and ``added_via_api``, then nineteen ``<cluster>::<host>::<key>::<value>`` lines per
host - the host stats sorted by name, then hostname, health flags, weight, locality, canary,
priority and the outlier success rates. JSON is ``envoy.admin.v3.Clusters`` printed the way
Envoy prints protos (fields in number order, defaults omitted, 64-bit integers as strings).

# Divergence from Envoy: clusters are listed in config order; Envoy's order follows its hash map.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from sluice.admin.formats import JSON, TEXT, Response, compile_re2

if TYPE_CHECKING:
    from sluice.admin.server import AdminRequest
    from sluice.server import Server
    from sluice.upstream.cluster import Cluster
    from sluice.upstream.host import Host

# Envoy's defaults when a cluster configures no circuit breakers for a priority.
DEFAULT_THRESHOLDS = {"max_connections": 1024, "max_pending_requests": 1024, "max_requests": 1024, "max_retries": 3}
COUNTERS = ("cx_connect_fail", "cx_total", "rq_error", "rq_success", "rq_timeout", "rq_total")
GAUGES = ("cx_active", "rq_active", "rq_pending_active")


def thresholds(server: Server, cluster_name: str) -> list[dict[str, int]]:
    """The DEFAULT and HIGH priority thresholds, from the cluster's ``circuit_breakers``."""
    cluster = server.cluster_manager.get(cluster_name)
    if cluster is not None and hasattr(cluster, "resources"):
        return [cluster.resources.limits(), cluster.resources_high.limits()]
    out = [dict(DEFAULT_THRESHOLDS), dict(DEFAULT_THRESHOLDS)]
    for c in server.bootstrap.static_resources.clusters:
        if c.name != cluster_name:
            continue
        for t in c.circuit_breakers.thresholds:
            slot = out[1 if t.priority == 1 else 0]
            for key in DEFAULT_THRESHOLDS:
                if t.HasField(key):
                    slot[key] = getattr(t, key).value
    return out


def observability_name(server: Server, cluster_name: str) -> str:
    for c in server.bootstrap.static_resources.clusters:
        if c.name == cluster_name and c.alt_stat_name:
            return str(c.alt_stat_name)
    return cluster_name


def _host_values(cluster: Cluster, host: Host) -> dict[str, int]:
    s = host.stats
    pending = sum(len(p.waiters) for addr, p in cluster.pools.items() if addr == host.address)
    values = {name: getattr(s, name) for name in COUNTERS + GAUGES if name != "rq_pending_active"}
    values["rq_pending_active"] = pending
    return values


def handle(server: Server, req: AdminRequest) -> Response:
    flt = req.params.get("filter", "")
    rx = None
    if flt:
        rx, _err = compile_re2(flt)
        if rx is None:
            return 400, TEXT, "Invalid re2 regex"
    clusters = [c for name, c in server.cluster_manager.clusters.items() if rx is None or rx.search(name)]
    if req.params.get("format") == "json":
        return 200, JSON, render_json(server, clusters)
    return 200, TEXT, render_text(server, clusters)


def render_text(server: Server, clusters: list[Cluster]) -> str:
    out: list[str] = []
    for c in clusters:
        name = c.name
        out.append(f"{name}::observability_name::{observability_name(server, name)}")
        if c.outlier is not None:
            # Success-rate detection is not implemented: Envoy shows -1 until it has computed one.
            out.extend(
                f"{name}::outlier::{k}::-1"
                for k in (
                    "success_rate_average",
                    "success_rate_ejection_threshold",
                    "local_origin_success_rate_average",
                    "local_origin_success_rate_ejection_threshold",
                )
            )
        for prio, limits in zip(("default", "high"), thresholds(server, name), strict=True):
            out.extend(f"{name}::{prio}_priority::{k}::{v}" for k, v in limits.items())
        out.append(f"{name}::added_via_api::false")
        for h in c.hosts:
            pre = f"{name}::{h.address}"
            out.extend(f"{pre}::{k}::{v}" for k, v in sorted(_host_values(c, h).items()))
            out.extend(
                [
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
    return "".join(line + "\n" for line in out)


def _health_status(msg: Any, host: Host) -> None:
    flags = host.health_flags
    msg.failed_active_health_check = "/failed_active_hc" in flags
    msg.failed_outlier_check = "/failed_outlier_check" in flags
    if "/failed_eds_health" in flags:
        msg.eds_health_status = 2  # UNHEALTHY
    elif "/degraded_eds_health" in flags:
        msg.eds_health_status = 5  # DEGRADED
    else:
        msg.eds_health_status = 1  # HEALTHY


def render_json(server: Server, clusters: list[Cluster]) -> str:
    # xds-protos ships no stubs or py.typed marker (import-untyped): its messages are Any to mypy.
    from envoy.admin.v3 import clusters_pb2, metrics_pb2

    out = clusters_pb2.Clusters()
    for c in clusters:
        cs = out.cluster_statuses.add(name=c.name, observability_name=observability_name(server, c.name))
        for h in c.hosts:
            hs = cs.host_statuses.add(weight=h.weight, hostname=h.hostname)
            hs.address.socket_address.address = h.ip
            hs.address.socket_address.port_value = h.port
            values = _host_values(c, h)
            for name in COUNTERS:
                hs.stats.add(name=name, value=values[name])
            for name in GAUGES:
                hs.stats.add(type=metrics_pb2.SimpleMetric.GAUGE, name=name, value=values[name])
            _health_status(hs.health_status, h)
            hs.locality.SetInParent()
        for prio, limits in enumerate(thresholds(server, c.name)):
            t = cs.circuit_breakers.thresholds.add(priority=prio)
            for k, v in limits.items():
                getattr(t, k).value = v
    return str(json_format.MessageToJson(out, indent=1, preserving_proto_field_name=True)) + "\n"
