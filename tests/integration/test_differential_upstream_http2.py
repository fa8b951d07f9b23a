"""Differential: HTTP/1.1 downstream → HTTP/2 upstream, through the real Envoy and Sluice on the
same config and the same h2 upstream (built here on ``h2`` + asyncio, independent of Sluice's
codecs). Status, response header names, body and the cluster's stats must match: many streams
on one connection, max_concurrent_streams=1 opening a second connection, trailers, RST_STREAM
before and after the response headers, GOAWAY."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2_peer import H2Peer
from harness import ROUTER_TYPED_CONFIG, Client, ConnectionClosed, LoopThread, ProxyProcess, free_port, stats_delta

pytestmark = pytest.mark.envoy

HPO = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


class H2Upstream:
    """An h2c (prior knowledge) server. Paths: ``/ok``, ``/delay/<ms>``, ``/trailers``,
    ``/rst-before``, ``/rst-after``, ``/goaway`` (answers, then GOAWAY and close), ``/nolength``."""

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.connections = 0
        self.max_streams = 0
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for t in list(self._tasks):
            t.cancel()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        closing = False
        try:
            while not closing:
                data = await reader.read(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        path = dict(event.headers or [])[":path"]
                        task = asyncio.get_running_loop().create_task(self._answer(conn, writer, event.stream_id, path))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                writer.write(conn.data_to_send())
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()

    async def _answer(self, conn: h2.connection.H2Connection, writer: asyncio.StreamWriter, sid: int, path: str) -> None:
        self._open += 1
        self.max_streams = max(self.max_streams, self._open)
        try:
            if path.startswith("/delay/"):
                await asyncio.sleep(int(path.rsplit("/", 1)[1]) / 1000)
            if path == "/rst-before":
                conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
            elif path == "/refuse":
                conn.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            elif path == "/rst-after":
                conn.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
                conn.send_data(sid, b"part")
                writer.write(conn.data_to_send())
                await asyncio.sleep(0.05)
                conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
            elif path == "/trailers":
                conn.send_headers(sid, [(":status", "200"), ("content-length", "4")])
                conn.send_data(sid, b"body")
                conn.send_headers(sid, [("x-trailer", "t")], end_stream=True)
            elif path == "/nolength":
                conn.send_headers(sid, [(":status", "201"), ("x-a", "1")])
                conn.send_data(sid, b"no length", end_stream=True)
            else:
                body = f"conn {self.connections}\n".encode()
                conn.send_headers(sid, [(":status", "200"), ("content-length", str(len(body))), ("x-up", "h2")])
                conn.send_data(sid, body, end_stream=True)
                if path == "/goaway":
                    conn.close_connection(last_stream_id=sid)
            writer.write(conn.data_to_send())
            if path == "/goaway":
                await asyncio.sleep(0.05)
                writer.close()
        finally:
            self._open -= 1


def _config(up_port: int) -> dict[str, Any]:
    def cluster(name: str, h2_options: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "connect_timeout": "1s",
            "type": "STATIC",
            "typed_extension_protocol_options": {
                HPO: {"@type": f"type.googleapis.com/{HPO}", "explicit_http_config": {"http2_protocol_options": h2_options}}
            },
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": up_port}}}}]}
                ],
            },
        }

    downstream = cluster("ds", {})
    downstream["typed_extension_protocol_options"][HPO] = {
        "@type": f"type.googleapis.com/{HPO}",
        "use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}},
    }
    idle = cluster("idle", {})
    idle["typed_extension_protocol_options"][HPO]["common_http_protocol_options"] = {"idle_timeout": "0.3s"}
    breakers = cluster("cb", {})
    breakers["circuit_breakers"] = {"thresholds": [{"max_requests": 2, "max_pending_requests": 1}]}
    maxreq = cluster("maxreq", {})
    maxreq["typed_extension_protocol_options"][HPO]["common_http_protocol_options"] = {"max_requests_per_connection": 2}
    routes = [
        {"match": {"prefix": "/idle/"}, "route": {"cluster": "idle", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/maxreq/"}, "route": {"cluster": "maxreq", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/cb/"}, "route": {"cluster": "cb", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/one/"}, "route": {"cluster": "one", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/ds/"}, "route": {"cluster": "ds", "prefix_rewrite": "/"}},
        {
            "match": {"prefix": "/retry-reset/"},
            "route": {"cluster": "h2", "prefix_rewrite": "/", "retry_policy": {"retry_on": "reset", "num_retries": 1}},
        },
        {
            "match": {"prefix": "/retry-refused/"},
            "route": {"cluster": "h2", "prefix_rewrite": "/", "retry_policy": {"retry_on": "refused-stream", "num_retries": 2}},
        },
        {"match": {"prefix": "/"}, "route": {"cluster": "h2"}},
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": ROUTER_TYPED_CONFIG}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "l",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
                }
            ],
            "clusters": [cluster("h2", {}), cluster("one", {"max_concurrent_streams": 1}), downstream, idle, maxreq, breakers],
        },
    }


STATS = [
    f"cluster.{c}.{n}"
    for c in ("h2", "one", "ds", "idle", "maxreq", "cb")
    for n in (
        "upstream_cx_total",
        "upstream_cx_http1_total",
        "upstream_cx_http2_total",
        "upstream_rq_total",
        "upstream_rq_200",
        "upstream_rq_201",
        "upstream_rq_503",
        "upstream_rq_rx_reset",
        "upstream_rq_tx_reset",
        "upstream_cx_close_notify",
        "upstream_cx_protocol_error",
        "http2.rx_reset",
        "http2.trailers",
        "http2.streams_active",
        "http2.tx_reset",
        "http2.rx_messaging_error",
        "upstream_cx_destroy_remote",
        "upstream_cx_destroy_local",
        "upstream_cx_destroy_with_active_rq",
        "upstream_rq_pending_failure_eject",
        "upstream_rq_completed",
        "upstream_rq_retry",
        "upstream_rq_retry_limit_exceeded",
        "upstream_rq_retry_success",
        "http2.stream_refused_errors",
        "upstream_cx_idle_timeout",
        "upstream_cx_max_requests",
        "upstream_cx_active",
        "upstream_rq_pending_overflow",
        "upstream_rq_active_overflow",
        "upstream_rq_pending_total",
        "upstream_cx_overflow",
    )
]


@pytest.fixture()
def setup(loop: LoopThread) -> Iterator[tuple[H2Upstream, ProxyProcess, ProxyProcess]]:
    """Per test: fresh proxies (connection counts start at 0) over one upstream."""
    up = H2Upstream()
    loop.run(up.start())
    envoy = ProxyProcess("envoy", _config(up.port)).start()
    try:
        sluice = ProxyProcess("sluice", _config(up.port)).start()
    except BaseException:
        envoy.stop()
        raise
    yield up, envoy, sluice
    sluice.stop()
    envoy.stop()
    loop.run(up.stop())


def _one(port: int, path: str) -> dict[str, Any]:
    with Client(port) as c:
        try:
            r = c.get(path)
        except ConnectionClosed:
            return {"closed": True}
        return {"status": r.status, "headers": [n for n in r.names if n != "x-envoy-upstream-service-time"], "body": r.body}


def _observe(proxy: ProxyProcess, paths: list[str], concurrent: bool = False) -> dict[str, Any]:
    before = proxy.stats()
    if concurrent:
        with ThreadPoolExecutor(len(paths)) as pool:
            results = list(pool.map(lambda p: _one(proxy.port, p), paths))
    else:
        results = [_one(proxy.port, p) for p in paths]
    time.sleep(0.2)  # (resets and closes are counted as they arrive)
    return {"responses": results, "stats": stats_delta(before, proxy.stats(), STATS)}


def _both(setup: tuple[H2Upstream, ProxyProcess, ProxyProcess], paths: list[str], concurrent: bool = False) -> list[Any]:
    up, envoy, sluice = setup
    seen = []
    for proxy in (envoy, sluice):
        up.connections = up.max_streams = 0
        got = _observe(proxy, paths, concurrent)
        got["upstream_connections"] = up.connections
        seen.append(got)
    return seen


def test_many_streams_share_one_connection(setup: tuple[H2Upstream, ProxyProcess, ProxyProcess]) -> None:
    want, got = _both(setup, ["/ok"])  # the connection is up first, then 6 streams at once
    assert got == want
    want, got = _both(setup, ["/delay/300"] * 6, concurrent=True)
    assert got == want
    assert got["stats"]["cluster.h2.upstream_cx_total"] == 0 and got["upstream_connections"] == 0
    assert setup[0].max_streams == 6


def test_max_concurrent_streams_one_opens_another_connection(setup: tuple[H2Upstream, ProxyProcess, ProxyProcess]) -> None:
    want, got = _both(setup, ["/one/delay/300"] * 2, concurrent=True)
    assert got == want
    assert got["stats"]["cluster.one.upstream_cx_total"] == 2


@pytest.mark.parametrize(
    "path",
    [
        "/ok",
        "/trailers",
        "/nolength",
        "/rst-before",
        "/rst-after",
        "/refuse",
        "/retry-reset/rst-before",
        "/retry-reset/ok",
        "/retry-refused/refuse",
        "/retry-refused/rst-before",
    ],
)
def test_responses_same_as_envoy(setup: tuple[H2Upstream, ProxyProcess, ProxyProcess], path: str) -> None:
    want, got = _both(setup, [path, "/ok"])
    assert got == want


def test_goaway_moves_to_a_new_connection(setup: tuple[H2Upstream, ProxyProcess, ProxyProcess]) -> None:
    want, got = _both(setup, ["/goaway", "/ok", "/ok"])
    assert got == want
    assert got["stats"]["cluster.h2.upstream_cx_total"] == 2


def _h2_observe(proxy: ProxyProcess, paths: list[str]) -> dict[str, Any]:
    before = proxy.stats()
    with H2Peer(proxy.port) as peer:
        peer.handshake()
        for path in paths:
            peer.request("GET", path)
        peer.collect()
        view = peer.view()
    time.sleep(0.2)
    return {"view": view, "stats": stats_delta(before, proxy.stats(), STATS)}


@pytest.mark.parametrize(
    "path",
    [
        "/ds/ok",
        "/ds/trailers",
        "/ds/rst-before",
        "/ds/rst-after",
    ],
)
def test_http2_downstream_uses_http2_upstream_with_use_downstream_protocol_config(
    setup: tuple[H2Upstream, ProxyProcess, ProxyProcess], path: str
) -> None:
    """An HTTP/2 request on a ``use_downstream_protocol_config`` cluster goes upstream over
    HTTP/2; the response trailers reach the HTTP/2 client."""
    up, envoy, sluice = setup
    seen = []
    for proxy in (envoy, sluice):
        up.connections = 0
        seen.append(_h2_observe(proxy, [path]))
    want, got = seen
    assert got == want
    assert got["stats"]["cluster.ds.upstream_cx_http2_total"] == 1


def test_idle_timeout_closes_the_upstream_connection(setup: tuple[H2Upstream, ProxyProcess, ProxyProcess]) -> None:
    up, envoy, sluice = setup
    seen = []
    for proxy in (envoy, sluice):
        before = proxy.stats()
        first = _one(proxy.port, "/idle/ok")
        time.sleep(0.8)
        seen.append((first["status"], stats_delta(before, proxy.stats(), STATS)))
    assert seen[1] == seen[0]
    assert seen[1][1]["cluster.idle.upstream_cx_idle_timeout"] == 1


def test_max_requests_per_connection(setup: tuple[H2Upstream, ProxyProcess, ProxyProcess]) -> None:
    want, got = _both(setup, ["/maxreq/ok"] * 5)
    # Envoy 1.40 counts upstream_cx_protocol_error once per connection it closes at
    # max_requests_per_connection while dispatching the read that ended its last stream (its
    # codec's "Connection was closed while dispatching frames"): 2 here.
    assert want["stats"]["cluster.maxreq.upstream_cx_protocol_error"] == 2
    assert got == want
    assert got["stats"]["cluster.maxreq.upstream_cx_total"] == 3


def test_circuit_breakers_count_streams_on_one_connection(setup: tuple[H2Upstream, ProxyProcess, ProxyProcess]) -> None:
    """max_requests 2 on an HTTP/2 cluster: with its connection up, 6 requests at once get 2
    streams and 4 overflows (503, x-envoy-overloaded), counted as Envoy counts them per request."""
    up, envoy, sluice = setup
    seen = []
    for proxy in (envoy, sluice):
        up.connections = 0
        _one(proxy.port, "/cb/ok")  # (the connection first: no request waits for a connect)
        got = _observe(proxy, ["/cb/delay/400"] * 6, concurrent=True)
        got["responses"] = sorted(map(str, got["responses"]))
        seen.append(got)
    want, got = seen
    assert got == want
    assert want["stats"]["cluster.cb.upstream_rq_active_overflow"] == 4

