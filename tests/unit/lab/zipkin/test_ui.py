"""The UI files as the two stand-ins serve them (``ui.py``): content types, cache validators,
HEAD, client-side routes answered with the app, API paths left alone, traversal refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from zipkin_kit import call

from sluice.lab.backends.zipkin.http import Request, Response
from sluice.lab.backends.zipkin.jaeger_api import JaegerQuery
from sluice.lab.backends.zipkin.store import Store
from sluice.lab.backends.zipkin.ui import STATIC, Site, content_type, resolve
from sluice.lab.backends.zipkin.zipkin_api import Settings, ZipkinApi


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "spans.sqlite"), product="zipkin", max_spans=1000)


def header(resp: Response, name: str) -> str | None:
    return next((v for k, v in resp.headers if k == name), None)


def test_zipkin_assets_and_client_routes(store: Store) -> None:
    api = ZipkinApi(store, Settings())
    app = (STATIC / "zipkin.html").read_bytes()
    for path in ("/zipkin/", "/zipkin/traces/0a9d13c9f4f6098d", "/zipkin/dependency", "/zipkin/some/client/route"):
        r = call(api.handle, "GET", path)
        assert (r.status, r.content_type, r.body) == (200, "text/html; charset=utf-8", app), path
    js = call(api.handle, "GET", "/zipkin/static/timeline.js")
    assert (js.status, js.content_type) == (200, "text/javascript; charset=utf-8")
    assert js.body == (STATIC / "timeline.js").read_bytes()
    css = call(api.handle, "GET", "/zipkin/static/tracing.css")
    assert (css.status, css.content_type) == (200, "text/css; charset=utf-8")
    assert header(css, "cache-control") == "no-cache" and header(css, "x-content-type-options") == "nosniff"
    # the ETag revalidates: 304 without a body
    etag = header(css, "etag")
    assert etag and etag.startswith('"') and len(etag) == 22
    again = call(api.handle, "GET", "/zipkin/static/tracing.css", headers={"If-None-Match": f'"x", {etag}'})
    assert (again.status, again.body, header(again, "etag")) == (304, b"", etag)
    # an unknown asset is a 404, not the app
    missing = call(api.handle, "GET", "/zipkin/static/nope.js")
    assert (missing.status, missing.body) == (404, b"404 Not Found")
    # the API and its neighbours are untouched
    assert call(api.handle, "GET", "/").status == 302
    assert call(api.handle, "GET", "/zipkin/config.json").content_type == "application/json; charset=utf-8"
    assert call(api.handle, "GET", "/api/v2/services").body == b"[]"
    assert call(api.handle, "GET", "/nothing").status == 404
    assert call(api.handle, "POST", "/zipkin/traces/x").status == 404


def test_head_is_get_without_a_body(store: Store) -> None:
    api = ZipkinApi(store, Settings())
    head = api.handle(Request("HEAD", "/zipkin/static/zipkin.js", "", {}, b""))
    get = api.handle(Request("GET", "/zipkin/static/zipkin.js", "", {}, b""))
    # the HTTP layer drops a HEAD's body but keeps its length; the handler answers as for GET
    assert (head.status, head.content_type, head.body, head.headers) == (get.status, get.content_type, get.body, get.headers)
    assert Site(prefix="/zipkin/", app="zipkin.html").serve(Request("DELETE", "/zipkin/", "", {}, b"")) is None


def test_jaeger_serves_the_app_for_every_non_api_path(tmp_path: Path) -> None:
    q = JaegerQuery(Store(str(tmp_path / "j.sqlite"), product="jaeger", max_spans=0))
    app = (STATIC / "jaeger.html").read_bytes()
    for path in ("/", "/search", "/trace/aed5400b612c6a28", "/dependencies", "/apix"):
        r = call(q.handle, "GET", path)
        assert (r.status, r.content_type, r.body) == (200, "text/html; charset=utf-8", app), path
    js = call(q.handle, "GET", "/static/jaeger.js")
    assert (js.status, js.content_type, js.body) == (200, "text/javascript; charset=utf-8", (STATIC / "jaeger.js").read_bytes())
    assert call(q.handle, "GET", "/static/timeline.js").body == (STATIC / "timeline.js").read_bytes()
    # /api stays the API's: its own 404s and envelopes
    assert call(q.handle, "GET", "/api/nothing").body == b"404 page not found\n"
    assert call(q.handle, "GET", "/api").body == b"404 page not found\n"
    assert call(q.handle, "GET", "/api/services").body.startswith(b'{"data":null')
    assert call(q.handle, "POST", "/search").body == b"404 page not found\n"


@pytest.mark.parametrize("path", [
    "/zipkin/static/../ui.py", "/zipkin/static/..", "/zipkin/static/./zipkin.js", "/zipkin/static//etc/passwd",
    "/zipkin/static/%2e%2e/ui.py", "/zipkin/static/..%2fui.py", "/zipkin/static/sub/../../ui.py", "/zipkin/static/",
    "/zipkin/static/..\\ui.py", "/zipkin/static/C:/x", "/zipkin/static/zipkin.js\x00.png",
])
def test_traversal_is_refused(store: Store, path: str) -> None:
    from urllib.parse import unquote

    api = ZipkinApi(store, Settings())
    # the HTTP layer hands the handler the percent-decoded path
    r = api.handle(Request("GET", unquote(path), "", {}, b""))
    assert (r.status, r.body) == (404, b"404 Not Found"), path


def test_symlinks_outside_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "static"
    root.mkdir()
    (root / "app.html").write_text("<p>app</p>")
    (root / "ok.css").write_text("a{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, root / "leak.txt")
    os.symlink(root / "ok.css", root / "alias.css")  # a link that stays inside is fine
    os.symlink(tmp_path, root / "up")
    site = Site(prefix="/ui/", app="app.html", root=root)

    def get(path: str) -> tuple[int, bytes, str | None]:
        r = site.serve(Request("GET", path, "", {}, b""))
        assert r is not None
        return r.status, r.body, r.content_type

    assert get("/ui/static/leak.txt")[0] == 404
    assert get("/ui/static/up/secret.txt")[0] == 404
    assert get("/ui/static/alias.css") == (200, b"a{}", "text/css; charset=utf-8")
    assert get("/ui/elsewhere") == (200, b"<p>app</p>", "text/html; charset=utf-8")
    assert site.serve(Request("GET", "/other", "", {}, b"")) is None
    assert resolve(root, "ok.css") == (root / "ok.css").resolve()
    assert resolve(root, "missing.css") is None and resolve(root, "/etc/passwd") is None


def test_content_types() -> None:
    assert [content_type(n) for n in ("a.html", "a.JS", "a.css", "a.svg", "a.png", "a.json", "a.ico", "a.bin", "noext")] == [
        "text/html; charset=utf-8", "text/javascript; charset=utf-8", "text/css; charset=utf-8", "image/svg+xml", "image/png",
        "application/json", "image/x-icon", "application/octet-stream", "application/octet-stream"]


def test_every_shipped_file_is_packaged() -> None:
    pyproject = (Path(__file__).resolve().parents[4] / "pyproject.toml").read_text()
    assert '"sluice.lab.backends.zipkin" = ["static/*"]' in pyproject
    names = sorted(p.name for p in STATIC.iterdir())
    assert names == ["jaeger.html", "jaeger.js", "timeline.js", "tracing.css", "zipkin-model.js", "zipkin.html", "zipkin.js"]
    for html in ("zipkin.html", "jaeger.html"):
        text = (STATIC / html).read_text()
        assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
