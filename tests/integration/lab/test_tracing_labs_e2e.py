"""Course part 5 end to end: the tracing labs through ``sluice lab up``, unchanged.

- ``zipkin-tracing`` (5.15–5.20): ``curl`` the front proxy; within the proxies' 5 s flush the
  Zipkin stand-in (``openzipkin/zipkin:2`` on 9411) holds one trace per request: the front's
  CLIENT span, service-a's SERVER span sharing its id, and the two ``checkStock``
  CLIENT/SERVER pairs towards service-b and service-c — and the Zipkin UI's trace page, in
  headless Chromium, draws that live trace's timeline.
- ``jaeger-tracing`` (5.21–5.24): the same mesh with ``shared_span_context: false`` posting to
  Jaeger all-in-one's Zipkin-compatible collector (``COLLECTOR_ZIPKIN_HOST_PORT=9411``); the
  query API on 16686 returns the trace with every SERVER span under its caller's CLIENT span.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from labkit import copy_lab, get

pytestmark = pytest.mark.usefixtures("lab_prerequisites")


def fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not after {timeout}s (last: {last!r})")


def _up(make_lab: Any, tmp_path: Path, name: str) -> Any:
    lab = make_lab(copy_lab(name, tmp_path))
    r, _ = lab.up()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not running" not in r.stdout.lower(), r.stdout
    return lab


def _front(front: str) -> str:
    status, body = get(front, "/")
    assert status == 200 and body.startswith("Calling Service B: "), body
    return body


def test_zipkin_lab_shows_one_trace_of_six_spans_per_request(make_lab: Any, tmp_path: Path) -> None:
    lab = _up(make_lab, tmp_path, "zipkin-tracing")
    zipkin = "http://127.31.85.15:9411"
    _front("127.31.85.10")

    def traces() -> list[list[dict[str, Any]]] | None:
        found = fetch(f"{zipkin}/api/v2/traces?serviceName=front-envoy&lookback=600000")
        return found if found and len(found[0]) >= 6 else None

    trace = wait_for("the request's trace in Zipkin", traces)[0]
    by = {(s["localEndpoint"]["serviceName"], s["kind"]): s for s in trace}
    front, a_server = by[("front-envoy", "CLIENT")], by[("service-a", "SERVER")]
    # Zipkin stores names lowercased; the shared span: same id, no parent.
    assert front["name"] == a_server["name"] == "checkavailability"
    assert front["id"] == a_server["id"] == front["traceId"] and "parentId" not in front
    assert a_server.get("shared") is True
    checks = [s for s in trace if s["name"] == "checkstock"]
    assert sorted((s["localEndpoint"]["serviceName"], s["kind"]) for s in checks) == [
        ("service-a", "CLIENT"), ("service-a", "CLIENT"), ("service-b", "SERVER"), ("service-c", "SERVER"),
    ]  # fmt: skip
    assert all(s["parentId"] == front["id"] for s in checks)
    assert {s["id"] for s in checks if s["kind"] == "SERVER"} == {s["id"] for s in checks if s["kind"] == "CLIENT"}
    assert front["tags"]["http.url"].startswith("http://") and front["tags"]["upstream_cluster"] == "service_a"
    # The course's pages: service and span names, the trace by id — and the trace page, in a
    # real browser, drawing this live trace: three rows (the shared span, two checkStock pairs).
    assert {"front-envoy", "service-a", "service-b", "service-c"} <= set(fetch(f"{zipkin}/api/v2/services"))
    assert len(fetch(f"{zipkin}/api/v2/trace/{front['traceId']}")) == len(trace)
    rows = _trace_rows_in_chromium(f"{zipkin}/zipkin/traces/{front['traceId']}", tmp_path)
    assert [(r["name"], r["depth"]) for r in rows] == [("checkavailability", 1), ("checkstock", 2), ("checkstock", 2)], rows
    assert all(r["width"] > 0 for r in rows) and rows[1]["left"] >= rows[0]["left"]
    assert lab.down().returncode == 0


def _trace_rows_in_chromium(url: str, tmp_path: Path) -> list[dict[str, Any]]:
    from test_tracing_ui import CHROMIUM_FLAGS, ROWS_JS, browser_paths

    chromium, chromedriver = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        driver.set_page_load_timeout(15)
        driver.get(url)

        def drawn() -> list[dict[str, Any]] | None:
            found = driver.execute_script(ROWS_JS)
            return list(found) if found else None

        rows: list[dict[str, Any]] = wait_for("the trace's timeline", drawn, timeout=10)
        return rows
    finally:
        driver.quit()


def test_jaeger_lab_shows_the_trace_with_server_spans_of_their_own(make_lab: Any, tmp_path: Path) -> None:
    lab = _up(make_lab, tmp_path, "jaeger-tracing")
    query = "http://127.31.88.15:16686"
    _front("127.31.88.10")

    def traces() -> list[dict[str, Any]] | None:
        found = fetch(f"{query}/api/traces?service=front-envoy&lookback=1h")["data"]
        return found if found and len(found[0]["spans"]) >= 6 else None

    trace = wait_for("the request's trace in Jaeger", traces)[0]
    services = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    spans = {s["spanID"]: s for s in trace["spans"]}
    assert len(spans) == 6  # (shared_span_context: false — six distinct span ids)
    front = next(s for s in spans.values() if services[s["processID"]] == "front-envoy")
    a_server = next(s for s in spans.values() if services[s["processID"]] == "service-a" and s["operationName"] == "checkAvailability")
    assert a_server["references"] == [{"refType": "CHILD_OF", "traceID": front["traceID"], "spanID": front["spanID"]}]
    assert fetch(f"{query}/api/services")["data"] and "front-envoy" in fetch(f"{query}/api/services")["data"]
    assert lab.down().returncode == 0
