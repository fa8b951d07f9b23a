"""What runs for ``openzipkin/zipkin`` and ``jaegertracing/all-in-one`` (the stand-ins)."""

from __future__ import annotations

import sys
from pathlib import Path

from sluice.lab import compose, images, network

SEED = (Path(__file__).resolve().parents[4] / "labs").resolve()


def decide(project: compose.Project, name: str, tmp_path: Path) -> images.Decision:
    ad = network.allocate(project)
    ctx = images.ImageContext(project, project.services[name], ad.addresses[name], ad.hostnames[name], tmp_path / "root", {}, tmp_path)
    return images.decide(ctx)


def lab(tmp_path: Path, service: str) -> compose.Project:
    (tmp_path / "docker-compose.yaml").write_text(
        "services:\n" + service + "networks:\n  n:\n    ipam:\n      config:\n      - subnet: 172.31.9.0/24\n"
    )
    return compose.load(tmp_path, environ={})


def test_the_zipkin_lab(tmp_path: Path) -> None:
    d = decide(compose.load(SEED / "zipkin-tracing", environ={}), "zipkin", tmp_path)
    assert (d.program, d.not_running, d.problems) == ("zipkin stand-in (2)", None, [])
    (proc,) = d.processes
    assert proc.argv == [sys.executable, "-m", "sluice.lab.backends.zipkin", "--host", "127.31.85.15"]
    assert [(p.address, p.port) for p in proc.ports] == [("127.31.85.15", 9411)]


def test_the_jaeger_lab(tmp_path: Path) -> None:
    d = decide(compose.load(SEED / "jaeger-tracing", environ={}), "jaeger", tmp_path)
    assert (d.program, d.not_running, d.problems) == ("jaeger all-in-one stand-in (1.27)", None, [])
    (proc,) = d.processes
    assert proc.argv == [sys.executable, "-m", "sluice.lab.backends.zipkin", "--jaeger", "--host", "127.31.88.15",
                         "--collector.zipkin.host-port=9411", "--query.http-server.host-port=:16686", "--admin.http.host-port=:14269"]
    assert [(p.port, p.origin) for p in proc.ports] == [(9411, "jaeger zipkin collector"), (16686, "jaeger query"), (14269, "jaeger admin")]


def test_settings_and_what_is_not_honoured(tmp_path: Path) -> None:
    z = decide(lab(tmp_path, "  z:\n    image: openzipkin/zipkin-slim\n    environment: [QUERY_PORT=9412]\n    command: [x]\n"
                                "    networks:\n      n:\n        ipv4_address: 172.31.9.5\n"), "z", tmp_path)
    assert [p.port for p in z.processes[0].ports] == [9412]
    assert [p.message for p in z.problems] == ["not honoured for the zipkin image (it is configured by environment variables)"]
    j = decide(lab(tmp_path, "  j:\n    image: jaegertracing/all-in-one:1.27\n"
                                '    command: ["--collector.zipkin.host-port", ":9999", "--memory.max-traces=10"]\n    networks: [n]\n'),
               "j", tmp_path)
    assert [p.port for p in j.processes[0].ports] == [9999, 16686, 14269]
    assert [p.message for p in j.problems] == ["'--memory.max-traces=10' not honoured by the jaeger stand-in; dropped"]
    # Without COLLECTOR_ZIPKIN_HOST_PORT, 1.27 runs no Zipkin collector.
    j = decide(lab(tmp_path, "  j:\n    image: jaegertracing/all-in-one:1.27\n    networks: [n]\n"), "j", tmp_path)
    assert [p.port for p in j.processes[0].ports] == [16686, 14269]
