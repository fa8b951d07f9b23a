"""The plan: argv wrapped for namespaces, pre-start checks that fail before anything runs."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from sluice.lab import plan as planmod
from sluice.lab.spec import Plan

SEED = Path(__file__).resolve().parents[3] / "labs"


def copy_lab(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(SEED / name, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_plan_round_trips_and_wraps_for_namespaces(tmp_path: Path) -> None:
    p = planmod.make_plan(SEED / "http-traffic-shifting", tmp_path / "state", check_ports=False, namespaces=True)
    assert Plan.from_json(p.to_json()) == p
    front = p.service("front-envoy")
    assert front.prefix == "http-traffic-shifting-front-envoy-1" and front.address == "127.31.55.10"
    (proc,) = front.processes
    assert proc.argv[:5] == ["unshare", "--mount", "--uts", "sh", "-c"]
    assert f"mount --bind {tmp_path}/state/services/front-envoy/etc/hosts /etc/hosts" in proc.argv[5]
    assert proc.argv[6:] == ["sh", *proc.argv[7:]] and proc.argv[-2:] == ["-c", "/etc/envoy/envoy.yaml"]
    assert proc.env["SLUICE_BIND_ADDRESS"] == proc.env["SLUICE_LOCALHOST_ADDRESS"] == "127.31.55.10"
    assert proc.env["SLUICE_FS_ROOT"] == str(tmp_path / "state" / "services" / "front-envoy")
    assert proc.env["ENVOY_UID"] == "0"
    assert p.problems == []
    assert [s.name for s in p.services][0] == "front-envoy"


def test_plan_without_namespaces_says_so(tmp_path: Path) -> None:
    p = planmod.make_plan(SEED / "http-traffic-shifting", tmp_path / "state", check_ports=False, namespaces=False)
    assert p.service("demoapp-v1.0-1").processes[0].argv[1:3] == ["-m", "sluice.lab.apps.demoapp"]
    assert any("only Sluice resolves lab names" in x for x in p.problems)


def test_prepare_writes_hosts_files(tmp_path: Path) -> None:
    p = planmod.make_plan(SEED / "http-traffic-shifting", tmp_path / "state", check_ports=False, namespaces=False)
    planmod.prepare(p)
    lab_hosts = (tmp_path / "state" / "hosts").read_text()
    assert "127.31.55.2\tdemoapp-v1.0-1 http-traffic-shifting-demoapp-v1.0-1-1" in lab_hosts
    own = (tmp_path / "state" / "services" / "demoapp-v1.0-1" / "etc" / "hosts").read_text()
    assert own.startswith("127.31.55.2\tlocalhost demoapp-v1.0-1\n")


def test_missing_mounted_file_is_an_error(tmp_path: Path) -> None:
    labdir = copy_lab("http-traffic-shifting", tmp_path)
    (labdir / "front-envoy.yaml").unlink()
    with pytest.raises(planmod.PlanError) as err:
        planmod.make_plan(labdir, tmp_path / "state", check_ports=False, namespaces=False)
    assert err.value.messages == [
        f"service 'front-envoy': volumes[0] './front-envoy.yaml:/etc/envoy/envoy.yaml': mounted file {labdir}/front-envoy.yaml does not exist"
    ]


def test_unknown_depends_on_is_an_error(tmp_path: Path) -> None:
    labdir = copy_lab("http-traffic-shifting", tmp_path)
    text = (
        (labdir / "docker-compose.yaml")
        .read_text()
        .replace("    hostname: demoapp-v1.0-1\n", "    hostname: demoapp-v1.0-1\n    depends_on: [nosuch]\n")
    )
    (labdir / "docker-compose.yaml").write_text(text)
    with pytest.raises(planmod.PlanError, match=r"service 'demoapp-v1.0-1': depends_on: unknown service 'nosuch'"):
        planmod.make_plan(labdir, tmp_path / "state", check_ports=False, namespaces=False)


def test_port_in_use_names_service_and_key(tmp_path: Path) -> None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    (tmp_path / "docker-compose.yaml").write_text(
        f"services:\n  web:\n    image: ikubernetes/demoapp:v1.0\n    environment: [PORT=18765]\n    ports: ['{port}:18765']\n"
    )
    try:
        with pytest.raises(planmod.PlanError) as err:
            planmod.make_plan(tmp_path, tmp_path / "state", namespaces=False)
    finally:
        s.close()
    (msg,) = err.value.messages
    assert msg.startswith(f"service 'web': ports '{port}:18765' (published on the host): 127.0.0.1:{port} is already in use by pid ")


def test_user_and_published_ports(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yaml").write_text(
        "services:\n  web:\n    image: ikubernetes/demoapp:v1.1\n    user: nobody\n    ports: ['18080:80', '10.0.0.1:18081:80']\n"
        "    ulimits: {nofile: 4096}\n"
    )
    p = planmod.make_plan(tmp_path, tmp_path / "state", check_ports=False, namespaces=False)
    web = p.service("web")
    assert [(f.listen, f.target) for f in web.forwards] == [
        (("127.0.0.1", 18080), (web.address, 80)),
        (("127.0.0.1", 18081), (web.address, 80)),
    ]
    assert "service 'web': user: 'nobody' not honoured; processes run as the current user" in p.problems
    assert "service 'web': ports '10.0.0.1:18081:80': published on 127.0.0.1, not 10.0.0.1" in p.problems
    argv = web.processes[0].argv
    assert argv[:2] == ["sh", "-c"] and "ulimit -H -n 4096" in argv[2]
