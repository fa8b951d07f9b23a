"""The Elasticsearch stand-in over real HTTP: a node started in-process on 127.0.0.1 port 0 (its
refresher in its own process, as in a lab), driven the way Filebeat, Kibana and ``curl`` drive
Elasticsearch 7.14.2."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sluice.lab.backends.elasticsearch.node import Node
from sluice.lab.backends.elasticsearch.settings import load


class Running:
    """A node on its own event loop thread."""

    def __init__(self, data: Path, *settings: str) -> None:
        self.node = Node(load(["http.port=0", "network.host=127.0.0.1", f"path.data={data}", *settings], environ={}))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        _, self.port = asyncio.run_coroutine_threadsafe(self.node.start(), self.loop).result(30)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def stop(self) -> None:
        self.conn.close()
        asyncio.run_coroutine_threadsafe(self.node.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def raw(self, method: str, path: str, body: bytes | str | None = None, ctype: str | None = "application/json",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        data = body.encode() if isinstance(body, str) else body
        hdrs = dict(headers or {})
        if data is not None and ctype is not None:
            hdrs["Content-Type"] = ctype
        self.conn.request(method, path, body=data, headers=hdrs)
        resp = self.conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        payload = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        status, _, raw = self.raw(method, path, payload, **kw)
        return status, (json.loads(raw) if raw else None)

    def bulk(self, lines: list[Any], path: str = "/_bulk?refresh=true") -> tuple[int, Any]:
        text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
        return self.call("POST", path, text, ctype="application/x-ndjson")


@pytest.fixture(scope="module")
def es(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    node = Running(tmp_path_factory.mktemp("es"), "cluster.name=myes", "node.name=myes01")
    yield node
    node.stop()


def _today() -> str:
    return datetime.now(UTC).strftime("%Y.%m.%d")


# --- what curl and Filebeat see first ---------------------------------------------------------------


def test_root_is_pretty_and_named_after_the_settings(es: Running) -> None:
    status, headers, raw = es.raw("GET", "/")
    assert status == 200
    assert headers["x-elastic-product"] == "Elasticsearch"
    text = raw.decode()
    assert text.startswith('{\n  "name" : "myes01",\n  "cluster_name" : "myes",\n')
    body = json.loads(text)
    assert body["version"]["number"] == "7.14.2"
    assert body["version"]["build_flavor"] == "default" and body["version"]["build_type"] == "docker"
    assert body["version"]["lucene_version"] == "8.9.0"
    assert body["version"]["minimum_wire_compatibility_version"] == "6.8.0"
    assert body["version"]["minimum_index_compatibility_version"] == "6.0.0-beta1"
    assert body["tagline"] == "You Know, for Search"
    status, _, compact = es.raw("GET", "/?pretty=false")
    assert b"\n" not in compact


def test_filebeat_handshake_in_order(es: Running) -> None:
    status, lic = es.call("GET", "/_license?human=false")
    assert status == 200 and lic["license"]["status"] == "active" and lic["license"]["type"] == "basic"
    status, xpack = es.call("GET", "/_xpack")
    assert status == 200 and xpack["features"]["ilm"] == {"available": True, "enabled": True}
    status, missing = es.call("GET", "/_ilm/policy/filebeat")
    assert status == 404 and missing["error"]["type"] == "resource_not_found_exception"
    policy = {"policy": {"phases": {"hot": {"actions": {"rollover": {"max_size": "50gb", "max_age": "30d"}}}}}}
    assert es.call("PUT", "/_ilm/policy/filebeat", policy) == (200, {"acknowledged": True})
    status, got = es.call("GET", "/_ilm/policy/filebeat")
    assert status == 200 and got["filebeat"]["policy"] == policy["policy"] and got["filebeat"]["version"] == 1
    status, _, raw = es.raw("GET", "/_cat/templates/filebeat-7.14.2")
    assert status == 200 and b"filebeat-7.14.2" not in raw
    template = {
        "index_patterns": ["filebeat-7.14.2-*"], "order": 1,
        "settings": {"index": {"lifecycle": {"name": "filebeat", "rollover_alias": "filebeat-7.14.2"},
                               "mapping": {"total_fields": {"limit": 10000}}, "refresh_interval": "5s", "number_of_shards": 1}},
        "mappings": {"_meta": {"beat": "filebeat", "version": "7.14.2"}, "date_detection": False,
                     "dynamic_templates": [{"strings_as_keyword": {"match_mapping_type": "string",
                                                                   "mapping": {"ignore_above": 1024, "type": "keyword"}}}],
                     "properties": {"@timestamp": {"type": "date"}, "message": {"type": "match_only_text"}}},
    }
    assert es.call("PUT", "/_template/filebeat-7.14.2", template) == (200, {"acknowledged": True})
    status, _, raw = es.raw("GET", "/_cat/templates/filebeat-7.14.2")
    assert raw.decode().split() == ["filebeat-7.14.2", "[filebeat-7.14.2-*]", "1"]
    status, got_t = es.call("GET", "/_template/filebeat-7.14.2")
    assert got_t["filebeat-7.14.2"]["settings"]["index"]["lifecycle"]["name"] == "filebeat"
    assert got_t["filebeat-7.14.2"]["settings"]["index"]["number_of_shards"] == "1"
    assert es.call("GET", "/_alias/filebeat-7.14.2") == (404, {"error": "alias [filebeat-7.14.2] missing", "status": 404})
    assert es.raw("HEAD", "/filebeat-7.14.2")[0] == 404
    status, created = es.call("PUT", "/%3Cfilebeat-7.14.2-%7Bnow%2Fd%7D-000001%3E", {"aliases": {"filebeat-7.14.2": {"is_write_index": True}}})
    name = f"filebeat-7.14.2-{_today()}-000001"
    assert status == 200 and created == {"acknowledged": True, "shards_acknowledged": True, "index": name}
    assert es.call("GET", "/_alias/filebeat-7.14.2") == (200, {name: {"aliases": {"filebeat-7.14.2": {"is_write_index": True}}}})
    assert es.raw("HEAD", "/filebeat-7.14.2")[0] == 200
    status, mapping = es.call("GET", f"/{name}/_mapping")
    assert mapping[name]["mappings"]["properties"]["message"] == {"type": "match_only_text"}
    # The course's bulk: Filebeat's create actions into a daily index, with its response filter.
    lines: list[Any] = []
    for i in range(3):
        lines += [{"create": {"_index": "filebeat-2022.07.09"}},
                  {"@timestamp": f"2022-07-09T02:0{i}:11.123Z", "message": f'{{"method":"GET","status":200,"n":{i}}}',
                   "method": "GET", "status": 200, "agent": {"version": "7.14.2", "type": "filebeat"}}]
    status, res = es.bulk(lines, "/_bulk?filter_path=errors,items.*.error,items.*.status")
    assert status == 200 and res == {"errors": False, "items": [{"create": {"status": 201}}] * 3}
    # Writing through the alias goes to its write index (and its template's keyword strings).
    status, res = es.bulk([{"create": {"_index": "filebeat-7.14.2"}}, {"@timestamp": "2022-07-09T02:00:00.000Z", "method": "GET"}])
    assert res["items"][0]["create"]["_index"] == name
    assert es.call("GET", f"/{name}/_mapping")[1][name]["mappings"]["properties"]["method"] == {"type": "keyword", "ignore_above": 1024}


def test_cat_indices_text_and_json(es: Running) -> None:
    es.bulk([{"index": {"_index": "cat-a", "_id": "1"}}, {"x": 1}, {"index": {"_index": "cat-b", "_id": "1"}}, {"x": 2},
             {"index": {"_index": "cat-b", "_id": "2"}}, {"x": 3}])
    es.call("PUT", "/cat-empty", {"settings": {"number_of_replicas": 0}})
    status, headers, raw = es.raw("GET", "/_cat/indices/cat-*?v&s=index")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    lines = raw.decode().splitlines()
    assert lines[0].split() == ["health", "status", "index", "uuid", "pri", "rep", "docs.count", "docs.deleted", "store.size",
                                "pri.store.size"]
    assert [ln.split()[2] for ln in lines[1:]] == ["cat-a", "cat-b", "cat-empty"]
    row_b = lines[2].split()
    assert row_b[0:2] == ["yellow", "open"] and row_b[4:8] == ["1", "1", "2", "0"]
    empty = lines[3].split()
    assert empty[0] == "green" and empty[5] == "0" and empty[8] == "208b"
    # Columns line up: right-aligned numbers end where their header ends.
    assert lines[0].index("docs.count") + len("docs.count") == lines[2].index(" 2 ") + 2
    status, rows = es.call("GET", "/_cat/indices/cat-*?format=json&h=index,docs.count&s=docs.count:desc")
    assert rows == [{"index": "cat-b", "docs.count": "2"}, {"index": "cat-a", "docs.count": "1"}, {"index": "cat-empty", "docs.count": "0"}]
    status, rows = es.call("GET", "/_cat/indices/cat-empty?format=json&bytes=b")
    assert rows[0]["store.size"] == "208"
    status, _, raw = es.raw("GET", "/_cat/health?v")
    header, row = raw.decode().splitlines()
    assert header.split()[:4] == ["epoch", "timestamp", "cluster", "status"] and row.split()[2:4] == ["myes", "yellow"]
    status, health = es.call("GET", "/_cluster/health")
    assert health["cluster_name"] == "myes" and health["status"] == "yellow" and health["number_of_nodes"] == 1
    assert es.call("GET", "/_cluster/health/cat-empty")[1]["status"] == "green"


def test_cat_docs_count_only_refreshed_documents(es: Running) -> None:
    # As ES: _cat/indices and _cat/shards count what the last refresh made searchable.
    es.call("PUT", "/nrt-docs", {"settings": {"number_of_replicas": 0, "refresh_interval": "-1"}})

    def counts() -> tuple[str, str]:
        row = es.call("GET", "/_cat/indices/nrt-docs?format=json&h=docs.count")[1][0]
        shard = es.call("GET", "/_cat/shards/nrt-docs?format=json&h=docs")[1][0]
        return row["docs.count"], shard["docs"]

    es.bulk([{"index": {"_index": "nrt-docs", "_id": "1"}}, {"x": 1}], "/_bulk")
    assert counts() == ("0", "0")
    es.call("POST", "/nrt-docs/_refresh")
    assert counts() == ("1", "1")
    es.bulk([{"index": {"_index": "nrt-docs", "_id": "2"}}, {"x": 2}, {"index": {"_index": "nrt-docs"}}, {"x": 3},
             {"delete": {"_index": "nrt-docs", "_id": "1"}}], "/_bulk")
    assert counts() == ("0", "0")  # the deleted one is gone at once (deliberate difference), the new ones not yet in
    es.call("POST", "/nrt-docs/_refresh")
    assert counts() == ("2", "2")
    assert es.call("GET", "/nrt-docs/_count")[1]["count"] == 2


# --- _bulk ----------------------------------------------------------------------------------------


def test_bulk_items_in_order_with_conflicts_and_bad_sources(es: Running) -> None:
    lines: list[Any] = [
        {"index": {"_index": "bulk1", "_id": "a"}}, {"n": 1},
        {"create": {"_index": "bulk1", "_id": "a"}}, {"n": 2},
        {"create": {"_index": "bulk1"}}, '{"broken": ',
        {"index": {"_index": "bulk1", "_id": "b"}}, {"n": "not a number"},
        {"update": {"_index": "bulk1", "_id": "a"}}, {"doc": {"m": "x"}},
        {"delete": {"_index": "bulk1", "_id": "zz"}},
        {"index": {"_index": "bulk1"}}, {"n": 5},
        {"delete": {"_index": "bulk1", "_id": "a"}},
    ]
    status, res = es.bulk(lines)
    assert status == 200 and res["errors"] is True and isinstance(res["took"], int)
    items = res["items"]
    assert [next(iter(i)) for i in items] == ["index", "create", "create", "index", "update", "delete", "index", "delete"]
    assert [next(iter(i.values()))["status"] for i in items] == [201, 409, 400, 400, 200, 404, 201, 200]
    first = items[0]["index"]
    assert first["result"] == "created" and first["_version"] == 1 and first["_seq_no"] == 0 and first["_primary_term"] == 1
    assert first["_shards"] == {"total": 2, "successful": 1, "failed": 0}
    conflict = items[1]["create"]["error"]
    assert conflict["type"] == "version_conflict_engine_exception"
    assert conflict["reason"] == "[a]: version conflict, document already exists (current version [1])"
    assert items[2]["create"]["error"]["type"] == "mapper_parsing_exception"
    assert items[2]["create"]["error"]["caused_by"]["type"] == "json_parse_exception"
    bad = items[3]["index"]["error"]
    assert bad["type"] == "mapper_parsing_exception" and bad["caused_by"]["type"] == "illegal_argument_exception"
    assert "failed to parse field [n] of type [long] in document with id 'b'" in bad["reason"]
    assert items[4]["update"]["result"] == "updated" and items[4]["update"]["_version"] == 2
    assert items[5]["delete"]["result"] == "not_found"
    auto_id = items[6]["index"]["_id"]
    assert len(auto_id) == 20 and set(auto_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert items[7]["delete"]["result"] == "deleted" and items[7]["delete"]["_version"] == 3
    assert es.call("GET", "/bulk1/_count")[1]["count"] == 1
    assert es.call("GET", f"/bulk1/_doc/{auto_id}")[1]["_source"] == {"n": 5}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"index": {"_index": "x"}}\n{"a": 1}', "The bulk request must be terminated by a newline [\\n]"),
        ('not json\n{"a": 1}\n', "Malformed action/metadata line [1], expected START_OBJECT but found [not json]"),
        ('{"frobnicate": {"_index": "x"}}\n{"a": 1}\n',
         "Malformed action/metadata line [1], expected field [create], [delete], [index] or [update] but found [frobnicate]"),
        ('{"index": {"_index": "x"}}\n{"a": 1}\n[1, 2]\n{}\n', "Malformed action/metadata line [3], expected START_OBJECT but found [START_ARRAY]"),
    ],
)
def test_malformed_bulk_is_a_400_and_writes_nothing(es: Running, body: str, reason: str) -> None:
    status, res = es.call("POST", "/_bulk", body, ctype="application/x-ndjson")
    assert status == 400
    assert res["error"]["type"] == "illegal_argument_exception" and res["error"]["reason"] == reason
    assert res["error"]["root_cause"][0]["type"] == "illegal_argument_exception"
    assert es.raw("HEAD", "/x")[0] == 404


def test_bulk_with_path_index_and_gzip_body(es: Running) -> None:
    import gzip

    body = gzip.compress(b'{"index":{}}\n{"k":"v"}\n')
    status, _, raw = es.raw("POST", "/gz/_bulk?refresh=true", body, "application/x-ndjson", {"Content-Encoding": "gzip"})
    assert status == 200 and json.loads(raw)["items"][0]["index"]["_index"] == "gz"


def test_body_needs_a_json_content_type(es: Running) -> None:
    status, _, raw = es.raw("POST", "/_search", b"{}", "application/x-www-form-urlencoded")
    assert status == 406
    assert json.loads(raw) == {"error": "Content-Type header [application/x-www-form-urlencoded] is not supported", "status": 406}


# --- documents, mappings, indices -----------------------------------------------------------------


def test_doc_apis_and_dynamic_mapping(es: Running) -> None:
    status, res = es.call("PUT", "/docs/_doc/1?refresh=true", {"@timestamp": "2022-07-09T02:05:11.123Z", "when": "2022-07-09",
                                                                 "msg": "Hello World", "n": 3, "f": 1.5, "ok": True,
                                                                 "obj": {"inner": "x"}})
    assert status == 201 and res["result"] == "created"
    status, res = es.call("PUT", "/docs/_doc/1", {"msg": "again", "n": 4})
    assert status == 200 and res["result"] == "updated" and res["_version"] == 2
    status, got = es.call("GET", "/docs/_doc/1")
    assert got["found"] is True and got["_version"] == 2 and got["_source"] == {"msg": "again", "n": 4}
    assert es.call("GET", "/docs/_doc/nope") == (404, {"_index": "docs", "_type": "_doc", "_id": "nope", "found": False})
    assert es.raw("HEAD", "/docs/_doc/1")[0] == 200
    assert es.call("GET", "/docs/_source/1")[1] == {"msg": "again", "n": 4}
    status, res = es.call("POST", "/docs/_update/1", {"doc": {"extra": "e"}})
    assert res["result"] == "updated" and es.call("GET", "/docs/_doc/1")[1]["_source"]["extra"] == "e"
    assert es.call("POST", "/docs/_update/1", {"doc": {"extra": "e"}})[1]["result"] == "noop"
    assert es.call("PUT", "/docs/_create/1", {"x": 1})[0] == 409
    props = es.call("GET", "/docs/_mapping")[1]["docs"]["mappings"]["properties"]
    assert props["@timestamp"] == {"type": "date"} and props["when"] == {"type": "date"}
    assert props["msg"] == {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
    assert props["n"] == {"type": "long"} and props["f"] == {"type": "float"} and props["ok"] == {"type": "boolean"}
    assert props["obj"] == {"properties": {"inner": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}}}
    assert list(props) == sorted(props)
    assert es.call("DELETE", "/docs/_doc/1")[1]["result"] == "deleted"
    assert es.call("DELETE", "/docs/_doc/1")[0] == 404
    assert es.call("DELETE", "/docs") == (200, {"acknowledged": True})
    status, err = es.call("GET", "/docs/_doc/1")
    assert status == 404 and err["error"]["type"] == "index_not_found_exception" and err["error"]["index"] == "docs"


def test_index_admin(es: Running) -> None:
    status, res = es.call("PUT", "/admin1", {"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                                             "mappings": {"properties": {"tag": {"type": "keyword"}}}})
    assert status == 200
    status, err = es.call("PUT", "/admin1")
    assert status == 400 and err["error"]["type"] == "resource_already_exists_exception"
    status, err = es.call("PUT", "/Bad")
    assert status == 400 and err["error"]["type"] == "invalid_index_name_exception"
    got = es.call("GET", "/admin1")[1]["admin1"]
    assert got["settings"]["index"]["number_of_replicas"] == "0" and got["mappings"]["properties"]["tag"] == {"type": "keyword"}
    assert es.call("PUT", "/admin1/_mapping", {"properties": {"extra": {"type": "long"}}}) == (200, {"acknowledged": True})
    status, err = es.call("PUT", "/admin1/_mapping", {"properties": {"tag": {"type": "long"}}})
    assert status == 400 and err["error"]["type"] == "illegal_argument_exception"
    assert es.call("POST", "/admin1/_refresh")[1]["_shards"]["failed"] == 0
    assert es.call("POST", "/_aliases", {"actions": [{"add": {"index": "admin1", "alias": "a1"}}]}) == (200, {"acknowledged": True})
    assert es.call("GET", "/a1/_count")[1]["count"] == 0
    assert es.call("DELETE", "/admin1")[0] == 200
    assert es.call("GET", "/_alias/a1")[0] == 404


def test_routing_errors_are_es_shaped(es: Running) -> None:
    assert es.call("GET", "/_bulk") == (405, {"error": "Incorrect HTTP method for uri [/_bulk] and method [GET], allowed: [POST, PUT]",
                                              "status": 405})
    assert es.call("GET", "/a/b/c/d") == (400, {"error": "no handler found for uri [/a/b/c/d] and method [GET]", "status": 400})


# --- search ---------------------------------------------------------------------------------------

LOGS = [
    {"@timestamp": "2022-07-09T02:00:05.000Z", "method": "GET", "url": "/hello", "status": 200, "bytes": 120,
     "message": "GET /hello HTTP/1.1 200", "agent": "curl/7.68.0", "ip": "172.31.76.10", "color": "blue"},
    {"@timestamp": "2022-07-09T02:00:40.000Z", "method": "GET", "url": "/index.html", "status": 200, "bytes": 5000,
     "message": "GET /index.html HTTP/1.1 200", "agent": "Mozilla/5.0", "ip": "172.31.76.1", "color": "green"},
    {"@timestamp": "2022-07-09T02:01:10.000Z", "method": "POST", "url": "/api/items", "status": 503, "bytes": 19,
     "message": "POST /api/items HTTP/1.1 503 upstream connect error", "agent": "curl/7.68.0", "ip": "172.31.76.1", "color": "red"},
    {"@timestamp": "2022-07-09T02:03:00.000Z", "method": "PUT", "url": "/api/items/1", "status": 404, "bytes": 0,
     "message": "PUT /api/items/1 HTTP/1.1 404", "agent": "python-requests/2.28", "ip": "10.0.0.7", "color": "blue",
     "tags": ["slow", "retry"]},
    {"@timestamp": "2022-07-10T00:00:00.000Z", "method": "GET", "url": "/hello", "status": 200, "bytes": 120,
     "message": "GET /hello HTTP/1.1 200 next day", "agent": "curl/7.68.0", "ip": "172.31.76.10", "color": "green"},
]


@pytest.fixture(scope="module")
def logs(es: Running) -> Running:
    lines: list[Any] = []
    for i, doc in enumerate(LOGS):
        day = doc["@timestamp"][:10].replace("-", ".")
        lines += [{"index": {"_index": f"logs-{day}", "_id": str(i)}}, doc]
    status, res = es.bulk(lines)
    assert status == 200 and not res["errors"]
    return es


def ids(res: dict[str, Any]) -> list[str]:
    return [h["_id"] for h in res["hits"]["hits"]]


def search(es: Running, body: Any = None, path: str = "/logs-*/_search") -> dict[str, Any]:
    status, res = es.call("POST" if body is not None else "GET", path, body)
    assert status == 200, res
    assert isinstance(res, dict)
    return res


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"match_all": {}}, ["0", "1", "2", "3", "4"]),
        ({"match": {"message": "hello"}}, ["0", "4"]),
        ({"match": {"message": {"query": "index.html upstream", "operator": "or"}}}, ["1", "2"]),
        ({"match": {"message": {"query": "hello day", "operator": "and"}}}, ["4"]),
        ({"match_phrase": {"message": "upstream connect"}}, ["2"]),
        ({"match_phrase": {"message": "connect upstream"}}, []),
        ({"term": {"status": 503}}, ["2"]),
        ({"term": {"method.keyword": "GET"}}, ["0", "1", "4"]),
        ({"term": {"method": "GET"}}, []),
        ({"term": {"method": "get"}}, ["0", "1", "4"]),
        ({"terms": {"color.keyword": ["red", "green"]}}, ["1", "2", "4"]),
        ({"range": {"bytes": {"gte": 100, "lt": 5000}}}, ["0", "4"]),
        ({"range": {"@timestamp": {"gte": "2022-07-09T02:00:30Z", "lte": "2022-07-09T02:01:10Z"}}}, ["1", "2"]),
        ({"range": {"@timestamp": {"lte": "2022-07-09"}}}, ["0", "1", "2", "3"]),
        ({"range": {"@timestamp": {"gt": "2022-07-09||/d"}}}, ["4"]),
        ({"range": {"@timestamp": {"gte": "09/07/2022", "lt": "10/07/2022", "format": "dd/MM/yyyy"}}}, ["0", "1", "2", "3"]),
        ({"exists": {"field": "tags"}}, ["3"]),
        ({"prefix": {"url.keyword": "/api/"}}, ["2", "3"]),
        ({"wildcard": {"agent.keyword": "curl/*"}}, ["0", "2", "4"]),
        ({"wildcard": {"message": "upstr*m"}}, ["2"]),
        ({"match": {"ip": "172.31.76.1"}}, ["1", "2"]),
        ({"query_string": {"query": "status:[400 TO 599] AND NOT method:put"}}, ["2"]),
        ({"query_string": {"query": "hello OR items", "default_field": "url"}}, ["0", "2", "3", "4"]),
        ({"bool": {"must": [{"match": {"message": "get"}}], "filter": [{"term": {"color.keyword": "blue"}}]}}, ["0"]),
        ({"bool": {"should": [{"term": {"status": 503}}, {"term": {"status": 404}}]}}, ["2", "3"]),
        ({"bool": {"should": [{"term": {"status": 503}}, {"term": {"color.keyword": "red"}}, {"term": {"method.keyword": "GET"}}],
                   "minimum_should_match": 2}}, ["2"]),
        ({"bool": {"must_not": [{"term": {"method.keyword": "GET"}}]}}, ["2", "3"]),
        ({"bool": {"must_not": [{"exists": {"field": "tags"}}], "filter": {"term": {"color.keyword": "blue"}}}}, ["0"]),
        ({"ids": {"values": ["3", "1"]}}, ["1", "3"]),
        ({"match_none": {}}, []),
    ],
)
def test_query_types(logs: Running, query: dict[str, Any], expected: list[str]) -> None:
    res = search(logs, {"query": query, "sort": ["_doc"], "size": 20, "_source": False})
    assert sorted(ids(res)) == expected
    assert res["hits"]["total"] == {"value": len(expected), "relation": "eq"}
    assert search(logs, {"query": query}, "/logs-*/_count")["count"] == len(expected)  # type: ignore[comparison-overlap]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("status:503", ["2"]),
        ("method:POST OR method:PUT", ["2", "3"]),
        ("hello", ["0", "4"]),
        ('message:"connect error"', ["2"]),
        ("status:>=404", ["2", "3"]),
        ("url.keyword:\\/api*", ["2", "3"]),
        ("_exists_:tags", ["3"]),
        ("color:blue -status:404", ["0"]),
        ("ip:172.31.76.1", ["1", "2"]),
    ],
)
def test_q_lucene_syntax(logs: Running, q: str, expected: list[str]) -> None:
    res = search(logs, path="/logs-*/_search?size=20&q=" + urllib.parse.quote(q))
    assert sorted(ids(res)) == expected
    assert search(logs, path="/logs-*/_count?q=" + urllib.parse.quote(q))["count"] == len(expected)


def test_q_with_df_and_default_operator(logs: Running) -> None:
    assert sorted(ids(search(logs, path="/logs-*/_search?q=items+1&df=url&default_operator=AND"))) == ["3"]
    assert sorted(ids(search(logs, path="/logs-*/_search?q=items+1&df=url"))) == ["2", "3"]


def test_scores_rank_matches_and_filters_do_not_score(logs: Running) -> None:
    res = search(logs, {"query": {"match": {"message": "upstream connect error"}}})
    assert ids(res)[0] == "2" and res["hits"]["max_score"] == res["hits"]["hits"][0]["_score"] > 0
    res = search(logs, {"query": {"bool": {"filter": [{"term": {"status": 200}}]}}})
    assert {h["_score"] for h in res["hits"]["hits"]} == {0.0}
    res = search(logs, {"query": {"term": {"status": 200}}})
    assert {h["_score"] for h in res["hits"]["hits"]} == {1.0}


def test_sort_paging_and_source_filtering(logs: Running) -> None:
    body = {"sort": [{"@timestamp": {"order": "desc"}}], "size": 2, "from": 1, "_source": ["url", "agent*"]}
    res = search(logs, body)
    assert ids(res) == ["3", "2"]
    hit = res["hits"]["hits"][0]
    assert hit["sort"] == [1657332180000] and hit["_score"] is None and res["hits"]["max_score"] is None
    assert hit["_source"] == {"url": "/api/items/1", "agent": "python-requests/2.28"}
    assert hit["_index"] == "logs-2022.07.09" and hit["_type"] == "_doc"
    res = search(logs, {"sort": [{"bytes": "asc"}, {"url.keyword": "desc"}], "_source": {"excludes": ["message", "agent"]}})
    assert ids(res) == ["3", "2", "0", "4", "1"]  # 0 and 4 tie: the earlier index first
    assert res["hits"]["hits"][2]["sort"] == [120, "/hello"] and "message" not in res["hits"]["hits"][0]["_source"]
    res = search(logs, {"sort": [{"missing_field": {"order": "asc", "unmapped_type": "long"}}, "_doc"], "size": 1, "_source": False})
    assert res["hits"]["hits"][0]["sort"][0] == 9223372036854775807 and "_source" not in res["hits"]["hits"][0]
    res = search(logs, path="/logs-*/_search?sort=status:desc,bytes:asc&size=1")
    assert ids(res) == ["2"]
    res = search(logs, {"sort": [{"tags.keyword": {"order": "asc"}}], "size": 1})
    assert ids(res) == ["3"] and res["hits"]["hits"][0]["sort"] == ["retry"]


def test_track_total_hits_and_fields_option(logs: Running) -> None:
    res = search(logs, {"track_total_hits": 2, "size": 0})
    assert res["hits"]["total"] == {"value": 2, "relation": "gte"} and res["hits"]["hits"] == []
    assert "total" not in search(logs, {"track_total_hits": False})["hits"]
    res = search(logs, path="/logs-*/_search?rest_total_hits_as_int=true&size=0")
    assert res["hits"]["total"] == 5
    res = search(logs, {"query": {"ids": {"values": ["3"]}}, "_source": False, "version": True,
                        "fields": [{"field": "@timestamp", "format": "strict_date_optional_time"}, "tags*", "status"]})
    hit = res["hits"]["hits"][0]
    assert hit["_version"] == 1
    assert hit["fields"] == {"@timestamp": ["2022-07-09T02:03:00.000Z"], "status": [404], "tags": ["slow", "retry"],
                             "tags.keyword": ["slow", "retry"]}


def test_aggregations(logs: Running) -> None:
    body = {
        "size": 0,
        "query": {"range": {"@timestamp": {"gte": "2022-07-09T00:00:00Z", "lt": "2022-07-10T00:00:00Z"}}},
        "aggs": {
            "per_minute": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "min_doc_count": 0,
                                              "extended_bounds": {"min": "2022-07-09T01:59:00Z", "max": "2022-07-09T02:03:00Z"}},
                           "aggs": {"bytes": {"sum": {"field": "bytes"}}}},
            "colors": {"terms": {"field": "color.keyword", "size": 2}},
            "daily": {"date_histogram": {"field": "@timestamp", "calendar_interval": "day", "time_zone": "+08:00"}},
            "status": {"terms": {"field": "status", "order": {"_key": "asc"}}},
            "max_bytes": {"max": {"field": "bytes"}},
            "distinct": {"cardinality": {"field": "agent.keyword"}},
        },
    }
    res = search(logs, body)
    aggs = res["aggregations"]
    buckets = aggs["per_minute"]["buckets"]
    assert [(b["key_as_string"], b["doc_count"]) for b in buckets] == [
        ("2022-07-09T01:59:00.000Z", 0), ("2022-07-09T02:00:00.000Z", 2), ("2022-07-09T02:01:00.000Z", 1),
        ("2022-07-09T02:02:00.000Z", 0), ("2022-07-09T02:03:00.000Z", 1)]
    assert buckets[1]["key"] == 1657332000000 and buckets[1]["bytes"] == {"value": 5120.0}
    assert aggs["colors"] == {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 1,
                              "buckets": [{"key": "blue", "doc_count": 2}, {"key": "green", "doc_count": 1}]}
    assert [(b["key_as_string"], b["doc_count"]) for b in aggs["daily"]["buckets"]] == [("2022-07-09T00:00:00.000+08:00", 4)]
    assert [(b["key"], b["doc_count"]) for b in aggs["status"]["buckets"]] == [(200, 2), (404, 1), (503, 1)]
    assert aggs["max_bytes"] == {"value": 5000.0} and aggs["distinct"] == {"value": 3}
    res = search(logs, {"size": 0, "aggs": {"t": {"terms": {"field": "tags.keyword"}}}}, "/logs-*/_search?typed_keys=true")
    assert [(b["key"], b["doc_count"]) for b in res["aggregations"]["sterms#t"]["buckets"]] == [("retry", 1), ("slow", 1)]


def test_search_errors(logs: Running) -> None:
    status, err = logs.call("POST", "/logs-*/_search", {"query": {"match_al": {}}})
    assert status == 400 and err["error"]["type"] == "parsing_exception"
    assert err["error"]["reason"] == "unknown query [match_al] did you mean [match_all]?"
    status, err = logs.call("POST", "/logs-*/_search", {"query": {"term": {"a": 1, "b": 2}}})
    assert status == 400 and err["error"]["reason"] == "[term] query doesn't support multiple fields, found [a] and [b]"
    status, err = logs.call("GET", "/logs-*/_search?q=" + urllib.parse.quote("status:("))
    assert status == 400 and err["error"]["type"] == "search_phase_execution_exception"
    assert err["error"]["failed_shards"][0]["reason"]["type"] == "query_shard_exception"
    status, err = logs.call("POST", "/logs-*/_search", {"query": {"range": {"@timestamp": {"gte": "yesterday"}}}})
    assert status == 400 and err["error"]["root_cause"][0]["type"] == "parse_exception"
    status, err = logs.call("POST", "/logs-*/_search", {"query": {"term": {"status": "abc"}}})
    assert status == 400 and err["error"]["root_cause"][0]["type"] == "query_shard_exception"
    status, err = logs.call("POST", "/logs-*/_search", {"sort": ["message"]})
    assert status == 400 and err["error"]["root_cause"][0]["type"] == "illegal_argument_exception"
    status, err = logs.call("POST", "/logs-*/_search", {"sort": ["nope"]})
    assert status == 400 and "No mapping found for [nope] in order to sort on" in err["error"]["root_cause"][0]["reason"]
    status, err = logs.call("POST", "/logs-*/_search", {"from": 9995, "size": 10})
    assert status == 400 and "Result window is too large" in err["error"]["root_cause"][0]["reason"]
    status, err = logs.call("POST", "/logs-*/_search", "{not json", ctype="application/json")
    assert status == 400 and err["error"]["type"] == "json_parse_exception"
    status, err = logs.call("POST", "/logs-*/_search", {"quer": {}})
    assert status == 400 and err["error"]["reason"] == "Unknown key for a START_OBJECT in [quer]."
    status, err = logs.call("GET", "/nope/_search")
    assert status == 404 and err["error"]["type"] == "index_not_found_exception"
    assert search(logs, path="/nope*/_search")["hits"]["total"]["value"] == 0


def test_msearch_and_field_caps(logs: Running) -> None:
    body = '{"index": "logs-*"}\n{"query": {"term": {"status": 503}}}\n{"index": "nope"}\n{}\n{}\n{"size": 0}\n'
    status, res = logs.call("POST", "/_msearch", body, ctype="application/x-ndjson")
    assert status == 200
    first, second, third = res["responses"]
    assert first["status"] == 200 and ids(first) == ["2"]
    assert second["status"] == 404 and second["error"]["type"] == "index_not_found_exception"
    assert third["status"] == 200
    status, caps = logs.call("GET", "/logs-*/_field_caps?fields=*")
    fields = caps["fields"]
    assert caps["indices"] == ["logs-2022.07.09", "logs-2022.07.10"]
    assert fields["@timestamp"] == {"date": {"type": "date", "searchable": True, "aggregatable": True}}
    assert fields["message"] == {"text": {"type": "text", "searchable": True, "aggregatable": False}}
    assert fields["message.keyword"]["keyword"]["aggregatable"] is True
    assert fields["agent"] == {"text": {"type": "text", "searchable": True, "aggregatable": False}}
    assert fields["_id"]["_id"]["searchable"] is True


def test_writes_are_searchable_after_refresh_only(es: Running) -> None:
    es.call("PUT", "/nrt", {"settings": {"refresh_interval": "-1"}})
    es.bulk([{"index": {"_index": "nrt", "_id": "1"}}, {"w": "word"}], "/_bulk")
    assert es.call("GET", "/nrt/_count")[1]["count"] == 0
    assert es.call("GET", "/nrt/_doc/1")[1]["found"] is True  # GET is real time, as in ES
    es.call("POST", "/nrt/_refresh")
    assert es.call("GET", "/nrt/_count?q=word")[1]["count"] == 1
