"""Differential: a request begun but never finished. Envoy's HTTP/1 parser begins a message at
its first byte (even a bare line end), and its connection manager a stream for it; when the
client closes, that stream is reset: logged ``0 DC downstream_remote_disconnect`` and counted
(``downstream_rq_total``, ``downstream_rq_rx_reset``, ``downstream_cx_destroy_*_active_rq``).
A response that ends before its request did resets the stream too (``rx_reset``), and the
connection then waits for the client's close (``delayed_close_timeout``: a client that resets
instead is not seen, and the timeout is counted)."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from harness import ProxyProcess, free_port, wait_until

pytestmark = pytest.mark.envoy

CONFIG = """
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: begun
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format: {{text_format: "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% [%REQ(:PATH)%] %PROTOCOL% %BYTES_RECEIVED%\\n"}}
          route_config:
            virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: /}}, direct_response: {{status: 200}}}}]}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"""
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
CASES = [
    b"GET / HTTP/1.1\r\nHost: x\r\n",  # a head still arriving
    b"GE",  # a first line still arriving
    GET + b"xyz",  # bytes after a complete request that cannot start one
    GET + b"GET /2 HTTP/1.1\r\n",  # the next request's head still arriving
    b"\r\n",  # a bare line end
    GET + b"\r\n",  # a line end after a complete request
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nhel",  # answered before its body was read
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nhello",  # ... with bytes after it
]


def _stats(admin: int) -> dict[str, int]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if name.startswith("http.begun.downstream_") and value.isdigit():
            out[name] = int(value)
    return out


def _run(kind: str, d: Path) -> tuple[list[str], dict[str, int]]:
    admin, port = free_port(), free_port()
    proxy = ProxyProcess(kind, yaml.safe_load(CONFIG.format(admin=admin, port=port, log=d / f"{kind}.log"))).start()
    try:
        # (the readiness probe's connection must be gone before the first snapshot)
        assert wait_until(lambda: _stats(admin).get("http.begun.downstream_cx_active") == 0)
        before = _stats(admin)
        for data in CASES:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(data)
                time.sleep(0.15)
            time.sleep(0.1)
        assert wait_until(lambda: _stats(admin).get("http.begun.downstream_cx_active") == 0)
        after = _stats(admin)
    finally:
        proxy.stop()
    deltas = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0) and not k.endswith("_active")}
    return (d / f"{kind}.log").read_text(encoding="utf-8").splitlines(), deltas


def test_begun_requests_are_reset_logged_and_counted_as_envoy(tmp_path: Path) -> None:
    envoy = _run("envoy", tmp_path)
    assert envoy[0].count("0 DC downstream_remote_disconnect [-] HTTP/1.1 0") == 6, envoy
    sluice = _run("sluice", tmp_path)
    assert sluice[0] == envoy[0]
    assert sluice[1] == envoy[1]
