"""Differential with real gRPC peers: a ``grpcio`` client and a ``grpcio`` server, the real Envoy
and Sluice between them on the same config (HTTP/2 both ways: listener ``codec_type`` AUTO, the
clusters' ``HttpProtocolOptions`` ``explicit_http_config.http2_protocol_options``, one cluster
with the legacy ``http2_protocol_options``; the fault filter and a retry policy on some routes).

The server (:class:`Backend`, generic handlers with bytes in and out, no protoc) serves
``test.Probe``: unary echo (the request back, the client's ``x-client-*`` metadata echoed as
initial metadata, trailing metadata with a binary value), server streaming, client streaming,
bidi echo, an abort with a chosen status, details and trailing metadata, a slow method (for a
client deadline), a method that answers UNAVAILABLE once per key (for ``retry_on:
unavailable``). Each proxy has its own server, so a case runs through Envoy and Sluice at once.

A case (:data:`CASES`) runs on a fresh channel per proxy (its own subchannel pool, so its own
connection) and yields the client's view: messages, status code, details, initial and trailing
metadata (``date`` and ``x-envoy-upstream-service-time`` values masked, their presence kept),
the metadata each upstream call received (``x-request-id`` and ``grpc-timeout`` values masked),
and the deltas of :data:`STATS` from the admin ``/stats`` taken when the proxy is idle. Envoy's
view is checked against what the case expects (so the Envoy side can fail), then Sluice's must
equal it. The hosts' ``rq_success``/``rq_error``/``rq_timeout`` from ``/clusters`` are compared too.
"""

from __future__ import annotations

import pprint
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc  # the test extra's grpcio: a missing one fails the module, never skips it
import pytest
from h2_peer import H2Peer
from harness import ROUTER_TYPED_CONFIG, ProxyProcess, free_port, http, quiesce, wait_until

pytestmark = pytest.mark.envoy

KINDS = ("envoy", "sluice")
SERVICE = "test.Probe"
HPO = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
MIB = 1024 * 1024
RPC_TIMEOUT = 20.0
"""Every RPC's deadline except the deadline case's: a hung case fails instead of hanging. (It
sends a ``grpc-timeout`` the proxies pass on; no route here reads it.)"""

Metadata = list[tuple[str, str | bytes]]


# ------------------------------------------------------------------------------------------
# the gRPC server
# ------------------------------------------------------------------------------------------
class Backend:
    """A grpcio server on 127.0.0.1 with the ``test.Probe`` methods (bytes in, bytes out).

    ``seen``: (method, metadata) of every call, in arrival order; ``cancelled``: methods whose
    call the server saw cancelled (the proxy reset the upstream stream)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[tuple[str, Metadata]] = []
        self.cancelled: list[str] = []
        self._flaky: Counter[str] = Counter()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=64), options=[("grpc.max_receive_message_length", 8 * MIB)])
        u, ss, cs, bidi = (
            grpc.unary_unary_rpc_method_handler,
            grpc.unary_stream_rpc_method_handler,
            grpc.stream_unary_rpc_method_handler,
            grpc.stream_stream_rpc_method_handler,
        )
        handlers = {
            "Unary": u(self._unary),
            "ServerStream": ss(self._server_stream),
            "ClientStream": cs(self._client_stream),
            "Bidi": bidi(self._bidi),
            "Abort": u(self._abort),
            "StreamAbort": ss(self._stream_abort),
            "Slow": u(self._slow),
            "Flaky": u(self._flaky_call),
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()
            self.cancelled.clear()

    def _record(self, method: str, context: Any) -> dict[str, str | bytes]:
        md = list(context.invocation_metadata())
        with self._lock:
            self.seen.append((method, md))
        return dict(md)

    def _unary(self, request: bytes, context: Any) -> bytes:
        md = self._record("Unary", context)
        echo = [(f"x-echo-{k[len('x-client-') :]}", v) for k, v in md.items() if k.startswith("x-client-")]
        context.send_initial_metadata([("x-initial", "unary"), *echo])
        context.set_trailing_metadata([("x-trailer", "unary"), ("x-trailer-bin", b"\x00\xffbin")])
        return request

    def _server_stream(self, request: bytes, context: Any) -> Iterator[bytes]:
        self._record("ServerStream", context)
        count, size = (int(x) for x in request.split(b","))
        context.set_trailing_metadata([("x-sent", str(count))])
        for i in range(count):
            yield bytes([i % 256]) * size

    def _client_stream(self, requests: Iterator[bytes], context: Any) -> bytes:
        self._record("ClientStream", context)
        sizes = [len(m) for m in requests]
        return f"{len(sizes)} messages, {sum(sizes)} bytes".encode()

    def _bidi(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        self._record("Bidi", context)
        for m in requests:
            yield m[::-1]

    def _abort(self, request: bytes, context: Any) -> bytes:
        self._record("Abort", context)
        code, details = request.decode().split("|", 1)
        context.set_trailing_metadata([("x-why", "asked"), ("x-why-bin", b"\x01\x02")])
        context.abort(grpc.StatusCode[code], details)
        raise AssertionError("abort returns only by raising")

    def _stream_abort(self, request: bytes, context: Any) -> Iterator[bytes]:
        """Messages, then a non-OK status in the trailers (after the DATA, not trailers-only)."""
        self._record("StreamAbort", context)
        n = int(request)
        for i in range(n):
            yield b"m%d" % i
        context.set_trailing_metadata([("x-after", str(n))])
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"quota spent after {n}")

    def _slow(self, request: bytes, context: Any) -> bytes:
        self._record("Slow", context)
        done = threading.Event()
        context.add_callback(done.set)  # called when the RPC ends, a cancel included
        if done.wait(float(request.decode())) and not context.is_active():
            with self._lock:
                self.cancelled.append("Slow")
        return b"late"

    def _flaky_call(self, request: bytes, context: Any) -> bytes:
        md = self._record("Flaky", context)
        key = str(md.get("x-key", ""))
        with self._lock:
            self._flaky[key] += 1
            n = self._flaky[key]
        if n == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return f"ok on call {n}".encode()


# ------------------------------------------------------------------------------------------
# config: one listener, the gRPC clusters
# ------------------------------------------------------------------------------------------
def _cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "connect_timeout": "1s",
        "type": "STATIC",
        "typed_extension_protocol_options": {
            HPO: {"@type": f"type.googleapis.com/{HPO}", "explicit_http_config": {"http2_protocol_options": {}}}
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def _legacy_cluster(name: str, port: int) -> dict[str, Any]:
    """HTTP/2 upstream through the cluster's own (deprecated) ``http2_protocol_options``."""
    cluster = _cluster(name, port)
    del cluster["typed_extension_protocol_options"]
    cluster["http2_protocol_options"] = {}
    return cluster


def make_config(backend_port: int, dead_port: int) -> dict[str, Any]:
    """Routes: ``/test.Faulty/`` to ``grpc_fault`` (the fault filter aborts every request for
    that cluster with grpc_status 14), ``/test.Legacy/`` to ``grpc_legacy`` (HTTP/2 by the
    cluster's legacy field), ``/test.Down/`` to a port nobody listens on, ``Flaky``
    with ``retry_on: unavailable``, ``Slow`` without the client's ``grpc-timeout`` (so only the
    client's deadline ends it, not the server's), the rest to ``grpc``."""
    probe = f"/{SERVICE}/"
    routes = [
        {"match": {"prefix": "/test.Faulty/"}, "route": {"cluster": "grpc_fault", "prefix_rewrite": probe}},
        {"match": {"prefix": "/test.Down/"}, "route": {"cluster": "down"}},
        {"match": {"prefix": "/test.Legacy/"}, "route": {"cluster": "grpc_legacy", "prefix_rewrite": probe}},
        {
            "match": {"path": f"{probe}Flaky"},
            "route": {"cluster": "grpc", "retry_policy": {"retry_on": "unavailable", "num_retries": 2}},
        },
        {"match": {"path": f"{probe}Slow"}, "route": {"cluster": "grpc"}, "request_headers_to_remove": ["grpc-timeout"]},
        {"match": {"prefix": "/"}, "route": {"cluster": "grpc"}},
    ]
    fault = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
        "upstream_cluster": "grpc_fault",
        "abort": {"grpc_status": 14, "percentage": {"numerator": 100, "denominator": "HUNDRED"}},
    }
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [
            {"name": "envoy.filters.http.fault", "typed_config": fault},
            {"name": "envoy.filters.http.router", "typed_config": ROUTER_TYPED_CONFIG},
        ],
    }
    listener = {
        "name": "grpc",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
        "static_resources": {
            "listeners": [listener],
            "clusters": [
                _cluster("grpc", backend_port),
                _cluster("grpc_fault", backend_port),
                _legacy_cluster("grpc_legacy", backend_port),
                _cluster("down", dead_port),
            ],
        },
    }


_HCM_STATS = [
    "downstream_cx_total",
    "downstream_cx_http2_total",
    "downstream_rq_total",
    "downstream_rq_http2_total",
    "downstream_rq_2xx",
    "downstream_rq_4xx",
    "downstream_rq_5xx",
    "downstream_rq_rx_reset",
    "downstream_rq_tx_reset",
    "fault.aborts_injected",
]
_CLUSTER_STATS = [
    "upstream_cx_total",
    "upstream_cx_http2_total",
    "upstream_cx_connect_fail",
    "upstream_rq_total",
    "upstream_rq_200",
    "upstream_rq_2xx",
    "upstream_rq_503",
    "upstream_rq_5xx",
    "upstream_rq_rx_reset",
    "upstream_rq_tx_reset",
    "upstream_rq_cancelled",
    "upstream_rq_retry",
    "upstream_rq_retry_success",
    "upstream_rq_retry_limit_exceeded",
]
_CODEC_STATS = ["http2.rx_reset", "http2.tx_reset", "http2.trailers", "http2.rx_messaging_error", "http2.stream_refused_errors"]
"""Envoy's HTTP/2 codec stats (one set for the downstream and the upstream codecs)."""
STATS = (
    _CODEC_STATS
    + [f"http.ingress.{n}" for n in _HCM_STATS]
    + [f"cluster.{c}.{n}" for c in ("grpc", "grpc_fault", "grpc_legacy", "down") for n in _CLUSTER_STATS]
)
"""The stats compared per case (their deltas; a stat a proxy does not have counts 0)."""


# ------------------------------------------------------------------------------------------
# the two proxies
# ------------------------------------------------------------------------------------------
@dataclass
class Side:
    kind: str
    backend: Backend
    proxy: ProxyProcess


@dataclass
class Pair:
    sides: dict[str, Side] = field(default_factory=dict)
    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Per case name, the observations (a case runs once per module, whichever test asks)."""

    def run(self, case: Case) -> dict[str, dict[str, Any]]:
        """The case through Envoy and Sluice at once: kind → observation."""
        if case.name not in self.results:
            with ThreadPoolExecutor(len(self.sides)) as pool:
                futures = {kind: pool.submit(_observe, side, case) for kind, side in self.sides.items()}
                self.results[case.name] = {kind: f.result(timeout=60) for kind, f in futures.items()}
        return self.results[case.name]


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    dead = free_port()  # nobody listens there
    backends = {kind: Backend() for kind in KINDS}
    procs = {kind: ProxyProcess(kind, make_config(backends[kind].port, dead)) for kind in KINDS}
    try:
        # Started from this thread, one after the other: the harness's PR_SET_PDEATHSIG ties a
        # proxy's life to the thread that forked it, so a pool thread's exit would end it.
        for p in procs.values():
            p.start()
        yield Pair({kind: Side(kind, backends[kind], procs[kind]) for kind in KINDS})
    finally:
        for p in procs.values():
            p.stop()
        for b in backends.values():
            b.stop()


# ------------------------------------------------------------------------------------------
# observing one case
# ------------------------------------------------------------------------------------------
_MASKED = frozenset({"date", "x-envoy-upstream-service-time", "x-request-id", "grpc-timeout"})
_ROUTE_TIMEOUT_MS = 15000
"""The route's default timeout: ``x-envoy-expected-rq-timeout-ms`` on a first attempt; a retry
carries what is left of it, in whole ms after a jittered back-off (0 to 25 ms): 15000 or a
little less, by luck, in either proxy. Values up to it compare equal."""


def norm_md(md: Any) -> list[tuple[str, str]]:
    """Metadata in order, volatile values masked (presence kept), binary values as repr."""
    out = []
    for k, v in md or ():
        if k in _MASKED:
            v = "<masked>"
        elif k == "x-envoy-expected-rq-timeout-ms" and isinstance(v, str) and v.isdigit() and int(v) <= _ROUTE_TIMEOUT_MS:
            v = f"<={_ROUTE_TIMEOUT_MS}"
        out.append((k, v if isinstance(v, str) else repr(v)))
    return out


def call_view(call: Any, messages: list[bytes] | None = None) -> dict[str, Any]:
    """What the client saw of one call (``grpc.Call`` or the ``RpcError`` that is one)."""
    return {
        "code": call.code().name,
        "details": call.details(),
        "initial": norm_md(call.initial_metadata()),
        "trailing": norm_md(call.trailing_metadata()),
        "messages": messages,
    }


def unary(ch: Any, method: str, request: bytes, metadata: Metadata | None = None, timeout: float = RPC_TIMEOUT) -> dict[str, Any]:
    try:
        response, call = ch.unary_unary(method).with_call(request, metadata=metadata or [], timeout=timeout)
    except grpc.RpcError as e:
        return call_view(e)
    return call_view(call, [response])


def streamed(call: Any) -> dict[str, Any]:
    """Drain a response stream (the call is its iterator), then its view."""
    messages: list[bytes] = []
    try:
        messages.extend(call)
    except grpc.RpcError:
        pass
    return call_view(call, messages)


def summarise(view: dict[str, Any]) -> dict[str, Any]:
    """Large messages compared by size and a cheap digest, not printed whole on a failure."""
    if view.get("messages"):
        view["messages"] = [m if len(m) <= 64 else (len(m), m[:8], m[-8:], sum(m[::997])) for m in view["messages"]]
    return view


@dataclass
class Case:
    name: str
    run: Callable[[Any, Side], Any]
    expect: Callable[[dict[str, Any]], None] = lambda _obs: None
    """Checks on Envoy's observation (so the Envoy side of the case can fail too)."""
    after: Callable[[Side], object] | None = None
    """Waits (boundedly) for what the case leaves behind at the server before stats are read."""


def _channel(proxy: ProxyProcess) -> Any:
    # Its own subchannel pool: grpcio otherwise shares one connection among equal channels.
    return grpc.insecure_channel(
        f"127.0.0.1:{proxy.port}",
        options=[("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 8 * MIB)],
    )


def host_stats(proxy: ProxyProcess) -> Counter[str]:
    """Each cluster's hosts' ``rq_success`` / ``rq_error`` / ``rq_timeout`` from ``/clusters``
    (summed per cluster: the two proxies' hosts have different addresses)."""
    out: Counter[str] = Counter()
    for line in http(proxy.admin_port, "GET", "/clusters").body.decode().splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[2] in ("rq_success", "rq_error", "rq_timeout"):
            out[f"{parts[0]}::{parts[2]}"] += int(parts[3])
    return out


def _observe(side: Side, case: Case) -> dict[str, Any]:
    side.backend.clear()
    before = quiesce(side.proxy)
    hosts_before = host_stats(side.proxy)
    with _channel(side.proxy) as ch:
        client = case.run(ch, side)
    if case.after is not None:
        case.after(side)
    after = quiesce(side.proxy)
    hosts = host_stats(side.proxy)
    hosts.subtract(hosts_before)
    stats = {n: after.get(n, 0) - before.get(n, 0) for n in STATS}
    stats |= {f"host:{k}": v for k, v in hosts.items() if v}
    seen = sorted((m, norm_md(md)) for m, md in side.backend.seen)
    return {"client": client, "upstream": seen, "cancelled": list(side.backend.cancelled), "stats": {k: v for k, v in stats.items() if v}}


# ------------------------------------------------------------------------------------------
# the cases
# ------------------------------------------------------------------------------------------
M = f"/{SERVICE}/"


def _unary_echo(ch: Any, side: Side) -> Any:
    return unary(ch, M + "Unary", b"hello grpc", [("x-client-a", "1"), ("x-client-b-bin", b"\x00\x01"), ("x-other", "kept")])


def _expect_unary(obs: dict[str, Any]) -> None:
    c = obs["client"]
    assert c["code"] == "OK" and c["messages"] == [b"hello grpc"], c
    assert ("x-echo-a", "1") in c["initial"] and ("x-echo-b-bin", repr(b"\x00\x01")) in c["initial"], c
    assert c["trailing"] == [("x-trailer", "unary"), ("x-trailer-bin", repr(b"\x00\xffbin"))], c
    assert obs["stats"]["cluster.grpc.upstream_rq_200"] == 1 and obs["stats"]["http.ingress.downstream_rq_2xx"] == 1, obs


def _server_stream(ch: Any, side: Side) -> Any:
    out = streamed(ch.unary_stream(M + "ServerStream")(b"5,1000", timeout=RPC_TIMEOUT))
    assert out["messages"] == [bytes([i]) * 1000 for i in range(5)], "the stream came back changed"
    return summarise(out)


def _expect_server_stream(obs: dict[str, Any]) -> None:
    c = obs["client"]
    assert c["code"] == "OK" and len(c["messages"]) == 5 and c["trailing"] == [("x-sent", "5")], c


def _stream_abort(ch: Any, side: Side) -> Any:
    return streamed(ch.unary_stream(M + "StreamAbort")(b"3", timeout=RPC_TIMEOUT))


def _expect_stream_abort(obs: dict[str, Any]) -> None:
    c = obs["client"]
    assert c["code"] == "RESOURCE_EXHAUSTED" and c["details"] == "quota spent after 3" and c["messages"] == [b"m0", b"m1", b"m2"], c
    assert ("x-after", "3") in c["trailing"], c


def _client_stream(ch: Any, side: Side) -> Any:
    response, call = ch.stream_unary(M + "ClientStream").with_call(iter([b"a" * 10, b"b" * 300, b"", b"c" * 70000]), timeout=RPC_TIMEOUT)
    return call_view(call, [response])


def _expect_client_stream(obs: dict[str, Any]) -> None:
    c = obs["client"]
    assert c["code"] == "OK" and c["messages"] == [b"4 messages, 70310 bytes"], c


def _legacy(ch: Any, side: Side) -> Any:
    return unary(ch, "/test.Legacy/Unary", b"over the legacy option", [("x-client-l", "yes")])


def _expect_legacy(obs: dict[str, Any]) -> None:
    c = obs["client"]
    assert c["code"] == "OK" and c["messages"] == [b"over the legacy option"] and ("x-echo-l", "yes") in c["initial"], c
    assert obs["stats"]["cluster.grpc_legacy.upstream_cx_http2_total"] == 1, obs


def _bidi(ch: Any, side: Side) -> Any:
    """Each message is written only after the previous answer arrived: a real ping-pong, so
    the proxy must forward each DATA frame as it comes, not at the end of the stream."""
    ready = threading.Semaphore(0)
    words = [b"one", b"two", b"three" * 100_000, b"four"]  # the third is 500 kB: windows both ways

    def requests() -> Iterator[bytes]:
        for w in words:
            yield w
            if not ready.acquire(timeout=RPC_TIMEOUT):
                return

    call = ch.stream_stream(M + "Bidi")(requests(), timeout=RPC_TIMEOUT)
    messages = []
    try:
        for m in call:
            messages.append(m)
            ready.release()
    except grpc.RpcError:
        pass
    return summarise(call_view(call, messages))


def _expect_bidi(obs: dict[str, Any]) -> None:
    c = obs["client"]
    assert c["code"] == "OK" and len(c["messages"]) == 4 and c["messages"][0] == b"eno" and c["messages"][3] == b"ruof", c


def _abort(ch: Any, side: Side) -> Any:
    return unary(ch, M + "Abort", "PERMISSION_DENIED|no entry: 50% ~ caf\u00e9".encode())


def _expect_abort(obs: dict[str, Any]) -> None:
    c = obs["client"]
    assert c["code"] == "PERMISSION_DENIED" and c["details"] == "no entry: 50% ~ caf\u00e9", c
    assert ("x-why", "asked") in c["trailing"] and ("x-why-bin", repr(b"\x01\x02")) in c["trailing"], c


def _expect_host_error(obs: dict[str, Any]) -> None:
    assert obs["client"]["code"] in ("UNAVAILABLE", "INTERNAL"), obs["client"]
    assert obs["stats"].get("host:grpc::rq_error") == 1 and "host:grpc::rq_success" not in obs["stats"], obs["stats"]


def _large(ch: Any, side: Side) -> Any:
    payload = bytes(range(256)) * (4 * 1024) + b"tail"  # 1 MiB + 4 bytes
    out = unary(ch, M + "Unary", payload)
    assert out["messages"] in (None, [payload]), "the echo came back changed"
    streamed_out = streamed(ch.unary_stream(M + "ServerStream")(b"3,%d" % MIB, timeout=RPC_TIMEOUT))
    return {"unary": summarise(out), "stream": summarise(streamed_out)}


def _expect_large(obs: dict[str, Any]) -> None:
    c = obs["client"]
    assert c["unary"]["code"] == "OK" and c["unary"]["messages"][0][0] == MIB + 4, c
    assert c["stream"]["code"] == "OK" and [m[0] for m in c["stream"]["messages"]] == [MIB] * 3, c


def _deadline(ch: Any, side: Side) -> Any:
    return unary(ch, M + "Slow", b"10", timeout=0.5)


def _deadline_after(side: Side) -> None:
    # The proxy's reset reaches the server soon after the client's RST_STREAM.
    wait_until(lambda: bool(side.backend.cancelled), timeout=5)


def _expect_deadline(obs: dict[str, Any]) -> None:
    assert obs["client"]["code"] == "DEADLINE_EXCEEDED", obs
    assert obs["cancelled"] == ["Slow"], obs
    assert obs["stats"].get("http.ingress.downstream_rq_rx_reset") == 1, obs


def _fault(ch: Any, side: Side) -> Any:
    return unary(ch, "/test.Faulty/Unary", b"never arrives")


def _expect_fault(obs: dict[str, Any]) -> None:
    c = obs["client"]
    assert c["code"] == "UNAVAILABLE" and c["details"] == "fault filter abort", c
    assert obs["upstream"] == [] and obs["stats"]["http.ingress.fault.aborts_injected"] == 1, obs


def _retry(ch: Any, side: Side) -> Any:
    return unary(ch, M + "Flaky", b"x", [("x-key", "retry-1")])


def _expect_retry(obs: dict[str, Any]) -> None:
    c = obs["client"]
    assert c["code"] == "OK" and c["messages"] == [b"ok on call 2"], c
    assert [m for m, _ in obs["upstream"]] == ["Flaky", "Flaky"], obs
    assert obs["stats"]["cluster.grpc.upstream_rq_retry"] == 1, obs


def _down(ch: Any, side: Side) -> Any:
    return unary(ch, "/test.Down/Unary", b"x")


def _expect_down(obs: dict[str, Any]) -> None:
    c = obs["client"]
    assert c["code"] == "UNAVAILABLE" and c["details"].startswith("upstream connect error or disconnect/reset before headers."), c


CONCURRENT = 50


def _concurrent(ch: Any, side: Side) -> Any:
    stub = ch.unary_unary(M + "Unary")
    futures = [stub.future(b"rpc %d" % i, metadata=[("x-client-n", str(i))], timeout=RPC_TIMEOUT) for i in range(CONCURRENT)]
    views = []
    for f in futures:
        try:
            views.append(call_view(f, [f.result()]))
        except grpc.RpcError as e:
            views.append(call_view(e))
    return views


def _expect_concurrent(obs: dict[str, Any]) -> None:
    views = obs["client"]
    assert [v["messages"] for v in views] == [[b"rpc %d" % i] for i in range(CONCURRENT)], views
    assert all(("x-echo-n", str(i)) in v["initial"] for i, v in enumerate(views)), views
    assert (
        obs["stats"]["http.ingress.downstream_rq_2xx"] == CONCURRENT and obs["stats"].get("http.ingress.downstream_cx_http2_total") == 1
    ), obs


CASES = [
    Case("unary-echo", _unary_echo, _expect_unary),
    Case("server-stream", _server_stream, _expect_server_stream),
    Case("client-stream", _client_stream, _expect_client_stream),
    Case("legacy-cluster-http2-options", _legacy, _expect_legacy),
    Case("bidi-ping-pong", _bidi, _expect_bidi),
    Case("abort-status-details-trailers", _abort, _expect_abort),
    # A status that maps to a 5xx makes the host's request an error (rq_error), as Envoy's
    # handleNon5xxResponseHeaders has it; one in the trailers after messages: onUpstreamTrailers.
    Case("abort-unavailable", lambda ch, side: unary(ch, M + "Abort", b"UNAVAILABLE|down"), _expect_host_error),
    Case("abort-internal", lambda ch, side: unary(ch, M + "Abort", b"INTERNAL|broken"), _expect_host_error),
    Case("stream-then-abort", _stream_abort, _expect_stream_abort),
    Case("large-messages", _large, _expect_large),
    Case("client-deadline", _deadline, _expect_deadline, after=_deadline_after),
    # (http2.tx_reset 0 on both: grpcio writes HEADERS and DATA at once, so the request has ended
    # when the deferred doEndStream reset would go; test_fault_abort_before_the_request_body_frames
    # sends the DATA later.)
    Case("fault-abort-grpc-status", _fault, _expect_fault),
    Case("retry-on-unavailable", _retry, _expect_retry),
    Case("upstream-down", _down, _expect_down),
    Case("concurrent-rpcs", _concurrent, _expect_concurrent),
]



def _assert_same(name: str, envoy: dict[str, Any], sluice: dict[str, Any]) -> None:
    differing = {k: {"envoy": envoy[k], "sluice": sluice.get(k)} for k in envoy if sluice.get(k) != envoy[k]}
    assert not differing, f"{name}: Sluice differs from Envoy:\n{pprint.pformat(differing, width=140)}"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_grpc_same_as_envoy(pair: Pair, case: Case) -> None:
    got = pair.run(case)
    case.expect(got["envoy"])
    _assert_same(case.name, got["envoy"], got["sluice"])


def _raw_fault_abort(pair: Pair, one_write: bool) -> dict[str, dict[str, Any]]:
    """The fault-aborted gRPC request on raw frames through each proxy: its DATA(END_STREAM) in
    the same write as the HEADERS (``one_write``), or only after the proxy's RST_STREAM came."""
    views = {}
    pseudo = [(":method", "POST"), (":scheme", "http"), (":authority", "grpc.test"), (":path", "/test.Faulty/Unary")]
    for kind, side in pair.sides.items():
        before = quiesce(side.proxy)
        with H2Peer(side.proxy.port) as peer:
            peer.handshake()
            sid = peer.new_id()
            out: list[bytes] = []
            real_send = peer.send
            if one_write:
                peer.send = out.append  # type: ignore[method-assign]
            peer.headers(sid, [*pseudo, ("content-type", "application/grpc"), ("te", "trailers")])
            if not one_write:
                peer.collect(until=lambda p: any(e[0] == "rst" for e in p.events), timeout=5)
            peer.data(sid, b"\x00\x00\x00\x00\x02hi", end_stream=True)
            if one_write:
                peer.send = real_send  # type: ignore[method-assign]
                peer.send(b"".join(out))
            peer.collect(timeout=2)
            frames = [e for e in peer.events if e[0] in ("headers", "data", "rst", "goaway")]
        after = quiesce(side.proxy)
        views[kind] = {
            "frames": frames,
            "stats": {n: after.get(n, 0) - before.get(n, 0) for n in STATS if after.get(n, 0) != before.get(n, 0)},
        }
    return views


def test_fault_abort_before_the_request_body_frames(pair: Pair) -> None:
    """The same fault abort on raw frames, the request's DATA sent only after the answer came:
    Envoy answers trailers-only, then RST_STREAM(NO_ERROR), and ignores the late DATA (no
    RST_STREAM(STREAM_CLOSED): codec/http2_frames.ServerConnection)."""
    views = _raw_fault_abort(pair, one_write=False)
    assert views["envoy"]["frames"][-1] == ("rst", 1, "NO_ERROR") and views["envoy"]["stats"]["http.ingress.downstream_rq_rx_reset"] == 1, (
        views
    )
    assert views["sluice"] == views["envoy"]


def test_fault_abort_with_the_request_body_in_the_same_write(pair: Pair) -> None:
    """The request's HEADERS and its DATA(END_STREAM) in one write: the fault abort's answer
    ends the stream, and the deferred doEndStream reset finds the request ended, so neither proxy
    sends a RST_STREAM (http2.tx_reset 0), while both count the reset (downstream_rq_rx_reset)."""
    views = _raw_fault_abort(pair, one_write=True)
    envoy = views["envoy"]
    assert not any(f[0] == "rst" for f in envoy["frames"]) and envoy["stats"].get("http2.tx_reset", 0) == 0, views
    assert views["sluice"] == envoy
