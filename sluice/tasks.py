"""Named background tasks with strong references (see STYLE.md rule 7).

``asyncio.create_task`` keeps only a weak reference to its task; a task nobody holds can be
garbage-collected mid-flight. ``spawn`` keeps every task in a set until it finishes, names it,
and logs an exception instead of letting it vanish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

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
