"""The stand-ins as the lab runner starts them: ``python -m sluice.lab.backends.zipkin``, a
real socket (chunked bodies as Envoy sends them, gzip, the 413 bound), SIGTERM, and spans that
survive a restart."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from zipkin_kit import posts

ROOT = Path(__file__).resolve().parents[4]


class Proc:
    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        environ.update(env or {}, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.lab.backends.zipkin", "--host", "127.0.0.1", "--data", str(data), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environ, text=True,
        )
        assert self.proc.stderr is not None
        self.banner = self.proc.stderr.readline()
        assert self.banner, "the stand-in exited before its start line"

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    out = resp.status, resp.read()
    conn.close()
    return out


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_zipkin_process(tmp_path: Path) -> None:
    z = Proc(tmp_path)
    try:
        m = re.search(r"Serving HTTP at /127\.0\.0\.1:(\d+) - http://127\.0\.0\.1:\d+/", z.banner)
        assert m, z.banner
        port = int(m.group(1))
        t01, t10 = posts("zipkin", "T01_plain"), posts("zipkin", "T10_fault_abort_b")
        # Envoy's reporter: chunked, one connection per report, no Content-Length.
        body = json.dumps(t01[0]).encode()
        head = b"POST /api/v2/spans HTTP/1.1\r\nHost: zipkin\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        answer = raw_exchange(port, head + b"Connection: close\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        assert answer.startswith(b"HTTP/1.1 202 Accepted\r\n") and answer.endswith(b"content-length: 0\r\nconnection: close\r\n\r\n")
        for batch in t01[1:]:
            assert request(port, "POST", "/api/v2/spans", json.dumps(batch).encode(), {"Content-Type": "application/json"}) == (202, b"")
        gz = gzip.compress(json.dumps([s for b in t10 for s in b]).encode())
        assert request(port, "POST", "/api/v2/spans", gz, {"Content-Type": "application/json", "Content-Encoding": "gzip"}) == (202, b"")
        # Armeria's 10 MiB bound: refused from the head, the connection closed.
        too_big = raw_exchange(port, b"POST /api/v2/spans HTTP/1.1\r\nHost: z\r\nContent-Length: 10485761\r\n\r\n[")
        assert too_big.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n") and too_big.endswith(b"\r\n\r\n413 Request Entity Too Large")
        status, trace = request(port, "GET", "/api/v2/trace/0a9d13c9f4f6098d")
        assert status == 200 and len(json.loads(trace)) == 6
    finally:
        assert z.stop() == 0
    # The store is a file: a restarted server answers the same.
    z = Proc(tmp_path)
    try:
        port = int(re.findall(r":(\d+) - ", z.banner)[0])
        deps = request(port, "GET", "/api/v2/dependencies?endTs=1795549800000&lookback=3600000")
        assert deps == (200, b'[{"parent":"front-envoy","child":"service-a","callCount":2},'
                             b'{"parent":"service-a","child":"service-b","callCount":2,"errorCount":1},'
                             b'{"parent":"service-a","child":"service-c","callCount":2}]')
    finally:
        assert z.stop() == 0


def test_jaeger_process(tmp_path: Path) -> None:
    j = Proc(tmp_path, "--jaeger", "--query.http-server.host-port=:0", "--admin.http.host-port=:0",
             env={"COLLECTOR_ZIPKIN_HOST_PORT": ":0"})
    try:
        line: dict[str, Any] = json.loads(j.banner)
        assert line["level"] == "info" and "jaegertracing/all-in-one 1.27" in line["msg"]
        zipkin, query, admin = (int(line[k].rsplit(":", 1)[1]) for k in ("zipkin", "query", "admin"))
        for batch in posts("jaeger", "T01_plain"):
            assert request(zipkin, "POST", "/api/v2/spans", json.dumps(batch).encode(), {"Content-Type": "application/json"})[0] == 202
        status, body = request(query, "GET", "/api/traces/aed5400b612c6a28")
        assert status == 200 and len(json.loads(body)["data"][0]["spans"]) == 6
        status, body = request(admin, "GET", "/")
        assert status == 200 and json.loads(body)["status"] == "Server available"
        # The query port is not a collector, and the collector answers nothing else.
        assert request(query, "POST", "/api/v2/spans", b"[]", {"Content-Type": "application/json"})[0] == 404
        assert request(zipkin, "GET", "/api/services") == (404, b"404 page not found\n")
    finally:
        assert j.stop() == 0


def test_a_store_of_the_other_product_is_refused(tmp_path: Path) -> None:
    Proc(tmp_path).stop()
    proc = subprocess.run([sys.executable, "-m", "sluice.lab.backends.zipkin", "--jaeger", "--host", "127.0.0.1", "--data", str(tmp_path),
                           "--query.http-server.host-port=:0", "--admin.http.host-port=:0"],
                          capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1 and "holds zipkin spans, not jaeger's" in proc.stderr
