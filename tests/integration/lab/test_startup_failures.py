"""Loud failures: a lab whose service cannot start fails ``up`` — named, with its last log lines —
and leaves nothing running; images with no local program are no failure.

The broken proxy's config has an unknown field, which Envoy rejects too, so these tests keep
their meaning whatever Sluice implements later.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from labkit import get, requires_lab

from sluice.lab import state

pytestmark = requires_lab

BAD_ENVOY = """\
admin:
  address: {socket_address: {address: 0.0.0.0, port_value: 9901}}
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 0.0.0.0, port_value: 80}}
    no_such_field: 1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_lab(tmp_path: Path, name: str, services: str, files: dict[str, str] | None = None) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "docker-compose.yaml").write_text(f"services:\n{services}")
    for fname, body in (files or {}).items():
        (d / fname).write_text(body)
    return d


def broken_proxy_lab(tmp_path: Path, name: str, restart: str = "no") -> tuple[Path, int]:
    published = free_port()
    d = write_lab(
        tmp_path,
        name,
        f"  proxy:\n    image: envoyproxy/envoy:v1.21.0\n    restart: '{restart}'\n    volumes: [./envoy.yaml:/etc/envoy/envoy.yaml]\n"
        f"  web:\n    image: ikubernetes/demoapp:v1.0\n    hostname: web1\n    ports: ['127.0.0.1:{published}:80']\n"
        "  metrics:\n    image: example/no-local-program:v1\n",
        {"envoy.yaml": BAD_ENVOY},
    )
    return d, published


def assert_nothing_left(lab: Any, published: int) -> None:
    assert lab.live_pids() == []
    for addr, port in [*lab.ports(), ("127.0.0.1", published)]:
        with socket.socket() as s:
            s.bind((addr, port))  # free again
    assert lab.cli("ps").stdout.startswith(f"lab {lab.directory.name} is not running")
    assert str(lab.directory) not in lab.run("ls").stdout
    assert state.find_running(lab.directory) is None


def assert_failure_reported(r: subprocess.CompletedProcess[str], name: str, reason: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr
    assert "sluice lab: error: 1 service failed to start: proxy" in err
    assert f"  proxy ({name}-proxy-1): {reason}; last " in err
    # The proxy's own last lines: Sluice's error with the path of the unknown field (whatever
    # its wording).
    tail = [ln for ln in err.splitlines() if ln.startswith("    | ")]
    assert any("static_resources.listeners[0].no_such_field" in ln for ln in tail), err
    assert "sluice lab: nothing is left running" in err
    assert " services running" not in r.stdout


def test_detached_up_fails_when_the_proxy_cannot_start(make_lab: Any, tmp_path: Path) -> None:
    d, published = broken_proxy_lab(tmp_path, "badproxy")
    lab = make_lab(d)
    r, _ = lab.up()
    assert_failure_reported(r, "badproxy", "exited with code 1 before it was ready")
    assert "Container badproxy-proxy-1  Failed: exited with code 1 before it was ready" in r.stdout
    # An image without a local program is still only listed, with its reason.
    assert "Container badproxy-metrics-1  Not running: image example/no-local-program:v1 has no local program yet" in r.stdout
    assert_nothing_left(lab, published)
    # The logs outlive the lab, for a closer look.
    assert "listeners[0].no_such_field" in lab.cli("logs", "proxy").stdout


def test_foreground_up_fails_and_stops_the_lab(make_lab: Any, tmp_path: Path) -> None:
    d, published = broken_proxy_lab(tmp_path, "badproxyfg")
    lab = make_lab(d)
    lab.started = True
    r = lab.run("up", str(d), "--state-dir", str(lab.state_dir), timeout=60)
    assert_failure_reported(r, "badproxyfg", "exited with code 1 before it was ready")
    assert "Attaching to" not in r.stdout
    assert_nothing_left(lab, published)


def test_restart_policy_is_honoured_before_failing(make_lab: Any, tmp_path: Path) -> None:
    d, published = broken_proxy_lab(tmp_path, "flakyproxy", restart="on-failure:2")
    lab = make_lab(d)
    r, _ = lab.up()
    assert_failure_reported(r, "flakyproxy", "exited with code 1 before it was ready (after 2 restarts)")
    assert lab.cli("logs", "proxy").stdout.count("flakyproxy-proxy-1 exited with code 1") == 3  # first run + 2 restarts
    assert_nothing_left(lab, published)


def test_only_images_without_a_local_program_missing_still_succeeds(make_lab: Any, tmp_path: Path) -> None:
    published = free_port()
    d = write_lab(
        tmp_path,
        "partial",
        f"  web:\n    image: ikubernetes/demoapp:v1.0\n    hostname: web1\n    ports: ['127.0.0.1:{published}:80']\n"
        "  metrics:\n    image: example/no-local-program:v1\n    depends_on: [web]\n"
        "  dashboards:\n    image: example/no-local-program-either:v2\n    depends_on: [metrics]\n",
    )
    lab = make_lab(d)
    r, _ = lab.up()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[+] 1/3 services running" in r.stdout
    assert "    metrics: image example/no-local-program:v1 has no local program yet" in r.stdout
    assert "    dashboards: image example/no-local-program-either:v2 has no local program yet" in r.stdout
    # The published port forwards to the service's own address.
    assert get("127.0.0.1", "/hostname", port=published) == (200, "ServerName: web1\n")
    ps = lab.cli("ps").stdout
    assert "running (pid " in ps and "not running: image example/no-local-program" in ps


def test_down_when_nothing_is_running(make_lab: Any, tmp_path: Path) -> None:
    d = write_lab(tmp_path, "idle", "  web:\n    image: ikubernetes/demoapp:v1.0\n")
    lab = make_lab(d)
    r = lab.down()
    assert (r.returncode, r.stdout, r.stderr) == (0, "lab idle is not running\n", "")
    # No lab named, none in the current folder, none registered: compose's "nothing to do".
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), NO_COLOR="1")
    r = subprocess.run([sys.executable, "-m", "sluice", "lab", "down"], capture_output=True, text=True, cwd=runtime, env=env, timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "no lab is running\n", "")
