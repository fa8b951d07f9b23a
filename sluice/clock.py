"""Time for the data plane: one object answers "what time is it" and schedules timers.

Everything that measures durations (stream timings, connection lengths, pool idle times, outlier
ejections) or arms a timer (timeouts, retries' back-off, fault delays, flush intervals) asks a
:class:`TimeSource` instead of calling ``time.monotonic()`` / ``loop.call_later`` itself, so a test
can hand the code a :class:`SimTime` and move time forward by hand — no sleeping, no flakes — as
Envoy's tests do with simulated time.

:data:`REAL` is the process's clock. ``monotonic`` and ``wall`` are plain attributes bound to the C
functions (``REAL.monotonic()`` costs what ``time.monotonic()`` costs: it is on the hot path).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    """What ``call_later`` returns: ``asyncio.TimerHandle`` or a :class:`SimTimer`."""

    def cancel(self) -> None: ...


class TimeSource(Protocol):
    """``monotonic()`` for durations, ``wall()`` for timestamps (seconds since the epoch),
    ``call_later``/``call_soon`` to schedule callbacks on the event loop."""

    monotonic: Callable[[], float]
    wall: Callable[[], float]

    def call_later(self, delay: float, fn: Callable[[], None]) -> TimerHandle: ...

    def call_soon(self, fn: Callable[[], None]) -> None: ...


class RealTime:
    """The process's clock and the running event loop's timers."""

    __slots__ = ("monotonic", "wall")

    def __init__(self) -> None:
        self.monotonic: Callable[[], float] = time.monotonic
        self.wall: Callable[[], float] = time.time

    def call_later(self, delay: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
        # get_running_loop() is a C call reading the thread state (unlike get_event_loop, no
        # getpid); looking it up each time keeps one RealTime valid across event loops (tests).
        return asyncio.get_running_loop().call_later(delay, fn)

    def call_soon(self, fn: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_soon(fn)


REAL = RealTime()
"""The clock everything uses unless a test injects another."""


class SimTimer:
    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        return f"<SimTimer at {self.when:.3f}{' cancelled' if self.cancelled else ''}>"


class SimTime:
    """Simulated time for tests: it only moves with :meth:`advance`, which runs the timers that
    fall due in order of their deadlines (a timer armed by a callback runs too if it is due).
    ``call_soon`` callbacks run at the next ``advance`` (or :meth:`run_soon`)."""

    __slots__ = ("now", "monotonic", "wall", "_heap", "_seq", "_soon", "epoch")

    def __init__(self, start: float = 1000.0, epoch: float = 1_700_000_000.0) -> None:
        self.now = start
        self.epoch = epoch
        """Wall-clock seconds at ``start``."""
        self.monotonic: Callable[[], float] = self._monotonic
        self.wall: Callable[[], float] = self._wall
        self._heap: list[tuple[float, int, SimTimer]] = []
        self._seq = itertools.count()
        self._soon: list[Callable[[], None]] = []

    def _monotonic(self) -> float:
        return self.now

    def _wall(self) -> float:
        return self.epoch + (self.now - 1000.0)

    def call_later(self, delay: float, fn: Callable[[], None]) -> SimTimer:
        timer = SimTimer(self.now + max(delay, 0.0), fn)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    def call_soon(self, fn: Callable[[], None]) -> None:
        self._soon.append(fn)

    def run_soon(self) -> None:
        while self._soon:
            batch, self._soon = self._soon, []
            for fn in batch:
                fn()

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running what falls due on the way."""
        target = self.now + seconds
        self.run_soon()
        while self._heap and self._heap[0][0] <= target:
            when, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self.now = max(self.now, when)
            timer.fn()
            self.run_soon()
        self.now = target

    def pending(self) -> list[SimTimer]:
        """The timers still armed, soonest first."""
        return [t for _, _, t in sorted(self._heap) if not t.cancelled]
