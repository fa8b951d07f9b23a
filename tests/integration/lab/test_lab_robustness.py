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

from labkit import SEED, copy_lab, requires_lab

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
