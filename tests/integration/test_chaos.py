"""Chaos: a seeded mix of normal requests, client aborts, upstream failures, timeouts, retries,
mirrors, pipelining and HEAD requests, run in-process; afterwards every active gauge and
circuit-breaker gauge is back to 0 (idle pooled connections aside), no ActiveStream is left alive,
the proxy still answers and the downstream request counters add up."""

from __future__ import annotations

import asyncio
import copy
import gc
import os
import random
import socket

import yaml

from sluice.config.loader import load_bootstrap
from sluice.http.conn_manager import ActiveStream
from sluice.lab.apps.demoapp import App
from sluice.server import Server

CONFIG = """
static_resources:
  listeners:
  - name: l0
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {{prefix: "/retry/"}}
                route:
                  cluster: up
                  prefix_rewrite: "/"
                  retry_policy: {{retry_on: "5xx,reset,connect-failure", num_retries: 2}}
              - match: {{prefix: "/dead/"}}
                route:
                  cluster: dead
                  prefix_rewrite: "/"
                  retry_policy: {{retry_on: "5xx,reset,connect-failure", num_retries: 2}}
              - match: {{prefix: "/short/"}}
                route: {{cluster: up, prefix_rewrite: "/", timeout: 0.2s}}
              - match: {{prefix: "/mirror/"}}
                route:
                  cluster: up
                  prefix_rewrite: "/"
                  timeout: 2s
                  request_mirror_policies: [{{cluster: shadow}}]
              - match: {{prefix: "/tight/"}}
                route:
                  cluster: tight
                  prefix_rewrite: "/"
                  timeout: 1s
                  retry_policy: {{retry_on: "5xx,reset,connect-failure", num_retries: 2, per_try_timeout: 0.15s}}
              - match: {{prefix: "/early/"}}
                route: {{cluster: early, timeout: 1s}}
              - match: {{prefix: "/mirror0/"}}
                route:
                  cluster: up
                  prefix_rewrite: "/"
                  timeout: 0s
                  request_mirror_policies: [{{cluster: shadow}}]
              - match: {{prefix: "/"}}
                route: {{cluster: up}}
          http_filters:
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              delay: {{header_delay: {{}}, percentage: {{numerator: 100}}}}
              abort: {{header_abort: {{}}, percentage: {{numerator: 100}}}}
              response_rate_limit: {{header_limit: {{}}, percentage: {{numerator: 100}}}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    connect_timeout: 1s
    load_assignment: {{cluster_name: up, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {up}}}}}}}}}]}}]}}
  - name: shadow
    connect_timeout: 1s
    load_assignment: {{cluster_name: shadow, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {shadow}}}}}}}}}]}}]}}
  - name: tight
    connect_timeout: 1s
    circuit_breakers: {{thresholds: [{{max_connections: 3, max_pending_requests: 3, max_requests: 4, max_retries: 2}}]}}
    load_assignment: {{cluster_name: tight, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {up}}}}}}}}}]}}]}}
  - name: early
    connect_timeout: 1s
    load_assignment: {{cluster_name: early, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {early}}}}}}}}}]}}]}}
  - name: dead
    connect_timeout: 0.25s
    load_assignment: {{cluster_name: dead, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {dead}}}}}}}}}]}}]}}
"""


def config_yaml(**ports: int) -> str:
    """CONFIG plus a second listener (``timeouts_http``) with the same routes and every HCM
    timeout armed: request, stream idle, max stream duration, connection idle."""
    doc = yaml.safe_load(CONFIG.format(**ports))
    second = copy.deepcopy(doc["static_resources"]["listeners"][0])
    second["name"] = "l1"
    second["address"]["socket_address"]["port_value"] = unused_port()
    hcm = second["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["stat_prefix"] = "timeouts_http"
    hcm["request_timeout"] = "0.4s"
    hcm["stream_idle_timeout"] = "0.25s"
    hcm["request_headers_timeout"] = "0.3s"
    hcm["common_http_protocol_options"] = {"idle_timeout": "0.5s", "max_stream_duration": "0.6s"}
    doc["static_resources"]["listeners"].append(second)
    return str(yaml.safe_dump(doc))


CLUSTERS = ("up", "shadow", "dead", "early", "tight")


class Early(asyncio.Protocol):
    """An upstream that answers as soon as it has a request head, without reading the body
    (as a server refusing an upload does), and keeps the connection open."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""
        self.answered = False

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.answered and b"\r\n\r\n" in self.buf:
            self.answered = True
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly")  # type: ignore[attr-defined]


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(path: str, extra: str = "", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: chaos.test\r\n{extra}\r\n".encode()


async def read_all(r: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(r.read(), 10)


async def one(ports: list[int], kind: str, rnd: random.Random) -> str:
    """One client action, on a random listener; returns what it saw (for the sanity asserts)."""
    r, w = await asyncio.open_connection("127.0.0.1", rnd.choice(ports))
    try:
        if kind == "ok":
            path = rnd.choice(["/hostname", "/bytes/5000", "/retry/hostname", "/mirror/hostname", "/unframed", "/status/404"])
            w.write(get(path, "Connection: close\r\n"))
            data = await read_all(r)
            return data[:12].decode()
        if kind == "head":
            w.write(get("/bytes/100", "", "HEAD") + get("/hostname", "Connection: close\r\n"))
            data = await read_all(r)
            assert data.count(b"HTTP/1.1 200") == 2, data
            return "head"
        if kind == "pipelined":
            n = rnd.randint(2, 4)
            paths = [rnd.choice(["/hostname", "/delay/20", "/status/503", "/retry/status/503", "/bytes/3000"]) for _ in range(n)]
            w.write(b"".join(get(p) for p in paths[:-1]) + get(paths[-1], "Connection: close\r\n"))
            data = await read_all(r)
            assert data.count(b"HTTP/1.1 ") == n, data
            return "pipelined"
        if kind == "pipelined_abort":
            w.write(get("/delay/100") + get("/hostname") + get("/hostname"))
            await asyncio.sleep(rnd.uniform(0, 0.05))
            return "pipelined_abort"
        if kind == "abort_after_send":
            w.write(get(rnd.choice(["/delay/100", "/retry/delay/100", "/mirror/delay/100", "/short/delay/500", "/dead/x"])))
            await asyncio.sleep(rnd.uniform(0, 0.03))
            return "abort_after_send"
        if kind == "abort_mid_body":
            path = rnd.choice(["/echo", "/retry/echo", "/mirror/echo", "/short/echo"])
            w.write(get(path, "Content-Length: 1000\r\n", "POST") + b"a" * rnd.randint(0, 999))
            await asyncio.sleep(rnd.uniform(0, 0.03))
            return "abort_mid_body"
        if kind == "abort_after_head":
            w.write(get(rnd.choice(["/bytes/2000000", "/mirror/bytes/2000000", "/retry/bytes/2000000"])))
            await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            return "abort_after_head"
        if kind == "upstream_fail":
            path = rnd.choice(["/close", "/retry/close", "/retry/status/503", "/dead/x", "/status/500"])
            w.write(get(path, "Connection: close\r\n"))
            data = await read_all(r)
            return data[:12].decode()
        if kind == "timeout":
            w.write(get(rnd.choice(["/short/delay/1000", "/short/hostname"]), "Connection: close\r\n"))
            data = await read_all(r)
            return data[:12].decode()
        if kind == "early":
            w.write(get("/early/upload", "Content-Length: 100000\r\n", "POST") + b"e" * 1000)
            data = await asyncio.wait_for(r.readuntil(b"early"), 10)
            assert data.startswith(b"HTTP/1.1 200"), data
            if rnd.random() < 0.5:
                w.write(b"e" * 99000)
            return "early"
        if kind == "abort_mid_body_mirror":
            w.write(get("/mirror0/echo", "Content-Length: 1000\r\n", "POST") + b"a" * rnd.randint(0, 999))
            await asyncio.sleep(rnd.uniform(0, 0.03))
            return "abort_mid_body_mirror"
        if kind == "tight":
            path = rnd.choice(["/tight/delay/50", "/tight/delay/300", "/tight/status/503", "/tight/close", "/tight/hostname"])
            w.write(get(path, "Connection: close\r\n"))
            if rnd.random() < 0.3:
                await asyncio.sleep(rnd.uniform(0, 0.2))
                return "tight_abort"
            data = await read_all(r)
            return data[:12].decode()
        if kind == "fault":
            path = rnd.choice(["/hostname", "/retry/status/503", "/mirror/bytes/100000", "/bytes/100000", "/short/hostname"])
            fault = rnd.choice(
                [
                    "x-envoy-fault-abort-request: 503\r\n",
                    "x-envoy-fault-delay-request: 100\r\n",
                    "x-envoy-fault-delay-request: 300\r\n",
                    "x-envoy-fault-throughput-response: 64\r\n",
                    "x-envoy-fault-delay-request: 50\r\nx-envoy-fault-abort-request: 500\r\n",
                ]
            )
            w.write(get(path, fault + "Connection: close\r\n"))
            if rnd.random() < 0.4:
                await asyncio.sleep(rnd.uniform(0, 0.15))
                return "fault_abort"
            data = await read_all(r)
            return data[:12].decode()
        if kind == "body":
            path = rnd.choice(["/echo", "/retry/echo", "/mirror/echo"])
            body = b"b" * rnd.randint(1, 5000)
            w.write(get(path, f"Content-Length: {len(body)}\r\nConnection: close\r\n", "POST") + body)
            data = await read_all(r)
            assert data.startswith(b"HTTP/1.1 200"), data[:200]
            return "body"
        raise AssertionError(kind)
    finally:
        w.close()


KINDS = [
    "ok",
    "head",
    "pipelined",
    "pipelined_abort",
    "abort_after_send",
    "abort_mid_body",
    "abort_after_head",
    "upstream_fail",
    "timeout",
    "body",
    "early",
    "abort_mid_body_mirror",
    "tight",
    "fault",
]


def live_streams() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, ActiveStream))


def leaks(server: Server) -> dict[str, int]:
    """Every gauge that should be 0 once all clients are gone (idle pooled connections aside)."""
    store = server.store
    bad: dict[str, int] = {}
    for name, g in store.gauges.items():
        if name.endswith(("rq_active", "rq_pending_active", "_open", "active_faults")) or (
            name.startswith(("http.", "listener.")) and name.endswith("cx_active")
        ):
            if g.value != 0:
                bad[name] = g.value
    for cname in CLUSTERS:
        cluster = server.cluster_manager.get(cname)
        assert cluster is not None
        idle = 0
        for pool in cluster.pools.values():
            if pool.busy or pool.waiters or pool.connecting:
                bad[f"{cname}.pool"] = len(pool.busy) + len(pool.waiters) + pool.connecting
            idle += sum(1 for c in pool.idle if c.is_open)
            res = pool.resources
            for rname in ("max_requests", "max_pending_requests", "max_retries"):
                count = getattr(res, rname).count
                if count:
                    bad[f"{cname}.{rname}"] = count
        cx = store.value(f"cluster.{cname}.upstream_cx_active")
        if cx != idle:
            bad[f"cluster.{cname}.upstream_cx_active"] = cx
        if cluster.resources.max_connections.count != idle:
            bad[f"{cname}.max_connections"] = cluster.resources.max_connections.count
    return bad


def test_chaos_leaves_nothing_behind() -> None:
    async def main() -> None:
        up, shadow = App("up"), App("shadow")
        await up.start("127.0.0.1", 0)
        await shadow.start("127.0.0.1", 0)
        early = await asyncio.get_running_loop().create_server(Early, "127.0.0.1", 0)
        early_port = early.sockets[0].getsockname()[1]
        server = Server(load_bootstrap(config_yaml=config_yaml(up=up.port, shadow=shadow.port, dead=unused_port(), early=early_port)))
        await server.start()
        ports = [lst.port for lst in server.listeners]
        try:
            rnd = random.Random(int(os.environ.get("SLUICE_CHAOS_SEED", "20261124")))
            kinds = [rnd.choice(KINDS) for _ in range(300)]
            seen: list[str] = []
            for i in range(0, len(kinds), 30):
                batch = [one(ports, k, random.Random(rnd.getrandbits(32))) for k in kinds[i : i + 30]]
                seen += await asyncio.gather(*batch)
            assert "HTTP/1.1 504" in seen  # the short route timed out
            assert "HTTP/1.1 503" in seen  # upstream failures
            # Let aborted requests, delayed upstream answers, timeouts and shadows settle.
            bad: dict[str, int] = {}
            for _ in range(60):
                await asyncio.sleep(0.1)
                bad = leaks(server)
                if not bad and live_streams() == 0:
                    break
            assert bad == {}
            assert live_streams() == 0
            store = server.store
            for prefix in ("http.ingress_http.", "http.timeouts_http."):
                # Envoy's counters overlap: downstream_rq_completed is charged when the response
                # headers go out (a response reset later counts it too), and onResetStream counts
                # downstream_rq_rx_reset for every reset, sent ones included. So every request
                # ended as one or the other (or both), and a sent reset is a counted one.
                total, completed, rx_reset, tx_reset = (
                    store.value(prefix + n)
                    for n in ("downstream_rq_total", "downstream_rq_completed", "downstream_rq_rx_reset", "downstream_rq_tx_reset")
                )
                assert completed <= total and rx_reset <= total, (prefix, total, completed, rx_reset)
                assert total <= completed + rx_reset, (prefix, total, completed, rx_reset)
                assert tx_reset <= rx_reset, (prefix, tx_reset, rx_reset)
            # The proxy still answers.
            assert (await one(ports[:1], "ok", random.Random(1))).startswith("HTTP/1.1 ")
            r, w = await asyncio.open_connection("127.0.0.1", ports[0])
            w.write(get("/retry/hostname", "Connection: close\r\n"))
            assert (await read_all(r)).startswith(b"HTTP/1.1 200")
            w.close()
        finally:
            await server.stop()
            await up.stop()
            await shadow.stop()
            early.close()

    asyncio.run(asyncio.wait_for(main(), 60))


class Handler:
    """A pool waiter that records what the pool gave it."""

    def __init__(self) -> None:
        self.ready: list[object] = []
        self.failed: list[str] = []

    def on_pool_ready(self, conn: object) -> None:
        self.ready.append(conn)

    def on_pool_failure(self, reason: str, transport_failure: str = "") -> None:
        self.failed.append(reason)

    def on_response_headers(self, status: int, headers: list[list[str]], end_stream: bool) -> None: ...
    def on_response_data(self, data: bytes, end_stream: bool) -> None: ...
    def on_upstream_reset(self, reason: str) -> None: ...
    def on_upstream_writable(self, writable: bool) -> None: ...


def test_idle_connection_closing_under_the_pool_is_accounted() -> None:
    """An idle connection whose transport is already closing (the upstream's FIN was read, its
    ``connection_lost`` is only scheduled) is skipped by ``acquire``: its close must still be
    counted (upstream_cx_active, max_connections), not lost."""

    async def main() -> None:
        up, shadow = App("up"), App("shadow")
        await up.start("127.0.0.1", 0)
        await shadow.start("127.0.0.1", 0)
        server = Server(load_bootstrap(config_yaml=config_yaml(up=up.port, shadow=shadow.port, dead=unused_port(), early=unused_port())))
        await server.start()
        port = server.listeners[0].port
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(get("/hostname", "Connection: close\r\n"))
            assert (await read_all(r)).startswith(b"HTTP/1.1 200")
            w.close()
            cluster = server.cluster_manager.get("up")
            assert cluster is not None
            (pool,) = cluster.pools.values()
            (conn,) = pool.idle
            assert conn.transport is not None
            conn.transport.close()  # as the loop does on EOF: connection_lost comes later
            handler = Handler()
            pool.acquire(handler)  # skips the closing connection, opens a new one
            for _ in range(50):
                await asyncio.sleep(0.02)
                if handler.ready:
                    break
            assert len(handler.ready) == 1
            new = handler.ready[0]
            new.handler = None  # type: ignore[attr-defined]
            pool.release(new)  # type: ignore[arg-type]
            await asyncio.sleep(0.05)
            assert leaks(server) == {}
            assert server.store.value("cluster.up.upstream_cx_active") == 1
        finally:
            await server.stop()
            await up.stop()
            await shadow.stop()

    asyncio.run(asyncio.wait_for(main(), 20))


class SlowBody(asyncio.Protocol):
    """Answers each request with a head and half its body at once, the rest 0.4 s later."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")  # type: ignore[attr-defined]
            asyncio.get_running_loop().call_later(0.4, self.transport.write, b"world")  # type: ignore[attr-defined]


def test_per_try_timeout_is_ignored_once_the_response_started() -> None:
    """Envoy's ``UpstreamRequest::onPerTryTimeout`` ignores the per-try timeout once the
    downstream response has started (checked against Envoy 1.40: the whole body arrives);
    the tight route's 0.15 s per-try timeout must not cut a slow body."""

    async def main() -> None:
        up, shadow = App("up"), App("shadow")
        await up.start("127.0.0.1", 0)
        await shadow.start("127.0.0.1", 0)
        slow = await asyncio.get_running_loop().create_server(SlowBody, "127.0.0.1", 0)
        slow_port = slow.sockets[0].getsockname()[1]
        server = Server(load_bootstrap(config_yaml=config_yaml(up=slow_port, shadow=shadow.port, dead=unused_port(), early=unused_port())))
        await server.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", server.listeners[0].port)
            w.write(get("/tight/x", "Connection: close\r\n"))
            data = await read_all(r)
            w.close()
            assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"helloworld"), data
            assert server.store.value("cluster.tight.upstream_rq_per_try_timeout") == 0
        finally:
            await server.stop()
            await up.stop()
            await shadow.stop()
            slow.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_pooled_connection_is_not_left_paused_by_a_rate_limited_response() -> None:
    """A response slightly above the fault filter's 1 MiB buffer limit arrives whole in the read
    that crosses the watermark: the router pauses the upstream connection, which then completes
    and goes back to the pool. The pool must hand out a reading connection (else the next
    request on it waits for its route timeout), and the finished stream's back-pressure must not
    reach the connection's next request."""

    async def main() -> None:
        up, shadow = App("up"), App("shadow")
        await up.start("127.0.0.1", 0)
        await shadow.start("127.0.0.1", 0)
        server = Server(load_bootstrap(config_yaml=config_yaml(up=up.port, shadow=shadow.port, dead=unused_port(), early=unused_port())))
        await server.start()
        port = server.listeners[0].port
        try:
            for n in (1_060_000, 1_200_000):
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(get(f"/bytes/{n}", "x-envoy-fault-throughput-response: 64\r\n"))
                await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                await asyncio.sleep(0.3)
                w.close()  # the client goes away while the paced body is still buffered
                await asyncio.sleep(0.1)
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(get("/short/hostname", "Connection: close\r\n"))
                data = await read_all(r)
                w.close()
                assert data.startswith(b"HTTP/1.1 200"), data[:200]
        finally:
            await server.stop()
            await up.stop()
            await shadow.stop()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_keep_alive_connection_reads_again_after_a_paused_stream() -> None:
    """A stream that paused its downstream connection's reading (request back-pressure) and
    ended without resuming it must not leave the keep-alive connection deaf to its next request."""

    async def main() -> None:
        up, shadow = App("up"), App("shadow")
        await up.start("127.0.0.1", 0)
        await shadow.start("127.0.0.1", 0)
        server = Server(load_bootstrap(config_yaml=config_yaml(up=up.port, shadow=shadow.port, dead=unused_port(), early=unused_port())))
        await server.start()
        lst = server.listeners[0]
        try:
            r, w = await asyncio.open_connection("127.0.0.1", lst.port)
            w.write(get("/delay/100"))
            await asyncio.sleep(0.03)
            (dconn,) = lst.connections
            dconn.pause_reading()  # as the router does when the upstream side backs up
            await asyncio.wait_for(r.readuntil(b"delayed 100ms\n"), 10)
            w.write(get("/hostname", "Connection: close\r\n"))
            data = await asyncio.wait_for(r.read(), 3)
            w.close()
            assert data.startswith(b"HTTP/1.1 200"), data[:200]
        finally:
            await server.stop()
            await up.stop()
            await shadow.stop()

    asyncio.run(asyncio.wait_for(main(), 20))
