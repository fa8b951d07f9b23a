"""The course's part-1 labs, from the seed folders unchanged, through ``sluice lab``.

The course's steps are repeated with 172 → 127: ``curl http://127.31.55.10/hostname`` and
``curl -XPOST 'http://127.31.55.10:9901/runtime_modify?…'``. Readiness time of ``up -d`` and
the idle lab's memory are printed (``-s`` shows them), not asserted.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

from labkit import MEASUREMENTS, SEED, get, requires_lab

pytestmark = requires_lab


def _report(name: str, lab: Any, elapsed: float) -> None:
    rss, pss = lab.rss_kib()
    n = len(lab.live_pids())
    MEASUREMENTS.append(
        f"{name}: up -d ready in {elapsed:.2f}s; idle lab: {n} processes, RSS {rss / 1024:.0f} MiB, PSS {pss / 1024:.0f} MiB"
    )


def _hostnames(addr: str, n: int) -> Counter[str]:
    got: Counter[str] = Counter()
    for _ in range(n):
        status, body = get(addr, "/hostname")
        assert status == 200, body
        got[body.strip().removeprefix("ServerName: ")] += 1
    return got


def test_traffic_shifting(make_lab: Any) -> None:
    lab = make_lab(SEED / "http-traffic-shifting")
    r, elapsed = lab.up()
    assert r.returncode == 0, r.stderr + r.stdout
    assert "6/6 services running" in r.stdout
    _report("http-traffic-shifting", lab, elapsed)

    got = _hostnames("127.31.55.10", 9)
    assert set(got) == {"demoapp-v1.0-1", "demoapp-v1.0-2", "demoapp-v1.0-3"}
    status, body = get("127.31.55.10", "/runtime_modify?routing.traffic_shift.demoapp=0", port=9901, method="POST")
    assert (status, body.strip()) == (200, "OK")
    got = _hostnames("127.31.55.10", 6)
    assert set(got) == {"demoapp-v1.1-1", "demoapp-v1.1-2"}

    ps = lab.cli("ps")
    assert ps.returncode == 0
    lines = ps.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "SERVICE", "PROGRAM", "STATUS"]
    assert len(lines) == 7 and all(" running (pid " in ln for ln in lines[1:])
    assert any(ln.startswith("http-traffic-shifting-front-envoy-1") and "127.31.55.10" in ln for ln in lines)

    hosts = lab.cli("hosts")
    assert "demoappv10    127.31.55.2 127.31.55.3 127.31.55.4".split() == next(
        ln.split() for ln in hosts.stdout.splitlines() if ln.startswith("demoappv10 ")
    )

    pids = lab.live_pids()
    ports = lab.ports()
    assert len(pids) == 7
    d = lab.down()
    assert d.returncode == 0, d.stderr
    assert lab.live_pids() == []
    for addr, port in ports:
        s = socket.socket()
        # Every port is free again: no process holds it. (SO_REUSEADDR, as every server of the
        # lab binds: a connection the killed side closed may linger in TIME_WAIT on it.)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.close()
    assert lab.cli("ps").stdout.startswith("lab http-traffic-shifting is not running")


def test_request_mirror_shadows_show_in_v11_logs(make_lab: Any) -> None:
    lab = make_lab(SEED / "http-request-mirror")
    r, elapsed = lab.up()
    assert r.returncode == 0, r.stderr + r.stdout
    _report("http-request-mirror", lab, elapsed)
    status, _ = get("127.31.60.10", "/runtime_modify?routing.request_mirror.demoapp=100", port=9901, method="POST")
    assert status == 200
    for i in range(4):
        status, body = get("127.31.60.10", f"/hostname?mirror-{i}")
        assert status == 200 and "demoapp-v1.0-" in body
    logs = ""
    for _ in range(20):  # shadows are fire-and-forget: give them a moment
        logs = lab.cli("logs", "demoapp-v1.1-1", "demoapp-v1.1-2").stdout
        if all(f"mirror-{i}" in logs for i in range(4)):
            break
        import time

        time.sleep(0.1)
    shadow_lines = [ln for ln in logs.splitlines() if "GET /hostname?mirror-" in ln]
    assert len(shadow_lines) == 4, logs
    assert all(ln.startswith(("http-request-mirror-demoapp-v1.1-1-1  |", "http-request-mirror-demoapp-v1.1-2-1  |")) for ln in shadow_lines)
    v10 = lab.cli("logs", "demoapp-v1.0-1", "demoapp-v1.0-2", "demoapp-v1.0-3").stdout
    assert sum("GET /hostname?mirror-" in ln for ln in v10.splitlines()) == 4


def test_traffic_splitting(make_lab: Any) -> None:
    lab = make_lab(SEED / "http-traffic-splitting")
    r, elapsed = lab.up()
    assert r.returncode == 0, r.stderr + r.stdout
    _report("http-traffic-splitting", lab, elapsed)
    assert set(_hostnames("127.31.57.10", 6)) <= {"demoapp-v1.0-1", "demoapp-v1.0-2", "demoapp-v1.0-3"}
    q = "routing.traffic_split.demoapp.demoappv10=0&routing.traffic_split.demoapp.demoappv11=100"
    status, _ = get("127.31.57.10", f"/runtime_modify?{q}", port=9901, method="POST")
    assert status == 200
    assert set(_hostnames("127.31.57.10", 6)) == {"demoapp-v1.1-1", "demoapp-v1.1-2"}


def test_servicemesh_app_sidecar_reaches_its_app(make_lab: Any) -> None:
    """``ikubernetes/servicemesh-app``: the colored app on <address>:8080 and a Sluice sidecar on :80
    whose (unmodified) config points at 127.0.0.1:8080 — its own service's app, as in a container."""
    lab = make_lab(SEED / "fault-injection")
    r, elapsed = lab.up()
    assert r.returncode == 0, r.stderr + r.stdout
    _report("fault-injection", lab, elapsed)
    assert "Container fault-injection-service_green-1  Started" in r.stdout
    status, body = get("127.31.62.3", "/service/colors")  # service_green: the image's default sidecar
    assert status == 200 and body.startswith("Hello from App behind Envoy (service green)! hostname: ")
    assert body.rstrip().endswith("resolved hostname: 127.31.62.3")  # its hostname resolves to its address
    hosts = {ln.split()[0]: ln.split()[1:] for ln in lab.cli("hosts").stdout.splitlines()[2:]}
    assert hosts["colored"] == ["127.31.62.2", "127.31.62.3", "127.31.62.4"]
    assert hosts["front-proxy"] == ["127.31.62.10"]
