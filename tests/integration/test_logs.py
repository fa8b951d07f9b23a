"""What ``python -m sluice`` says on stderr: Envoy's info lines from start to exit, nothing per
request at info, and with ``-l debug`` (or after ``/logging?level=debug``) each request's route,
cluster, upstream host and, for a dead upstream, its response flags."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import InProcessSluice, LoopThread, free_port, http, wait_until

from sluice.lab.apps.demoapp import App

LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\]\[\d+\]\[(\w+)\]\[([\w.]+)\] \[[\w/.]+:\d+\] (.*)$")


def config(listen: int, admin: int, live: int, dead: int) -> str:
    endpoint = "{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}"
    return f"""
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - name: front
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
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
              - {{match: {{prefix: "/dead"}}, route: {{cluster: gone}}}}
              - {{match: {{prefix: "/empty"}}, route: {{cluster: empty}}}}
              - {{match: {{prefix: "/"}}, route: {{cluster: app}}}}
          http_filters: [{{name: envoy.filters.http.router}}]
  clusters:
  - name: app
    connect_timeout: 1s
    load_assignment: {{cluster_name: app, endpoints: [{endpoint.format(live)}]}}
  - name: gone
    connect_timeout: 1s
    load_assignment: {{cluster_name: gone, endpoints: [{endpoint.format(dead)}]}}
  - name: empty
    connect_timeout: 1s
    load_assignment: {{cluster_name: empty}}
"""


class Proxy:
    """``python -m sluice`` with stderr in a file, read while it runs and after it exits."""

    def __init__(self, tmp: Path, upstream: int, dead: int, *flags: str) -> None:
        self.dead = dead
        self.log_path = tmp / "stderr.log"
        for attempt in range(3):
            # (free_port's port can be taken by another process before the proxy binds it:
            # then new ports, as ProxyProcess does)
            self.port, self.admin = free_port(), free_port()
            cfg = tmp / "envoy.yaml"
            cfg.write_text(config(self.port, self.admin, upstream, dead))
            with self.log_path.open("wb") as err:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "sluice", "-c", str(cfg), *flags],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    env=dict(os.environ),
                )
            ready = wait_until(lambda: "starting main dispatch loop" in self.text() or self.proc.poll() is not None, 30)
            if self.proc.poll() is not None and "address already in use" in self.text() and attempt < 2:
                continue
            break
        assert ready and self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(20) == 0, self.text()
        return self.text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def records(text: str) -> list[tuple[str, str, str]]:
    """(level, logger, message first line) of every log line; header rows are not records."""
    return [(m[1], m[2], m[3]) for m in map(LINE.match, text.splitlines()) if m]


@pytest.fixture
def upstream(loop: LoopThread) -> Iterator[int]:
    app = App("up")
    loop.run(app.start("127.0.0.1", 0))
    yield app.port
    loop.run(app.stop())


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused, and nobody else can take it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def test_info_says_what_envoy_says_and_nothing_per_request(tmp_path: Path, upstream: int, dead_port: int) -> None:
    proxy = Proxy(tmp_path, upstream, dead_port)
    try:
        assert http(proxy.port, "GET", "/first").status == 200
        assert http(proxy.port, "GET", "/dead").status == 503
        text = proxy.stop()
    finally:
        proxy.kill()
    recs = records(text)
    assert [lvl for lvl, _, _ in recs if lvl not in ("info", "warning")] == [], text
    said = [(logger, msg) for _, logger, msg in recs]
    expected = [
        ("main", "initializing epoch 0 (base id=0, hot restart version=disabled)"),
        ("config", "loading 3 cluster(s)"),
        ("config", "loading 1 listener(s)"),
        ("upstream", "cm init: all clusters initialized"),
        ("main", "all clusters initialized. initializing init manager"),
        ("config", f"add active listener: name=front, address=127.0.0.1:{proxy.port}"),
        ("main", f"Starting admin HTTP server at 127.0.0.1:{proxy.admin}"),
        ("admin", f"admin address: 127.0.0.1:{proxy.admin}"),
        ("config", "all dependencies initialized. starting workers"),
        ("main", "shutting down server instance"),
        ("main", "draining listeners: 0 request(s) in flight, waiting up to 600s"),
        ("main", "main dispatch loop exited"),
        ("main", "exiting"),
    ]
    for line in expected:
        assert line in said, f"{line} missing from:\n{text}"
    assert said.index(expected[-1]) == len(said) - 1
    assert any(msg.startswith("starting main dispatch loop") for _, msg in said)
    for per_request in ("/first", "/dead", "request headers", "cluster 'app'", "Sending local reply", "stream complete"):
        assert per_request not in text, text


def test_debug_logs_each_requests_decisions(tmp_path: Path, upstream: int, dead_port: int) -> None:
    proxy = Proxy(tmp_path, upstream, dead_port, "-l", "debug")
    try:
        assert http(proxy.port, "GET", "/hello").status == 200
        assert http(proxy.port, "GET", "/dead/x").status == 503
        assert http(proxy.port, "GET", "/empty").status == 503
        text = proxy.stop()
    finally:
        proxy.kill()
    host = f"127.0.0.1:{upstream}"
    dead = f"127.0.0.1:{dead_port}"
    for line in (
        "] request headers complete (end_stream=true):\n':authority', '127.0.0.1:",
        "] cluster 'app' match for URL '/hello'",
        f"] upstream host {host}\n",
        "] router decoding headers:\n':authority', ",
        f"] pool ready: upstream host {host}\n",
        "] encoding headers via codec (end_stream=false):\n':status', '200'\n",
        f"stream complete: route '-', cluster 'app', upstream host {host}, response code 200, response flags -, details via_upstream\n",
        "] cluster 'gone' match for URL '/dead/x'",
        f"] upstream reset: reset reason: remote connection failure, upstream host {dead}\n",
        "] Sending local reply with details upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}\n",
        "] encoding headers via codec (end_stream=false):\n':status', '503'\n",
        f"stream complete: route '-', cluster 'gone', upstream host {dead}, response code 503, response flags UF, "
        "details upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}\n",
        "] cluster 'empty' match for URL '/empty'\n",
        "] Sending local reply with details no_healthy_upstream\n",
        "stream complete: route '-', cluster 'empty', upstream host -, response code 503, response flags UH, details no_healthy_upstream\n",
    ):
        assert line in text, f"{line!r} missing from:\n{text}"
    loggers = {logger for lvl, logger, _ in records(text) if lvl == "debug"}
    assert {"http", "router"} <= loggers


def test_logging_endpoint_turns_request_lines_on(tmp_path: Path, upstream: int, dead_port: int) -> None:
    proxy = Proxy(tmp_path, upstream, dead_port)
    try:
        assert http(proxy.port, "GET", "/before").status == 200
        assert http(proxy.admin, "POST", "/logging?level=debug").status == 200
        assert http(proxy.port, "GET", "/after").status == 200
        assert http(proxy.admin, "POST", "/logging?level=info").status == 200
        assert http(proxy.port, "GET", "/later").status == 200
        text = proxy.stop()
    finally:
        proxy.kill()
    assert "cluster 'app' match for URL '/after'" in text
    assert "'/before'" not in text and "'/later'" not in text, text


def test_a_signal_handler_that_names_its_signal_gets_envoys_line(
    loop: LoopThread, upstream: int, dead_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluice")
    sluice = InProcessSluice(loop, config(free_port(), free_port(), upstream, dead_port))
    loop.loop.call_soon_threadsafe(sluice.server.request_stop, signal.SIGTERM)
    loop.run(sluice.server.wait_stopped())
    said = [(name, level, msg) for name, level, msg in caplog.record_tuples if name == "sluice"]
    assert said[-5:] == [
        ("sluice", logging.WARNING, "caught ENVOY_SIGTERM"),
        ("sluice", logging.INFO, "shutting down server instance"),
        ("sluice", logging.INFO, "draining listeners: 0 request(s) in flight, waiting up to 0.5s"),
        ("sluice", logging.INFO, "main dispatch loop exited"),
        ("sluice", logging.INFO, "exiting"),
    ]
