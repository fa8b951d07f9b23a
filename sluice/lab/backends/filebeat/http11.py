"""A small asyncio HTTP/1.1 client with one kept-alive connection, as Go's ``http.Client`` keeps
one per host for Filebeat's single output worker.

Errors read as Go's do, since Filebeat logs them: ``Get "http://es:9200": dial tcp
127.0.0.1:9200: connect: connection refused``.

Timeouts use ``asyncio.timeout`` in the calling task, not ``asyncio.wait_for``: on Python 3.11
``wait_for`` returns the result, dropping the cancellation, when its task is cancelled in
the same loop iteration as the response arrives. A beat stopping then would keep its output
worker retrying forever.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

MAX_HEADER = 64 * 1024


class HTTPError(Exception):
    pass


class Response:
    __slots__ = ("status", "reason", "headers", "body")

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    @property
    def status_text(self) -> str:
        return f"{self.status} {self.reason}".strip()


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


class Connection:
    def __init__(self, host: str, port: int, *, timeout: float = 90.0, hosts_file: str | None = None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.hosts_file = hosts_file
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.bytes_written = 0
        self.bytes_read = 0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def _resolve(self) -> str:
        mapped = load_hosts(self.hosts_file).get(self.host.lower())
        if mapped:
            return mapped
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise HTTPError(f"dial tcp: lookup {self.host}: {exc.strerror or 'no such host'}") from None
        infos.sort(key=lambda i: i[0] != socket.AF_INET)
        return str(infos[0][4][0])

    async def _connect(self) -> None:
        addr = await self._resolve()
        shown = f"[{addr}]:{self.port}" if ":" in addr else f"{addr}:{self.port}"
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(addr, self.port)
        except TimeoutError:
            raise HTTPError(f"dial tcp {shown}: i/o timeout") from None
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise HTTPError(f"dial tcp {shown}: connect: {reason}") from None
        self._reader, self._writer = reader, writer
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def request(self, method: str, target: str, *, headers: Mapping[str, str], body: bytes | None = None) -> Response:
        """One exchange; a kept-alive connection the server closed is reopened once."""
        for attempt in (0, 1):
            fresh = self._writer is None
            if fresh:
                await self._connect()
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._exchange(method, target, headers, body)
            except TimeoutError:
                self.close()
                raise HTTPError("context deadline exceeded (Client.Timeout exceeded while awaiting headers)") from None
            except (OSError, asyncio.IncompleteReadError, HTTPError) as exc:
                self.close()
                if fresh or attempt == 1:
                    raise HTTPError(_go_io_error(exc)) from None
        raise HTTPError("unreachable")

    async def _exchange(self, method: str, target: str, headers: Mapping[str, str], body: bytes | None) -> Response:
        assert self._reader is not None and self._writer is not None
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._writer.write(head + body if body else head)
        self.bytes_written += len(head) + (len(body) if body else 0)
        await self._writer.drain()
        raw = await self._reader.readuntil(b"\r\n\r\n")
        if len(raw) > MAX_HEADER:
            raise HTTPError("server response headers too large")
        text = raw.decode("latin-1").split("\r\n")
        parts = text[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise HTTPError(f"malformed HTTP response {text[0]!r}")
        status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
        resp_headers: dict[str, str] = {}
        for line in text[1:]:
            if line:
                k, _, v = line.partition(":")
                resp_headers[k.strip().lower()] = v.strip()
        data = b""
        if method != "HEAD" and status not in (204, 304) and not 100 <= status < 200:
            if "chunked" in resp_headers.get("transfer-encoding", "").lower():
                data = await self._chunked()
            elif "content-length" in resp_headers:
                data = await self._reader.readexactly(int(resp_headers["content-length"]))
            else:
                data = await self._reader.read()
                self.close()
        self.bytes_read += len(raw) + len(data)
        if resp_headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, reason, resp_headers, data)

    async def _chunked(self) -> bytes:
        assert self._reader is not None
        out = bytearray()
        while True:
            size_line = await self._reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await self._reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(out)
            out += await self._reader.readexactly(size)
            await self._reader.readexactly(2)


def _go_io_error(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "EOF"
    if isinstance(exc, ConnectionResetError):
        return "read: connection reset by peer"
    if isinstance(exc, BrokenPipeError):
        return "write: broken pipe"
    return str(exc) or type(exc).__name__
