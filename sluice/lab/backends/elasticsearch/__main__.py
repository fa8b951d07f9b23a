"""``python -m sluice.lab.backends.elasticsearch [-E key=value]… [-p pidfile] [-q] [-V]``: the
``elasticsearch`` command line of the docker image (settings also from ``elasticsearch.yml`` and
from environment variables named like settings, as the image's entrypoint reads them; see
:mod:`.settings`).

Logs ES's docker layout, one JSON object a line on stdout (``{"type": "server", "timestamp":
…, "level": "INFO", "component": "o.e.n.Node", "cluster.name": …, "node.name": …, "message":
… }``), including ``publish_address {HOST:PORT}, bound_addresses {HOST:PORT}`` once it listens
and ``started`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from sluice.lab.backends.elasticsearch.node import Node
from sluice.lab.backends.elasticsearch.rest_cluster import BUILD_DATE, BUILD_HASH, VERSION
from sluice.lab.backends.elasticsearch.settings import NodeSettings, SettingsError, load

_LOCK = threading.Lock()


class Logger:
    def __init__(self, settings: NodeSettings, *, quiet: bool = False) -> None:
        self.settings = settings
        self.quiet = quiet
        self.ids: dict[str, str] = {}

    def __call__(self, level: str, component: str, message: str, **_: Any) -> None:
        if self.quiet and level.upper() not in ("WARN", "ERROR"):
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f",{int(now * 1000) % 1000:03d}Z"
        fields = {"type": "server", "timestamp": stamp, "level": level.upper(), "component": component,
                  "cluster.name": self.settings.cluster_name, "node.name": self.settings.node_name, "message": message, **self.ids}
        line = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in fields.items()) + " }"
        with _LOCK:
            print(line, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="elasticsearch", description="Starts Elasticsearch (Sluice's stand-in for 7.14.2).",
                                allow_abbrev=False)
    p.add_argument("-E", dest="settings", action="append", default=[], metavar="KeyValuePair", help="Configure a setting")
    p.add_argument("-V", "--version", action="store_true", help="Prints Elasticsearch version information and exits")
    p.add_argument("-d", "--daemonize", action="store_true", help="Starts Elasticsearch in the background (not supported)")
    p.add_argument("-p", "--pidfile", default=None, help="Creates a pid file in the specified path on start")
    p.add_argument("-q", "--quiet", action="store_true", help="Turns off standard output/error streams logging in console")
    p.add_argument("-s", "--silent", action="store_true", help="show minimal output")
    p.add_argument("-v", "--verbose", action="store_true", help="show verbose output")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        print(f"Version: {VERSION}, Build: default/docker/{BUILD_HASH}/{BUILD_DATE}, JVM: none (sluice stand-in)")
        return 0
    if args.daemonize:
        print("ERROR: -d/--daemonize is not supported by this stand-in", file=sys.stderr)
        return 64
    try:
        settings = load(args.settings)
        settings.ports  # noqa: B018  (validates http.port)
    except SettingsError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 78
    log = Logger(settings, quiet=args.quiet or args.silent)
    return _run(settings, log, args.pidfile)


def _run(settings: NodeSettings, log: Logger, pidfile: str | None) -> int:
    async def run() -> int:
        log("info", "o.e.n.Node", f"version[{VERSION}], pid[{os.getpid()}], build[default/docker/{BUILD_HASH}/{BUILD_DATE}], "
            f"OS[{os.uname().sysname}/{os.uname().release}/{os.uname().machine}], JVM[none (Python {sys.version.split()[0]})]")
        for key in settings.unknown:
            log("warn", "o.e.c.s.Settings", f"setting [{key}] is not used by this stand-in")
        node = Node(settings, log)
        try:
            host, port = await node.start()
        except OSError as exc:
            log("error", "o.e.b.ElasticsearchUncaughtExceptionHandler", f"uncaught exception in thread [main]: {exc}")
            return 1
        assert node.store is not None
        log.ids = {"cluster.uuid": node.store.cluster_uuid, "node.id": node.store.node_id}
        log("info", "o.e.e.NodeEnvironment", f"using [1] data paths, mounts [[{settings.data_path}]]")
        log("info", "o.e.h.AbstractHttpServerTransport", f"publish_address {{{host}:{port}}}, bound_addresses {{{host}:{port}}}")
        if pidfile:
            with open(pidfile, "w", encoding="ascii") as f:
                f.write(f"{os.getpid()}\n")
        log("info", "o.e.n.Node", "started")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log("info", "o.e.n.Node", "stopping ...")
        await node.stop()
        log("info", "o.e.n.Node", "stopped")
        log("info", "o.e.n.Node", "closing ...")
        log("info", "o.e.n.Node", "closed")
        if pidfile:
            try:
                os.unlink(pidfile)
            except OSError:
                pass
        return 0

    try:
        import uvloop
    except ImportError:
        return asyncio.run(run())
    return uvloop.run(run())


if __name__ == "__main__":
    sys.exit(main())
