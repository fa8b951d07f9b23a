"""A stand-in for the Flask app inside ``ikubernetes/servicemesh-app`` (the colored services of the
fault-injection, retries, statsd-sink-and-prometheus and access-log labs).

In the real image a Flask 1.1 / Werkzeug 1.0.1 development server listens on 127.0.0.1:8080 behind an
Envoy sidecar on :80 (see ``sidecar_default.yaml`` for the sidecar's built-in config). Run it as::

    python -m sluice.lab.apps.colored --host IP --port 8080 [--service-name NAME]

The service name comes from ``--service-name``, else ``$SERVICE_NAME`` (the compose files set it), else
``unknown``. Routes, with bodies as the course shows them:

* ``GET /service/<anything>`` -> ``Hello from App behind Envoy (service <SERVICE_NAME>)! hostname: <h>
  resolved hostname: <ip>\\n``. The path segment is not echoed: ``/service/colors`` answered by the blue
  container says ``(service blue)``.
* ``GET /`` -> ``Hello from App behind Envoy! Hostname: <h>, Address: <ip>!\\n`` (seen in the course
  repository's tls-static lab, 75 bytes for a 12-character container id).
* anything else -> Werkzeug's 404 page.

``<h>`` is ``socket.gethostname()`` and ``<ip>`` is ``socket.gethostbyname(<h>)``, both taken per request
like the Flask view does; a failed lookup gives Flask's 500 page and an ``ERROR in app`` traceback.

Wire format, checked byte for byte against Flask 1.1.2 / Werkzeug 1.0.1 run locally:

* The status line is ``HTTP/1.0`` with Werkzeug's upper-case reason (``404 NOT FOUND``). The server
  closes the connection after every response, so each proxied request costs the sidecar one upstream
  connection.
* Headers come in the order ``Content-Type, [Allow|Location,] Content-Length, Server, Date`` with
  ``Server: Werkzeug/1.0.1 Python/3.8.3``. ``--header-order golden`` puts ``Server, Date`` first. That is
  the order of the upstream app that recorded the golden captures in shared/golden/envoy-part1-2.
* Methods: GET and HEAD run the view (HEAD has no body). OPTIONS gives ``200`` with
  ``Allow: GET, HEAD, OPTIONS`` and an empty body. Any other method on a known route gives 405.
* Werkzeug's routing: leading slashes collapse (``//service/x`` matches). An inner ``//`` that matches
  once merged gives a ``308 PERMANENT REDIRECT`` to the absolute merged URL. A trailing slash
  (``/service/x/``) is a 404.
* Requests are logged to stderr like Werkzeug's request log, without the ANSI colours:
  ``127.0.0.1 - - [24/Nov/2026 21:03:57] "GET /service/blue HTTP/1.1" 200 -``.

Divergence from the image: ``Python/3.8.3`` and the banner's app name ``service`` are assumptions. The
course repository's tls-static lab shows ``/`` taking about 1 s through the default sidecar; that delay is
not reproduced.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote_to_bytes

import httptools

from sluice.lab.apps.runner import serve_forever

SIDECAR_DEFAULT = Path(__file__).with_name("sidecar_default.yaml")
"""The image's own /etc/envoy/envoy.yaml, for compose services that mount none."""
SERVER = "Werkzeug/1.0.1 Python/3.8.3"
CTYPE = "text/html; charset=utf-8"
# Werkzeug joins a set here, so the real order depends on the process hash seed.
ALLOW = "GET, HEAD, OPTIONS"
_REASONS = {
    200: "OK",
    308: "PERMANENT REDIRECT",
    404: "NOT FOUND",
    405: "METHOD NOT ALLOWED",
    500: "INTERNAL SERVER ERROR",
}
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ALWAYS_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")


def _error_page(code: int, name: str, description: str) -> bytes:
    return (
        f'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>{code} {name}</title>\n<h1>{name}</h1>\n<p>{description}</p>\n'
    ).encode()


NOT_FOUND_BODY = _error_page(
    404,
    "Not Found",
    "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
)
METHOD_NOT_ALLOWED_BODY = _error_page(405, "Method Not Allowed", "The method is not allowed for the requested URL.")
INTERNAL_ERROR_BODY = _error_page(
    500,
    "Internal Server Error",
    "The server encountered an internal error and was unable to complete your request. "
    "Either the server is overloaded or there is an error in the application.",
)


def hello_service(service_name: str, hostname: str, address: str) -> str:
    return f"Hello from App behind Envoy (service {service_name})! hostname: {hostname} resolved hostname: {address}\n"


def hello_root(hostname: str, address: str) -> str:
    return f"Hello from App behind Envoy! Hostname: {hostname}, Address: {address}!\n"


def _html_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _redirect_body(location: str) -> bytes:
    esc = _html_escape(location)
    return (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n'
        "<title>Redirecting...</title>\n"
        "<h1>Redirecting...</h1>\n"
        "<p>You should be redirected automatically to target URL: "
        f'<a href="{esc}">{esc}</a>.  If not click the link.'
    ).encode()


def uri_to_iri(target: str) -> str:
    """Werkzeug's ``uri_to_iri`` as its request log applies it: decode %XX only for unreserved ASCII and
    for bytes that form UTF-8 text; keep every other escape, and re-quote invalid UTF-8."""
    raw = target.encode("latin-1", "replace")
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x25 and _is_hex(raw[i + 1 : i + 3]):
            v = int(raw[i + 1 : i + 3], 16)
            if v >= 0x80 or v in _ALWAYS_SAFE:
                out.append(v)
            else:
                out += raw[i : i + 3]
            i += 3
            continue
        out.append(c)
        i += 1
    text = out.decode("utf-8", "surrogateescape")
    return "".join(f"%{ord(ch) - 0xDC00:02X}" if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in text)


def _is_hex(b: bytes) -> bool:
    return len(b) == 2 and all(ch in b"0123456789abcdefABCDEF" for ch in b)


class Request:
    __slots__ = ("method", "target", "version", "headers", "client")

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]], client: str) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.client = client

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class Response:
    __slots__ = ("status", "headers", "body", "log_error")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, log_error: str = "") -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.log_error = log_error


def _match(path: str) -> str | None:
    """The Flask url_map: ``/`` -> "root", ``/service/<service_number>`` -> "service"."""
    if path == "/":
        return "root"
    if path.startswith("/service/"):
        seg = path[len("/service/") :]
        if seg and "/" not in seg:
            return "service"
    return None


class ColoredApp:
    """The Flask app plus the Werkzeug dev server's framing. ``resolve`` is ``socket.gethostbyname``,
    replaceable in tests."""

    def __init__(
        self,
        service_name: str,
        *,
        header_order: str = "werkzeug",
        log: Callable[[str], None] | None = None,
        hostname: Callable[[], str] = socket.gethostname,
        resolve: Callable[[str], str] = socket.gethostbyname,
    ) -> None:
        if header_order not in ("werkzeug", "golden"):
            raise ValueError(f"header_order must be 'werkzeug' or 'golden', got {header_order!r}")
        self.service_name = service_name
        self.header_order = header_order
        self.log = log if log is not None else _stderr
        self.hostname = hostname
        self.resolve = resolve
        self.server: asyncio.AbstractServer | None = None
        self.host = ""
        self.port = 0
        self.requests: list[Request] = []

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        self.host = host
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    # -- request handling ------------------------------------------------------------------------

    async def respond(self, req: Request) -> Response:
        target = req.target
        path_part, _, query = target.partition("?")
        if "://" in path_part and not path_part.startswith("/"):
            # absolute-form: Werkzeug takes the path of the parsed URL.
            rest = path_part.split("://", 1)[1]
            path_part = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        path_info = unquote_to_bytes(path_part).decode("utf-8", "replace")
        path = "/" + path_info.lstrip("/")
        endpoint = _match(path)
        if endpoint is None and "//" in path:
            merged = "/" + "/".join(p for p in path.split("/") if p) + ("/" if path.endswith("/") else "")
            if _match(merged) is not None:
                host = req.header("host") or (self.host if self.port == 80 else f"{self.host}:{self.port}")
                location = f"http://{host}{merged}" + (f"?{query}" if query else "")
                body = _redirect_body(location)
                return Response(308, [("Content-Type", CTYPE), ("Content-Length", str(len(body))), ("Location", location)], body)
        if endpoint is None:
            return Response(404, [("Content-Type", CTYPE), ("Content-Length", str(len(NOT_FOUND_BODY)))], NOT_FOUND_BODY)
        if req.method == "OPTIONS":
            return Response(200, [("Content-Type", CTYPE), ("Allow", ALLOW), ("Content-Length", "0")], b"")
        if req.method not in ("GET", "HEAD"):
            body = METHOD_NOT_ALLOWED_BODY
            return Response(405, [("Content-Type", CTYPE), ("Allow", ALLOW), ("Content-Length", str(len(body)))], body)
        try:
            hostname = self.hostname()
            address = await asyncio.get_running_loop().run_in_executor(None, self.resolve, hostname)
        except OSError:
            trace = traceback.format_exc()
            err = f"[{_flask_time()}] ERROR in app: Exception on {path_info} [{req.method}]\n{trace.rstrip()}"
            body = INTERNAL_ERROR_BODY
            return Response(500, [("Content-Type", CTYPE), ("Content-Length", str(len(body)))], body, err)
        text = hello_root(hostname, address) if endpoint == "root" else hello_service(self.service_name, hostname, address)
        data = text.encode()
        return Response(200, [("Content-Type", CTYPE), ("Content-Length", str(len(data)))], data)

    def encode(self, req: Request, resp: Response) -> bytes:
        extra = [("Server", SERVER), ("Date", formatdate(usegmt=True))]
        headers = extra + resp.headers if self.header_order == "golden" else resp.headers + extra
        head = f"HTTP/1.0 {resp.status} {_REASONS[resp.status]}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        return head.encode("latin-1") + (b"" if req.method == "HEAD" else resp.body)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if peer else "<local>"
        sink = _Sink()
        parser = httptools.HttpRequestParser(sink)
        try:
            while not sink.done:
                data = await reader.read(65536)
                if not data:
                    return
                sink.raw += data
                try:
                    parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    sink.done = True
                except httptools.HttpParserError:
                    self._bad_request(sink.raw, client, writer)
                    return
            version = f"HTTP/{parser.get_http_version()}"
            req = Request(parser.get_method().decode("latin-1"), sink.url.decode("latin-1"), version, sink.headers, client)
            self.requests.append(req)
            resp = await self.respond(req)
            if resp.log_error:
                self.log(resp.log_error)
            writer.write(self.encode(req, resp))
            self.log(f'{client} - - [{_log_time()}] "{req.method} {uri_to_iri(req.target)} {version}" {resp.status} -')
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _bad_request(self, raw: bytes, client: str, writer: asyncio.StreamWriter) -> None:
        # http.server.send_error before the request version is known: an HTTP/0.9-style bare body.
        line = raw.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("latin-1")
        message = f"Bad request syntax ({line!r})"
        body = (
            '<!DOCTYPE HTML>\n<html lang="en">\n    <head>\n        <meta charset="utf-8">\n'
            "        <title>Error response</title>\n    </head>\n    <body>\n        <h1>Error response</h1>\n"
            f"        <p>Error code: 400</p>\n        <p>Message: {_html_escape(message)}.</p>\n"
            "        <p>Error code explanation: 400 - Bad request syntax or unsupported method.</p>\n"
            "    </body>\n</html>\n"
        )
        writer.write(body.encode("utf-8", "replace"))
        ts = _log_time()
        self.log(f"{client} - - [{ts}] code 400, message {message}")
        self.log(f'{client} - - [{ts}] "{line}" 400 -')


class _Sink:
    """httptools callbacks for one request (the dev server reads exactly one per connection)."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.raw = b""
        self.done = False

    def on_url(self, url: bytes) -> None:
        if not self.done:
            self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.done:
            self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_message_complete(self) -> None:
        self.done = True


def _log_time() -> str:
    t = time.localtime()
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon]}/{t.tm_year:04d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def _flask_time() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now * 1000) % 1000:03d}"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sluice.lab.apps.colored", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--service-name", default=None, help="default: $SERVICE_NAME, else 'unknown'")
    p.add_argument("--header-order", choices=("werkzeug", "golden"), default="werkzeug")
    args = p.parse_args(argv)
    name = args.service_name if args.service_name is not None else os.environ.get("SERVICE_NAME", "unknown")

    async def start() -> None:
        app = ColoredApp(name, header_order=args.header_order)
        await app.start(args.host, args.port)
        print(
            ' * Serving Flask app "service" (lazy loading)\n'
            " * Environment: production\n"
            "   WARNING: This is a development server. Do not use it in a production deployment.\n"
            "   Use a production WSGI server instead.\n"
            " * Debug mode: off",
            flush=True,
        )
        _stderr(f" * Running on http://{args.host}:{app.port}/ (Press CTRL+C to quit)")

    return serve_forever(start)


if __name__ == "__main__":
    sys.exit(main())
