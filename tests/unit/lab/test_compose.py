"""The compose reader: every seed lab parses; what is not honoured is reported by service and key."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.lab import compose

SEED = Path(__file__).resolve().parents[3] / "labs"
MANIFEST = Path(__file__).resolve().parents[2] / "golden" / "seed-labs.sha256"


def seed_labs() -> list[Path]:
    return sorted(p for p in SEED.iterdir() if p.is_dir())


def parse(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> compose.Project:
    (tmp_path / "docker-compose.yaml").write_text(text)
    return compose.load(tmp_path, environ=environ or {})


@pytest.mark.parametrize("lab", seed_labs(), ids=lambda p: p.name)
def test_every_seed_lab_parses_without_problems(lab: Path) -> None:
    project = compose.load(lab, environ={})
    assert project.name == lab.name
    assert project.services
    assert project.problems == []
    order = project.start_order()
    for name, svc in project.services.items():
        for dep in compose.dependencies(svc):
            assert order.index(dep) < order.index(name)


def test_shipped_labs_are_the_seed_unchanged() -> None:
    """``labs/`` is the course's files byte for byte: the manifest holds the SHA-256 of every
    file as extracted from the course (recorded when they were copied in)."""
    want = {name: digest for digest, name in (line.split("  ", 1) for line in MANIFEST.read_text().splitlines())}
    have = {
        str(f.relative_to(SEED)): hashlib.sha256(f.read_bytes()).hexdigest()
        for lab in seed_labs()
        for f in lab.rglob("*")
        if f.is_file() and ".sluice-lab" not in f.relative_to(lab).parts  # the runner's state, git-ignored
    }
    assert len(want) >= 99
    assert have == want


def test_yml_and_network_mode(tmp_path: Path) -> None:
    project = compose.load(SEED / "jaeger-tracing", environ={})
    assert project.file.name == "docker-compose.yml"
    a = project.services["service_a"]
    assert a.build is not None and a.build.context.endswith("jaeger-tracing/service_a")
    assert a.shares_network_of == "service_a_envoy" and a.networks == {}
    assert a.depends_on == ("service_a_envoy",)
    front = project.services["front-envoy"]
    assert [(p.host_port, p.container_port) for p in front.ports] == [(8080, 80), (9901, 9901)]
    assert [(p.host_port, p.container_port) for p in project.services["service_a_envoy"].ports] == [
        (None, 8786),
        (None, 8788),
        (None, 8791),
    ]


def test_efk_lab_details() -> None:
    project = compose.load(SEED / "accesslog-with-efk", environ={})
    front = project.services["front-envoy"]
    assert front.container_name == "front-envoy"
    assert [(m.kind, m.source, m.target) for m in front.volumes] == [
        ("bind", "./front-envoy.yaml", "/etc/envoy/envoy.yaml"),
        ("bind", "./logs/envoy", "/logs/envoy"),
    ]
    es = project.services["elasticsearch"]
    assert es.ulimits == {"memlock": (-1, -1)}
    assert es.environment["discovery.type"] == "single-node"  # list form
    assert [(m.kind, m.source) for m in es.volumes] == [("volume", "elasticsearch_data")]
    kibana = project.services["kibana"]
    assert kibana.environment == {
        "ELASTICSEARCH_URL": "http://myes01:9200",
        "ELASTICSEARCH_HOSTS": '["http://myes01:9200"]',
    }  # mapping form
    fb = project.services["filebeat"]
    assert fb.user == "root" and fb.command == ("--strict.perms=false",)
    assert fb.volumes[1].read_only
    assert project.volumes == ("elasticsearch_data",)


def test_unknown_keys_are_reported_by_service_and_key(tmp_path: Path) -> None:
    p = parse(
        """
services:
  web:
    image: ikubernetes/demoapp:v1.0
    healthcheck: {test: ["CMD", "true"]}
    deploy: {replicas: 2}
    networks:
      mesh:
        priority: 3
networks:
  mesh: {}
secrets: {}
x-common: {a: 1}
""",
        tmp_path,
    )
    got = sorted(str(x) for x in p.problems)
    assert got == [
        "secrets: top-level key not supported; ignored",
        "service 'web': deploy: not supported; ignored",
        "service 'web': healthcheck: not supported; ignored",
        "service 'web': networks.mesh.priority: not supported; ignored",
    ]


def test_environment_forms_and_interpolation(tmp_path: Path) -> None:
    p = parse(
        """
services:
  a:
    image: x
    environment:
      - A=1
      - B=two=2
      - FROM_HOST
      - MISSING
  b:
    image: x
    environment:
      N: 3
      T: true
      E: ""
      H:
      V: ${TAG:-v9}-$TAG-$$HOME
""",
        tmp_path,
        environ={"FROM_HOST": "h", "H": "hh", "TAG": "t"},
    )
    assert p.services["a"].environment == {"A": "1", "B": "two=2", "FROM_HOST": "h"}
    assert p.services["b"].environment == {"N": "3", "T": "true", "E": "", "H": "hh", "V": "t-t-$HOME"}


def test_yaml_1_2_scalars(tmp_path: Path) -> None:
    p = parse(
        """
services:
  a:
    image: x
    restart: no
    ports:
      - 22:22
      - 127.0.0.1:8080:80/tcp
      - "5353:53/udp"
      - target: 81
        published: 8081
""",
        tmp_path,
    )
    a = p.services["a"]
    assert a.restart == "no"
    assert [(x.host_ip, x.host_port, x.container_port, x.protocol) for x in a.ports] == [
        ("", 22, 22, "tcp"),
        ("127.0.0.1", 8080, 80, "tcp"),
        ("", 5353, 53, "udp"),
        ("", 8081, 81, "tcp"),
    ]
    assert [str(x) for x in p.problems] == ["service 'a': ports '5353:53/udp': udp is not forwarded (TCP only)"]


def test_volumes_forms(tmp_path: Path) -> None:
    p = parse(
        """
services:
  a:
    image: x
    volumes:
      - ./conf.yaml:/etc/app/conf.yaml:ro
      - data:/var/lib/data
      - /cache
      - type: bind
        source: ./logs
        target: /logs
volumes:
  data:
""",
        tmp_path,
    )
    assert [(m.kind, m.source, m.target, m.read_only) for m in p.services["a"].volumes] == [
        ("bind", "./conf.yaml", "/etc/app/conf.yaml", True),
        ("volume", "data", "/var/lib/data", False),
        ("anonymous", "", "/cache", False),
        ("bind", "./logs", "/logs", False),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"a": {"image": "x", "depends_on": ["nope"]}}, "service 'a': depends_on: unknown service 'nope'"),
        ({"a": {"image": "x", "network_mode": "service:nope"}}, "service 'a': network_mode: unknown service 'nope'"),
        ({"a": {"image": "x", "depends_on": ["b"]}, "b": {"image": "x", "depends_on": ["a"]}}, "depends_on: dependency cycle"),
        ({"a": {"image": "x", "volumes": ["data:/d"]}}, "service 'a': volumes[0]: named volume 'data' is not declared"),
        ({"a": {"image": "x", "networks": ["other"]}}, "service 'a': networks: network 'other' is not declared"),
        ({"a": {"image": "x", "restart": "sometimes"}}, "service 'a': restart: unknown policy 'sometimes'"),
        ({"a": {"environment": []}}, "service 'a': image: a service needs an image or a build"),
    ],
)
def test_errors_name_service_and_key(tmp_path: Path, body: dict[str, Any], message: str) -> None:
    with pytest.raises(compose.ComposeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(yaml.safe_dump({"services": body}), tmp_path)


def test_default_network_and_project_name(tmp_path: Path) -> None:
    lab = tmp_path / "My Lab"
    lab.mkdir()
    (lab / "docker-compose.yml").write_text("services:\n  a:\n    image: x\n")
    p = compose.load(lab, environ={})
    assert p.name == "mylab"
    assert list(p.services["a"].networks) == ["default"]
    assert "default" in p.networks
    assert p.container_name("a") == "mylab-a-1"


def test_restart_on_failure_count(tmp_path: Path) -> None:
    p = parse("services:\n  a:\n    image: x\n    restart: on-failure:3\n", tmp_path)
    assert (p.services["a"].restart, p.services["a"].restart_max) == ("on-failure", 3)
