"""The Grafana stand-in (``sluice.lab.backends.grafana``): grafana.ini and the command line's
``cfg:`` arguments, provisioning as the labs mount it, the HTTP API's answers (auth, datasources,
proxy, search, dashboards, /metrics), the image registry entry, and the front end's arithmetic
in ``static/core.js`` ($__interval, steps, variable regexes, legends) run under node.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sluice.lab import compose, images, network
from sluice.lab.backends.grafana import provisioning, server, settings
from sluice.lab.backends.grafana.fs import ContainerFS
from sluice.lab.backends.grafana.store import Store

REPO = Path(__file__).resolve().parents[3]
LABS = REPO / "labs"
CORE_JS = REPO / "sluice" / "lab" / "backends" / "grafana" / "static" / "core.js"
ADMIN = "Basic " + base64.b64encode(b"admin:admin").decode()


def lab_fs(lab: str, tmp_path: Path) -> ContainerFS:
    """The grafana service's files as compose mounts them for ``lab``."""
    project = compose.load(LABS / lab, environ={})
    mounts = {m.target: str((project.directory / m.source).resolve()) for m in project.services["grafana"].volumes}
    return ContainerFS(str(tmp_path / "root"), mounts)


# --- settings ------------------------------------------------------------------------------


def test_lab_grafana_ini_and_defaults(tmp_path: Path) -> None:
    fs = lab_fs("monitoring", tmp_path)
    s = settings.load("/etc/grafana/grafana.ini", read=lambda p: Path(fs.host(p)).read_text(), environ={})
    assert s.instance_name == "grafana"  # quotes removed
    assert (s.admin_user, s.admin_password, s.http_port, s.http_addr) == ("admin", "admin", 3000, "")
    assert not s.anonymous and s.basic_auth and s.cookie_name == "grafana_session"
    assert s.get("server", "root_url") == "http://localhost:3000/"  # %(key)s of the same section


def test_settings_order_defaults_ini_env_overrides(tmp_path: Path) -> None:
    ini = tmp_path / "g.ini"
    ini.write_text(
        "; comment\n[server]\nhttp_port = 3001 ; inline comment\n[paths]\ndata = /from/ini\n"
        "[security]\nadmin_password = \"\"\"se;cret\"\"\"\n[auth.anonymous]\nenabled = true\norg_role = Editor\n"
    )
    args = ["cfg:default.paths.data=/default", "cfg:default.paths.logs=/logs", "cfg:server.http_addr=127.0.0.5"]
    s = settings.load(str(ini), args=args, environ={"GF_SERVER_HTTP_PORT": "3002", "GF_AUTH_ANONYMOUS_ORG_ROLE": "Admin"})
    assert s.path("data") == "/from/ini"  # the file wins over cfg:default.
    assert s.path("logs") == "/logs"
    assert s.http_port == 3002  # GF_* wins over the file
    assert s.http_addr == "127.0.0.5"  # cfg: overrides win over everything
    assert s.admin_password == "se;cret"
    assert s.anonymous and s.anonymous_role == "Admin"
    assert settings.env_name("auth.anonymous", "enabled") == "GF_AUTH_ANONYMOUS_ENABLED"


def test_settings_expansions_and_errors(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    ini = tmp_path / "g.ini"
    ini.write_text(f"[security]\nadmin_user = $__env{{WHO}}\nadmin_password = $__file{{{tmp_path / 'pw'}}}\n[server]\ndomain = ${{DOM}}\n")
    s = settings.load(str(ini), environ={"WHO": "root", "DOM": "grafana.lab"})
    assert (s.admin_user, s.admin_password, s.get("server", "root_url")) == ("root", "from-file", "http://grafana.lab:3000/")
    with pytest.raises(settings.SettingsError, match="failed to parse"):
        settings.load(str(tmp_path / "missing.ini"))
    (tmp_path / "bad.ini").write_text("[server]\nhttp_port = three\n")
    with pytest.raises(settings.SettingsError, match="not a port number"):
        settings.load(str(tmp_path / "bad.ini")).http_port  # noqa: B018
    (tmp_path / "worse.ini").write_text("[server\n")
    with pytest.raises(settings.SettingsError, match="unclosed section"):
        settings.load(str(tmp_path / "worse.ini"))
    with pytest.raises(settings.SettingsError, match="cfg:section.key=value"):
        settings.load(None, args=["--bogus"])


# --- provisioning --------------------------------------------------------------------------


def test_mounted_files_are_listed_in_their_folder(tmp_path: Path) -> None:
    fs = lab_fs("monitoring", tmp_path)
    assert fs.files("/etc/grafana/provisioning/dashboards/") == [
        "/etc/grafana/provisioning/dashboards/dashboard.json",
        "/etc/grafana/provisioning/dashboards/dashboard.yaml",
    ]
    assert fs.host("/var/lib/grafana/grafana.db") == str(tmp_path / "root" / "var/lib/grafana/grafana.db")


def test_lab_datasource_and_dashboard_provider(tmp_path: Path) -> None:
    fs = lab_fs("monitoring", tmp_path)
    (cfg,) = provisioning.read_datasources(fs, "/etc/grafana/provisioning", environ={})
    assert cfg.delete == []
    (ds,) = cfg.datasources
    assert (ds["name"], ds["type"], ds["access"], ds["url"], ds["isDefault"]) == ("prometheus", "prometheus", "proxy", "http://prometheus:9090", False)
    (provider,) = provisioning.read_dashboard_providers(fs, "/etc/grafana/provisioning", environ={})
    assert (provider.name, provider.type, provider.folder, provider.org_id) == ("default", "file", "", 1)
    assert provider.path == "/etc/grafana/provisioning/dashboards/" and provider.update_interval == 10
    # The statsd lab mounts a datasource and no dashboards.
    statsd = lab_fs("statsd-sink-and-prometheus", tmp_path)
    assert [d["name"] for c in provisioning.read_datasources(statsd, "/etc/grafana/provisioning") for d in c.datasources] == ["prometheus"]
    assert provisioning.read_dashboard_providers(statsd, "/etc/grafana/provisioning") == []


def test_dashboards_are_provisioned_with_a_stable_uid(tmp_path: Path) -> None:
    fs = lab_fs("monitoring", tmp_path)
    (provider,) = provisioning.read_dashboard_providers(fs, "/etc/grafana/provisioning")
    store = Store(str(tmp_path / "grafana.db"))
    (uid,) = provisioning.provision_dashboards(store, fs, provider)
    d = store.dashboard_by_uid(uid)
    assert d is not None and d.title == "Services Dashboard" and d.slug == "services-dashboard" and d.version == 1
    assert d.data["uid"] == uid and d.data["id"] == d.id and d.data["schemaVersion"] == 12 and len(d.data["rows"][0]["panels"]) == 3
    assert d.provisioned_external_id == "dashboard.json"
    again = Store(str(tmp_path / "other.db"))
    assert provisioning.provision_dashboards(again, lab_fs("monitoring-and-accesslog", tmp_path), provider) == [uid]
    assert provisioning.provision_dashboards(store, fs, provider) == [uid]  # unchanged file: same version
    assert store.dashboard_by_uid(uid).version == 1  # type: ignore[union-attr]


def test_dashboard_changes_folders_and_deletions(tmp_path: Path) -> None:
    folder = tmp_path / "dash"
    (folder / "team").mkdir(parents=True)
    (folder / "a.json").write_text(json.dumps({"title": "A Board", "uid": "aaa", "tags": ["x"]}))
    (folder / "team" / "b.json").write_text(json.dumps({"title": "B"}))
    (folder / "broken.json").write_text("{")
    (tmp_path / "prov" / "dashboards").mkdir(parents=True)
    (tmp_path / "prov" / "dashboards" / "d.yaml").write_text(
        f"apiVersion: 1\nproviders:\n- name: p\n  folder: Lab\n  options:\n    path: {folder}\n    foldersFromFilesStructure: true\n"
    )
    fs = ContainerFS()
    (provider,) = provisioning.read_dashboard_providers(fs, str(tmp_path / "prov"))
    store = Store(str(tmp_path / "g.db"))
    logged: list[str] = []
    uids = provisioning.provision_dashboards(store, fs, provider, lambda msg, **kv: logged.append(msg))
    assert "aaa" in uids and len(uids) == 2 and any("failed to load dashboard" in m for m in logged)
    folders = {d.title: d.id for d in store.dashboards() if d.is_folder}
    assert set(folders) == {"Lab", "team"}
    assert store.dashboard_by_uid("aaa").folder_id == folders["Lab"]  # type: ignore[union-attr]
    (folder / "a.json").write_text(json.dumps({"title": "A Board", "uid": "aaa", "tags": ["y"]}))
    (folder / "team" / "b.json").unlink()
    provisioning.provision_dashboards(store, fs, provider)
    a = store.dashboard_by_uid("aaa")
    assert a is not None and a.version == 2 and a.tags == ["y"]
    assert [d.title for d in store.dashboards() if not d.is_folder] == ["A Board"]


def test_invalid_datasource_files(tmp_path: Path) -> None:
    d = tmp_path / "datasources"
    d.mkdir()
    (d / "a.yaml").write_text("apiVersion: 1\ndatasources:\n- {name: one, type: prometheus, isDefault: true}\n- {name: two, type: prometheus, isDefault: true}\n")
    with pytest.raises(provisioning.ProvisioningError, match="Only one datasource per organization can be marked as default"):
        provisioning.read_datasources(ContainerFS(), str(tmp_path))
    (d / "a.yaml").write_text("datasources:\n- {type: prometheus}\n")
    with pytest.raises(provisioning.ProvisioningError, match="missing a name"):
        provisioning.read_datasources(ContainerFS(), str(tmp_path))
    (d / "a.yaml").write_text("deleteDatasources:\n- {name: old}\ndatasources:\n- {name: p, type: prometheus, url: 'http://$HOST:9090', jsonData: {timeInterval: 5s}}\n")
    (cfg,) = provisioning.read_datasources(ContainerFS(), str(tmp_path), environ={"HOST": "prom"})
    assert cfg.delete == [("old", 1)] and cfg.datasources[0]["url"] == "http://prom:9090"
    store = Store(str(tmp_path / "g.db"))
    store.upsert_datasource({"name": "old", "type": "graphite"})
    provisioning.provision_datasources(store, [cfg])
    assert [(x.name, x.json_data) for x in store.datasources()] == [("p", {"timeInterval": "5s"})]


# --- the HTTP API --------------------------------------------------------------------------


class Upstream:
    """A recording HTTP server standing for the datasource."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        up = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.answer()

            def do_POST(self) -> None:
                self.answer()

            def answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                up.seen.append((self.command, self.path, dict(self.headers.items()), body))
                data = json.dumps({"status": "success", "data": ["up"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Set-Cookie", "upstream=1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[dict[str, Any]]:
    up = Upstream()
    fs = lab_fs("monitoring", tmp_path)
    s = settings.load("/etc/grafana/grafana.ini", read=lambda p: Path(fs.host(p)).read_text(), environ={})
    store = Store(str(tmp_path / "grafana.db"))
    provisioning.provision_datasources(store, provisioning.read_datasources(fs, "/etc/grafana/provisioning"))
    store.upsert_datasource({"name": "dead", "type": "prometheus", "url": "http://127.0.0.1:1", "uid": "deaduid"})
    for p in provisioning.read_dashboard_providers(fs, "/etc/grafana/provisioning"):
        provisioning.provision_dashboards(store, fs, p)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 prometheus\n")
    store.upsert_datasource({"name": "prometheus", "type": "prometheus", "url": f"http://prometheus:{up.port}/base", "editable": True})
    app = server.Grafana(s, store, hosts_file=str(hosts))
    host, port = app.bind("127.0.0.1", 0)
    t = threading.Thread(target=app.serve_forever, daemon=True)
    t.start()
    try:
        yield {"base": f"http://{host}:{port}", "app": app, "up": up, "store": store}
    finally:
        app.shutdown()
        up.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def call(base: str, path: str, *, auth: str | None = ADMIN, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    h = dict(headers or {})
    if auth:
        h["Authorization"] = auth
    req = urllib.request.Request(base + path, data=body, method=method, headers=h)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=5) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_health_is_open(api: dict[str, Any]) -> None:
    status, headers, body = call(api["base"], "/api/health", auth=None)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"commit": "sluice-lab", "database": "ok", "version": "8.2.2"}


def test_auth(api: dict[str, Any]) -> None:
    base = api["base"]
    assert call(base, "/api/datasources", auth=None)[:3:2] == (401, b'{"message": "Unauthorized"}')
    bad = "Basic " + base64.b64encode(b"admin:nope").decode()
    status, _, body = call(base, "/api/datasources", auth=bad)
    assert status == 401 and json.loads(body) == {"message": "Invalid username or password"}
    status, headers, _ = call(base, "/d/whatever", auth=None)
    assert status == 302 and headers["Location"] == "/login"
    assert call(base, "/login", auth=None)[0] == 200
    assert call(base, "/login", auth=None, method="POST", body=b'{"user":"admin","password":"x"}')[0] == 401
    status, headers, body = call(base, "/login", auth=None, method="POST", body=b'{"user":"admin","password":"admin"}',
                                 headers={"Cookie": "redirect_to=%2Fd%2Fabc"})
    assert status == 200 and json.loads(body) == {"message": "Logged in", "redirectUrl": "/d/abc"}
    cookies = headers.get_all("Set-Cookie")
    token = cookies[0].split(";")[0]
    assert token.startswith("grafana_session=") and "HttpOnly" in cookies[0] and cookies[1].startswith("redirect_to=;")
    assert call(base, "/api/datasources", auth=None, headers={"Cookie": token})[0] == 200
    status, headers, _ = call(base, "/logout", auth=None, headers={"Cookie": token})
    assert status == 302 and call(base, "/api/datasources", auth=None, headers={"Cookie": token})[0] == 401
    api["app"].settings.raw["auth.anonymous"]["enabled"] = "true"
    assert call(base, "/api/datasources", auth=None)[0] == 200


def test_datasources(api: dict[str, Any]) -> None:
    base = api["base"]
    listing = json.loads(call(base, "/api/datasources")[2])
    assert [d["name"] for d in listing] == ["dead", "prometheus"]
    prom = listing[1]
    assert {k: prom[k] for k in ("id", "orgId", "type", "typeName", "access", "isDefault", "readOnly", "basicAuth")} == {
        "id": 1, "orgId": 1, "type": "prometheus", "typeName": "Prometheus", "access": "proxy", "isDefault": False,
        "readOnly": False, "basicAuth": False,
    }
    assert len(prom["uid"]) == 9 and prom["url"].endswith("/base")
    one = json.loads(call(base, "/api/datasources/1")[2])
    assert one["name"] == "prometheus" and one["version"] == 2 and one["secureJsonFields"] == {} and "typeName" not in one
    assert json.loads(call(base, "/api/datasources/name/prometheus")[2])["id"] == 1
    assert json.loads(call(base, f"/api/datasources/uid/{prom['uid']}")[2])["id"] == 1
    assert json.loads(call(base, "/api/datasources/id/prometheus")[2]) == {"id": 1}
    assert call(base, "/api/datasources/9") [:3:2] == (404, b'{"message": "Data source not found"}')
    assert call(base, "/api/datasources/name/nope")[0] == 404


def test_datasource_proxy_forwards(api: dict[str, Any]) -> None:
    base, up = api["base"], api["up"]
    status, headers, body = call(base, "/api/datasources/proxy/1/api/v1/label/__name__/values?start=1&end=2",
                                 headers={"Cookie": "grafana_session=x; other=y"})
    assert status == 200 and json.loads(body) == {"status": "success", "data": ["up"]}
    assert "Set-Cookie" not in headers  # the datasource's cookies stay out
    method, path, seen_headers, _ = up.seen[-1]
    assert (method, path) == ("GET", "/base/api/v1/label/__name__/values?start=1&end=2")
    assert seen_headers["Host"] == f"prometheus:{up.port}"  # resolved through the hosts file
    assert "Cookie" not in seen_headers and "Authorization" not in seen_headers
    assert seen_headers["User-Agent"] == "Grafana/8.2.2"
    form = b"query=1%2B1&time=1700000000"
    call(base, "/api/datasources/proxy/1/api/v1/query", method="POST", body=form,
         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert up.seen[-1][0] == "POST" and up.seen[-1][3] == form
    dead = call(base, "/api/datasources/proxy/2/api/v1/query?query=1")
    assert dead[0] == 502
    assert call(base, "/api/datasources/proxy/7/x")[0] == 404


def test_search_and_dashboard(api: dict[str, Any]) -> None:
    base = api["base"]
    hits = json.loads(call(base, "/api/search?query=serv")[2])
    (hit,) = hits
    uid = hit["uid"]
    assert hit == {
        "id": hit["id"], "uid": uid, "title": "Services Dashboard", "uri": "db/services-dashboard",
        "url": f"/d/{uid}/services-dashboard", "slug": "", "type": "dash-db", "tags": [], "isStarred": False, "sortMeta": 0,
    }
    assert json.loads(call(base, "/api/search?query=nothing-like-it")[2]) == []
    assert json.loads(call(base, "/api/search?type=dash-folder")[2]) == []
    doc = json.loads(call(base, f"/api/dashboards/uid/{uid}")[2])
    assert doc["dashboard"]["title"] == "Services Dashboard" and doc["dashboard"]["uid"] == uid
    assert doc["dashboard"]["refresh"] == "10s" and doc["dashboard"]["time"] == {"from": "now-1h", "to": "now"}
    meta = doc["meta"]
    assert (meta["slug"], meta["url"], meta["folderTitle"], meta["provisioned"], meta["provisionedExternalId"]) == (
        "services-dashboard", f"/d/{uid}/services-dashboard", "General", True, "dashboard.json")
    assert call(base, "/api/dashboards/uid/nope")[:3:2] == (404, b'{"message": "Dashboard not found"}')
    status, headers, page = call(base, f"/d/{uid}/services-dashboard?orgId=1")
    assert status == 200 and b"/public/sluice/uPlot.iife.min.js" in page and b"dashboard.js" in page
    assert call(base, f"/d/{uid}")[0] == 200 and call(base, "/d/nope")[0] == 404
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "core.js", "dashboard.js", "grafana.css"):
        assert call(base, "/public/sluice/" + name, auth=None)[0] == 200, name
    assert call(base, "/public/sluice/../server.py", auth=None)[0] == 404


def test_metrics_text_format(api: dict[str, Any]) -> None:
    base = api["base"]
    call(base, "/api/health", auth=None)
    call(base, "/api/datasources/proxy/1/api/v1/query?query=1")
    status, headers, body = call(base, "/metrics", auth=None)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert 'grafana_build_info{branch="HEAD",edition="oss",goversion="go1.16.9",revision="sluice-lab",version="8.2.2"} 1' in text
    assert 'grafana_http_request_duration_seconds_count{handler="/api/health",method="GET",status_code="200"} 1' in text
    assert 'grafana_http_request_duration_seconds_bucket{handler="/api/datasources/proxy/:id/*",method="GET",status_code="200",le="+Inf"} 1' in text
    assert 'grafana_datasource_request_total{code="200",datasource="prometheus",method="GET"} 1' in text
    assert "grafana_stat_totals_dashboard 1" in text and 'grafana_stat_totals_datasource{plugin_id="prometheus"} 2' in text
    sample = r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? [-+0-9.eEInf]+'
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or re.fullmatch(sample, line), line
    api["app"].settings.raw["metrics"].update(basic_auth_username="m", basic_auth_password="p")
    assert call(base, "/metrics", auth=None)[0] == 401
    assert call(base, "/metrics", auth="Basic " + base64.b64encode(b"m:p").decode())[0] == 200


# --- the image registry --------------------------------------------------------------------


def grafana_decision(lab: str, tmp_path: Path) -> images.Decision:
    project = compose.load(LABS / lab, environ={})
    svc = project.services["grafana"]
    ad = network.allocate(project)
    mounts = {m.target: str((project.directory / m.source).resolve()) for m in svc.volumes}
    ctx = images.ImageContext(project, svc, ad.addresses["grafana"], ad.hostnames["grafana"], tmp_path / "root", mounts, tmp_path)
    return images.decide(ctx)


def test_grafana_image_runs_the_stand_in(tmp_path: Path) -> None:
    d = grafana_decision("monitoring", tmp_path)
    assert d.not_running is None and d.program == "grafana 8.2.2" and d.problems == []
    (proc,) = d.processes
    assert proc.argv[1:4] == ["-m", "sluice.lab.backends.grafana", "--homepath=/usr/share/grafana"]
    assert "--config=/etc/grafana/grafana.ini" in proc.argv
    assert "cfg:default.paths.provisioning=/etc/grafana/provisioning" in proc.argv
    assert proc.argv[-1] == "cfg:server.http_addr=127.31.70.68"
    assert [(p.address, p.port) for p in proc.ports] == [("127.31.70.68", 3000)]
    statsd = grafana_decision("statsd-sink-and-prometheus", tmp_path)
    assert [(p.address, p.port) for p in statsd.processes[0].ports] == [("127.31.68.8", 3000)]
    access = grafana_decision("monitoring-and-accesslog", tmp_path)
    assert [(p.address, p.port) for p in access.processes[0].ports] == [("127.31.79.18", 3000)]


def test_grafana_port_from_the_ini_and_environment(tmp_path: Path) -> None:
    (tmp_path / "g.ini").write_text("[server]\nhttp_port = 3300\n")
    (tmp_path / "docker-compose.yaml").write_text(
        "services:\n  g:\n    image: grafana/grafana:8.2.2\n    volumes: ['./g.ini:/etc/grafana/grafana.ini']\n"
        "  h:\n    image: grafana/grafana\n    environment: [GF_SERVER_HTTP_PORT=4000]\n    command: ['--x']\n"
    )
    project = compose.load(tmp_path, environ={})
    ad = network.allocate(project)
    for name, port in (("g", 3300), ("h", 4000)):
        svc = project.services[name]
        mounts = {m.target: str((project.directory / m.source).resolve()) for m in svc.volumes}
        ctx = images.ImageContext(project, svc, ad.addresses[name], ad.hostnames[name], tmp_path / name, mounts, tmp_path)
        d = images.decide(ctx)
        assert [p.port for p in d.processes[0].ports] == [port]
        if name == "h":
            assert "--config=/etc/grafana/grafana.ini" not in d.processes[0].argv
            assert [p.key for p in d.problems] == ["command"]


# --- core.js under node --------------------------------------------------------------------


def core(calls: list[tuple[str, list[Any]]]) -> list[Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to test static/core.js (the dashboard's arithmetic): install Node.js (Debian: nodejs)")
    script = (
        f"const C = require({json.dumps(str(CORE_JS))});"
        "const calls = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const out = calls.map(([f, args]) => { try { return C[f](...args); } catch (e) { return {error: e.message}; } });"
        "process.stdout.write(JSON.stringify(out));"
    )
    r = subprocess.run([node, "-e", script], input=json.dumps(calls), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


HOUR_MS = 3_600_000
NOW_MS = 1_764_640_817_123  # not on a step boundary
NAMES = [
    "go_goroutines",
    "service_a_cluster_service_b_upstream_rq_2xx",
    "service_a_cluster_service_b_upstream_rq_5xx",
    "service_a_cluster_service_c_upstream_rq_2xx",
    "service_b_cluster_service_c_upstream_rq_2xx",
    "service_b_cluster_service_c_upstream_rq_time",
    "front_envoy_cluster_service_a_upstream_rq_2xx",
]


def test_interval_and_step() -> None:
    target = {"expr": "[[source]]_cluster_[[destination]]_upstream_rq_2xx - [[source]]_cluster_[[destination]]_upstream_rq_2xx offset $__interval",
              "intervalFactor": 2, "interval": "", "step": 10}
    variables = {"source": "service_a", "destination": "service_b"}
    plan = {"from": NOW_MS - HOUR_MS, "to": NOW_MS, "maxDataPoints": 500, "datasourceInterval": "15s", "target": target, "variables": variables}
    out = core([
        ("roundInterval", [7200]), ("roundInterval", [3_600_000 / 1500]), ("roundInterval", [40_000]), ("roundInterval", [5]),
        ("calculateInterval", [HOUR_MS, 500, "15s"]), ("calculateInterval", [HOUR_MS, 500, ""]),
        ("calculateInterval", [24 * HOUR_MS, 800, "15s"]),
        ("adjustInterval", [15, 15, 3600, 2]), ("adjustInterval", [1, 0, 86400 * 30, 1]),
        ("queryPlan", [plan]),
        ("queryPlan", [{**plan, "maxDataPoints": 100, "target": {**target, "intervalFactor": 1}}]),
        ("queryPlan", [{**plan, "from": NOW_MS - 24 * HOUR_MS, "maxDataPoints": 1000}]),
        ("intervalToMs", ["1m"]), ("intervalToMs", [">10s"]), ("intervalToMs", ["abc"]),
        ("parseTime", ["now-1h", False, NOW_MS]), ("parseTime", ["now", True, NOW_MS]), ("parseTime", ["now/d", False, NOW_MS]),
    ])
    assert out[:4] == [5000, 2000, 30000, 1]
    assert out[4] == {"intervalMs": 15000, "interval": "15s"}  # 7.2s rounds to 5s, floored by timeInterval 15s
    assert out[5] == {"intervalMs": 5000, "interval": "5s"}
    assert out[6] == {"intervalMs": 120000, "interval": "2m"}
    assert out[7] == 30 and out[8] == 236  # ×intervalFactor; at most 11000 points
    p = out[9]
    assert p["step"] == 30 and p["interval"] == "15s"
    assert p["expr"] == "service_a_cluster_service_b_upstream_rq_2xx - service_a_cluster_service_b_upstream_rq_2xx offset 30s"
    end = -(-NOW_MS // 1000)
    assert p["end"] == end // 30 * 30 and p["start"] == (end - 3600) // 30 * 30
    assert out[10]["step"] == 30 and out[10]["expr"].endswith("offset 30s")  # 36s rounds to 30s; factor 1 keeps it
    assert out[11]["step"] == 120 and out[11]["expr"].endswith("offset 120s")  # 86.4s → 1m, ×2, shown in seconds
    assert out[12:14] == [60000, 10000] and "error" in out[14]
    assert out[15] == NOW_MS - HOUR_MS and out[16] == NOW_MS and out[17] % 86_400_000 == 0


def test_variable_queries_and_regexes() -> None:
    out = core([
        ("parseVariableQuery", ["metrics(.*_cluster_.*_upstream_rq_2xx)"]),
        ("parseVariableQuery", ["label_values(job)"]), ("parseVariableQuery", ["label_values(up, instance)"]),
        ("parseVariableQuery", ["up == 1"]),
        ("filterMetricNames", [NAMES, ".*_cluster_.*_upstream_rq_2xx"]),
        ("variableOptions", [[n for n in NAMES if n.endswith("_upstream_rq_2xx")], "/(.*)_cluster_.*_upstream_rq_2xx/", 1]),
        ("variableOptions", [[n for n in NAMES if n.endswith("_upstream_rq_2xx")], "/.*_cluster_(.*)_upstream_rq_2xx/", 1]),
        ("variableOptions", [["b10", "a2", "B1", "a2"], "", 0]), ("variableOptions", [["b10", "a2", "c1"], "", 2]),
        ("variableOptions", [["b10", "a2", "c1"], "", 3]), ("variableOptions", [["x1y"], "/(?<text>x)(?<value>\\d)/", 0]),
        ("pickCurrent", [[{"text": "service_b", "value": "service_b"}], {"text": "service_a", "value": "service_a"}]),
        ("pickCurrent", [[{"text": "service_a", "value": "service_a"}, {"text": "b", "value": "b"}], {"text": "service_a", "value": "service_a"}]),
        ("pickCurrent", [[], {"text": "service_a", "value": "service_a"}]),
        ("stringToJsRegex", ["/x(/"]),
    ])
    assert out[0] == {"kind": "metrics", "regex": ".*_cluster_.*_upstream_rq_2xx"}
    assert out[1] == {"kind": "label_values", "label": "job"}
    assert out[2] == {"kind": "series_label", "match": "up", "label": "instance"}
    assert out[3] == {"kind": "query_result", "query": "up == 1"}
    assert out[4] == [n for n in NAMES if n.endswith("_upstream_rq_2xx")]
    # Greedy groups, as in the browser: "service_a_cluster_service_b…" → source service_a.
    assert [o["value"] for o in out[5]] == ["front_envoy", "service_a", "service_b"]
    assert [o["value"] for o in out[6]] == ["service_a", "service_b", "service_c"]
    assert [o["value"] for o in out[7]] == ["b10", "a2", "B1"]  # no sort, duplicates dropped
    assert [o["value"] for o in out[8]] == ["c1", "b10", "a2"]  # alphabetical, descending
    assert [o["value"] for o in out[9]] == ["c1", "a2", "b10"]  # numerical
    assert out[10] == [{"text": "x", "value": "1"}]
    assert out[11] == {"text": "service_b", "value": "service_b"} and out[12]["value"] == "service_a"
    assert out[13] == {"text": "service_a", "value": "service_a"}
    assert "error" in out[14] or out[14] == {}


def test_interpolation_and_legends() -> None:
    matrix = {"data": {"result": [
        {"metric": {"__name__": "rq_time", "quantile": "0.99", "job": "statsd"}, "values": [[60, "1.5"], [120, "NaN"]]},
        {"metric": {"job": "statsd"}, "values": [[90, "2"]]},
    ]}}
    out = core([
        ("interpolate", ["[[a]]-$a-${a}-${a:raw}-$unknown-[[b:regex]]", {"a": "x'y", "b": "a.b"}, {}, None]),
        ("renderLegend", ["{{quantile}}", {"quantile": "0.5"}]), ("renderLegend", ["{{ job }}/{{missing}}", {"job": "j"}]),
        ("seriesName", [{"__name__": "up", "job": "j", "instance": "i"}, ""]), ("seriesName", [{}, ""]),
        ("matrixToSeries", [matrix, {"start": 60, "end": 150, "step": 30}, "{{quantile}}"]),
        ("formatShort", [1500]), ("formatShort", [0.25]), ("formatShort", [42]), ("formatShort", [2_500_000]),
        ("prometheusEscape", ["a'b\\c"]),
    ])
    assert out[0] == "x'y-x'y-x'y-x'y-$unknown-a\\.b"
    assert out[1] == "0.5" and out[2] == "j/"
    assert out[3] == 'up{instance="i", job="j"}' and out[4] == "{}"
    assert out[5] == {"x": [60, 90, 120, 150], "series": [
        {"name": "0.99", "labels": matrix["data"]["result"][0]["metric"], "values": [1.5, None, None, None]},
        {"name": "", "labels": {"job": "statsd"}, "values": [None, 2, None, None]},
    ]}
    assert out[6:10] == ["1.5 K", "0.25", "42", "2.5 Mil"]
    assert out[10] == "a\\'b\\\\c"


def test_layout_of_legacy_rows() -> None:
    dash = json.loads((LABS / "monitoring" / "grafana" / "dashboard.json").read_text())
    (row,) = core([("layoutRows", [dash])])[0]
    assert row["height"] == 250 and not row["showTitle"]
    assert [(p["title"], p["span"], p["type"]) for p in row["panels"]] == [("2XX", 4, "graph"), ("5XX", 4, "graph"), ("Latency", 4, "graph")]
