"""A stand-in for ``ikubernetes/demoapp``: ``/`` (client IP, server name and IP), ``/hostname``,
``/headers``, ``/livez``, ``/readyz``, plus test helpers ``/status/N``, ``/delay/MS`` and
``/echo`` (the request line and headers, in order, as JSON), ``/close`` (closes without
answering) and ``/unframed`` (a body delimited by the connection closing). Every request is recorded in
``App.requests`` and logged as a line like the course shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from typing import Any

import httptools

from sluice.lab.apps.runner import serve_forever


class Recorded:
    __slots__ = ("method", "path", "headers", "body", "client", "t")

    def __init__(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes, client: str) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.client = client
        self.t = time.time()

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class App:
    def __init__(self, name: str, version: str = "v1.0", log: bool = False) -> None:
        self.name = name
        self.version = version
        self.requests: list[Recorded] = []
        self.log = log
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Conn(self), host, port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        path = rec.path.split("?", 1)[0]
        delay = 0.0
        ctype = "text/plain"
        status = 200
        if path == "/hostname":
            body = f"ServerName: {self.name}\n"
            ctype = "text/html; charset=utf-8"
        elif path == "/":
            body = (
                f"iKubernetes demoapp {self.version} !! ClientIP: {rec.client}, "
                f"ServerName: {self.name}, ServerIP: {local_ip}!\n"
            )
            ctype = "text/html; charset=utf-8"
        elif path in ("/livez", "/readyz"):
            body = "OK"
        elif path == "/headers" or path == "/echo":
            record = {"app": self.name, "method": rec.method, "path": rec.path, "headers": rec.headers}
            record["body"] = rec.body.decode("latin-1")
            body = json.dumps(record) + "\n"
            ctype = "application/json"
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            body = f"status {status}\n"
        elif path.startswith("/delay/"):
            delay = int(path.rsplit("/", 1)[1]) / 1000
            body = f"delayed {path.rsplit('/', 1)[1]}ms\n"
        elif path.startswith("/bytes/"):
            body = "x" * int(path.rsplit("/", 1)[1])
        else:
            body = f"ServerName: {self.name}\n"
        if status in (204, 304) or status < 200:
            # These responses never carry a body (RFC 9110), nor a content-length for 1xx/204.
            return status, [("Server", "demoapp")], b"", delay
        data = body.encode()
        headers = [("Content-Type", ctype), ("Content-Length", str(len(data))), ("Server", "demoapp")]
        return status, headers, data, delay


class _Conn(asyncio.Protocol):
    def __init__(self, app: App) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._body = bytearray()
        self.client = ""
        self.local_ip = ""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.client = transport.get_extra_info("peername")[0]
        self.local_ip = transport.get_extra_info("sockname")[0]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = bytearray()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        rec = Recorded(self.parser.get_method().decode(), self._url.decode("latin-1"), self._headers, bytes(self._body), self.client)
        self.app.requests.append(rec)
        status, headers, body, delay = self.app.respond(rec, self.local_ip)
        keep = self.parser.should_keep_alive()
        if self.app.log:
            ts = time.strftime("%d/%b/%Y %H:%M:%S")
            print(f'{rec.client} - - [{ts}] "{rec.method} {rec.path} HTTP/1.1" {status} -', flush=True)
        if path_close(rec.path):
            assert self.transport is not None
            self.transport.close()
            return
        if rec.path.split("?", 1)[0] == "/unframed":
            # A body delimited by closing the connection (no content-length, not chunked).
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close\n")
            self.transport.close()
            return
        head = f"HTTP/1.1 {status} {_reason(status)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        if not keep:
            head += "Connection: close\r\n"
        payload = head.encode() + b"\r\n" + (body if rec.method != "HEAD" else b"")
        if delay:
            asyncio.get_event_loop().call_later(delay, self._send, payload, keep)
        else:
            self._send(payload, keep)

    def _send(self, payload: bytes, keep: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(payload)
        if not keep:
            self.transport.close()


def path_close(path: str) -> bool:
    return path.split("?", 1)[0] == "/close"


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sluice-demoapp")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--name", default=socket.gethostname())
    p.add_argument("--version", default="v1.0")
    args = p.parse_args(argv)

    async def start() -> None:
        app = App(args.name, args.version, log=True)
        await app.start(args.host, args.port)
        print(f" * Running on http://{args.host}:{app.port}/ (demoapp {args.version}, {args.name})", flush=True)

    return serve_forever(start)


if __name__ == "__main__":
    sys.exit(main())
