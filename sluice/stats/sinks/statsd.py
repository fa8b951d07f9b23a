"""The StatsD sink (``envoy.stat_sinks.statsd``, deprecated name ``envoy.statsd``), as Envoy 1.40's
``source/extensions/stat_sinks/common/statsd/statsd.cc`` writes it.

Wire format, one metric per line: ``<prefix>.<full stat name>:<value>|<type>`` with type ``c``
(counter delta), ``g`` (gauge value) or ``ms`` (one histogram sample, an integer, sent as it is
recorded). No tags: the full dotted name is the metric name. ``prefix`` defaults to ``envoy``.

- UDP (``address``): one metric per datagram, no newline (Envoy's default ``buffer_size`` 0).
  A send that fails (nobody listening, socket buffer full) drops that metric and counts it in
  :attr:`UdpStatsdSink.send_errors`; nothing waits.
- TCP (``tcp_cluster_name``): lines end in ``\\n``; a flush is one write of all its lines, a
  histogram sample a write of its own. The connection goes to a host of the named cluster and
  counts its bytes in ``cluster.<name>.upstream_cx_tx_bytes_total``. Writes go through
  :class:`BoundedBuffer` while there is no connection (reconnects back off exponentially); what
  would exceed 16 MiB (Envoy's ``MAX_BUFFERED_STATS_BYTES``), buffered or unsent in the socket,
  is dropped and counted in ``statsd.cx_overflow`` - as Envoy, a backed-up connection is
  closed and a new one opened later. The sink never holds more than that bound.

# Divergence from Envoy: one TCP connection (Sluice has one thread; Envoy opens one per thread),
# and a failed connect is retried after a back-off instead of at the next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice.clock import REAL, TimeSource
from sluice.stats.sinks.snapshot import Snapshot
from sluice.stats.store import Counter
from sluice.tasks import sleep, spawn
from sluice.tasks import timeout as clock_timeout

log = logging.getLogger("sluice.stats")

DEFAULT_PREFIX = "envoy"
MAX_BUFFERED_BYTES = 16 * 1024 * 1024
"""Envoy's ``TcpStatsdSink::MAX_BUFFERED_STATS_BYTES``."""
UDP_CHUNK = 256
"""Datagrams sent per loop callback."""
UDP_MAX_PENDING = 100_000
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class StatsdSinkConfig:
    """``envoy.config.metrics.v3.StatsdSink``."""

    prefix: str
    """``prefix``; empty in the config means ``envoy``."""
    address: tuple[str, int] | None = None
    """``address.socket_address`` (``address``, ``port_value``): the UDP target."""
    tcp_cluster_name: str = ""
    """``tcp_cluster_name``: the cluster whose host receives the TCP stream."""


def parse_config(msg: Any) -> StatsdSinkConfig:
    """The config of a ``StatsdSink`` message (already validated: one of the two targets is set)."""
    prefix = msg.prefix or DEFAULT_PREFIX
    if msg.WhichOneof("statsd_specifier") == "address":
        sa = msg.address.socket_address
        return StatsdSinkConfig(prefix, address=(sa.address, sa.port_value))
    return StatsdSinkConfig(prefix, tcp_cluster_name=msg.tcp_cluster_name)


# -- lines (pure) -----------------------------------------------------------------------------


def flush_lines(prefix: str, snapshot: Snapshot) -> list[str]:
    """The flush's metrics without separators: counters (``|c``, deltas), then gauges (``|g``)."""
    p = prefix + "."
    out = [f"{p}{name}:{delta}|c" for name, delta in snapshot.counters]
    out += [f"{p}{name}:{value}|g" for name, value in snapshot.gauges]
    return out


def timer_line(prefix: str, name: str, value: int) -> str:
    return f"{prefix}.{name}:{value}|ms"


# -- UDP --------------------------------------------------------------------------------------


class UdpStatsdSink:
    """Datagrams to ``address``; never blocks (non-blocking socket), drops and counts on error.

    Sends are deferred to the loop (``call_soon``) and made at most :data:`UDP_CHUNK` per
    callback, so a flush of 10 000 stats does not hold the loop for 10 000 syscalls at once and
    a histogram sample costs the request path one list append. At most
    :data:`UDP_MAX_PENDING` datagrams wait; more are dropped and counted in ``send_errors``.
    """

    __slots__ = ("prefix", "target", "send_errors", "_sock", "_dot", "_pending", "clock", "_closed")

    def __init__(
        self, prefix: str, target: tuple[str, int], sock: socket.socket | None = None, clock: TimeSource = REAL
    ) -> None:
        self.prefix = prefix
        self._dot = prefix + "."
        self.target = target
        self.send_errors = 0
        """Metrics dropped because the send failed or too many waited (Envoy drops them silently)."""
        if sock is None:
            family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
        # Not connected, as Envoy's sink sends (sendmsg with the address): a connected socket
        # would turn an ICMP "port unreachable" from a target that is not up yet into an error
        # on a later send, losing a datagram that Envoy would have delivered. (Measured: a
        # connected send is ~15 % cheaper; bench/statsd_sink.py.)
        self._sock = sock
        self._pending: list[bytes] = []
        self.clock = clock
        self._closed = False

    def _queue(self, datagrams: list[bytes]) -> None:
        if self._closed:
            return
        pending = self._pending
        room = UDP_MAX_PENDING - len(pending)
        if len(datagrams) > room:
            self.send_errors += len(datagrams) - max(room, 0)
            datagrams = datagrams[: max(room, 0)]
        was_empty = not pending
        pending += datagrams
        if was_empty and pending:
            self.clock.call_soon(self._send_pending)

    def _send_pending(self) -> None:
        pending = self._pending
        chunk, self._pending = pending[:UDP_CHUNK], pending[UDP_CHUNK:]
        sendto, target = self._sock.sendto, self.target
        errors = 0
        for data in chunk:
            try:
                sendto(data, target)
            except OSError as exc:
                errors += 1
                last = exc
        if errors:
            self.send_errors += errors
            log.debug("statsd: %d udp send(s) to %s:%d failed (%d so far): %s", errors, *target, self.send_errors, last)
        if self._pending:
            self.clock.call_soon(self._send_pending)

    def flush(self, snapshot: Snapshot) -> None:
        self._queue([line.encode() for line in flush_lines(self.prefix, snapshot)])

    def on_histograms(self, samples: list[tuple[str, int]]) -> None:
        dot = self._dot
        self._queue([f"{dot}{name}:{value}|ms".encode() for name, value in samples])

    async def close(self, timeout: float) -> None:
        self._closed = True
        while self._pending:
            self._send_pending()
        self._sock.close()

    def __repr__(self) -> str:
        return f"<UdpStatsdSink {self.target[0]}:{self.target[1]} pending={len(self._pending)} errors={self.send_errors}>"


# -- TCP --------------------------------------------------------------------------------------


class BoundedBuffer:
    """Bytes waiting for a connection, never more than ``limit``; what does not fit is dropped
    whole (a write is a set of complete lines) and counted in ``overflow``."""

    __slots__ = ("limit", "overflow", "_chunks", "size")

    def __init__(self, limit: int, overflow: Counter) -> None:
        self.limit = limit
        self.overflow = overflow
        self._chunks: list[bytes] = []
        self.size = 0

    def append(self, data: bytes) -> bool:
        if self.size + len(data) > self.limit:
            self.overflow.inc()
            return False
        self._chunks.append(data)
        self.size += len(data)
        return True

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self.size = 0
        return data

    def __len__(self) -> int:
        return self.size


HostChooser = Callable[[], "tuple[str, int] | None"]


class _Link(asyncio.Protocol):
    """The TCP connection's protocol: only notices the close (StatsD servers send nothing)."""

    def __init__(self, sink: TcpStatsdSink) -> None:
        self.sink = sink

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink._on_lost(self)


class TcpStatsdSink:
    """Newline-separated lines over a connection to a host of ``tcp_cluster_name``."""

    def __init__(
        self,
        prefix: str,
        choose_host: HostChooser,
        connect_timeout: float,
        tx_bytes: Counter,
        overflow: Counter,
        limit: int = MAX_BUFFERED_BYTES,
        clock: TimeSource = REAL,
    ) -> None:
        self.prefix = prefix
        self._choose_host = choose_host
        self._connect_timeout = connect_timeout
        self._tx_bytes = tx_bytes
        self.overflow = overflow
        """``statsd.cx_overflow``."""
        self.limit = limit
        self.buffer = BoundedBuffer(limit, overflow)
        self._transport: asyncio.WriteTransport | None = None
        self._link: _Link | None = None
        self._connecting: asyncio.Task[None] | None = None
        self.clock = clock
        self.backoff_s = 0.0
        """The wait before the next connect attempt (0 until one fails)."""
        self._next_attempt = 0.0
        self.connects = 0
        self.connect_failures = 0
        self.closed = False
        self._dot = prefix + "."

    # -- the two sink calls -----------------------------------------------------------------
    def flush(self, snapshot: Snapshot) -> None:
        lines = flush_lines(self.prefix, snapshot)
        if lines:
            lines.append("")  # every line ends in a newline
            self._write("\n".join(lines).encode())

    def on_histograms(self, samples: list[tuple[str, int]]) -> None:
        # One loop turn's samples in one write (Envoy's connection buffers a pass's writes too).
        dot = self._dot
        self._write("".join([f"{dot}{name}:{value}|ms\n" for name, value in samples]).encode())

    # -- writing ----------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.closed:
            return
        t = self._transport
        if t is not None:
            if t.get_write_buffer_size() + len(data) > self.limit:
                # Backed up (a StatsD server that does not read): as Envoy, drop this write,
                # count it, and close the connection; the next write reconnects.
                self.overflow.inc()
                t.abort()
                return
            t.write(data)
            self._tx_bytes.inc(len(data))
            return
        self.buffer.append(data)
        self._maybe_connect()

    def _maybe_connect(self) -> None:
        if self._connecting is not None or self.clock.monotonic() < self._next_attempt:
            return
        self._connecting = spawn(self._connect(), name="statsd:connect")

    async def _connect(self) -> None:
        try:
            target = self._choose_host()
            if target is None:
                raise OSError("no host in the cluster")
            loop = asyncio.get_running_loop()
            async with clock_timeout(self.clock, self._connect_timeout):
                transport, link = await loop.create_connection(lambda: _Link(self), target[0], target[1])
        except (TimeoutError, OSError) as exc:
            self.connect_failures += 1
            self.backoff_s = min(BACKOFF_MAX_S, self.backoff_s * 2 if self.backoff_s else BACKOFF_BASE_S)
            self._next_attempt = self.clock.monotonic() + self.backoff_s
            log.debug("statsd: tcp connect failed (%s); next attempt in %gs", exc, self.backoff_s)
            return
        finally:
            self._connecting = None
        self.connects += 1
        self.backoff_s = 0.0
        self._transport = transport
        self._link = link
        pending = self.buffer.take()
        if pending:
            transport.write(pending)
            self._tx_bytes.inc(len(pending))

    def _on_lost(self, link: _Link) -> None:
        if link is self._link:
            self._transport = None
            self._link = None

    async def close(self, timeout: float) -> None:
        """The final flush's bytes get up to ``timeout`` to leave: a connect under way is
        waited for, then the transport is closed (asyncio sends its buffer first)."""
        self.closed = True
        clock = self.clock
        deadline = clock.monotonic() + timeout
        if self._transport is None and self.buffer.size and self._connecting is None:
            self._next_attempt = 0.0
            self._maybe_connect()
        if self._connecting is not None:
            with contextlib.suppress(TimeoutError):
                async with clock_timeout(clock, max(0.0, deadline - clock.monotonic())):
                    await asyncio.shield(self._connecting)
        t = self._transport
        if t is None:
            return
        t.close()
        while self._transport is not None and clock.monotonic() < deadline:
            await sleep(clock, 0.01)
        if self._transport is not None:
            t.abort()

    def __repr__(self) -> str:
        state = "connected" if self._transport is not None else "connecting" if self._connecting else "idle"
        return f"<TcpStatsdSink {state} buffered={self.buffer.size} overflow={self.overflow.value}>"
