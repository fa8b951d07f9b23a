"""``/stats`` in text and JSON, against the real Envoy's captures and observed formats."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sluice.server import Server

TEXT = "text/plain; charset=UTF-8"
JSON = "application/json"
SUMMARY_RE = re.compile(r"^(\S+): (No recorded values|(P[0-9.]+\([^,()]+,[^,()]+\) ?){10})$")


def record(server: Server, name: str, *values: float) -> None:
    h = server.store.histogram(name)
    for v in values:
        h.record(v)


def flush(server: Server) -> None:
    for h in server.store.histograms.values():
        h.merge()


def test_text_is_sorted_with_histograms_last(call: Any, server: Server, golden: Path) -> None:
    record(server, "cluster.demoappv10.upstream_rq_time", 4)
    status, ctype, body = call("GET", "/stats")
    assert (status, ctype) == (200, TEXT)
    lines = body.splitlines()
    assert body.endswith("\n")
    first_hist = next(i for i, line in enumerate(lines) if not re.match(r"^\S+: \d+$", line))
    scalars, hists = lines[:first_hist], lines[first_hist:]
    assert [s.split(": ")[0] for s in scalars] == sorted(s.split(": ")[0] for s in scalars)
    assert hists and all(SUMMARY_RE.match(h) for h in hists)
    assert [h.split(": ")[0] for h in hists] == sorted(h.split(": ")[0] for h in hists)
    # Nothing is flushed yet: every histogram reads "No recorded values", as in Envoy's capture.
    assert "cluster.demoappv10.upstream_rq_time: No recorded values" in hists
    envoy = (golden / "admin" / "stats_full.txt").read_text().splitlines()
    envoy_hists = [line for line in envoy if not re.match(r"^\S+: \d+$", line)]
    assert envoy_hists == envoy[len(envoy) - len(envoy_hists) :]  # Envoy too lists histograms last
    assert all(line.endswith(": No recorded values") for line in envoy_hists)


def test_histogram_summary_after_flushes(call: Any, server: Server) -> None:
    name = "cluster.demoappv10.upstream_rq_time"
    for v in (0, 0, 3, 3, 46, 47, 122, 123, 124, 253, 256, 1520):
        record(server, name, v)
    flush(server)
    want = (
        f"{name}: P0(0,0) P25(3.033333333333333,3.033333333333333) P50(47.5,47.5) P75(127.5,127.5) "
        "P90(256.6666666666667,256.6666666666667) P95(1550,1550) P99(1550,1550) P99.5(1550,1550) "
        "P99.9(1550,1550) P100(1550,1550)\n"
    )
    assert call("GET", f"/stats?filter={name}$")[2] == want
    flush(server)  # a flush without samples: the interval column turns to nan
    body = call("GET", f"/stats?filter={name}$")[2]
    assert body.startswith(f"{name}: P0(nan,0) P25(nan,3.033333333333333) P50(nan,47.5) ")


def test_histogram_bucket_modes(call: Any, server: Server) -> None:
    name = "cluster.demoappv10.upstream_cx_length_ms"
    record(server, name, 89123)
    flush(server)
    flush(server)
    assert call("GET", f"/stats?filter={name}&histogram_buckets=cumulative")[2] == (
        f"{name}: B0.5(0,0) B1(0,0) B5(0,0) B10(0,0) B25(0,0) B50(0,0) B100(0,0) B250(0,0) B500(0,0) "
        "B1000(0,0) B2500(0,0) B5000(0,0) B10000(0,0) B30000(0,0) B60000(0,0) B300000(0,1) B600000(0,1) "
        "B1.8e+06(0,1) B3.6e+06(0,1)\n"
    )
    disjoint = call("GET", f"/stats?filter={name}&histogram_buckets=disjoint")[2]
    assert "B60000(0,0) B300000(0,1) B600000(0,0)" in disjoint
    assert call("GET", f"/stats?filter={name}&histogram_buckets=detailed")[2] == (
        f"{name}:\n  totals=89000,1000:1\n  intervals=\n  summary=P0(nan,89500) P25(nan,89500) P50(nan,89500) "
        "P75(nan,89500) P90(nan,89500) P95(nan,89500) P99(nan,89500) P99.5(nan,89500) P99.9(nan,89500) "
        "P100(nan,89500)\n"
    )
    body = call("GET", f"/stats?filter={name}&histogram_buckets=cumulative&format=json")[2]
    assert '{"upper_bound":60000,"interval":0,"cumulative":0},{"upper_bound":3e+05,"interval":0,"cumulative":1}' in body
    assert body.endswith('{"upper_bound":3600000,"interval":0,"cumulative":1}]}]}]}')
    detailed = json.loads(call("GET", f"/stats?filter={name}&histogram_buckets=detailed&format=json")[2])
    h = detailed["stats"][0]["histograms"]
    assert h["supported_percentiles"] == [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]
    assert h["details"][0]["totals"] == [{"lower_bound": 89000, "width": 1000, "count": 1}]
    assert h["details"][0]["intervals"] == []
    assert h["details"][0]["percentiles"][0] == {"cumulative": 89500, "interval": None}


def test_filter_usedonly_type(call: Any, server: Server, golden: Path) -> None:
    admin = json.loads((golden / "admin" / "admin.json").read_text())
    server.store.counter("cluster.demoappv10.upstream_rq_200").inc(10)
    server.store.counter("cluster.demoappv10.upstream_rq_2xx").inc(10)
    captured = admin["GET /stats?filter=^cluster\\.demoappv10\\.upstream_rq_2"]
    assert call("GET", "/stats?filter=^cluster%5C.demoappv10%5C.upstream_rq_2") == (200, TEXT, captured["body"])
    used = call("GET", "/stats?usedonly&filter=^cluster.demoappv10")[2]
    assert "cluster.demoappv10.upstream_rq_200: 10\n" in used and "assignment_stale" not in used
    assert "cluster.demoappv10.assignment_stale: 0\n" in call("GET", "/stats?filter=^cluster.demoappv10")[2]
    inverted = call("GET", "/stats?filter=^cluster&invert_filter")[2]
    assert inverted and "cluster." not in "".join(line[:8] for line in inverted.splitlines())
    counters = call("GET", "/stats?type=Counters&filter=upstream_rq_total")[2]
    assert counters == "cluster.demoappv10.upstream_rq_total: 0\ncluster.demoappv11.upstream_rq_total: 0\n"
    assert "server.live: 1\n" in call("GET", "/stats?type=Gauges")[2]
    assert ": No recorded values" not in call("GET", "/stats?type=Gauges")[2]
    assert call("GET", "/stats?type=Histograms")[2].splitlines()[0].endswith("No recorded values")
    assert call("GET", "/stats?type=TextReadouts") == (200, TEXT, "")
    assert call("GET", "/stats?filter=nomatch") == (200, TEXT, "")


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("filter=(bad", "Invalid re2 regex: missing ): (bad"),
        ("format=prom", "usage: /stats?format=(html|active-html|json|prometheus|text)\n\n"),
        ("type=Bogus", "invalid &type= param"),
        ("histogram_buckets=x", "usage: /stats?histogram_buckets=(cumulative|disjoint|detailed|summary|prometheusnative)\n"),
    ],
)
def test_bad_parameters(call: Any, query: str, body: str) -> None:
    assert call("GET", f"/stats?{query}") == (400, TEXT, body)


def test_json(call: Any, server: Server, golden: Path) -> None:
    captured = json.loads((golden / "admin" / "admin.json").read_text())["GET /stats?format=json"]
    record(server, "cluster.demoappv10.upstream_rq_time", 4)
    flush(server)
    status, ctype, body = call("GET", "/stats?format=json")
    assert (status, ctype) == (200, JSON)
    assert body.startswith('{"stats":[{"name":"cluster.demoappv10.assignment_stale","value":0},')
    doc = json.loads(body)
    assert list(doc) == captured["top_level_keys"]
    assert doc["stats"][:3] == captured["first_3_stats"]
    *scalars, hists = doc["stats"]
    assert all(list(s) == ["name", "value"] for s in scalars)
    assert [s["name"] for s in scalars] == sorted(s["name"] for s in scalars)
    assert list(hists["histograms"]) == ["supported_quantiles", "computed_quantiles"]
    assert hists["histograms"]["supported_quantiles"] == [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]
    by_name = {h["name"]: h["values"] for h in hists["histograms"]["computed_quantiles"]}
    assert by_name["cluster.demoappv10.upstream_rq_time"][0] == {"cumulative": 4.05, "interval": 4.05}
    assert by_name["cluster.demoappv10.upstream_cx_length_ms"][0] == {"cumulative": None, "interval": None}
    assert call("GET", "/stats?format=json&filter=nomatch")[2] == '{"stats":[]}'
    assert call("GET", "/stats?format=json&filter=^server.live$")[2] == '{"stats":[{"name":"server.live","value":1}]}'


def test_flush_on_admin(call: Any, server: Server) -> None:
    server.bootstrap.stats_flush_on_admin = True
    record(server, "cluster.demoappv10.upstream_rq_time", 15)
    assert call("GET", "/stats?filter=demoappv10.upstream_rq_time$")[2].startswith("cluster.demoappv10.upstream_rq_time: P0(15.5,15.5) ")


def test_html_format_wraps_the_text(call: Any) -> None:
    status, ctype, body = call("GET", "/stats?format=html&filter=^server.live$")
    assert (status, ctype) == (200, "text/html; charset=UTF-8")
    assert "<pre>\nserver.live: 1\n</pre>" in body
