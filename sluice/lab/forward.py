"""Published ports: ``ports: "8080:80"`` listens on 127.0.0.1:8080 and forwards TCP to the
service's ``<address>:80``, inside the supervisor (no extra process)."""

from __future__ import annotations

import asyncio
import contextlib


class Forwarder:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self._server: asyncio.AbstractServer | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<Forwarder {self.listen[0]}:{self.listen[1]} -> {self.target[0]}:{self.target[1]} open={len(self._pipes)}>"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.listen[0], self.listen[1], reuse_address=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for t in list(self._pipes):
            t.cancel()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5.0)
        except (TimeoutError, OSError):
            writer.close()
            return
        loop = asyncio.get_running_loop()
        a = loop.create_task(_pipe(reader, up_writer), name=f"fwd:{self.listen[1]}:up")
        b = loop.create_task(_pipe(up_reader, writer), name=f"fwd:{self.listen[1]}:down")
        self._pipes |= {a, b}
        try:
            await asyncio.gather(a, b, return_exceptions=True)
        finally:
            self._pipes -= {a, b}
            writer.close()
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncio.CancelledError):
        writer.close()
        return
