"""A metrics lab end to end: ``prom/statsd-exporter`` (the stand-in) and ``prom/prometheus`` (the
real one, Debian's) in a compose file of their own, Prometheus scraping ``statsd_exporter:9102``
and itself at ``localhost:9090`` by the lab's names (its own /etc/hosts), and this test as the
StatsD client. Whatever arrives is asserted through Prometheus's HTTP API, within bounded time."""

from __future__ import annotations

import json
import random
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from labkit import get, requires_lab

from sluice.lab import images

pytestmark = requires_lab

DEADLINE = 30.0

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: 'prometheus'
    static_configs:
      - targets: ['localhost:9090']
  - job_name: 'statsd'
    static_configs:
      - targets: ['statsd_exporter:9102']
        labels:
          group: 'services'
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def metrics_lab(tmp_path: Path) -> tuple[Path, str, str, int]:
    if not Path(images.PROMETHEUS_BINARY).is_file():
        pytest.fail(
            f"{images.PROMETHEUS_BINARY} is missing: the metrics labs run the real Prometheus (scripts/test.sh installs it: apt-get install prometheus)"
        )
    net = random.randint(150, 250)
    exporter, prometheus = f"172.31.{net}.6", f"172.31.{net}.7"
    published = free_port()
    d = tmp_path / "metricslab"
    (d / "prometheus").mkdir(parents=True)
    (d / "prometheus" / "config.yaml").write_text(PROMETHEUS_CONFIG)
    (d / "docker-compose.yaml").write_text(
        f"""\
version: '3.3'
services:
  statsd_exporter:
    image: prom/statsd-exporter:v0.22.3
    networks:
      envoymesh:
        ipv4_address: {exporter}
        aliases: [statsd_exporter]
    ports:
    - "127.0.0.1:{published}:9125"
  prometheus:
    image: prom/prometheus:v2.30.3
    volumes:
    - "./prometheus/config.yaml:/etc/prometheus.yaml"
    networks:
      envoymesh:
        ipv4_address: {prometheus}
        aliases: [prometheus]
    command: "--config.file=/etc/prometheus.yaml"
networks:
  envoymesh:
    ipam:
      config:
        - subnet: 172.31.{net}.0/24
"""
    )
    return d, exporter.replace("172.", "127.", 1), prometheus.replace("172.", "127.", 1), published


def query(address: str, promql: str) -> list[dict[str, Any]]:
    status, body = get(address, "/api/v1/query?" + urllib.parse.urlencode({"query": promql}), port=9090)
    assert status == 200, body
    data = json.loads(body)
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def until(address: str, promql: str, what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            result = query(address, promql)
        except OSError:
            result = []
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: Prometheus has no result for {promql!r} after {DEADLINE:g} s")
        time.sleep(0.2)


def test_prometheus_scrapes_the_exporter_by_the_labs_names(make_lab: Any, tmp_path: Path) -> None:
    d, exporter, prometheus, published = metrics_lab(tmp_path)
    lab = make_lab(d)
    r, _ = lab.up()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[+] 2/2 services running" in r.stdout, r.stdout

    # The fake StatsD client: a counter over TCP through the published port, a timer and a
    # tagged gauge over UDP to the exporter's own address.
    with socket.create_connection(("127.0.0.1", published), timeout=5) as s:
        s.sendall(b"front-envoy.cluster.colord.upstream_rq_2xx:3|c\nfront-envoy.cluster.colord.upstream_rq_2xx:4|c\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"front-envoy.cluster.colord.upstream_rq_time:250|ms\nfront-envoy.server.live:1|g|#zone:a", (exporter, 9125))

    series = until(prometheus, "front_envoy_cluster_colord_upstream_rq_2xx", "the counter sent over TCP")
    assert len(series) == 1
    assert series[0]["metric"] == {
        "__name__": "front_envoy_cluster_colord_upstream_rq_2xx",
        "group": "services",
        "instance": "statsd_exporter:9102",
        "job": "statsd",
    }
    assert series[0]["value"][1] == "7"
    timer = until(prometheus, 'front_envoy_cluster_colord_upstream_rq_time{quantile="0.99"}', "the timer sent over UDP")
    assert float(timer[0]["value"][1]) == pytest.approx(0.25)
    assert until(prometheus, "front_envoy_cluster_colord_upstream_rq_time_count", "the timer's count")[0]["value"][1] == "1"
    gauge = until(prometheus, "front_envoy_server_live", "the gauge")
    assert gauge[0]["metric"]["zone"] == "a"

    # Both targets are up: names resolved through the lab's hosts file, localhost included
    # (its first scrape may come up to a scrape interval later).
    for job in ("statsd", "prometheus"):
        until(prometheus, f'up{{job="{job}"}} == 1', f"the {job} target up")

    ps = lab.cli("ps").stdout
    assert "statsd_exporter stand-in (v0.22.3)" in ps and f"prometheus ({images.PROMETHEUS_BINARY})" in ps
    # Its TSDB lives in the lab's state folder.
    assert (lab.state_dir / "services" / "prometheus" / "prometheus" / "data").is_dir()
