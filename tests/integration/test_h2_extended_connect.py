"""Differential: WebSocket over HTTP/2 (extended CONNECT, RFC 8441; ``http2_protocol_options``
``allow_connect``) through the real Envoy and Sluice, in front of test_websocket.py's echo
upstream (HTTP/1.1).

Envoy turns ``CONNECT`` + ``:protocol websocket`` into an HTTP/1.1 ``GET`` upgrade upstream; the
upstream's ``101`` comes back as ``:status 200`` without ``upgrade``/``connection``, and the
tunnel's bytes are the stream's DATA; the upstream closing the tunnel resets the stream with
CONNECT_ERROR; a refused or unswitched upgrade is an ordinary answer. Without ``allow_connect``
a ``:protocol`` request is malformed. Per case: the client's view of its stream, the exact
bytes the upstream got (``x-request-id`` masked), whether it saw the end, and the stats."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from h2_peer import H2Peer
from harness import UUID_RE, LoopThread, ProxyProcess, stats_delta, wait_until
from test_websocket import TEXT, EchoUpstream, client_frame, config

pytestmark = pytest.mark.envoy

STATS = [
    f"http.{p}.{n}"
    for p in ("ws", "plain")
    for n in (
        "downstream_rq_1xx",
        "downstream_rq_2xx",
        "downstream_rq_4xx",
        "downstream_rq_completed",
        "downstream_rq_rx_reset",
        "downstream_rq_tx_reset",
        "downstream_cx_upgrades_total",
        "downstream_rq_response_before_rq_complete",
        "downstream_rq_ws_on_non_ws_route",
        "downstream_cx_http2_total",
        "downstream_cx_drain_close",
    )
] + ["http2.tx_reset", "http2.rx_reset", "http2.rx_messaging_error", "cluster.app.upstream_rq_total", "cluster.app.upstream_cx_total"]


def _config(app_port: int) -> dict[str, Any]:
    cfg = config(app_port)
    for lst in cfg["static_resources"]["listeners"]:
        lst["filter_chains"][0]["filters"][0]["typed_config"]["http2_protocol_options"] = {"allow_connect": True}
    return cfg


@pytest.fixture(scope="module")
def sides(loop: LoopThread) -> Iterator[dict[str, tuple[ProxyProcess, EchoUpstream]]]:
    out: dict[str, tuple[ProxyProcess, EchoUpstream]] = {}
    try:
        for kind in ("envoy", "sluice"):
            upstream = EchoUpstream(loop)
            out[kind] = (ProxyProcess(kind, _config(upstream.port)).start(), upstream)
        yield out
    finally:
        for proxy, upstream in out.values():
            proxy.stop()
            upstream.stop()


def _connect(path: str) -> Callable[[H2Peer], int]:
    def run(p: H2Peer) -> int:
        p.handshake()
        sid = p.request("CONNECT", path, headers=[(":protocol", "websocket"), ("sec-websocket-version", "13")], end_stream=False)
        p.collect()
        return sid

    return run


def _echo_then_end(p: H2Peer) -> int:
    sid = _connect("/chat")(p)
    p.data(sid, client_frame(TEXT, b"hi"), end_stream=True)  # the client half-closes its side
    p.collect()
    return sid


CASES: dict[str, tuple[int, Callable[[H2Peer], int]]] = {
    "echo-then-client-ends": (0, _echo_then_end),
    "upstream-closes-the-tunnel": (0, _connect("/bye")),
    "upstream-answers-404": (0, _connect("/status/404")),
    "route-disables-websocket": (0, _connect("/nows")),
    "listener-without-upgrade-configs": (1, _connect("/chat")),
    "route-enables-it-on-a-plain-listener": (1, _connect("/onlyroute")),
}


def _observe(proxy: ProxyProcess, upstream: EchoUpstream, listener: int, script: Callable[[H2Peer], int]) -> dict[str, Any]:
    before = proxy.stats()
    mark = len(upstream.conns)
    with H2Peer(proxy.listener_ports[listener]) as peer:
        script(peer)
        view = peer.view()
    wait_until(lambda: proxy.stats().get("http.ws.downstream_cx_active", 0) + proxy.stats().get("http.plain.downstream_cx_active", 0) == 0, timeout=5.0)
    time.sleep(0.1)  # (the upstream's end arrives after the downstream's)
    conns = upstream.conns[mark:]
    return {
        "view": view,
        "upstream": UUID_RE.sub("<uuid>", b"".join(c.data for c in conns).decode("latin-1")),
        "upstream_eof": [c.eof for c in conns],
        "stats": stats_delta(before, proxy.stats(), STATS),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_extended_connect_same_as_envoy(sides: dict[str, tuple[ProxyProcess, EchoUpstream]], case: str) -> None:
    listener, script = CASES[case]
    with ThreadPoolExecutor(2) as pool:  # (both proxies at once: each waits out quiet periods)
        futures = {kind: pool.submit(_observe, proxy, upstream, listener, script) for kind, (proxy, upstream) in sides.items()}
        seen = {kind: f.result() for kind, f in futures.items()}
    assert seen["sluice"]["stats"] == seen["envoy"]["stats"]
    assert seen["sluice"] == seen["envoy"]
    if case == "echo-then-client-ends":  # (the premise, from Envoy: a tunnel as DATA frames)
        stream = seen["envoy"]["view"]["streams"][1]
        assert stream["headers"][0] == (":status", "200") and stream["body"] == b"\x81\x02hi"
