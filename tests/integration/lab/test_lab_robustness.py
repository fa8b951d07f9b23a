"""What goes wrong is said plainly, by service and key, and nothing is left running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labkit import SEED, copy_lab, get, requires_lab

pytestmark = requires_lab


def test_missing_mounted_file(make_lab: Any, tmp_path: Path) -> None:
    d = copy_lab("http-traffic-shifting", tmp_path)
    text = (d / "docker-compose.yaml").read_text().replace("./front-envoy.yaml:", "./no-such-envoy.yaml:")
    (d / "docker-compose.yaml").write_text(text)
    lab = make_lab(d)
    r, _ = lab.up()
    assert r.returncode == 1
    assert (
        f"service 'front-envoy': volumes[0] './no-such-envoy.yaml:/etc/envoy/envoy.yaml': mounted file {d}/no-such-envoy.yaml does not exist"
        in r.stderr
    )
    assert "nothing was started" in r.stderr
    assert lab.live_pids() == []


def test_unknown_depends_on(make_lab: Any, tmp_path: Path) -> None:
    d = copy_lab("http-request-mirror", tmp_path)
    text = (
        (d / "docker-compose.yaml")
        .read_text()
        .replace("    hostname: demoapp-v1.1-2\n", "    hostname: demoapp-v1.1-2\n    depends_on:\n      - front-proxy\n")
    )
    (d / "docker-compose.yaml").write_text(text)
    lab = make_lab(d)
    r, _ = lab.up()
    assert r.returncode == 1
    assert "service 'demoapp-v1.1-2': depends_on: unknown service 'front-proxy'" in r.stderr
    assert lab.live_pids() == []


def test_port_in_use(make_lab: Any) -> None:
    lab = make_lab(SEED / "http-traffic-shifting")
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.31.55.10", 9901))
    blocker.listen()
    try:
        r, _ = lab.up()
    finally:
        blocker.close()
    assert r.returncode == 1
    assert f"service 'front-envoy': admin: 127.31.55.10:9901 is already in use by pid {os.getpid()}" in r.stderr
    assert lab.live_pids() == []


def test_exit_is_reported_and_restart_policy_honoured(make_lab: Any, tmp_path: Path) -> None:
    d = tmp_path / "flaky"
    d.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        published = s.getsockname()[1]
    (d / "bad.yaml").write_text("static_resources:\n  clusters:\n  - name: x\n    type: NO_SUCH_TYPE\n")
    (d / "docker-compose.yaml").write_text(
        "services:\n"
        "  broken:\n    image: envoyproxy/envoy:v1.21.0\n    restart: on-failure:2\n    volumes: [./bad.yaml:/etc/envoy/envoy.yaml]\n"
        f"  web:\n    image: ikubernetes/demoapp:v1.0\n    hostname: web1\n    depends_on: [broken]\n    ports: ['127.0.0.1:{published}:80']\n"
        "  metrics:\n    image: prom/prometheus:v2.30.3\n"
    )
    lab = make_lab(d)
    r, _ = lab.up()
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Container flaky-broken-1  Exited with code 1 before it was ready; last lines:" in out
    assert "NO_SUCH_TYPE" in out
    assert "Container flaky-metrics-1  Not running: image prom/prometheus:v2.30.3 has no local program yet" in out
    assert "Container flaky-web-1  Started" in out  # dependants go on, as with compose
    # The published port forwards to the service's own address.
    assert get("127.0.0.1", "/hostname", port=published) == (200, "ServerName: web1\n")
    logs = lab.cli("logs", "broken").stdout
    assert logs.count("flaky-broken-1 exited with code 1") == 3  # first run + 2 restarts
    ps = lab.cli("ps").stdout
    assert "exited (1)" in ps and "not running: image prom/prometheus" in ps


def test_foreground_up_streams_and_ctrl_c_stops(tmp_path: Path) -> None:
    d = tmp_path / "fg"
    d.mkdir()
    (d / "docker-compose.yml").write_text("services:\n  app:\n    image: ikubernetes/demoapp:v1.1\n    hostname: fg-app\n")
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice", "lab", "up", str(d), "--state-dir", str(tmp_path / "st")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "fg-app-1  |  * Running on" in line or line.startswith("fg-app-1  |  * Running on"):
                break
        assert any("fg-app-1  |  * Running on http://" in ln for ln in lines), lines
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "Gracefully stopping..." in rest
    assert "Container fg-app-1  Stopped" in rest
    from sluice.lab import state

    assert not state.supervisor_alive(tmp_path / "st") and not state.any_process_alive(tmp_path / "st")
