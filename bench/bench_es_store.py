"""Benchmark of the Elasticsearch stand-in (``sluice.lab.backends.elasticsearch``): ``_bulk``
ingest of Filebeat-shaped events of the labs' JSON access log, then ``_search`` latency of a
term + time-range query over them.

    .venv/bin/python bench/bench_es_store.py [--docs 1000000] [--batch 1000] [--clients 2] [--queries 300]

The node runs as its own process (as the lab runner starts it) on 127.0.0.1 with a fresh data
directory; request bodies are built before the clock starts, so the ingest figure is the
server's. Documents are spread over the 24 hours before now, in time order, into daily
``filebeat-YYYY.MM.DD`` indices (Filebeat's ``%{+yyyy.MM.dd}``). Each search is a ``bool`` filter
of ``term`` on ``status`` or ``method.keyword`` and a 15-minute ``@timestamp`` range at a random
point of the day, sorted by ``@timestamp`` desc, 10 hits, default ``track_total_hits`` — what
Kibana's Discover asks. Targets: ingest ≥ 20 000 docs/s, search p50 ≤ 50 ms.

Bounded: ``--docs``, ``--queries`` and ``--deadline`` seconds for the whole run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["GET"] * 8 + ["POST", "PUT"]
STATUS = [200] * 90 + [404] * 4 + [503] * 3 + [302] * 3
URLS = ["/", "/hello", "/colors", "/api/v1/items", "/api/v1/items/42", "/index.html", "/favicon.ico", "/livez", "/readyz"]
COLORS = ["blue", "green", "red"]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def event(i: int, ms: int, rnd: random.Random) -> tuple[str, bytes]:
    color = rnd.choice(COLORS)
    status = rnd.choice(STATUS)
    log = {
        "start": f"[{iso(ms - 3)}] ", "method": rnd.choice(METHODS), "url": rnd.choice(URLS), "protocol": "HTTP/1.1",
        "status": status, "respflags": "-" if status < 500 else "UF", "bytes-received": 0, "bytes-sent": rnd.randint(0, 4000),
        "duration": rnd.randint(0, 40), "upstream-service-time": str(rnd.randint(0, 30)), "x-forwarded-for": "-",
        "user-agent": rnd.choice(["curl/7.68.0", "Mozilla/5.0 (X11; Linux x86_64)", "python-requests/2.28.1"]),
        "request-id": f"{rnd.getrandbits(32):08x}-{rnd.getrandbits(16):04x}-{rnd.getrandbits(16):04x}-{rnd.getrandbits(16):04x}-"
                      f"{rnd.getrandbits(48):012x}",
        "authority": "172.31.76.10", "upstream-host": f"172.31.76.{rnd.randint(2, 4)}:80", "remote-ip": "172.31.76.1",
    }
    message = json.dumps(log, separators=(",", ":"))
    doc = {"@timestamp": iso(ms), **log, "message": message,
           "log": {"offset": i * 420, "file": {"path": "/logs/envoy/front-envoy-access.log"}}, "input": {"type": "log"},
           "ecs": {"version": "1.10.0"}, "host": {"name": "filebeat"},
           "agent": {"type": "filebeat", "version": "7.14.2", "hostname": "filebeat", "name": "filebeat",
                     "id": "8c2a6a5e-1f51-4c7e-9a3b-2d4c1f0e5b61", "ephemeral_id": "2b1d7f0c-9a44-4f5e-8b1e-3c6a2d9f7e10"},
           "service": color}
    index = "filebeat-" + datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y.%m.%d")
    return index, json.dumps(doc, separators=(",", ":")).encode()


def build_bodies(n: int, batch: int, start_ms: int, span_ms: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    bodies: list[bytes] = []
    parts: list[bytes] = []
    for i in range(n):
        index, src = event(i, start_ms + i * span_ms // n, rnd)
        parts.append(b'{"create":{"_index":"' + index.encode() + b'"}}\n' + src + b"\n")
        if len(parts) == batch:
            bodies.append(b"".join(parts))
            parts = []
    if parts:
        bodies.append(b"".join(parts))
    return bodies


def start_node(data: str) -> tuple[subprocess.Popen[bytes], int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["PYTHONPATH"] = ROOT
    proc = subprocess.Popen([sys.executable, "-m", "sluice.lab.backends.elasticsearch", "-E", "http.port=0", "-E", f"path.data={data}",
                             "-E", "network.host=127.0.0.1", "-E", "node.name=bench"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=data)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        m = re.search(r"publish_address \{[^}]*:(\d+)\}", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return proc, int(m.group(1))
    proc.kill()
    raise SystemExit("the node did not start")


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
            ctype: str = "application/json") -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers={"Content-Type": ctype} if body is not None else {})
    resp = conn.getresponse()
    return resp.status, resp.read()


def ingest(port: int, bodies: list[bytes], clients: int, deadline: float) -> tuple[float, int]:
    queue = list(reversed(bodies))
    lock = threading.Lock()
    errors = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < deadline:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            status, raw = request(conn, "POST", "/_bulk?filter_path=errors,items.*.error,items.*.status", body, "application/x-ndjson")
            if status != 200 or json.loads(raw).get("errors"):
                errors[0] += 1
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, errors[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=1000, help="documents per _bulk request")
    p.add_argument("--clients", type=int, default=2, help="concurrent _bulk connections")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--deadline", type=float, default=1800.0, help="seconds for the whole run")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    args = p.parse_args()
    deadline = time.monotonic() + args.deadline
    now = int(time.time() * 1000)
    span = 24 * 3600 * 1000
    start_ms = now - span
    t0 = time.perf_counter()
    bodies = build_bodies(args.docs, args.batch, start_ms, span, args.seed)
    print(f"built {len(bodies)} bulk bodies ({sum(map(len, bodies)) / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f}s", flush=True)
    data = tempfile.mkdtemp(prefix="es-bench-")
    proc, port = start_node(data)
    try:
        elapsed, errors = ingest(port, bodies, args.clients, deadline)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        r0 = time.perf_counter()
        request(conn, "POST", "/_refresh")  # what was acknowledged but not yet searchable
        refresh = time.perf_counter() - r0
        _, raw = request(conn, "GET", "/filebeat-*/_count")
        count = json.loads(raw)["count"]
        print(f"ingest: {count} docs acknowledged in {elapsed:.1f}s = {count / elapsed:,.0f} docs/s "
              f"(batch {args.batch}, {args.clients} clients, {errors} failed requests); all searchable after a final "
              f"{refresh:.1f}s refresh = {count / (elapsed + refresh):,.0f} docs/s end to end", flush=True)
        rnd = random.Random(args.seed + 1)
        lat: list[float] = []
        hits_seen = 0
        drivers = 0
        for _ in range(args.queries):
            if time.monotonic() > deadline:
                break
            lo = start_ms + rnd.randrange(span - 15 * 60_000)
            term = {"status": rnd.choice([200, 404, 503])} if rnd.random() < 0.5 else {"method.keyword": rnd.choice(["GET", "POST"])}
            body = {"query": {"bool": {"filter": [{"term": term}, {"range": {"@timestamp": {"gte": iso(lo), "lte": iso(lo + 15 * 60_000),
                                                                                              "format": "strict_date_optional_time"}}}]}},
                    "sort": [{"@timestamp": {"order": "desc", "unmapped_type": "boolean"}}], "size": 10}
            q0 = time.perf_counter()
            status, raw = request(conn, "POST", "/filebeat-*/_search", json.dumps(body).encode())
            lat.append((time.perf_counter() - q0) * 1000)
            if status != 200:
                print("search failed:", raw[:300])
                return 1
            res = json.loads(raw)
            hits_seen += len(res["hits"]["hits"])
            drivers += res["hits"]["total"]["value"] > 0
        lat.sort()
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"search (term + 15m @timestamp range, sort @timestamp desc, size 10) x{len(lat)}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
              f"max {lat[-1]:.1f} ms ({hits_seen / max(len(lat), 1):.1f} hits/query)", flush=True)
        _, raw = request(conn, "GET", "/_cat/indices?v&s=index&bytes=mb")
        print(raw.decode(), end="")
        ok_ingest = count / (elapsed + refresh) >= 20_000
        ok_search = p50 <= 50
        print(f"targets: ingest >= 20000 docs/s: {'met' if ok_ingest else 'NOT met'}; "
              f"search p50 <= 50 ms: {'met' if ok_search else 'NOT met'}")
        conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
        else:
            print("data kept in", data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
