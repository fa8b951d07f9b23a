"""The seed ``retries`` lab through ``sluice lab up``: the front proxy retries blue's 50 % fault
aborts (retry_on 5xx, 3 retries) and cuts red's 10 s fault delay with its 1 s route timeout.

Golden (Envoy 1.40, ``retries/lab_retries.json``): 5.9-8.2 % final 503s over 1000 sequential
requests (1/16 = 6.25 % expected), and ``504 upstream request timeout`` after 1 s for red."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from labkit import SEED, get, requires_lab

pytestmark = requires_lab

FRONT = "127.31.65.10"


def test_retries_lab_blue_retried_and_red_cut(make_lab: Any) -> None:
    lab = make_lab(SEED / "retries")
    r, _ = lab.up()
    assert r.returncode == 0, r.stderr + r.stdout
    # Three sequential clients: at most 3 retries in flight, so the default max_retries (3)
    # circuit breaker never overflows and each request fails only if all 4 attempts abort.
    n_per, clients = 160, 3

    def worker(_: int) -> list[int]:
        return [get(FRONT, "/service/blue")[0] for _ in range(n_per)]

    with ThreadPoolExecutor(clients) as pool:
        codes = [c for part in pool.map(worker, range(clients)) for c in part]
    n = len(codes)
    failed = codes.count(503)
    assert codes.count(200) + failed == n
    # 5-sigma bounds around 1/16.
    mean, sd = n / 16, (n * (1 / 16) * (15 / 16)) ** 0.5
    assert mean - 5 * sd <= failed <= mean + 5 * sd, f"{failed} of {n} failed"
    status, stats = get(FRONT, "/stats?filter=cluster.blue_abort.upstream_rq_retry", port=9901)
    assert status == 200
    values = dict(line.split(": ") for line in stats.strip().splitlines())
    assert int(values["cluster.blue_abort.upstream_rq_retry_limit_exceeded"]) == failed
    assert int(values["cluster.blue_abort.upstream_rq_retry_overflow"]) == 0

    # Red: the sidecar delays half of the requests by 10 s; the front cuts those at 1 s.
    for _ in range(16):
        t0 = time.monotonic()
        status, body = get(FRONT, "/service/red")
        elapsed = time.monotonic() - t0
        if status != 200:
            break
        assert elapsed < 0.5
    assert (status, body) == (504, "upstream request timeout")
    assert 0.95 <= elapsed < 1.6
