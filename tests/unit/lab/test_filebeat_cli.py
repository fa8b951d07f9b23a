"""The Filebeat stand-in's container lab and command line (``python -m sluice.lab.backends.filebeat``):
the container input with add_docker_metadata on a fabricated /var/lib/docker tree, ``--once``,
SIGTERM, refusals and exit codes, ``--strict.perms``, ``output.console``, and the hand-run
throughput check: ``FILEBEAT_THROUGHPUT=1 pytest tests/unit/lab/test_filebeat_cli.py -k throughput -s``
(100 000 lines through ``_bulk``; not a timed test).

The recording fake Elasticsearch and the helpers are ``test_filebeat_shipping.py``'s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_filebeat_shipping import (  # noqa: E402  (the sibling test module holds the fake Elasticsearch)
    CID,
    FAST,
    GOLDEN_JSON_LOG,
    LABS,
    REPO,
    FakeES,
    Running,
    es,
    fast_input,
    lab_env,
    registry_offsets,
    wait_for,
)

__all__ = ["es"]  # the fixture, imported for the tests below


# --- the container lab ------------------------------------------------------------------------------


def docker_line(text: str, stream: str, ts: str) -> str:
    return json.dumps({"log": text, "stream": stream, "time": ts}) + "\n"


def make_container(tmp_path: Path, lines: list[str]) -> Path:
    folder = tmp_path / "docker" / "containers" / CID
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "ID": CID,
        "Name": "/container-log-with-efk_front-envoy_1",
        "Image": "sha256:0123",
        "Config": {
            "Image": "envoyproxy/envoy-alpine:v1.21-latest",
            "Labels": {"com.docker.compose.service": "front-envoy", "com.docker.compose.project": "container-log-with-efk"},
        },
    }
    (folder / "config.v2.json").write_text(json.dumps(config))
    log = folder / f"{CID}-json.log"
    log.write_text("".join(lines))
    return log


def test_container_input_with_docker_metadata(es: FakeES, tmp_path: Path) -> None:
    env, _ = lab_env("container-log-with-efk", tmp_path)
    access = '{"status":200,"method":"GET","duration":3}'
    log = make_container(
        tmp_path,
        [
            docker_line(access + "\n", "stdout", "2022-07-09T03:18:22.123456789Z"),
            docker_line("part-one ", "stderr", "2022-07-09T03:18:23.000000001Z"),
            docker_line("part-two\n", "stderr", "2022-07-09T03:18:23.000000002Z"),
            "not json at all\n",
            docker_line("tail\n", "stdout", "2022-07-09T03:18:24Z"),
        ],
    )
    argv = ["--strict.perms=false", "-E", f'output.elasticsearch.hosts=["{es.url}"]']
    for item in [*FAST, *fast_input()]:
        argv += ["-E", item]
    run = Running(argv, env)
    path = f"/var/lib/docker/containers/{CID}/{CID}-json.log"
    try:
        es.wait(lambda: len(es.docs) == 3)
        wait_for(lambda: registry_offsets(tmp_path / "root").get(path) == log.stat().st_size, what="the registry")
    finally:
        run.stop()
    day = "2022.07.09"
    assert [i for i, _ in es.docs] == [f"filebeat-{day}"] * 3  # the index date is the line's own time
    first, joined, tail = (d for _, d in es.docs)
    assert first["message"] == access and first["json"] == {"status": 200, "method": "GET", "duration": 3}
    assert first["@timestamp"] == "2022-07-09T03:18:22.123Z" and first["stream"] == "stdout"
    assert first["input"] == {"type": "container"} and first["log"] == {"offset": 0, "file": {"path": path}}
    assert first["container"] == {
        "id": CID,
        "name": "container-log-with-efk_front-envoy_1",
        "image": {"name": "envoyproxy/envoy-alpine:v1.21-latest"},
        "labels": {"com_docker_compose_service": "front-envoy", "com_docker_compose_project": "container-log-with-efk"},
    }
    assert joined["message"] == "part-one part-two" and joined["stream"] == "stderr" and "json" not in joined
    assert joined["log"]["offset"] == len(log.read_text().splitlines(keepends=True)[0].encode())
    assert tail["message"] == "tail" and tail["container"]["name"] == "container-log-with-efk_front-envoy_1"
    assert run.logged(f"Skipping unparsable line in file: {path}")


def test_container_stream_filter(es: FakeES, tmp_path: Path) -> None:
    env, _ = lab_env("container-log-with-efk", tmp_path)
    log = make_container(
        tmp_path, [docker_line("out\n", "stdout", "2022-07-09T00:00:00Z"), docker_line("err\n", "stderr", "2022-07-09T00:00:01Z")]
    )
    argv = ["--strict.perms=false", "-E", f'output.elasticsearch.hosts=["{es.url}"]', "-E", "filebeat.inputs.0.stream=stderr"]
    for item in [*FAST, *fast_input()]:
        argv += ["-E", item]
    run = Running(argv, env)
    try:
        es.wait(lambda: len(es.docs) == 1)
        wait_for(lambda: log.stat().st_size in registry_offsets(tmp_path / "root").values(), what="the registry")
    finally:
        run.stop()
    assert es.messages() == ["err"]


# --- the command line ---------------------------------------------------------------------------------


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "sluice.lab.backends.filebeat", *args], env=full_env, capture_output=True, text=True, timeout=60
    )


def test_cli_once_ships_and_exits(es: FakeES, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "x-access.log").write_text('{"n":1}\n{"n":2}\n')
    cfg = LABS / "accesslog-with-efk" / "filebeat" / "filebeat.yaml"
    args = ["-e", "--once", "--strict.perms=false", "--root", str(tmp_path / "root"), "--mount", f"/usr/share/filebeat/filebeat.yml={cfg}"]
    args += ["--mount", f"/logs/envoy={logs}", "-E", f'output.elasticsearch.hosts=["{es.url}"]', "-E", "queue.mem.flush.timeout=10ms"]
    proc = cli(args, {"HOSTNAME": "filebeat"})
    assert proc.returncode == 0, proc.stderr
    assert [d["n"] for _, d in es.docs] == [1, 2]
    lines = [json.loads(line) for line in proc.stderr.splitlines()]  # logging.json: true
    messages = [x["message"] for x in lines]
    assert "Harvester started for file: /logs/envoy/x-access.log" in messages
    assert f"Connection to backoff(elasticsearch({es.url})) established" in messages
    assert messages[-1] == "filebeat stopped."
    assert (tmp_path / "root/usr/share/filebeat/data/registry/filebeat/log.json").exists()


def test_cli_sigterm_stops_cleanly(es: FakeES, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "x-access.log").write_text('{"n":1}\n')
    cfg = LABS / "accesslog-with-efk" / "filebeat" / "filebeat.yaml"
    args = [
        "--strict.perms=false",
        "--root",
        str(tmp_path / "root"),
        "--mount",
        f"/usr/share/filebeat/filebeat.yml={cfg}",
        "--mount",
        f"/logs/envoy={logs}",
    ]
    args += ["-E", f'output.elasticsearch.hosts=["{es.url}"]', "-E", "queue.mem.flush.timeout=10ms"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOSTNAME": "filebeat"}
    proc = subprocess.Popen([sys.executable, "-m", "sluice.lab.backends.filebeat", *args], env=env, stderr=subprocess.PIPE, text=True)
    try:
        es.wait(lambda: len(es.docs) == 1, timeout=20)
        wait_for(lambda: registry_offsets(tmp_path / "root").get("/logs/envoy/x-access.log") == 8, what="the registry")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    messages = [json.loads(line)["message"] for line in err.splitlines()]
    assert messages[-7:] == [
        "Stopping filebeat",
        "Stopping Crawler",
        "Stopping 1 inputs",
        "Crawler stopped",
        "Stopping Registrar",
        "Ending Registrar",
        "filebeat stopped.",
    ]
    version = subprocess.run(
        [sys.executable, "-m", "sluice.lab.backends.filebeat", "version"], env=env, capture_output=True, text=True, timeout=30
    )
    assert version.stdout.startswith("filebeat version 7.14.2")


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "filebeat.prospectors:\n- type: log\n  paths: [/x]\noutput.console: {}\n",
            "Exiting: 1 error: setting 'filebeat.prospectors' has been removed",
        ),
        ("filebeat.inputs:\n- type: log\n  paths: [/x]\n", "Exiting: No outputs are defined. Please define one under the output section."),
        ("filebeat.inputs:\n- type: log\n  paths: [/x]\n  multiline.pattern: '^\\['\noutput.console: {}\n", "multiline"),
        (
            "filebeat.inputs:\n- type: log\n  paths: [/x]\nprocessors:\n- grok: {}\noutput.console: {}\n",
            "the processor action grok does not exist",
        ),
        ("filebeat.inputs:\n- type: log\n  paths: [/x]\noutput.logstash: {hosts: [x]}\n", "output.logstash"),
        ("filebeat.inputs:\n- type: log\n  paths: [/x]\noutput.elasticsearch: {hosts: ['https://es:9200']}\n", "https is not supported"),
        ("filebeat.inputs:\n- type: log\n  paths: ['${LOGS:?LOGS must be set}']\noutput.console: {}\n", "LOGS must be set"),
    ],
)
def test_cli_refuses_clearly(tmp_path: Path, yaml_text: str, message: str) -> None:
    cfg = tmp_path / "filebeat.yml"
    cfg.write_text(yaml_text)
    proc = cli(["-c", str(cfg), "--path.data", str(tmp_path / "data")], {})
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert message in last and last.startswith("Exiting: "), proc.stderr


def test_cli_strict_perms(tmp_path: Path) -> None:
    cfg = tmp_path / "filebeat.yml"
    cfg.write_text("filebeat.inputs: [{type: log, paths: [/x]}]\noutput.console: {}\n")
    cfg.chmod(0o664)
    proc = cli(["-c", str(cfg), "--path.data", str(tmp_path / "data"), "test", "config"], {})
    assert proc.returncode == 1 and "can only be writable by the owner" in proc.stderr and "-rw-rw-r--" in proc.stderr
    proc = cli(["-c", str(cfg), "--path.data", str(tmp_path / "data"), "--strict.perms=false", "test", "config"], {})
    assert proc.returncode == 0 and proc.stdout.strip() == "Config OK", proc.stderr


# --- throughput (by hand) -------------------------------------------------------------------------------


@pytest.mark.skipif(not os.environ.get("FILEBEAT_THROUGHPUT"), reason="hand-run throughput check: FILEBEAT_THROUGHPUT=1")
def test_throughput_100k_lines(es: FakeES, tmp_path: Path) -> None:
    """The lab's accesslog config (decode_json_fields on every line) shipping 100 000 lines of the
    course's JSON access log, Filebeat in its own process as in a lab (``--once``)."""
    n = 100_000
    logs = tmp_path / "logs"
    logs.mkdir()
    golden = GOLDEN_JSON_LOG.read_text().splitlines()
    with (logs / "front-envoy-access.log").open("w") as f:
        for i in range(n):
            f.write(golden[i % len(golden)] + "\n")
    es.count_only = True
    marks: list[tuple[float, int]] = []
    plan_before = es._bulk

    def timed(h: Any, body: bytes) -> None:
        if not marks:
            marks.append((time.monotonic(), 0))
        plan_before(h, body)
        marks.append((time.monotonic(), es.lines))

    es._bulk = timed  # type: ignore[method-assign]
    cfg = LABS / "accesslog-with-efk" / "filebeat" / "filebeat.yaml"
    args = ["--once", "--strict.perms=false", "--root", str(tmp_path / "root"), "--mount", f"/usr/share/filebeat/filebeat.yml={cfg}"]
    args += ["--mount", f"/logs/envoy={logs}", "-E", f'output.elasticsearch.hosts=["{es.url}"]', "-E", "logging.metrics.enabled=false"]
    start = time.monotonic()
    proc = cli(args, {"HOSTNAME": "filebeat"})
    total = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert es.lines == n
    # Steady state: up to the last full queue flush (the rest waits queue.mem.flush.timeout, 1s, as in Filebeat).
    steady_lines = n - n % 2048
    t_end, lines = next((t, k) for t, k in marks if k >= steady_lines)
    steady = lines / (t_end - marks[0][0])
    print(
        f"\nfilebeat stand-in: {n} lines in {es.bulk_calls} _bulk requests; steady {steady:,.0f} lines/s ({lines} lines in "
        f"{t_end - marks[0][0]:.2f}s from the first _bulk); whole run {n / total:,.0f} lines/s ({total:.2f}s with start-up and "
        "the 1s flush.timeout of the last partial batch)"
    )


def test_console_output(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("hello\n")
    cfg = tmp_path / "filebeat.yml"
    cfg.write_text(
        f"filebeat.inputs: [{{type: log, paths: ['{logs}/*.log']}}]\noutput.console: {{codec.json.pretty: false}}\nlogging.metrics.enabled: false\n"
    )
    cfg.chmod(0o600)
    proc = cli(["--once", "-c", str(cfg), "--path.data", str(tmp_path / "data"), "-E", "queue.mem.flush.timeout=10ms"], {})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip())
    assert doc["message"] == "hello" and doc["@metadata"] == {"beat": "filebeat", "type": "_doc", "version": "7.14.2"}
    assert doc["log"]["file"]["path"] == str(logs / "a.log")
