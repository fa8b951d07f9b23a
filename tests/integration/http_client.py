"""An HTTP/1.1 client for the integration tests that keeps the wire form: header names, their
case and their order exactly as they came off the wire (:class:`Client`), one raw exchange
(:func:`raw_exchange`) and a one-shot request (:func:`http`). Re-exported by ``harness``."""

from __future__ import annotations

import contextlib
import re
import socket
from typing import Any


class Response:
    __slots__ = ("status", "reason", "version", "headers", "body", "raw_head")

    def __init__(self, version: str, status: int, reason: str, headers: list[tuple[str, str]], body: bytes, raw_head: bytes) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.raw_head = raw_head

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def names(self) -> list[str]:
        return [k.lower() for k, _ in self.headers]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers!r} {self.body[:200]!r}>"


class ConnectionClosed(Exception):
    pass


class Client:
    """One keep-alive HTTP/1.1 connection. ``request`` writes exactly the headers given (a
    ``Host`` first unless one is given, ``Content-Length`` for a body) and reads one response."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.addr = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = b""
        self.reconnects = 0

    def connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buf = b""
            self.reconnects += 1
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.connect().sendall(data)

    def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        host: str | None = None,
    ) -> Response:
        hdrs = list(headers or [])
        if not any(k.lower() == "host" for k, _ in hdrs):
            hdrs.insert(0, ("Host", host or f"{self.addr[0]}:{self.addr[1]}"))
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
            hdrs.append(("Content-Length", str(len(body))))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
        self.send_raw(head.encode("latin-1") + (body or b""))
        resp = self.read_response(head_request=method == "HEAD")
        if (resp.header("connection") or "").lower() == "close":
            self.close()
        return resp

    def get(self, path: str, headers: list[tuple[str, str]] | None = None) -> Response:
        return self.request("GET", path, headers)

    # -- reading ---------------------------------------------------------------------------
    def _fill(self) -> bool:
        assert self.sock is not None
        chunk = self.sock.recv(262144)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _read_until(self, marker: bytes) -> bytes:
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(marker) :]
                return out
            if not self._fill():
                raise ConnectionClosed(f"connection closed while waiting for {marker!r}; have {self.buf[:200]!r}")

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionClosed(f"connection closed with {len(self.buf)} of {n} body bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head_request: bool = False) -> Response:
        self.connect()
        raw_head = self._read_until(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        version, status_s, *reason = lines[0].split(" ", 2)
        status = int(status_s)
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k, v.strip()))
        resp = Response(version, status, reason[0] if reason else "", headers, b"", raw_head + b"\r\n\r\n")
        if head_request or status in (204, 304) or 100 <= status < 200:
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if "chunked" in te:
            body = bytearray()
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")  # no trailers expected
                    break
                body += self._read_exact(size)
                self._read_until(b"\r\n")
            resp.body = bytes(body)
        elif cl is not None:
            resp.body = self._read_exact(int(cl))
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
            self.close()
        return resp


def raw_exchange(port: int, data: bytes, timeout: float = 5.0, host: str = "127.0.0.1") -> bytes:
    """Send ``data`` on a fresh connection; return the bytes of the first complete response
    (head plus ``content-length`` body), or everything until the peer closes. (Envoy delays
    its close for up to a second after a ``connection: close`` reply, waiting for the client.)"""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := s.recv(65536):
                out += chunk
                head, sep, body = out.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
                if sep and m and len(body) >= int(m.group(1)):
                    break
        return out


def http(port: int, method: str, path: str, **kw: Any) -> Response:
    with Client(port) as c:
        return c.request(method, path, **kw)


