"""libbeat's publisher pipeline: per-input processing, the memory queue, in-order acknowledgement.

Processing, in libbeat's order (``libbeat/publisher/processing``): the input's ``index`` /
``pipeline`` into ``@metadata``; global then input ``tags``; input ``fields`` (under ``fields``
or at the root with ``fields_under_root``) and global ``fields``; the input's ``processors``; the
built-in fields (``agent.*``, ``ecs.version``, ``host.name``; never overwriting); the global
``processors``. An event a processor drops still carries its file state to the registry.

The memory queue (``queue.mem``: ``events`` 4096, ``flush.min_events`` 2048, ``flush.timeout``
1s) hands events to the outputs once 2048 are waiting or the oldest has waited a second; outputs
take at most ``bulk_max_size`` (50) at a time; a full queue blocks the harvesters.

Acknowledgement: batches are acknowledged in the order they were taken, whatever order the
outputs finish them in, and only then do their file states reach the registry (at-least-once).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sluice.lab.backends.filebeat import processors
from sluice.lab.backends.filebeat.event import Event, StateUpdate, deep_update
from sluice.lab.backends.filebeat.logs import Log


@dataclass(slots=True)
class Stats:
    """Counters for the ``Non-zero metrics in the last 30s`` log line."""

    published: int = 0
    filtered: int = 0
    acked: int = 0
    dropped: int = 0
    duplicates: int = 0
    retried: int = 0
    failed: int = 0
    batches: int = 0
    harvesters_started: int = 0
    harvesters_running: int = 0
    write_bytes: int = 0
    read_bytes: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}


class MemQueue:
    def __init__(self, size: int = 4096, min_events: int = 2048, flush_timeout: float = 1.0) -> None:
        self.size = max(1, size)
        self.min_events = max(1, min(min_events, self.size))
        self.flush_timeout = flush_timeout
        self.buf: deque[Event] = deque()
        self.ready = 0
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._data = asyncio.Event()
        self._space = asyncio.Event()

    def __len__(self) -> int:
        return len(self.buf)

    def put_nowait(self, event: Event) -> bool:
        if len(self.buf) >= self.size:
            return False
        self.buf.append(event)
        if self.min_events <= 1 or self.flush_timeout <= 0 or len(self.buf) - self.ready >= self.min_events:
            self._mark_ready()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_timeout, self._mark_ready)
        return True

    async def put(self, event: Event) -> None:
        while not self.put_nowait(event):
            if self.closed:
                return
            self._space.clear()
            await self._space.wait()

    def _mark_ready(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.ready = len(self.buf)
        if self.ready:
            self._data.set()

    async def get(self, n: int) -> list[Event]:
        """Up to ``n`` events once they are ready; ``[]`` once closed."""
        while self.ready == 0:
            if self.closed:
                return []
            self._data.clear()
            await self._data.wait()
        k = min(n, self.ready)
        out = [self.buf.popleft() for _ in range(k)]
        self.ready -= k
        self._space.set()
        if self.ready == 0 and self.buf and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_timeout, self._mark_ready)
        return out

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._data.set()
        self._space.set()


class Acker:
    """Acknowledges batches in the order they were taken from the queue."""

    def __init__(self, on_states: Callable[[list[StateUpdate]], None], stats: Stats) -> None:
        self.on_states = on_states
        self.stats = stats
        self._next_seq = 0
        self._next_ack = 0
        self._done: dict[int, list[Event]] = {}
        self.idle = asyncio.Event()
        self.idle.set()
        self.outstanding = 0

    def register(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        self.outstanding += 1
        self.idle.clear()
        return seq

    def ack(self, seq: int, batch: list[Event]) -> None:
        self._done[seq] = batch
        while self._next_ack in self._done:
            events = self._done.pop(self._next_ack)
            self._next_ack += 1
            self.outstanding -= 1
            updates = [ev.private for ev in events if ev.private is not None]
            if updates:
                self.on_states(updates)
        if self.outstanding == 0:
            self.idle.set()


class Builtins:
    """``agent.*``, ``ecs.version`` and ``host.name``, added without overwriting (libbeat step 6)."""

    def __init__(self, agent: dict[str, str], ecs_version: str, host_name: str | None) -> None:
        self.agent = agent
        self.ecs = {"version": ecs_version}
        self.host = {"name": host_name} if host_name else None

    def add(self, fields: dict[str, Any]) -> None:
        if "agent" not in fields and "ecs" not in fields and "host" not in fields:
            fields["agent"] = self.agent.copy()
            fields["ecs"] = self.ecs.copy()
            if self.host is not None:
                fields["host"] = self.host.copy()
            return
        for key, value in (("agent", self.agent), ("ecs", self.ecs), ("host", self.host)):
            if value is None:
                continue
            cur = fields.get(key)
            if cur is None:
                fields[key] = dict(value)
            elif isinstance(cur, dict):
                for k, v in value.items():
                    cur.setdefault(k, v)


class Client:
    """What one input publishes through: its fields, tags and processors, then the pipeline's."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        fields: dict[str, Any] | None = None,
        fields_under_root: bool = False,
        tags: list[str] | None = None,
        procs: list[processors.Processor] | None = None,
        meta: dict[str, Any] | None = None,
        host: bool = True,
    ) -> None:
        self.pipeline = pipeline
        merged: dict[str, Any] = {}
        if pipeline.fields:
            deep_update(merged, pipeline.fields)
        if fields:
            deep_update(merged, fields if fields_under_root else {"fields": fields})
        self.fields = merged or None
        self.tags = [*pipeline.tags, *(tags or [])]
        self.procs = procs or []
        self.meta = meta or None
        self.host = host

    def process(self, event: Event) -> Event:
        """The event as it goes to the queue (``fields`` ``None`` when it was dropped)."""
        fields = event.fields
        if fields is None:
            return event
        p = self.pipeline
        if self.meta:
            event.meta = {**self.meta, **(event.meta or {})}
        if self.tags:
            cur = fields.get("tags")
            fields["tags"] = ([*cur] if isinstance(cur, list) else []) + [t for t in self.tags if not isinstance(cur, list) or t not in cur]
        if self.fields:
            deep_update(fields, self.fields)
        out: Event | None = event
        if self.procs:
            out = processors.run_all(self.procs, event, p.log)
        if out is not None and out.fields is not None:
            if self.host:
                p.builtins.add(out.fields)
            else:
                host, p.builtins.host = p.builtins.host, None
                p.builtins.add(out.fields)
                p.builtins.host = host
            if p.procs:
                out = processors.run_all(p.procs, out, p.log)
        if out is None or out.fields is None:
            p.stats.filtered += 1
            return Event(event.ts_ns, None, None, event.private)
        p.stats.published += 1
        return out

    async def publish(self, event: Event) -> None:
        processed = self.process(event)
        queue = self.pipeline.queue
        if not queue.put_nowait(processed):
            await queue.put(processed)


class Pipeline:
    def __init__(
        self,
        queue: MemQueue,
        acker: Acker,
        builtins: Builtins,
        log: Log,
        stats: Stats,
        *,
        procs: list[processors.Processor] | None = None,
        fields: dict[str, Any] | None = None,
        fields_under_root: bool = False,
        tags: list[str] | None = None,
    ) -> None:
        self.queue = queue
        self.acker = acker
        self.builtins = builtins
        self.log = log
        self.stats = stats
        self.procs = procs or []
        self.fields = (fields if fields_under_root else {"fields": fields}) if fields else None
        self.tags = tags or []
