"""The Grafana stand-in end to end: started with the command line the image registry gives the
monitoring lab's ``grafana`` service, the lab's own (unchanged) grafana files mounted as compose
mounts them, ``prometheus`` resolving through the lab's hosts file to a fake Prometheus HTTP API
on port 9090. Headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium)
logs in as admin/admin and loads the provisioned "Services Dashboard": its three graph panels
must draw series from ``/api/v1/query_range``, with the variables, step and legends Grafana
would use, and redraw on the dashboard's 10 s refresh. A missing browser fails (never skips).
"""

from __future__ import annotations

import json
import os
import random
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
from grafana_fakes import FakePrometheus

from sluice.lab import compose, images, network

REPO = Path(__file__).resolve().parents[3]
LAB = REPO / "labs" / "monitoring"
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
            "headless Chromium is needed for the dashboard test: install Debian's chromium and chromium-driver "
            "(scripts/test.sh does: apt-get install -y chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is needed for the dashboard test: pip install -e '.[test]'")
    return chromium, driver


def fake_prometheus_on_9090() -> FakePrometheus:
    """The datasource URL is http://prometheus:9090 as the lab has it: bind 9090 on a loopback
    address of our own and name it ``prometheus`` in the hosts file."""
    rng = random.Random(os.getpid())
    last: OSError | None = None
    for _ in range(20):
        host = f"127.93.{rng.randrange(1, 250)}.{rng.randrange(2, 250)}"
        try:
            return FakePrometheus(host, 9090)
        except OSError as exc:
            last = exc
    raise AssertionError(f"no loopback address with port 9090 free: {last}")


class StandIn:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.out = open(log, "w")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(argv, env=env, stdout=self.out, stderr=subprocess.STDOUT, cwd=str(log.parent))
        self.base = self._wait_listening(15.0)

    def _wait_listening(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            m = re.search(r'msg="HTTP Server Listen" logger=http.server address=(\S+)', text)
            if m:
                return "http://" + m.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"grafana stand-in did not listen within {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.out.close()


@pytest.fixture
def grafana(tmp_path: Path) -> Iterator[tuple[StandIn, FakePrometheus]]:
    prom = fake_prometheus_on_9090()
    project = compose.load(LAB, environ={})
    svc = project.services["grafana"]
    mounts = {m.target: str((project.directory / m.source).resolve()) for m in svc.volumes if m.kind == "bind"}
    ad = network.allocate(project)
    root = tmp_path / "root"
    ctx = images.ImageContext(project, svc, ad.addresses["grafana"], ad.hostnames["grafana"], root, mounts, tmp_path, sys.executable)
    decision = images.decide(ctx)
    assert decision.not_running is None, decision.not_running
    (proc,) = decision.processes
    assert [(p.address, p.port) for p in proc.ports] == [("127.31.70.68", 3000)]
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{prom.address.split(':')[0]}\tprometheus\n127.0.0.1\tlocalhost\n")
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "SLUICE_FS_ROOT": str(root),
        "SLUICE_FS_MOUNTS": json.dumps(mounts),
        "SLUICE_HOSTS_FILE": str(hosts),
    }
    # The lab's address and port 3000 may be taken by a running lab: listen elsewhere.
    stand_in = StandIn([*proc.argv, "cfg:server.http_addr=127.0.0.1", "cfg:server.http_port=0"], env, tmp_path / "grafana.log")
    try:
        yield stand_in, prom
    finally:
        stand_in.stop()
        prom.close()


def dashboard_uid(base: str) -> str:
    req = urllib.request.Request(base + "/api/search?query=Services", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    with urllib.request.urlopen(req, timeout=5) as r:
        (hit,) = json.load(r)
    assert hit["title"] == "Services Dashboard" and hit["url"] == f"/d/{hit['uid']}/services-dashboard"
    return str(hit["uid"])


def panels_state(driver: Any) -> dict[str, Any]:
    return driver.execute_script(
        """
        var d = window.grafanaDashboard;
        if (!d) return null;
        var out = {ready: d.ready, refreshes: d.refreshes, variables: d.variables, errors: d.errors, panels: {}};
        Object.keys(d.panels).forEach(function (t) {
          var p = d.panels[t], u = p.uplot;
          out.panels[t] = {series: p.series, points: p.points, queries: p.queries, error: p.error,
            uplotSeries: u ? u.series.length - 1 : 0,
            drawnPaths: u ? u.series.slice(1).filter(function (s) { return s._paths && s._paths.stroke; }).length : 0,
            width: u ? u.width : 0};
        });
        // The legend lists series only (legend.live is off, so uPlot draws no time row).
        var legends = {};
        document.querySelectorAll('.panel-container').forEach(function (box) {
          legends[box.getAttribute('data-panel-title')] = Array.prototype.map.call(
            box.querySelectorAll('.u-legend .u-series .u-label'), function (e) { return e.textContent; });
        });
        out.legends = legends;
        return out;
        """
    )


def wait_for(driver: Any, check: Any, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = panels_state(driver)
        if state and check(state):
            return state
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s; page state: {json.dumps(state, indent=1)[:3000]}")


def test_services_dashboard_draws_live_panels_in_chromium(grafana: tuple[StandIn, FakePrometheus], tmp_path: Path) -> None:
    chromium, chromedriver = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    stand_in, prom = grafana
    uid = dashboard_uid(stand_in.base)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        driver.set_page_load_timeout(20)
        driver.get(f"{stand_in.base}/d/{uid}")
        # Not logged in: Grafana's login form, then back to the dashboard.
        deadline = time.monotonic() + 10
        while "/login" not in driver.current_url and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "/login" in driver.current_url
        driver.find_element(By.ID, "user").send_keys("admin")
        driver.find_element(By.ID, "password").send_keys("admin")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        def drawn(s: dict[str, Any]) -> bool:
            return bool(s["ready"]) and all(p["drawnPaths"] > 0 for p in s["panels"].values())

        state = wait_for(driver, drawn, 20, "the three panels did not draw")
        assert f"/d/{uid}" in driver.current_url and "var-source=service_a" in driver.current_url
        assert driver.title == "Services Dashboard - Grafana"
        assert state["errors"] == []
        assert state["variables"] == {"source": "service_a", "destination": "service_b"}
        assert sorted(state["panels"]) == ["2XX", "5XX", "Latency"]
        assert state["panels"]["2XX"]["series"] == ["2xx"] and state["legends"]["2XX"] == ["2xx"]
        assert state["panels"]["5XX"]["series"] == ["5xx"] and state["legends"]["5XX"] == ["5xx"]
        assert state["panels"]["Latency"]["series"] == ["0.5", "0.9", "0.99"]
        assert state["legends"]["Latency"] == ["0.5", "0.9", "0.99"]
        for title, panel in state["panels"].items():
            assert panel["error"] is None, title
            assert panel["uplotSeries"] == len(panel["series"]) == panel["drawnPaths"], title
            assert panel["points"] > 100, title  # an hour at a 30 s step: ~120 points a series
            (q,) = panel["queries"]
            assert q["step"] == 30 and q["start"] % 30 == 0 and q["end"] % 30 == 0, q
            assert 3570 <= q["end"] - q["start"] <= 3600, q

        # What Prometheus was asked, through /api/datasources/proxy/1/…
        ranges = {p["query"][0] for p in prom.calls("/api/v1/query_range")}
        assert ranges == {
            "service_a_cluster_service_b_upstream_rq_2xx - service_a_cluster_service_b_upstream_rq_2xx offset 30s",
            "service_a_cluster_service_b_upstream_rq_5xx - service_a_cluster_service_b_upstream_rq_5xx offset 30s",
            "service_a_cluster_service_b_upstream_rq_time",
        }
        assert {p["step"][0] for p in prom.calls("/api/v1/query_range")} == {"30"}
        assert len(prom.calls("/api/v1/label/__name__/values")) == 2  # one per variable, on load

        # Choosing another destination re-queries every panel with it.
        options_text = driver.execute_script(
            "return Array.prototype.map.call(document.querySelectorAll('#var-destination option'), function (o) { return o.value; });"
        )
        assert options_text == ["service_b", "service_c"]
        source_options = driver.execute_script(
            "return Array.prototype.map.call(document.querySelectorAll('#var-source option'), function (o) { return o.value; });"
        )
        assert source_options == ["service_a", "service_b"]

        # Hovering a graph shows Grafana's tooltip: the time and each series' value.
        from selenium.webdriver.common.action_chains import ActionChains

        over = driver.find_element(By.CSS_SELECTOR, '[data-panel-title="Latency"] .u-over')
        ActionChains(driver).move_to_element(over).perform()
        tip = driver.find_element(By.CSS_SELECTOR, '[data-panel-title="Latency"] .graph-tooltip')
        deadline = time.monotonic() + 5
        while not tip.is_displayed() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tip.is_displayed()
        lines = tip.text.splitlines()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", lines[0]), lines
        assert [line.split(":")[0] for line in lines[1:]] == ["0.5", "0.9", "0.99"], lines

        # The dashboard's own refresh (10s) redraws with new queries.
        before = len(prom.calls("/api/v1/query_range"))
        wait_for(driver, lambda s: s["refreshes"] >= 2, 15, "no refresh after 10s")
        assert len(prom.calls("/api/v1/query_range")) >= before + 3
        shot = tmp_path / "services-dashboard.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")

        driver.execute_script(
            "var s = document.getElementById('var-destination'); s.value = 'service_c'; s.dispatchEvent(new Event('change'));"
        )
        wait_for(
            driver,
            lambda s: s["variables"].get("destination") == "service_c" and s["panels"]["2XX"]["queries"][0]["expr"].startswith(
                "service_a_cluster_service_c_upstream_rq_2xx"
            ) and s["panels"]["2XX"]["drawnPaths"] == 1,
            10,
            "changing the destination variable did not redraw",
        )
        assert "var-destination=service_c" in driver.current_url

        # The home page lists the provisioned dashboards (through /api/search) with their links.
        driver.get(stand_in.base + "/")
        deadline = time.monotonic() + 10
        while not driver.find_elements(By.CSS_SELECTOR, "#hits a") and time.monotonic() < deadline:
            time.sleep(0.1)
        (link,) = driver.find_elements(By.CSS_SELECTOR, "#hits a")
        assert link.text == "Services Dashboard" and link.get_attribute("href").endswith(f"/d/{uid}/services-dashboard")
    finally:
        driver.quit()
    log = stand_in.log.read_text()
    assert "inserting datasource from configuration" in log and "saving dashboard from file" in log


def test_dashboard_files_are_reread_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    """A provider's ``updateIntervalSeconds``: an edited dashboard file shows in the API without
    a restart, as in Grafana; SIGTERM ends the server with status 0."""
    prov = tmp_path / "provisioning"
    (prov / "dashboards").mkdir(parents=True)
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "one.json").write_text(json.dumps({"title": "First Title", "uid": "one", "rows": []}))
    (prov / "dashboards" / "p.yaml").write_text(
        f"apiVersion: 1\nproviders:\n- name: p\n  type: file\n  updateIntervalSeconds: 1\n  options:\n    path: {boards}\n"
    )
    (tmp_path / "grafana.ini").write_text("[auth.anonymous]\nenabled = true\n")
    argv = [
        sys.executable, "-m", "sluice.lab.backends.grafana", f"--config={tmp_path / 'grafana.ini'}",
        f"cfg:default.paths.provisioning={prov}", f"cfg:default.paths.data={tmp_path / 'data'}",
        "cfg:server.http_addr=127.0.0.1", "cfg:server.http_port=0",
    ]
    stand_in = StandIn(argv, {**os.environ, "PYTHONUNBUFFERED": "1"}, tmp_path / "grafana.log")
    try:

        def titles() -> list[str]:
            with urllib.request.urlopen(stand_in.base + "/api/search", timeout=5) as r:  # anonymous
                return [h["title"] for h in json.load(r)]

        assert titles() == ["First Title"]
        (boards / "one.json").write_text(json.dumps({"title": "Second Title", "uid": "one", "rows": []}))
        deadline = time.monotonic() + 10
        while titles() != ["Second Title"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert titles() == ["Second Title"]
        with urllib.request.urlopen(stand_in.base + "/api/dashboards/uid/one", timeout=5) as r:
            assert json.load(r)["meta"]["version"] == 2
        assert (tmp_path / "data" / "grafana.db").is_file()
    finally:
        stand_in.stop()
    assert stand_in.proc.returncode == 0
    assert 'msg="Shutdown started" logger=server reason="System signal: sigterm"' in stand_in.log.read_text()


def test_a_bad_provisioning_file_stops_startup(tmp_path: Path) -> None:
    prov = tmp_path / "provisioning"
    (prov / "datasources").mkdir(parents=True)
    (prov / "datasources" / "ds.yaml").write_text("apiVersion: 1\ndatasources:\n- {type: prometheus, url: 'http://x'}\n")
    r = subprocess.run(
        [sys.executable, "-m", "sluice.lab.backends.grafana", f"cfg:default.paths.provisioning={prov}",
         f"cfg:default.paths.data={tmp_path / 'data'}", "cfg:server.http_addr=127.0.0.1", "cfg:server.http_port=0"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 1
    assert "datasources[0]: datasource is missing a name" in r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "sluice.lab.backends.grafana", "--config=/nonexistent/grafana.ini"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and 'failed to parse "/nonexistent/grafana.ini"' in r.stderr
