"""What runs for ``prom/statsd-exporter`` (the stand-in) and ``prom/prometheus`` (the real one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.lab import compose, images, network

SEED = (Path(__file__).resolve().parents[3] / "labs").resolve()


def decide(project: compose.Project, name: str, tmp_path: Path) -> images.Decision:
    ad = network.allocate(project)
    svc = project.services[name]
    mounts = {m.target: str((project.directory / m.source).resolve()) for m in svc.volumes if m.kind == "bind"}
    ctx = images.ImageContext(project, svc, ad.addresses[name], ad.hostnames[name], tmp_path / "root", mounts, tmp_path)
    return images.decide(ctx)


def lab(tmp_path: Path, services: str) -> compose.Project:
    (tmp_path / "docker-compose.yaml").write_text(
        "services:\n" + services + "networks:\n  n:\n    ipam:\n      config:\n      - subnet: 172.31.9.0/24\n"
    )
    (tmp_path / "prom.yaml").write_text("scrape_configs: []\n")
    return compose.load(tmp_path, environ={})


@pytest.fixture
def prometheus_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    binary = tmp_path / "bin" / "prometheus"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setattr(images, "PROMETHEUS_BINARY", str(binary))
    return binary


@pytest.mark.parametrize("name", ["statsd-sink-and-prometheus", "monitoring"])
def test_the_labs_exporter_listens_on_its_own_address(name: str, tmp_path: Path) -> None:
    project = compose.load(SEED / name, environ={})
    d = decide(project, "statsd_exporter", tmp_path)
    assert d.not_running is None and len(d.processes) == 1
    p = d.processes[0]
    assert p.argv[1:3] == ["-m", "sluice.lab.backends.statsd_exporter"]
    addr = network.allocate(project).addresses["statsd_exporter"]
    assert p.argv[3:] == [f"--web.listen-address={addr}:9102", f"--statsd.listen-udp={addr}:9125", f"--statsd.listen-tcp={addr}:9125"]
    assert [(x.address, x.port) for x in p.ports] == [(addr, 9102), (addr, 9125)]


def test_exporter_command_flags_are_honoured(tmp_path: Path) -> None:
    project = lab(
        tmp_path,
        "  se:\n    image: prom/statsd-exporter:v0.22.3\n"
        '    command: ["statsd_exporter", "--web.listen-address", ":9200", "--statsd.listen-tcp=", "--log.level=debug"]\n'
        "    networks:\n      n:\n        ipv4_address: 172.31.9.5\n",
    )
    d = decide(project, "se", tmp_path)
    argv = d.processes[0].argv[3:]
    assert argv == ["--web.listen-address=127.31.9.5:9200", "--statsd.listen-tcp=", "--log.level=debug", "--statsd.listen-udp=127.31.9.5:9125"]
    assert [x.port for x in d.processes[0].ports] == [9200]


def test_exporter_command_naming_another_program(tmp_path: Path) -> None:
    project = lab(tmp_path, "  se:\n    image: prom/statsd-exporter\n    command: sh -c true\n    networks: [n]\n")
    assert "is not a statsd_exporter command line" in (decide(project, "se", tmp_path).not_running or "")


@pytest.mark.parametrize("name", ["statsd-sink-and-prometheus", "monitoring"])
def test_the_labs_prometheus(name: str, tmp_path: Path, prometheus_installed: Path) -> None:
    project = compose.load(SEED / name, environ={})
    d = decide(project, "prometheus", tmp_path)
    assert d.not_running is None
    p = d.processes[0]
    addr = network.allocate(project).addresses["prometheus"]
    assert p.argv == [
        str(prometheus_installed),
        f"--config.file={SEED / name / 'prometheus' / 'config.yaml'}",
        f"--storage.tsdb.path={tmp_path / 'root' / 'prometheus' / 'data'}",
        f"--web.listen-address={addr}:9090",
    ]
    assert [(x.address, x.port) for x in p.ports] == [(addr, 9090)]


def test_prometheus_flags_and_the_images_default_command(tmp_path: Path, prometheus_installed: Path) -> None:
    project = lab(
        tmp_path,
        "  p:\n    image: prom/prometheus:v2.30.3\n"
        "    volumes: ['./prom.yaml:/etc/prometheus/prometheus.yml', './tsdb:/prometheus']\n"
        "    networks:\n      n:\n        ipv4_address: 172.31.9.7\n"
        "  q:\n    image: prom/prometheus\n"
        "    volumes: ['./prom.yaml:/etc/p.yml']\n"
        "    command: ['--config.file', '/etc/p.yml', '--storage.tsdb.path=tsdb', '--web.listen-address=0.0.0.0:9091', '--web.enable-lifecycle']\n"
        "    networks:\n      n:\n        ipv4_address: 172.31.9.8\n",
    )
    d = decide(project, "p", tmp_path)
    assert d.processes[0].argv[1:] == [
        f"--config.file={tmp_path / 'prom.yaml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        "--web.console.libraries=/etc/prometheus/console_libraries",
        "--web.console.templates=/etc/prometheus/consoles",
        "--web.listen-address=127.31.9.7:9090",
    ]
    d = decide(project, "q", tmp_path)
    assert d.processes[0].argv[1:] == [
        f"--config.file={tmp_path / 'prom.yaml'}",
        f"--storage.tsdb.path={tmp_path / 'root' / 'prometheus' / 'tsdb'}",
        "--web.listen-address=127.31.9.8:9091",
        "--web.enable-lifecycle",
    ]
    assert [x.port for x in d.processes[0].ports] == [9091]


def test_prometheus_without_its_config(tmp_path: Path, prometheus_installed: Path) -> None:
    project = lab(tmp_path, "  p:\n    image: prom/prometheus\n    networks: [n]\n")
    assert "no prometheus config mounted" in (decide(project, "p", tmp_path).not_running or "")


def test_missing_prometheus_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "PROMETHEUS_BINARY", str(tmp_path / "no" / "prometheus"))
    project = compose.load(SEED / "monitoring", environ={})
    d = decide(project, "prometheus", tmp_path)
    assert d.processes == []
    assert d.not_running == f"{tmp_path / 'no' / 'prometheus'} is not installed (install it with: apt-get install prometheus)"
