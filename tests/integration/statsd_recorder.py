"""A recording StatsD server (TCP and UDP) for the sink tests, and the parsing of what it got.

Every TCP read and every datagram is kept raw with its arrival time, as the golden captures
(``tests/golden/envoy-part3-5/statsd/*/raw``) keep them. :func:`flushes` groups the lines
into flushes: a flush is a run of ``|c``/``|g`` lines; it ends at a ``|ms`` line or at a name
already in the run (every used stat is in every flush). Arrival times are not used to split: a
loaded test process may read one flush's datagrams over a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

LINE_RE = re.compile(r"^(?P<name>[^:|\n]+):(?P<value>-?\d+(?:\.\d+)?)\|(?P<type>c|g|ms|h)$")


@dataclass
class Line:
    t: float
    name: str
    value: int
    type: str


@dataclass
class Flush:
    t: float
    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, int] = field(default_factory=dict)

    def names(self) -> set[str]:
        return set(self.counters) | set(self.gauges)


class Recorder:
    """``await Recorder.start(ip)`` listens on TCP and UDP on the same free port of ``ip``."""

    def __init__(self) -> None:
        self.tcp_reads: list[tuple[float, int, bytes]] = []
        """(time, connection number, bytes) per read."""
        self.datagrams: list[tuple[float, bytes]] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._udp: asyncio.DatagramTransport | None = None

    async def start(self, ip: str = "127.0.0.1") -> Recorder:
        self._server = await asyncio.start_server(self._handle, ip, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        rec = self

        class Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                rec.datagrams.append((time.time(), data))

        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=(ip, self.port))
        # One flush is hundreds of datagrams at once (one per stat); the default receive buffer
        # (~200 KiB, ~270 small datagrams) overflows when this loop is slow on a loaded machine.
        sock = self._udp.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = self.connections
        while data := await reader.read(65536):
            self.tcp_reads.append((time.time(), n, data))
        writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._udp is not None:
            self._udp.close()

    def clear(self) -> None:
        self.tcp_reads.clear()
        self.datagrams.clear()

    # -- parsing ---------------------------------------------------------------------------
    def tcp_lines(self) -> list[Line]:
        """Lines of every TCP connection, each stream split on ``\\n`` (a read may cut a line)."""
        out: list[Line] = []
        pending: dict[int, tuple[float, bytes]] = {}
        for t, conn, data in list(self.tcp_reads):
            _, buf = pending.get(conn, (t, b""))
            buf += data
            *whole, rest = buf.split(b"\n")
            out += [parse_line(t, raw.decode()) for raw in whole]
            pending[conn] = (t, rest)
        assert all(not rest for _, rest in pending.values()), "a TCP line without its newline"
        return out

    def udp_lines(self) -> list[Line]:
        return [parse_line(t, d.decode()) for t, d in list(self.datagrams)]


def parse_line(t: float, text: str) -> Line:
    m = LINE_RE.match(text)
    assert m, f"not a StatsD line: {text!r}"
    return Line(t, m["name"], int(float(m["value"])), m["type"])


def flushes(lines: list[Line]) -> list[Flush]:
    out: list[Flush] = []
    current: Flush | None = None
    for line in lines:
        if line.type not in ("c", "g"):
            # A histogram sample (|ms) is sent as it is recorded, so one can land in the middle of
            # a flush's datagrams; it belongs to no flush and must not split one.
            continue
        if current is None or line.name in current.counters or line.name in current.gauges:
            current = Flush(line.t)
            out.append(current)
        (current.counters if line.type == "c" else current.gauges)[line.name] = line.value
    return out


def timers(lines: list[Line]) -> list[Line]:
    return [line for line in lines if line.type == "ms"]
