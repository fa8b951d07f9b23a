"""A fake Prometheus HTTP API for the Grafana stand-in's tests: the series the course's
monitoring lab produces (``service_a_cluster_service_b_upstream_rq_2xx`` …), every request
recorded. Not a Prometheus: it answers the label, range and instant calls Grafana makes.
"""

from __future__ import annotations

import json
import math
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NAMES = [
    "go_goroutines",
    "service_a_cluster_service_b_upstream_rq_2xx",
    "service_a_cluster_service_b_upstream_rq_5xx",
    "service_a_cluster_service_b_upstream_rq_time",
    "service_a_cluster_service_c_upstream_rq_2xx",
    "service_b_cluster_service_c_upstream_rq_2xx",
    "service_b_cluster_service_c_upstream_rq_5xx",
    "service_b_cluster_service_c_upstream_rq_time",
    "up",
]


class FakePrometheus:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                split = urllib.parse.urlsplit(self.path)
                params = urllib.parse.parse_qs(split.query)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    params.update(urllib.parse.parse_qs(self.rfile.read(length).decode()))
                with fake.lock:
                    fake.requests.append((self.command, split.path, params))
                status, body = fake.answer(split.path, params)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server((host, port), Handler)
        self.address = f"{self.httpd.server_address[0]}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def calls(self, path: str) -> list[dict[str, list[str]]]:
        with self.lock:
            return [p for _, q, p in self.requests if q == path]

    def answer(self, path: str, params: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if path == "/api/v1/label/__name__/values":
            return 200, {"status": "success", "data": NAMES}
        if path == "/api/v1/query":
            return 200, {"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "2"]}}
        if path == "/api/v1/query_range":
            try:
                query = params["query"][0]
                start, end, step = (float(params[k][0]) for k in ("start", "end", "step"))
            except (KeyError, ValueError):
                return 400, {"status": "error", "errorType": "bad_data", "error": "missing start/end/step/query"}
            return 200, {"status": "success", "data": {"resultType": "matrix", "result": self.series(query, start, end, step)}}
        return 404, {"status": "error", "errorType": "not_found", "error": f"{path} not found"}

    @staticmethod
    def series(query: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """``a - a offset 30s`` keeps no name; the latency summary has one series per quantile."""
        times = []
        t = start
        while t <= end and len(times) < 11000:
            times.append(t)
            t += step

        def values(f: Any) -> list[list[Any]]:
            return [[ts, f"{f(i):.4f}"] for i, ts in enumerate(times)]

        if "upstream_rq_time" in query:
            name = query.strip()
            return [
                {"metric": {"__name__": name, "quantile": q, "job": "statsd"}, "values": values(lambda i, k=k: 5 * k + 2 * math.sin(i / 9))}
                for k, q in enumerate(("0.5", "0.9", "0.99"), start=1)
            ]
        if "_5xx" in query:
            return [{"metric": {"job": "statsd", "group": "services"}, "values": values(lambda i: max(0.0, 3 * math.sin(i / 7)))}]
        if "_2xx" in query:
            return [{"metric": {"job": "statsd", "group": "services"}, "values": values(lambda i: 40 + 15 * math.sin(i / 11))}]
        return []
