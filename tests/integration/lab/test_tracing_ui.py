"""The Zipkin UI (``/zipkin/``) and the Jaeger UI (query port) of the tracing stand-ins, in
headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium; a missing
browser fails, never skips). Both stand-ins run as the lab runner starts them, on free loopback
ports, and get the spans real Envoys POSTed in the course's tracing labs (timestamps moved to a
minute ago, so the pages' default lookbacks cover them): search, the result list with its error
mark, the trace timeline (Lens's merged client/server rows; Jaeger's CHILD_OF tree), a row's
tags, a missing trace. One browser session for all of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "envoy-part3-5" / "tracing"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1600,900",
]
T01, T10, JT01 = "0a9d13c9f4f6098d", "e8382b80f6dc113d", "aed5400b612c6a28"


def browser_paths() -> tuple[str, str]:
    chromium = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    driver = CHROMEDRIVER if os.access(CHROMEDRIVER, os.X_OK) else shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(
            "headless Chromium is needed for the tracing UI test: install Debian's chromium and chromium-driver "
            "(scripts/test.sh does: apt-get install -y chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is needed for the tracing UI test: pip install -e '.[test]'")
    return chromium, driver


def golden_spans(lab: str, scenario: str, shift: int) -> list[dict[str, Any]]:
    """Every span one scenario's Envoys POSTed, timestamps moved by ``shift`` µs."""
    spans = [s for post in json.loads((GOLDEN / lab / f"{scenario}_spans.json").read_text()) for s in post["spans"]]
    for s in spans:
        s["timestamp"] += shift
        for a in s.get("annotations", []):
            a["timestamp"] += shift
    return spans


def to_now(lab: str, scenarios: list[str]) -> int:
    """The shift that puts the latest span end of these scenarios a minute before now."""
    ends = [s["timestamp"] + s.get("duration", 0) for sc in scenarios for s in golden_spans(lab, sc, 0)]
    return int(time.time() * 1e6) - 60_000_000 - int(max(ends))


class Proc:
    """``python -m sluice.lab.backends.zipkin``, waited for through its start line."""

    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        environ.update(env or {}, PYTHONPATH=str(Path(__file__).resolve().parents[3]), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "sluice.lab.backends.zipkin", "--host", "127.0.0.1", "--data", str(data), *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environ, text=True)
        assert self.proc.stderr is not None
        self.banner = self.proc.stderr.readline()
        if not self.banner:
            self.stop()
            raise AssertionError("the stand-in exited before its start line")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


def post(port: int, spans: list[dict[str, Any]]) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/spans", data=json.dumps(spans).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[str, str, int]]:
    zipkin = Proc(tmp_path / "zipkin", "--port", "0")
    try:
        m = re.search(r"Serving HTTP at /127\.0\.0\.1:(\d+) ", zipkin.banner)
        assert m, zipkin.banner
        zport = int(m.group(1))
        shift = to_now("zipkin", ["T01_plain", "T10_fault_abort_b"])
        post(zport, golden_spans("zipkin", "T01_plain", shift) + golden_spans("zipkin", "T10_fault_abort_b", shift))
        jaeger = Proc(tmp_path / "jaeger", "--jaeger", "--query.http-server.host-port=:0", "--admin.http.host-port=:0",
                      env={"COLLECTOR_ZIPKIN_HOST_PORT": ":0"})
        try:
            line = json.loads(jaeger.banner)
            jshift = to_now("jaeger", ["T01_plain"])
            post(int(line["zipkin"].rsplit(":", 1)[1]), golden_spans("jaeger", "T01_plain", jshift))
            yield f"http://127.0.0.1:{zport}", f"http://{line['query']}", shift
        finally:
            jaeger.stop()
    finally:
        zipkin.stop()


def wait_until(what: str, check: Any, timeout: float = 8.0) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout}s; last: {json.dumps(value, default=str)[:2000]}")


ROWS_JS = """
return Array.from(document.querySelectorAll('.tl-row')).map(function (r) {
  var bar = r.querySelector('.tl-bar').getBoundingClientRect();
  var col = r.querySelector('.tl-bar-col').getBoundingClientRect();
  var name = r.querySelector('.tl-name-col');
  return {id: r.dataset.spanId, depth: +r.dataset.depth, service: r.dataset.service, services: r.dataset.services,
          name: r.dataset.name, text: name.innerText, indent: parseFloat(getComputedStyle(name).paddingLeft),
          left: bar.left - col.left, width: bar.width, col: col.width};
});
"""


def test_zipkin_and_jaeger_pages_in_chromium(servers: tuple[str, str, int], tmp_path: Path) -> None:
    chromium, chromedriver = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    zipkin, jaeger, shift = servers
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)

    def ui(name: str) -> dict[str, Any]:
        return dict(driver.execute_script(f"return window.{name} ? JSON.parse(JSON.stringify(window.{name})) : null;") or {})

    def ready(name: str, view: str) -> dict[str, Any]:
        return dict(wait_until(f"{name} {view}", lambda: (lambda s: s if s.get("ready") and s.get("view") == view else None)(ui(name))))

    def css(selector: str) -> list[Any]:
        return driver.find_elements(By.CSS_SELECTOR, selector)

    try:
        driver.set_page_load_timeout(15)
        # --- Zipkin: the search page, service pickers from the API ---------------------------------
        driver.get(zipkin + "/")
        assert driver.current_url == zipkin + "/zipkin/"
        ready("zipkinUi", "search")
        service = Select(driver.find_element(By.ID, "serviceName"))
        assert [o.text for o in service.options] == ["all", "front-envoy", "service-a", "service-b", "service-c"]
        assert Select(driver.find_element(By.ID, "lookback")).first_selected_option.get_attribute("value") == "15m"
        service.select_by_value("front-envoy")
        wait_until("span names", lambda: [o.text for o in Select(driver.find_element(By.ID, "spanName")).options] == ["all", "checkavailability"])
        driver.find_element(By.ID, "runQuery").click()
        s = wait_until("the search", lambda: (lambda st: st if st.get("ready") and st.get("searches") == 1 else None)(ui("zipkinUi")))
        assert s["error"] is None
        assert "serviceName=front-envoy" in s["request"] and "lookback=900000" in s["request"]
        results = css(".trace-result")
        assert [r.get_attribute("data-trace-id") for r in results] == [T01, T10]  # longest first
        assert driver.find_element(By.ID, "resultsCount").text == "2 results"
        t01_text, t10_text = results[0].text, results[1].text
        assert "front-envoy: checkavailability" in t01_text and "9.506ms" in t01_text and "6 spans" in t01_text
        assert results[0].find_elements(By.CSS_SELECTOR, ".error-mark") == []
        assert [b.text for b in results[0].find_elements(By.CSS_SELECTOR, ".badge")] == [
            "front-envoy 1", "service-a 3", "service-b 1", "service-c 1"]
        assert results[1].find_element(By.CSS_SELECTOR, ".error-mark").text == "error" and "5.636ms" in t10_text
        # the URL reproduces the search
        assert "serviceName=front-envoy" in driver.current_url and "lookback=15m" in driver.current_url
        driver.get(driver.current_url)
        ready("zipkinUi", "search")
        assert [r.get_attribute("data-trace-id") for r in css(".trace-result")] == [T01, T10]
        assert Select(driver.find_element(By.ID, "serviceName")).first_selected_option.text == "front-envoy"
        # a tag query (reloading the page set searches back to 1)
        tags = driver.find_element(By.ID, "annotationQuery")
        tags.send_keys("http.status_code=503")
        driver.find_element(By.ID, "runQuery").click()
        wait_until("the tag search", lambda: ui("zipkinUi").get("searches") == 2)
        # Zipkin matches a tag on the chosen service's own spans: front-envoy's are all 200
        assert css(".trace-result") == [] and driver.find_element(By.ID, "resultsCount").text == "0 results"
        Select(driver.find_element(By.ID, "serviceName")).select_by_visible_text("all")
        driver.find_element(By.ID, "runQuery").click()
        wait_until("the tag search", lambda: ui("zipkinUi").get("searches") == 3 and ui("zipkinUi").get("ready"))
        assert [r.get_attribute("data-trace-id") for r in css(".trace-result")] == [T10]
        assert "annotationQuery=http.status_code%3D503" in driver.current_url

        # --- Zipkin: the T01 trace, merged rows on a timeline ---------------------------------------
        css(".trace-result a")[0].click()
        t = ready("zipkinUi", "trace")
        assert driver.current_url == f"{zipkin}/zipkin/traces/{T10}"
        driver.get(f"{zipkin}/zipkin/traces/{T01}")
        t = ready("zipkinUi", "trace")
        assert t["trace"] == {"traceId": T01, "rows": 3, "depth": 2, "duration": 9506, "services": 4}
        assert driver.find_element(By.CSS_SELECTOR, ".trace-title").text == "service-a: checkavailability"
        assert driver.find_element(By.ID, "statDuration").text.endswith("9.506ms")
        rows = driver.execute_script(ROWS_JS)
        assert [(r["id"], r["depth"], r["service"], r["services"], r["name"]) for r in rows] == [
            (T01, 1, "service-a", "front-envoy,service-a", "checkavailability"),
            ("40f2276deaaf519f", 2, "service-b", "service-a,service-b", "checkstock"),
            ("55c71b2882a77800", 2, "service-c", "service-a,service-c", "checkstock"),
        ]
        assert rows[1]["indent"] == rows[2]["indent"] == rows[0]["indent"] + 16
        # bars: the CLIENT half's timestamp and duration, relative to the trace (9506 µs from front-envoy's start)
        col = rows[0]["col"]
        for r, start, dur in zip(rows, (0, 2378, 5887), (9506, 2657, 2430), strict=True):
            assert abs(r["left"] - col * start / 9506) < 1.5, (r, start)
            assert abs(r["width"] - col * dur / 9506) < 1.5, (r, dur)
        assert 0 == rows[0]["left"] < rows[1]["left"] < rows[2]["left"] and all(r["width"] > 0 for r in rows)
        # a row's detail: annotations relative to the trace start, tags
        css(".tl-row")[1].click()
        detail = wait_until("the detail", lambda: [d for d in css(".tl-detail") if d.is_displayed()])[0]
        annotations = [[c.text for c in tr.find_elements(By.TAG_NAME, "td")] for tr in detail.find_elements(By.CSS_SELECTOR, ".annotations tbody tr")]
        assert annotations == [
            ["Client Start", "2.378ms", "192.0.2.2 (service-a)"], ["Server Start", "3.030ms", "192.0.2.2 (service-b)"],
            ["Server Finish", "4.720ms", "192.0.2.2 (service-b)"], ["Client Finish", "5.105ms", "192.0.2.2 (service-a)"]]
        node = detail.find_element(By.CSS_SELECTOR, '.tags tr[data-key="node_id"]')
        assert node.text  # one row per distinct value: service-a's and service-b's
        assert [tr.find_element(By.CSS_SELECTOR, ".kv-value").text for tr in detail.find_elements(By.CSS_SELECTOR, '.tags tr[data-key="node_id"]')] == [
            "service-a", "service-b"]

        # --- Zipkin: T10's service-b row carries the 503 ---------------------------------------------
        driver.get(f"{zipkin}/zipkin/traces/{T10}")
        t = ready("zipkinUi", "trace")
        rows = driver.execute_script(ROWS_JS)
        assert [(r["depth"], r["service"], r["name"]) for r in rows] == [(1, "service-a", "checkavailability"),
                                                                         (2, "service-b", "checkstock"), (2, "service-c", "checkstock")]
        assert [("tl-error" in e.get_attribute("class")) for e in css(".tl-bar")] == [False, True, False]
        css(".tl-row")[1].click()
        detail = wait_until("the detail", lambda: [d for d in css(".tl-detail") if d.is_displayed()])[0]
        status = detail.find_element(By.CSS_SELECTOR, '.tags tr[data-key="http.status_code"]')
        assert [c.text for c in status.find_elements(By.TAG_NAME, "td")] == ["http.status_code", "503", "192.0.2.2 (service-a), 192.0.2.2 (service-b)"]
        assert detail.find_element(By.CSS_SELECTOR, '.tags tr[data-key="error"] .kv-value').text == "true"
        driver.save_screenshot(str(tmp_path / "zipkin-trace.png"))

        # --- Zipkin: missing trace, trace id box, dependencies --------------------------------------
        driver.get(f"{zipkin}/zipkin/traces/00000000000000aa")
        ready("zipkinUi", "trace")
        assert "Trace not found: 00000000000000aa" in driver.find_element(By.ID, "traceNotFound").text
        box = driver.find_element(By.ID, "traceIdLookup")
        box.send_keys(T01)
        driver.find_element(By.CSS_SELECTOR, "#traceIdForm button").click()
        wait_until("the lookup", lambda: driver.current_url == f"{zipkin}/zipkin/traces/{T01}")
        assert ready("zipkinUi", "trace")["trace"]["rows"] == 3
        driver.get(f"{zipkin}/zipkin/dependency")
        d = ready("zipkinUi", "dependency")
        cells = [[c.text for c in tr.find_elements(By.TAG_NAME, "td")] for tr in css(".dependency-table tbody tr")]
        assert cells == [["front-envoy", "service-a", "2", "0"], ["service-a", "service-b", "2", "1"], ["service-a", "service-c", "2", "0"]]
        assert len(d["links"]) == 3

        # --- Jaeger: search, result, timeline --------------------------------------------------------
        driver.get(jaeger + "/")
        ready("jaegerUi", "search")
        service = Select(driver.find_element(By.ID, "service"))
        assert [o.text for o in service.options] == ["front-envoy", "service-a", "service-b", "service-c"]
        service.select_by_value("front-envoy")
        wait_until("operations", lambda: [o.text for o in Select(driver.find_element(By.ID, "operation")).options] == ["all", "checkAvailability"])
        driver.find_element(By.ID, "findTraces").click()
        s = wait_until("the Jaeger search", lambda: (lambda st: st if st.get("ready") and st.get("searches") == 1 else None)(ui("jaegerUi")))
        assert s["error"] is None and "service=front-envoy" in s["request"] and "lookback=1h" in s["request"]
        (result,) = css(".trace-result")
        assert result.get_attribute("data-trace-id") == JT01
        assert result.find_element(By.CSS_SELECTOR, ".trace-root").text == "front-envoy: checkAvailability"
        assert "6 Spans" in result.text and "7.96ms" in result.text and result.find_elements(By.CSS_SELECTOR, ".error-mark") == []
        # the URL as Jaeger writes it: start/end in µs, lookback kept
        url_params = dict(re.findall(r"[?&](start|end)=(\d+)", driver.current_url))
        start_us, end_us = int(url_params["start"]), int(url_params["end"])
        assert end_us - start_us == 3_600_000_000 and "service=front-envoy" in driver.current_url
        result.find_element(By.CSS_SELECTOR, "a").click()
        t = ready("jaegerUi", "trace")
        assert driver.current_url == f"{jaeger}/trace/{JT01}"
        assert t["trace"] == {"traceId": JT01, "rows": 6, "depth": 4, "duration": 7958, "services": 4}
        rows = driver.execute_script(ROWS_JS)
        assert [(r["id"], r["depth"], r["service"], r["name"]) for r in rows] == [
            ("aed5400b612c6a28", 1, "front-envoy", "checkAvailability"),
            ("b0034cacc9bb1450", 2, "service-a", "checkAvailability"),
            ("3a8d46ac469a376b", 3, "service-a", "checkStock"),
            ("d7c5ccd716859690", 4, "service-b", "checkStock"),
            ("12b443444b6db194", 3, "service-a", "checkStock"),
            ("b0b461182e9ec4bb", 4, "service-c", "checkStock"),
        ]
        col = rows[0]["col"]
        for r, start, dur in zip(rows, (0, 571, 2103, 2532, 5045, 5491), (7958, 7023, 2137, 1509, 1947, 1233), strict=True):
            assert abs(r["left"] - col * start / 7958) < 1.5, (r, start)
            assert abs(r["width"] - col * dur / 7958) < 1.5, (r, dur)
        css(".tl-row")[3].click()
        detail = wait_until("the Jaeger detail", lambda: [d for d in css(".tl-detail") if d.is_displayed()])[0]
        status = detail.find_element(By.CSS_SELECTOR, '.tags tr[data-key="http.status_code"]')
        assert [c.text for c in status.find_elements(By.TAG_NAME, "td")] == ["http.status_code", "200", "string"]
        assert [c.text for c in detail.find_element(By.CSS_SELECTOR, '.tags tr[data-key="span.kind"]').find_elements(By.TAG_NAME, "td")] == [
            "span.kind", "server", "string"]
        assert [c.text for c in detail.find_element(By.CSS_SELECTOR, '.process tr[data-key="ip"]').find_elements(By.TAG_NAME, "td")] == [
            "ip", "192.0.2.2", "string"]
        assert "Logs (0)" in detail.text  # Jaeger turns only non-core annotations into logs; Envoy's ss is core
        driver.save_screenshot(str(tmp_path / "jaeger-trace.png"))
        driver.get(f"{jaeger}/trace/00000000000000aa")
        ready("jaegerUi", "trace")
        assert driver.find_element(By.ID, "traceNotFound").text == "Error: trace not found (00000000000000aa)"

        # The pages only ever talked to their own server.
        hosts = driver.execute_script("return performance.getEntriesByType('resource').map(function (e) { return e.name; });")
        assert hosts and all(h.startswith(jaeger + "/") for h in hosts), hosts
        console = driver.get_log("browser")  # type: ignore[no-untyped-call]
        logs = [e for e in console if e["level"] == "SEVERE" and "404" not in e["message"]]
        assert logs == [], logs
    finally:
        driver.quit()
    for shot in ("zipkin-trace.png", "jaeger-trace.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
        print(f"screenshot: {tmp_path / shot}")
