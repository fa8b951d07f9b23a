"""The one clock: SimTime's ordering rules, RealTime on a running loop, and the task helpers
(``tasks.sleep`` / ``tasks.timeout``) that put asyncio waits on a clock."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from sluice import tasks
from sluice.clock import REAL, RealTime, SimTime, TimeSource


def in_loop(fn: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test on a fresh event loop (the unit suite has no asyncio plugin)."""

    @functools.wraps(fn)
    def run() -> None:
        asyncio.run(fn())

    return run


def test_simtime_runs_timers_in_deadline_order_then_arming_order() -> None:
    clock = SimTime()
    ran: list[str] = []
    clock.call_later(0.3, lambda: ran.append("c"))
    clock.call_later(0.1, lambda: ran.append("a"))
    clock.call_later(0.2, lambda: ran.append("b1"))
    clock.call_later(0.2, lambda: ran.append("b2"))  # same deadline: the one armed first runs first
    clock.advance(0.25)
    assert ran == ["a", "b1", "b2"]
    clock.advance(0.05)  # a deadline exactly at the target is due
    assert ran == ["a", "b1", "b2", "c"]


def test_simtime_now_is_the_timers_deadline_while_it_runs() -> None:
    clock = SimTime(start=10.0)
    seen: list[float] = []
    clock.call_later(0.5, lambda: seen.append(clock.monotonic()))
    clock.advance(2.0)
    assert seen == [10.5]
    assert clock.monotonic() == 12.0


def test_simtime_wall_moves_with_monotonic() -> None:
    clock = SimTime(start=1000.0, epoch=1_700_000_000.0)
    assert clock.wall() == 1_700_000_000.0
    clock.advance(1.5)
    assert clock.wall() == 1_700_000_001.5


def test_simtime_cancelled_timer_never_runs_and_is_not_pending() -> None:
    clock = SimTime()
    ran: list[int] = []
    keep = clock.call_later(1.0, lambda: ran.append(1))
    drop = clock.call_later(0.5, lambda: ran.append(2))
    drop.cancel()
    assert clock.pending() == [keep]
    clock.advance(5)
    assert ran == [1]
    assert clock.pending() == []


def test_simtime_timer_armed_by_a_timer_runs_in_the_same_advance_if_due() -> None:
    clock = SimTime()
    ran: list[tuple[str, float]] = []

    def first() -> None:
        ran.append(("first", clock.monotonic()))
        clock.call_later(0.2, lambda: ran.append(("second", clock.monotonic())))
        clock.call_later(5.0, lambda: ran.append(("late", clock.monotonic())))

    clock.call_later(0.1, first)
    clock.advance(1.0)
    assert ran == [("first", 1000.1), ("second", pytest.approx(1000.3))]
    clock.advance(10)
    assert ran[-1] == ("late", pytest.approx(1005.1))


def test_simtime_a_timer_cancelled_by_an_earlier_one_does_not_run() -> None:
    clock = SimTime()
    ran: list[str] = []
    later = clock.call_later(0.2, lambda: ran.append("later"))
    clock.call_later(0.1, later.cancel)
    clock.advance(1)
    assert ran == []


def test_simtime_negative_delay_is_now() -> None:
    clock = SimTime()
    ran: list[float] = []
    clock.call_later(-3, lambda: ran.append(clock.monotonic()))
    clock.advance(0)
    assert ran == [1000.0]


def test_simtime_call_soon_runs_at_the_next_advance_before_due_timers() -> None:
    clock = SimTime()
    ran: list[str] = []
    clock.call_later(0.0, lambda: ran.append("timer"))
    clock.call_soon(lambda: ran.append("soon"))
    assert ran == []
    clock.advance(0)
    assert ran == ["soon", "timer"]


def test_simtime_call_soon_from_a_timer_runs_before_the_next_timer() -> None:
    clock = SimTime()
    ran: list[str] = []

    def t1() -> None:
        ran.append("t1")
        clock.call_soon(lambda: ran.append("soon-from-t1"))

    clock.call_later(0.1, t1)
    clock.call_later(0.2, lambda: ran.append("t2"))
    clock.advance(1)
    assert ran == ["t1", "soon-from-t1", "t2"]


def test_simtime_run_soon_drains_callbacks_added_while_draining() -> None:
    clock = SimTime()
    ran: list[int] = []
    clock.call_soon(lambda: clock.call_soon(lambda: ran.append(2)) or ran.append(1))
    clock.run_soon()
    assert ran == [1, 2]
    assert clock.monotonic() == 1000.0  # run_soon does not move time


def test_real_is_bound_to_the_c_functions() -> None:
    # No Python-level indirection: the hot path's REAL.monotonic() is time.monotonic itself.
    assert REAL.monotonic is time.monotonic
    assert REAL.wall is time.time
    assert isinstance(REAL, RealTime)


@in_loop
async def test_realtime_timers_run_on_the_running_loop() -> None:
    loop = asyncio.get_running_loop()
    clock: TimeSource = RealTime()
    done = loop.create_future()
    order: list[str] = []
    clock.call_soon(lambda: order.append("soon"))
    handle = clock.call_later(0.01, lambda: done.set_result(clock.monotonic()))
    cancelled = clock.call_later(0.0, lambda: order.append("cancelled"))
    cancelled.cancel()
    start = clock.monotonic()
    fired_at = await asyncio.wait_for(done, 5)
    assert fired_at - start >= 0.009
    assert order == ["soon"]
    assert isinstance(handle, asyncio.TimerHandle)


def test_realtime_outside_a_loop_raises() -> None:
    with pytest.raises(RuntimeError):
        REAL.call_later(1, lambda: None)


@in_loop
async def test_tasks_sleep_ends_when_the_simulated_clock_passes_it() -> None:
    clock = SimTime()
    woke: list[float] = []

    async def sleeper() -> None:
        await tasks.sleep(clock, 2.0)
        woke.append(clock.monotonic())

    task = asyncio.get_running_loop().create_task(sleeper())
    await asyncio.sleep(0)
    clock.advance(1.9)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(0.1)
    await task
    assert woke == [1002.0]
    assert clock.pending() == []


@in_loop
async def test_tasks_sleep_cancelled_disarms_its_timer() -> None:
    clock = SimTime()
    task = asyncio.get_running_loop().create_task(tasks.sleep(clock, 5))
    await asyncio.sleep(0)
    assert len(clock.pending()) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.pending() == []


@in_loop
async def test_tasks_sleep_on_real_time() -> None:
    start = time.monotonic()
    await tasks.sleep(REAL, 0.01)
    assert time.monotonic() - start >= 0.009


@in_loop
async def test_tasks_timeout_raises_timeout_error_when_the_clock_fires() -> None:
    clock = SimTime()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def waiter() -> str:
        try:
            async with tasks.timeout(clock, 1.0):
                await never
        except TimeoutError:
            return "timed out"
        return "finished"

    task = asyncio.get_running_loop().create_task(waiter())
    await asyncio.sleep(0)
    clock.advance(0.5)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.5)
    assert await asyncio.wait_for(task, 5) == "timed out"
    assert never.cancelled()


@in_loop
async def test_tasks_timeout_body_that_finishes_first_disarms_the_timer() -> None:
    clock = SimTime()
    async with tasks.timeout(clock, 1.0):
        await asyncio.sleep(0)
    assert clock.pending() == []
    clock.advance(5)  # nothing left to fire into a finished block


@in_loop
async def test_tasks_timeout_on_real_time() -> None:
    with pytest.raises(TimeoutError):
        async with tasks.timeout(REAL, 0.01):
            await asyncio.sleep(5)


def test_outlier_detector_runs_on_a_time_source() -> None:
    """The detector takes a TimeSource (no separate call_later): ejection and the interval
    tick that unejects run in simulated time."""
    from envoy.config.cluster.v3 import outlier_detection_pb2
    from google.protobuf import json_format

    from sluice.stats.store import Store
    from sluice.upstream.host import Host
    from sluice.upstream.outlier import OutlierConfig, OutlierDetector, OutlierStats

    clock = SimTime()
    od = json_format.ParseDict({"consecutive_5xx": 1, "max_ejection_percent": 100}, outlier_detection_pb2.OutlierDetection())
    det = OutlierDetector(OutlierConfig(od), OutlierStats.declare(Store(), "cluster.c.outlier_detection."), None, clock, None, lambda: None)
    host = Host("127.0.0.1", 80)
    det.set_hosts([host])
    det.start()
    assert [t.when for t in clock.pending()] == [1010.0]  # the 10 s interval, on the clock
    det.put_http_response_code(host, 503)
    assert not host.healthy
    clock.advance(29)
    assert not host.healthy
    clock.advance(2)  # the 30 s base ejection ends on the tick at 1030
    assert host.healthy
    det.stop()
    assert clock.pending() == []


def test_histogram_fanout_window_on_a_time_source() -> None:
    from sluice.stats.sinks.fanout import SAMPLE_WINDOW_S, HistogramFanout
    from sluice.stats.store import Store

    class Sink:
        def __init__(self) -> None:
            self.batches: list[list[tuple[str, int]]] = []

        def on_histograms(self, samples: list[tuple[str, int]]) -> None:
            self.batches.append(samples)

    clock = SimTime()
    store = Store()
    sink = Sink()
    HistogramFanout([sink], clock).attach(store)  # type: ignore[list-item]
    store.histogram("x").record(5)
    store.histogram("x").record(7)
    assert sink.batches == []  # outside a loop, but the clock takes the window's timer
    clock.advance(SAMPLE_WINDOW_S)
    assert sink.batches == [[("x", 5), ("x", 7)]]


def test_fault_token_bucket_nanoseconds() -> None:
    from sluice.filters.fault.config import monotonic_ns

    assert monotonic_ns(REAL) is time.monotonic_ns  # exact integers, no Python-level wrapper
    clock = SimTime(start=1000.0)
    now = monotonic_ns(clock)
    assert now() == 1_000_000_000_000
    clock.advance(0.05)
    assert now() == 1_000_050_000_000
