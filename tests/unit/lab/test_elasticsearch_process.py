"""The Elasticsearch stand-in as the lab runner starts it: ``python -m
sluice.lab.backends.elasticsearch`` with the image's settings from the environment and ``-E``,
ES's JSON log lines, and data that survives a clean stop and a kill."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


class Proc:
    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_") and "." not in k}
        environ.update(env or {})
        environ["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.lab.backends.elasticsearch", "-E", "http.port=0", "-E", "network.host=127.0.0.1",
             "-E", f"path.data={data}", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environ, cwd=data,
        )
        self.lines: list[dict[str, Any]] = []
        assert self.proc.stdout is not None
        while True:
            raw = self.proc.stdout.readline()
            if not raw:
                raise AssertionError("the node exited: " + json.dumps(self.lines))
            self.lines.append(json.loads(raw))
            if self.lines[-1]["message"] == "started":
                break
        published = next(ln["message"] for ln in self.lines if ln["message"].startswith("publish_address"))
        m = re.search(r"\{127\.0\.0\.1:(\d+)\}", published)
        assert m is not None
        self.port = int(m.group(1))

    def call(self, method: str, path: str, body: str | None = None, ctype: str = "application/json") -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request(method, path, body=body, headers={"Content-Type": ctype} if body is not None else {})
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, json.loads(raw) if raw else None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def test_settings_from_environment_and_logs(tmp_path: Path) -> None:
    node = Proc(tmp_path, env={"cluster.name": "myes", "node.name": "myes01", "discovery.type": "single-node",
                               "ES_JAVA_OPTS": "-Xms1g -Xmx1g"})
    try:
        first = node.lines[0]
        assert list(first)[:7] == ["type", "timestamp", "level", "component", "cluster.name", "node.name", "message"]
        assert first["type"] == "server" and first["cluster.name"] == "myes" and first["node.name"] == "myes01"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3}Z", first["timestamp"])
        assert first["message"].startswith("version[7.14.2]")
        status, root = node.call("GET", "/")
        assert (root["name"], root["cluster_name"]) == ("myes01", "myes")
        assert node.call("GET", "/_cluster/health")[1]["cluster_name"] == "myes"
    finally:
        assert node.stop() == 0


def _bulk(n: int, start: int = 0) -> str:
    out = []
    for i in range(start, start + n):
        out.append(json.dumps({"index": {"_index": "filebeat-2022.07.09", "_id": str(i)}}))
        out.append(json.dumps({"@timestamp": "2022-07-09T02:05:11.123Z", "message": f"GET /hello/{i}", "status": 200 + i % 3}))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_acknowledged_documents_survive_a_restart(tmp_path: Path, how: str) -> None:
    node = Proc(tmp_path, "-E", "cluster.name=persist")
    try:
        status, res = node.call("POST", "/_bulk", _bulk(50), "application/x-ndjson")
        assert status == 200 and not res["errors"]
        status, res = node.call("POST", "/_bulk?refresh=true", _bulk(10, 50), "application/x-ndjson")
        assert not res["errors"]
        node.call("PUT", "/_template/t1", json.dumps({"index_patterns": ["x-*"], "order": 3}))
        node.call("DELETE", "/filebeat-2022.07.09/_doc/3?refresh=true")
        uuid = node.call("GET", "/")[1]["cluster_uuid"]
    finally:
        node.stop(signal.SIGTERM if how == "stop" else signal.SIGKILL)
    again = Proc(tmp_path, "-E", "cluster.name=persist")
    try:
        assert again.call("GET", "/")[1]["cluster_uuid"] == uuid
        again.call("POST", "/_refresh")
        assert again.call("GET", "/filebeat-*/_count")[1]["count"] == 59
        assert again.call("GET", "/filebeat-*/_count?q=message:hello")[1]["count"] == 59
        assert again.call("GET", "/filebeat-2022.07.09/_doc/3")[1]["found"] is False
        assert again.call("GET", "/filebeat-2022.07.09/_doc/59")[1]["_source"]["message"] == "GET /hello/59"
        assert again.call("GET", "/_template/t1")[1]["t1"]["order"] == 3
        status, res = again.call("POST", "/_bulk?refresh=true", _bulk(1, 60), "application/x-ndjson")
        assert res["items"][0]["index"]["_seq_no"] == 61  # sequence numbers carry on
        assert again.call("GET", "/filebeat-*/_count?q=status:200")[1]["count"] == 20
    finally:
        assert again.stop() == 0


def test_a_second_node_on_the_same_data_path_is_refused(tmp_path: Path) -> None:
    node = Proc(tmp_path)
    try:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        environ["PYTHONPATH"] = str(ROOT)
        out = subprocess.run([sys.executable, "-m", "sluice.lab.backends.elasticsearch", "-E", "http.port=0",
                              "-E", "network.host=127.0.0.1", "-E", f"path.data={tmp_path}"],
                             capture_output=True, text=True, timeout=30, env=environ, cwd=tmp_path)
        assert out.returncode == 1
        assert "failed to obtain node locks" in out.stdout
    finally:
        node.stop()


def test_version_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "sluice.lab.backends.elasticsearch", "-V"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and out.stdout.startswith("Version: 7.14.2, Build: default/docker/6bc13727ce758c0e943c3c21653b3da82f627f75")
