"""Named background tasks with strong references (see STYLE.md rule 7).

``asyncio.create_task`` keeps only a weak reference to its task; a task nobody holds can be
garbage-collected mid-flight. ``spawn`` keeps every task in a set until it finishes, names it,
and logs an exception instead of letting it vanish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from sluice.clock import TimeSource

log = logging.getLogger("sluice")
_tasks: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
    task = asyncio.get_event_loop().create_task(coro, name=name)  # noqa: TID251
    _tasks.add(task)
    task.add_done_callback(_done)
    return task


def _done(task: asyncio.Task[Any]) -> None:
    _tasks.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("task %s failed: %r", task.get_name(), exc, exc_info=exc)


def running() -> list[asyncio.Task[Any]]:
    return list(_tasks)


async def sleep(clock: TimeSource, delay: float) -> None:
    """``asyncio.sleep(delay)`` on ``clock``'s timers, so a test's SimTime decides when it ends
    (``asyncio.sleep`` is the same thing: a future resolved by the loop's ``call_later``)."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    handle = clock.call_later(delay, wake)
    try:
        await fut
    finally:
        handle.cancel()


@asynccontextmanager
async def timeout(clock: TimeSource, delay: float) -> AsyncIterator[None]:
    """``asyncio.timeout(delay)`` whose deadline is a timer of ``clock``: when it fires, the
    asyncio timeout is moved to "now", so asyncio itself cancels the body and raises
    ``TimeoutError`` (on the next loop turn) with its usual uncancel bookkeeping."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as cm:
        handle = clock.call_later(delay, lambda: cm.reschedule(loop.time()))
        try:
            yield
        finally:
            handle.cancel()
