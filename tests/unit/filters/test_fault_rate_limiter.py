"""The response rate limiter without a stream: Envoy's token bucket and 50 ms release schedule."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import pytest

from sluice.filters.fault.rate_limiter import StreamRateLimiter, TokenBucket


class Clock:
    """Simulated monotonic time with timers; ``advance`` fires what falls due, in order."""

    def __init__(self) -> None:
        self.t = 1000.0
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()

    def now(self) -> int:
        """Monotonic nanoseconds (what the token bucket reads)."""
        return round(self.t * 1e9)

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(self.t + delay, fn)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    def pending(self) -> list[Timer]:
        return [t for _, _, t in self._heap if not t.cancelled]

    def advance(self, dt: float) -> None:
        end = self.t + dt
        while self._heap and self._heap[0][0] <= end + 1e-9:
            when, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self.t = max(self.t, when)
            timer.cancelled = True
            timer.fn()
        self.t = end


class Timer:
    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_token_bucket_refills_continuously_and_floors_partial_takes() -> None:
    clock = Clock()
    bucket = TokenBucket(1000, 1000.0, clock.now)
    assert bucket.consume(400, False) == 400
    assert bucket.consume(700, False) == 0  # not enough, nothing taken
    assert bucket.consume(700, True) == 600
    clock.advance(0.0105)
    assert bucket.consume(100, True) == 10  # 10.5 tokens: whole ones only
    clock.advance(5)
    assert bucket.consume(5000, True) == 1000  # capped at max_tokens


def run(limiter_kbps: int, body: list[tuple[bytes, bool]], clock: Clock, buffer_limit: int = 1 << 20) -> list[tuple[float, int, bool]]:
    writes: list[tuple[float, int, bool]] = []
    start = clock.t
    rl = StreamRateLimiter(
        limiter_kbps, buffer_limit, lambda d, e: writes.append((round(clock.t - start, 4), len(d), e)), clock.call_later, clock.now
    )
    for data, end in body:
        rl.write_data(data, end)
    clock.advance(10)
    return writes


def test_50_kbps_releases_2560_bytes_per_50_ms() -> None:
    clock = Clock()
    writes = run(50, [(b"x" * 102400, True)], clock)
    # One fill interval's worth at once, then 51200 B/s in 50 ms steps: 40 releases, the last
    # one carrying end_stream, ~1.95 s in all (Envoy 1.40 measured: 1.95-1.99 s).
    assert writes[0] == (0.0, 2560, False)
    assert [t for t, _, _ in writes] == [round(0.05 * i, 4) for i in range(40)]
    assert all(abs(n - 2560) <= 1 for _, n, _ in writes)  # float time: a byte either way
    assert sum(n for _, n, _ in writes) == 102400
    assert [e for _, _, e in writes] == [False] * 39 + [True]


def test_small_body_leaves_at_once_and_late_timers_catch_up() -> None:
    clock = Clock()
    assert run(50, [(b"x" * 1024, True)], clock) == [(0.0, 1024, True)]
    # Tokens accrue from the limiter's creation: data arriving 20 ms later finds 2560 + 1024.
    clock = Clock()
    writes: list[int] = []
    rl = StreamRateLimiter(50, 1 << 20, lambda d, e: writes.append(len(d)), clock.call_later, clock.now)
    clock.advance(0.02)
    rl.write_data(b"x" * 10000, True)
    clock.advance(0)
    assert len(writes) == 1 and abs(writes[0] - (2560 + 1024)) <= 1


def test_end_stream_alone_and_chunks_in_flight() -> None:
    clock = Clock()
    writes = run(200, [(b"a" * 5000, False), (b"b" * 5000, False), (b"", True)], clock)
    assert writes == [(0.0, 10000, True)]  # 10240 tokens cover everything
    clock = Clock()
    writes = run(1, [(b"a" * 100, False)], clock)
    assert writes == [(0.0, 51, False), (0.05, 49, False)]  # 1024 B/s: 51 then 51.2 per 50 ms


def test_pause_above_buffer_limit_resume_at_half() -> None:
    clock = Clock()
    events: list[str] = []
    rl = StreamRateLimiter(
        1, 1000, lambda d, e: events.append(f"write {len(d)}"), clock.call_later, clock.now,
        pause=lambda: events.append("pause"), resume=lambda: events.append("resume"),
    )  # fmt: skip
    rl.write_data(b"x" * 800, False)
    rl.write_data(b"x" * 300, False)
    assert events == ["pause"]
    clock.advance(12)
    assert "resume" in events and rl.buffered == 0
    i = events.index("resume")
    # The drain that leaves ≤ 500 bytes resumes the upstream, before that data is written.
    written_before = sum(int(e.split()[1]) for e in events[1:i])
    assert written_before < 600 <= written_before + int(events[i + 1].split()[1])


def test_destroy_cancels_the_timer() -> None:
    clock = Clock()
    writes: list[int] = []
    rl = StreamRateLimiter(1, 1 << 20, lambda d, e: writes.append(len(d)), clock.call_later, clock.now)
    rl.write_data(b"x" * 1000, True)
    clock.advance(0.06)
    assert len(writes) == 2
    rl.destroy()
    assert clock.pending() == []
    clock.advance(5)
    assert len(writes) == 2 and rl.destroyed
    rl.write_data(b"more", True)
    assert clock.pending() == []


@pytest.mark.parametrize("kbps", [1, 50, 200, 1000])
def test_total_time_is_size_over_rate_minus_one_fill(kbps: int) -> None:
    clock = Clock()
    size = 300_000
    writes = run(kbps, [(b"x" * size, True)], clock) if kbps >= 50 else run(kbps, [(b"x" * 5000, True)], clock)
    size = size if kbps >= 50 else 5000
    rate = kbps * 1024
    first = rate * 50 // 1000
    expected = (size - first) / rate
    assert writes[-1][2] and abs(writes[-1][0] - expected) <= 0.05 + 1e-6
