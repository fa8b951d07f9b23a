"""The statsd-exporter stand-in as a process, as the lab starts it: StatsD over TCP and UDP in,
``/metrics`` out, read with ``prometheus_client``'s text parser (a small parser of the same
format here when that package is not installed), plus the web paths and the TCP line limit."""

from __future__ import annotations

import gzip
import http.client
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

DEADLINE = 10.0


@dataclass
class Family:
    type: str = "untyped"
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def parse_text(text: str) -> dict[str, Family]:
    """The text format 0.0.4, by prometheus_client when it is installed."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        pass
    else:
        # It names a counter family without a _total suffix and each of its samples with one.
        return {
            f.name: Family(f.type, f.documentation, [(s.name, dict(s.labels), s.value) for s in f.samples])
            for f in text_string_to_metric_families(text)
        }
    families: dict[str, Family] = {}
    current: Family | None = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            current = families.setdefault(name, Family())
            current.help = _unescape(help_text)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            fam = families.pop(name, Family())
            fam.type = kind
            # Keyed as prometheus_client does: a counter's family without _total.
            families[name.removesuffix("_total") if kind == "counter" else name] = fam
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            labels = {k: _unescape(v) for k, v in _LABEL.findall(m.group(2) or "")}
            assert current is not None
            current.samples.append((m.group(1), labels, float(m.group(3))))
    return families


def value(fams: dict[str, Family], family: str, sample: str | None = None, **labels: str) -> float | None:
    """A sample's value (a counter's with or without ``_total``, as parsers differ on it)."""
    fam = fams.get(family) or fams.get(family.removesuffix("_total"))
    if fam is None:
        return None
    want = sample or family
    for name, lbs, v in fam.samples:
        same = name.removesuffix("_total") == want.removesuffix("_total") if fam.type == "counter" else name == want
        if same and lbs == labels:
            return v
    return None


class Exporter:
    def __init__(self, address: str) -> None:
        self.address = address
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sluice.lab.backends.statsd_exporter",
                f"--web.listen-address={address}:9102",
                f"--statsd.listen-udp={address}:9125",
                f"--statsd.listen-tcp={address}:9125",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.address, 9102, timeout=5)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                pytest.fail(f"the exporter exited with {self.proc.returncode}:\n{out}")
            try:
                if self.get("/-/ready")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail("the exporter did not answer /-/ready within 10 s")

    def metrics(self) -> dict[str, Family]:
        status, headers, body = self.get("/metrics")
        assert status == 200
        assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        return parse_text(body.decode())

    def until(self, check: object, what: str) -> dict[str, Family]:
        deadline = time.monotonic() + DEADLINE
        while True:
            fams = self.metrics()
            if check(fams):  # type: ignore[operator]
                return fams
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not seen in /metrics within 10 s")
            time.sleep(0.05)

    def tcp(self, data: bytes) -> None:
        with socket.create_connection((self.address, 9125), timeout=5) as s:
            s.sendall(data)

    def udp(self, data: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(data, (self.address, 9125))


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    address = f"127.88.{random.randint(1, 254)}.{random.randint(2, 254)}"
    ex = Exporter(address)
    try:
        ex.wait_ready()
        yield ex
    finally:
        if ex.proc.poll() is None:
            ex.proc.send_signal(signal.SIGTERM)
            try:
                ex.proc.wait(5)
            except subprocess.TimeoutExpired:
                ex.proc.kill()
                ex.proc.wait()
        if ex.proc.stdout:
            ex.proc.stdout.close()


def test_statsd_over_tcp_and_udp_scraped_as_prometheus_text(exporter: Exporter) -> None:
    exporter.tcp(b"front-envoy.cluster.colord.upstream_rq_2xx:3|c\r\nfront-envoy.cluster.colord.upstream_rq_time:120|ms\n")
    exporter.tcp(b"front-envoy.cluster.colord.upstream_rq_2xx:2|c\nfront-envoy.cluster.colord.upstream_rq_time:80|ms")
    exporter.udp(b"front-envoy.server.live:1|g\nfront-envoy.http.rq:4|c|#env:lab,tier:front\n\nfront-envoy.server.live:+1|g")

    def arrived(f: dict[str, Family]) -> bool:
        return (
            value(f, "front_envoy_server_live") == 2
            and value(f, "front_envoy_cluster_colord_upstream_rq_time", "front_envoy_cluster_colord_upstream_rq_time_count") == 2
        )

    fams = exporter.until(arrived, "the TCP and UDP lines")
    counter = fams["front_envoy_cluster_colord_upstream_rq_2xx"]
    assert (counter.type, counter.help) == ("counter", "Metric autogenerated by statsd_exporter.")
    assert value(fams, "front_envoy_cluster_colord_upstream_rq_2xx") == 5
    assert fams["front_envoy_server_live"].type == "gauge"
    assert value(fams, "front_envoy_http_rq", env="lab", tier="front") == 4
    timer = fams["front_envoy_cluster_colord_upstream_rq_time"]
    assert timer.type == "summary"
    name = "front_envoy_cluster_colord_upstream_rq_time"
    assert value(fams, name, name + "_sum") == pytest.approx(0.2)
    assert value(fams, name, quantile="0.99") == pytest.approx(0.12)
    assert {lb["quantile"] for n, lb, _ in timer.samples if n == name} == {"0.5", "0.9", "0.99"}
    # The exporter's own counters.
    assert value(fams, "statsd_exporter_tcp_connections_total") == 2
    assert value(fams, "statsd_exporter_udp_packets_total") == 1
    assert value(fams, "statsd_exporter_lines_total") == 8  # 4 over TCP, 4 pieces of the datagram
    assert value(fams, "statsd_exporter_events_total", type="counter") == 3
    assert value(fams, "statsd_exporter_events_total", type="observer") == 2
    assert fams["process_resident_memory_bytes"].type == "gauge"


def test_malformed_and_conflicting_input_is_counted_not_fatal(exporter: Exporter) -> None:
    exporter.udp(b"nocolon\nx:abc|c\nbad\xff:1|c\nthing:1|c\nthing:1|g\n" + b"y:1|s\n")
    fams = exporter.until(lambda f: value(f, "statsd_exporter_events_conflict_total", type="gauge") == 1, "the conflict")
    # Parse errors are counted as lines arrive, events once the queue flushes (the conflict).
    assert value(fams, "statsd_exporter_sample_errors_total", reason="malformed_line") == 2
    assert value(fams, "statsd_exporter_sample_errors_total", reason="malformed_value") == 1
    assert value(fams, "statsd_exporter_sample_errors_total", reason="illegal_event") == 1
    assert value(fams, "thing") == 1
    assert exporter.proc.poll() is None


def test_tcp_line_over_4096_bytes_closes_the_connection(exporter: Exporter) -> None:
    with socket.create_connection((exporter.address, 9125), timeout=5) as s:
        s.sendall(b"ok.before:1|c\n" + b"x" * 5000)
        s.settimeout(5)
        assert s.recv(1) == b""  # closed by the exporter
    # The line before it still counts (events reach the registry with the queue's next flush).
    fams = exporter.until(lambda f: value(f, "ok_before") == 1, "the line before the too-long one")
    assert value(fams, "statsd_exporter_tcp_too_long_lines_total") == 1


def test_web_paths(exporter: Exporter) -> None:
    assert exporter.get("/-/healthy")[::2] == (200, b"Statsd Exporter is Healthy.\n")
    assert exporter.get("/-/ready")[::2] == (200, b"Statsd Exporter is Ready.\n")
    status, headers, body = exporter.get("/")
    assert status == 200 and b'<a href="/metrics">Metrics</a>' in body and headers["content-type"].startswith("text/html")
    status, headers, body = exporter.get("/metrics", {"Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip"
    assert b"# TYPE statsd_exporter_lines_total counter" in gzip.decompress(body)


def test_sigterm_exits_cleanly(exporter: Exporter) -> None:
    exporter.proc.send_signal(signal.SIGTERM)
    assert exporter.proc.wait(5) == 0
