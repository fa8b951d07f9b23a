"""The seed ``fault-injection`` lab through ``sluice lab up`` (course part 2, §2.6–2.9): the blue
sidecar aborts 10 % of requests with 503, the red sidecar delays 10 % by 10 s, green is clean.

Golden (Envoy 1.40, ``fault_injection/lab_fault_injection.json``): about 10 % 503s for blue, about
10 % of red's requests take 10 s. Checked here with 5-sigma binomial bounds."""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from labkit import SEED, get, requires_lab

pytestmark = requires_lab

FRONT = "127.31.62.10"


def bounds(n: int, p: float) -> tuple[float, float]:
    mean, sd = n * p, (n * p * (1 - p)) ** 0.5
    return mean - 5 * sd, mean + 5 * sd


def timed_get(path: str) -> tuple[int, float, str]:
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(FRONT, 80, timeout=15)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return resp.status, time.monotonic() - t0, body
    finally:
        conn.close()


def test_fault_injection_lab_blue_aborts_red_delays(make_lab: Any) -> None:
    lab = make_lab(SEED / "fault-injection")
    r, _ = lab.up()
    assert r.returncode == 0, r.stderr + r.stdout

    # Blue: 10 % aborted by its sidecar with the fault filter's local reply, relayed by the front.
    n = 600
    codes = []
    for _ in range(n):
        status, body = get(FRONT, "/service/blue")
        codes.append(status)
        if status == 503:
            assert body == "fault filter abort"
        else:
            assert status == 200 and body.startswith("Hello from App behind Envoy (service blue)!")
    lo, hi = bounds(n, 0.10)
    assert lo <= codes.count(503) <= hi, f"{codes.count(503)} of {n} aborted"

    # Red: 10 % delayed 10 s. Concurrent requests, so the delayed ones overlap in one 10 s wait.
    m = 120
    with ThreadPoolExecutor(m) as pool:
        results = list(pool.map(lambda _: timed_get("/service/red"), range(m)))
    assert all(status == 200 for status, _, _ in results)
    slow = [elapsed for _, elapsed, _ in results if elapsed > 5]
    assert all(9.5 <= e < 12 for e in slow)
    lo, hi = bounds(m, 0.10)
    assert max(lo, 1) <= len(slow) <= hi, f"{len(slow)} of {m} delayed"

    # Green has no fault filter (the image's default sidecar).
    assert get(FRONT, "/service/green")[0] == 200
