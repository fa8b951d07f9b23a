"""A downstream connection: the ``asyncio.Protocol`` between a socket and its connection manager.

It knows bytes, not HTTP (Envoy's ``Network::ConnectionImpl``): what arrives goes to the
handler's ``on_data``; what the handler writes is coalesced and sent once per event-loop
iteration (a response head and its body leave in one ``send``); the transport's write flow
control reaches the handler as ``on_write_watermark``; reading is disabled and re-enabled with a
count, as Envoy's ``readDisable`` is, so several streams can each hold the connection back.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Protocol, cast

from sluice import logs

log = logging.getLogger("sluice.http")


class ConnectionHandler(Protocol):
    """What the connection calls (the HTTP connection manager)."""

    def on_connected(self) -> None: ...
    def on_data(self, data: bytes) -> None: ...
    def on_connection_closed(self) -> None: ...
    def on_write_watermark(self, above: bool) -> None: ...


class Connection(asyncio.Protocol):
    """One accepted connection. ``handler_factory`` makes its handler (given the connection);
    ``on_close`` tells the listener it is gone."""

    __slots__ = (
        "handler", "transport", "remote", "local", "cid", "closing", "write_paused",
        "wbuf", "scheduled", "read_disables", "on_close", "pull", "_call_soon", "delaying", "peer_closed",
        "_lost_in_delay",
    )  # fmt: skip

    def __init__(
        self,
        handler_factory: Callable[[Connection], ConnectionHandler],
        on_close: Callable[[Connection], None] | None = None,
        call_soon: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.transport: asyncio.Transport | None = None
        self.remote: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.cid = next(logs.connection_ids)
        """Envoy's connection id, for debug lines."""
        self.closing = False
        self.write_paused = False
        self.wbuf: list[bytes] = []
        self.scheduled = False
        self.read_disables = 0
        self.on_close = on_close
        self.pull: Callable[[], bytes] | None = None
        """Set by a handler whose codec buffers its output (HTTP/2): called at each flush."""
        self._call_soon = call_soon
        self.delaying = False
        """In Envoy's delayed close: flushed, waiting for the peer's FIN (see :meth:`close_delayed`)."""
        self.peer_closed = False
        """The peer closed first while we were closing (the close counts as the peer's)."""
        self._lost_in_delay = False
        self.handler = handler_factory(self)

    def __repr__(self) -> str:
        return f"<Connection {self.cid} {self.remote} closing={self.closing}>"

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses (no isinstance check).
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.remote = (peer[0], peer[1]) if peer else None
        self.local = (sock[0], sock[1]) if sock else None
        s = transport.get_extra_info("socket")
        if s is not None:
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.handler.on_connected()

    def data_received(self, data: bytes) -> None:
        if self.delaying:
            return  # (Envoy reads nothing more once it is closing)
        self.handler.on_data(data)

    def eof_received(self) -> None:
        if self.delaying:
            self.peer_closed = True
        # (None: the transport closes, and connection_lost follows)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.delaying and exc is not None and not self.peer_closed:
            # Envoy watches only for the peer's FIN while it waits (libevent's EV_CLOSED): a
            # reset goes unnoticed until its timer, so the close is counted then, as ours.
            self._lost_in_delay = True
            return
        self._lost()

    def _lost(self) -> None:
        self.closing = True
        self.delaying = False
        self.wbuf = []
        self.handler.on_connection_closed()
        if self.on_close is not None:
            self.on_close(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.handler.on_write_watermark(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.handler.on_write_watermark(False)

    # -- writing ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queue bytes; everything written in one loop iteration leaves in one send."""
        if self.closing:
            return
        self.wbuf.append(data)
        if not self.scheduled:
            self.schedule()

    def want_flush(self) -> None:
        """The handler has output in its codec (``pull``): flush at the end of this iteration."""
        if not self.scheduled and not self.closing:
            self.schedule()

    def schedule(self) -> None:
        self.scheduled = True
        call_soon = self._call_soon
        if call_soon is None:
            asyncio.get_running_loop().call_soon(self.flush)
        else:
            call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        pull = self.pull
        if pull is not None:
            data = pull()
            if data:
                self.wbuf.append(data)
        wbuf = self.wbuf
        if not wbuf:
            return
        self.wbuf = []
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(wbuf[0] if len(wbuf) == 1 else b"".join(wbuf))

    # -- reading and closing ------------------------------------------------------------------
    def read_disable(self, disable: bool) -> None:
        """Counted: reading resumes when every disable has been undone."""
        transport = self.transport
        if disable:
            self.read_disables += 1
            if self.read_disables == 1 and transport is not None and not self.closing:
                transport.pause_reading()
        elif self.read_disables > 0:
            self.read_disables -= 1
            if self.read_disables == 0 and transport is not None and not self.closing:
                transport.resume_reading()

    def pause_reading(self) -> None:
        """``read_disable(True)`` (asyncio's name)."""
        self.read_disable(True)

    def resume_reading(self) -> None:
        self.read_disable(False)

    def read_enable_all(self) -> None:
        """Undo every disable (the stream that held them is gone)."""
        if self.read_disables:
            self.read_disables = 0
            if self.transport is not None and not self.closing:
                self.transport.resume_reading()

    def close(self) -> None:
        """Flush what is queued, then close (ends a delayed close at once)."""
        if self.delaying:
            self.end_delay()
        elif self.transport is not None and not self.closing:
            self.flush()
            self.closing = True
            self.transport.close()

    def close_delayed(self) -> None:
        """Envoy's ``FlushWriteAndDelay``: flush what is queued, then read nothing more and
        wait for the peer to close (the caller's timer ends the wait with :meth:`end_delay`)."""
        if self.transport is not None and not self.closing:
            self.flush()
            if self.read_disables:  # (the peer's FIN must be seen, whatever held reading back)
                self.read_disables = 0
                self.transport.resume_reading()
            self.closing = self.delaying = True

    def end_delay(self) -> None:
        """The delayed close is over (its timer): close now."""
        if not self.delaying:
            return
        if self._lost_in_delay:
            self._lost()
        elif self.transport is not None:
            self.delaying = False
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now (a reset)."""
        if self._lost_in_delay:
            self._lost()
        elif self.transport is not None:
            self.closing = True
            self.delaying = False
            self.transport.abort()
