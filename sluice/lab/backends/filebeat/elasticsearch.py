"""``output.elasticsearch`` as Filebeat 7.14 speaks it (``libbeat/outputs/elasticsearch``,
``libbeat/esleg/eslegclient``, ``libbeat/publisher/pipeline`` output workers).

A worker per host (``worker``: 1) takes batches of ``bulk_max_size`` (50) events. It connects on
its first batch: ``GET /`` (the version), ``GET /_license?human=false`` (must be an active
licence, as the default distribution has), then index management (:mod:`.idxmgmt`); then
``POST /_bulk`` with ``{"create":{"_index":…}}`` + document lines. Per item: < 300 acknowledged,
409 a duplicate (acknowledged), 429 and ≥ 500 retried, other 4xx dropped with a warning (as
Filebeat's default ``drop`` policy). A failed request or any item to retry closes the
connection, waits the backoff (``backoff.init`` 1s doubling to ``backoff.max`` 60s, with
Filebeat's equal jitter), reconnects (the whole handshake again) and sends what is left, forever
(Filebeat ignores ``max_retries`` too). As in 7.14 one backoff serves connecting and publishing
and any success resets it: failed connects wait longer and longer, while a cluster that answers
429 but accepts connections is retried about every ``backoff.init``. Logs read as Filebeat's:
``Connection to backoff(elasticsearch(http://es:9200)) established``.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import random
import urllib.parse
from typing import Any

from sluice.lab.backends.filebeat.config import ConfigError, Section
from sluice.lab.backends.filebeat.event import Event, format_ts
from sluice.lab.backends.filebeat.http11 import Connection, HTTPError
from sluice.lab.backends.filebeat.idxmgmt import IndexManagement, IndexSelector, SetupError
from sluice.lab.backends.filebeat.logs import Log
from sluice.lab.backends.filebeat.pipeline import Acker, MemQueue, Stats

KNOWN = {
    "enabled", "hosts", "protocol", "path", "username", "password", "api_key", "headers", "index", "indices", "pipeline",
    "parameters", "compression_level", "escape_html", "worker", "workers", "loadbalance", "bulk_max_size", "backoff",
    "timeout", "max_retries", "ssl", "proxy_disable", "allow_older_versions",
}  # fmt: skip
UNSUPPORTED = {
    "pipelines": "per-event pipeline rules are not supported by this Filebeat stand-in",
    "proxy_url": "HTTP proxies are not supported by this Filebeat stand-in",
    "kerberos": "Kerberos authentication is not supported by this Filebeat stand-in",
    "cloud": "Elastic Cloud settings are not supported by this Filebeat stand-in",
}
USER_AGENT = "Go-http-client/1.1"
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
"""What Filebeat 7.14's HTTP client sends."""


class Backoff:
    """libbeat's ``EqualJitterBackoff``: waits in [d/2, d), d starting at twice ``init`` and
    doubling up to ``max``."""

    def __init__(self, init: float, maximum: float) -> None:
        self.init, self.max = init, maximum
        self.duration = init * 2

    def reset(self) -> None:
        self.duration = self.init * 2

    def next_wait(self) -> float:
        half = self.duration / 2
        wait = half + random.random() * half
        self.duration = min(self.duration * 2, self.max)
        return wait

    async def wait(self) -> None:
        await asyncio.sleep(self.next_wait())


class PingError(HTTPError):
    """``GET /`` failed: reported as is, not as a failed connect callback."""


class PublishError(Exception):
    def __init__(self, message: str, retry: list[Event]) -> None:
        super().__init__(message)
        self.retry = retry


def make_url(host: str, protocol: str, path: str) -> tuple[str, str, int, str]:
    """Filebeat's ``MakeURL``: scheme ``protocol`` (http) unless given, port 9200 unless given,
    ``path`` as prefix. Returns (url, host, port, path prefix)."""
    text = host if "://" in host else f"{protocol or 'http'}://{host}"
    u = urllib.parse.urlsplit(text)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(f"output.elasticsearch.hosts: invalid host '{host}'")
    if u.scheme == "https":
        raise ConfigError(f"output.elasticsearch.hosts: '{host}': https is not supported by this Filebeat stand-in (use http)")
    port = u.port or 9200
    prefix = (u.path or path or "").rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    shown_host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return f"{u.scheme}://{shown_host}:{port}{prefix}", u.hostname, port, prefix


class ESClient:
    def __init__(
        self,
        url: str,
        host: str,
        port: int,
        prefix: str,
        cfg: Section,
        idx: IndexManagement,
        selector: IndexSelector,
        log: Log,
        stats: Stats,
        hosts_file: str | None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.idx = idx
        self.selector = selector
        self.log = log
        self.stats = stats
        self.conn = Connection(host, port, timeout=cfg.duration("timeout", 90.0), hosts_file=hosts_file)
        self.headers: dict[str, str] = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        headers = cfg.raw("headers")
        if isinstance(headers, dict):
            from sluice.lab.backends.filebeat.event import flatten

            self.headers.update({k: str(v) for k, v in flatten(headers).items()})
        user, password, api_key = cfg.text("username"), cfg.text("password"), cfg.text("api_key")
        if user or password:
            self.headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if api_key:
            self.headers["Authorization"] = "ApiKey " + base64.b64encode(api_key.encode()).decode()
        self.level = cfg.integer("compression_level", 0, minimum=0)
        if self.level > 9:
            raise ConfigError(f"{cfg.name('compression_level')}: must be between 0 and 9")
        self.escape_html = cfg.boolean("escape_html", False)
        self.pipeline = cfg.text("pipeline", "")
        params = cfg.raw("parameters")
        self.bulk_query = (
            "?" + urllib.parse.urlencode({str(k): str(v) for k, v in params.items()}) if isinstance(params, dict) and params else ""
        )
        self.version: tuple[int, ...] = (0,)
        self.connected = False
        self._meta_cache: dict[tuple[str, str], bytes] = {}

    def __str__(self) -> str:
        return f"elasticsearch({self.url})"

    async def request(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        headers = dict(self.headers)
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json; charset=UTF-8"
            if self.level:
                data = gzip.compress(data, self.level)
                headers["Content-Encoding"] = "gzip"
        if self.level:
            headers["Accept-Encoding"] = "gzip"
        try:
            resp = await self.conn.request(method, self.prefix + path, headers=headers, body=data)
        except HTTPError as exc:
            verb = method[:1] + method[1:].lower()
            raise HTTPError(f'{verb} "{self.url}{path if path != "/" else ""}": {exc}') from None
        self.stats.write_bytes = self.conn.bytes_written
        out = resp.body
        if resp.headers.get("content-encoding", "").lower() == "gzip" and out:
            out = gzip.decompress(out)
        return resp.status, out

    async def connect(self) -> None:
        status, body = await self.request("GET", "/", None)
        if status >= 300:
            raise PingError(f"Non 2xx response code: {status}")
        try:
            number = str(json.loads(body)["version"]["number"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PingError(f"Failed to parse JSON response: {exc}") from None
        self.log.info("esclientleg", f"Attempting to connect to Elasticsearch version {number}")
        self.version = tuple(int(p) for p in number.split("-")[0].split(".") if p.isdigit()) or (0,)
        await self._check_license()
        await self.idx.setup(self.request, self.version)
        self.connected = True

    async def _check_license(self) -> None:
        status, body = await self.request("GET", "/_license?human=false", None)
        prefix = (
            "could not connect to a compatible version of Elasticsearch: cannot retrieve the elasticsearch license from the "
            "/_license endpoint, Filebeat requires the default distribution of Elasticsearch. Please make the endpoint "
            "accessible to Filebeat so it can verify the license.: "
        )
        if status == 404:
            raise SetupError(prefix + "could not retrieve the license information from the cluster")
        if status == 401:
            raise SetupError(prefix + "unauthorized access, could not connect to the xpack endpoint, verify your credentials")
        if status != 200:
            raise SetupError(prefix + f"error from server, response code: {status}")
        try:
            lic = json.loads(body)["license"]
            ltype, lstatus = str(lic.get("type", "")), str(lic.get("status", ""))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SetupError(prefix + f"invalid license response: {exc}") from None
        if lstatus != "active" or ltype in ("", "missing"):
            raise SetupError(
                f"invalid license found, requires a basic or a valid trial license and received {ltype.capitalize() or 'Missing'}"
            )
        self.log.info("license", f"Elasticsearch license: {ltype.capitalize()}")

    def close(self) -> None:
        self.conn.close()
        self.connected = False

    # --- publishing ----------------------------------------------------------------------------

    def _action(self, index: str, event: Event) -> bytes:
        doc_id = event.meta.get("_id") if event.meta else None
        pipeline = (event.meta.get("pipeline") if event.meta else None) or self.pipeline
        if not doc_id:
            cached = self._meta_cache.get((index, pipeline))
            if cached is None:
                meta: dict[str, Any] = {"_index": index}
                if pipeline:
                    meta["pipeline"] = pipeline
                cached = json.dumps({"create": meta}, separators=(",", ":")).encode() + b"\n"
                if len(self._meta_cache) > 1024:
                    self._meta_cache.clear()
                self._meta_cache[(index, pipeline)] = cached
            return cached
        meta = {"_index": index, "_id": str(doc_id)}
        if pipeline:
            meta["pipeline"] = pipeline
        return json.dumps({"index": meta}, separators=(",", ":")).encode() + b"\n"

    def encode(self, event: Event) -> bytes:
        fields = event.fields
        assert fields is not None
        if fields and "@timestamp" not in fields:
            text = '{"@timestamp":"' + format_ts(event.ts_ns) + '",' + _ENCODER.encode(fields)[1:]
        else:
            text = _ENCODER.encode({"@timestamp": format_ts(event.ts_ns), **fields})
        if self.escape_html:
            text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return text.encode("utf-8", "surrogatepass") + b"\n"

    async def publish(self, events: list[Event]) -> list[Event]:
        """Send ``events``; returns nothing or raises :class:`PublishError` with what to retry."""
        sent: list[tuple[Event, bytes]] = []
        parts: list[bytes] = []
        for ev in events:
            if ev.fields is None:
                continue
            index = self.selector.select(ev)
            if not index:
                self.stats.dropped += 1
                self.log.error(
                    "elasticsearch",
                    "Failed to encode event: failed to select the index (a field in the index format is missing); dropping event",
                )
                continue
            try:
                doc = self.encode(ev)
            except (TypeError, ValueError) as exc:
                self.stats.dropped += 1
                self.log.error("elasticsearch", f"Failed to encode event: {exc}")
                continue
            parts.append(self._action(index, ev))
            parts.append(doc)
            sent.append((ev, doc))
        if not sent:
            return []
        self.stats.batches += 1
        body = b"".join(parts)
        try:
            status, resp = await self.request("POST", "/_bulk" + self.bulk_query, body)
        except HTTPError as exc:
            raise PublishError(f"failed to perform any bulk index operations: {exc}", [e for e, _ in sent]) from None
        if status != 200:
            text = resp.decode("utf-8", "replace")
            raise PublishError(f"failed to perform any bulk index operations: {status} {_reason(status)}: {text}", [e for e, _ in sent])
        try:
            items = json.loads(resp)["items"]
            if not isinstance(items, list):
                raise TypeError("items is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            # Filebeat acknowledges the whole batch when it cannot read the answer.
            self.log.error("elasticsearch", f"failed to parse bulk response: {exc}")
            self.stats.acked += len(sent)
            return []
        retry: list[Event] = []
        for i, (ev, doc) in enumerate(sent):
            item = items[i] if i < len(items) else None
            result = next(iter(item.values()), None) if isinstance(item, dict) and item else None
            if not isinstance(result, dict):
                self.log.error("elasticsearch", "failed to parse bulk response: fewer items than documents")
                self.stats.acked += len(sent) - i
                break
            code = int(result.get("status", 0) or 0)
            if 0 < code < 300:
                self.stats.acked += 1
            elif code == 409:
                self.stats.duplicates += 1
            elif code == 429 or code >= 500 or code == 0:
                retry.append(ev)
            else:
                self.stats.dropped += 1
                err = json.dumps(result.get("error", {}), separators=(",", ":"))
                self.log.warn(
                    "elasticsearch", f"Cannot index event {doc.decode('utf-8', 'replace').rstrip()} (status={code}): {err}, dropping event!"
                )
        if retry:
            self.stats.retried += len(retry)
            raise PublishError("temporary bulk send failure", retry)
        return []


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
}
_REASONS.update({500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"})


def _reason(status: int) -> str:
    return _REASONS.get(status, "")


class Worker:
    """One output worker: ``netClientWorker`` with the backoff client around an ES client."""

    def __init__(
        self, client: ESClient, queue: MemQueue, acker: Acker, log: Log, *, bulk_max_size: int, backoff_init: float, backoff_max: float
    ) -> None:
        self.client = client
        self.queue = queue
        self.acker = acker
        self.log = log
        self.bulk_max_size = bulk_max_size
        self.backoff = Backoff(backoff_init, backoff_max)
        self.name = f"backoff({client})"

    async def run(self) -> None:
        """Publish batches until the queue closes. Stopping cancels this task. Once the queue is
        closed the worker also stops retrying by itself (libbeat's backoff ``Wait`` returns false
        once ``done`` is closed), so a lost cancellation cannot keep it going. A batch that was
        not sent stays unacknowledged."""
        try:
            while True:
                batch = await self.queue.get(self.bulk_max_size)
                if not batch:
                    return
                seq = self.acker.register()
                pending = batch
                while True:
                    if self.queue.closed:
                        return
                    if not self.client.connected and not await self._connect():
                        return
                    try:
                        await self.client.publish(pending)
                    except PublishError as exc:
                        self.log.error("publisher_pipeline_output", f"Failed to publish events: {exc}")
                        self.client.close()
                        pending = exc.retry
                        await self.backoff.wait()
                        continue
                    self.backoff.reset()
                    break
                self.acker.ack(seq, batch)
        finally:
            self.client.close()

    async def _connect(self) -> bool:
        """Connect, retrying with the backoff; ``False`` when the queue closed meanwhile."""
        attempts = 0
        while True:
            if self.queue.closed:
                return False
            if attempts == 0:
                self.log.info("publisher_pipeline_output", f"Connecting to {self.name}")
            else:
                self.log.info("publisher_pipeline_output", f"Attempting to reconnect to {self.name} with {attempts} reconnect attempt(s)")
            attempts += 1
            try:
                await self.client.connect()
            except (HTTPError, SetupError) as exc:
                self.client.close()
                msg = (
                    str(exc) if isinstance(exc, HTTPError) else f"Connection marked as failed because the onConnect callback failed: {exc}"
                )
                self.log.error("publisher_pipeline_output", f"Failed to connect to {self.name}: {msg}")
                await self.backoff.wait()
                continue
            self.backoff.reset()
            self.log.info("publisher_pipeline_output", f"Connection to {self.name} established")
            return True


def es_settings(cfg: Section) -> tuple[list[str], int, int, float, float]:
    """hosts, workers per host, bulk_max_size, backoff.init, backoff.max."""
    cfg.check(KNOWN, unsupported=UNSUPPORTED)
    hosts = cfg.strings("hosts")
    if not hosts:
        raise ConfigError(f"missing required field accessing '{cfg.name('hosts')}'")
    ssl = cfg.child("ssl")
    if ssl.data and ssl.enabled(True) and any(h.startswith("https://") or cfg.text("protocol") == "https" for h in hosts):
        raise ConfigError(f"{cfg.name('ssl')}: TLS is not supported by this Filebeat stand-in (use http)")
    workers = cfg.integer("worker", cfg.integer("workers", 1), minimum=1)
    bulk = cfg.integer("bulk_max_size", 50)
    if bulk <= 0:
        bulk = 1 << 30  # Filebeat: 0 or less sends a batch as big as the queue hands out
    backoff = cfg.child("backoff")
    init, maximum = backoff.duration("init", 1.0), backoff.duration("max", 60.0)
    if init <= 0 or maximum < init:
        raise ConfigError(f"{cfg.name('backoff')}: init must be > 0 and max >= init")
    return hosts, workers, bulk, init, maximum
