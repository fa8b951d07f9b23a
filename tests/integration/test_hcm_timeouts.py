"""The connection manager's request and connection timeouts, over loopback: ``request_timeout``,
``request_headers_timeout``, ``common_http_protocol_options.max_stream_duration`` and
``idle_timeout``, ``drain_timeout``. Expectations checked against Envoy 1.40 (the ``envoy``
test runs the same exchanges through the real binary):

* headers not complete in time: ``408``, body ``request header timeout``, ``connection: close``
  (``downstream_rq_header_timeout``);
* request not complete in time: ``408``, body ``request timeout``, ``connection: close``
  (``downstream_rq_timeout``);
* max stream duration: ``504`` (``408`` while the request is incomplete), body ``downstream
  duration timeout``, the connection stays (``downstream_rq_max_duration_reached``);
* idle connection: closed at once if it never carried a request, else it drains for
  ``drain_timeout`` (responses meanwhile carry ``connection: close``) and then closes
  (``downstream_cx_idle_timeout``); the idle time does not run while a request is in progress.

Both wait up to 1 s (``delayed_close_timeout``) for the client to close first after a
``connection: close`` response or a drain (the timings below allow for it).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from harness import DATE_RE, GoldenDemoApp, InProcessSluice, LoopThread, ProxyProcess, free_port

TIMEOUTS = {
    "request_timeout": "0.6s",
    "request_headers_timeout": "0.3s",
    "drain_timeout": "0.3s",
    "common_http_protocol_options": {"idle_timeout": "0.5s", "max_stream_duration": "1s"},
}


def config(app_port: int, **hcm_extra: Any) -> dict[str, Any]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "t",
        **hcm_extra,
        "route_config": {
            "virtual_hosts": [
                {"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c", "timeout": "10s"}}]}
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": app_port}}}}
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
            "clusters": [
                {
                    "name": "c",
                    "connect_timeout": "1s",
                    "type": "STATIC",
                    "load_assignment": {"cluster_name": "c", "endpoints": [{"lb_endpoints": [endpoint]}]},
                }
            ],
        },
    }


class Exchange:
    """What came back on one connection: the bytes, when the first one came, when EOF came."""

    def __init__(self, data: bytes, first: float | None, eof: float | None) -> None:
        self.text = DATE_RE.sub(r"\1<date>", data.decode("latin-1"))
        self.first = first
        self.eof = eof

    @property
    def status_line(self) -> str:
        return self.text.split("\r\n", 1)[0]

    def __repr__(self) -> str:
        return f"<Exchange first={self.first} eof={self.eof} {self.text!r}>"


def converse(port: int, steps: list[tuple[float, bytes]], wait: float) -> Exchange:
    """Send each chunk after its delay (from the previous step), then read until EOF or ``wait``."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.monotonic()
    data, first, eof = b"", None, None
    try:
        for delay, chunk in steps:
            if delay:
                time.sleep(delay)
            s.sendall(chunk)
        s.settimeout(wait)
        while True:
            c = s.recv(65536)
            if not c:
                eof = time.monotonic() - t0
                break
            if first is None:
                first = time.monotonic() - t0
            data += c
    except TimeoutError:
        pass
    finally:
        s.close()
    return Exchange(data, first, eof)


GET = b"GET /hostname HTTP/1.1\r\nHost: x\r\n\r\n"
BODY = "ServerName: up\n"


def response(status: str, body: str, close: bool, upstream: bool = False) -> str:
    if upstream:
        head = [status, "server: envoy", "date: <date>", "content-type: text/html; charset=utf-8", f"content-length: {len(body)}"]
        return "\r\n".join(head) + "\r\n"  # x-envoy-upstream-service-time follows
    head = [status, f"content-length: {len(body)}", "content-type: text/plain", "date: <date>", "server: envoy"]
    if close:
        head.append("connection: close")
    return "\r\n".join(head) + "\r\n\r\n" + body


class Proxy:
    def __init__(self, loop: LoopThread, kind: str, cfg: dict[str, Any]) -> None:
        self.kind = kind
        self.sluice: InProcessSluice | None = None
        self.proc: ProxyProcess | None = None
        if kind == "sluice":
            self.sluice = InProcessSluice(loop, yaml.safe_dump(cfg, sort_keys=False))
            self.port = self.sluice.port
        else:
            self.proc = ProxyProcess("envoy", cfg).start()
            self.port = self.proc.port
        # Both wait up to delayed_close_timeout (1 s) for the client to close.
        self.close_slack = 1.0

    def stat(self, name: str) -> int:
        if self.sluice is not None:
            return self.sluice.stat(f"http.t.{name}")
        assert self.proc is not None
        return self.proc.stats().get(f"http.t.{name}", 0)

    def stop(self) -> None:
        if self.sluice is not None:
            self.sluice.stop()
        if self.proc is not None:
            self.proc.stop()


@pytest.fixture(scope="module")
def app(loop: LoopThread) -> Iterator[GoldenDemoApp]:
    app = GoldenDemoApp("up")
    loop.run(app.start("127.0.0.1", 0))
    yield app
    loop.run(app.stop())


def near(value: float | None, expected: float, slack: float = 0.0) -> bool:
    return value is not None and expected - 0.05 <= value <= expected + slack + 0.5


def run_timeout_cases(proxy: Proxy) -> None:
    """Each behaviour once, each on its own connection and all at once (they only wait on
    timers: run one after the other they took 12 s); every assertion holds for Envoy and
    Sluice alike."""
    slack = proxy.close_slack
    conversations = {
        "headers": [(0, b"GET /hostname HTTP/1.1\r\nHost: x\r\n")],  # request_headers_timeout
        "body": [(0, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")],  # request_timeout
        "duration": [(0, b"GET /delay/3000 HTTP/1.1\r\nHost: x\r\n\r\n")],  # max_stream_duration
        "idle": [],  # no request at all
        "idle_after": [(0, GET)],
        "draining": [(0, GET), (0.65, GET)],
        "busy": [(0, b"GET /delay/800 HTTP/1.1\r\nHost: x\r\n\r\n")],  # idle time does not run during a request
    }
    with ThreadPoolExecutor(len(conversations)) as pool:
        jobs = {name: pool.submit(converse, proxy.port, steps, 3) for name, steps in conversations.items()}
        got = {name: job.result() for name, job in jobs.items()}
    ex = got["headers"]
    assert ex.text == response("HTTP/1.1 408 Request Timeout", "request header timeout", close=True), ex
    assert near(ex.first, 0.3) and near(ex.eof, 0.3, slack), ex
    ex = got["body"]  # (headers in time, body not)
    assert ex.text == response("HTTP/1.1 408 Request Timeout", "request timeout", close=True), ex
    assert near(ex.first, 0.6) and near(ex.eof, 0.6, slack), ex
    # a request completed in time is not timed out by request_timeout; max_stream_duration answers 504
    ex = got["duration"]
    assert ex.text == response("HTTP/1.1 504 Gateway Timeout", "downstream duration timeout", close=False), ex
    assert near(ex.first, 1.0) and near(ex.eof, 1.8, slack), ex  # kept open, then idle + drain
    ex = got["idle"]  # closed at once
    assert ex.text == "" and near(ex.eof, 0.5), ex
    # idle after a request → drain_timeout, then closed; a request while draining gets connection: close
    ex = got["idle_after"]
    assert ex.text.startswith(response("HTTP/1.1 200 OK", BODY, close=False, upstream=True)), ex
    assert near(ex.eof, 0.8, slack), ex
    first, second = got["draining"].text.split(BODY)[:2]
    assert "connection: close" not in first and "connection: close\r\n" in second, got["draining"]
    ex = got["busy"]  # (0.8 s upstream delay > 0.5 s idle)
    assert ex.status_line == "HTTP/1.1 200 OK" and near(ex.first, 0.8) and near(ex.eof, 1.6, slack), ex
    assert proxy.stat("downstream_rq_header_timeout") == 1
    assert proxy.stat("downstream_rq_timeout") == 1
    assert proxy.stat("downstream_rq_max_duration_reached") == 1
    assert proxy.stat("downstream_cx_idle_timeout") >= 4


def test_hcm_timeouts(loop: LoopThread, app: GoldenDemoApp) -> None:
    proxy = Proxy(loop, "sluice", config(app.port, **TIMEOUTS))
    try:
        run_timeout_cases(proxy)
    finally:
        proxy.stop()


@pytest.mark.envoy
def test_hcm_timeouts_envoy(loop: LoopThread, app: GoldenDemoApp) -> None:
    proxy = Proxy(loop, "envoy", config(app.port, **TIMEOUTS))
    try:
        run_timeout_cases(proxy)
    finally:
        proxy.stop()


@pytest.mark.parametrize("kind", ["sluice", pytest.param("envoy", marks=pytest.mark.envoy)])
def test_max_stream_duration_before_the_request_is_complete_is_408(loop: LoopThread, app: GoldenDemoApp, kind: str) -> None:
    proxy = Proxy(loop, kind, config(app.port, common_http_protocol_options={"max_stream_duration": "0.3s"}))
    try:
        ex = converse(proxy.port, [(0, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")], 2)
        assert ex.text == response("HTTP/1.1 408 Request Timeout", "downstream duration timeout", close=True), ex
    finally:
        proxy.stop()


def test_no_timers_unless_configured(loop: LoopThread, app: GoldenDemoApp) -> None:
    """Defaults: no per-request timer for request/header timeouts or durations; idle 1 h, drain 5 s."""
    proxy = Proxy(loop, "sluice", config(app.port))
    try:
        assert proxy.sluice is not None
        hcm = proxy.sluice.server.listeners[0].hcm
        assert (hcm.request_timeout, hcm.request_headers_timeout, hcm.max_stream_duration) == (0, 0, 0)
        assert (hcm.idle_timeout, hcm.drain_timeout) == (3600.0, 5.0)
        assert not hcm.stream_timers and not hcm.begin_timers
        ex = converse(proxy.port, [(0, GET)], 0.3)
        assert ex.status_line == "HTTP/1.1 200 OK" and ex.eof is None
    finally:
        proxy.stop()


def test_connection_idle_timer_is_not_rescheduled_per_request(loop: LoopThread, app: GoldenDemoApp) -> None:
    """Hot path: the connection's idle timer is armed once; requests only stamp a time."""
    from sluice.http.conn_manager import ConnectionManager as DownstreamConnection

    proxy = Proxy(loop, "sluice", config(app.port))
    try:
        assert proxy.sluice is not None
        hcm = proxy.sluice.server.listeners[0].hcm
        real = hcm.call_later
        armed: list[str] = []

        def counting(delay: float, fn: Any) -> Any:
            owner = getattr(fn, "__self__", None)
            if isinstance(owner, DownstreamConnection):
                armed.append(fn.__name__)
            return real(delay, fn)

        hcm.call_later = counting
        ex = converse(proxy.port, [(0, GET * 20)], 0.5)
        assert ex.text.count("HTTP/1.1 200 OK") == 20
        assert armed == ["_on_idle_check"]
    finally:
        proxy.stop()
