"""Differential: how a stream that already has its response headers is reset towards an HTTP/2
client when the proxy gives up on it, through the real Envoy and Sluice on the same config.

Envoy 1.40 sends RST_STREAM INTERNAL_ERROR in each case here (an HTTP/1 upstream closing
mid-body, the route timeout and the route's idle timeout firing after the headers) whatever
the cause; the upstream-RST_STREAM case (any error code) is in
``test_differential_upstream_http2.py``. The body already sent, the reset code, the
connection left open for the next stream, and the counters are compared."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from h2_peer import H2Peer
from harness import ROUTER_TYPED_CONFIG, LoopThread, ProxyProcess, free_port, stats_delta

pytestmark = pytest.mark.envoy

STATS = [
    "http.ingress.downstream_rq_tx_reset",
    "http.ingress.downstream_rq_rx_reset",
    "http.ingress.downstream_rq_idle_timeout",
    "http.ingress.downstream_rq_2xx",
    "http2.tx_reset",
    "cluster.h1.upstream_rq_timeout",
    "cluster.h1.upstream_cx_destroy_remote_with_active_rq",
    "cluster.h1.upstream_cx_protocol_error",
]


async def _partial_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers 200 with content-length 100 but only 4 bytes of body, then closes (``/close``) or
    goes silent for 3 s (anything else)."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart")
            await writer.drain()
            if head.split(b" ")[1] == b"/close":
                await asyncio.sleep(0.05)
                break
            await asyncio.sleep(3)
    writer.close()


def _config(up_port: int) -> dict[str, Any]:
    cluster = {
        "name": "h1",
        "connect_timeout": "1s",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": "h1",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": up_port}}}}]}],
        },
    }
    routes = [
        {"match": {"prefix": "/idle"}, "route": {"cluster": "h1", "idle_timeout": "0.3s"}},
        {"match": {"prefix": "/timeout"}, "route": {"cluster": "h1", "timeout": "0.3s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "h1"}},
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": ROUTER_TYPED_CONFIG}],
    }
    listener = {
        "name": "l",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


@pytest.fixture(scope="module")
def proxies(loop: LoopThread) -> Iterator[tuple[ProxyProcess, ProxyProcess]]:
    server = loop.run(asyncio.start_server(_partial_body, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    # (Started from this thread: the harness ties a proxy's life to the thread that forked it.)
    envoy = ProxyProcess("envoy", _config(port)).start()
    try:
        sluice = ProxyProcess("sluice", _config(port)).start()
    except BaseException:
        envoy.stop()
        raise
    yield envoy, sluice
    sluice.stop()
    envoy.stop()
    server.close()


def _observe(proxy: ProxyProcess, path: str) -> dict[str, Any]:
    before = proxy.stats()
    with H2Peer(proxy.port) as peer:
        peer.handshake()
        first = peer.request("GET", path)
        peer.collect(until=lambda q: q.finished(first))
        # The connection still serves: a second stream after the reset one (its answer is the
        # upstream's partial body again, so only its headers are awaited).
        second = peer.request("GET", "/close")
        peer.collect(until=lambda q: q.finished(second))
        view = peer.view()
    return {"view": view, "stats": stats_delta(before, proxy.stats(), STATS)}


@pytest.mark.parametrize("path", ["/close", "/timeout", "/idle"])
def test_reset_after_the_response_headers(proxies: tuple[ProxyProcess, ProxyProcess], path: str) -> None:
    envoy, sluice = proxies
    with ThreadPoolExecutor(2) as pool:
        want_f = pool.submit(_observe, envoy, path)
        got_f = pool.submit(_observe, sluice, path)
        want, got = want_f.result(), got_f.result()
    assert want["view"]["streams"][1]["reset"] == "INTERNAL_ERROR"  # (the premise, from Envoy)
    assert want["view"]["streams"][1]["body"] == b"part"
    assert got == want
