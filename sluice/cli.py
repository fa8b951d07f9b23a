"""``sluice``: Envoy-like command line. ``sluice -c envoy.yaml`` runs the proxy;
``sluice --mode validate -c FILE`` checks a config; ``sluice lab ...`` runs course labs."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from sluice import __version__
from sluice.errors import ConfigError

LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "off": logging.CRITICAL + 10,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sluice", description="A Python data plane that runs Envoy v3 configs.")
    p.add_argument("-c", "--config-path", help="Envoy bootstrap config file (YAML or JSON)")
    p.add_argument("--config-yaml", help="YAML merged over the config file, as Envoy does")
    p.add_argument("--mode", choices=("serve", "validate", "init_only"), default="serve")
    p.add_argument("-l", "--log-level", default="info", choices=sorted(LOG_LEVELS))
    p.add_argument("--service-cluster", default="")
    p.add_argument("--service-node", default="")
    p.add_argument("--drain-time-s", type=float, default=600.0)
    p.add_argument("--parent-shutdown-time-s", type=float, default=900.0, help="accepted; no hot restart")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--base-id", type=int, default=0, help="accepted, no effect (no hot restart)")
    p.add_argument("--admin-address-path", help="write the admin address here once it listens")
    p.add_argument("--version", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from sluice.lab.cli import main as lab_main

        return lab_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.version:
        print(f"sluice version: {__version__}")
        return 0
    from sluice import logs

    logs.configure(args.log_level)
    log = logging.getLogger("sluice")
    if not args.config_path and not args.config_yaml:
        print("error: one of -c/--config-path or --config-yaml is required", file=sys.stderr)
        return 1
    if args.concurrency != 1:
        log.warning("--concurrency %d: Sluice runs one worker; using 1", args.concurrency)
        args.concurrency = 1
    from sluice.config.loader import validate

    try:
        bootstrap, unsupported = validate(args.config_path, args.config_yaml)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if unsupported:
        for line in unsupported:
            print(f"not implemented: {line}", file=sys.stderr)
        if args.mode == "validate":
            print(f"{args.config_path or 'config'}: {len(unsupported)} feature(s) not implemented yet", file=sys.stderr)
        return 1
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
                config_path=args.config_path or "",
                config_yaml=args.config_yaml or "",
                log_level=args.log_level,
                base_id=args.base_id,
                parent_shutdown_time_s=args.parent_shutdown_time_s,
                mode=args.mode,
            ),
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.mode == "validate":
        print(f"configuration '{args.config_path or '--config-yaml'}' OK")
        return 0
    return run(server, init_only=args.mode == "init_only")


def run(server: object, init_only: bool = False) -> int:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep a fallback
        runner = asyncio.run
    return int(runner(_serve(server, init_only)))


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
    # Everything built so far (config, routes, stats) lives for the whole run: move it out of
    # the cycle collector's sight, and collect less often — a finished request leaves no
    # cycles behind (ActiveStream._destroy breaks them), so young collections find little.
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    await server.wait_stopped()
    return 0


if __name__ == "__main__":
    sys.exit(main())
