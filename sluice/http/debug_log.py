"""Envoy's per-stream debug lines, for the connection manager and the router.

Each function here builds and writes one line (or a few), naming its caller's file and line
(``stacklevel=2``) as Envoy names the call site; callers reach it only behind
``if logs.http_debug:`` / ``if logs.router_debug:`` (``sluice/logs.py``), so at the default
level a request pays one attribute test per site and none of this runs. Wording follows Envoy
1.40's debug log, checked against the real binary: a line starts with the stream's tags,
``[Tags: "ConnectionId":"0","StreamId":"1977034998135340209"]``, where the stream id is the
stream's random value (Envoy's ``stream_id_``, which also drives its route choice); headers
follow their line as ``'name', 'value'`` rows, pseudo-headers first, then an empty row.

# Divergence from Envoy: the ``stream complete`` summary (route, cluster, host, response code,
# response flags, details) is Sluice's own; Envoy's debug log leaves the flags to access logs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, TypeAlias

    from sluice.http.conn_manager import ConnectionManager as DownstreamConnection

    ActiveStream: TypeAlias = Any
    """A stream or a filter's callbacks (both have ``conn``, ``random_value``, ``request_headers``)."""
    from sluice.http.headers import RequestHeaders, ResponseHeaders

http_log = logging.getLogger("sluice.http")
router_log = logging.getLogger("sluice.router")


def tags(stream: ActiveStream) -> str:
    return f'[Tags: "ConnectionId":"{stream.conn.cid}","StreamId":"{stream.random_value}"]'


def _rows(pairs: list[tuple[str, str]], entries: list[list[str]]) -> str:
    rows = [f"'{k}', '{v}'\n" for k, v in pairs]
    rows += [f"'{k}', '{v}'\n" for k, v in entries]
    return "".join(rows)


def request_rows(headers: RequestHeaders, with_scheme: bool) -> str:
    pairs = [(":authority", headers.authority or ""), (":path", headers.path), (":method", headers.method)]
    if with_scheme:
        pairs.append((":scheme", headers.scheme))
    return _rows(pairs, headers.entries)


def response_rows(headers: ResponseHeaders) -> str:
    return _rows([(":status", str(headers.status))], headers.entries)


# -- connection manager (sluice.http) ------------------------------------------------------
def new_connection(conn: DownstreamConnection) -> None:
    peer = f"{conn.remote[0]}:{conn.remote[1]}" if conn.remote else "unknown"
    http_log.debug('[Tags: "ConnectionId":"%d"] new connection from %s', conn.cid, peer, stacklevel=2)


def new_stream(stream: ActiveStream) -> None:
    http_log.debug('[Tags: "ConnectionId":"%d"] new stream', stream.conn.cid, stacklevel=2)
    end = "true" if stream.request_headers_end_stream else "false"
    http_log.debug(
        "%s request headers complete (end_stream=%s):\n%s", tags(stream), end, request_rows(stream.request_headers, False), stacklevel=2
    )


def local_reply(stream: ActiveStream, details: str) -> None:
    http_log.debug("%s Sending local reply with details %s", tags(stream), details, stacklevel=2)


def encoding_headers(stream: ActiveStream, headers: ResponseHeaders, end_stream: bool) -> None:
    end = "true" if end_stream else "false"
    http_log.debug("%s encoding headers via codec (end_stream=%s):\n%s", tags(stream), end, response_rows(headers), stacklevel=2)


def stream_complete(stream: ActiveStream) -> None:
    info = stream.stream_info
    code = info.response_code if stream.response_complete else None
    http_log.debug(
        "%s stream complete: route '%s', cluster '%s', upstream host %s, response code %s, response flags %s, details %s",
        tags(stream),
        info.route_name or "-",
        info.upstream_cluster or "-",
        info.upstream_host or "-",
        "-" if code is None else code,
        info.flags_short(),
        info.response_code_details or "-",
        stacklevel=2,
    )


def stream_reset(stream: ActiveStream, reason: str) -> None:
    http_log.debug("%s stream reset: reset reason: %s", tags(stream), reason, stacklevel=2)


# -- router (sluice.router) ----------------------------------------------------------------
def no_route(stream: ActiveStream) -> None:
    router_log.debug("%s no route match for URL '%s'", tags(stream), stream.request_headers.path, stacklevel=2)


def unknown_cluster(stream: ActiveStream, cluster: str) -> None:
    router_log.debug("%s unknown cluster '%s'", tags(stream), cluster, stacklevel=2)


def cluster_match(stream: ActiveStream, cluster: str, path: str) -> None:
    """The route's cluster, before the request headers are finalised (a rewrite is not shown yet);
    with no healthy host, the local reply's details say ``no_healthy_upstream`` next, as in Envoy."""
    router_log.debug("%s cluster '%s' match for URL '%s'", tags(stream), cluster, path, stacklevel=2)


def route_decision(stream: ActiveStream, host: str, headers: RequestHeaders) -> None:
    """The host the router picked, then (Envoy's line) the headers it forwards."""
    t = tags(stream)
    router_log.debug("%s upstream host %s", t, host, stacklevel=2)
    router_log.debug("%s router decoding headers:\n%s", t, request_rows(headers, True), stacklevel=2)


def pool_ready(owner: object, host: str) -> None:
    """An attempt got its connection; ``owner`` is the router (a shadow's owner has no stream)."""
    stream = getattr(owner, "cb", None)
    prefix = tags(stream) if stream is not None else "[shadow]"
    router_log.debug("%s pool ready: upstream host %s", prefix, host, stacklevel=2)


def upstream_headers(stream: ActiveStream, status: int, end_stream: bool) -> None:
    router_log.debug(
        "%s upstream headers complete: end_stream=%s (status %d)", tags(stream), "true" if end_stream else "false", status, stacklevel=2
    )


def upstream_reset(stream: ActiveStream, reason: str, host: str) -> None:
    router_log.debug("%s upstream reset: reset reason: %s, upstream host %s", tags(stream), reason, host, stacklevel=2)


def retry(stream: ActiveStream, attempt: int, host: str) -> None:
    router_log.debug("%s performing retry (attempt %d, upstream host %s)", tags(stream), attempt, host, stacklevel=2)
