"""The supervisor's startup verdict, on a hand-written plan of tiny Python programs.

``python -m sluice.lab.supervisor STATE_DIR`` runs as ``sluice lab up`` runs it (its stdout is
the progress pipe); no compose file, no namespaces, no privileged port: only 127.0.0.1 and
ports the kernel hands out.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sluice.lab import state
from sluice.lab.spec import Plan, ProcessPlan, ServicePlan

CRASH = "import sys; print('reading config'); print('error: listeners[0].no_such_field: unknown field', flush=True); sys.exit(3)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listener(port: int) -> str:
    return (
        "import socket, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('listening', flush=True); time.sleep(60)\n"
    )


def service(
    sd: Path,
    name: str,
    code: str | None = None,
    *,
    argv: list[str] | None = None,
    port: int | None = None,
    restart: str = "no",
    restart_max: int = 0,
    not_running: str | None = None,
    depends_on: list[str] | None = None,
) -> ServicePlan:
    root = sd / "services" / name
    root.mkdir(parents=True, exist_ok=True)
    (sd / "logs").mkdir(parents=True, exist_ok=True)
    procs = []
    if not not_running:
        procs = [ProcessPlan("main", argv or [sys.executable, "-c", code or ""], {}, [("127.0.0.1", port, "test port")] if port else [])]
    return ServicePlan(
        name=name,
        prefix=f"t-{name}-1",
        image="test",
        program="python",
        address="127.0.0.1",
        hostname=name,
        root=str(root),
        log=str(sd / "logs" / f"{name}.log"),
        depends_on=depends_on or [],
        restart=restart,
        restart_max=restart_max,
        processes=procs,
        not_running=not_running,
    )


def plan(sd: Path, services: list[ServicePlan], ready_timeout: float = 10.0) -> Plan:
    return Plan("t", str(sd), str(sd / "docker-compose.yaml"), str(sd), False, {}, {}, services, [], ready_timeout)


def start(p: Plan) -> subprocess.Popen[str]:
    sd = Path(p.state_dir)
    state.write_json(sd / "plan.json", p.to_json())
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.lab.supervisor", str(sd)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=sd
    )


def progress(sup: subprocess.Popen[str]) -> list[str]:
    """The progress lines, up to and including the ``@@`` verdict."""
    assert sup.stdout is not None
    lines = []
    for line in sup.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("@@"):
            break
    return lines


def run_to_failure(p: Plan, timeout: float = 30.0) -> tuple[list[str], dict[str, Any]]:
    sup = start(p)
    try:
        lines = progress(sup)
        assert sup.wait(timeout=timeout) == 1, lines  # it stops the lab by itself
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    status = state.read_json(Path(p.state_dir) / "status.json")
    return lines, status


def everything_stopped(sd: Path, ports: list[int]) -> None:
    assert not state.supervisor_alive(sd)
    assert not state.any_process_alive(sd), state.recorded_processes(sd)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free again


def test_a_crash_before_ready_fails_startup_and_stops_the_rest(tmp_path: Path) -> None:
    ok_port, bad_port = free_port(), free_port()
    p = plan(
        tmp_path,
        [
            service(tmp_path, "app", listener(ok_port), port=ok_port),
            service(tmp_path, "proxy", CRASH, port=bad_port),
            service(tmp_path, "metrics", not_running="image prom/prometheus has no local program yet"),
            service(tmp_path, "client", listener(free_port()), depends_on=["proxy"]),
        ],
    )
    lines, status = run_to_failure(p)
    assert lines[-1] == "@@failed 1 service failed to start: proxy"
    assert " ! Container t-proxy-1  Failed: exited with code 3 before it was ready" in lines
    assert any(ln.startswith(" - Container t-app-1  Started") for ln in lines)
    # Dependants of a failed service still start (as with compose), so one run reports all.
    assert any(ln.startswith(" - Container t-client-1  Started") for ln in lines)
    assert status["state"] == "failed"
    svc = status["services"]
    assert svc["proxy"]["failure"] == "exited with code 3 before it was ready" and svc["proxy"]["exit_code"] == 3
    assert svc["app"]["failure"] is None and svc["app"]["state"] == "stopped"
    assert svc["metrics"]["failure"] is None and svc["metrics"]["state"] == "not running"
    everything_stopped(tmp_path, [ok_port, bad_port])


def test_several_failures_are_all_reported(tmp_path: Path) -> None:
    p = plan(tmp_path, [service(tmp_path, "a", CRASH, port=free_port()), service(tmp_path, "b", CRASH, port=free_port())])
    lines, status = run_to_failure(p)
    assert lines[-1] == "@@failed 2 services failed to start: a, b"
    assert status["services"]["a"]["failure"] and status["services"]["b"]["failure"]


def test_on_failure_restarts_then_fails(tmp_path: Path) -> None:
    p = plan(tmp_path, [service(tmp_path, "proxy", CRASH, port=free_port(), restart="on-failure", restart_max=2)])
    lines, status = run_to_failure(p)
    assert lines[-1] == "@@failed 1 service failed to start: proxy"
    assert status["services"]["proxy"]["failure"] == "exited with code 3 before it was ready (after 2 restarts)"
    log = Path(p.services[0].log).read_text()
    assert log.count("[sluice lab] t-proxy-1 exited with code 3") == 3  # the first run and two restarts


def test_a_restart_loop_that_never_gets_ready_fails_at_the_ready_timeout(tmp_path: Path) -> None:
    p = plan(tmp_path, [service(tmp_path, "proxy", CRASH, port=free_port(), restart="always")], ready_timeout=1.5)
    lines, status = run_to_failure(p)
    assert lines[-1] == "@@failed 1 service failed to start: proxy"
    # Restarted with back-off (0.1 s, 0.2 s, …) until the next one could not be ready in time;
    # the reason is the exit, not the deafness of a process started just before the deadline.
    reason = status["services"]["proxy"]["failure"]
    assert reason.startswith("exited with code 3 before it was ready (after ") and reason.endswith(" restarts)")
    assert int(reason.split("(after ")[1].split()[0]) >= 2
    everything_stopped(tmp_path, [])


def test_alive_but_never_accepting_fails_at_the_ready_timeout(tmp_path: Path) -> None:
    port = free_port()
    p = plan(tmp_path, [service(tmp_path, "deaf", "import time; time.sleep(60)", port=port)], ready_timeout=1.0)
    lines, status = run_to_failure(p)
    assert lines[-1] == "@@failed 1 service failed to start: deaf"
    assert status["services"]["deaf"]["failure"] == f"not accepting connections after 1s: test port 127.0.0.1:{port}"
    everything_stopped(tmp_path, [port])


def test_a_program_that_cannot_be_started_fails(tmp_path: Path) -> None:
    p = plan(tmp_path, [service(tmp_path, "ghost", argv=[str(tmp_path / "no-such-program")], port=free_port())])
    lines, status = run_to_failure(p)
    assert lines[-1] == "@@failed 1 service failed to start: ghost"
    assert status["services"]["ghost"]["failure"].startswith(f"cannot start {tmp_path / 'no-such-program'}: ")


def test_not_running_images_and_finished_jobs_are_not_failures(tmp_path: Path) -> None:
    port = free_port()
    p = plan(
        tmp_path,
        [
            service(tmp_path, "app", listener(port), port=port),
            service(tmp_path, "grafana", not_running="image grafana/grafana has no local program yet"),
            service(tmp_path, "job", "print('done')"),  # no port to open, exit 0: a one-shot job
        ],
    )
    sup = start(p)
    try:
        lines = progress(sup)
        assert lines[-1].startswith("@@ready"), lines
        assert " - Container t-job-1  Exited (0)" in lines
        status = state.read_json(tmp_path / "status.json")
        assert status["state"] == "running"
        assert all(s["failure"] is None for s in status["services"].values())
    finally:
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=20) == 0
    everything_stopped(tmp_path, [port])


def test_a_crash_after_ready_is_not_a_startup_failure(tmp_path: Path) -> None:
    port = free_port()
    flag = tmp_path / "crashed"
    code = listener(port).replace("time.sleep(60)", f"time.sleep(0.5); open({str(flag)!r}, 'w'); raise SystemExit(4)")
    p = plan(tmp_path, [service(tmp_path, "app", code, port=port)])
    sup = start(p)
    try:
        assert progress(sup)[-1].startswith("@@ready")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (state.read_json(tmp_path / "status.json") or {})["services"]["app"]["state"] != "exited":
            time.sleep(0.05)
        status = state.read_json(tmp_path / "status.json")
        assert status["services"]["app"]["state"] == "exited" and status["services"]["app"]["exit_code"] == 4
        assert status["services"]["app"]["failure"] is None and status["state"] == "running"
        assert sup.poll() is None  # the lab goes on, as compose does
    finally:
        os.kill(sup.pid, signal.SIGTERM)
        assert sup.wait(timeout=20) == 0
