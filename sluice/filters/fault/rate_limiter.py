"""Response pacing, after Envoy's ``StreamRateLimiter`` (``filters/http/common/stream_rate_limiter.cc``)
and ``TokenBucketImpl`` (``common/common/token_bucket_impl.cc``).

Theory of operation (Envoy 1.40, confirmed against the real binary):
- The bucket holds bytes: ``max_tokens = limit_kbps * 1024``, refilled continuously at
  ``max_tokens`` per second. It is created when the fault is decided (at request headers) with
  one fill interval's worth, ``max_tokens * 50 // 1000`` tokens.
- Body data handed to :meth:`write_data` is buffered; the first write arms the token timer at
  0 ms (Envoy cannot forward part of a chunk and keep ``end_stream`` for the rest, so it
  always releases from the timer).
- Each timer run takes as many whole tokens as there are buffered bytes (partial allowed),
  releases that many bytes, re-arms itself every 50 ms (``DefaultFillInterval``) while bytes
  remain, and marks the last release ``end_stream`` once the upstream's end was seen.

So 50 KiB/s sends 2 560 bytes at once and ~2 560 more every 50 ms: 100 KiB take ~1.95-2.0 s,
and a body within the first fill leaves at once. Above ``buffer_limit`` buffered bytes the
``pause`` callback asks the upstream to stop reading; at or below half of it ``resume`` lets it go
(Envoy's WatermarkBuffer).

Nothing here does I/O: time comes from ``now`` (monotonic ns) and timers from ``call_later``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

FILL_INTERVAL_MS = 50
"""``StreamRateLimiter::DefaultFillInterval``."""


class TokenBucket:
    """Envoy's ``TokenBucketImpl``: fractional tokens, refilled lazily on ``consume``. Time is
    integer nanoseconds (``now``), as Envoy's chrono clock: the elapsed time is exact before it
    becomes a double, so 50 ms at 51 200 tokens/s is 2 560 tokens, not 2 559.99."""

    __slots__ = ("max_tokens", "fill_rate", "tokens", "last_fill", "_now")

    def __init__(self, max_tokens: int, fill_rate: float, now: Callable[[], int]) -> None:
        self.max_tokens = max_tokens
        self.fill_rate = fill_rate
        self.tokens = float(max_tokens)
        self._now = now
        self.last_fill = now()

    def consume(self, wanted: int, allow_partial: bool) -> int:
        if self.tokens < self.max_tokens:
            now = self._now()
            self.tokens = min((now - self.last_fill) / 1e9 * self.fill_rate + self.tokens, float(self.max_tokens))
            self.last_fill = now
        if allow_partial:
            wanted = min(wanted, math.floor(self.tokens))
        if self.tokens < wanted:
            return 0
        self.tokens -= wanted
        return wanted

    def reset(self, tokens: int) -> None:
        """``maybeReset``: start again from ``tokens``, now."""
        self.tokens = float(tokens)
        self.last_fill = self._now()

    def __repr__(self) -> str:
        return f"<TokenBucket {self.tokens:.0f}/{self.max_tokens}>"


class StreamRateLimiter:
    """Paces one stream's body to ``limit_kbps`` KiB/s through ``write`` (data, end_stream)."""

    __slots__ = (
        "bucket",
        "_write",
        "_call_later",
        "_pause",
        "_resume",
        "_buffer",
        "_saw_end",
        "_timer",
        "_high",
        "_above",
        "_destroyed",
    )

    def __init__(
        self,
        limit_kbps: int,
        buffer_limit: int,
        write: Callable[[bytes, bool], None],
        call_later: Callable[[float, Callable[[], None]], Any],
        now: Callable[[], int],
        pause: Callable[[], None] | None = None,
        resume: Callable[[], None] | None = None,
    ) -> None:
        max_tokens = limit_kbps * 1024
        self.bucket = TokenBucket(max_tokens, float(max_tokens), now)
        self.bucket.reset(max_tokens * FILL_INTERVAL_MS // 1000)
        self._write = write
        self._call_later = call_later
        self._pause = pause
        self._resume = resume
        self._buffer = bytearray()
        self._saw_end = False
        self._timer: Any = None
        self._high = buffer_limit
        self._above = False
        self._destroyed = False

    def __repr__(self) -> str:
        return f"<StreamRateLimiter buffered={len(self._buffer)} end={self._saw_end} {self.bucket!r}>"

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def write_data(self, data: bytes, end_stream: bool) -> None:
        """Take ``data`` (the filter returns STOP_ITERATION_NO_BUFFER); it leaves from the timer."""
        if self._destroyed:
            return
        self._buffer += data
        self._saw_end = end_stream
        if not self._above and self._high > 0 and len(self._buffer) > self._high:
            self._above = True
            if self._pause is not None:
                self._pause()
        if self._timer is None:
            self._timer = self._call_later(0.0, self._on_token_timer)

    def _on_token_timer(self) -> None:
        self._timer = None
        if self._destroyed:
            return
        buf = self._buffer
        n = min(self.bucket.consume(len(buf), True), len(buf))
        out = bytes(buf[:n])
        del buf[:n]
        if buf:
            self._timer = self._call_later(FILL_INTERVAL_MS / 1000, self._on_token_timer)
        if self._above and len(buf) <= self._high // 2:
            self._above = False
            if self._resume is not None:
                self._resume()
        end = self._saw_end and not buf
        if out or end:
            self._write(out, end)

    def destroy(self) -> None:
        """The stream is gone: no more timers, nothing more written."""
        self._destroyed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buffer = bytearray()

    @property
    def destroyed(self) -> bool:
        return self._destroyed
