"""The common main loop of the stand-in apps: start, then serve until interrupted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


def serve_forever(start: Callable[[], Awaitable[object]]) -> int:
    """Run ``start()`` on a new event loop, then keep serving until Ctrl-C / SIGINT."""

    async def serve() -> None:
        await start()
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0
