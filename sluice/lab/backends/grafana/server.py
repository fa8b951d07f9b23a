"""Grafana's HTTP server: the API subset the labs use, the login form, the dashboard page and
``/metrics`` (Prometheus text format).

Who may call what, as in Grafana: ``/api/health``, ``/login`` and ``/metrics`` (unless
``[metrics] basic_auth_username`` is set) are open; the rest needs a session cookie from
``/login``, basic auth with the admin user (``[auth.basic] enabled``), or
``[auth.anonymous] enabled = true``. API calls without them get ``401``; pages redirect to
``/login``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sluice.lab.backends.grafana import COMMIT, VERSION
from sluice.lab.backends.grafana.settings import Settings
from sluice.lab.backends.grafana.store import DataSource, Store

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".js": "application/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding", "upgrade"}
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TYPE_NAMES = {"prometheus": "Prometheus", "loki": "Loki", "elasticsearch": "Elasticsearch", "graphite": "Graphite", "influxdb": "InfluxDB"}

Log = Callable[..., None]


class Metrics:
    """Grafana's own series, in the Prometheus text format."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.time()
        self.http: dict[tuple[str, str, str], list[float]] = {}
        """(handler, method, status_code) → bucket counts + [sum, count]."""
        self.api_status: dict[tuple[str, str], int] = {}
        self.datasource: dict[tuple[str, str, str], int] = {}

    def observe(self, handler: str, method: str, status: int, seconds: float) -> None:
        kind = "proxy" if handler.startswith("/api/datasources/proxy") else "api" if handler.startswith("/api/") else "page"
        with self.lock:
            row = self.http.setdefault((handler, method, str(status)), [0.0] * (len(_BUCKETS) + 2))
            for i, le in enumerate(_BUCKETS):
                if seconds <= le:
                    row[i] += 1
            row[-2] += seconds
            row[-1] += 1
            key = (kind, str(status))
            self.api_status[key] = self.api_status.get(key, 0) + 1

    def datasource_request(self, name: str, method: str, code: int) -> None:
        with self.lock:
            key = (name, method, str(code))
            self.datasource[key] = self.datasource.get(key, 0) + 1

    def render(self, store: Store) -> str:
        out = [
            "# HELP grafana_build_info A metric with a constant '1' value labeled by version, revision, branch,"
            " and goversion from which Grafana was built",
            "# TYPE grafana_build_info gauge",
            f'grafana_build_info{{branch="HEAD",edition="oss",goversion="go1.16.9",revision="{COMMIT}",version="{VERSION}"}} 1',
        ]
        with self.lock:
            http_rows = sorted(self.http.items())
            status_rows = sorted(self.api_status.items())
            ds_rows = sorted(self.datasource.items())
        out += ["# HELP grafana_http_request_duration_seconds Histogram of latencies for HTTP requests.",
                "# TYPE grafana_http_request_duration_seconds histogram"]
        for (handler, method, code), row in http_rows:
            labels = f'handler="{_esc(handler)}",method="{method}",status_code="{code}"'
            for i, le in enumerate(_BUCKETS):
                out.append(f'grafana_http_request_duration_seconds_bucket{{{labels},le="{le:g}"}} {row[i]:g}')
            out.append(f'grafana_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {row[-1]:g}')
            out.append(f"grafana_http_request_duration_seconds_sum{{{labels}}} {row[-2]:.6f}")
            out.append(f"grafana_http_request_duration_seconds_count{{{labels}}} {row[-1]:g}")
        for kind in ("api", "page", "proxy"):
            out += [f"# HELP grafana_{kind}_response_status_total {kind} http response status",
                    f"# TYPE grafana_{kind}_response_status_total counter"]
            for (k, code), n in status_rows:
                if k == kind:
                    out.append(f'grafana_{kind}_response_status_total{{code="{code}"}} {n}')
        out += ["# HELP grafana_datasource_request_total A counter for outgoing requests for a datasource",
                "# TYPE grafana_datasource_request_total counter"]
        for (name, method, code), n in ds_rows:
            out.append(f'grafana_datasource_request_total{{code="{code}",datasource="{_esc(name)}",method="{method}"}} {n}')
        dashboards = [d for d in store.dashboards() if not d.is_folder]
        out += ["# HELP grafana_stat_totals_dashboard total amount of dashboards", "# TYPE grafana_stat_totals_dashboard gauge",
                f"grafana_stat_totals_dashboard {len(dashboards)}"]
        by_type: dict[str, int] = {}
        for ds in store.datasources():
            by_type[ds.type] = by_type.get(ds.type, 0) + 1
        out += ["# HELP grafana_stat_totals_datasource total number of defined datasources, labeled by pluginId",
                "# TYPE grafana_stat_totals_datasource gauge"]
        out += [f'grafana_stat_totals_datasource{{plugin_id="{_esc(t)}"}} {n}' for t, n in sorted(by_type.items())]
        out += ["# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
                "# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {self.started:.2f}"]
        rss = _rss_bytes()
        if rss is not None:
            out += ["# HELP process_resident_memory_bytes Resident memory size in bytes.",
                    "# TYPE process_resident_memory_bytes gauge", f"process_resident_memory_bytes {rss}"]
        return "\n".join(out) + "\n"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def datasource_json(ds: DataSource, *, listing: bool) -> dict[str, Any]:
    """A datasource as ``/api/datasources`` (``listing``) or ``/api/datasources/<id>`` shows it."""
    common: dict[str, Any] = {
        "id": ds.id, "uid": ds.uid, "orgId": ds.org_id, "name": ds.name, "type": ds.type,
    }
    if listing:
        common.update(typeName=TYPE_NAMES.get(ds.type, ds.type),
                      typeLogoUrl=f"public/app/plugins/datasource/{ds.type}/img/{ds.type}_logo.svg")
    else:
        common.update(typeLogoUrl="")
    common.update(access=ds.access, url=ds.url, password="", user=ds.user, database=ds.database, basicAuth=ds.basic_auth)
    if listing:
        common.update(isDefault=ds.is_default, jsonData=ds.json_data, readOnly=ds.read_only)
    else:
        common.update(basicAuthUser=ds.basic_auth_user, basicAuthPassword="", withCredentials=ds.with_credentials,
                      isDefault=ds.is_default, jsonData=ds.json_data,
                      secureJsonFields={k: True for k in ds.secure_json_data}, version=ds.version, readOnly=ds.read_only)
    return common


def load_hosts(path: str | None) -> dict[str, str]:
    """name → first address, from a hosts file (the lab's, when namespaces are not available)."""
    out: dict[str, str] = {}
    if not path:
        return out
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                for name in fields[1:]:
                    out.setdefault(name.lower(), fields[0])
    except OSError:
        pass
    return out


class Grafana:
    def __init__(self, settings: Settings, store: Store, *, hosts_file: str | None = None, log: Log | None = None) -> None:
        self.settings = settings
        self.store = store
        self.metrics = Metrics()
        self.hosts_file = hosts_file
        self.log: Log = log or (lambda msg, **kv: None)
        self.httpd: ThreadingHTTPServer | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def bind(self, host: str | None = None, port: int | None = None) -> tuple[str, int]:
        grafana = self

        class Handler(_Handler):
            app = grafana

        addr = self.settings.http_addr if host is None else host
        ThreadingHTTPServer.allow_reuse_address = True
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self.httpd = Server((addr, self.settings.http_port if port is None else port), Handler)
        h, p = self.httpd.server_address[:2]
        return str(h), int(p)

    def serve_forever(self) -> None:
        assert self.httpd is not None
        self.httpd.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    # --- auth ----------------------------------------------------------------------------

    def user_for(self, headers: Any) -> tuple[str | None, str | None]:
        """(login or None, error message for bad credentials)."""
        cookie = headers.get("Cookie") or ""
        for part in cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.settings.cookie_name and value:
                login = self.store.session_user(value)
                if login:
                    return login, None
        auth = headers.get("Authorization") or ""
        if auth.lower().startswith("basic ") and self.settings.basic_auth:
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None, "Invalid Basic Auth Header"
            if user == self.settings.admin_user and password == self.settings.admin_password:
                return user, None
            return None, "Invalid username or password"
        if self.settings.anonymous:
            return "", None  # anonymous, with [auth.anonymous] org_role
        return None, None

    def check_login(self, user: str, password: str) -> bool:
        return user in (self.settings.admin_user, "admin@localhost") and password == self.settings.admin_password

    # --- datasource proxy ----------------------------------------------------------------

    def proxy(
        self, ds: DataSource, rest: str, query: str, method: str, headers: Any, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        target = urllib.parse.urlsplit(ds.url)
        if target.scheme not in ("http", "https") or not target.hostname:
            return 400, [("Content-Type", "application/json")], _json({"message": "Invalid data source url"})
        host = target.hostname
        connect_to = load_hosts(self.hosts_file or os.environ.get("SLUICE_HOSTS_FILE")).get(host.lower(), host)
        port = target.port or (443 if target.scheme == "https" else 80)
        path = target.path.rstrip("/") + "/" + rest.lstrip("/")
        if query:
            path += "?" + query
        out_headers = {k: v for k, v in headers.items() if k.lower() not in _HOP | {"cookie", "authorization", "host", "origin", "referer"}}
        out_headers["Host"] = target.netloc
        out_headers["User-Agent"] = f"Grafana/{VERSION}"
        out_headers["X-Grafana-Org-Id"] = "1"
        if ds.basic_auth:
            cred = f"{ds.basic_auth_user}:{ds.secure_json_data.get('basicAuthPassword', '')}"
            out_headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        timeout = float(self.settings.get("dataproxy", "timeout", "30") or 30)
        conn_cls = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(connect_to, port, timeout=timeout)
        try:
            conn.request(method, path, body=body or None, headers=out_headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            keep = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP | {"set-cookie", "content-length"}]
        except (OSError, http.client.HTTPException) as exc:
            self.log("Data proxy error", logger="data-proxy-log", lvl="eror", userId=1, orgId=1, uname="admin", path=path, error=str(exc))
            self.metrics.datasource_request(ds.name, method, 502)
            return 502, [("Content-Type", "text/plain; charset=utf-8")], b"Bad Gateway"
        finally:
            conn.close()
        self.metrics.datasource_request(ds.name, method, status)
        return status, keep, data


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"/api/health"), "health"),
    ("GET", re.compile(r"/api/datasources"), "datasources"),
    ("GET", re.compile(r"/api/datasources/(\d+)"), "datasource_id"),
    ("GET", re.compile(r"/api/datasources/name/([^/]+)"), "datasource_name"),
    ("GET", re.compile(r"/api/datasources/uid/([^/]+)"), "datasource_uid"),
    ("GET", re.compile(r"/api/datasources/id/([^/]+)"), "datasource_id_by_name"),
    ("*", re.compile(r"/api/datasources/proxy/(\d+)(/.*)?"), "proxy"),
    ("GET", re.compile(r"/api/search/?"), "search"),
    ("GET", re.compile(r"/api/dashboards/uid/([^/]+)"), "dashboard"),
    ("GET", re.compile(r"/api/user"), "user"),
    ("GET", re.compile(r"/api/login/ping"), "login_ping"),
    ("GET", re.compile(r"/login"), "login_page"),
    ("POST", re.compile(r"/login"), "login"),
    ("GET", re.compile(r"/logout"), "logout"),
    ("GET", re.compile(r"/metrics"), "metrics"),
    ("GET", re.compile(r"/"), "home"),
    ("GET", re.compile(r"/dashboards"), "home"),
    ("GET", re.compile(r"/d/([^/]+)(?:/[^/]*)?"), "dashboard_page"),
    ("GET", re.compile(r"/public/sluice/([\w.\-]+)"), "static"),
]
_HANDLER_NAMES = {
    "datasource_id": "/api/datasources/:id", "datasource_name": "/api/datasources/name/:name",
    "datasource_uid": "/api/datasources/uid/:uid", "datasource_id_by_name": "/api/datasources/id/:name",
    "proxy": "/api/datasources/proxy/:id/*", "dashboard": "/api/dashboards/uid/:uid", "dashboard_page": "/d/:uid/:slug",
    "static": "/public/*",
}
_OPEN = {"health", "login_page", "login", "logout", "static", "metrics", "login_ping"}
_PAGES = {"home", "dashboard_page"}


class _Handler(BaseHTTPRequestHandler):
    app: Grafana
    server_version = "Grafana"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        if self.app.settings.flag("server", "router_logging"):
            self.app.log("Request Completed", logger="context", method=self.command, path=self.path)

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

    def _dispatch(self) -> None:
        t0 = time.monotonic()
        split = urllib.parse.urlsplit(self.path)
        path, self.query = split.path, split.query
        self.params = urllib.parse.parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length > 0 else b""
        method = "GET" if self.command == "HEAD" else self.command
        name, match = "not_found", None
        for verb, pattern, handler in _ROUTES:
            m = pattern.fullmatch(path)
            if m and verb in ("*", method):
                name, match = handler, m
                break
            if m and name == "not_found":
                name = "method_not_allowed"
        status = 500
        try:
            status = self._run(name, match)
        except (BrokenPipeError, ConnectionResetError):
            status = 499
        finally:
            handler = _HANDLER_NAMES.get(name, path if name not in ("not_found", "method_not_allowed") else "notfound")
            self.app.metrics.observe(handler, self.command, status, time.monotonic() - t0)

    def _run(self, name: str, match: re.Match[str] | None) -> int:
        if name == "not_found":
            if self.path.startswith("/api/"):
                return self._send_json(404, {"message": "Not found"})
            return self._send(404, _page("Page not found", "<p>Page not found.</p>"), "text/html; charset=utf-8")
        if name == "method_not_allowed":
            return self._send_json(405, {"message": "Method Not Allowed"})
        self.login: str | None = None
        if name == "metrics":
            return self._metrics()
        if name not in _OPEN:
            login, error = self.app.user_for(self.headers)
            if login is None:
                if name in _PAGES:
                    back = urllib.parse.quote(self.path, safe="")
                    return self._redirect("/login", cookie=f"redirect_to={back}; Path=/; HttpOnly; SameSite=Lax")
                return self._send_json(401, {"message": error or "Unauthorized"})
            self.login = login
        args = match.groups() if match else ()
        h: Callable[..., int] = getattr(self, "h_" + name)
        return h(*args)

    # --- plumbing ------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str, headers: list[tuple[str, str]] | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in headers or []:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def _send_json(self, status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> int:
        return self._send(status, _json(obj), "application/json", headers)

    def _redirect(self, to: str, cookie: str | None = None) -> int:
        headers = [("Location", to)]
        if cookie:
            headers.append(("Set-Cookie", cookie))
        return self._send(302, f'<a href="{to}">Found</a>.\n'.encode(), "text/html; charset=utf-8", headers)

    # --- API -----------------------------------------------------------------------------

    def h_health(self) -> int:
        ok = self.app.store.ping()
        return self._send_json(200 if ok else 503, {"commit": COMMIT, "database": "ok" if ok else "failing", "version": VERSION})

    def h_datasources(self) -> int:
        return self._send_json(200, [datasource_json(ds, listing=True) for ds in self.app.store.datasources()])

    def _one_datasource(self, ds: DataSource | None) -> int:
        if ds is None:
            return self._send_json(404, {"message": "Data source not found"})
        return self._send_json(200, datasource_json(ds, listing=False))

    def h_datasource_id(self, id_: str) -> int:
        return self._one_datasource(self.app.store.datasource_by_id(int(id_)))

    def h_datasource_name(self, name: str) -> int:
        return self._one_datasource(self.app.store.datasource_by_name(urllib.parse.unquote(name)))

    def h_datasource_uid(self, uid: str) -> int:
        return self._one_datasource(self.app.store.datasource_by_uid(urllib.parse.unquote(uid)))

    def h_datasource_id_by_name(self, name: str) -> int:
        ds = self.app.store.datasource_by_name(urllib.parse.unquote(name))
        if ds is None:
            return self._send_json(404, {"message": "Data source not found"})
        return self._send_json(200, {"id": ds.id})

    def h_proxy(self, id_: str, rest: str | None) -> int:
        ds = self.app.store.datasource_by_id(int(id_))
        if ds is None:
            return self._send_json(404, {"message": "Unable to load datasource meta data"})
        if ds.access != "proxy":
            return self._send_json(400, {"message": "Data source is not configured for proxy access"})
        status, headers, body = self.app.proxy(ds, rest or "", self.query, self.command, self.headers, self.body)
        ctype = next((v for k, v in headers if k.lower() == "content-type"), "application/octet-stream")
        return self._send(status, body, ctype, [(k, v) for k, v in headers if k.lower() != "content-type"])

    def h_search(self) -> int:
        query = (self.params.get("query") or [""])[0].lower()
        types = set(self.params.get("type") or [])
        tags = set(self.params.get("tag") or [])
        uids = set(self.params.get("dashboardUIDs") or [])
        folder_ids = {int(x) for x in self.params.get("folderIds") or [] if x.lstrip("-").isdigit()}
        limit = int((self.params.get("limit") or ["1000"])[0] or 1000)
        all_dash = self.app.store.dashboards()
        folders = {d.id: d for d in all_dash if d.is_folder}
        hits = []
        for d in sorted(all_dash, key=lambda d: (not d.is_folder, d.title.lower())):
            kind = "dash-folder" if d.is_folder else "dash-db"
            if types and kind not in types:
                continue
            if query and query not in d.title.lower():
                continue
            if tags and not tags <= set(d.tags):
                continue
            if uids and d.uid not in uids:
                continue
            if folder_ids and d.folder_id not in folder_ids:
                continue
            url = f"/dashboards/f/{d.uid}/{d.slug}" if d.is_folder else f"/d/{d.uid}/{d.slug}"
            hit: dict[str, Any] = {
                "id": d.id, "uid": d.uid, "title": d.title, "uri": f"db/{d.slug}", "url": url, "slug": "",
                "type": kind, "tags": d.tags, "isStarred": False, "sortMeta": 0,
            }
            folder = folders.get(d.folder_id)
            if folder is not None:
                hit.update(folderId=folder.id, folderUid=folder.uid, folderTitle=folder.title,
                           folderUrl=f"/dashboards/f/{folder.uid}/{folder.slug}")
            hits.append(hit)
        return self._send_json(200, hits[:limit])

    def h_dashboard(self, uid: str) -> int:
        d = self.app.store.dashboard_by_uid(urllib.parse.unquote(uid))
        if d is None or d.is_folder:
            return self._send_json(404, {"message": "Dashboard not found"})
        folder = self.app.store.dashboard_by_id(d.folder_id) if d.folder_id else None
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d.updated))
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d.created))
        meta = {
            "type": "db", "canSave": True, "canEdit": True, "canAdmin": True, "canStar": True,
            "slug": d.slug, "url": f"/d/{d.uid}/{d.slug}", "expires": "0001-01-01T00:00:00Z",
            "created": created, "updated": stamp, "updatedBy": "Anonymous", "createdBy": "Anonymous",
            "version": d.version, "hasAcl": False, "isFolder": False,
            "folderId": folder.id if folder else 0, "folderUid": folder.uid if folder else "",
            "folderTitle": folder.title if folder else "General",
            "folderUrl": f"/dashboards/f/{folder.uid}/{folder.slug}" if folder else "",
            "provisioned": bool(d.provisioned_external_id), "provisionedExternalId": d.provisioned_external_id,
        }
        return self._send_json(200, {"meta": meta, "dashboard": d.data})

    def h_user(self) -> int:
        login = self.login or ""
        return self._send_json(200, {"id": 1 if login else 0, "login": login, "name": login, "email": f"{login}@localhost" if login else "",
                                     "isGrafanaAdmin": bool(login), "orgId": 1, "theme": "", "isDisabled": False})

    def h_login_ping(self) -> int:
        login, _ = self.app.user_for(self.headers)
        if login is None:
            return self._send_json(401, {"message": "Unauthorized"})
        return self._send_json(200, {"message": "Logged in"})

    def h_login_page(self) -> int:
        return self._static_file("login.html")

    def h_login(self) -> int:
        try:
            form = json.loads(self.body or b"{}")
        except ValueError:
            form = {}
        if not isinstance(form, dict):
            form = {}
        if "user" not in form and self.body:
            form = {k: v[0] for k, v in urllib.parse.parse_qs(self.body.decode("utf-8", "replace")).items()}
        if not self.app.check_login(str(form.get("user", "")), str(form.get("password", ""))):
            return self._send_json(401, {"message": "Invalid username or password"})
        token = self.app.store.new_session(str(form.get("user")))
        redirect = "/"
        for part in (self.headers.get("Cookie") or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == "redirect_to" and v:
                candidate = urllib.parse.unquote(v)
                if candidate.startswith("/") and not candidate.startswith("//"):
                    redirect = candidate
        cookies = [
            ("Set-Cookie", f"{self.app.settings.cookie_name}={token}; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax"),
            ("Set-Cookie", "redirect_to=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
        ]
        return self._send_json(200, {"message": "Logged in", "redirectUrl": redirect}, cookies)

    def h_logout(self) -> int:
        for part in (self.headers.get("Cookie") or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == self.app.settings.cookie_name and v:
                self.app.store.end_session(v)
        return self._redirect("/login", cookie=f"{self.app.settings.cookie_name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")

    def _metrics(self) -> int:
        s = self.app.settings
        if not s.flag("metrics", "enabled"):
            return self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
        user, password = s.get("metrics", "basic_auth_username"), s.get("metrics", "basic_auth_password")
        if user:
            auth = self.headers.get("Authorization") or ""
            try:
                given = base64.b64decode(auth[6:]).decode() if auth.lower().startswith("basic ") else ""
            except (ValueError, UnicodeDecodeError):
                given = ""
            if given != f"{user}:{password}":
                return self._send(401, b"Unauthorized\n", "text/plain; charset=utf-8", [("WWW-Authenticate", 'Basic realm="Grafana"')])
        return self._send(200, self.app.metrics.render(self.app.store).encode(), "text/plain; version=0.0.4; charset=utf-8")

    # --- pages ---------------------------------------------------------------------------

    def h_home(self) -> int:
        return self._static_file("home.html")

    def h_dashboard_page(self, uid: str) -> int:
        d = self.app.store.dashboard_by_uid(urllib.parse.unquote(uid))
        if d is None or d.is_folder:
            return self._send(404, _page("Dashboard not found", "<p>Dashboard not found.</p>"), "text/html; charset=utf-8")
        return self._static_file("dashboard.html")

    def h_static(self, name: str) -> int:
        return self._static_file(name)

    def _static_file(self, name: str) -> int:
        path = STATIC / name
        if not path.is_file() or path.parent != STATIC:
            return self._send(404, b"Not found\n", "text/plain; charset=utf-8")
        return self._send(200, path.read_bytes(), _TYPES.get(path.suffix, "application/octet-stream"))


def _page(title: str, body: str) -> bytes:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title} - Grafana</title>'
        f'<link rel="stylesheet" href="/public/sluice/grafana.css"></head><body class="theme-dark">'
        f'<div class="page-body">{body}<p><a href="/">Home</a></p></div></body></html>'
    ).encode()

