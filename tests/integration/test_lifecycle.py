"""Process lifecycle: SIGTERM and /quitquitquit drain in-flight requests and exit 0;
``--mode validate`` exit codes; bad configs give the path and exit 1."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from harness import free_port

from sluice.lab.apps.demoapp import App

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "labs"


def config(listen: int, admin: int, upstream: int) -> str:
    return f"""
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - name: l0
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts: [{{name: v, domains: ["*"], routes: [{{match: {{prefix: "/"}}, route: {{cluster: c}}}}]}}]
          http_filters: [{{name: envoy.filters.http.router}}]
  clusters:
  - name: c
    connect_timeout: 1s
    load_assignment:
      cluster_name: c
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]
"""


class Upstream:
    """A demoapp on a background loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = App("up")
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.app.start("127.0.0.1", 0), self.loop).result(5)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


def get(port: int, path: str, method: str = "GET") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


@pytest.fixture
def proxy(tmp_path: Path):  # type: ignore[no-untyped-def]
    up = Upstream()
    listen, admin = free_port(), free_port()
    cfg = tmp_path / "envoy.yaml"
    cfg.write_text(config(listen, admin, up.app.port))
    proc = subprocess.Popen([sys.executable, "-m", "sluice", "-c", str(cfg), "-l", "error"], env=dict(os.environ))
    try:
        wait_port(listen)
        yield proc, listen, admin
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        up.close()


@pytest.mark.parametrize("how", ["sigterm", "quitquitquit"])
def test_stop_drains_in_flight_request_and_exits_zero(proxy, how: str) -> None:  # type: ignore[no-untyped-def]
    proc, listen, admin = proxy
    result: dict[str, bytes] = {}
    t = threading.Thread(target=lambda: result.setdefault("r", get(listen, "/delay/600")))
    t.start()
    time.sleep(0.2)  # the request is in flight
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        assert get(admin, "/quitquitquit", "POST").endswith(b"3\r\nOK\n\r\n0\r\n\r\n")
    t.join(10)
    assert result["r"].startswith(b"HTTP/1.1 200 OK")
    assert result["r"].endswith(b"delayed 600ms\n")
    assert proc.wait(10) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", listen), timeout=0.5).close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, timeout=60)


def test_validate_part1_seed_configs_unchanged() -> None:
    for lab in ("http-traffic-shifting", "http-traffic-splitting", "http-request-mirror"):
        r = run_cli("--mode", "validate", "-c", str(SEED / lab / "front-envoy.yaml"))
        assert r.returncode == 0, r.stderr
        assert "OK" in r.stdout


def test_validate_names_unimplemented_features(tmp_path: Path) -> None:
    r = run_cli("--mode", "validate", "-c", str(SEED / "zipkin-tracing" / "front_envoy" / "envoy-config.yaml"))
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr  # (the Zipkin tracer is implemented)
    config = (SEED / "zipkin-tracing" / "front_envoy" / "envoy-config.yaml").read_text(encoding="utf-8")
    config = config.replace("envoy.tracers.zipkin", "envoy.tracers.opentelemetry").replace(
        "envoy.config.trace.v3.ZipkinConfig", "envoy.config.trace.v3.OpenTelemetryConfig"
    )
    for field in ("collector_cluster: zipkin", 'collector_endpoint: "/api/v2/spans"', "collector_endpoint_version: HTTP_JSON"):
        config = config.replace(field, "")
    path = tmp_path / "otel.yaml"
    path.write_text(config, encoding="utf-8")
    r = run_cli("--mode", "validate", "-c", str(path))
    assert r.returncode == 1
    assert ".tracing.provider: tracer 'envoy.tracers.opentelemetry' is not implemented yet" in r.stderr, r.stderr


def test_validate_fault_injection_configs() -> None:
    for name in ("service-envoy-fault-injection-abort.yaml", "service-envoy-fault-injection-delay.yaml"):
        r = run_cli("--mode", "validate", "-c", str(SEED / "fault-injection" / name))
        assert r.returncode == 0, r.stderr


def test_misspelled_field_gives_path_and_exit_1(tmp_path: Path) -> None:
    text = (SEED / "http-traffic-shifting" / "front-envoy.yaml").read_text().replace("lb_policy: ROUND_ROBIN", "lb_polcy: ROUND_ROBIN", 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    r = run_cli("--mode", "validate", "-c", str(bad))
    assert r.returncode == 1
    assert "static_resources.clusters[0].lb_polcy: unknown field" in r.stderr


def test_config_yaml_flag_and_missing_config() -> None:
    assert run_cli("--mode", "validate").returncode == 1
    r = run_cli("--mode", "validate", "--config-yaml", "static_resources: {clusters: [{name: a, connect_timeout: 1s}]}")
    assert r.returncode == 0, r.stderr
