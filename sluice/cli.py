"""``sluice``: Envoy-like command line. ``sluice -c envoy.yaml`` runs the proxy;
``sluice --mode validate -c FILE`` checks a config; ``sluice lab ...`` runs course labs."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sluice import logs
from sluice.errors import ConfigError

SUBCOMMANDS = """\
subcommands:
  sluice lab up [DIR|NAME] [-d]     run one of the course's docker-compose labs on loopback, no Docker
  sluice lab ps | logs [-f] [SVC…]  its services and their output
  sluice lab down | hosts | ls      stop it; its name → address table; running labs
  sluice lab --help                 the lab runner's options

examples:
  sluice -c front-envoy.yaml                  run a proxy from an Envoy v3 bootstrap (YAML or JSON)
  sluice --mode validate -c front-envoy.yaml  check a config: every problem, as FILE: PATH: message
  sluice lab up http-traffic-shifting -d      start the course's traffic-shifting lab
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sluice",
        usage="sluice [-c FILE] [--config-yaml YAML] [--mode serve|validate|init_only] [options]\n       sluice lab COMMAND ...",
        description="A service-mesh data plane in Python that runs Envoy's v3 configuration (Envoy's flags, Envoy's meaning).",
        epilog=SUBCOMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config-path", metavar="FILE", help="Envoy bootstrap config file (YAML or JSON)")
    p.add_argument("--config-yaml", metavar="YAML", help="YAML merged over the config file, as Envoy does")
    p.add_argument(
        "--mode",
        choices=("serve", "validate", "init_only"),
        default="serve",
        help="serve (default); validate: check the config and exit; init_only: start, then exit",
    )
    levels = ", ".join(logs.LEVELS)
    p.add_argument("-l", "--log-level", default="info", choices=sorted(logs.LEVELS), metavar="LEVEL", help=f"{levels} (default info)")
    p.add_argument("--service-cluster", default="", metavar="NAME", help="the node's cluster (node.cluster)")
    p.add_argument("--service-node", default="", metavar="NAME", help="the node's id (node.id)")
    p.add_argument("--drain-time-s", type=float, default=600.0, metavar="S", help="how long shutdown drains connections (default 600)")
    p.add_argument("--parent-shutdown-time-s", type=float, default=900.0, metavar="S", help="accepted; no hot restart")
    p.add_argument("--concurrency", type=int, default=1, metavar="N", help="worker threads: Sluice runs one and says so")
    p.add_argument("--base-id", type=int, default=0, metavar="N", help="accepted, no effect (no hot restart)")
    p.add_argument(
        "--file-flush-interval-msec",
        type=int,
        default=10000,
        metavar="MS",
        help="how often access-log files are written (default 10000)",
    )
    p.add_argument("--admin-address-path", metavar="FILE", help="write the admin address here once it listens")
    p.add_argument("--version", action="store_true", help="print the version line, as Envoy's --version, and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from sluice.lab.cli import main as lab_main

        return lab_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.version:
        from sluice.version import build_version

        print(f"sluice version: {build_version()}")
        return 0
    logs.configure(args.log_level)
    log = logging.getLogger("sluice")
    if not args.config_path and not args.config_yaml:
        print("error: one of -c/--config-path or --config-yaml is required", file=sys.stderr)
        return 1
    if args.concurrency != 1:
        log.warning("--concurrency %d: Sluice runs one worker; using 1", args.concurrency)
        args.concurrency = 1
    from sluice.config.loader import inspect

    source = args.config_path or "--config-yaml"
    found = inspect(args.config_path, args.config_yaml)
    for warning in found.warnings:  # Valid, and what Envoy does too, but likely not what was meant.
        if args.mode == "validate":
            print(f"warning: {warning}", file=sys.stderr)
        else:
            log.warning("%s", warning)
    if not report_problems(source, found.errors, found.unsupported) or found.bootstrap is None:
        return 1
    bootstrap = found.bootstrap
    from sluice.server import Options, Server

    try:
        server = Server(
            bootstrap,
            Options(
                service_cluster=args.service_cluster,
                service_node=args.service_node,
                drain_time_s=args.drain_time_s,
                concurrency=args.concurrency,
                admin_address_path=args.admin_address_path,
                file_flush_interval_s=args.file_flush_interval_msec / 1000,
                config_path=args.config_path or "",
                config_yaml=args.config_yaml or "",
                log_level=args.log_level,
                base_id=args.base_id,
                parent_shutdown_time_s=args.parent_shutdown_time_s,
                mode=args.mode,
            ),
        )
    except ConfigError as exc:
        print(f"{source}: {exc}", file=sys.stderr)
        return 1
    if args.mode == "validate":
        print(f"configuration '{args.config_path or '--config-yaml'}' OK")
        return 0
    return run(server, init_only=args.mode == "init_only")


def report_problems(source: str, errors: Sequence[object], unsupported: Sequence[object]) -> bool:
    """Print every problem, one ``FILE: PATH: message`` line each, then a summary; True if none."""
    for problem in [*errors, *unsupported]:
        print(problem, file=sys.stderr)
    if not errors and not unsupported:
        return True
    parts = []
    if errors:
        parts.append(_count(len(errors), "error") + " (Envoy refuses these too)")
    if unsupported:
        parts.append(_count(len(unsupported), "feature") + " Sluice does not implement yet")
    print(f"configuration '{source}' not loaded: {', '.join(parts)}", file=sys.stderr)
    return False


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def run(server: object, init_only: bool = False) -> int:
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, int]], int] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep a fallback
        runner = asyncio.run
    return int(runner(_serve(server, init_only)))


def settle_heap() -> None:
    """Once the server is built: everything built so far (config, routes, stats) lives for the
    whole run, so move it out of the cycle collector's sight, and collect less often — a
    finished request leaves no cycles behind (ActiveStream._destroy breaks them), so young
    collections find little. (The benchmarks' in-process harness does the same.)"""
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


async def _serve(server: object, init_only: bool) -> int:
    from sluice.server import Server

    assert isinstance(server, Server)
    try:
        await server.start()
    except OSError as exc:
        print(f"error: cannot listen: {exc}", file=sys.stderr)
        await server.stop()
        return 1
    if init_only:
        await server.stop()
        return 0
    settle_heap()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop, sig)
    loop.add_signal_handler(signal.SIGUSR1, server.reopen_access_logs)  # (Envoy: reopen the access logs)
    await server.wait_stopped()
    return 0


if __name__ == "__main__":
    sys.exit(main())
