"""Differential: a listener's own ``access_log`` (one line per downstream connection, written
when it closes, from the connection's record: its bytes, duration, protocol and DPE), through
the real Envoy and Sluice on the same connections."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from h2_peer import H2Peer
from harness import LoopThread, ProxyProcess, free_port
from http_client import Client

from sluice.lab.apps.demoapp import App

pytestmark = pytest.mark.envoy

FIELDS = ("%ACCESS_LOG_TYPE% [%PROTOCOL%] %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% "
          "%REQ(:PATH)% %UPSTREAM_HOST% %RESPONSE_CODE_DETAILS% %ROUTE_NAME% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% "
          "%REQUESTED_SERVER_NAME% %UPSTREAM_CLUSTER%\n")  # fmt: skip


def _logger(path: Path, log_format: dict[str, Any] | None = None, filter_: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog", "path": str(path)}
    if log_format is not None:
        cfg["log_format"] = log_format
    entry: dict[str, Any] = {"name": "envoy.access_loggers.file", "typed_config": cfg}
    if filter_ is not None:
        entry["filter"] = filter_
    return entry


def _config(d: Path, port: int, admin: int, app: int) -> dict[str, Any]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "l",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/app"}, "route": {"cluster": "app"}},
            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }  # fmt: skip
    listener_logs = [
        _logger(d / "default.log"),
        _logger(d / "fields.log", {"text_format": FIELDS}),
        _logger(d / "json.log", {"json_format": {"proto": "%PROTOCOL%", "rx": "%BYTES_RECEIVED%", "tx": "%BYTES_SENT%",
                                                 "code": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS_LONG%",
                                                 "method": "%REQ(:METHOD)%"}}),
        _logger(d / "dpe_only.log", {"text_format": "%RESPONSE_FLAGS% %BYTES_RECEIVED%\n"},
                {"response_flag_filter": {"flags": ["DPE"]}}),
    ]  # fmt: skip
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                           "access_log": listener_logs,
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": [{"name": "app", "connect_timeout": "0.25s", "load_assignment": {"cluster_name": "app", "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": app}}}}]}]}}],
        },
    }  # fmt: skip


def _raw(port: int, data: bytes, linger: float = 0.15) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if data:
            s.sendall(data)
        time.sleep(linger)
        s.settimeout(0.5)
        try:
            while s.recv(65536):
                pass
        except (TimeoutError, ConnectionError):
            pass


def _connections(port: int) -> None:
    with Client(port) as c:
        c.request("GET", "/", headers=[("user-agent", "curl/8")])
        c.request("GET", "/app/hostname", headers=[("user-agent", "curl/8")])
    time.sleep(0.15)
    _raw(port, b"garbage\r\n\r\n")
    _raw(port, b"")
    _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n")
    _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    _raw(port, b"GET / HTTP/1.0\r\n\r\n")
    _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with H2Peer(port) as peer:
        peer.handshake()
        peer.headers(1, [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")], end_stream=True)
        peer.collect()
    time.sleep(0.15)


def _mask(text: str) -> list[str]:
    text = re.sub(r"\[\d{4}-\d\d-\d\dT[\d:.]+Z\]", "[T]", text)
    # the default line's DURATION (after the two byte counts)
    text = re.sub(r'(" \d+ \S+ \d+ \d+) \d+ ', r"\1 <ms> ", text)
    # An HTTP/2 response's size depends on the second it was sent: HPACK Huffman-codes the
    # date header, whose digits take 5 or 6 bits (compared apart, within 2 bytes).
    text = re.sub(r"(HTTP/2\S* \d+ \S+ \d+ )\d+", r"\1<h2-tx>", text)
    text = re.sub(r'("proto":"HTTP/2".*"tx":)\d+', r"\1<h2-tx>", text)
    return text.splitlines()


def _h2_sent(lines: list[str]) -> int:
    return int(next(line for line in lines if "[HTTP/2]" in line).split()[5])


def test_listener_access_logs_match_envoy(tmp_path: Path) -> None:
    loop = LoopThread()
    app = App("app")
    loop.run(app.start("127.0.0.1", 0))
    out: dict[str, dict[str, list[str]]] = {}
    try:
        for kind in ("envoy", "sluice"):
            d = tmp_path / kind
            d.mkdir()
            proxy = ProxyProcess(kind, _config(d, free_port(), free_port(), app.port)).start()
            try:
                _connections(proxy.port)
            finally:
                proxy.stop()
            out[kind] = {p.name: _mask(p.read_text(encoding="utf-8")) for p in sorted(d.glob("*.log"))}
            out[kind]["h2"] = [str(_h2_sent((d / "fields.log").read_text(encoding="utf-8").splitlines()))]
    finally:
        loop.run(app.stop())
        loop.close()
    envoy, sluice = out["envoy"], out["sluice"]
    assert len(envoy["fields.log"]) == 9 and len(envoy["dpe_only.log"]) == 2, envoy
    assert abs(int(sluice.pop("h2")[0]) - int(envoy.pop("h2")[0])) <= 2
    for name in envoy:
        assert sluice[name] == envoy[name], name
