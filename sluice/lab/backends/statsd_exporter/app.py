"""The exporter as one object: listeners, queue, registry and web side, started on a running loop.

``main(argv)`` reads the real exporter's flags (kingpin style: ``--flag=value`` or
``--flag value``, ``--no-flag`` for booleans). Flags for what this stand-in does not do (a mapping
file, unixgram, relaying) are refused with a clear "not implemented" line and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from sluice.lab.backends.statsd_exporter.line import LineParser, TagStyles
from sluice.lab.backends.statsd_exporter.listener import EventQueue, listen_tcp, listen_udp
from sluice.lab.backends.statsd_exporter.registry import MAX_SERIES, VERSION, OwnMetrics, Registry
from sluice.lab.backends.statsd_exporter.web import Web


class AddressError(ValueError):
    pass


def split_address(text: str, *, all_addresses: str | None) -> tuple[str | None, int]:
    """Go's ``host:port`` (``:9125``, ``[::1]:9125``, ``name:9125``) → ``(ip, port)``; an empty
    host is ``all_addresses``; a name resolves to its first address."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise AddressError(f"address {text}: missing port in address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise AddressError(f"address {text}: too many colons in address")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise AddressError(f"bad port {port_text!r} in address {text}")
    if not host:
        return all_addresses, int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise AddressError(f"unable to resolve {host}: {exc}") from exc
        infos.sort(key=lambda i: i[0] != socket.AF_INET)
        host = str(infos[0][4][0])
    return host, int(port_text)


@dataclass(slots=True)
class Options:
    web_listen: str = ":9102"
    telemetry_path: str = "/metrics"
    listen_udp: str = ":9125"
    listen_tcp: str = ":9125"
    lifecycle: bool = False
    styles: TagStyles | None = None
    flush_threshold: int = 1000
    flush_interval: float = 0.2
    max_series: int = MAX_SERIES


class Exporter:
    def __init__(self, options: Options, log: Callable[[str], None] = print) -> None:
        self.options = options
        self.log = log
        self.own = OwnMetrics()
        self.registry = Registry(self.own, max_series=options.max_series)
        self.parser = LineParser(self.own, options.styles)
        self.queue = EventQueue(self.registry.handle, self.own, threshold=options.flush_threshold, interval=options.flush_interval)
        self.web = Web(self.registry, telemetry_path=options.telemetry_path, lifecycle=options.lifecycle)
        self.web.log = log
        self._closers: list[Callable[[], object]] = []
        self.web_port = self.udp_port = self.tcp_port = 0

    async def start(self) -> None:
        o = self.options
        if not o.listen_udp and not o.listen_tcp:
            raise AddressError("At least one of UDP/TCP/Unixgram listeners must be specified.")
        try:
            if o.listen_udp:
                host, port = split_address(o.listen_udp, all_addresses="0.0.0.0")
                udp = await listen_udp(host or "0.0.0.0", port, self.parser, self.queue, self.own)
                self._closers.append(udp.close)
                self.udp_port = udp.get_extra_info("sockname")[1]
            if o.listen_tcp:
                host, port = split_address(o.listen_tcp, all_addresses="0.0.0.0")
                tcp = await listen_tcp(host or "0.0.0.0", port, self.parser, self.queue, self.own)
                self._closers.append(tcp.close)
                self.tcp_port = tcp.sockets[0].getsockname()[1]
            host, port = split_address(o.web_listen, all_addresses=None)
            web = await self.web.serve(host, port)
            self._closers.append(web.close)
            self.web_port = web.sockets[0].getsockname()[1]
        except BaseException:
            self.stop()
            raise
        self.queue.start()

    def stop(self) -> None:
        self.queue.stop()
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                close()
        self._closers = []


def _log(level: str, msg: str, **fields: object) -> None:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
    extra = "".join(f" {k}={_quote(str(v))}" for k, v in fields.items())
    print(f"ts={ts} caller=main.go level={level} msg={_quote(msg)}{extra}", flush=True)


def _quote(v: str) -> str:
    return v if v and all(c.isalnum() or c in "-_./:[]" for c in v) else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="statsd_exporter",
        description="StatsD → Prometheus exporter (Sluice's stand-in for prom/statsd-exporter v0.22.3, no mapping file).",
        allow_abbrev=False,
    )
    add = p.add_argument
    add(
        "--web.listen-address",
        dest="web_listen",
        default=":9102",
        help="The address on which to expose the web interface and generated Prometheus metrics.",
    )
    add(
        "--web.enable-lifecycle",
        dest="lifecycle",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Enable shutdown and reload via HTTP request.",
    )
    add("--web.telemetry-path", dest="telemetry_path", default="/metrics", help="Path under which to expose metrics.")
    add(
        "--statsd.listen-udp",
        dest="listen_udp",
        default=":9125",
        help='The UDP address on which to receive statsd metric lines. "" disables it.',
    )
    add(
        "--statsd.listen-tcp",
        dest="listen_tcp",
        default=":9125",
        help='The TCP address on which to receive statsd metric lines. "" disables it.',
    )
    add("--statsd.listen-unixgram", dest="listen_unixgram", default="", help="Not implemented here.")
    add("--statsd.unixsocket-mode", dest="unixsocket_mode", default="755", help="Unused (no unixgram listener).")
    add(
        "--statsd.mapping-config",
        dest="mapping_config",
        default="",
        help="Not implemented here: metrics are named by the default escaping.",
    )
    add("--statsd.read-buffer", dest="read_buffer", type=int, default=0, help="Size (in bytes) of the UDP socket's receive buffer.")
    add("--statsd.cache-size", dest="cache_size", type=int, default=1000, help="Accepted; no mapping cache without a mapping file.")
    add(
        "--statsd.cache-type",
        dest="cache_type",
        choices=("lru", "random"),
        default="lru",
        help="Accepted; no mapping cache without a mapping file.",
    )
    add(
        "--statsd.event-queue-size", dest="event_queue_size", type=int, default=10000, help="Accepted (the queue is flushed synchronously)."
    )
    add(
        "--statsd.event-flush-threshold",
        dest="flush_threshold",
        type=int,
        default=1000,
        help="Number of events to hold in queue before flushing.",
    )
    add("--statsd.event-flush-interval", dest="flush_interval", default="200ms", help="Maximum time between event queue flushes.")
    add("--debug.dump-fsm", dest="dump_fsm", default="", help="Unused (no mapping file).")
    add("--check-config", dest="check_config", action=argparse.BooleanOptionalAction, default=False, help="Check configuration and exit.")
    for style in ("dogstatsd", "influxdb", "librato", "signalfx"):
        add(
            f"--statsd.parse-{style}-tags",
            dest=f"tags_{style}",
            action=argparse.BooleanOptionalAction,
            default=True,
            help=f"Parse {style} style tags.",
        )
    add("--statsd.relay.address", dest="relay_address", default="", help="Not implemented here.")
    add("--statsd.relay.packet-length", dest="relay_packet_length", type=int, default=1400, help="Unused (no relay).")
    add(
        "--log.level",
        dest="log_level",
        choices=("debug", "info", "warn", "error"),
        default="info",
        help="Only log messages with the given severity or above.",
    )
    add("--log.format", dest="log_format", choices=("logfmt", "json"), default="logfmt", help="Output format of log messages.")
    add("--version", action="version", version=f"statsd_exporter, version {VERSION} (sluice stand-in)")
    return p.parse_args(argv)


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` for the forms a flag uses (``200ms``, ``1s``, ``1m30s``)."""
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"time: invalid duration {text!r}")
    scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(a) * scale[b] for a, b in parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for flag, value in (
        ("--statsd.mapping-config", args.mapping_config),
        ("--statsd.listen-unixgram", args.listen_unixgram),
        ("--statsd.relay.address", args.relay_address),
    ):
        if value:
            _log(
                "error",
                f"{flag} is not implemented by this stand-in for statsd_exporter (it names metrics by the default escaping only)",
                value=value,
            )
            return 1
    try:
        interval = parse_duration(args.flush_interval)
    except ValueError as exc:
        _log("error", str(exc))
        return 1
    if args.check_config:
        _log("info", "Configuration check successful, exiting")
        return 0
    styles = TagStyles(args.tags_dogstatsd, args.tags_influxdb, args.tags_librato, args.tags_signalfx)
    options = Options(
        args.web_listen, args.telemetry_path, args.listen_udp, args.listen_tcp, args.lifecycle, styles, args.flush_threshold, interval
    )

    async def run() -> int:
        _log("info", "Starting StatsD -> Prometheus Exporter", version=f"(version={VERSION}, sluice stand-in)")
        exporter = Exporter(options, log=print)
        try:
            await exporter.start()
        except (OSError, AddressError) as exc:
            _log("error", "failed to start", error=exc)
            return 1
        _log("info", "Accepting StatsD Traffic", udp=options.listen_udp, tcp=options.listen_tcp, unixgram="")
        _log("info", "Accepting Prometheus Requests", addr=options.web_listen)
        signalled: list[str] = []
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):

            def on_signal(s: signal.Signals = sig) -> None:
                signalled.append(signal.Signals(s).name)
                exporter.web.quit.set()

            loop.add_signal_handler(sig, on_signal)
        await exporter.web.quit.wait()
        _log("info", f"Received os signal, exiting signal={signalled[0]}" if signalled else "Received lifecycle api quit, exiting")
        exporter.stop()
        return 0

    try:
        import uvloop
    except ImportError:
        return asyncio.run(run())
    return uvloop.run(run())
