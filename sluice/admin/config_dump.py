"""``/config_dump``: the loaded configuration as ``envoy.admin.v3`` config dumps.

The dump lists, in Envoy's order: Bootstrap, Clusters, (Endpoints, with ``?include_eds``),
Listeners, ScopedRoutes, Routes, Secrets. Sluice only has static resources, so each dump holds the
``static_*`` entries (with ``last_updated``) and the dynamic ones are empty.

Query parameters, as Envoy 1.40 answers them:
- ``resource=<field>``: the elements of that repeated field, each packed on its own
  (``...ClustersConfigDump.StaticCluster``); ``{}`` when the field is empty, 400 when the name is
  a non-repeated field, 404 when no dump has it.
- ``mask=<paths>``: a FieldMask applied to each dump (dumps it does not fit are left out; 400
  when it fits none), or to each element with ``resource``. Paths may go through ``Any``.
- ``name_regex=<re>``: keeps the clusters, listeners, route configs and endpoint configs whose
  name fully matches.

Protos print like Envoy's: fields in number order, defaults omitted, indent of one space.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2, json_format, message, message_factory, timestamp_pb2

from sluice import __version__
from sluice.admin.formats import EARLY_NOSNIFF, JSON, PLAIN, Response, compile_re2

if TYPE_CHECKING:
    from sluice.admin.server import AdminRequest
    from sluice.server import Server

HCM_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
USER_AGENT = "sluice"


def node_proto(server: Server) -> Any:
    """The effective node: the bootstrap's, with command-line overrides and the build identity."""
    node = type(server.bootstrap.node)()
    node.CopyFrom(server.bootstrap.node)
    if server.options.service_cluster:
        node.cluster = server.options.service_cluster
    if server.options.service_node:
        node.id = server.options.service_node
    node.user_agent_name = USER_AGENT
    parts = [int(p) if p.isdigit() else 0 for p in (__version__.split(".") + ["0", "0"])[:3]]
    v = node.user_agent_build_version
    v.version.major_number, v.version.minor_number, v.version.patch = parts
    meta = v.metadata.fields
    meta["revision.sha"].string_value = USER_AGENT
    meta["revision.status"].string_value = "Clean"
    meta["build.type"].string_value = "RELEASE"
    meta["ssl.version"].string_value = "Python"
    return node


def _timestamp(t: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ms = int(t * 1000)
    ts.seconds, ts.nanos = ms // 1000, (ms % 1000) * 1_000_000
    return ts


def _pack(msg: message.Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def _route_configs(server: Server) -> list[Any]:
    # xds-protos ships no stubs or py.typed marker (import-untyped): its messages are Any to mypy.
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

    out = []
    for lc in server.bootstrap.static_resources.listeners:
        for fc in lc.filter_chains:
            for f in fc.filters:
                if f.HasField("typed_config") and f.typed_config.type_url.endswith("/" + HCM_TYPE):
                    hcm = hcm_pb2.HttpConnectionManager()
                    f.typed_config.Unpack(hcm)
                    if hcm.HasField("route_config"):
                        out.append(hcm.route_config)
    return out


def _endpoint_configs(server: Server) -> list[Any]:
    """Each cluster's current hosts, as Envoy shows them under ``?include_eds``."""
    from envoy.config.endpoint.v3 import endpoint_pb2

    out = []
    for name, cluster in server.cluster_manager.clusters.items():
        cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        cla.policy.overprovisioning_factor.value = 140
        group = cla.endpoints.add()
        group.locality.SetInParent()
        group.load_balancing_weight.value = 0
        for h in cluster.hosts:
            e = group.lb_endpoints.add()
            e.endpoint.address.socket_address.address = h.ip
            e.endpoint.address.socket_address.port_value = h.port
            e.endpoint.health_check_config.SetInParent()
            e.endpoint.hostname = h.hostname
            e.health_status = 1 if h.healthy else 2  # HEALTHY / UNHEALTHY
            e.metadata.SetInParent()
            for ns, values in (h.metadata or {}).items():
                e.metadata.filter_metadata[ns].update(values)
            e.load_balancing_weight.value = h.weight
        out.append(cla)
    return out


def build_dumps(server: Server, include_eds: bool, name_rx: re.Pattern[str] | None) -> list[message.Message]:
    from envoy.admin.v3 import config_dump_pb2
    from envoy.admin.v3 import config_dump_shared_pb2 as shared

    def keep(name: str) -> bool:
        return name_rx is None or name_rx.fullmatch(name) is not None

    updated = _timestamp(server.start_time)
    boot = config_dump_pb2.BootstrapConfigDump()
    boot.bootstrap.CopyFrom(server.bootstrap)
    boot.bootstrap.node.CopyFrom(node_proto(server))
    boot.last_updated.CopyFrom(updated)
    dumps: list[message.Message] = [boot]

    clusters = shared.ClustersConfigDump()
    for c in server.bootstrap.static_resources.clusters:
        if keep(c.name):
            clusters.static_clusters.add(cluster=_pack(c), last_updated=updated)
    dumps.append(clusters)

    if include_eds:
        eds = shared.EndpointsConfigDump()
        for cla in _endpoint_configs(server):
            if keep(cla.cluster_name):
                eds.static_endpoint_configs.add(endpoint_config=_pack(cla))
        dumps.append(eds)

    listeners = shared.ListenersConfigDump()
    for lc in server.bootstrap.static_resources.listeners:
        if keep(lc.name):
            listeners.static_listeners.add(listener=_pack(lc), last_updated=updated)
    dumps.append(listeners)

    dumps.append(shared.ScopedRoutesConfigDump())

    routes = shared.RoutesConfigDump()
    for rc in _route_configs(server):
        if keep(rc.name):
            routes.static_route_configs.add(route_config=_pack(rc), last_updated=updated)
    dumps.append(routes)

    dumps.append(config_dump_pb2.SecretsConfigDump())
    return dumps


# -- field masks ----------------------------------------------------------------------------


def _any_type(value: Any) -> Any:
    """The descriptor of the message packed in an ``Any`` (None when unknown or unset)."""
    from google.protobuf import descriptor_pool

    name = value.type_url.rsplit("/", 1)[-1]
    if not name:
        return None
    try:
        # The pool symbol_database.Default() wraps (its ``pool`` is missing from the stubs).
        return descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None


def _path_valid(descriptor: Any, instance: Any, parts: list[str]) -> bool:
    """Whether a mask path names fields of ``descriptor``; ``Any`` fields are looked through."""
    if descriptor.full_name == "google.protobuf.Any":
        if instance is None:
            return False
        inner = _any_type(instance)
        if inner is None:
            return False
        packed = message_factory.GetMessageClass(inner)()
        instance.Unpack(packed)
        return _path_valid(inner, packed, parts)
    field = descriptor.fields_by_name.get(parts[0])
    if field is None:
        return False
    if len(parts) == 1:
        return True
    if field.message_type is None or getattr(field, "is_repeated", False):
        return False
    child = getattr(instance, parts[0]) if instance is not None and instance.HasField(parts[0]) else None
    return _path_valid(field.message_type, child, parts[1:])


def mask_valid(msg: message.Message, paths: list[str]) -> bool:
    return all(_path_valid(msg.DESCRIPTOR, msg, p.split(".")) for p in paths)


def _mask_tree(paths: list[str]) -> dict[str, Any]:
    """``["a.b", "c"]`` → ``{"a": {"b": None}, "c": None}``; None keeps the whole field."""
    tree: dict[str, Any] = {}
    for p in paths:
        node = tree
        parts = p.split(".")
        for i, part in enumerate(parts):
            if part in node and node[part] is None:
                break  # an enclosing path already keeps all of it
            if i == len(parts) - 1:
                node[part] = None
            else:
                node = node.setdefault(part, {})
    return tree


def _trim(d: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "@type" in d:
        out["@type"] = d["@type"]
    for k, v in d.items():
        if k in tree:
            sub = tree[k]
            out[k] = _trim(v, sub) if sub is not None and isinstance(v, dict) else v
    return out


def _to_dict(msg: message.Message) -> dict[str, Any]:
    return dict(json_format.MessageToDict(msg, preserving_proto_field_name=True))


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def handle(server: Server, req: AdminRequest) -> Response:
    params = req.params
    name_rx = None
    if params.get("name_regex"):
        name_rx, err = compile_re2(params["name_regex"])
        if name_rx is None:
            return 400, PLAIN, f"INVALID_ARGUMENT: Error while parsing name_regex from {params['name_regex']}: {err}"
    mask = params.get("mask", "")
    paths = [p for p in mask.split(",") if p] if mask else []
    dumps = build_dumps(server, "include_eds" in params, name_rx)
    resource = params.get("resource", "")
    if resource:
        return _resource(dumps, resource, paths, mask)
    configs = []
    for d in dumps:
        if paths and not mask_valid(d, paths):
            continue
        body = {"@type": "type.googleapis.com/" + d.DESCRIPTOR.full_name, **_to_dict(d)}
        configs.append(_trim(body, _mask_tree(paths)) if paths else body)
    if paths and not configs:
        return 400, PLAIN, f"FieldMask {mask} could not be successfully applied to any configs.", EARLY_NOSNIFF
    return 200, JSON, _json({"configs": configs} if configs else {})


def _resource(dumps: list[message.Message], resource: str, paths: list[str], mask: str) -> Response:
    for d in dumps:
        field = d.DESCRIPTOR.fields_by_name.get(resource)
        if field is None:
            continue
        if not getattr(field, "is_repeated", False):
            return 400, PLAIN, f"{resource} is not a repeated field. Use ?mask={resource} to get only this field", EARLY_NOSNIFF
        configs = []
        for element in getattr(d, resource):
            if paths and not mask_valid(element, paths):
                # Envoy prints the FieldMask proto's debug string here, whose marker protobuf
                # varies on purpose (goo.gle/debugonly, goo.gle/debugproto, ...).
                listed = "".join(f'paths: "{p}"\n' for p in paths)
                text = f"FieldMask goo.gle/debugproto    \n{listed} could not be successfully used."
                return 400, PLAIN, text, EARLY_NOSNIFF
            body = {"@type": "type.googleapis.com/" + element.DESCRIPTOR.full_name, **_to_dict(element)}
            configs.append(_trim(body, _mask_tree(paths)) if paths else body)
        return 200, JSON, _json({"configs": configs} if configs else {})
    return 404, PLAIN, f"{resource} not found in config dump", EARLY_NOSNIFF
