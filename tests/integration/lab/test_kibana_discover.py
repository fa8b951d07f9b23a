"""The Kibana stand-in end to end, as the course's part 4 uses it: the Elasticsearch stand-in
with a few Filebeat-shaped access-log documents (the proxy's JSON fields: ``method``, ``url``,
``status``, ``respflags``, ``upstream-host``, …), Kibana started the way the image runs
(``ELASTICSEARCH_HOSTS='["http://myes01:…"]'``, ``myes01`` resolved through the lab's hosts
file). Headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium)
creates the ``filebeat-*`` index pattern through the wizard, opens Discover and checks the hit
count, the histogram, a row's fields, a KQL query (``status:503``), Lucene, and auto-refresh
picking up a new document. A missing browser fails (never skips), as the Grafana test does.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


def browser_paths() -> tuple[str, str]:
    chromium = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    driver = CHROMEDRIVER if os.access(CHROMEDRIVER, os.X_OK) else shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(
            "headless Chromium is needed for the Discover test: install Debian's chromium and chromium-driver "
            "(scripts/test.sh does: apt-get install -y chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is needed for the Discover test: pip install -e '.[test]'")
    return chromium, driver


class Proc:
    """A stand-in started as the lab runner starts it, waited for through its log."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, ready: str, timeout: float = 20.0) -> None:
        self.log = log
        self.out = open(log, "w")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(argv, env=env, stdout=self.out, stderr=subprocess.STDOUT, cwd=str(log.parent))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(ready, log.read_text())
            if m:
                self.address = m.group(1)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"{argv[2]} did not start within {timeout}s:\n{log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.out.close()


def es_call(base: str, method: str, path: str, body: bytes | None = None, ctype: str = "application/json") -> Any:
    req = urllib.request.Request(base + path, data=body, method=method, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def access_log(at: dt.datetime, status: int, url: str, flags: str = "-", upstream: str = "172.31.76.11:80") -> dict[str, Any]:
    """A document as Filebeat ships the proxy's JSON access log (decode_json_fields into the root)."""
    return {
        "@timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "start": f"[{at.strftime('%Y-%m-%dT%H:%M:%S.000Z')}] ", "method": "GET", "url": url, "protocol": "HTTP/1.1",
        "status": status, "respflags": flags, "bytes-received": 0, "bytes-sent": 0 if status == 503 else 57, "duration": 3,
        "upstream-service-time": "2", "x-forwarded-for": "-", "user-agent": "curl/7.81.0", "request-id": f"req-{url}-{status}",
        "authority": "172.31.76.10", "upstream-host": "-" if status == 503 else upstream, "remote-ip": "172.31.76.1",
        "log": {"offset": 0, "file": {"path": "/logs/envoy/front-envoy-access.log"}}, "input": {"type": "log"},
        "agent": {"type": "filebeat", "version": "7.14.2", "hostname": "filebeat"}, "ecs": {"version": "1.10.0"},
    }


def bulk(base: str, docs: list[dict[str, Any]]) -> None:
    index = "filebeat-" + dt.datetime.now(dt.UTC).strftime("%Y.%m.%d")
    lines = "".join(json.dumps({"create": {"_index": index}}) + "\n" + json.dumps(d) + "\n" for d in docs)
    reply = es_call(base, "POST", "/_bulk?refresh=true", lines.encode(), "application/x-ndjson")
    assert reply["errors"] is False, reply


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Proc, Proc]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    es = Proc([sys.executable, "-m", "sluice.lab.backends.elasticsearch", "-E", "http.port=0", "-E", "network.host=127.0.0.1",
               "-E", f"path.data={tmp_path / 'es-data'}", "-E", "cluster.name=myes", "-E", "node.name=myes01"],
              env, tmp_path / "es.log", r"bound_addresses \{(127\.0\.0\.1:\d+)\}")
    try:
        now = dt.datetime.now(dt.UTC)
        docs = [access_log(now - dt.timedelta(seconds=40 * i + 5), 200, f"/service/{i}") for i in range(9)]
        docs += [access_log(now - dt.timedelta(seconds=50 * i + 20), 503, f"/fail/{i}", "UF" if i else "UO") for i in range(3)]
        docs.append(access_log(now - dt.timedelta(hours=2), 200, "/old"))  # outside "Last 15 minutes"
        bulk(f"http://{es.address}", docs)
        port = es.address.rsplit(":", 1)[1]
        hosts = tmp_path / "hosts"
        hosts.write_text("127.0.0.1\tmyes01 es\n127.0.0.1\tlocalhost\n")
        kenv = {**env, "ELASTICSEARCH_HOSTS": f'["http://myes01:{port}"]', "ELASTICSEARCH_URL": f"http://myes01:{port}",
                "SLUICE_HOSTS_FILE": str(hosts), "HOSTNAME": "kibana"}
        kibana = Proc([sys.executable, "-m", "sluice.lab.backends.kibana", "--host", "127.0.0.1", "--port", "0",
                       f"--path.data={tmp_path / 'kibana-data'}"], kenv, tmp_path / "kibana.log",
                      r'"message":"http server running at http://(127\.0\.0\.1:\d+)"')
        try:
            yield es, kibana
        finally:
            kibana.stop()
    finally:
        es.stop()


def discover_state(driver: Any) -> dict[str, Any]:
    return driver.execute_script("return window.kibanaDiscover ? JSON.parse(JSON.stringify(window.kibanaDiscover)) : null;") or {}


def wait_until(what: str, check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s; last: {json.dumps(value, default=str)[:2000]}")


def test_create_filebeat_pattern_and_discover_in_chromium(stack: tuple[Proc, Proc], tmp_path: Path) -> None:
    chromium, chromedriver = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    es, kibana = stack
    base = f"http://{kibana.address}"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)

    def subj(name: str) -> Any:
        return driver.find_element(By.CSS_SELECTOR, f'[data-test-subj="{name}"]')

    def mgmt(view: str) -> Any:
        return wait_until(f"management view {view}", lambda: driver.execute_script(
            "var m = window.kibanaManagement; return m && m.ready && m.view === arguments[0] ? m : null;", view))

    try:
        driver.set_page_load_timeout(20)
        driver.get(base + "/")
        assert driver.current_url == base + "/app/home"
        subj("createIndexPatternLink").click()

        # The wizard: the first keystroke gets a wildcard appended, as in Kibana.
        mgmt("create-step1")
        name = subj("createIndexPatternNameInput")
        name.send_keys("filebeat-")
        assert name.get_attribute("value") == "filebeat-*"
        state = wait_until("the pattern matches the filebeat index", lambda: driver.execute_script(
            "var m = window.kibanaManagement; return m.query === 'filebeat-*' ? m : null;"))
        assert state["matches"] == ["filebeat-" + dt.datetime.now(dt.UTC).strftime("%Y.%m.%d")]
        assert "matches 1 source" in subj("createIndexPatternStatusMessage").text
        subj("createIndexPatternGoToStep2Button").click()
        mgmt("create-step2")
        time_field = Select(subj("createIndexPatternTimeFieldSelect"))
        assert time_field.first_selected_option.text == "@timestamp"
        assert [o.text for o in time_field.options] == ["@timestamp", "I don't want to use the time filter"]
        subj("createIndexPatternButton").click()
        detail = mgmt("pattern")
        assert subj("indexPatternTitle").text.startswith("filebeat-*")
        assert {"@timestamp", "status", "upstream-host", "upstream-host.keyword", "respflags", "_id"} <= set(detail["fields"])

        # Saved in Elasticsearch's .kibana index, and made the default pattern.
        with urllib.request.urlopen(base + "/api/saved_objects/_find?type=index-pattern", timeout=5) as r:
            (saved,) = json.load(r)["saved_objects"]
        assert saved["attributes"]["title"] == "filebeat-*" and saved["attributes"]["timeFieldName"] == "@timestamp"
        doc = es_call(f"http://{es.address}", "GET", f"/.kibana/_doc/index-pattern:{saved['id']}")
        assert doc["_index"] == ".kibana_7.14.2_001" and doc["_source"]["index-pattern"]["title"] == "filebeat-*"
        with urllib.request.urlopen(base + "/api/kibana/settings", timeout=5) as r:
            assert json.load(r)["settings"]["defaultIndex"]["userValue"] == saved["id"]

        # Discover: last 15 minutes, newest first, histogram per 30 seconds.
        subj("discoverLink").click()
        s = wait_until("the first search", lambda: (lambda st: st if st.get("searches", 0) >= 1 and st.get("chart", {}).get("drawn") else None)(
            discover_state(driver)), 15)
        assert s["error"] is None
        assert s["total"] == 12 and subj("discoverQueryHits").text == "12"
        assert s["rows"] == 12 and s["columns"] == ["_source"]
        assert s["interval"]["expression"] == "30s" and s["interval"]["esParam"] == {"fixed_interval": "30s"}
        assert sum(b[1] for b in s["buckets"]) == 12 and s["chart"]["bars"] >= 5
        assert driver.find_element(By.ID, "chartLabel").text == "@timestamp per 30 seconds"
        rows = driver.find_elements(By.CSS_SELECTOR, '[data-test-subj="docTableRow"]')
        first = rows[0].text
        for field in ("method:", "url:", "status:", "respflags:", "upstream-host:", "_index:"):
            assert field in first, first
        assert "url: /service/0" in first  # newest first
        body = s["request"]["body"]
        assert body["sort"] == [{"@timestamp": {"order": "desc", "unmapped_type": "boolean"}}]
        assert body["query"]["bool"]["filter"][0] == {"match_all": {}}

        # A row expands to its fields as a table and as JSON.
        rows[0].find_element(By.CSS_SELECTOR, '[data-test-subj="docTableExpandToggleColumn"]').click()
        assert subj("tableDocViewRow-upstream-host-value").text == "172.31.76.11:80"
        assert subj("tableDocViewRow-status-value").text == "200"
        subj("docViewerTab-json").click()
        shown = json.loads(subj("kbnJsonCodeBlock").text)
        assert shown["_source"]["url"] == "/service/0" and shown["_index"].startswith("filebeat-")

        # A field from the sidebar becomes a column.
        subj("fieldToggle-status").click()
        wait_until("a status column", lambda: discover_state(driver)["columns"] == ["status"])
        assert subj("docTableHeader-status").text.startswith("status")

        # KQL: status:503 (typed, then Enter).
        query = subj("queryInput")
        query.send_keys("status:503", Keys.ENTER)
        s = wait_until("the KQL search", lambda: (lambda st: st if st["total"] == 3 else None)(discover_state(driver)))
        assert subj("discoverQueryHits").text == "3" and s["rows"] == 3
        cells = driver.find_elements(By.CSS_SELECTOR, '[data-test-subj="docTableRow"] td:last-child')
        assert [c.text for c in cells] == ["503", "503", "503"]
        assert s["request"]["body"]["query"]["bool"]["filter"][0] == {
            "bool": {"should": [{"match": {"status": 503}}], "minimum_should_match": 1}}
        assert "query:(language:kuery,query:'status:503')" in urllib.parse.unquote(driver.current_url)

        # Lucene: the same bar, a query_string in must.
        subj("switchQueryLanguageButton").click()
        query.clear()
        query.send_keys("status:503 AND respflags:UF", Keys.ENTER)
        s = wait_until("the Lucene search", lambda: (lambda st: st if st["total"] == 2 else None)(discover_state(driver)))
        assert s["request"]["body"]["query"]["bool"]["must"][0]["query_string"]["query"] == "status:503 AND respflags:UF"

        # A KQL syntax error is shown, not a stale count.
        subj("switchQueryLanguageButton").click()
        query.clear()
        query.send_keys("status:", Keys.ENTER)
        wait_until("the KQL error", lambda: discover_state(driver)["error"])
        assert "KQLSyntaxError" in subj("discoverErrorCallout").text

        # Auto-refresh (every 5 s) picks up a document written after the page loaded.
        query.clear()
        query.send_keys("status:503", Keys.ENTER)
        wait_until("back to 3 hits", lambda: discover_state(driver)["total"] == 3 and not discover_state(driver)["error"])
        bulk(f"http://{es.address}", [access_log(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1), 503, "/fresh", "UH")])
        Select(subj("superDatePickerRefreshInterval")).select_by_value("5000")
        wait_until("auto-refresh to show the new document", lambda: discover_state(driver)["total"] == 4, 9)

        # The page only ever talked to Kibana.
        hosts = driver.execute_script("return performance.getEntriesByType('resource').map(function (e) { return e.name; });")
        assert hosts and all(h.startswith(base + "/") for h in hosts), hosts
        shot = tmp_path / "discover.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        driver.quit()
    log = kibana.log.read_text()
    assert "ELASTICSEARCH_URL is not read by the kibana 7.x image" in log
    assert '"message":"[.kibana] Migration completed after' in log
