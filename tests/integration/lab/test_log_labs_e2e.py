"""Course part 4 end to end: the log labs through ``sluice lab up``, unchanged.

- ``accesslog-with-efk`` (4.4–4.6): the front proxy writes JSON access logs to the mounted
  ``logs/envoy``; Filebeat ships them (``decode_json_fields`` to the root) to Elasticsearch,
  where the course's ``curl IP:9200/_cat/indices`` lists ``filebeat-YYYY.MM.DD`` with the
  requests as documents; Kibana takes the index pattern ``filebeat-*`` on ``@timestamp`` (its
  Discover page is driven in a browser by ``test_kibana_discover.py``).
- ``container-log-with-efk`` (4.7): every service's output is a Docker json-file log the lab
  runner writes; Filebeat's ``container`` input and ``add_docker_metadata`` ship them with the
  container's name, the proxy's JSON line decoded under ``json``.

The labs run from a copy (their mounted ``logs/`` are written to, as Docker would write them).
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

ES = "http://127.31.76.15:9200"
FRONT = "127.31.76.10"


def es(path: str) -> Any:
    with urllib.request.urlopen(ES + path, timeout=5) as resp:
        body = resp.read().decode()
    return json.loads(body) if body.lstrip().startswith(("{", "[")) else body


def wait_for(what: str, check: Any, timeout: float = 40.0) -> Any:
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
    return lab


def test_accesslog_with_efk_lab_ships_the_proxys_json_lines(make_lab: Any, tmp_path: Path) -> None:
    lab = _up(make_lab, tmp_path, "accesslog-with-efk")
    banner = es("/")
    assert (banner["name"], banner["cluster_name"], banner["version"]["number"]) == ("myes01", "myes", "7.14.2")
    n = 6
    for _ in range(n):
        status, _ = get(FRONT, "/service/colors")
        assert status == 200
    assert get(FRONT, "/no/such/route")[0] in (200, 404)
    today = time.strftime("%Y.%m.%d", time.gmtime())

    def indexed() -> dict[str, Any] | None:
        rows = es("/_cat/indices?format=json")
        row = next((r for r in rows if r["index"] == f"filebeat-{today}"), None)
        if row is None or int(row["docs.count"]) < n + 1:
            return None
        # (and searchable: a write is, after the next refresh)
        return row if es(f"/filebeat-{today}/_count?q=status:200")["count"] >= n else None

    row = wait_for("the requests in filebeat-YYYY.MM.DD", indexed)
    assert row["health"] in ("green", "yellow") and row["status"] == "open"
    hits = es(f"/filebeat-{today}/_search?q=status:200&size=50")["hits"]
    assert hits["total"]["value"] >= n
    doc = hits["hits"][0]["_source"]
    # decode_json_fields with target "": the proxy's fields at the root, message kept.
    assert doc["method"] == "GET" and doc["url"] == "/service/colors" and doc["status"] == 200
    assert doc["log"]["file"]["path"] == "/logs/envoy/front-envoy-access.log" and "message" in doc
    assert "@timestamp" in doc and doc["agent"]["type"] == "filebeat"
    # The course's _cat/indices also lists the empty ILM index Filebeat bootstraps.
    text = es("/_cat/indices?v")
    assert f"filebeat-7.14.2-{today}-000001" in text, text

    # Kibana (4.6): the index pattern filebeat-* on @timestamp, its fields the proxy's.
    def kibana_green() -> bool:
        return bool(kibana("GET", "/api/status")["status"]["overall"]["state"] == "green")

    wait_for("Kibana's status green", kibana_green)
    created = kibana("POST", "/api/saved_objects/index-pattern", {"attributes": {"title": "filebeat-*", "timeFieldName": "@timestamp"}})
    assert created["attributes"]["title"] == "filebeat-*"
    fields = {f["name"]: f["type"] for f in kibana("GET", "/api/index_patterns/_fields_for_wildcard?pattern=filebeat-*")["fields"]}
    assert fields["@timestamp"] == "date" and fields["status"] == "number" and fields["method"] == "string"
    assert ".kibana_7.14.2_001" in es("/_cat/indices?v")
    assert lab.down().returncode == 0


def kibana(method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(
        "http://127.31.76.16:5601" + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"kbn-xsrf": "true", "content-type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_container_log_with_efk_lab_ships_every_containers_output(make_lab: Any, tmp_path: Path) -> None:
    lab = _up(make_lab, tmp_path, "container-log-with-efk")
    for _ in range(4):
        assert get(FRONT, "/service/colors")[0] == 200
    today = time.strftime("%Y.%m.%d", time.gmtime())

    def proxy_docs() -> list[dict[str, Any]]:
        found = es(f"/filebeat-{today}/_search?size=20&q=json.status:200")
        return [h["_source"] for h in found["hits"]["hits"]]

    docs = wait_for("the proxy's access-log lines with their container's name", proxy_docs)
    doc = docs[0]
    assert doc["container"]["name"] == "container-log-with-efk-front-envoy-1"
    assert doc["container"]["labels"]["com_docker_compose_service"] == "front-envoy"
    assert doc["json"]["method"] == "GET" and doc["json"]["url"] == "/service/colors"
    assert doc["stream"] == "stdout" and doc["input"]["type"] == "container"
    assert doc["container"]["image"]["name"] == "envoyproxy/envoy-alpine:v1.21-latest"
    assert lab.down().returncode == 0
