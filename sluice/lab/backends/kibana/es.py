"""Kibana's Elasticsearch client: ``elasticsearch.hosts`` (tried in order, the next one on a
connection failure), the lab's hosts file first for names (``SLUICE_HOSTS_FILE``, as the other
stand-ins resolve ``elasticsearch`` or ``myes01``), basic auth from
``elasticsearch.username``/``password`` or the URL, ``elasticsearch.requestTimeout``.

Connection errors read as Node's do, since Kibana logs them: ``connect ECONNREFUSED
127.0.0.1:9200``.
"""

from __future__ import annotations

import base64
import errno
import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sluice.lab.backends.filebeat.http11 import load_hosts
from sluice.lab.backends.kibana import VERSION

USER_AGENT = f"Kibana/{VERSION} (sluice stand-in)"
_NODE_ERRNO = {
    errno.ECONNREFUSED: "ECONNREFUSED", errno.ECONNRESET: "ECONNRESET", errno.EHOSTUNREACH: "EHOSTUNREACH",
    errno.ENETUNREACH: "ENETUNREACH", errno.ETIMEDOUT: "ETIMEDOUT", errno.EADDRNOTAVAIL: "EADDRNOTAVAIL",
}


class ESUnavailable(Exception):
    """No host answered (Kibana's ``ConnectionError``/``TimeoutError``)."""


@dataclass(slots=True)
class Reply:
    status: int
    body: Any
    """Parsed JSON, or the text when the answer is not JSON."""
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_type(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("type", ""))
        return ""


@dataclass(frozen=True, slots=True)
class Host:
    scheme: str
    host: str
    port: int
    prefix: str
    auth: str | None

    @classmethod
    def parse(cls, url: str) -> Host:
        split = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(f"[elasticsearch.hosts]: expected URI with scheme [http|https] but got [{url}]")
        auth = None
        if split.username is not None:
            auth = f"{urllib.parse.unquote(split.username)}:{urllib.parse.unquote(split.password or '')}"
        port = split.port or (443 if split.scheme == "https" else 9200)
        return cls(split.scheme, split.hostname, port, split.path.rstrip("/"), auth)

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{shown}:{self.port}{self.prefix}"


class Client:
    def __init__(
        self,
        hosts: list[str],
        *,
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        hosts_file: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.hosts = [Host.parse(h) for h in hosts]
        if not self.hosts:
            raise ValueError("[elasticsearch.hosts]: at least one host is needed")
        self.auth = f"{username}:{password}" if username else None
        self.timeout = timeout
        self.hosts_file = hosts_file if hosts_file is not None else os.environ.get("SLUICE_HOSTS_FILE")
        self.headers = dict(headers or {})
        self.last_host = self.hosts[0]

    def resolve(self, name: str) -> str:
        return load_hosts(self.hosts_file).get(name.lower(), name)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        raw_body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Reply:
        """One call; ``path`` starts with ``/``. Raises :class:`ESUnavailable` when no host answers."""
        target = path
        if params:
            pairs = [(k, _param(v)) for k, v in params.items() if v is not None]
            if pairs:
                target += ("&" if "?" in target else "?") + urllib.parse.urlencode(pairs)
        data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
        last: str = ""
        for host in self._order():
            try:
                reply = self._once(host, method, target, data, content_type, timeout or self.timeout)
            except OSError as exc:
                last = _node_error(exc, self.resolve(host.host), host.port)
                continue
            except http.client.HTTPException as exc:
                last = f"socket hang up ({type(exc).__name__})"
                continue
            self.last_host = host
            return reply
        raise ESUnavailable(last or "No Living connections")

    def _order(self) -> list[Host]:
        i = self.hosts.index(self.last_host) if self.last_host in self.hosts else 0
        return self.hosts[i:] + self.hosts[:i]

    def _once(self, host: Host, method: str, target: str, data: bytes | None, ctype: str, timeout: float) -> Reply:
        address = self.resolve(host.host)
        conn_cls = http.client.HTTPSConnection if host.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(address, host.port, timeout=timeout)
        headers = {"Host": f"{host.host}:{host.port}", "User-Agent": USER_AGENT, "Accept": "application/json",
                   "x-elastic-product-origin": "kibana", **self.headers}
        auth = self.auth or host.auth
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        if data is not None:
            headers["Content-Type"] = ctype
        try:
            conn.request(method, host.prefix + target, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            got = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        parsed: Any = raw.decode("utf-8", "replace")
        if raw and "json" in got.get("content-type", "json"):
            try:
                parsed = json.loads(raw)
            except ValueError:
                pass
        return Reply(resp.status, parsed, got, raw)


def _param(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return ",".join(str(x) for x in v)
    return str(v)


def _node_error(exc: OSError, address: str, port: int) -> str:
    shown = f"{address}:{port}"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "Request timed out"
    if isinstance(exc, socket.gaierror):
        return f"getaddrinfo ENOTFOUND {address}"
    code = _NODE_ERRNO.get(exc.errno or 0)
    if code:
        return f"connect {code} {shown}"
    return f"{exc.strerror or exc} {shown}"
