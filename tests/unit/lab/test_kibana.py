"""The Kibana stand-in's pieces without a network: settings as the image assembles them, time
ranges (``@elastic/datemath``), Discover's auto interval and request, ``_field_caps`` read as
Kibana reads it, the command line, and ``static/common.js`` (rison, hashes, dates) under node."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sluice.lab.backends.kibana import datemath, discover, settings
from sluice.lab.backends.kibana.index_patterns import read_field_caps
from sluice.lab.backends.kibana.kql import Field

REPO = Path(__file__).resolve().parents[3]
COMMON_JS = REPO / "sluice" / "lab" / "backends" / "kibana" / "static" / "common.js"

# --- settings --------------------------------------------------------------------------------


def test_image_defaults_and_the_labs_environment() -> None:
    s = settings.load([], {"ELASTICSEARCH_HOSTS": '["http://myes01:9200"]', "ELASTICSEARCH_URL": "http://myes01:9200",
                           "SLUICE_BIND_ADDRESS": "127.31.76.16", "HOSTNAME": "kibana"})
    assert s.es_hosts == ["http://myes01:9200"]
    assert (s.host, s.port, s.index, s.server_name) == ("127.31.76.16", 5601, ".kibana", "kibana")
    assert s.warnings == ["ELASTICSEARCH_URL is not read by the kibana 7.x image (set ELASTICSEARCH_HOSTS); ignored"]
    assert s.get("monitoring.ui.container.elasticsearch.enabled") is True and s.unused == []
    # Outside a lab and without variables: the image's kibana.yml.
    s = settings.load([], {})
    assert s.es_hosts == ["http://elasticsearch:9200"] and s.host == "127.0.0.1"


def test_yml_then_variables_then_command_line(tmp_path: Path) -> None:
    yml = tmp_path / "kibana.yml"
    yml.write_text("server:\n  port: 5700\n  name: from-yml\nelasticsearch.hosts: ['http://${ES_HOST}:9200']\nkibana.index: .kib\n"
                   "elasticsearch.customHeaders: {X-Lab: one}\n")
    env = {"ES_HOST": "es", "SERVER_NAME": "from-env", "SERVER_PORT": "5800"}
    s = settings.load(["-c", str(yml)], env)
    assert (s.port, s.server_name, s.es_hosts, s.index, s.custom_headers) == (5800, "from-env", ["http://es:9200"], ".kib", {"X-Lab": "one"})
    s = settings.load(["-c", str(yml), "--port", "0", "-H", "127.0.0.9", "-e", "http://a:9200,http://b:9201",
                       "--server.name=cli", "--logging.json=false", "-q"], env)
    assert (s.port, s.host, s.es_hosts, s.server_name) == (0, "127.0.0.9", ["http://a:9200", "http://b:9201"], "cli")
    assert s.log_json is False and s.flag("logging.quiet")
    s = settings.load(["--elasticsearch.hosts=http://c:9200", "--host=localhost"], {})
    assert s.es_hosts == ["http://c:9200"] and s.host == "127.0.0.1"


def test_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(settings.SettingsError, match="ENOENT: no such file or directory, open '/nope/kibana.yml'"):
        settings.load(["-c", "/nope/kibana.yml"], {})
    with pytest.raises(settings.SettingsError, match="expected URI with scheme"):
        settings.load(["-e", "myes01:9200"], {}).es_hosts  # noqa: B018
    with pytest.raises(settings.SettingsError, match="could not parse array value"):
        settings.load([], {"ELASTICSEARCH_HOSTS": '["http://a'}).es_hosts  # noqa: B018
    with pytest.raises(settings.SettingsError, match="expected value of type \\[number\\]"):
        settings.load(["-p", "web"], {}).port  # noqa: B018
    with pytest.raises(settings.SettingsError, match="unknown option"):
        settings.load(["-x"], {})


def test_container_paths_through_the_lab_mounts(tmp_path: Path) -> None:
    conf = tmp_path / "mounted.yml"
    conf.write_text("server.name: mounted\npath.data: /usr/share/kibana/data\n")
    env = {"SLUICE_FS_ROOT": str(tmp_path / "root"), "SLUICE_FS_MOUNTS": json.dumps({"/usr/share/kibana/config/kibana.yml": str(conf)})}
    s = settings.load([], env)
    assert s.server_name == "mounted" and s.data_path == str(tmp_path / "root" / "usr/share/kibana/data")


# --- datemath and Discover's request ------------------------------------------------------------

NOW = dt.datetime(2021, 9, 23, 10, 17, 28, 123000, tzinfo=dt.UTC)  # a Thursday


@pytest.mark.parametrize(
    ("text", "round_up", "tz", "expected"),
    [
        ("now", False, "UTC", "2021-09-23T10:17:28.123Z"),
        ("now-15m", False, "UTC", "2021-09-23T10:02:28.123Z"),
        ("now-1h", False, "UTC", "2021-09-23T09:17:28.123Z"),
        ("now-7d", False, "UTC", "2021-09-16T10:17:28.123Z"),
        ("now-1M", False, "UTC", "2021-08-23T10:17:28.123Z"),
        ("now/d", False, "UTC", "2021-09-23T00:00:00.000Z"),
        ("now/d", True, "UTC", "2021-09-23T23:59:59.999Z"),
        ("now/d", False, "Asia/Shanghai", "2021-09-22T16:00:00.000Z"),  # midnight in the browser's zone
        ("now/w", False, "UTC", "2021-09-19T00:00:00.000Z"),  # weeks start on Sunday
        ("now-1d/d", False, "UTC", "2021-09-22T00:00:00.000Z"),
        ("now+90s", False, "UTC", "2021-09-23T10:18:58.123Z"),
        ("2021-09-23T00:00:00.000Z", False, "Asia/Shanghai", "2021-09-23T00:00:00.000Z"),
        ("2021-09-23T08:00:00", False, "Asia/Shanghai", "2021-09-23T00:00:00.000Z"),  # no offset: the browser's zone
        ("2021-09-23T00:00:00.000Z||+1h/h", True, "UTC", "2021-09-23T01:59:59.999Z"),
    ],
)
def test_datemath(text: str, round_up: bool, tz: str, expected: str) -> None:
    assert datemath.iso(datemath.parse(text, now=NOW, tz=datemath.zone(tz), round_up=round_up)) == expected


@pytest.mark.parametrize("bad", ["", "yesterday", "now-15x", "now/2d", "now-"])
def test_datemath_errors(bad: str) -> None:
    with pytest.raises(datemath.DateMathError):
        datemath.parse(bad, now=NOW)


@pytest.mark.parametrize(
    ("span", "choice", "expression", "description", "param", "scaled"),
    [
        (15 * 60_000, "auto", "30s", "30 seconds", {"fixed_interval": "30s"}, False),
        (3_600_000, "auto", "1m", "minute", {"fixed_interval": "1m"}, False),
        (24 * 3_600_000, "auto", "30m", "30 minutes", {"fixed_interval": "30m"}, False),
        (7 * 86_400_000, "auto", "3h", "3 hours", {"fixed_interval": "3h"}, False),
        (30 * 86_400_000, "auto", "12h", "12 hours", {"fixed_interval": "12h"}, False),
        (90 * 86_400_000, "auto", "1d", "day", {"calendar_interval": "1d"}, False),
        (365 * 86_400_000, "auto", "1w", "week", {"calendar_interval": "1w"}, False),
        (15 * 60_000, "m", "1m", "minute", {"fixed_interval": "1m"}, False),
        (15 * 60_000, "s", "5s", "5 seconds", {"fixed_interval": "5s"}, True),  # 900 > maxBars: calcAutoIntervalLessThan
        (7 * 86_400_000, "M", "1M", "month", {"calendar_interval": "1M"}, False),
        (10_000, "auto", "200ms", "200 milliseconds", {"fixed_interval": "200ms"}, False),
    ],
)
def test_auto_interval_as_time_buckets(span: int, choice: str, expression: str, description: str, param: dict[str, str], scaled: bool) -> None:
    iv = discover.interval_for(choice, span)
    assert (iv.expression, iv.description, iv.es_param, iv.scaled) == (expression, description, param, scaled)


def test_discover_search_body() -> None:
    span = discover.time_range("now-15m", "now", now=NOW, tz=datemath.UTC)
    fields = [Field("@timestamp", "date"), Field("status", "number")]
    body = discover.search_body(time_field="@timestamp", fields=fields, query="status:503", language="kuery", span=span,
                                interval=discover.interval_for("auto", span.duration_ms), time_zone="Europe/Berlin")
    assert body == {
        "version": True, "size": 500,
        "sort": [{"@timestamp": {"order": "desc", "unmapped_type": "boolean"}}],
        "_source": {"excludes": []}, "stored_fields": ["*"], "script_fields": {}, "track_total_hits": True,
        "query": {"bool": {"must": [], "filter": [
            {"bool": {"should": [{"match": {"status": 503}}], "minimum_should_match": 1}},
            {"range": {"@timestamp": {"gte": "2021-09-23T10:02:28.123Z", "lte": "2021-09-23T10:17:28.123Z", "format": "strict_date_optional_time"}}},
        ], "should": [], "must_not": []}},
        "aggs": {"2": {"date_histogram": {"field": "@timestamp", "fixed_interval": "30s", "time_zone": "Europe/Berlin", "min_doc_count": 1}}},
    }
    plain = discover.search_body(time_field=None, fields=[], query="", language="lucene", span=None, interval=None, time_zone="UTC", size=5)
    assert plain["sort"] == [{"_score": {"order": "desc"}}] and "aggs" not in plain and plain["size"] == 5
    with pytest.raises(datemath.DateMathError, match="before its start"):
        discover.time_range("now", "now-1h", now=NOW, tz=datemath.UTC)
    with pytest.raises(ValueError, match="unknown interval"):
        discover.interval_for("fortnight", 1000)


# --- _field_caps → index pattern fields ------------------------------------------------------------


def test_read_field_caps_as_kibana() -> None:
    def cap(t: str, s: bool = True, a: bool = True, **kw: Any) -> dict[str, Any]:
        return {t: {"type": t, "searchable": s, "aggregatable": a, **kw}}

    caps = {
        "@timestamp": cap("date"), "url": cap("text", a=False), "url.keyword": cap("keyword"), "status": cap("long"),
        "agent": cap("object", s=False, a=False), "agent.name": cap("keyword"),
        "refs": cap("nested", s=False, a=False), "refs.id": cap("keyword"),
        "mixed": {"long": {"type": "long", "searchable": True, "aggregatable": True, "indices": ["a"]},
                  "keyword": {"type": "keyword", "searchable": True, "aggregatable": True, "indices": ["b"]}},
        "both_numbers": {"long": {"type": "long", "searchable": True, "aggregatable": True}, "double": {"type": "double", "searchable": True, "aggregatable": True}},
        "_id": cap("_id"), "odd": cap("flattened"),
    }
    fields = {f["name"]: f for f in read_field_caps(caps)}
    assert "agent" not in fields and "refs" not in fields
    assert fields["@timestamp"] == {"name": "@timestamp", "type": "date", "esTypes": ["date"], "searchable": True, "aggregatable": True,
                                    "readFromDocValues": True}
    assert fields["url"]["readFromDocValues"] is False and fields["url.keyword"]["subType"] == {"multi": {"parent": "url"}}
    assert "subType" not in fields["agent.name"] and fields["refs.id"]["subType"] == {"nested": {"path": "refs"}}
    assert fields["mixed"]["type"] == "conflict" and fields["mixed"]["conflictDescriptions"] == {"long": ["a"], "keyword": ["b"]}
    assert fields["both_numbers"]["type"] == "number"
    assert fields["_id"]["type"] == "string" and fields["_id"]["readFromDocValues"] is False
    assert fields["odd"]["type"] == "unknown"


# --- the command line ------------------------------------------------------------------------------


def test_cli_version_help_and_fatal_settings() -> None:
    run = lambda *a: subprocess.run([sys.executable, "-m", "sluice.lab.backends.kibana", *a], capture_output=True, text=True, timeout=30)
    r = run("--version")
    assert (r.returncode, r.stdout) == (0, "7.14.2\n")
    r = run("--help")
    assert r.returncode == 0 and "-e, --elasticsearch <uri1,uri2>" in r.stdout
    r = run("-e", "nope", "-p", "0")
    assert r.returncode == 64 and "FATAL  Error: [config validation of [elasticsearch].hosts]" in r.stderr


# --- static/common.js under node ----------------------------------------------------------------


def common(calls: list[tuple[str, list[Any]]]) -> list[Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to test static/common.js (the pages' rison and dates): install Node.js (Debian: nodejs)")
    script = (
        f"process.env.TZ = 'Asia/Shanghai'; const K = require({json.dumps(str(COMMON_JS))});"
        "const calls = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const out = calls.map(([f, args]) => { try { const v = K[f](...args); return v === undefined ? null : v; } catch (e) { return {error: e.message}; } });"
        "process.stdout.write(JSON.stringify(out));"
    )
    r = subprocess.run([node, "-e", script], input=json.dumps(calls), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_common_js_rison_hash_and_dates() -> None:
    state = {"_g": {"refreshInterval": {"pause": True, "value": 0}, "time": {"from": "now-15m", "to": "now"}},
             "_a": {"columns": ["_source"], "index": "0b7c7f20-1c55-11ec-9b2a-3b0a5c1d2e4f", "interval": "auto",
                    "query": {"language": "kuery", "query": "status:503 and url:\"/a b\""}, "sort": []}}
    out = common([
        ("risonEncode", [state["_g"]]), ("risonEncode", [state["_a"]]), ("risonEncode", ["it's!"]), ("risonEncode", [[1, -2.5, None, False, ""]]),
        ("risonDecode", ["(a:!(1,-2.5,!n,!f,''),b:'it!'s!!',c:now-15m)"]), ("risonDecode", ["(a:"]),
        ("writeHash", [state]), ("fmtDate", ["2021-09-23T02:17:28.123Z"]),
        ("flatten", [{"a": {"b": 1, "c": [1, 2]}, "d": None}, "", []]), ("fmtValue", [[1, {"x": 2}]]),
    ])
    assert out[0] == "(refreshInterval:(pause:!t,value:0),time:(from:now-15m,to:now))"
    assert out[1] == ("(columns:!(_source),index:'0b7c7f20-1c55-11ec-9b2a-3b0a5c1d2e4f',interval:auto,"
                      "query:(language:kuery,query:'status:503 and url:\"/a b\"'),sort:!())")
    assert out[2] == "'it!'s!!'" and out[3] == "!(1,-2.5,!n,!f,'')"
    assert out[4] == {"a": [1, -2.5, None, False, ""], "b": "it's!", "c": "now-15m"}
    assert "error" in out[5]
    assert out[6].startswith("#/?_g=(refreshInterval:(pause:!t,value:0),time:(from:now-15m,to:now))&_a=(")
    (back,) = common([("readHash", [out[6]])])
    assert back == state
    assert out[7] == "Sep 23, 2021 @ 10:17:28.123"  # the browser's zone
    assert out[8] == [["a.b", 1], ["a.c", [1, 2]], ["d", None]] and out[9] == '1, {"x":2}'
