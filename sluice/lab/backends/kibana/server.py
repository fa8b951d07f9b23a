"""Kibana's HTTP server: the routes of :mod:`.api`, the pages and their static files.

As Kibana 7.14's: the port opens at once and answers every request with 503 "Kibana server is
not ready yet" (``Retry-After: 30``) until the saved-objects migrations are done; requests that
change state (anything but GET/HEAD) need a ``kbn-xsrf`` header; every answer carries
``kbn-name``; each request is logged as a ``response`` line.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sluice.lab.backends.kibana import api
from sluice.lab.backends.kibana.es import Client
from sluice.lab.backends.kibana.logs import Log
from sluice.lab.backends.kibana.migrations import HEALTH_DELAY, check_nodes
from sluice.lab.backends.kibana.saved_objects import Repository
from sluice.lab.backends.kibana.settings import Settings
from sluice.lab.backends.kibana.web import HttpError, Reply, Request, error_reply, json_reply

STATIC = Path(__file__).resolve().parent / "static"
# uPlot, vendored once for the Grafana stand-in, draws Discover's histogram too.
UPLOT = Path(__file__).resolve().parents[1] / "grafana" / "static"
_VENDORED = {"uPlot.iife.min.js", "uPlot.min.css"}
_TYPES = {".js": "application/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8",
          ".svg": "image/svg+xml"}
MAX_PAYLOAD = 1_048_576
"""``server.maxPayloadBytes``."""
CSP = "script-src 'self'; worker-src blob: 'self'; style-src 'unsafe-inline' 'self'"

Handler = Callable[..., Reply]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    ("GET", re.compile(r"/api/status"), api.status),
    ("GET", re.compile(r"/api/kibana/settings"), api.settings_get),
    ("POST", re.compile(r"/api/kibana/settings"), api.settings_post),
    ("GET", re.compile(r"/api/saved_objects/_find"), api.so_find),
    ("POST", re.compile(r"/api/saved_objects/([^/_][^/]*)"), api.so_create),
    ("POST", re.compile(r"/api/saved_objects/([^/_][^/]*)/([^/]+)"), api.so_create),
    ("GET", re.compile(r"/api/saved_objects/([^/_][^/]*)/([^/]+)"), api.so_get),
    ("PUT", re.compile(r"/api/saved_objects/([^/_][^/]*)/([^/]+)"), api.so_update),
    ("DELETE", re.compile(r"/api/saved_objects/([^/_][^/]*)/([^/]+)"), api.so_delete),
    ("GET", re.compile(r"/api/index_patterns/_fields_for_wildcard"), api.fields_for_wildcard_route),
    ("GET", re.compile(r"/internal/index-pattern-management/resolve_index/(.*)"), api.resolve_index_route),
    ("POST", re.compile(r"/internal/search/es"), api.search_es),
    ("POST", re.compile(r"/internal/discover/search"), api.discover_search),
    ("POST", re.compile(r"/api/console/proxy"), api.console_proxy),
]
PAGES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"/app/home/?"), "home.html"),
    (re.compile(r"/app/discover/?"), "discover.html"),
    (re.compile(r"/app/management(/.*)?"), "management.html"),
]
REDIRECTS = {"/": "/app/home", "/app/kibana": "/app/discover", "/app": "/app/home"}


class Kibana:
    def __init__(self, settings: Settings, es: Client, log: Log, *, uuid: str = "") -> None:
        self.settings = settings
        self.es = es
        self.log = log
        self.uuid = uuid
        self.repo = Repository(es, settings.index)
        self.metrics = api.Metrics()
        self.metrics_lock = threading.Lock()
        self.ready = threading.Event()
        self.httpd: ThreadingHTTPServer | None = None
        self._es: tuple[float, bool, str] = (0.0, False, "Waiting for Elasticsearch")

    # --- Elasticsearch's health, as the status service sees it -----------------------------

    def es_status(self) -> tuple[bool, str]:
        checked, ok, message = self._es
        if time.monotonic() - checked > HEALTH_DELAY:
            check = check_nodes(self.es)
            self._es = (time.monotonic(), check.ok, check.message)
            if check.ok != ok and checked:
                if check.ok:
                    self.log.info(["status"], "Kibana is now available (was unavailable)")
                else:
                    self.log.error(["status"], f"Kibana is now unavailable: {check.message}")
            return check.ok, check.message
        return ok, message

    def mark_ready(self) -> None:
        self._es = (time.monotonic(), True, "Elasticsearch is available")
        self.ready.set()

    # --- lifecycle -------------------------------------------------------------------------

    def bind(self, host: str | None = None, port: int | None = None) -> tuple[str, int]:
        kibana = self

        class Bound(_Handler):
            app = kibana

        addr = self.settings.host if host is None else host
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server((addr, self.settings.port if port is None else port), Bound)
        h, p = self.httpd.server_address[:2]
        return str(h), int(p)

    def serve_forever(self) -> None:
        assert self.httpd is not None
        self.httpd.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    app: Kibana
    server_version = "Kibana"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        pass  # logged as Kibana's "response" lines instead

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        t0 = time.monotonic()
        split = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD:
            self.rfile.read(length)
            reply = error_reply(HttpError(413, "Payload content length greater than maximum allowed: 1048576"))
        else:
            body = self.rfile.read(length) if length > 0 else b""
            req = Request(self.command, split.path, urllib.parse.parse_qs(split.query, keep_blank_values=True), self.headers, body)
            try:
                reply = self._route(req)
            except HttpError as exc:
                reply = error_reply(exc)
            except Exception as exc:  # noqa: BLE001  (Kibana answers 500 and logs the error)
                self.app.log.error(["http"], f"{type(exc).__name__}: {exc}")
                reply = error_reply(HttpError(500, "An internal server error occurred."))
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            return
        ms = (time.monotonic() - t0) * 1000
        with self.app.metrics_lock:
            self.app.metrics.observe(reply.status, ms)
        self.app.log.response(self.command, self.path, reply.status, ms, len(reply.body), self.client_address[0],
                              self.headers.get("User-Agent") or "")

    def _route(self, req: Request) -> Reply:
        if not self.app.ready.is_set():
            return Reply(503, b"Kibana server is not ready yet", "text/html; charset=utf-8", [("Retry-After", "30")])
        method = "GET" if req.method == "HEAD" else req.method
        if req.path in REDIRECTS:
            return Reply(302, b"", "text/html; charset=utf-8", [("Location", REDIRECTS[req.path])])
        allowed = False
        for verb, pattern, handler in ROUTES:
            m = pattern.fullmatch(req.path)
            if not m:
                continue
            if verb != method:
                allowed = True
                continue
            if method not in ("GET", "HEAD") and not (req.headers.get("kbn-xsrf") or req.headers.get("kbn-version")):
                raise HttpError(400, "Request must contain a kbn-xsrf header.")
            return handler(self.app, req, *m.groups())
        if allowed:
            raise HttpError(404, "Not Found")  # hapi answers an unrouted method as not found
        if method == "GET":
            for pattern, page in PAGES:
                if pattern.fullmatch(req.path):
                    return _file(STATIC / page, csp=True)
            m = re.fullmatch(r"/ui/sluice/([\w.\-]+)", req.path)
            if m:
                name = m.group(1)
                return _file((UPLOT if name in _VENDORED else STATIC) / name)
            if req.path.startswith("/app/"):
                return _file(STATIC / "notfound.html", status=404, csp=True)
        if req.path.startswith(("/api/", "/internal/")):
            raise HttpError(404, "Not Found")
        return json_reply(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("kbn-name", self.app.settings.server_name)
        self.send_header("Cache-Control", "private, no-cache, no-store, must-revalidate")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in reply.headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)


def _file(path: Path, *, status: int = 200, csp: bool = False) -> Reply:
    if not path.is_file():
        return Reply(404, b"Not Found", "text/plain; charset=utf-8")
    headers = [("Content-Security-Policy", CSP)] if csp else []
    return Reply(status, path.read_bytes(), _TYPES.get(path.suffix, "application/octet-stream"), headers)
