"""The network under the connection pools, injectable (httpcore's ``AsyncNetworkBackend``).

A pool asks its :class:`NetworkBackend` for connections and never touches sockets itself, so
pool tests run against :class:`MockBackend`: each ``connect`` takes the next scripted outcome
(a connection, a refusal, a timeout) and hands the connection protocol a :class:`MockTransport`
that records what was written; the test plays the upstream by calling the protocol's
``data_received`` / ``connection_lost``.

The connection protocols are ``asyncio.Protocol`` objects (what uvloop drives fastest), so a
backend's ``connect`` takes a protocol factory, as ``loop.create_connection`` does, and returns
the protocol once ``connection_made`` has run.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

P = TypeVar("P", bound=asyncio.BaseProtocol)


class NetworkBackend(Protocol):
    async def connect(
        self, host: str, port: int, source: tuple[str, int] | None, protocol_factory: Callable[[], P]
    ) -> P:
        """A connected protocol; raises ``OSError`` when the connection fails. The connect
        timeout is the caller's (``asyncio.wait_for``)."""
        ...


class AsyncioBackend:
    """TCP through the running event loop."""

    __slots__ = ()

    async def connect(
        self, host: str, port: int, source: tuple[str, int] | None, protocol_factory: Callable[[], P]
    ) -> P:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(protocol_factory, host, port, local_addr=source)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        return protocol


DEFAULT_BACKEND = AsyncioBackend()


class MockTransport:
    """A transport that records writes; ``close`` tells the protocol (as asyncio does, soon)."""

    def __init__(self, protocol: asyncio.BaseProtocol, peer: tuple[str, int]) -> None:
        self.protocol = protocol
        self.peer = peer
        self.written: list[bytes] = []
        self.closed = False
        self.reading = True

    def __repr__(self) -> str:
        return f"<MockTransport {self.peer[0]}:{self.peer[1]} {'closed' if self.closed else 'open'}>"

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.written.append(data)

    def take(self) -> bytes:
        """What was written since the last call."""
        out = b"".join(self.written)
        self.written = []
        return out

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 40000)}.get(name, default)

    def remote_close(self) -> None:
        """The upstream closed the connection."""
        if not self.closed:
            self.closed = True
            self.protocol.connection_lost(None)


class MockBackend:
    """Scripted connects: :meth:`script` queues outcomes (``"ok"``, an exception instance, or
    ``"hang"`` for a connect that never completes); with nothing queued a connect succeeds.
    Every transport made is kept in :attr:`transports`, in order."""

    def __init__(self) -> None:
        self._script: collections.deque[str | BaseException] = collections.deque()
        self.transports: list[MockTransport] = []
        self.attempts: list[tuple[str, int, tuple[str, int] | None]] = []

    def script(self, *outcomes: str | BaseException) -> None:
        self._script.extend(outcomes)

    async def connect(
        self, host: str, port: int, source: tuple[str, int] | None, protocol_factory: Callable[[], P]
    ) -> P:
        self.attempts.append((host, port, source))
        outcome = self._script.popleft() if self._script else "ok"
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "hang":
            await asyncio.Event().wait()
        protocol = protocol_factory()
        transport = MockTransport(protocol, (host, port))
        self.transports.append(transport)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        return protocol
