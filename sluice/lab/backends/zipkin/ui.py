"""The browser UIs the two images ship, served from ``static/``: Zipkin Lens under ``/zipkin/``
(``ZipkinUiConfiguration``: assets under ``/zipkin/static/``, ``index.html`` for every other
``/zipkin/…`` path so the app's client-side routes load directly) and the Jaeger UI on the query
port (``cmd/query/app/static_handler.go``: assets under ``/static/``, ``index.html`` for every
path the ``/api`` router does not take).

The pages are plain HTML/CSS/JS written for these stand-ins (no build step, nothing fetched from
elsewhere); ``timeline.js`` draws the trace timeline for both, ``zipkin.js`` and ``jaeger.js`` adapt
each API to it.

Deliberate differences: the real servers answer hashed asset names with a year-long cache; these
names are not hashed, so assets are ``no-cache`` with an ETag (a reload revalidates, 304 when
unchanged), and an unknown asset is a plain 404 rather than the app.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from sluice.lab.backends.zipkin.http import Request, Response

STATIC = Path(__file__).resolve().parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
NOT_FOUND = b"404 Not Found"


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")


def resolve(root: Path, relative: str) -> Path | None:
    """The file ``relative`` names under ``root``, or None: no empty, ``.`` or ``..`` segment,
    no absolute path or drive, no backslash or NUL, and the real path (symlinks followed) must
    stay inside the real ``root`` and be a regular file."""
    if not relative or "\\" in relative or "\0" in relative or relative.startswith("/") or ":" in relative:
        return None
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    base = root.resolve()
    try:
        target = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


@dataclass(frozen=True, slots=True)
class Site:
    """One UI: ``prefix`` is where the app lives (``/zipkin/`` or ``/``), ``assets`` the folder
    of its files under it, ``app`` the page every client-side route answers with, ``excluded``
    the path prefixes that belong to the API (left to its own 404)."""

    prefix: str
    app: str
    assets: str = "static/"
    excluded: tuple[str, ...] = ()
    root: Path = STATIC

    def serve(self, req: Request) -> Response | None:
        """The answer for a UI path, or None when the path is not the UI's (or the method is
        not GET/HEAD: the API's 404/405 applies)."""
        if req.method not in ("GET", "HEAD"):
            return None
        path = req.path
        if any(path == p or path.startswith(p + "/") for p in self.excluded) or not path.startswith(self.prefix):
            return None
        rest = path[len(self.prefix) :]
        if rest.startswith(self.assets):
            target = resolve(self.root, rest[len(self.assets) :])
            if target is None:
                return Response(404, NOT_FOUND, "text/plain; charset=utf-8")
            return _file(req, target)
        # A client-side route: the app page, whatever follows (the page reads location itself).
        return _file(req, self.root / self.app)


def _file(req: Request, target: Path) -> Response:
    body = target.read_bytes()
    etag = '"' + hashlib.sha1(body, usedforsecurity=False).hexdigest()[:20] + '"'
    headers = [("cache-control", "no-cache"), ("etag", etag), ("x-content-type-options", "nosniff")]
    if etag in (t.strip() for t in req.headers.get("if-none-match", "").split(",")):
        return Response(304, b"", None, headers)
    return Response(200, body, content_type(target.name), headers)


ZIPKIN = Site(prefix="/zipkin/", app="zipkin.html")
JAEGER = Site(prefix="/", app="jaeger.html", excluded=("/api",))
"""Jaeger's router takes ``/api`` (and anything below it) before the static handler."""
