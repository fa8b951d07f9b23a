"""Benchmark of the Zipkin stand-in (``sluice.lab.backends.zipkin``): collector ingest through
``POST /api/v2/spans`` (JSON v2, as Envoy's Zipkin reporter posts), then ``GET /api/v2/trace/{id}``
and ``GET /api/v2/traces?serviceName=service-b&minDuration=…&limit=10`` over the stored traces.

    .venv/bin/python bench/bench_zipkin_store.py [--traces 100000] [--small-share 0.2] [--clients 4]
                                                 [--queries 500] [--searches 150]

The server runs as its own process (as the lab runner starts it) on 127.0.0.1 with a fresh data
directory and ``MEM_MAX_SPANS`` raised to hold every span (at least its default 500 000, still checked on
each POST). Traces are the zipkin lab's (``tests/golden/envoy-part3-5/tracing/zipkin/
T01_plain_spans.json``: front-envoy → service-a → service-b, service-c; 6 spans, posted by the
proxies in the order they finish), with fresh ids and request ids, timings scaled by a
log-normal factor (so durations spread), one trace in 20 failing as T10 does (``error`` tags, 503,
``FI``), and start times spread evenly over the default lookback (the 24 hours before now), in
time order. Ingest has two phases over one growing store: the first ``--small-share`` of the
traces in batches of 5 spans (Envoy's default ``max_batch_size``… its reporter flushes every 5
spans), the rest in batches of 100; each over ``--clients`` keep-alive connections (several
proxies). Request bytes are built before the clock starts, so the ingest figure is the server's.

- **acknowledged**: spans in requests answered 202, over the wall time of the phase;
- **end to end**: until the spans are queryable — the phase's last 50 traces and a random 200 of
  it are fetched by id and must come back whole (this store writes before answering 202, so the
  two differ by the check's own time; Zipkin's real collector answers before storing).

Queries are timed one at a time over one keep-alive connection after 5 untimed warm-ups: trace by
id for random stored traces; the service + duration search with ``minDuration`` at the 50th, 90th
and 99th percentile of service-b's span durations (more and more traces to read before 10 match),
default ``endTs`` and lookback, as the UI asks; each answer is checked against the 10 traces it must
hold, computed here from the generated spans. Before the server starts, ``model.write_span`` (orjson
when equivalent) is checked against the field-by-field writer. Targets: ingest ≥ 10 000 spans/s, trace by id
p50 ≤ 10 ms, search p50 ≤ 100 ms.

Bounded: ``--traces``, ``--queries``, ``--searches`` and ``--deadline`` seconds for the whole run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import orjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden", "envoy-part3-5", "tracing", "zipkin", "T01_plain_spans.json")
LOOKBACK_MS = 86_400_000  # Zipkin's default QUERY_LOOKBACK
TARGET_INGEST, TARGET_BY_ID, TARGET_SEARCH = 10_000, 10.0, 100.0


def templates() -> list[dict[str, Any]]:
    """T01's 6 spans in the order the proxies posted them."""
    return [s for post in json.loads(open(GOLDEN).read()) for s in post["spans"]]


def make_trace(tpl: list[dict[str, Any]], start_us: int, rnd: random.Random, failing: bool) -> list[dict[str, Any]]:
    root_ts = min(s["timestamp"] for s in tpl)
    old_trace = tpl[0]["traceId"]
    trace_id = f"{rnd.getrandbits(64) | 1 << 60:016x}"
    ids = {old_trace: trace_id}
    factor = rnd.lognormvariate(0.0, 0.8)
    request_id = "-".join(f"{rnd.getrandbits(bits):0{bits // 4}x}" for bits in (32, 16, 16, 16, 48))
    out = []
    for t in tpl:
        s = orjson.loads(orjson.dumps(t))  # a deep copy, faster than copy.deepcopy
        for key in ("traceId", "id", "parentId"):
            if key in s:
                s[key] = ids.setdefault(s[key], f"{rnd.getrandbits(64) | 1 << 60:016x}")
        s["timestamp"] = start_us + int((t["timestamp"] - root_ts) * factor)
        s["duration"] = max(1, int(t["duration"] * factor))
        for a, ta in zip(s.get("annotations", ()), t.get("annotations", ()), strict=True):
            a["timestamp"] = start_us + int((ta["timestamp"] - root_ts) * factor)
        s["tags"]["guid:x-request-id"] = request_id
        service = s["localEndpoint"]["serviceName"]
        if failing and (service == "service-b" or (service == "service-a" and s["kind"] == "CLIENT" and s["id"] == out[0]["id"])):
            # T10_fault_abort_b: service-b's fault filter aborts with 503, service-a's client span sees it
            s["tags"].update({"error": "true", "http.status_code": "503"})
            if service == "service-b":
                s["tags"]["response_flags"] = "FI"
        out.append(s)
    return out


def build(n: int, seed: int, now_ms: int) -> tuple[list[list[dict[str, Any]]], list[str]]:
    rnd = random.Random(seed)
    tpl = templates()
    begin_us = (now_ms - LOOKBACK_MS + 10 * 60_000) * 1000  # 10 minutes of slack for the run itself
    width_us = (LOOKBACK_MS - 11 * 60_000) * 1000
    traces = [make_trace(tpl, begin_us + i * width_us // n + rnd.randrange(1000), rnd, rnd.random() < 0.05) for i in range(n)]
    return traces, [t[0]["traceId"] for t in traces]


def requests(traces: list[list[dict[str, Any]]], batch: int) -> list[tuple[bytes, int]]:
    """(request bytes, span count): the traces' spans in order, chunked as a reporter would."""
    spans = [s for t in traces for s in t]
    out = []
    for i in range(0, len(spans), batch):
        chunk = spans[i : i + batch]
        body = orjson.dumps(chunk)
        head = (f"POST /api/v2/spans HTTP/1.1\r\nhost: zipkin\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        out.append((head + body, len(chunk)))
    return out


def start_server(data: str, max_spans: int) -> tuple[subprocess.Popen[bytes], int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "QUERY_", "MEM_", "STRICT_", "SEARCH_", "COLLECTOR_"))}
    env["PYTHONPATH"] = ROOT
    env["MEM_MAX_SPANS"] = str(max_spans)
    proc = subprocess.Popen([sys.executable, "-m", "sluice.lab.backends.zipkin", "--host", "127.0.0.1", "--port", "0", "--data", data],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=data)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        m = re.search(r"Serving HTTP at /127\.0\.0\.1:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return proc, int(m.group(1))
    proc.kill()
    raise SystemExit("the server did not start")


def _exchange(sock: socket.socket, data: bytes, buf: bytearray) -> int:
    """One request, its answer read whole (Content-Length framed); the status."""
    sock.sendall(data)
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).lower()
            m = re.search(rb"content-length: *(\d+)", head)
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) >= total:
                status = int(head[9:12])
                del buf[:total]
                return status
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        buf += chunk


def ingest(port: int, reqs: list[tuple[bytes, int]], clients: int, deadline: float) -> tuple[float, int, int]:
    """(elapsed s, spans acknowledged, failed requests)."""
    queue = list(reversed(reqs))
    lock = threading.Lock()
    acked = [0]
    failed = [0]

    def worker() -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        ok = bad = 0
        while time.monotonic() < deadline:
            with lock:
                if not queue:
                    break
                data, n = queue.pop()
            if _exchange(sock, data, buf) == 202:
                ok += n
            else:
                bad += 1
        sock.close()
        with lock:
            acked[0] += ok
            failed[0] += bad

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, acked[0], failed[0]


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes, float]:
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, body, (time.perf_counter() - t0) * 1000


def queryable(conn: http.client.HTTPConnection, ids: list[str], deadline: float) -> int:
    """Fetch each trace until it is whole (6 spans); the number that were whole at once."""
    first_try = 0
    for trace_id in ids:
        while True:
            status, body, _ = get(conn, f"/api/v2/trace/{trace_id}")
            if status == 200 and len(orjson.loads(body)) == 6:
                first_try += 1
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"trace {trace_id} not queryable before the deadline")
            time.sleep(0.01)
    return first_try


def check_encoding(traces: list[list[dict[str, Any]]]) -> str:
    """The collector writes stored spans through orjson when that gives JsonEscaper's bytes
    (``model.write_span``); check it against the field-by-field writer on decoded spans of the
    run and on every code point in each kind of string field."""
    sys.path.insert(0, ROOT)
    from sluice.lab.backends.zipkin.codec import decode_json
    from sluice.lab.backends.zipkin.model import Annotation, Endpoint, Span, write_span, write_span_escaped

    spans = decode_json(orjson.dumps([s for t in traces[:2000] for s in t]))
    for i in range(0x110000):
        if not 0xD800 <= i < 0xE000:
            c = chr(i)
            spans.append(Span("0000000000000001", "0000000000000002", name=f"n{c}", local=Endpoint(f"s{c}", "192.0.2.2", None, 80),
                              annotations=[Annotation(1, c)], tags={c: f"v{c}"}))
    spans.append(Span("0000000000000001", "0000000000000002", timestamp=1 << 70, duration=1 << 64))
    bad = [s for s in spans if write_span(s) != write_span_escaped(s)]
    if bad:
        raise SystemExit(f"encoding check: {len(bad)} spans differ, first {bad[0]}")
    return f"encoding check: write_span == write_span_escaped on {len(spans)} spans (the run's and every code point)"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def phase(port: int, name: str, traces: list[list[dict[str, Any]]], ids: list[str], batch: int, args: argparse.Namespace,
          deadline: float, rnd: random.Random) -> tuple[float, float]:
    reqs = requests(traces, batch)
    elapsed, acked, failed = ingest(port, reqs, args.clients, deadline)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    check = ids[-50:] + rnd.sample(ids, min(200, len(ids)))
    t0 = time.perf_counter()
    queryable(conn, check, deadline)
    e2e = elapsed + time.perf_counter() - t0
    conn.close()
    sent = sum(n for _, n in reqs)
    print(f"ingest {name}: {len(reqs)} POSTs of {batch} spans over {args.clients} connections, {acked}/{sent} spans answered 202 "
          f"({failed} failed) in {elapsed:.1f}s = {acked / elapsed:,.0f} spans/s acknowledged; "
          f"queryable (checked {len(check)} traces) after {e2e:.1f}s = {acked / e2e:,.0f} spans/s end to end", flush=True)
    return acked / elapsed, acked / e2e


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--traces", type=int, default=100_000, help="traces to store (6 spans each)")
    p.add_argument("--small-share", type=float, default=0.2, help="share of the traces posted in batches of 5 (the rest: 100)")
    p.add_argument("--clients", type=int, default=4, help="concurrent collector connections")
    p.add_argument("--queries", type=int, default=500, help="trace-by-id requests")
    p.add_argument("--searches", type=int, default=150, help="service + duration searches")
    p.add_argument("--deadline", type=float, default=900.0, help="seconds for the whole run")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    args = p.parse_args()
    deadline = time.monotonic() + args.deadline
    now_ms = int(time.time() * 1000)
    t0 = time.perf_counter()
    traces, ids = build(args.traces, args.seed, now_ms)
    print(f"built {len(traces)} traces ({sum(map(len, traces))} spans) in {time.perf_counter() - t0:.1f}s", flush=True)
    print(check_encoding(traces), flush=True)
    b_durations = sorted(s["duration"] for t in traces for s in t if s["localEndpoint"]["serviceName"] == "service-b")
    thresholds = {q: b_durations[int(len(b_durations) * q / 100)] for q in (50, 90, 99)}
    # The answer each search must give (newest first by last span millisecond, then id descending):
    # the bench checks it, so a faster store cannot answer differently unnoticed.
    newest = sorted(((max(s["timestamp"] for s in t) // 1000, t[0]["traceId"], t) for t in traces), key=lambda e: e[:2], reverse=True)
    expected = {q: [tid for _, tid, t in newest if any(s["localEndpoint"]["serviceName"] == "service-b" and s["duration"] >= d
                                                          for s in t)][:10] for q, d in thresholds.items()}
    rnd = random.Random(args.seed + 1)
    data = tempfile.mkdtemp(prefix="zipkin-bench-")
    # MEM_MAX_SPANS (500 000 by default) raised so every trace stays: the limit is still checked on each POST
    proc, port = start_server(data, max(500_000, sum(map(len, traces))))
    try:
        cut = int(len(traces) * args.small_share)
        rates = {}
        if cut:
            rates[5] = phase(port, "batch 5", traces[:cut], ids[:cut], 5, args, deadline, rnd)
        if cut < len(traces):
            rates[100] = phase(port, "batch 100", traces[cut:], ids[cut:], 100, args, deadline, rnd)
        with sqlite3.connect(f"file:{os.path.join(data, 'spans.sqlite')}?mode=ro", uri=True) as db:
            (stored,) = db.execute("SELECT count(*) FROM spans").fetchone()
        print(f"stored: {stored} spans, {os.path.getsize(os.path.join(data, 'spans.sqlite')) / 1e6:.0f} MB (+ WAL)", flush=True)

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for trace_id in rnd.sample(ids, 5):
            get(conn, f"/api/v2/trace/{trace_id}")
        by_id: list[float] = []
        for trace_id in rnd.choices(ids, k=args.queries):
            if time.monotonic() > deadline:
                break
            status, body, ms = get(conn, f"/api/v2/trace/{trace_id}")
            if status != 200 or len(orjson.loads(body)) != 6:
                print("trace by id failed:", status, body[:300])
                return 1
            by_id.append(ms)
        print(f"trace by id x{len(by_id)}: p50 {statistics.median(by_id):.2f} ms, p99 {pct(by_id, 0.99):.2f} ms, "
              f"max {max(by_id):.2f} ms", flush=True)

        searches: dict[int, list[float]] = {q: [] for q in thresholds}
        hits: dict[int, int] = {q: 0 for q in thresholds}
        order = [q for _ in range(args.searches // len(thresholds) + 1) for q in thresholds][: args.searches]
        for q in list(thresholds)[:2] * 3:
            get(conn, f"/api/v2/traces?serviceName=service-b&minDuration={thresholds[q]}&limit=10")
        for q in order:
            if time.monotonic() > deadline:
                break
            status, body, ms = get(conn, f"/api/v2/traces?serviceName=service-b&minDuration={thresholds[q]}&limit=10")
            if status != 200:
                print("search failed:", status, body[:300])
                return 1
            searches[q].append(ms)
            answer = orjson.loads(body)
            hits[q] += len(answer)
            if [t[0]["traceId"] for t in answer] != expected[q] or any(len(t) != 6 for t in answer):
                print(f"search minDuration={thresholds[q]}: wrong answer {[t[0]['traceId'] for t in answer]}, expected {expected[q]}")
                return 1
        every = [ms for v in searches.values() for ms in v]
        for q, v in searches.items():
            if v:
                print(f"  search serviceName=service-b minDuration={thresholds[q]} (p{q} of its durations) x{len(v)}: "
                      f"p50 {statistics.median(v):.1f} ms, p99 {pct(v, 0.99):.1f} ms ({hits[q] / len(v):.1f} traces/answer)")
        print(f"search (service + duration, limit 10, default lookback) x{len(every)}: p50 {statistics.median(every):.1f} ms, "
              f"p99 {pct(every, 0.99):.1f} ms, max {max(every):.1f} ms", flush=True)
        conn.close()

        print("targets:")
        for batch, (ack, e2e) in rates.items():
            print(f"  ingest batch {batch:>3} >= {TARGET_INGEST} spans/s: acknowledged {ack:,.0f} "
                  f"{'met' if ack >= TARGET_INGEST else 'NOT met'}, end to end {e2e:,.0f} {'met' if e2e >= TARGET_INGEST else 'NOT met'}")
        p50 = statistics.median(by_id)
        print(f"  trace by id p50 <= {TARGET_BY_ID:.0f} ms: {p50:.2f} ms {'met' if p50 <= TARGET_BY_ID else 'NOT met'}")
        p50 = statistics.median(every)
        print(f"  search p50 <= {TARGET_SEARCH:.0f} ms: {p50:.1f} ms {'met' if p50 <= TARGET_SEARCH else 'NOT met'}")
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
