"""StatsD over UDP and TCP (``pkg/listener``), and the event queue between them and the registry.

UDP: one datagram (at most 65535 bytes read) is split on ``\\n``; every piece counts as a line,
empty ones make no event. TCP: a line reader as Go's ``bufio.Reader.ReadLine`` with its 4096-byte
buffer: lines end in ``\\n`` or ``\\r\\n``; a line that does not fit (4096 bytes or more without
its ``\\n``) closes the connection (``statsd_exporter_tcp_too_long_lines_total``); the last line
may end with the connection. A connection holds at most one partial line, so memory stays bounded.

Events wait in a queue flushed to the registry every 200 ms or at 1000 events, as the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from sluice.lab.backends.statsd_exporter.line import Event, LineParser
from sluice.lab.backends.statsd_exporter.registry import OwnMetrics

UDP_PACKET_MAX = 65535
TCP_LINE_MAX = 4096
"""Go's default ``bufio.Reader`` size: a line and its ``\\n`` must fit."""


class EventQueue:
    def __init__(self, handler: Callable[[list[Event]], None], own: OwnMetrics, *, threshold: int = 1000, interval: float = 0.2) -> None:
        self.handler = handler
        self.own = own
        self.threshold = max(1, threshold)
        self.interval = interval
        self.pending: list[Event] = []
        self._timer: asyncio.TimerHandle | None = None

    def queue(self, events: list[Event]) -> None:
        for ev in events:
            self.pending.append(ev)
            if len(self.pending) >= self.threshold:
                self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        self.own.inc("statsd_exporter_event_queue_flushed_total")
        self.handler(batch)

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def tick() -> None:
            self.flush()
            self._timer = loop.call_later(self.interval, tick)

        self._timer = loop.call_later(self.interval, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.pending:
            self.flush()


class UDPListener(asyncio.DatagramProtocol):
    def __init__(self, parser: LineParser, queue: EventQueue, own: OwnMetrics) -> None:
        self.parser = parser
        self.queue = queue
        self.own = own

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.own.inc("statsd_exporter_udp_packets_total")
        for line in data[:UDP_PACKET_MAX].split(b"\n"):
            self.own.inc("statsd_exporter_lines_total")
            self.queue.queue(self.parser.parse(line))

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier send; a receiver has nothing to do about it.
        pass


class TCPConnection(asyncio.Protocol):
    def __init__(self, parser: LineParser, queue: EventQueue, own: OwnMetrics) -> None:
        self.parser = parser
        self.queue = queue
        self.own = own
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.own.inc("statsd_exporter_tcp_connections_total")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.buf += data
        start = 0
        buf = self.buf
        while True:
            end = buf.find(b"\n", start)
            if end == -1:
                break
            if end + 1 - start > TCP_LINE_MAX:
                self._too_long()
                return
            stop = end - 1 if end > start and buf[end - 1] == 0x0D else end
            self._line(bytes(buf[start:stop]))
            start = end + 1
        del buf[:start]
        if len(buf) >= TCP_LINE_MAX:
            self._too_long()

    def eof_received(self) -> bool:
        if self.buf and not self.closed:
            self._line(bytes(self.buf))
        self.buf.clear()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.closed:
            self.own.inc("statsd_exporter_tcp_connection_errors_total")
        self.closed = True
        self.buf = bytearray()

    def _line(self, line: bytes) -> None:
        self.own.inc("statsd_exporter_lines_total")
        self.queue.queue(self.parser.parse(line))

    def _too_long(self) -> None:
        self.own.inc("statsd_exporter_tcp_too_long_lines_total")
        self.closed = True
        self.buf = bytearray()
        if self.transport is not None:
            self.transport.close()


async def listen_udp(host: str, port: int, parser: LineParser, queue: EventQueue, own: OwnMetrics) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: UDPListener(parser, queue, own), local_addr=(host, port))
    with contextlib.suppress(OSError):
        # Bursts of datagrams (a proxy's flush) should not overflow a small default buffer.
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return transport


async def listen_tcp(host: str, port: int, parser: LineParser, queue: EventQueue, own: OwnMetrics) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: TCPConnection(parser, queue, own), host, port, reuse_address=True)
