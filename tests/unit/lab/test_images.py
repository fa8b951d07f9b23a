"""The image registry: which local program stands in for each image, and why not when none."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sluice.lab import compose, gobuild, images, network

SEED = (Path(__file__).resolve().parents[3] / "labs").resolve()


def ctx_for(project: compose.Project, name: str, tmp_path: Path) -> images.ImageContext:
    ad = network.allocate(project)
    svc = project.services[name]
    mounts = {}
    for m in svc.volumes:
        if m.kind == "bind":
            mounts[m.target] = str((project.directory / m.source).resolve())
    return images.ImageContext(project, svc, ad.addresses[name], ad.hostnames[name], tmp_path / "root", mounts, tmp_path)


def lab(tmp_path: Path, text: str, files: dict[str, str] | None = None) -> compose.Project:
    (tmp_path / "docker-compose.yaml").write_text(text)
    for name, body in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    return compose.load(tmp_path, environ={})


ENVOY_YAML = """
admin:
  address: {socket_address: {address: 0.0.0.0, port_value: 9901}}
static_resources:
  listeners:
  - name: l0
    address: {socket_address: {address: 0.0.0.0, port_value: 80}}
  - name: l1
    address: {socket_address: {address: 127.0.0.1, port_value: 8001}}
"""


def test_split_image() -> None:
    assert images.split_image("envoyproxy/envoy-alpine:v1.21-latest") == ("envoyproxy/envoy-alpine", "v1.21-latest")
    assert images.split_image("docker.io/library/nginx") == ("nginx", "latest")
    assert images.split_image("localhost:5000/x/y:2") == ("localhost:5000/x/y", "2")


def test_envoy_image_runs_sluice_with_the_mounted_config(tmp_path: Path) -> None:
    project = compose.load(SEED / "http-traffic-shifting", environ={})
    d = images.decide(ctx_for(project, "front-envoy", tmp_path))
    assert d.not_running is None and d.program == "sluice"
    (proc,) = d.processes
    # The container path is passed; Sluice maps it through SLUICE_FS_MOUNTS like any other path.
    assert proc.argv == [sys.executable, "-m", "sluice", "-c", "/etc/envoy/envoy.yaml"]
    assert [(p.address, p.port) for p in proc.ports] == [("127.31.55.10", 9901), ("127.31.55.10", 80)]


def test_envoy_command_flags(tmp_path: Path) -> None:
    project = lab(
        tmp_path,
        """
services:
  e:
    image: envoyproxy/envoy:v1.20.0
    volumes: [./cfg/e.yaml:/etc/envoy/custom.yaml]
    command: ["-c", "/etc/envoy/custom.yaml", "--service-cluster", "front", "-l", "debug", "--component-log-level", "upstream:debug", "--hot-restart-version"]
""",
        {"cfg/e.yaml": ENVOY_YAML},
    )
    d = images.decide(ctx_for(project, "e", tmp_path))
    (proc,) = d.processes
    assert proc.argv[3:] == ["-c", "/etc/envoy/custom.yaml", "--service-cluster", "front", "--log-level", "debug"]
    assert [str(p) for p in d.problems] == [
        "service 'e': command: envoy flag --component-log-level not supported by Sluice; dropped",
        "service 'e': command: envoy argument '--hot-restart-version' not supported by Sluice; dropped",
    ]
    ports = [(p.address, p.port) for p in proc.ports]
    # 127.0.0.1 is the service's own loopback: Sluice binds its address (SLUICE_LOCALHOST_ADDRESS).
    assert ports[0][1] == 9901 and (ports[0][0], 8001) in ports


def test_envoy_without_a_config_is_not_running(tmp_path: Path) -> None:
    project = lab(tmp_path, "services:\n  e:\n    image: envoyproxy/envoy-alpine:v1.21-latest\n")
    d = images.decide(ctx_for(project, "e", tmp_path))
    assert d.processes == [] and d.not_running is not None and "nothing is mounted" in d.not_running
    project = lab(tmp_path, "services:\n  e:\n    image: envoyproxy/envoy:v1\n    command: sh -c 'envoy -c x'\n")
    d = images.decide(ctx_for(project, "e", tmp_path))
    assert d.not_running == "command: 'sh -c envoy -c x' is not an envoy command line"


def test_demoapp(tmp_path: Path) -> None:
    project = compose.load(SEED / "http-traffic-shifting", environ={})
    d = images.decide(ctx_for(project, "demoapp-v1.1-2", tmp_path))
    (proc,) = d.processes
    assert proc.argv[1:] == [
        "-m",
        "sluice.lab.apps.demoapp",
        "--host",
        "127.31.55.6",
        "--port",
        "80",
        "--name",
        "demoapp-v1.1-2",
        "--version",
        "v1.1",
    ]
    project = lab(tmp_path, "services:\n  d:\n    image: ikubernetes/demoapp:v1.0\n    environment: [PORT=8080]\n")
    (proc,) = images.decide(ctx_for(project, "d", tmp_path)).processes
    assert proc.argv[proc.argv.index("--port") + 1] == "8080" and proc.ports[0].port == 8080


def test_servicemesh_app_runs_app_and_sidecar(tmp_path: Path) -> None:
    project = compose.load(SEED / "fault-injection", environ={})
    blue = images.decide(ctx_for(project, "service_blue", tmp_path))
    app, sidecar = blue.processes
    assert app.argv[1:] == ["-m", "sluice.lab.apps.colored", "--host", "127.31.62.2", "--port", "8080"]
    assert sidecar.argv[1:] == ["-m", "sluice", "-c", "/etc/envoy/envoy.yaml"]
    assert sidecar.env == {}  # the mounted fault-injection config is reached through the volumes
    assert {p.port for p in sidecar.ports} == {80, 9901}
    green = images.decide(ctx_for(project, "service_green", tmp_path))
    _, sidecar = green.processes
    mounts = json.loads(sidecar.env["SLUICE_FS_MOUNTS"])
    assert mounts["/etc/envoy/envoy.yaml"] == str(images.SIDECAR_DEFAULT)  # the image's own sidecar config


def test_unknown_images_say_why(tmp_path: Path) -> None:
    project = lab(tmp_path, "services:\n  p:\n    image: example/no-local-program:v1\n")
    d = images.decide(ctx_for(project, "p", tmp_path))
    assert d.processes == [] and d.not_running == "image example/no-local-program:v1 has no local program yet"


def test_registry_is_extensible(tmp_path: Path) -> None:
    project = lab(tmp_path, "services:\n  p:\n    image: prom/statsd-exporter:v0.22.3\n")

    def factory(ctx: images.ImageContext, tag: str) -> images.Decision:
        return images.Decision(f"statsd {tag}", [images.Process("main", ["true"])])

    images.register("prom/statsd-exporter:*", factory)
    try:
        assert images.decide(ctx_for(project, "p", tmp_path)).program == "statsd v0.22.3"
    finally:
        images._REGISTRY.remove(("prom/statsd-exporter:*", factory))


def test_go_build_falls_back_to_the_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gobuild, "go_toolchain", lambda: None)
    project = compose.load(SEED / "monitoring", environ={})
    d = images.decide(ctx_for(project, "service_a", tmp_path))
    (proc,) = d.processes
    main_go = str(SEED / "monitoring" / "service_a" / "main.go")
    assert proc.argv[1:] == [
        "-m",
        "sluice.lab.apps.mesh_service",
        "--main-go",
        main_go,
        "--host",
        network.allocate(project).addresses["service_a"],
    ]
    assert [p.port for p in proc.ports] == [8081]
    assert "running the built-in stand-in" in str(d.problems[0])


def test_go_sources() -> None:
    found = gobuild.inspect_build(SEED / "zipkin-tracing" / "service_b")
    assert isinstance(found, gobuild.GoProgram) and found.ports == (8082,)
    src = found.main_go.read_text()
    out = gobuild.localized_source(src, "127.31.85.3")
    assert 'ListenAndServe("127.31.85.3:8082", nil)' in out
    assert out.replace("127.31.85.3", "") == src


def test_unknown_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text('FROM python\nCMD ["python", "app.py"]\n')
    assert gobuild.inspect_build(tmp_path) == "Dockerfile runs 'python app.py'; only 'go run main.go' builds are runnable"


def test_filebeat_image_runs_the_stand_in_with_the_labs_flags(tmp_path: Path) -> None:
    project = compose.load(SEED / "accesslog-with-efk", environ={})
    d = images.decide(ctx_for(project, "filebeat", tmp_path))
    assert d.not_running is None and d.program == "filebeat stand-in (7.14.2)"
    (proc,) = d.processes
    assert proc.argv == [
        sys.executable, "-m", "sluice.lab.backends.filebeat", "-e", "--path.home=/usr/share/filebeat", "--strict.perms=false",
    ]  # fmt: skip
    assert proc.ports == []


def test_filebeat_command_naming_another_program_is_refused(tmp_path: Path) -> None:
    project = lab(tmp_path, "services:\n  fb:\n    image: docker.elastic.co/beats/filebeat:7.14.2\n    command: [sh, -c, x]\n")
    d = images.decide(ctx_for(project, "fb", tmp_path))
    assert d.processes == [] and d.not_running == "command: 'sh -c x' is not a filebeat command line"
    project = lab(tmp_path, "services:\n  fb:\n    image: docker.elastic.co/beats/filebeat:7.14.2\n    command: [filebeat, -e]\n")
    (proc,) = images.decide(ctx_for(project, "fb", tmp_path)).processes
    assert proc.argv[-1] == "-e" and "filebeat" not in proc.argv[3:]


def test_elasticsearch_image_gets_the_compose_settings_as_options(tmp_path: Path) -> None:
    project = compose.load(SEED / "accesslog-with-efk", environ={})
    d = images.decide(ctx_for(project, "elasticsearch", tmp_path))
    assert d.not_running is None and d.program == "elasticsearch stand-in (7.14.2)"
    (proc,) = d.processes
    assert proc.argv[:3] == [sys.executable, "-m", "sluice.lab.backends.elasticsearch"]
    # (ES_JAVA_OPTS is not a setting: only dotted names become -E options, as in the image)
    assert proc.argv[3:] == ["-Ediscovery.type=single-node", "-Ecluster.name=myes", "-Enode.name=myes01"]
    assert [(p.address, p.port) for p in proc.ports] == [("127.31.76.15", 9200)]


def test_kibana_image_runs_the_stand_in_on_5601(tmp_path: Path) -> None:
    project = compose.load(SEED / "accesslog-with-efk", environ={})
    (proc,) = images.decide(ctx_for(project, "kibana", tmp_path)).processes
    assert proc.argv == [sys.executable, "-m", "sluice.lab.backends.kibana", "--host", "127.31.76.16", "--port", "5601"]
    assert [(p.address, p.port) for p in proc.ports] == [("127.31.76.16", 5601)]
