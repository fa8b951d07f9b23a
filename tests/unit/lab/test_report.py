"""What ``up`` prints for a lab that failed to start: each failed service and its last log lines."""

from __future__ import annotations

from pathlib import Path

from sluice.lab import report
from sluice.lab.spec import Plan, ServicePlan


def svc(tmp_path: Path, name: str, not_running: str | None = None) -> ServicePlan:
    return ServicePlan(name, f"lab-{name}-1", "img", "prog", "127.0.0.1", name, str(tmp_path), str(tmp_path / f"{name}.log"), [], not_running=not_running)


def test_failed_services_with_their_last_twenty_lines(tmp_path: Path) -> None:
    services = [svc(tmp_path, "app"), svc(tmp_path, "proxy"), svc(tmp_path, "grafana", "image grafana has no local program yet"), svc(tmp_path, "sidecar")]
    plan = Plan("lab", str(tmp_path), "", str(tmp_path), False, {}, {}, services, [])
    lines = [f"line {i}" for i in range(30)]
    (tmp_path / "proxy.log").write_text("\n".join(lines[:25]) + "\n[sluice lab] lab-proxy-1 exited with code 1\n" + "\n".join(lines[25:]) + "\n")
    status = {
        "services": {
            "app": {"state": "stopped", "failure": None},
            "proxy": {"state": "exited", "failure": "exited with code 1 before it was ready"},
            "grafana": {"state": "not running", "failure": None},
            "sidecar": {"state": "exited", "failure": "cannot start sidecar: No such file"},
        }
    }
    failed = report.failures(plan, status)
    assert [f.service for f in failed] == ["proxy", "sidecar"]
    assert report.headline(failed) == "2 services failed to start: proxy, sidecar"
    out = report.render(failed)
    assert out[0] == f"  proxy (lab-proxy-1): exited with code 1 before it was ready; last 20 lines of {tmp_path}/proxy.log:"
    # The supervisor's own event lines are left out; the service's last 20 lines are kept in order.
    assert out[1:21] == [f"    | line {i}" for i in range(10, 30)]
    assert out[21:] == [f"  sidecar (lab-sidecar-1): cannot start sidecar: No such file; its log {tmp_path}/sidecar.log is empty"]


def test_no_status_means_no_failures(tmp_path: Path) -> None:
    plan = Plan("lab", str(tmp_path), "", str(tmp_path), False, {}, {}, [svc(tmp_path, "app")], [])
    assert report.failures(plan, None) == []
    assert report.headline([report.Failure("a", "lab-a-1", "r", "/x")]) == "1 service failed to start: a"
