"""The Filebeat stand-in piece by piece (``sluice.lab.backends.filebeat``): filebeat.yml reading
(dotted keys, ``${VAR}`` expansion, ``-E``, refusals), the labs' three configurations, format
strings and Joda dates, ``when`` conditions, the processors (decode_json_fields on the course's
JSON access log, add_docker_metadata from Docker's config.v2.json, drop_*), the memlog registry,
Docker/CRI lines, container-path globbing, the queue's in-order acknowledgement and the backoff.
End-to-end shipping against a fake Elasticsearch is in ``test_filebeat_shipping.py``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sluice.lab import compose
from sluice.lab.backends.filebeat import app, conditions, config, docker_log, processors
from sluice.lab.backends.filebeat.config import ConfigError, Section
from sluice.lab.backends.filebeat.elasticsearch import Backoff, make_url
from sluice.lab.backends.filebeat.event import Event, StateUpdate, format_ts, parse_rfc3339
from sluice.lab.backends.filebeat.fmtstr import FormatString, MissingField, joda
from sluice.lab.backends.filebeat.fs import ContainerFS
from sluice.lab.backends.filebeat.logs import Log
from sluice.lab.backends.filebeat.pipeline import Acker, MemQueue, Stats
from sluice.lab.backends.filebeat.registry import Registrar, Store

REPO = Path(__file__).resolve().parents[3]
LABS = REPO / "labs"
GOLDEN = REPO / "tests" / "golden" / "envoy-part3-5" / "accesslog" / "logs"
TS: int = parse_rfc3339("2022-07-09T03:18:22.105123456Z") or 0


def quiet() -> Log:
    log = Log(stream=io.StringIO())
    log.lines = []
    return log


def ctx(tmp_path: Path | None = None, mounts: dict[str, str] | None = None) -> processors.Context:
    return processors.Context(ContainerFS(str(tmp_path or ""), mounts), quiet(), "fb-host")


def event(fields: dict[str, Any], ts: int = TS) -> Event:
    return Event(ts, fields)


# --- configuration -----------------------------------------------------------------------------------


def test_dotted_keys_nest_and_merge() -> None:
    tree = config.load(
        "output.elasticsearch.hosts: [a]\noutput:\n  elasticsearch:\n    index: x\nsetup.template.settings:\n  index.number_of_shards: 1\n"
    )
    assert tree["output"] == {"elasticsearch": {"hosts": ["a"], "index": "x"}}
    assert tree["setup"]["template"]["settings"] == {"index": {"number_of_shards": 1}}


def test_variable_expansion() -> None:
    text = "a: ${A}\nb: ${MISSING:fallback}\nc: '${path.data}/registry'\nd: ${N}\ne: ${HOSTS}\nf: x-${A:-}-y\ng: ${LIST_REF}\nlist_src: [1, 2]\n"
    env = {"A": "va", "N": "5", "HOSTS": "h1:9200,h2:9200", "LIST_REF": "${list_src}"}
    tree = config.load(text, environ=env, defaults={"path.data": "/usr/share/filebeat/data"})
    assert tree["a"] == "va" and tree["b"] == "fallback" and tree["c"] == "/usr/share/filebeat/data/registry"
    assert Section(tree).integer("d", 0) == 5
    assert Section(tree).strings("e") == ["h1:9200", "h2:9200"]  # a list from one variable, as ucfg splits it
    assert tree["f"] == "x-va-y" and tree["g"] == [1, 2]
    with pytest.raises(ConfigError, match=r"missing field accessing 'x'.*\$\{NOPE\}"):
        config.load("x: ${NOPE}", environ={})
    with pytest.raises(ConfigError, match="set the logs folder"):
        config.load("x: ${NOPE:?set the logs folder}", environ={})


def test_overrides_index_lists_and_parse_values() -> None:
    tree = config.load(
        "filebeat.inputs:\n- type: log\n  paths: [/a]\n",
        overrides=["filebeat.inputs.0.scan_frequency=50ms", "output.elasticsearch.hosts=['x:1']", "logging.json=true"],
    )
    assert tree["filebeat"]["inputs"][0] == {"type": "log", "paths": ["/a"], "scan_frequency": "50ms"}
    assert tree["output"]["elasticsearch"]["hosts"] == ["x:1"] and tree["logging"]["json"] is True


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10), ("1m30s", 90), ("100ms", 0.1), ("1h", 3600), (5, 5), ("2.5s", 2.5), ("0", 0)])
def test_durations(text: Any, seconds: float) -> None:
    assert config.parse_duration(text) == pytest.approx(seconds)


def test_duration_errors_and_formatting() -> None:
    with pytest.raises(ConfigError, match='invalid duration "10 seconds"'):
        config.parse_duration("10 seconds", "scan_frequency")
    assert [config.format_duration(s) for s in (300, 10, 1.5, 0.25, 3661)] == ["5m0s", "10s", "1.5s", "250ms", "1h1m1s"]


def build(tmp_path: Path, yaml_text: str, *extra: str, env: dict[str, str] | None = None) -> app.Beat:
    cfg = tmp_path / "filebeat.yml"
    cfg.write_text(yaml_text)
    cfg.chmod(0o600)
    beat, _ = app.build_beat(["-c", str(cfg), "--path.data", str(tmp_path / "data"), *extra], environ=env or {}, log=quiet())
    try:
        beat.build()
    finally:
        beat.close()
    return beat


@pytest.mark.parametrize("lab", ["accesslog-with-efk", "container-log-with-efk", "monitoring-and-accesslog"])
def test_lab_configs_build(lab: str, tmp_path: Path) -> None:
    project = compose.load(LABS / lab, environ={})
    mounts = {m.target: str((project.directory / m.source).resolve()) for m in project.services["filebeat"].volumes if m.kind == "bind"}
    env = {"SLUICE_FS_ROOT": str(tmp_path / "root"), "SLUICE_FS_MOUNTS": json.dumps(mounts)}
    beat, opts = app.build_beat(["--strict.perms=false"], environ=env, log=quiet())
    try:
        beat.build()
    finally:
        beat.close()
    assert beat.paths == {
        "home": "/usr/share/filebeat",
        "config": "/usr/share/filebeat",
        "data": "/usr/share/filebeat/data",
        "logs": "/usr/share/filebeat/logs",
    }
    assert opts["metrics"] is False and beat.log.as_json  # logging.metrics.enabled: false, logging.json: true
    (inp,) = beat.inputs
    if lab == "container-log-with-efk":
        assert (inp.type, inp.paths) == ("container", ["/var/lib/docker/containers/*/*.log"])
    else:
        assert (inp.type, inp.paths, inp.scan_frequency) == ("log", ["/logs/envoy/*access.log"], 10.0)
    assert [r.fmt.text for r in beat.workers[0].client.selector.rules] == ["filebeat-%{+yyyy.MM.dd}"]
    assert beat.workers[0].client.url == "http://elasticsearch:9200" and beat.workers[0].bulk_max_size == 50
    assert (beat.queue.size, beat.queue.min_events, beat.queue.flush_timeout) == (4096, 2048, 1.0)
    assert (tmp_path / "root/usr/share/filebeat/data/registry/filebeat/meta.json").read_text().strip() == '{"version": "1"}'


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("filebeat.prospectors: [{type: log, paths: [/x]}]\noutput.console: {}\n", "setting 'filebeat.prospectors' has been removed"),
        (
            "filebeat.inputs: [{type: log, paths: [/x], json.keys_under_root: true}]\noutput.console: {}\n",
            "filebeat.inputs.0.json: JSON decoding",
        ),
        ("filebeat.inputs: [{type: filestream, paths: [/x]}]\noutput.console: {}\n", "input type filestream is not supported"),
        ("filebeat.inputs: [{type: docker, containers.ids: ['*']}]\noutput.console: {}\n", "use type: container"),
        ("filebeat.inputs: [{type: log}]\noutput.console: {}\n", "No paths were defined for input"),
        ("filebeat.inputs: [{type: log, paths: [/x], enabled: false}]\noutput.console: {}\n", "no modules or inputs enabled"),
        (
            "filebeat.inputs: [{type: log, paths: [/x]}]\noutput.console: {}\noutput.elasticsearch: {}\n",
            "more than one namespace configured accessing 'output'",
        ),
        (
            "filebeat.inputs: [{type: log, paths: [/x]}]\noutput.elasticsearch: {hosts: [es], index: 'x-%{+yyyy}'}\n",
            "setup.template.name and setup.template.pattern have to be set",
        ),
        (
            "filebeat.inputs: [{type: log, paths: [/x]}]\noutput.elasticsearch: {hosts: [es], proxy_url: 'http://p'}\n",
            "output.elasticsearch.proxy_url: HTTP proxies",
        ),
        ("filebeat.inputs: [{type: log, paths: [/x]}]\nqueue.disk: {max_size: 1GB}\noutput.console: {}\n", "queue.disk: the disk queue"),
        (
            "filebeat.inputs: [{type: log, paths: [/x]}]\nprocessors: [{decode_json_fields: {fields: [m], bogus: 1}}]\noutput.console: {}\n",
            "unexpected bogus option in decode_json_fields",
        ),
        (
            "filebeat.inputs: [{type: log, paths: [/x]}]\nprocessors: [{dissect: {tokenizer: x}}]\noutput.console: {}\n",
            "dissect is not supported",
        ),
        (
            "filebeat.inputs: [{type: log, paths: [/x]}]\nprocessors: [{drop_event: {when: {network: {ip: private}}}}]\noutput.console: {}\n",
            "network conditions are not supported",
        ),
        (
            "filebeat.inputs: [{type: log, paths: [/x]}]\noutput.elasticsearch: {}\n",
            "missing required field accessing 'output.elasticsearch.hosts'",
        ),
        (
            "filebeat.inputs: [{type: log, paths: [/x]}]\nsetup.ilm.enabled: sometimes\noutput.elasticsearch: {hosts: [es]}\n",
            "setup.ilm.enabled",
        ),
        ("filebeat.inputs: [{type: log, paths: [/x]}]\noutput.elasticsearch: {hosts: ['https://es']}\n", "https is not supported"),
    ],
)
def test_refused_configurations_name_the_setting(tmp_path: Path, yaml_text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        build(tmp_path, yaml_text)


def test_harmless_settings_accepted(tmp_path: Path) -> None:
    text = """
filebeat.inputs:
- type: log
  paths: [/x]
  multiline: {}
  scan.sort: filename
filebeat.config.modules: {path: '${path.config}/modules.d/*.yml', reload.enabled: false}
processors:
- add_host_metadata: ~
- add_cloud_metadata: ~
- add_docker_metadata: {host: "unix:///var/run/docker.sock"}
setup.template.settings: {index.number_of_shards: 1}
setup.kibana: {host: "kibana:5601"}
logging.level: info
logging.to_files: true
max_procs: 2
output.elasticsearch: {hosts: ["es:9200"], max_retries: 3, worker: 2, compression_level: 1}
"""
    beat = build(tmp_path, text)
    assert len(beat.workers) == 2 and beat.workers[0].client.level == 1
    assert any("hosting provider type not detected" in line for line in beat.log.lines or [])


def test_data_path_lock(tmp_path: Path) -> None:
    cfg = tmp_path / "filebeat.yml"
    cfg.write_text("filebeat.inputs: [{type: log, paths: [/x]}]\noutput.console: {}\n")
    cfg.chmod(0o600)
    first, _ = app.build_beat(["-c", str(cfg), "--path.data", str(tmp_path / "data")], environ={}, log=quiet())
    first.build()
    try:
        second, _ = app.build_beat(["-c", str(cfg), "--path.data", str(tmp_path / "data")], environ={}, log=quiet())
        with pytest.raises(ConfigError, match="data path already locked by another beat"):
            second.build()
    finally:
        first.close()
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert set(meta) == {"uuid", "first_start"}


# --- format strings -----------------------------------------------------------------------------------


def test_index_format_strings() -> None:
    ev = event({"agent": {"version": "7.14.2"}, "fields": {"app": "Blue"}, "n": 3})
    assert FormatString("filebeat-%{+yyyy.MM.dd}").run(ev) == "filebeat-2022.07.09"
    assert FormatString("filebeat-%{[agent.version]}-%{+yyyy.MM.dd}").run(ev) == "filebeat-7.14.2-2022.07.09"
    assert FormatString("%{[fields][app]}-%{[n]}").run(ev) == "Blue-3"
    assert FormatString("%{[missing]:none}-x").run(ev) == "none-x"
    with pytest.raises(MissingField):
        FormatString("%{[missing]}").run(ev)
    late = event({}, ts=parse_rfc3339("2022-07-09T23:59:59.999+00:00") or 0)
    early_next_day_utc = event({}, ts=parse_rfc3339("2022-07-09T20:30:00-05:00") or 0)
    assert FormatString("%{+yyyy.MM.dd}").run(late) == "2022.07.09"
    assert FormatString("%{+yyyy.MM.dd}").run(early_next_day_utc) == "2022.07.10"  # always UTC
    with pytest.raises(ConfigError, match="illegal pattern component 'q'"):
        FormatString("%{+yyyy.qq}")


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("yyyy.MM.dd", "2022.07.09"),
        ("yy-M-d", "22-7-9"),
        ("HH:mm:ss.SSS", "03:18:22.105"),
        ("MMM MMMM EEE EEEE", "Jul July Sat Saturday"),
        ("yyyy-MM-dd'T'HH", "2022-07-09T03"),
        ("h a", "3 AM"),
        ("D", "190"),
        ("xxxx.ww", "2022.27"),
        ("''yyyy''", "'2022'"),
        ("Z ZZ", "+0000 +00:00"),
    ],
)
def test_joda_patterns(pattern: str, text: str) -> None:
    sec, ns = divmod(TS, 1_000_000_000)
    assert joda(pattern).format(sec, ns) == text


def test_timestamps() -> None:
    assert format_ts(TS) == "2022-07-09T03:18:22.105Z"  # milliseconds, truncated
    assert parse_rfc3339("2022-07-09T05:18:22+02:00") == 1657336702 * 1_000_000_000
    assert parse_rfc3339("2022-07-09T03:18:22.000000001Z") == 1657336702 * 1_000_000_000 + 1
    assert parse_rfc3339("2022-07-09 03:18:22") is None


# --- conditions ------------------------------------------------------------------------------------------


def test_conditions() -> None:
    ev = event({"status": 503, "method": "GET", "url": "/service/colors", "tags": ["a", "beta"], "http": {"code": 200}, "ok": True})
    yes = [
        {"equals": {"status": 503}},
        {"equals": {"http": {"code": 200}}},
        {"equals": {"method": "GET", "ok": True}},
        {"contains": {"url": "colors"}},
        {"contains": {"tags": "bet"}},
        {"regexp": {"url": "^/service/"}},
        {"range": {"status": {"gte": 500, "lt": 600}}},
        {"range": {"http.code": {"lte": 200}}},
        {"has_fields": ["http.code", "method"]},
        {"or": [{"equals": {"status": 200}}, {"equals": {"status": 503}}]},
        {"and": [{"equals": {"method": "GET"}}, {"not": {"equals": {"status": 200}}}]},
    ]
    no = [
        {"equals": {"status": "503"}},
        {"equals": {"method": "GET", "ok": False}},
        {"contains": {"missing": "x"}},
        {"range": {"method": {"gt": 1}}},
        {"has_fields": ["nope"]},
        {"not": {"has_fields": ["status"]}},
    ]
    assert [conditions.build(c)(ev) for c in yes] == [True] * len(yes)
    assert [conditions.build(c)(ev) for c in no] == [False] * len(no)
    with pytest.raises(ConfigError, match="unknown condition 'matches'"):
        conditions.build({"matches": {"a": 1}})


# --- processors -------------------------------------------------------------------------------------------


def decode(cfg: dict[str, Any], fields: dict[str, Any]) -> Event:
    (proc,) = processors.build([{"decode_json_fields": cfg}], ctx())
    ev = event(fields)
    out = processors.run_all([proc], ev, quiet())
    assert out is not None
    return out


def test_decode_json_fields_on_the_course_access_log() -> None:
    line = (GOLDEN / "seed_json.log").read_text().splitlines()[0]
    ev = decode({"fields": ["message"], "target": "", "overwrite_keys": True}, {"message": line, "log": {"offset": 0}})
    src = json.loads(line)
    assert ev.fields == {"message": line, "log": {"offset": 0}, **src}
    assert isinstance(ev.fields["status"], int) and isinstance(ev.fields["duration"], int) and ev.fields["x-forwarded-for"] is None
    nested = decode({"fields": ["message"], "target": "json"}, {"message": line})
    assert nested.fields == {"message": line, "json": src}
    in_place = decode({"fields": ["message"]}, {"message": '{"a": 1}'})
    assert in_place.fields == {"message": {"a": 1}}


def test_decode_json_fields_details() -> None:
    # overwrite_keys false keeps what is there; true replaces it (maps merge either way)
    kept = decode({"fields": ["message"], "target": ""}, {"message": '{"a": 2, "m": {"y": 2}}', "a": 1, "m": {"x": 1}})
    assert kept.fields is not None and (kept.fields["a"], kept.fields["m"]) == (1, {"x": 1, "y": 2})
    replaced = decode({"fields": ["message"], "target": "", "overwrite_keys": True}, {"message": '{"a": 2}', "a": 1})
    assert replaced.fields is not None and replaced.fields["a"] == 2
    # @timestamp, type and @metadata with overwrite_keys
    special = decode(
        {"fields": ["message"], "target": "", "overwrite_keys": True},
        {"message": '{"@timestamp": "2021-01-02T03:04:05.678Z", "type": "access", "@metadata": {"pipeline": "p"}}'},
    )
    assert format_ts(special.ts_ns) == "2021-01-02T03:04:05.678Z" and special.fields is not None and special.fields["type"] == "access"
    assert special.meta == {"pipeline": "p"} and "@timestamp" not in special.fields
    # numbers: integers stay integers, floats stay floats, beyond int64 a float (Go's TransformNumbers)
    nums = decode({"fields": ["m"], "target": "j"}, {"m": '{"i": 42, "f": 1.5, "e": 1e3, "big": 123456789012345678901, "neg": -7}'})
    assert nums.fields is not None
    j = nums.fields["j"]
    assert (j["i"], j["f"], j["e"], j["neg"]) == (42, 1.5, 1000.0, -7) and type(j["i"]) is int and type(j["big"]) is float
    # max_depth: nested JSON strings decoded only below the limit; into arrays only with process_array
    deep = '{"a": "{\\"b\\": 1}", "l": "[1, 2]"}'
    assert decode({"fields": ["m"], "target": "j"}, {"m": deep}).fields["j"] == {"a": '{"b": 1}', "l": "[1, 2]"}  # type: ignore[index]
    assert decode({"fields": ["m"], "target": "j", "max_depth": 2}, {"m": deep}).fields["j"] == {"a": {"b": 1}, "l": [1, 2]}  # type: ignore[index]
    arr = '["{\\"x\\": 1}"]'
    assert decode({"fields": ["m"], "target": "j", "max_depth": 2}, {"m": arr}).fields == {"m": arr}  # "processing skipped"
    both = decode({"fields": ["m"], "target": "j", "max_depth": 2, "process_array": True}, {"m": arr})
    assert both.fields is not None and both.fields["j"] == [{"x": 1}]


def test_decode_json_fields_failures_leave_the_event() -> None:
    for bad in ("not json", '{"a": 1} trailing', '{"a": NaN}', "", "{"):
        ev = decode({"fields": ["message"], "target": ""}, {"message": bad})
        assert ev.fields == {"message": bad}, bad
    with_key = decode({"fields": ["message"], "target": "", "add_error_key": True}, {"message": "oops"})
    assert with_key.fields is not None and with_key.fields["error"]["field"] == "message" and with_key.fields["error"]["data"] == "oops"
    assert with_key.fields["error"]["message"].startswith("parsing input as JSON: ")
    assert decode({"fields": ["message"]}, {"message": 5}).fields == {"message": 5}  # not a string: ignored
    assert decode({"fields": ["nope"]}, {"message": "{}"}).fields == {"message": "{}"}
    array_root = decode({"fields": ["message"], "target": ""}, {"message": "[1]"})
    assert array_root.fields == {"message": "[1]"}  # "failed to add target to root"


def test_drop_fields_drop_event_and_friends() -> None:
    procs = processors.build(
        [
            {"drop_fields": {"fields": ["agent.ephemeral_id", "ecs", "nope"], "ignore_missing": True}},
            {"add_fields": {"target": "project", "fields": {"name": "envoy"}}},
            {"add_tags": {"tags": ["lab"]}},
            {"rename": {"fields": [{"from": "old", "to": "new"}]}},
            {"drop_event": {"when": {"equals": {"status": 200}}}},
        ],
        ctx(),
    )
    ev = event({"agent": {"ephemeral_id": "x", "name": "a"}, "ecs": {"version": "1"}, "status": 503, "old": 1})
    out = processors.run_all(procs, ev, quiet())
    assert out is not None and out.fields == {
        "agent": {"name": "a"},
        "status": 503,
        "project": {"name": "envoy"},
        "tags": ["lab"],
        "new": 1,
    }
    assert processors.run_all(procs, event({"status": 200}), quiet()) is None
    with pytest.raises(ConfigError, match="the @timestamp field cannot be dropped"):
        processors.build([{"drop_fields": {"fields": ["@timestamp"]}}], ctx())
    with pytest.raises(ConfigError, match="the processor action grok does not exist. Valid actions: add_cloud_metadata"):
        processors.build([{"grok": {}}], ctx())


CID = "4f1c9a8e2b7d6c5a3e9f0b1d2c4a6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d"


def docker_tree(tmp_path: Path) -> ContainerFS:
    folder = tmp_path / "host-docker" / "containers" / CID
    folder.mkdir(parents=True)
    labels = {"com.docker.compose.service": "front-envoy", "app": "envoy"}
    (folder / "config.v2.json").write_text(
        json.dumps({"ID": CID, "Name": "/front-envoy", "Config": {"Image": "envoyproxy/envoy-alpine:v1.21-latest", "Labels": labels}})
    )
    return ContainerFS(str(tmp_path / "root"), {"/var/lib/docker": str(tmp_path / "host-docker")})


def test_add_docker_metadata_from_config_v2(tmp_path: Path) -> None:
    fs = docker_tree(tmp_path)
    c = processors.Context(fs, quiet(), "h")
    (proc,) = processors.build([{"add_docker_metadata": {"host": "unix:///var/run/docker.sock"}}], c)
    ev = proc(event({"log": {"file": {"path": f"/var/lib/docker/containers/{CID}/{CID}-json.log"}}}))
    assert ev is not None and ev.fields is not None
    assert ev.fields["container"] == {
        "id": CID,
        "name": "front-envoy",
        "image": {"name": "envoyproxy/envoy-alpine:v1.21-latest"},
        "labels": {"com_docker_compose_service": "front-envoy", "app": "envoy"},
    }
    (nodedot,) = processors.build([{"add_docker_metadata": {"labels.dedot": False}}], c)
    ev2 = nodedot(event({"log": {"file": {"path": f"/var/lib/docker/containers/{CID}/x.log"}}}))
    assert ev2 is not None and ev2.fields is not None
    assert ev2.fields["container"]["labels"] == {"com": {"docker": {"compose": {"service": "front-envoy"}}}, "app": "envoy"}
    unknown = proc(event({"log": {"file": {"path": "/var/lib/docker/containers/abc/abc-json.log"}}}))
    assert unknown is not None and unknown.fields is not None and unknown.fields["container"] == {"id": "abc"}  # id from the path only
    short = processors.build([{"add_docker_metadata": {"match_fields": ["cid"], "match_source": False, "match_short_id": True}}], c)[0]
    ev3 = short(event({"cid": CID[:12]}))
    assert ev3 is not None and ev3.fields is not None and ev3.fields["container"]["name"] == "front-envoy"


def test_add_host_metadata() -> None:
    (proc,) = processors.build([{"add_host_metadata": {"netinfo.enabled": False}}], ctx())
    ev = proc(event({"host": {"name": "old"}}))
    assert ev is not None and ev.fields is not None
    host = ev.fields["host"]
    assert host["name"] == host["hostname"] == "fb-host" and host["os"]["type"] == "linux" and "architecture" in host


# --- registry ------------------------------------------------------------------------------------------------


def registrar(directory: Path) -> tuple[Store, Registrar]:
    store = Store(str(directory))
    store.open()
    reg = Registrar(store, quiet())
    reg.identify("filebeat::logs::native::11-22", 11, 22, "log", None)
    reg.identify("filebeat::logs::native::33-22", 33, 22, "container", None)
    return store, reg


def test_registry_memlog_format_and_reload(tmp_path: Path) -> None:
    store, reg = registrar(tmp_path / "reg")
    reg.apply(
        [
            StateUpdate("filebeat::logs::native::11-22", "/logs/envoy/a.log", 10),
            StateUpdate("filebeat::logs::native::11-22", "/logs/envoy/a.log", 25),
        ]
    )
    reg.apply([StateUpdate("filebeat::logs::native::33-22", "/var/lib/docker/containers/c/c-json.log", 7)])
    reg.apply([StateUpdate("filebeat::logs::native::33-22", "", 0, remove=True)])
    store.close()
    lines = [json.loads(x) for x in (tmp_path / "reg" / "log.json").read_text().splitlines()]
    assert lines[0] == {"op": "set", "id": 1} and lines[2] == {"op": "set", "id": 2} and lines[4] == {"op": "remove", "id": 3}
    v = lines[1]["v"]
    assert lines[1]["k"] == "filebeat::logs::native::11-22" and v["offset"] == 25 and v["source"] == "/logs/envoy/a.log"
    assert v["FileStateOS"] == {"inode": 11, "device": 22} and (v["id"], v["ttl"], v["type"], v["identifier_name"]) == (
        "native::11-22",
        -1,
        "log",
        "native",
    )
    again = Store(str(tmp_path / "reg"))
    again.open()
    assert list(again.entries) == ["filebeat::logs::native::11-22"] and again.txid == 3
    again.close()


def test_registry_checkpoint_and_broken_log_tail(tmp_path: Path) -> None:
    store, reg = registrar(tmp_path / "reg")
    store.checkpoint_size = 200  # a checkpoint after the first write
    reg.apply([StateUpdate("filebeat::logs::native::11-22", "/a", 5)])
    store.checkpoint_size = 10**9
    reg.apply([StateUpdate("filebeat::logs::native::11-22", "/a", 9)])
    store.close()
    files = sorted(p.name for p in (tmp_path / "reg").iterdir())
    assert files == ["1.json", "active.dat", "log.json", "meta.json"]
    assert json.loads((tmp_path / "reg" / "1.json").read_text())[0]["_key"] == "filebeat::logs::native::11-22"
    with (tmp_path / "reg" / "log.json").open("a") as f:
        f.write('{"op":"set","id":3}\n{"k":"filebeat::logs::native::11-22","v":{"offset"')  # a crash mid-write
    again = Store(str(tmp_path / "reg"))
    again.open()
    assert again.entries["filebeat::logs::native::11-22"]["offset"] == 9 and again.txid == 2
    again.close()


# --- container lines ---------------------------------------------------------------------------------------------


def test_docker_and_cri_lines() -> None:
    d = docker_log.parse(b'{"log":"hello\\n","stream":"stdout","time":"2022-07-09T03:18:22.105123456Z"}\n', "auto")
    assert (d.text, d.stream, d.ts_ns, d.partial) == ("hello\n", "stdout", TS, False)
    p = docker_log.parse(b'{"log":"16k of it","stream":"stderr","time":"2022-07-09T03:18:22Z"}\n', "auto")
    assert p.partial and p.stream == "stderr"
    c = docker_log.parse(b"2022-07-09T03:18:22.105123456Z stdout F hello world\n", "auto")
    assert (docker_log.strip_newline(c.text), c.stream, c.ts_ns, c.partial) == ("hello world", "stdout", TS, False)
    cp = docker_log.parse(b"2022-07-09T03:18:22.105123456Z stderr P part\n", "cri")
    assert (cp.text, cp.partial) == ("part", True)
    for bad in (b"{nope\n", b'{"log":"x","time":"yesterday"}\n', b"garbage\n"):
        with pytest.raises(docker_log.Unparsable):
            docker_log.parse(bad, "auto")
    assert docker_log.strip_newline("a\r\n") == "a"


# --- container paths -----------------------------------------------------------------------------------------------


def test_glob_through_root_and_mounts(tmp_path: Path) -> None:
    (tmp_path / "root/var/log/envoy").mkdir(parents=True)
    (tmp_path / "root/var/log/envoy/a.log").write_text("")
    (tmp_path / "root/var/log/envoy/b.txt").write_text("")
    (tmp_path / "mounted").mkdir()
    (tmp_path / "mounted/front-envoy-access.log").write_text("")
    (tmp_path / "mounted/deep/er").mkdir(parents=True)
    (tmp_path / "mounted/deep/er/x-access.log").write_text("")
    (tmp_path / "single.log").write_text("")
    fs = ContainerFS(
        str(tmp_path / "root"), {"/logs/envoy": str(tmp_path / "mounted"), "/var/log/envoy/c.log": str(tmp_path / "single.log")}
    )
    assert fs.glob("/var/log/envoy/*.log") == ["/var/log/envoy/a.log", "/var/log/envoy/c.log"]
    assert fs.glob("/logs/envoy/*access.log") == ["/logs/envoy/front-envoy-access.log"]
    assert fs.glob("/logs/**/*access.log") == ["/logs/envoy/deep/er/x-access.log", "/logs/envoy/front-envoy-access.log"]
    assert fs.glob("/var/log/envoy/[^a].*") == ["/var/log/envoy/b.txt", "/var/log/envoy/c.log"]
    assert fs.host("/logs/envoy/x") == str(tmp_path / "mounted/x") and fs.host("/etc/x") == str(tmp_path / "root/etc/x")
    assert ContainerFS().host("/etc/x") == "/etc/x"


def test_make_url() -> None:
    assert make_url("elasticsearch:9200", "http", "")[:3] == ("http://elasticsearch:9200", "elasticsearch", 9200)
    assert make_url("http://es", "", "/prefix/")[0] == "http://es:9200/prefix"
    with pytest.raises(ConfigError, match="https is not supported"):
        make_url("es:9200", "https", "")


# --- queue, acknowledgement, backoff ---------------------------------------------------------------------------------


def test_queue_flush_rules_and_in_order_acks() -> None:
    applied: list[int] = []

    async def main() -> None:
        q = MemQueue(size=8, min_events=4, flush_timeout=0.05)
        for i in range(3):
            assert q.put_nowait(Event(0, {"i": i}, None, StateUpdate("k", "/a", i)))
        assert q.ready == 0  # below flush.min_events: waits for flush.timeout
        batch = await asyncio.wait_for(q.get(2), 1)
        assert [e.fields["i"] for e in batch if e.fields] == [0, 1]
        for i in range(3, 11):
            if not q.put_nowait(Event(0, {"i": i}, None, StateUpdate("k", "/a", i))):
                break
        assert len(q) == 8 and not q.put_nowait(Event(0, {}))  # full: harvesters wait
        acker = Acker(lambda ups: applied.extend(u.offset for u in ups), Stats())
        s1, s2, s3 = acker.register(), acker.register(), acker.register()
        acker.ack(s3, [Event(0, None, None, StateUpdate("k", "/a", 30))])
        acker.ack(s2, [Event(0, None, None, StateUpdate("k", "/a", 20))])
        assert applied == [] and not acker.idle.is_set()
        acker.ack(s1, [Event(0, None, None, StateUpdate("k", "/a", 10))])
        assert applied == [10, 20, 30] and acker.idle.is_set()

    asyncio.run(main())


def test_backoff_is_equal_jitter_doubling_to_max() -> None:
    b = Backoff(1.0, 60.0)
    waits = [b.next_wait() for _ in range(9)]
    assert 1.0 <= waits[0] < 2.0 and 2.0 <= waits[1] < 4.0 and 4.0 <= waits[2] < 8.0
    assert all(30.0 <= w < 60.0 for w in waits[6:])
    b.reset()
    assert 1.0 <= b.next_wait() < 2.0


def test_env_file_owner_check_is_skipped_outside_strict(tmp_path: Path) -> None:
    cfg = tmp_path / "filebeat.yml"
    cfg.write_text("filebeat.inputs: [{type: log, paths: [/x]}]\noutput.console: {}\n")
    os.chmod(cfg, 0o666)
    with pytest.raises(ConfigError, match="can only be writable by the owner"):
        app.build_beat(["-c", str(cfg)], environ={}, log=quiet())
    beat, _ = app.build_beat(["-c", str(cfg), "--strict.perms=false", "--path.data", str(tmp_path / "d")], environ={}, log=quiet())
    assert beat.paths["data"] == str(tmp_path / "d")


def test_input_fields_tags_index_and_builtins(tmp_path: Path) -> None:
    text = """
filebeat.inputs:
- type: log
  paths: [/x]
  tags: [envoy]
  fields: {app: front, env: lab}
  index: "custom-%{[agent.name]}-%{+yyyy.MM.dd}"
  processors:
  - add_fields: {target: "", fields: {from_input: true}}
- type: log
  paths: [/y]
  fields_under_root: true
  fields: {service: {name: svc}}
  publisher_pipeline.disable_host: true
tags: [global]
fields: {env: global, region: r1}
name: shipper-1
processors:
- drop_fields: {fields: [from_input]}
output.console: {}
"""
    beat = build(tmp_path, text)
    first, second = (inp.client for inp in beat.inputs)
    ev = first.process(Event(TS, {"message": "m", "agent": {"name": "mine"}}, None, StateUpdate("k", "/x", 2)))
    assert ev.fields is not None and ev.private is not None and ev.private.offset == 2
    assert ev.fields["tags"] == ["global", "envoy"]
    assert ev.fields["fields"] == {"env": "lab", "region": "r1", "app": "front"}  # the input's fields win over the global ones
    assert "from_input" not in ev.fields  # global processors run after the input's
    assert ev.fields["agent"]["name"] == "mine" and ev.fields["agent"]["type"] == "filebeat"  # built-ins never overwrite
    assert ev.fields["host"] == {"name": "shipper-1"} and ev.fields["ecs"] == {"version": "1.10.0"}
    assert ev.meta == {"raw_index": "custom-filebeat-2022.07.09"}  # static beat fields only, as add_formatted_index
    ev2 = second.process(Event(TS, {"message": "m"}))
    assert ev2.fields is not None and ev2.fields["service"] == {"name": "svc"} and ev2.fields["fields"] == {"env": "global", "region": "r1"}
    assert "host" not in ev2.fields
    dropped = Event(TS, {"message": "m"}, None, StateUpdate("k", "/x", 9))
    procs = processors.build([{"drop_event": {}}], ctx())
    first.procs = procs
    out = first.process(dropped)
    assert out.fields is None and out.private is not None and out.private.offset == 9  # the state still travels
