"""The Elasticsearch stand-in's pieces without a server: dates and date math, the JSON layout
(``?pretty``, ``filter_path``), ``_cat`` tables, the Lucene syntax, settings, the mapping rules."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.lab.backends.elasticsearch import cat, documents, dsl, jsonfmt, lucene
from sluice.lab.backends.elasticsearch.analysis import tokens
from sluice.lab.backends.elasticsearch.datemath import DateError, DateFormat, parse_math, parse_tz, resolve_index_name
from sluice.lab.backends.elasticsearch.documents import MappingBox, filter_source, parse
from sluice.lab.backends.elasticsearch.errors import EsError
from sluice.lab.backends.elasticsearch.mapping import Mapping
from sluice.lab.backends.elasticsearch.settings import load

NOW = 1657332311123  # 2022-07-09T02:05:11.123Z
ISO = DateFormat.of(None)


def iso(ms: int) -> str:
    return ISO.format(ms)


@pytest.mark.parametrize(
    ("text", "round_up", "expected"),
    [
        ("now", False, "2022-07-09T02:05:11.123Z"),
        ("now-15m", False, "2022-07-09T01:50:11.123Z"),
        ("now/d", False, "2022-07-09T00:00:00.000Z"),
        ("now/d", True, "2022-07-09T23:59:59.999Z"),
        ("now-1M/M", False, "2022-06-01T00:00:00.000Z"),
        ("now/w", False, "2022-07-04T00:00:00.000Z"),
        ("2022-07-09||+1d/h", False, "2022-07-10T00:00:00.000Z"),
        ("2022-07-09", True, "2022-07-09T23:59:59.999Z"),
        ("2022-07", True, "2022-07-01T23:59:59.999Z"),
        ("2022-07-09T02:05:11+08:00", False, "2022-07-08T18:05:11.000Z"),
        ("1657332311123", False, "2022-07-09T02:05:11.123Z"),
    ],
)
def test_date_math(text: str, round_up: bool, expected: str) -> None:
    assert iso(parse_math(text, NOW, round_up=round_up)) == expected


def test_date_formats_and_zones() -> None:
    assert DateFormat.of("dd/MM/yyyy HH:mm").parse("09/07/2022 02:05") == 1657332300000
    assert DateFormat.of("yyyy.MM.dd").format(NOW) == "2022.07.09"
    assert DateFormat.of(None).format(NOW, parse_tz("Asia/Shanghai")) == "2022-07-09T10:05:11.123+08:00"
    assert iso(parse_math("now/d", NOW, tz=parse_tz("+08:00"))) == "2022-07-08T16:00:00.000Z"
    with pytest.raises(DateError, match=r"failed to parse date field \[yesterday\] with format \[strict_date_optional_time\|\|epoch_millis\]"):
        ISO.parse("yesterday")
    with pytest.raises(DateError):
        parse_math("now+1x", NOW)


def test_index_name_date_math() -> None:
    assert resolve_index_name("<filebeat-7.14.2-{now/d}-000001>", NOW) == "filebeat-7.14.2-2022.07.09-000001"
    assert resolve_index_name("<logs-{now/M{yyyy.MM}}>", NOW) == "logs-2022.07"
    assert resolve_index_name("<logs-{now/d{yyyy.MM.dd|+12:00}}>", NOW) == "logs-2022.07.09"
    assert resolve_index_name("plain", NOW) == "plain"


def test_pretty_json_is_jacksons_layout() -> None:
    text = jsonfmt.dumps({"a": 1, "b": [], "c": {}, "d": [{"e": 1.0}], "f": "é"}, pretty=True).decode()
    assert text == '{\n  "a" : 1,\n  "b" : [ ],\n  "c" : { },\n  "d" : [\n    {\n      "e" : 1.0\n    }\n  ],\n  "f" : "é"\n}\n'


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("errors,items.*.error,items.*.status", {"errors": True, "items": [{"create": {"status": 201}},
                                                                          {"create": {"status": 409, "error": {"type": "x"}}}]}),
        ("items.*._id", {"items": [{"create": {"_id": "a"}}, {"create": {"_id": "b"}}]}),
        ("**.status", {"items": [{"create": {"status": 201}}, {"create": {"status": 409}}]}),
        ("-items", {"took": 3, "errors": True}),
        ("nothing", {}),
    ],
)
def test_filter_path(spec: str, expected: Any) -> None:
    body = {"took": 3, "errors": True, "items": [{"create": {"_id": "a", "status": 201}},
                                                 {"create": {"_id": "b", "status": 409, "error": {"type": "x"}}}]}
    assert jsonfmt.filter_path(body, spec) == expected


def test_cat_rendering_rules() -> None:
    table = cat.Table([cat.Col("name"), cat.Col("n", right=True), cat.Col("size", right=True), cat.Col("last")],
                      [{"name": "a", "n": 5, "size": cat.ByteSize(1536), "last": "x"},
                       {"name": "bbb", "n": 10, "size": cat.ByteSize(208), "last": None}])
    body, ctype = cat.render(table, {"v": ""})
    assert ctype.startswith("text/plain")
    assert body.decode() == "name  n  size last\na     5 1.5kb x\nbbb  10  208b \n"
    body, _ = cat.render(table, {"format": "json", "bytes": "b", "s": "n:desc", "h": "name,size"})
    assert jsonfmt.loads(body) == [{"name": "bbb", "size": "208"}, {"name": "a", "size": "1536"}]
    assert str(cat.ByteSize(88_150)) == "86kb" and str(cat.ByteSize(5 * 1024 * 1024 + 600_000)) == "5.5mb"


def test_lucene_syntax_to_dsl() -> None:
    q = lucene.to_query(dsl.QueryString(query="status:503 AND -method:GET url:x*"))
    assert isinstance(q, dsl.Bool)
    bad = lucene.to_query(dsl.QueryString(query="status:("))
    assert isinstance(bad, dsl.QueryError) and bad.error is not None and bad.error.type == "query_shard_exception"
    r = lucene.to_query(dsl.QueryString(query="bytes:[10 TO *}"))
    assert isinstance(r, dsl.Range) and r.gte == "10" and r.lt is None and r.lte is None


def test_dsl_errors() -> None:
    with pytest.raises(EsError, match="unknown query"):
        dsl.parse_query({"nope": {}})
    with pytest.raises(EsError, match=r"\[range\] query does not support \[gtx\]"):
        dsl.parse_query({"range": {"a": {"gtx": 1}}})
    with pytest.raises(EsError, match=r"\[bool\] query does not support \[mast\]"):
        dsl.parse_query({"bool": {"mast": []}})
    assert dsl.should_match("75%", 4) == 3 and dsl.should_match(-1, 4) == 3


def test_standard_analyzer_approximation() -> None:
    assert tokens("GET /index.html HTTP/1.1 from 172.31.76.10, it's front-envoy upstream_rq_2xx") == [
        "get", "index.html", "http", "1.1", "from", "172.31.76.10", "it's", "front", "envoy", "upstream_rq_2xx"]


def test_dynamic_mapping_rules_and_strictness() -> None:
    m = Mapping({"dynamic_templates": [{"ids": {"match": "*_id", "mapping": {"type": "keyword"}}}]})
    box = MappingBox(m, 1000)
    parse(box, {"a_id": "x", "ts": "2022-07-09T02:05:11Z", "year": "2022", "n": 1, "f": 2.5, "b": False, "o": {"p": "q"},
                "dotted.key": "v", "list": [1, 2]}, "1")
    props = box.mapping.to_json()["properties"]
    assert props["a_id"] == {"type": "keyword"} and props["ts"] == {"type": "date"}
    assert props["year"]["type"] == "text"  # a bare number is never a date
    assert props["n"] == {"type": "long"} and props["f"] == {"type": "float"} and props["b"] == {"type": "boolean"}
    assert props["dotted"] == {"properties": {"key": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}}}
    assert box.mapping.get("list") is not None and box.mapping.fields["list"].multi
    with pytest.raises(EsError, match="failed to parse field \\[n\\] of type \\[long\\]"):
        parse(MappingBox(box.mapping, 1000), {"n": "abc"}, "2")
    strict = MappingBox(Mapping({"dynamic": "strict", "properties": {"a": {"type": "keyword"}}}), 1000)
    with pytest.raises(EsError, match="strict_dynamic_mapping_exception|mapping set to strict"):
        parse(strict, {"b": 1}, "3")
    with pytest.raises(EsError, match="Limit of total fields \\[2\\] has been exceeded"):
        parse(MappingBox(Mapping(), 2), {"a": 1, "b": 2, "c": 3}, "4")


def _walked(box: MappingBox, src: dict[str, Any]) -> Any:
    """``parse`` by the general walk alone (no shape plan), as an outcome to compare."""
    p = documents._Parse(box, "1")
    try:
        p.walk(src, "")
        row = p.row()
    except EsError as exc:
        box.rollback_doc()
        return exc.to_dict()
    box.commit_doc()
    return row.values, row.k, row.cols, row.explicit, row.ncols


def _planned(box: MappingBox, src: dict[str, Any]) -> Any:
    try:
        row = parse(box, src, "1")
    except EsError as exc:
        return exc.to_dict()
    return row.values, row.k, row.cols, row.explicit, row.ncols


def test_shape_plans_index_as_the_walk_does() -> None:
    spec = {"dynamic_templates": [{"kw": {"match": "k*", "mapping": {"type": "keyword", "ignore_above": 4}}}],
            "properties": {"@timestamp": {"type": "date"}, "off": {"type": "object", "enabled": False}}}
    first = {"@timestamp": "2022-07-09T02:05:11.123Z", "msg": "GET /x", "kx": "abc", "n": 5, "q\"k": "v", "dot.ted": "w",
             "off": {"any": [1]}, "o": {"p": "q", "deep": {"r": 1}}}
    variants: list[dict[str, Any]] = [
        {},  # the same values
        {"msg": "y" * 300, "kx": "abcdef"},  # beyond ignore_above: no doc value, no exact term
        {"n": 2**63 - 1}, {"n": -(2**63)}, {"n": 2**63},  # the last: out of range for a long, an error
        {"@timestamp": "2022-07-09"}, {"@timestamp": "2022-07-09T02:05:11+02:00"}, {"@timestamp": "nope"},
        {"@timestamp": "2022-13-09T02:05:11.123Z"},
        {"off": {"other": "x"}}, {"off": 1}, {"o": {"p": "q", "deep": {"r": "1"}}}, {"o": {"deep": {"r": 1}, "p": "q"}},
        {"n": "5"}, {"n": None}, {"msg": ["a", "b"]}, {"kx": 1.5}, {"o": {"p": "q", "deep": {"r": 1}, "new": 1}},
    ]
    published = MappingBox(Mapping(spec), 1000)
    parse(published, first, "0")  # maps the fields
    for change in variants:
        doc = {**first, **change}
        a, b = MappingBox(published.mapping, 1000), MappingBox(published.mapping.copy(), 1000)
        assert _planned(a, doc) == _walked(b, doc), change
        assert a.mapping.to_json() == b.mapping.to_json() and a.mapping.layout() == b.mapping.layout()
    assert any(p is not None for plans in published.mapping.shapes.values() for p in plans)  # (the plan was used)


def test_source_filtering() -> None:
    src = {"a": {"b": 1, "c": 2}, "d": [{"e": 1, "f": 2}], "g": 3}
    assert filter_source(src, ["a.b", "d.e"], []) == {"a": {"b": 1}, "d": [{"e": 1}]}
    assert filter_source(src, ["a*"], ["a.c"]) == {"a": {"b": 1}}
    assert filter_source(src, [], ["d", "g"]) == {"a": {"b": 1, "c": 2}}


def test_settings_like_the_docker_image() -> None:
    s = load(["http.port=9201"], environ={"cluster.name": "myes", "node.name": "myes01", "discovery.type": "single-node",
                                          "ES_JAVA_OPTS": "-Xmx1g", "HOSTNAME": "abc"})
    assert (s.cluster_name, s.node_name, s.ports, s.get("discovery.type")) == ("myes", "myes01", [9201], "single-node")
    d = load([], environ={"HOSTNAME": "c0ffee"})
    assert d.cluster_name == "docker-cluster" and d.node_name == "c0ffee" and d.ports[:2] == [9200, 9201]
    assert load([], environ={"SLUICE_BIND_ADDRESS": "127.0.0.7"}).host == "127.0.0.7"
    assert load(["network.host=127.0.0.9"], environ={}).host == "127.0.0.9"
    root = load([], environ={"SLUICE_FS_ROOT": "/srv/es", "SLUICE_FS_MOUNTS": '{"/usr/share/elasticsearch/data": "/vol/d"}'})
    assert root.data_path == "/vol/d"
