"""The Kibana stand-in's HTTP API against a small fake Elasticsearch (the REST calls Kibana
makes, answered as ES 7.14 answers them, every request recorded): start-up (503 until the
migrations, the ``.kibana`` indices and aliases), saved objects stored as Kibana stores them,
advanced settings, ``_fields_for_wildcard``, the wizard's index list, Discover's search (the
exact request sent), the console proxy, host resolution through the lab's hosts file, pages,
and the command line from start to SIGTERM."""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sluice.lab.backends.kibana import __main__ as kibana_main
from sluice.lab.backends.kibana import migrations, settings
from sluice.lab.backends.kibana.es import Client, ESUnavailable
from sluice.lab.backends.kibana.logs import Log
from sluice.lab.backends.kibana.saved_objects import encode_version
from sluice.lab.backends.kibana.server import Kibana

FIELD_CAPS = {
    "@timestamp": {"date": {"type": "date", "searchable": True, "aggregatable": True}},
    "status": {"long": {"type": "long", "searchable": True, "aggregatable": True}},
    "upstream-host": {"text": {"type": "text", "searchable": True, "aggregatable": False}},
    "upstream-host.keyword": {"keyword": {"type": "keyword", "searchable": True, "aggregatable": True}},
    "_id": {"_id": {"type": "_id", "searchable": True, "aggregatable": True}},
    "_source": {"_source": {"type": "_source", "searchable": False, "aggregatable": False}},
    "_seq_no": {"_seq_no": {"type": "_seq_no", "searchable": True, "aggregatable": True}},
}
SEARCH_REPLY = {"took": 1, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                "hits": {"total": {"value": 1, "relation": "eq"}, "max_score": None, "hits": [
                    {"_index": "filebeat-2021.09.23", "_type": "_doc", "_id": "a", "_version": 1, "_score": None,
                     "_source": {"@timestamp": "2021-09-23T10:00:00.000Z", "status": 503}, "sort": [1632391200000]}]},
                "aggregations": {"2": {"buckets": [{"key_as_string": "2021-09-23T10:00:00.000Z", "key": 1632391200000, "doc_count": 1}]}}}


def _types_in(query: Any) -> list[str]:
    if isinstance(query, dict):
        found = [query["term"]["type"]] if isinstance(query.get("term"), dict) and "type" in query["term"] else []
        return found + [t for v in query.values() for t in _types_in(v)]
    if isinstance(query, list):
        return [t for v in query for t in _types_in(v)]
    return []


class FakeES:
    """The REST subset Kibana uses, in memory; ``calls`` holds (method, path, query, body)."""

    def __init__(self, version: str = "7.14.2") -> None:
        self.version = version
        self.down = False
        self.indices: dict[str, dict[str, Any]] = {"filebeat-2021.09.23": {"aliases": set(), "mappings": {}, "docs": {}}}
        self.calls: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.search_reply: tuple[int, Any] = (200, SEARCH_REPLY)
        self.seq = 0
        self.lock = threading.Lock()
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def handle_one(self) -> None:
                split = urllib.parse.urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw and "json" in (self.headers.get("Content-Type") or "") else raw.decode() or None
                query = urllib.parse.parse_qs(split.query)
                with fake.lock:
                    fake.calls.append((self.command, urllib.parse.unquote(split.path), query, body))
                    status, reply = fake.answer(self.command, urllib.parse.unquote(split.path), query, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("X-elastic-product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=lambda: self.httpd.serve_forever(poll_interval=0.05), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def concrete(self, name: str) -> str | None:
        if name in self.indices:
            return name
        return next((i for i, meta in self.indices.items() if name in meta["aliases"]), None)

    def matching(self, pattern: str) -> list[str]:
        return sorted(i for i in self.indices if any(fnmatch.fnmatchcase(i, p) for p in pattern.split(",")))

    @staticmethod
    def missing(name: str) -> tuple[int, Any]:
        return 404, {"error": {"type": "index_not_found_exception", "reason": f"no such index [{name}]"}, "status": 404}

    def answer(self, method: str, path: str, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if path == "/_nodes":
            if self.down:
                return 503, {"error": {"type": "master_not_discovered_exception", "reason": None}, "status": 503}
            return 200, {"nodes": {"n1": {"ip": "127.0.0.1", "version": self.version, "http": {"publish_address": f"127.0.0.1:{self.port}"}}}}
        if parts[:2] == ["_cat", "indices"]:
            return 200, [{"index": i, "status": "open"} for i in self.matching(parts[2] if len(parts) > 2 else "*")]
        if parts[:2] == ["_cat", "aliases"]:
            pat = parts[2] if len(parts) > 2 else "*"
            return 200, [{"alias": a, "index": i} for i, m in sorted(self.indices.items()) for a in sorted(m["aliases"]) if fnmatch.fnmatchcase(a, pat)]
        index = parts[0]
        if len(parts) == 1:
            if method == "PUT":
                if index in self.indices:
                    return 400, {"error": {"type": "resource_already_exists_exception", "reason": f"index [{index}] already exists"}, "status": 400}
                self.indices[index] = {"aliases": set((body or {}).get("aliases", {})), "mappings": (body or {}).get("mappings", {}), "docs": {},
                                       "settings": (body or {}).get("settings")}
                return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}
            c = self.concrete(index)
            if c is None:
                return self.missing(index)
            return 200, {c: {"aliases": {a: {} for a in self.indices[c]["aliases"]}, "mappings": self.indices[c]["mappings"]}}
        verb = parts[1]
        if verb == "_field_caps":
            names = self.matching(index)
            if not names:
                return self.missing(index)
            return 200, {"indices": names, "fields": FIELD_CAPS}
        if verb == "_search":
            c = self.concrete(index)
            if c is None or not c.startswith(".kibana"):
                return self.search_reply
            types = _types_in(body.get("query"))
            docs = [(i, d) for i, d in sorted(self.indices[c]["docs"].items()) if d["source"]["type"] in types]
            page = docs[body.get("from", 0): body.get("from", 0) + body.get("size", 10)]
            hits = [{"_index": c, "_type": "_doc", "_id": i, "_score": 0.0, "_source": d["source"], "_seq_no": d["seq"], "_primary_term": 1}
                    for i, d in page]
            return 200, {"hits": {"total": len(docs), "hits": hits}}
        c = self.concrete(index)
        if c is None:
            return self.missing(index)
        meta = self.indices[c]
        if verb == "_mapping":
            meta["mappings"].setdefault("properties", {}).update(body.get("properties", {}))
            return 200, {"acknowledged": True}
        doc_id = parts[2] if len(parts) > 2 else ""
        docs = meta["docs"]
        if verb in ("_create", "_doc") and method in ("PUT", "POST"):
            if verb == "_create" and doc_id in docs:
                return 409, {"error": {"type": "version_conflict_engine_exception", "reason": f"[{doc_id}]: version conflict"}, "status": 409}
            self.seq += 1
            docs[doc_id] = {"source": body, "seq": self.seq - 1}
            return 201, {"_index": c, "_id": doc_id, "result": "created", "_seq_no": self.seq - 1, "_primary_term": 1}
        if verb == "_doc" and method == "GET":
            if doc_id not in docs:
                return 404, {"_index": c, "_type": "_doc", "_id": doc_id, "found": False}
            d = docs[doc_id]
            return 200, {"_index": c, "_type": "_doc", "_id": doc_id, "_seq_no": d["seq"], "_primary_term": 1, "found": True, "_source": d["source"]}
        if verb == "_doc" and method == "DELETE":
            if doc_id not in docs:
                return 404, {"_index": c, "_id": doc_id, "result": "not_found"}
            del docs[doc_id]
            return 200, {"_index": c, "_id": doc_id, "result": "deleted"}
        if verb == "_update":
            if doc_id not in docs:
                return 404, {"error": {"type": "document_missing_exception", "reason": f"[_doc][{doc_id}]: document missing"}, "status": 404}
            d = docs[doc_id]
            if "if_seq_no" in q and int(q["if_seq_no"][0]) != d["seq"]:
                return 409, {"error": {"type": "version_conflict_engine_exception", "reason": "version conflict"}, "status": 409}
            for k, v in body["doc"].items():
                d["source"][k] = {**d["source"].get(k, {}), **v} if isinstance(v, dict) else v
            self.seq += 1
            d["seq"] = self.seq - 1
            return 200, {"_index": c, "_id": doc_id, "result": "updated", "_seq_no": d["seq"], "_primary_term": 1}
        return 400, {"error": {"type": "illegal_argument_exception", "reason": f"unhandled {method} {path}"}, "status": 400}


@pytest.fixture
def fake_es() -> Iterator[FakeES]:
    es = FakeES()
    yield es
    es.close()


class Running:
    def __init__(self, app: Kibana, out: io.StringIO, base: str, stop: threading.Event, starter: threading.Thread) -> None:
        self.app, self.out, self.base, self.stop, self.starter = app, out, base, stop, starter

    def call(self, method: str, path: str, body: Any = None, *, xsrf: bool = True, raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"}
        if xsrf:
            headers["kbn-xsrf"] = "true"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text, status, got = r.read(), r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            text, status, got = e.read(), e.code, dict(e.headers)
        try:
            return status, json.loads(text), got
        except ValueError:
            return status, text.decode(), got

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]


def start(es_url: str, monkeypatch: pytest.MonkeyPatch, *, wait: bool = True, extra: list[str] | None = None) -> Running:
    monkeypatch.setattr(migrations, "HEALTH_DELAY", 0.02)
    s = settings.load(["-e", es_url, "-H", "127.0.0.1", "-p", "0", *(extra or [])], {"HOSTNAME": "kib"})
    out = io.StringIO()
    log = Log(as_json=True, stream=out)
    es = Client(s.es_hosts, timeout=5)
    app = Kibana(s, es, log, uuid="5b2de169-2785-441b-ae8c-186a1936b17d")
    host, port = app.bind()
    threading.Thread(target=app.serve_forever, daemon=True).start()
    stop = threading.Event()
    starter = threading.Thread(target=kibana_main._start, args=(app, es, log, stop, host, port), daemon=True)
    starter.start()
    running = Running(app, out, f"http://{host}:{port}", stop, starter)
    if wait:
        assert app.ready.wait(10), out.getvalue()
    return running


@pytest.fixture
def kibana(fake_es: FakeES, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    k = start(fake_es.url, monkeypatch)
    yield k
    k.stop.set()
    k.app.shutdown()


# --- start-up ----------------------------------------------------------------------------------------


def test_not_ready_until_elasticsearch_answers_then_migrates(fake_es: FakeES, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_es.down = True
    k = start(fake_es.url, monkeypatch, wait=False)
    try:
        status, body, headers = k.call("GET", "/api/status")
        assert (status, body, headers["Retry-After"]) == (503, "Kibana server is not ready yet", "30")
        deadline = time.monotonic() + 5
        while "Unable to retrieve version information" not in k.out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        fake_es.down = False
        assert k.app.ready.wait(5)
        k.starter.join(5)
        status, body, headers = k.call("GET", "/api/status")
        assert status == 200 and headers["kbn-name"] == "kib"
        assert body["version"]["number"] == "7.14.2" and body["status"]["overall"]["state"] == "green"
        assert body["uuid"] == "5b2de169-2785-441b-ae8c-186a1936b17d" and body["name"] == "kib"
        assert {s["id"] for s in body["status"]["statuses"]} >= {"core:elasticsearch@7.14.2", "core:savedObjects@7.14.2"}
        v8 = k.call("GET", "/api/status?v8format=true")[1]["status"]
        assert v8["overall"] == {"level": "available", "summary": "All services are available"}
    finally:
        k.stop.set()
        k.app.shutdown()
    messages = [(line["tags"], line["message"]) for line in k.logs() if line["type"] == "log"]
    assert (["error", "elasticsearch-service"],
            "Unable to retrieve version information from Elasticsearch nodes. master_not_discovered_exception: None") in messages
    texts = [m for _, m in messages]
    created = next(i for i, t in enumerate(texts) if t.startswith("[.kibana] INIT -> CREATE_NEW_TARGET. took: "))
    assert created < texts.index(f"http server running at {k.base}")
    assert any(t.startswith("[.kibana] Migration completed after") for t in texts)
    assert texts[-1] == "Kibana is now available (was degraded)"
    kib = fake_es.indices[".kibana_7.14.2_001"]
    assert kib["aliases"] == {".kibana", ".kibana_7.14.2"} and kib["mappings"]["dynamic"] == "strict"
    assert kib["settings"] == {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1", "hidden": True}}
    assert fake_es.indices[".kibana_task_manager_7.14.2_001"]["aliases"] == {".kibana_task_manager", ".kibana_task_manager_7.14.2"}
    responses = [line for line in k.logs() if line["type"] == "response"]
    assert responses[0]["statusCode"] == 503 and responses[0]["message"].startswith("GET /api/status 503 ")


def test_existing_indices_get_their_mappings_updated(fake_es: FakeES, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_es.indices[".kibana_7.14.2_001"] = {"aliases": {".kibana", ".kibana_7.14.2"}, "mappings": {"properties": {}}, "docs": {}}
    fake_es.indices[".kibana_1"] = {"aliases": {".kibana_task_manager"}, "mappings": {"properties": {}}, "docs": {}}
    k = start(fake_es.url, monkeypatch)
    k.stop.set()
    k.app.shutdown()
    texts = [line["message"] for line in k.logs()]
    assert any(t.startswith("[.kibana] INIT -> UPDATE_TARGET_MAPPINGS. took: ") for t in texts)
    assert "[.kibana_task_manager] .kibana_1 was written by another Kibana version; using it as it is" in texts
    assert "index-pattern" in fake_es.indices[".kibana_7.14.2_001"]["mappings"]["properties"]
    assert not any(p == "/.kibana_7.14.2_001" and m == "PUT" for m, p, _, _ in fake_es.calls)


def test_incompatible_elasticsearch_is_reported(fake_es: FakeES) -> None:
    fake_es.version = "6.8.0"
    check = migrations.check_nodes(Client([fake_es.url]))
    assert not check.ok
    assert check.message == (f"This version of Kibana (v7.14.2) is incompatible with the following Elasticsearch nodes in your cluster: "
                             f"v6.8.0 @ 127.0.0.1:{fake_es.port} (127.0.0.1)")
    fake_es.version = "7.17.0"
    assert migrations.check_nodes(Client([fake_es.url])).ok


# --- saved objects and settings ----------------------------------------------------------------------------


def test_index_pattern_saved_objects(kibana: Running, fake_es: FakeES) -> None:
    attrs = {"title": "filebeat-*", "timeFieldName": "@timestamp"}
    assert kibana.call("POST", "/api/saved_objects/index-pattern/fb", {"attributes": attrs}, xsrf=False)[:2] == (
        400, {"statusCode": 400, "error": "Bad Request", "message": "Request must contain a kbn-xsrf header."})
    status, obj, _ = kibana.call("POST", "/api/saved_objects/index-pattern/fb", {"attributes": attrs})
    assert status == 200
    assert obj == {"id": "fb", "type": "index-pattern", "namespaces": ["default"], "updated_at": obj["updated_at"], "version": obj["version"],
                   "attributes": attrs, "references": [], "migrationVersion": {"index-pattern": "7.11.0"}, "coreMigrationVersion": "7.14.2"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["updated_at"])
    stored = fake_es.indices[".kibana_7.14.2_001"]["docs"]["index-pattern:fb"]["source"]
    assert stored == {"index-pattern": attrs, "type": "index-pattern", "references": [], "migrationVersion": {"index-pattern": "7.11.0"},
                      "coreMigrationVersion": "7.14.2", "updated_at": obj["updated_at"]}
    assert ("PUT", "/.kibana/_create/index-pattern:fb", {"refresh": ["wait_for"]}) in [c[:3] for c in fake_es.calls]
    assert kibana.call("POST", "/api/saved_objects/index-pattern/fb", {"attributes": attrs})[:2] == (
        409, {"statusCode": 409, "error": "Conflict", "message": "Saved object [index-pattern/fb] conflict"})
    assert kibana.call("POST", "/api/saved_objects/index-pattern/fb?overwrite=true", {"attributes": {"title": "filebeat-*"}})[0] == 200
    status, other, _ = kibana.call("POST", "/api/saved_objects/index-pattern", {"attributes": {"title": "logs-*"}})
    assert status == 200 and re.fullmatch(r"[0-9a-f-]{36}", other["id"])
    assert kibana.call("POST", "/api/saved_objects/index-pattern", {"title": "x"})[1]["message"] == (
        "[request body.attributes]: expected value of type [object] but got [undefined]")
    assert kibana.call("POST", "/api/saved_objects/dashboard", {"attributes": {}})[1]["message"] == "Unsupported saved object type: 'dashboard': Bad Request"
    assert kibana.call("POST", "/api/saved_objects/index-pattern", raw=b"{nope")[0] == 400

    status, got, _ = kibana.call("GET", "/api/saved_objects/index-pattern/fb")
    assert status == 200 and got["attributes"] == {"title": "filebeat-*"} and got["version"] == encode_version(1, 1)
    assert kibana.call("GET", "/api/saved_objects/index-pattern/nope")[:2] == (
        404, {"statusCode": 404, "error": "Not Found", "message": "Saved object [index-pattern/nope] not found"})

    status, found, _ = kibana.call("GET", "/api/saved_objects/_find?type=index-pattern&fields=title&per_page=50")
    assert status == 200 and (found["page"], found["per_page"], found["total"]) == (1, 50, 2)
    assert sorted(o["attributes"]["title"] for o in found["saved_objects"]) == ["filebeat-*", "logs-*"]
    search_body = [c[3] for c in fake_es.calls if c[1] == "/.kibana/_search"][-1]
    assert search_body["_source"][:1] == ["index-pattern.title"] and search_body["size"] == 50 and search_body["seq_no_primary_term"] is True
    assert kibana.call("GET", "/api/saved_objects/_find")[0] == 400
    assert kibana.call("GET", "/api/saved_objects/_find?type=dashboard")[1]["total"] == 0

    status, upd, _ = kibana.call("PUT", "/api/saved_objects/index-pattern/fb", {"attributes": {"timeFieldName": "@timestamp"}})
    assert status == 200 and upd["attributes"] == {"timeFieldName": "@timestamp"}
    assert kibana.call("GET", "/api/saved_objects/index-pattern/fb")[1]["attributes"] == attrs
    assert kibana.call("PUT", "/api/saved_objects/index-pattern/fb", {"attributes": {}, "version": obj["version"]})[0] == 409  # stale version

    assert kibana.call("DELETE", "/api/saved_objects/index-pattern/fb")[:2] == (200, {})
    assert kibana.call("DELETE", "/api/saved_objects/index-pattern/fb")[0] == 404
    assert "index-pattern:fb" not in fake_es.indices[".kibana_7.14.2_001"]["docs"]


def test_advanced_settings_default_index(kibana: Running, fake_es: FakeES) -> None:
    assert kibana.call("GET", "/api/kibana/settings")[:2] == (200, {"settings": {"buildNum": {"userValue": 0}}})
    config = fake_es.indices[".kibana_7.14.2_001"]["docs"]["config:7.14.2"]["source"]
    assert config["type"] == "config" and config["config"] == {"buildNum": 0}
    status, body, _ = kibana.call("POST", "/api/kibana/settings", {"changes": {"defaultIndex": "fb"}})
    assert (status, body) == (200, {"settings": {"buildNum": {"userValue": 0}, "defaultIndex": {"userValue": "fb"}}})
    assert kibana.call("GET", "/api/kibana/settings")[1]["settings"]["defaultIndex"] == {"userValue": "fb"}
    assert "defaultIndex" not in kibana.call("POST", "/api/kibana/settings", {"changes": {"defaultIndex": None}})[1]["settings"]
    assert kibana.call("POST", "/api/kibana/settings", {"defaultIndex": "x"})[0] == 400


# --- index patterns ----------------------------------------------------------------------------------------


def test_fields_for_wildcard_and_resolve_index(kibana: Running, fake_es: FakeES) -> None:
    status, body, _ = kibana.call("GET", "/api/index_patterns/_fields_for_wildcard?pattern=filebeat-*&meta_fields=_source&meta_fields=_id"
                                         "&meta_fields=_type&meta_fields=_index&meta_fields=_score")
    assert status == 200
    by = {f["name"]: f for f in body["fields"]}
    assert [f["name"] for f in body["fields"]] == ["@timestamp", "_id", "_index", "_score", "_source", "_type", "status", "upstream-host",
                                                   "upstream-host.keyword"]
    assert by["_score"] == {"name": "_score", "type": "number", "searchable": False, "aggregatable": False, "readFromDocValues": False}
    assert by["_source"]["type"] == "_source" and by["_index"]["type"] == "string" and "_seq_no" not in by
    assert by["upstream-host.keyword"]["subType"] == {"multi": {"parent": "upstream-host"}}
    call = [c for c in fake_es.calls if c[1] == "/filebeat-*/_field_caps"][-1]
    assert call[2] == {"fields": ["*"], "ignore_unavailable": ["true"], "allow_no_indices": ["false"]}
    assert kibana.call("GET", "/api/index_patterns/_fields_for_wildcard?pattern=nope-*")[:2] == (404, {
        "statusCode": 404, "error": "Not Found", "message": 'No indices match pattern "nope-*"', "attributes": {"code": "no_matching_indices"}})
    assert kibana.call("GET", "/api/index_patterns/_fields_for_wildcard")[0] == 400

    assert kibana.call("GET", "/internal/index-pattern-management/resolve_index/filebeat-*")[1] == {
        "indices": [{"name": "filebeat-2021.09.23", "attributes": ["open"]}], "aliases": [], "data_streams": []}
    everything = kibana.call("GET", "/internal/index-pattern-management/resolve_index/*?expand_wildcards=all")[1]
    assert ".kibana_7.14.2_001" in [i["name"] for i in everything["indices"]]
    assert {"name": ".kibana", "indices": [".kibana_7.14.2_001"]} in everything["aliases"]
    assert ".kibana_7.14.2_001" not in str(kibana.call("GET", "/internal/index-pattern-management/resolve_index/*")[1])


# --- search --------------------------------------------------------------------------------------------------


def test_discover_search_builds_kibanas_request(kibana: Running, fake_es: FakeES) -> None:
    kibana.call("POST", "/api/saved_objects/index-pattern/fb", {"attributes": {"title": "filebeat-*", "timeFieldName": "@timestamp"}})
    state = {"index": "fb", "query": {"language": "kuery", "query": "status:503"}, "time": {"from": "now-15m", "to": "now"},
             "interval": "auto", "timeZone": "Asia/Shanghai"}
    status, body, _ = kibana.call("POST", "/internal/discover/search", state)
    assert status == 200, body
    assert body["rawResponse"] == SEARCH_REPLY and (body["isPartial"], body["isRunning"], body["total"], body["loaded"]) == (False, False, 1, 1)
    method, path, query, sent = [c for c in fake_es.calls if c[1] == "/filebeat-*/_search"][-1]
    assert (method, query) == ("POST", {"ignore_unavailable": ["true"]})
    assert sent == body["request"]["body"] and body["request"]["index"] == "filebeat-*"
    (kq, time_range) = sent["query"]["bool"]["filter"]
    assert kq == {"bool": {"should": [{"match": {"status": 503}}], "minimum_should_match": 1}}
    assert time_range["range"]["@timestamp"]["format"] == "strict_date_optional_time"
    assert body["timeRange"] == {"from": time_range["range"]["@timestamp"]["gte"], "to": time_range["range"]["@timestamp"]["lte"]}
    assert sent["aggs"]["2"]["date_histogram"] == {"field": "@timestamp", "fixed_interval": "30s", "time_zone": "Asia/Shanghai", "min_doc_count": 1}
    assert body["interval"] == {"ms": 30000, "expression": "30s", "description": "30 seconds", "scaled": False, "esParam": {"fixed_interval": "30s"}}

    status, err, _ = kibana.call("POST", "/internal/discover/search", {**state, "query": {"language": "kuery", "query": "status:"}})
    assert status == 400 and err["attributes"] == {"type": "KQLSyntaxError", "offset": 7}
    assert err["message"].endswith("\nstatus:\n-------^")
    assert kibana.call("POST", "/internal/discover/search", {**state, "time": {"from": "yesterday", "to": "now"}})[0] == 400
    assert kibana.call("POST", "/internal/discover/search", {**state, "index": "nope"})[0] == 404
    fake_es.search_reply = (400, {"error": {"type": "search_phase_execution_exception", "reason": "all shards failed"}, "status": 400})
    status, err, _ = kibana.call("POST", "/internal/discover/search", {**state, "query": {"language": "lucene", "query": "status:["}})
    assert (status, err["message"], err["attributes"]["error"]["reason"]) == (400, "search_phase_execution_exception", "all shards failed")


def test_internal_search_es_and_console_proxy(kibana: Running, fake_es: FakeES) -> None:
    status, body, _ = kibana.call("POST", "/internal/search/es", {"params": {"index": "filebeat-*", "body": {"size": 0}, "track_total_hits": True}})
    assert status == 200 and body["rawResponse"] == SEARCH_REPLY
    assert fake_es.calls[-1][1:] == ("/filebeat-*/_search", {"track_total_hits": ["true"], "ignore_unavailable": ["true"]}, {"size": 0})
    assert kibana.call("POST", "/internal/search/es", {})[0] == 400
    status, rows, _ = kibana.call("POST", "/api/console/proxy?path=_cat/indices/filebeat-*&method=GET")
    assert status == 200 and rows == [{"index": "filebeat-2021.09.23", "status": "open"}]
    assert kibana.call("POST", "/api/console/proxy?path=_cat/indices&method=GET", xsrf=False)[0] == 400


# --- the client: hosts file, failover, errors -----------------------------------------------------------


def test_client_resolves_lab_names_and_fails_over(fake_es: FakeES, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("# lab\n127.0.0.1\tmyes01 es\n")
    client = Client([f"http://myes01:{fake_es.port}"], hosts_file=str(hosts))
    assert client.request("GET", "/_nodes").ok
    assert fake_es.calls[-1][1] == "/_nodes"
    with pytest.raises(ESUnavailable, match="getaddrinfo ENOTFOUND no-such-host.invalid"):
        Client(["http://no-such-host.invalid:9200"], hosts_file=str(hosts)).request("GET", "/")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with pytest.raises(ESUnavailable, match=f"connect ECONNREFUSED 127.0.0.1:{dead}"):
        Client([f"http://127.0.0.1:{dead}"]).request("GET", "/")
    both = Client([f"http://127.0.0.1:{dead}", f"http://myes01:{fake_es.port}"], hosts_file=str(hosts))
    assert both.request("GET", "/_nodes").ok and both.last_host.port == fake_es.port


# --- pages ---------------------------------------------------------------------------------------------------


def test_pages_and_static_files(kibana: Running) -> None:
    req = urllib.request.Request(kibana.base + "/", method="GET")
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,), {"redirect_request": lambda *a: None}))
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(req, timeout=5)
    assert info.value.code == 302 and info.value.headers["Location"] == "/app/home"
    for path, marker in (("/app/home", "createIndexPatternLink"), ("/app/discover", "discoverQueryHits"),
                         ("/app/management/kibana/indexPatterns/create", "mgmtApp")):
        status, text, headers = kibana.call("GET", path)
        assert status == 200 and marker in text, path
        assert headers["Content-Security-Policy"].startswith("script-src 'self'")
    status, text, headers = kibana.call("GET", "/ui/sluice/uPlot.iife.min.js")
    assert status == 200 and "uPlot" in text[:200] and headers["Content-Type"].startswith("application/javascript")
    assert kibana.call("GET", "/ui/sluice/discover.js")[0] == 200
    assert kibana.call("GET", "/ui/sluice/..%2Fserver.py")[0] == 404
    assert kibana.call("GET", "/app/nothing")[0] == 404
    assert kibana.call("GET", "/api/nothing")[1] == {"statusCode": 404, "error": "Not Found", "message": "Not Found"}


# --- the command line, start to SIGTERM --------------------------------------------------------------------


def test_command_line_as_the_lab_runs_it(fake_es: FakeES, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 myes01\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SLUICE_HOSTS_FILE": str(hosts), "ELASTICSEARCH_HOSTS": f'["http://myes01:{fake_es.port}"]',
           "HOSTNAME": "kibana", "SERVER_NAME": "kibana"}
    log = tmp_path / "kibana.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sluice.lab.backends.kibana", "--host", "127.0.0.1", "--port", "0",
                                 f"--path.data={tmp_path / 'data'}"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 15
            m = None
            while m is None and time.monotonic() < deadline and proc.poll() is None:
                m = re.search(r'"message":"http server running at (http://127\.0\.0\.1:\d+)"', log.read_text())
                time.sleep(0.05)
            assert m, log.read_text()
            with urllib.request.urlopen(m.group(1) + "/api/status", timeout=5) as r:
                assert json.load(r)["status"]["overall"]["state"] == "green"
            assert (tmp_path / "data" / "uuid").read_text().count("-") == 4
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[-1]["message"] == "Stopping all plugins." and all(line["type"] in ("log", "response") for line in lines)
