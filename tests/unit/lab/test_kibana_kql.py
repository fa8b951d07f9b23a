"""KQL and Lucene → the query DSL, as Kibana 7.14's ``@kbn/es-query`` builds it
(``sluice.lab.backends.kibana.kql`` and ``.esquery``): the grammar's quirks, typed values,
fields from the index pattern, date fields, wildcards, nesting, errors with Kibana's caret."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.lab.backends.kibana import esquery, kql
from sluice.lab.backends.kibana.kql import Field

FIELDS = [
    Field("@timestamp", "date"), Field("status", "number"), Field("method", "string"), Field("method.keyword", "string"),
    Field("upstream-host", "string"), Field("upstream-host.keyword", "string"), Field("url", "string"), Field("respflags", "string"),
    Field("message", "string"), Field("user.name", "string", "user"), Field("user.id", "number", "user"),
]


def should(*queries: dict[str, Any]) -> dict[str, Any]:
    return {"bool": {"should": list(queries), "minimum_should_match": 1}}


def dsl(query: str, fields: list[Field] | None = FIELDS, tz: str | None = "Europe/Berlin") -> dict[str, Any]:
    return kql.to_dsl(query, fields, time_zone=tz)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"match_all": {}}),
        ("   ", {"match_all": {}}),
        ("*", {"query_string": {"query": "*"}}),
        ("*:*", {"match_all": {}}),
        ("status:503", should({"match": {"status": 503}})),
        ("status : 503", should({"match": {"status": 503}})),
        ("method:GET", should({"match": {"method": "GET"}})),
        ('method:"GET"', should({"match_phrase": {"method": "GET"}})),
        ("url:/service/a", should({"match": {"url": "/service/a"}})),
        ('"upstream-host":10.0.0.1', should({"match": {"upstream-host": "10.0.0.1"}})),
        ("status:5.0", should({"match": {"status": 5}})),  # numbers as JavaScript's Number() reads them
        ("status:0x1F", should({"match": {"status": 31}})),
        ("respflags:true", should({"match": {"respflags": True}})),
        ("respflags:null", should({"match": {"respflags": None}})),
        ("message: hello world", should({"match": {"message": "hello world"}})),  # spaces belong to the value
        ("hello world", {"multi_match": {"type": "best_fields", "query": "hello world", "lenient": True}}),
        ('"hello world"', {"multi_match": {"type": "phrase", "query": "hello world", "lenient": True}}),
        ("503", {"multi_match": {"type": "best_fields", "query": 503, "lenient": True}}),
        ("status:*", should({"exists": {"field": "status"}})),
        ("upst*:x", should({"match": {"upstream-host": "x"}}, {"match": {"upstream-host.keyword": "x"}})),
        ("nope:x", should({"match": {"nope": "x"}})),  # not in the pattern: queried as named
        ("url:/serv*", should({"query_string": {"fields": ["url"], "query": "\\/serv*"}})),
        ("url:a\\*b", should({"match": {"url": "a*b"}})),  # an escaped star is a plain character
        ("fail*", {"query_string": {"query": "fail*"}}),
        ("status >= 500", should({"range": {"status": {"gte": 500}}})),
        ("status<300", should({"range": {"status": {"lt": 300}}})),
        ("@timestamp > now-5m", should({"range": {"@timestamp": {"gt": "now-5m", "time_zone": "Europe/Berlin"}}})),
        ('@timestamp:"2021-09-23"', should({"range": {"@timestamp": {"gte": "2021-09-23", "lte": "2021-09-23", "time_zone": "Europe/Berlin"}}})),
        ("not status:200", {"bool": {"must_not": should({"match": {"status": 200}})}}),
        ("NOT status:200", {"bool": {"must_not": should({"match": {"status": 200}})}}),
        ("status:503 and method:GET", {"bool": {"filter": [should({"match": {"status": 503}}), should({"match": {"method": "GET"}})]}}),
        ("status:503 AND NOT respflags:UF", {"bool": {"filter": [
            should({"match": {"status": 503}}), {"bool": {"must_not": should({"match": {"respflags": "UF"}})}}]}}),
        ("status:(200 or 503)", should(should({"match": {"status": 200}}), should({"match": {"status": 503}}))),
        ("status:(not 200)", {"bool": {"must_not": should({"match": {"status": 200}})}}),
        ("(status:503 or status:504) and method:GET", {"bool": {"filter": [
            should(should({"match": {"status": 503}}), should({"match": {"status": 504}})), should({"match": {"method": "GET"}})]}}),
        ("user:{ name:bob and id:7 }", {"nested": {"path": "user", "score_mode": "none", "query": {"bool": {"filter": [
            should({"match": {"user.name": "bob"}}), should({"match": {"user.id": 7}})]}}}}),
        ("user.n*:bob", should({"nested": {"path": "user", "query": {"match": {"user.name": "bob"}}, "score_mode": "none"}})),
        ("method:\\or", should({"match": {"method": "or"}})),  # an escaped keyword
        ('message:"say \\"hi\\""', should({"match_phrase": {"message": 'say "hi"'}})),
    ],
)
def test_kql_to_dsl(query: str, expected: dict[str, Any]) -> None:
    assert dsl(query) == expected


def test_or_nests_to_the_right_as_kibanas_function_nodes() -> None:
    a, b, c = (should({"match": {"status": n}}) for n in (200, 404, 503))
    assert dsl("status:200 or status:404 or status:503") == should(a, should(b, c))
    assert dsl("status:200 and status:404 and status:503") == {"bool": {"filter": [a, {"bool": {"filter": [b, c]}}]}}
    # "and" binds tighter than "or".
    assert dsl("status:200 or status:404 and status:503") == should(a, {"bool": {"filter": [b, c]}})


def test_without_an_index_pattern_and_without_a_time_zone() -> None:
    assert dsl("status:503", None) == should({"match": {"status": 503}})
    assert dsl("status:*", None) == should({"exists": {"field": "status"}})
    assert dsl('@timestamp:"2021-09-23"', tz=None) == should({"range": {"@timestamp": {"gte": "2021-09-23", "lte": "2021-09-23"}}})
    # Every field of the pattern matched by a wildcard name: Kibana gives up and matches all.
    assert dsl("*:*", [Field("a")]) == {"match_all": {}} and dsl("a*:*", [Field("a")]) == {"match_all": {}}


def test_keywords_need_spaces_and_not_ends_a_value() -> None:
    assert dsl("method:GET or") == should({"match": {"method": "GET or"}})  # no space after "or": part of the value
    assert dsl("status:(200 or)") == should({"match": {"status": "200 or"}})
    assert dsl("status:503or") == should({"match": {"status": "503or"}})
    # Kibana's grammar stops a value where "not " starts, even inside a word.
    with pytest.raises(kql.KQLSyntaxError):
        dsl("message: cannot connect")
    assert dsl('message:"cannot connect"') == should({"match_phrase": {"message": "cannot connect"}})


@pytest.mark.parametrize(
    ("query", "offset", "fragment"),
    [
        ("status:", 7, 'Expected "(", "{" or value but end of input found.'),
        ("(status:200", 11, 'Expected ")" or whitespace but end of input found.'),
        ("status:200 and ", 15, "but end of input found."),
        ('url:"open', 9, "end of input found."),
        ("status:(200 or )", 15, 'but ")" found.'),
    ],
)
def test_syntax_errors_read_as_kibanas(query: str, offset: int, fragment: str) -> None:
    with pytest.raises(kql.KQLSyntaxError) as info:
        kql.parse(query)
    err = info.value
    assert err.offset == offset, str(err)
    assert fragment in err.short
    assert str(err).splitlines()[1:] == [query, "-" * offset + "^"]


def test_js_number() -> None:
    assert [kql.js_number(s) for s in ("503", " 12 ", "-5", "1e3", "1.5", ".5", "0b11", "Infinity", "12px", "1.2.3")] == [
        503, 12, -5, 1000, 1.5, 0.5, 3, float("inf"), None, None]


def test_build_combines_query_and_time_filter_as_build_es_query() -> None:
    time = esquery.time_filter("@timestamp", "2021-09-23T00:00:00.000Z", "2021-09-23T00:15:00.000Z")
    assert time == {"range": {"@timestamp": {"gte": "2021-09-23T00:00:00.000Z", "lte": "2021-09-23T00:15:00.000Z",
                                             "format": "strict_date_optional_time"}}}
    assert esquery.build("status:503", "kuery", FIELDS, [time], time_zone="UTC") == {
        "bool": {"must": [], "filter": [should({"match": {"status": 503}}), time], "should": [], "must_not": []}}
    assert esquery.build("", "kuery", FIELDS, [time]) == {"bool": {"must": [], "filter": [{"match_all": {}}, time], "should": [], "must_not": []}}
    assert esquery.build("status:503 AND respflags:U*", "lucene", FIELDS, [time], time_zone="Asia/Shanghai") == {
        "bool": {"must": [{"query_string": {"query": "status:503 AND respflags:U*", "analyze_wildcard": True, "time_zone": "Asia/Shanghai"}}],
                 "filter": [time], "should": [], "must_not": []}}
    assert esquery.build(" ", "lucene", FIELDS)["bool"]["must"] == [{"match_all": {}}]
    with pytest.raises(ValueError, match="not a supported query language"):
        esquery.build("x", "sql", FIELDS)
