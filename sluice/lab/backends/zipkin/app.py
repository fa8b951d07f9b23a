"""The process: flags and environment as the images read them, the listeners, SIGTERM.

- Zipkin (``openzipkin/zipkin``): configured by environment only (``QUERY_PORT`` 9411,
  ``QUERY_LOOKBACK``, ``STRICT_TRACE_ID``, ``SEARCH_ENABLED``, ``AUTOCOMPLETE_KEYS``,
  ``COLLECTOR_SAMPLE_RATE``, ``MEM_MAX_SPANS``); one port serves the collector, the API and the UI.
- Jaeger all-in-one (``--jaeger``): the Zipkin collector on ``COLLECTOR_ZIPKIN_HOST_PORT`` (off
  when unset, as in 1.27; ``9411``, ``:9411`` and ``host:9411`` all accepted), the query API on
  ``QUERY_HTTP_SERVER_HOST_PORT`` (``:16686``), the admin health check on
  ``ADMIN_HTTP_HOST_PORT`` (``:14269``). Jaeger's own collectors (thrift, gRPC, agent UDP) are not
  run: the labs send Zipkin spans.

An address with no host binds ``--host`` (the lab runner passes the service's address; outside a
lab ``SLUICE_BIND_ADDRESS`` or 127.0.0.1 — deliberately not every interface). Spans go to
``<data>/spans.sqlite``; ``--data`` defaults to a container path (``/zipkin/data``,
``/tmp/jaeger``) mapped through the lab's ``SLUICE_FS_ROOT``/``SLUICE_FS_MOUNTS``, else ``./data``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sluice.lab.backends.grafana.fs import ContainerFS
from sluice.lab.backends.zipkin import JAEGER_VERSION, ZIPKIN_VERSION
from sluice.lab.backends.zipkin.http import HttpServer, Request, Response
from sluice.lab.backends.zipkin.jaeger_api import JaegerCollector, JaegerQuery
from sluice.lab.backends.zipkin.store import Store
from sluice.lab.backends.zipkin.zipkin_api import ZipkinApi, settings_from_env


def split_host_port(value: str, default_host: str) -> tuple[str, int]:
    """``9411``, ``:9411``, ``0.0.0.0:9411``, ``[::1]:9411`` → (host, port); an empty or
    every-interface host is ``default_host``."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"address {value}: invalid port")
    if host in ("", "0.0.0.0", "::"):
        host = default_host
    return host, int(port)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="zipkin", allow_abbrev=False,
                                description="Zipkin server, or Jaeger all-in-one with --jaeger (Sluice's stand-ins).")
    p.add_argument("--jaeger", action="store_true", help="run as jaegertracing/all-in-one 1.27")
    p.add_argument("--host", default=None, help="the address to bind when a port setting names no host")
    p.add_argument("--port", type=int, default=None, help="Zipkin's port (QUERY_PORT, 9411)")
    p.add_argument("--data", default=None, help="folder for spans.sqlite")
    p.add_argument("--collector.zipkin.host-port", dest="zipkin_host_port", default=None)
    p.add_argument("--query.http-server.host-port", dest="query_host_port", default=None)
    p.add_argument("--admin.http.host-port", dest="admin_host_port", default=None)
    return p.parse_args(argv)


def _data_path(args: argparse.Namespace, env: dict[str, str]) -> str:
    if args.data:
        return os.path.join(os.path.abspath(args.data), "spans.sqlite")
    fs = ContainerFS.from_env(env)
    if fs.root or fs.mounts:
        return os.path.join(fs.host("/tmp/jaeger" if args.jaeger else "/zipkin/data"), "spans.sqlite")
    return os.path.abspath(os.path.join("data", "spans.sqlite"))


def _zipkin_log(message: str, logger: str = "z.s.ZipkinServer") -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
    print(f"{stamp}  INFO [/] {os.getpid()} --- [           main] {logger:<40} : {message}", file=sys.stderr, flush=True)


def _jaeger_log(level: str, msg: str, **fields: object) -> None:
    print(json.dumps({"level": level, "ts": round(time.time(), 7), "caller": "all-in-one/main.go", "msg": msg, **fields}),
          file=sys.stderr, flush=True)


async def _serve(args: argparse.Namespace, env: dict[str, str]) -> int:
    default_host = args.host or env.get("SLUICE_BIND_ADDRESS") or "127.0.0.1"
    path = _data_path(args, env)
    executor = ThreadPoolExecutor(1, thread_name_prefix="store")
    loop = asyncio.get_running_loop()
    settings = settings_from_env(env)
    try:
        store = await loop.run_in_executor(
            executor, lambda: Store(path, product="jaeger" if args.jaeger else "zipkin", max_spans=0 if args.jaeger else settings.max_spans)
        )
    except (OSError, ValueError) as exc:
        print(f"cannot open the span store {path}: {exc}", file=sys.stderr)
        return 1
    servers: list[asyncio.Server] = []
    https: list[HttpServer] = []

    async def listen(handler: Callable[[Request], Response], address: str) -> str:
        host, port = split_host_port(address, default_host)
        web = HttpServer(handler, executor)
        server = await web.listen(host, port)
        servers.append(server)
        https.append(web)
        bound = server.sockets[0].getsockname()
        return f"{bound[0]}:{bound[1]}"

    try:
        if args.jaeger:
            started = time.time()
            bound: dict[str, str] = {}
            zipkin_hp = args.zipkin_host_port if args.zipkin_host_port is not None else env.get("COLLECTOR_ZIPKIN_HOST_PORT", "")
            if zipkin_hp:
                bound["zipkin"] = await listen(JaegerCollector(store).handle, zipkin_hp)
            query_hp = args.query_host_port or env.get("QUERY_HTTP_SERVER_HOST_PORT") or ":16686"
            bound["query"] = await listen(JaegerQuery(store).handle, query_hp)
            admin_hp = args.admin_host_port or env.get("ADMIN_HTTP_HOST_PORT") or ":14269"
            bound["admin"] = await listen(lambda req: _admin(req, started), admin_hp)
            _jaeger_log("info", f"Starting jaeger all-in-one (sluice stand-in for jaegertracing/all-in-one {JAEGER_VERSION})",
                        **bound, store=path)
        else:
            port = args.port if args.port is not None else int(env.get("QUERY_PORT") or 9411)
            api = ZipkinApi(store, settings)
            addr = await listen(api.handle, f":{port}")
            _zipkin_log(f"Serving HTTP at /{addr} - http://{addr}/ (sluice stand-in for openzipkin/zipkin {ZIPKIN_VERSION}, "
                        f"spans in {path})", "c.l.a.s.Server")
    except (OSError, ValueError) as exc:
        print(f"failed to start: {exc}", file=sys.stderr, flush=True)
        for s in servers:
            s.close()
        executor.submit(store.close).result()
        executor.shutdown()
        return 1

    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()
    for web in https:
        web.close_connections()
    await loop.run_in_executor(executor, store.close)
    executor.shutdown()
    if args.jaeger:
        _jaeger_log("info", "Shutting down")
    else:
        _zipkin_log("Stopped ZipkinServer")
    return 0


def _admin(req: Request, started: float) -> Response:
    """Jaeger's admin ``/``: the health check's JSON."""
    if req.path != "/":
        return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")
    up = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)) + "Z"
    body = json.dumps({"status": "Server available", "upSince": up, "uptime": f"{time.time() - started:.9f}s"},
                      separators=(",", ":")).encode()
    return Response(200, body, "application/json")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(args, env))
    return uvloop.run(_serve(args, env))

