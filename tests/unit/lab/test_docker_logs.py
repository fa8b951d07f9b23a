"""The lab runner as a Docker engine on disk: json-file logs and config.v2.json for a lab that
mounts /var/lib/docker, and the plan mounting the lab's own folder there."""

from __future__ import annotations

import json
from pathlib import Path

from sluice.lab import compose, docker_logs, plan

SEED = (Path(__file__).resolve().parents[3] / "labs").resolve()


def test_json_file_lines_as_docker_writes_them(tmp_path: Path) -> None:
    log = docker_logs.JsonFileLog(tmp_path / "x-json.log")
    log.feed("stdout", b"first line\nsecond ")
    log.feed("stderr", b"an error\n")
    log.feed("stdout", b"part\n" + b"y" * (docker_logs.DOCKER_LINE_MAX + 10) + b"\n")
    log.feed("stdout", "caf\u00e9 no newline".encode())
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "x-json.log").read_text().splitlines()]
    assert [(d["stream"], d["log"][:20]) for d in lines] == [
        ("stdout", "first line\n"), ("stderr", "an error\n"), ("stdout", "second part\n"),
        ("stdout", "y" * 20), ("stdout", "y" * 10 + "\n"), ("stdout", "café no newline"),
    ]  # fmt: skip
    assert len(lines[3]["log"]) == docker_logs.DOCKER_LINE_MAX  # a partial piece, no newline
    assert all(d["time"].endswith("Z") and len(d["time"]) == 30 for d in lines)
    assert list(lines[0]) == ["log", "stream", "time"]


def test_config_v2_names_the_container(tmp_path: Path) -> None:
    cid = docker_logs.container_id("proj", "front-envoy")
    assert len(cid) == 64 and cid == docker_logs.container_id("proj", "front-envoy")
    path = docker_logs.write_config(tmp_path, cid=cid, name="front-envoy", image="envoyproxy/envoy-alpine:v1.21-latest",
                                    hostname="h", project="proj", service="front-envoy", working_dir="/lab",
                                    config_file="/lab/docker-compose.yaml")  # fmt: skip
    assert path == tmp_path / "containers" / cid / f"{cid}-json.log"
    doc = json.loads((path.parent / "config.v2.json").read_text())
    assert (doc["ID"], doc["Name"], doc["Config"]["Image"]) == (cid, "/front-envoy", "envoyproxy/envoy-alpine:v1.21-latest")
    assert doc["Config"]["Labels"]["com.docker.compose.service"] == "front-envoy"


def test_a_lab_mounting_var_lib_docker_gets_its_own(tmp_path: Path) -> None:
    project = compose.load(SEED / "container-log-with-efk", environ={})
    p = plan.make_plan(SEED / "container-log-with-efk", tmp_path, project=project, check_ports=False, namespaces=False)
    assert p.docker_dir == str(tmp_path / "docker")
    fb = p.service("filebeat")
    env = next(pr.env for pr in fb.processes)
    assert json.loads(env["SLUICE_FS_MOUNTS"])["/var/lib/docker"] == str(tmp_path / "docker")
    assert any("mounted for /var/lib/docker" in line for line in p.problems)
    other = plan.make_plan(SEED / "accesslog-with-efk", tmp_path / "b", check_ports=False, namespaces=False)
    assert other.docker_dir is None
