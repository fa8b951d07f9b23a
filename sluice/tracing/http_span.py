"""The downstream span's tags, set when the stream ends (Envoy's
``HttpTracerUtility::finalizeDownstreamSpan`` and ``TracerUtility::finalizeSpan``), and the
HCM's ``custom_tags``.

Tags, all strings, as Envoy 1.40 sets them (checked against its spans): ``guid:x-request-id``,
``http.url`` (``x-forwarded-proto://host`` + the original path cut at ``max_path_tag_length``),
``http.method``, ``downstream_cluster`` and ``user_agent`` (``-`` when absent),
``http.protocol``, ``peer.address`` (the connection's peer, no port),
``guid:x-client-trace-id``, the gRPC request tags, the custom tags, ``component: proxy``,
``upstream_cluster`` and ``upstream_cluster.name``, ``http.status_code`` (``0`` without a
response), ``response_size``, ``request_size``, ``response_flags``, gRPC status tags from the
response headers or trailers, ``error: true`` for a 5xx (or no response) or a gRPC error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluice.errors import UnsupportedError
from sluice.http.grpc import grpc_status_of, is_grpc_request

if TYPE_CHECKING:
    from sluice.http.headers import HeaderMap, RequestHeaders
    from sluice.http.stream_info import StreamInfo
    from sluice.tracing.zipkin_span import Span

CustomTag = Callable[["RequestHeaders | None", "StreamInfo"], str]
"""A custom tag's value for a request ("" sets nothing, as Envoy's ``CustomTagBase::apply``)."""


def custom_tags(tags: Any, path: str) -> list[tuple[str, CustomTag]]:
    """The HCM's ``tracing.custom_tags``: ``literal``, ``environment`` (read once, as Envoy reads
    it when the config loads), ``request_header`` and ``metadata``."""
    out: list[tuple[str, CustomTag]] = []
    for i, t in enumerate(tags):
        kind = t.WhichOneof("type")
        if kind in ("literal", "environment"):
            value = t.literal.value if kind == "literal" else os.environ.get(t.environment.name, t.environment.default_value)

            def constant(_h: RequestHeaders | None, _i: StreamInfo, value: str = value) -> str:
                return value

            out.append((t.tag, constant))
        elif kind == "request_header":
            name, default = t.request_header.name.lower(), t.request_header.default_value

            def header(h: RequestHeaders | None, _i: StreamInfo, name: str = name, default: str = default) -> str:
                if h is None:
                    return default
                value = h.pseudo(name)
                return default if value is None else value

            out.append((t.tag, header))
        elif kind == "metadata":
            out.append((t.tag, _metadata_tag(t.metadata, f"{path}[{i}].metadata")))
        else:
            raise UnsupportedError(f"{path}[{i}].{kind}: a {kind} custom tag is not implemented yet")
    return out


_METADATA_OF: dict[str, Callable[[StreamInfo], dict[str, dict[str, object]] | None]] = {
    "request": lambda i: i.dynamic_metadata,
    "cluster": lambda i: i.cluster_metadata,
    "host": lambda i: i.upstream_host_metadata,
}


def _metadata_tag(m: Any, path: str) -> CustomTag:
    """A ``metadata`` custom tag (``MetadataCustomTag``): the value at ``metadata_key`` of the
    request's dynamic metadata, the cluster's or the upstream host's; a string as it is, a bool
    ``true``/``false``, a number as absl prints a double (6 significant digits), a list or an
    object as compact JSON; the default when absent. (Route metadata is not kept: refused.)"""
    kind = m.kind.WhichOneof("kind") or "request"
    get = _METADATA_OF.get(kind)
    if get is None:
        raise UnsupportedError(f"{path}.kind.{kind}: {kind} metadata is not kept by Sluice: a custom tag on it is not implemented yet")
    namespace = m.metadata_key.key
    keys = [p.key for p in m.metadata_key.path]
    default: str = m.default_value

    def value(_h: RequestHeaders | None, info: StreamInfo) -> str:
        v: object = (get(info) or {}).get(namespace)
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if v is None:
            return default
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return f"{v:g}"  # (absl::StrCat of a double: 6 significant digits)
        if isinstance(v, str):
            return v
        return _protobuf_json(v)

    return value


def _dtoa(v: float) -> str:
    """A double as protobuf's JSON prints it (``SimpleDtoa``: 15 significant digits, 17 when 15
    do not round-trip): ``1``, ``1.5``, ``1e+20``."""
    text = f"{v:.15g}"
    return text if float(text) == v else f"{v:.17g}"


def _protobuf_json(v: object) -> str:
    """A Struct/list metadata value as protobuf's compact JSON (UTF-8, doubles as :func:`_dtoa`)."""
    if isinstance(v, dict):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_protobuf_json(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_protobuf_json(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _dtoa(float(v))
    if v is None:
        return "null"
    return json.dumps(v, ensure_ascii=False)


def _grpc_response_tags(span: Span, headers: HeaderMap) -> None:
    status = headers.get("grpc-status")
    if status is None:
        return
    span.set_tag("grpc.status_code", status)
    message = headers.get("grpc-message")
    if message is not None:
        span.set_tag("grpc.message", message)
    code = grpc_status_of(headers)
    if code is not None and code != 0:
        span.set_tag("error", "true")


_READ = frozenset({
    "x-request-id", "x-envoy-original-path", "x-forwarded-proto", "x-envoy-downstream-service-cluster", "user-agent",
    "x-client-trace-id", "content-type", "grpc-timeout",
})  # fmt: skip


# ``verbose``: the stream's moments as span logs (Envoy's ``annotateVerbose``), in this order.
_VERBOSE: tuple[tuple[str, Callable[[StreamInfo], float | None]], ...] = (
    ("last_downstream_rx_byte_received", lambda i: i.request_complete),
    ("first_upstream_tx_byte_sent", lambda i: i.upstream_timing.first_tx if i.upstream_timing else None),
    ("last_upstream_tx_byte_sent", lambda i: i.upstream_timing.last_tx if i.upstream_timing else None),
    ("first_upstream_rx_byte_received", lambda i: i.upstream_timing.first_rx if i.upstream_timing else None),
    ("last_upstream_rx_byte_received", lambda i: i.upstream_timing.last_rx if i.upstream_timing else None),
    ("first_downstream_tx_byte_sent", lambda i: i.first_downstream_tx),
    ("last_downstream_tx_byte_sent", lambda i: i.last_downstream_tx),
)


def annotate_verbose(span: Span, info: StreamInfo) -> None:
    for event, moment in _VERBOSE:
        t = moment(info)
        if t is not None:
            span.log(int((info.start_wall + (t - info.start_time)) * 1_000_000), event)


def finalize_downstream_span(
    span: Span,
    request: RequestHeaders | None,
    response: HeaderMap | None,
    trailers: HeaderMap | None,
    info: StreamInfo,
    max_path_tag_length: int,
    tags: list[tuple[str, CustomTag]],
    verbose: bool = False,
) -> None:
    out = span.tags
    if request is not None:
        # The request headers read in one pass (first values); tags set straight into the
        # span's dict, an empty value left out as Span.set_tag does.
        h: dict[str, str] = {}
        for k, v in request.entries:
            if k in _READ and k not in h:
                h[k] = v
        if h.get("x-request-id"):
            out["guid:x-request-id"] = h["x-request-id"]
        path = h.get("x-envoy-original-path") or request.path
        out["http.url"] = f"{h.get('x-forwarded-proto', '')}://{request.authority or ''}{path[:max_path_tag_length]}"
        if request.method:
            out["http.method"] = request.method
        out["downstream_cluster"] = h.get("x-envoy-downstream-service-cluster") or "-"
        out["user_agent"] = h.get("user-agent") or "-"
        out["http.protocol"] = info.protocol or "-"
        peer = info.downstream_direct_remote_address
        if peer is not None and peer[0]:
            out["peer.address"] = peer[0]
        if h.get("x-client-trace-id"):
            out["guid:x-client-trace-id"] = h["x-client-trace-id"]
        if "content-type" in h and is_grpc_request(request):
            span.set_tag("grpc.path", request.path)
            span.set_tag("grpc.authority", request.authority or "")
            span.set_tag("grpc.content_type", h["content-type"])
            span.set_tag("grpc.timeout", h.get("grpc-timeout", ""))
    for name, value in tags:
        span.set_tag(name, value(request, info))
    out["component"] = "proxy"
    if info.upstream_cluster:
        out["upstream_cluster"] = out["upstream_cluster.name"] = info.upstream_cluster
    code = info.response_code
    out["http.status_code"] = str(code or 0)
    out["response_size"] = str(info.bytes_sent)
    out["request_size"] = str(info.bytes_received)
    out["response_flags"] = info.flags_short()
    if not code or 500 <= code < 600:
        out["error"] = "true"
    if verbose:
        annotate_verbose(span, info)
    if response is not None and "grpc-status" in response:
        _grpc_response_tags(span, response)
    if trailers is not None:
        _grpc_response_tags(span, trailers)
    span.finish()


def finalize_upstream_span(span: Span, protocol: str | None, host: str, cluster: str, status: int) -> None:
    """An upstream request's span as Envoy's ``finalizeUpstreamSpan`` tags it (checked against
    Envoy 1.40): the upstream's protocol, address (also ``peer.address``) and status."""
    out = span.tags
    out["http.protocol"] = protocol or "-"
    out["upstream_address"] = out["peer.address"] = host
    out["component"] = "proxy"
    out["response_flags"] = "-"
    out["upstream_cluster"] = out["upstream_cluster.name"] = cluster
    out["http.status_code"] = str(status)
    if not status or 500 <= status < 600:
        out["error"] = "true"
    span.finish()
