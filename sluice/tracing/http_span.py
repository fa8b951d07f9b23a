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
    it when the config loads) and ``request_header``; ``metadata`` is named as missing."""
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
        else:
            raise UnsupportedError(f"{path}[{i}].{kind}: a {kind} custom tag is not implemented yet")
    return out


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


def finalize_downstream_span(
    span: Span,
    request: RequestHeaders | None,
    response: HeaderMap | None,
    trailers: HeaderMap | None,
    info: StreamInfo,
    max_path_tag_length: int,
    tags: list[tuple[str, CustomTag]],
) -> None:
    set_tag = span.set_tag
    if request is not None:
        rid = request.get("x-request-id")
        if rid is not None:
            set_tag("guid:x-request-id", rid)
        path = request.get("x-envoy-original-path") or request.path
        if path is not None:
            proto = request.get("x-forwarded-proto") or ""
            set_tag("http.url", f"{proto}://{request.authority or ''}{path[:max_path_tag_length]}")
        set_tag("http.method", request.method)
        set_tag("downstream_cluster", request.get("x-envoy-downstream-service-cluster") or "-")
        set_tag("user_agent", request.get("user-agent") or "-")
        set_tag("http.protocol", info.protocol or "-")
        peer = info.downstream_direct_remote_address
        if peer is not None:
            set_tag("peer.address", peer[0])
        client = request.get("x-client-trace-id")
        if client is not None:
            set_tag("guid:x-client-trace-id", client)
        if is_grpc_request(request):
            set_tag("grpc.path", request.path)
            set_tag("grpc.authority", request.authority or "")
            set_tag("grpc.content_type", request.get("content-type") or "")
            timeout = request.get("grpc-timeout")
            if timeout is not None:
                set_tag("grpc.timeout", timeout)
    for name, value in tags:
        set_tag(name, value(request, info))
    set_tag("component", "proxy")
    if info.upstream_cluster:
        set_tag("upstream_cluster", info.upstream_cluster)
        set_tag("upstream_cluster.name", info.upstream_cluster)
    code = info.response_code
    set_tag("http.status_code", str(code or 0))
    set_tag("response_size", str(info.bytes_sent))
    set_tag("request_size", str(info.bytes_received))
    set_tag("response_flags", info.flags_short())
    if not code or 500 <= code < 600:
        set_tag("error", "true")
    if response is not None:
        _grpc_response_tags(span, response)
    if trailers is not None:
        _grpc_response_tags(span, trailers)
    span.finish()
