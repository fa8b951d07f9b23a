"""Summaries as the Prometheus Go client keeps them (the exporter's default for timers).

Quantiles over a sliding window: ``max_age`` (10 minutes) split into ``age_buckets`` (5) streams,
each started one bucket apart; every observation goes into all of them and the oldest ("head")
stream answers, so a quantile covers the last 8 to 10 minutes. When the head stream is empty the
quantile is NaN. Observations wait in a buffer of ``buf_cap`` (500) that is flushed into the
streams when full, when its bucket expires, or when the summary is read. ``_sum`` and ``_count``
count every observation since the start, as the Go client does.

Each stream is a targeted-quantile sketch (Cormode, Korn, Muthukrishnan, Srivastava: "Effective
computation of biased quantiles over data streams", 2005) for the objectives
{0.5: 0.05, 0.9: 0.01, 0.99: 0.001}, behind a buffer of 500 that answers exactly until it first
fills (as the Go client's ``perks`` library): ranks are kept within those errors in a few dozen
samples, so memory stays bounded however many observations arrive.
"""

from __future__ import annotations

import math

DEFAULT_OBJECTIVES: dict[float, float] = {0.5: 0.05, 0.9: 0.01, 0.99: 0.001}
MAX_AGE = 600.0
AGE_BUCKETS = 5
BUF_CAP = 500
STREAM_BUFFER = 500


class TargetedStream:
    """One targeted-quantile stream, as ``beorn7/perks`` keeps it for the Go client: inserts wait
    in a buffer of ``STREAM_BUFFER`` (500); until the first time it fills, a query is answered
    exactly from it (nearest rank). After that the buffer is merged into the sketch: sorted samples
    ``value``, ``width`` (how many observations it stands for) and ``delta`` (its rank
    uncertainty), compressed after every merge."""

    __slots__ = ("targets", "buffer", "values", "widths", "deltas", "pure", "n")

    def __init__(self, objectives: dict[float, float]) -> None:
        self.targets = sorted(objectives.items())
        self.buffer: list[tuple[float, int]] = []
        self.values: list[float] = []
        self.widths: list[int] = []
        self.deltas: list[float] = []
        self.pure: list[bool] = []
        """Whether every observation a sample stands for has its value (a weighted insert)."""
        self.n = 0
        """Observations merged into the sketch (the buffer's are not counted here)."""

    def reset(self) -> None:
        self.buffer.clear()
        self.values.clear()
        self.widths.clear()
        self.deltas.clear()
        self.pure.clear()
        self.n = 0

    def count(self) -> int:
        return self.n + sum(w for _, w in self.buffer)

    def insert(self, value: float, weight: int = 1) -> None:
        """One observation (``weight`` equal ones: a sampled timer)."""
        self.buffer.append((value, weight))
        if len(self.buffer) >= STREAM_BUFFER:
            self._flush()

    def _flush(self) -> None:
        batch = sorted(self.buffer)
        self.buffer.clear()
        self._merge(batch)

    def _allowed(self, rank: float) -> float:
        """The invariant f(r, n): how much rank error the samples around ``rank`` may have."""
        n = self.n
        best = math.inf
        for q, eps in self.targets:
            if q * n <= rank:
                f = 2 * eps * rank / q
            else:
                f = 2 * eps * (n - rank) / (1 - q)
            best = min(best, f)
        return best

    def _merge(self, batch: list[tuple[float, int]]) -> None:
        values, widths, deltas, pure = self.values, self.widths, self.deltas, self.pure
        rank = 0
        i = 0
        for value, weight in batch:
            while i < len(values) and values[i] <= value:
                rank += widths[i]
                i += 1
            # The largest value so far is known exactly; one below another may be off by f - 1.
            delta = 0.0 if i == len(values) else max(0.0, math.floor(self._allowed(rank)) - 1)
            values.insert(i, value)
            widths.insert(i, weight)
            deltas.insert(i, delta)
            pure.insert(i, True)
            self.n += weight
            rank += weight
            i += 1
        self._compress()

    def _compress(self) -> None:
        """Right to left, merging a sample into its right neighbour while their widths and the
        neighbour's delta fit in f at the neighbour's rank."""
        values, widths, deltas, pure = self.values, self.widths, self.deltas, self.pure
        if len(values) < 2:
            return
        x = len(values) - 1
        rank = self.n - 1 - widths[x]
        for i in range(len(values) - 2, -1, -1):
            w = widths[i]
            if w + widths[x] + deltas[x] <= self._allowed(rank):
                widths[x] += w
                pure[x] = pure[x] and pure[i] and values[i] == values[x]
                del values[i], widths[i], deltas[i], pure[i]
                x -= 1
            else:
                x = i
            rank -= w

    def query(self, q: float) -> float:
        """The value at quantile ``q`` (NaN when the stream is empty)."""
        if not self.values:
            if not self.buffer:
                return math.nan
            # Exact, from the buffer: the observation at rank ceil(q * count) (at least the first).
            ordered = sorted(self.buffer)
            want = max(1, math.ceil(sum(w for _, w in ordered) * q))
            seen = 0
            for value, weight in ordered:
                seen += weight
                if seen >= want:
                    return value
            return ordered[-1][0]
        if self.buffer:
            self._flush()
        target = math.ceil(q * self.n)
        target += math.ceil(self._allowed(target) / 2)
        # The classic walk returns the sample before the first one whose highest possible rank
        # passes the target. A pure sample of width w stands for w equal observations (a sampled
        # timer), so the target may fall inside it: then its value is the answer.
        rank = 0
        prev = self.values[0]
        for j, (value, width, delta, pure) in enumerate(zip(self.values, self.widths, self.deltas, self.pure, strict=True)):
            if j and rank + (1 if pure else width) + delta > target:
                return prev
            if rank + width + delta > target:
                return value
            rank += width
            prev = value
        return prev


class Summary:
    """One summary series: ``observe`` and ``snapshot`` take the time (seconds, monotonic)."""

    __slots__ = ("objectives", "streams", "head", "head_epoch", "hot_epoch", "start", "duration", "hot", "buf_cap", "count", "sum")

    def __init__(
        self,
        now: float,
        objectives: dict[float, float] | None = None,
        max_age: float = MAX_AGE,
        age_buckets: int = AGE_BUCKETS,
        buf_cap: int = BUF_CAP,
    ) -> None:
        self.objectives = sorted((objectives or DEFAULT_OBJECTIVES).items())
        self.streams = [TargetedStream(dict(self.objectives)) for _ in range(age_buckets)]
        self.head = 0
        self.start = now
        self.duration = max_age / age_buckets
        # Epochs count bucket lengths from ``start``: the hot buffer and the head stream expire
        # at ``start + epoch * duration``.
        self.head_epoch = 1
        self.hot_epoch = 1
        self.hot: list[tuple[float, int]] = []
        self.buf_cap = buf_cap
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float, now: float, weight: int = 1) -> None:
        if now > self.start + self.hot_epoch * self.duration:
            self._flush(now)
        self.hot.append((value, weight))
        if len(self.hot) >= self.buf_cap:
            self._flush(now)

    def snapshot(self, now: float) -> tuple[int, float, list[tuple[float, float]]]:
        """``(count, sum, [(quantile, value), …])`` as a scrape sees them."""
        self._flush(now)
        head = self.streams[self.head]
        return self.count, self.sum, [(q, head.query(q)) for q, _ in self.objectives]

    def _flush(self, now: float) -> None:
        batch, self.hot = self.hot, []
        while now > self.start + self.hot_epoch * self.duration:
            self.hot_epoch += 1
        for value, weight in batch:
            self.count += weight
            self.sum += value * weight
        for value, weight in batch:
            if math.isnan(value):
                continue  # counted, but a NaN has no rank
            for stream in self.streams:
                stream.insert(value, weight)
        self._rotate()

    def _rotate(self) -> None:
        behind = self.hot_epoch - self.head_epoch
        if behind <= 0:
            return
        k = len(self.streams)
        if behind >= k:
            # Idle for a whole window: every stream has expired.
            for s in self.streams:
                s.reset()
            self.head = (self.head + behind) % k
            self.head_epoch = self.hot_epoch
            return
        for _ in range(behind):
            self.streams[self.head].reset()
            self.head = (self.head + 1) % k
        self.head_epoch = self.hot_epoch
