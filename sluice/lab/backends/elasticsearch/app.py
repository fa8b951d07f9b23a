"""The REST layer: a request (from :mod:`.web`, on a worker thread) → route → handler → answer.

Routing follows ES's ``PathTrie``: path segments are percent-decoded one by one (so an index
name may hold ``/``, as date math does), a literal segment wins over a ``{placeholder}``, a
known path with another method is 405 (``Incorrect HTTP method…``), an unknown one 400 (``no
handler found…``), and HEAD is served by the GET handler without the body.

Every answer: ``?pretty`` (Jackson's layout; ``GET /`` is pretty unless told otherwise),
``?filter_path``; a body needs a JSON ``Content-Type`` (406 otherwise, as ES); ``gzip`` /
``deflate`` request bodies are inflated.
"""

from __future__ import annotations

import gzip
import time
import traceback
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sluice.lab.backends.elasticsearch import jsonfmt
from sluice.lab.backends.elasticsearch.errors import EsError, RawError
from sluice.lab.backends.elasticsearch.search import Searcher
from sluice.lab.backends.elasticsearch.settings import NodeSettings
from sluice.lab.backends.elasticsearch.store import Store
from sluice.lab.backends.elasticsearch.web import Request, Response
from sluice.lab.backends.elasticsearch.writer import Writer

Log = Callable[..., None]
_JSON_TYPES = ("application/json", "application/x-ndjson", "application/vnd.elasticsearch+json",
               "application/vnd.elasticsearch+x-ndjson")


@dataclass(slots=True)
class Text:
    body: bytes
    content_type: str = "text/plain; charset=UTF-8"


@dataclass(slots=True)
class Ctx:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    vars: dict[str, str] = field(default_factory=dict)

    def flag(self, name: str, default: bool = False) -> bool:
        if name not in self.params:
            return default
        return self.params[name].lower() in ("", "true")

    def json(self) -> Any:
        """The body as JSON (or the ``source`` parameter, for clients that cannot send a GET
        body); None when there is none."""
        raw = self.body
        if not raw.strip() and "source" in self.params:
            raw = self.params["source"].encode()
        if not raw.strip():
            return None
        return jsonfmt.loads(raw)

    def var(self, name: str) -> str:
        return self.vars[name]


Result = tuple[int, Any]
HandlerFn = Callable[["App", Ctx], "Result | Text | tuple[int, Text]"]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[frozenset[str], tuple[str, ...], HandlerFn]] = []

    def add(self, methods: str, pattern: str, fn: HandlerFn) -> None:
        segs = tuple(s for s in pattern.split("/") if s)
        self.routes.append((frozenset(methods.split(",")), segs, fn))

    def find(self, method: str, segs: list[str], raw_path: str) -> tuple[HandlerFn, dict[str, str]]:
        best: list[tuple[tuple[int, ...], frozenset[str], HandlerFn, dict[str, str]]] = []
        for methods, pattern, fn in self.routes:
            if len(pattern) != len(segs):
                continue
            bound: dict[str, str] = {}
            rank: list[int] = []
            for p, s in zip(pattern, segs, strict=True):
                if p.startswith("{"):
                    bound[p[1:-1]] = s
                    rank.append(0)
                elif p == s:
                    rank.append(1)
                else:
                    break
            else:
                best.append((tuple(rank), methods, fn, bound))
        if not best:
            raise RawError(400, "", f"no handler found for uri [{raw_path}] and method [{method}]")
        top = max(b[0] for b in best)
        same = [b for b in best if b[0] == top]
        want = "GET" if method == "HEAD" else method
        for _, methods, fn, bound in same:
            if method in methods:
                return fn, bound
        for _, methods, fn, bound in same:
            if want in methods:
                return fn, bound
        allowed = sorted({m for b in same for m in b[1]})
        raise RawError(405, "", f"Incorrect HTTP method for uri [{raw_path}] and method [{method}], allowed: [{', '.join(allowed)}]")


class App:
    def __init__(self, settings: NodeSettings, store: Store, log: Log | None = None) -> None:
        from sluice.lab.backends.elasticsearch import routes

        self.settings = settings
        self.store = store
        self.log: Log = log or (lambda *a, **k: None)
        self.searcher = Searcher(store)
        self.writer = Writer(store, auto_create=settings.get("action.auto_create_index", "true"))
        self.started = time.time()
        self.http_address = ""
        self.cluster_settings: dict[str, dict[str, Any]] = {"persistent": {}, "transient": {}}
        self.router = Router()
        routes.install(self.router)

    def handle(self, req: Request) -> Response:
        path, _, query = req.target.partition("?")
        params: dict[str, str] = {}
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
            params[k] = v
        segs = [urllib.parse.unquote(s) for s in path.split("/") if s]
        pretty = "pretty" in params and params["pretty"].lower() in ("", "true")
        try:
            fn, bound = self.router.find(req.method, segs, path)
            body = self._body(req)
            ctx = Ctx(req.method, path, params, req.headers, body, bound)
            if not segs and "pretty" not in params:
                pretty = True  # GET / answers pretty unless asked otherwise (RestMainAction)
            out = fn(self, ctx)
        except EsError as exc:
            out = (exc.status, exc.body())
        except Exception as exc:  # a bug here must not take the node down; answer as ES answers one
            self.log("error", "o.e.r.RestController", f"failed to handle [{req.method} {path}]: {exc!r}\n{traceback.format_exc()}")
            err = EsError(500, "exception", str(exc) or type(exc).__name__)
            out = (500, err.body())
        if isinstance(out, Text):
            return Response(200, out.body, out.content_type)
        status, payload = out
        if isinstance(payload, Text):
            return Response(status, payload.body, payload.content_type)
        if "filter_path" in params and isinstance(payload, (dict, list)):
            payload = jsonfmt.filter_path(payload, params["filter_path"])
        return Response(status, jsonfmt.dumps(payload, pretty=pretty))

    def _body(self, req: Request) -> bytes:
        body = req.body
        if not body:
            return body
        encoding = req.headers.get("content-encoding", "").lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
        except (OSError, zlib.error, EOFError) as exc:
            raise EsError(400, "illegal_argument_exception", f"failed to decompress the request body: {exc}") from None
        ctype = req.headers.get("content-type")
        if ctype is None:
            raise RawError(406, "", "Content-Type header is missing")
        media = ctype.split(";")[0].strip().lower()
        if media not in _JSON_TYPES:
            raise RawError(406, "", f"Content-Type header [{ctype}] is not supported")
        return body
