"""The Filebeat stand-in end to end (``sluice.lab.backends.filebeat``): the labs' filebeat.yaml
against a recording fake Elasticsearch on 127.0.0.1 — the start-up handshake and its order, ILM
modes and default indices, connect failures and backoff, ``_bulk`` bodies and index names,
decode_json_fields on the course's JSON access log, partial lines, rename, truncation and
clean_removed, restarts (at-least-once, resuming from acknowledged offsets), 429/409/400/503
results and the metrics log line. The container lab and the command line are in
``test_filebeat_cli.py`` (which shares the fake and the helpers defined here).
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from sluice.lab import compose
from sluice.lab.backends.filebeat import app, http11
from sluice.lab.backends.filebeat.elasticsearch import PublishError, Worker
from sluice.lab.backends.filebeat.event import Event, StateUpdate
from sluice.lab.backends.filebeat.logs import Log
from sluice.lab.backends.filebeat.pipeline import Acker, MemQueue, Stats
from sluice.tasks import spawn

REPO = Path(__file__).resolve().parents[3]
LABS = REPO / "labs"
GOLDEN_JSON_LOG = REPO / "tests" / "golden" / "envoy-part3-5" / "accesslog" / "logs" / "seed_json.log"
CID = "4f1c9a8e2b7d6c5a3e9f0b1d2c4a6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d"

# Fast timings for every run: the same settings a user would write, scaled down.
FAST = [
    "queue.mem.flush.timeout=10ms",
    "output.elasticsearch.backoff.init=20ms",
    "output.elasticsearch.backoff.max=80ms",
    "logging.metrics.enabled=false",
]


def fast_input(i: int = 0) -> list[str]:
    return [f"filebeat.inputs.{i}.scan_frequency=30ms", f"filebeat.inputs.{i}.backoff=10ms", f"filebeat.inputs.{i}.max_backoff=20ms"]


# --- a recording Elasticsearch ----------------------------------------------------------------


class FakeES:
    """Elasticsearch 7.14.2's answers to what Filebeat asks, with every request recorded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.docs: list[tuple[str, dict[str, Any]]] = []
        self.bulk_calls = 0
        self.policies: set[str] = set()
        self.templates: dict[str, Any] = {}
        self.aliases: dict[str, str] = {}
        self.indices: set[str] = set()
        self.bulk_plan: Callable[[int, int], list[int]] | None = None
        """``plan(call_number, n_items) -> statuses``; ``None``: all 201."""
        self.bulk_http_status = 200
        self.license_failures = 0
        self.oss = False
        self.count_only = False
        self.lines = 0
        self.cond = threading.Condition()
        es = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any, *, head: bool = False) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_GET(self) -> None:
                es.handle(self, "GET", b"")

            def do_HEAD(self) -> None:
                es.handle(self, "HEAD", b"")

            def do_PUT(self) -> None:
                es.handle(self, "PUT", self._body())

            def do_POST(self) -> None:
                es.handle(self, "POST", self._body())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, h: Any, method: str, body: bytes) -> None:
        path = h.path
        if not (self.count_only and path.startswith("/_bulk")):
            with self.cond:
                self.requests.append((method, path, body))
        if method == "GET" and path == "/":
            h._answer(
                200,
                {
                    "name": "myes01",
                    "cluster_name": "myes",
                    "version": {"number": "7.14.2", "build_flavor": "default"},
                    "tagline": "You Know, for Search",
                },
            )
        elif path.startswith("/_license"):
            if self.license_failures > 0:
                self.license_failures -= 1
                h._answer(404, {"error": "no handler found for uri [/_license]", "status": 404})
            else:
                h._answer(200, {"license": {"status": "active", "type": "basic", "uid": "x"}})
        elif path == "/_xpack":
            if self.oss:
                h._answer(400, {"error": "no handler found for uri [/_xpack]", "status": 400})
            else:
                h._answer(200, {"features": {"ilm": {"available": True, "enabled": True}}})
        elif path.startswith("/_ilm/policy/"):
            name = path.rsplit("/", 1)[1]
            if method == "PUT":
                self.policies.add(name)
                h._answer(200, {"acknowledged": True})
            else:
                found: dict[str, Any] = {name: {}} if name in self.policies else {"status": 404}
                h._answer(200 if name in self.policies else 404, found)
        elif path.startswith("/_cat/templates/"):
            name = path.rsplit("/", 1)[1]
            h._answer(200, f"{name} [{name}-*] 1\n".encode() if name in self.templates else b"")
        elif path.startswith("/_template/"):
            self.templates[path.rsplit("/", 1)[1]] = json.loads(body)
            h._answer(200, {"acknowledged": True})
        elif path.startswith("/_alias/"):
            name = path.rsplit("/", 1)[1]
            answer: dict[str, Any] = {self.aliases.get(name, ""): {"aliases": {name: {}}}} if name in self.aliases else {"status": 404}
            h._answer(200 if name in self.aliases else 404, answer)
        elif method == "HEAD":
            h._answer(200 if path[1:] in self.indices else 404, b"", head=True)
        elif method == "PUT" and path.startswith("/%3C"):
            index = path[1:].replace("%3C", "").replace("%3E", "").replace("%7Bnow%2Fd%7D", time.strftime("%Y.%m.%d", time.gmtime()))
            self.indices.add(index)
            for alias in json.loads(body)["aliases"]:
                self.aliases[alias] = index
            h._answer(200, {"acknowledged": True, "index": index})
        elif method == "POST" and path.startswith("/_bulk"):
            self._bulk(h, body)
        else:
            h._answer(404, {"status": 404})

    def _bulk(self, h: Any, body: bytes) -> None:
        with self.cond:
            call = self.bulk_calls
            self.bulk_calls += 1
        if self.bulk_http_status != 200:
            h._answer(self.bulk_http_status, {"error": "unavailable", "status": self.bulk_http_status})
            return
        if self.count_only:
            n = body.count(b"\n") // 2
            with self.cond:
                self.lines += n
                self.cond.notify_all()
            h._answer(200, b'{"took":1,"errors":false,"items":[' + b",".join([b'{"create":{"status":201}}'] * n) + b"]}")
            return
        lines = body.split(b"\n")
        pairs = [(json.loads(lines[i]), json.loads(lines[i + 1])) for i in range(0, len(lines) - 1, 2)]
        statuses = self.bulk_plan(call, len(pairs)) if self.bulk_plan else [201] * len(pairs)
        items = []
        with self.cond:
            for (action, doc), status in zip(pairs, statuses, strict=True):
                op, meta = next(iter(action.items()))
                item: dict[str, Any] = {"_index": meta["_index"], "_id": f"id{len(self.docs)}", "status": status}
                if status < 300:
                    self.docs.append((meta["_index"], doc))
                    self.indices.add(meta["_index"])
                else:
                    item["error"] = {
                        "type": "mapper_parsing_exception" if status == 400 else "es_rejected_execution_exception",
                        "reason": "x",
                    }
                items.append({op: item})
            self.cond.notify_all()
        h._answer(200, {"took": 1, "errors": any(s >= 300 for s in statuses), "items": items})

    def wait(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; docs={len(self.docs)} requests={[(m, p) for m, p, _ in self.requests][-8:]}")
                self.cond.wait(min(left, 0.05))

    def messages(self) -> list[str]:
        return [d.get("message", "") for _, d in self.docs]


@pytest.fixture
def es() -> Iterator[FakeES]:
    server = FakeES()
    yield server
    server.close()


class Running:
    """A beat on its own thread and loop, as ``python -m …`` would run it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.log = Log(stream=io.StringIO())
        self.log.lines = []
        self.beat, self.opts = app.build_beat(argv, environ=env, log=self.log)
        self.beat.build()
        self.rc: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.rc = asyncio.run(self.beat.run())

    def stop(self) -> None:
        self.beat.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "beat did not stop"

    def messages(self) -> list[str]:
        """The logged messages (the labs set logging.json: true)."""
        out = []
        for line in list(self.log.lines or []):
            try:
                out.append(json.loads(line)["message"])
            except ValueError:
                out.append(line)
        return out

    def logged(self, text: str) -> bool:
        return any(text in m for m in self.messages())

    def wait_logged(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.logged(text):
            if time.monotonic() > deadline:
                raise AssertionError(f"not logged: {text!r}; log tail: {(self.log.lines or [])[-10:]}")
            time.sleep(0.01)


def lab_env(lab: str, tmp_path: Path, logs: Path | None = None) -> tuple[dict[str, str], Path]:
    """The filebeat service's mounts as compose gives them, with its log folder replaced by a
    temporary one (the lab's own stays untouched)."""
    project = compose.load(LABS / lab, environ={})
    mounts = {m.target: str((project.directory / m.source).resolve()) for m in project.services["filebeat"].volumes if m.kind == "bind"}
    if "/logs/envoy" in mounts:
        logs = logs or tmp_path / "logs-envoy"
        logs.mkdir(exist_ok=True)
        mounts["/logs/envoy"] = str(logs)
    if "/var/lib/docker" in mounts:  # never the machine's own Docker folder
        logs = tmp_path / "docker"
        (logs / "containers").mkdir(parents=True, exist_ok=True)
        mounts["/var/lib/docker"] = str(logs)
        mounts.pop("/var/run/docker.sock", None)
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    env = {"SLUICE_FS_ROOT": str(root), "SLUICE_FS_MOUNTS": json.dumps(mounts), "HOSTNAME": "fb-test"}
    return env, logs or root


def accesslog_argv(es: FakeES, *extra: str) -> list[str]:
    argv = ["--strict.perms=false", "-E", f'output.elasticsearch.hosts=["{es.url}"]']
    for item in [*FAST, *fast_input(), *extra]:
        argv += ["-E", item]
    return argv


def wait_for(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def registry_offsets(root: Path) -> dict[str, int]:
    """source → offset, replaying Filebeat's log.json the way memlog does."""
    reg = root / "usr/share/filebeat/data/registry/filebeat"
    entries: dict[str, dict[str, Any]] = {}
    for data in sorted(reg.glob("[0-9]*.json")):
        entries = {i["_key"]: i for i in json.loads(data.read_text())}
    log = reg / "log.json"
    lines = log.read_text().splitlines() if log.exists() else []
    for op, kv in zip(lines[::2], lines[1::2], strict=False):
        o, d = json.loads(op), json.loads(kv)
        if o["op"] == "set":
            entries[d["k"]] = d["v"]
        else:
            entries.pop(d["k"], None)
    return {v["source"]: v["offset"] for v in entries.values()}


# --- the handshake and the documents ------------------------------------------------------------


def test_handshake_order_bulk_and_index_names(es: FakeES, tmp_path: Path) -> None:
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    line = GOLDEN_JSON_LOG.read_text().splitlines()[0]
    (logs / "front-envoy-access.log").write_text(line + "\n")
    run = Running(accesslog_argv(es), env)
    try:
        es.wait(lambda: len(es.docs) == 1)
        run.wait_logged("Connection to backoff(elasticsearch(" + es.url + ")) established")
        wait_for(lambda: registry_offsets(tmp_path / "root") == {"/logs/envoy/front-envoy-access.log": len(line) + 1}, what="the registry")
    finally:
        run.stop()
    calls = [(m, p) for m, p, _ in es.requests]
    day = time.strftime("%Y.%m.%d", time.gmtime())
    assert calls[:10] == [
        ("GET", "/"),
        ("GET", "/_license?human=false"),
        ("GET", "/_xpack"),
        ("GET", "/_ilm/policy/filebeat"),
        ("PUT", "/_ilm/policy/filebeat"),
        ("GET", "/_cat/templates/filebeat-7.14.2"),
        ("PUT", "/_template/filebeat-7.14.2"),
        ("GET", "/_alias/filebeat-7.14.2"),
        ("HEAD", "/filebeat-7.14.2"),
        ("PUT", "/%3Cfilebeat-7.14.2-%7Bnow%2Fd%7D-000001%3E"),
    ]
    assert calls[10] == ("POST", "/_bulk")
    policy = json.loads(next(b for m, p, b in es.requests if m == "PUT" and p.startswith("/_ilm")))
    assert policy["policy"]["phases"]["hot"]["actions"]["rollover"] == {"max_age": "30d", "max_size": "50gb"}
    tmpl = es.templates["filebeat-7.14.2"]
    assert tmpl["index_patterns"] == ["filebeat-7.14.2-*"]
    assert tmpl["settings"]["index"]["lifecycle"] == {"name": "filebeat", "rollover_alias": "filebeat-7.14.2"}
    assert json.loads(next(b for m, p, b in es.requests if p.startswith("/%3C"))) == {
        "aliases": {"filebeat-7.14.2": {"is_write_index": True}}
    }
    bulk = next(b for m, p, b in es.requests if p == "/_bulk").decode()
    action, doc_line, tail = bulk.split("\n")
    assert json.loads(action) == {"create": {"_index": f"filebeat-{day}"}} and tail == ""
    # The lab's indices rule wins over the ILM alias; the empty write index exists beside it.
    assert es.indices == {f"filebeat-{day}", f"filebeat-7.14.2-{day}-000001"}
    doc = json.loads(doc_line)
    src = json.loads(line)
    # decode_json_fields, target "": every key at the root, integers stay integers, message kept.
    for key, value in src.items():
        assert doc[key] == value and type(doc[key]) is type(value), key
    assert doc["message"] == line
    assert doc["log"] == {"offset": 0, "file": {"path": "/logs/envoy/front-envoy-access.log"}}
    assert doc["input"] == {"type": "log"} and doc["ecs"] == {"version": "1.10.0"} and doc["host"] == {"name": "fb-test"}
    agent = doc["agent"]
    assert {k: agent[k] for k in ("type", "version", "hostname", "name")} == {
        "type": "filebeat",
        "version": "7.14.2",
        "hostname": "fb-test",
        "name": "fb-test",
    }
    meta = json.loads((tmp_path / "root/usr/share/filebeat/data/meta.json").read_text())
    assert agent["id"] == meta["uuid"] and agent["ephemeral_id"] != meta["uuid"]
    assert len(doc["@timestamp"]) == 24 and doc["@timestamp"].endswith("Z")  # 2022-07-09T03:18:22.105Z
    assert run.logged("Harvester started for file: /logs/envoy/front-envoy-access.log")
    assert registry_offsets(tmp_path / "root") == {"/logs/envoy/front-envoy-access.log": len(line) + 1}


def test_second_connect_reuses_policy_template_and_alias(es: FakeES, tmp_path: Path) -> None:
    env, logs = lab_env("monitoring-and-accesslog", tmp_path)
    (logs / "service_a-envoy-access.log").write_text('{"status":200}\n')
    run = Running(accesslog_argv(es), env)
    wait_for(lambda: registry_offsets(tmp_path / "root").get("/logs/envoy/service_a-envoy-access.log") == 15, what="the registry")
    run.stop()
    first = len(es.requests)
    with (logs / "service_a-envoy-access.log").open("a") as f:
        f.write('{"status":201}\n')
    run = Running(accesslog_argv(es), env)
    wait_for(lambda: registry_offsets(tmp_path / "root").get("/logs/envoy/service_a-envoy-access.log") == 30, what="the registry")
    run.stop()
    calls = [(m, p) for m, p, _ in es.requests[first:]]
    assert ("PUT", "/_ilm/policy/filebeat") not in calls and ("PUT", "/_template/filebeat-7.14.2") not in calls
    assert [c for c in calls if c[1] != "/_bulk"] == [
        ("GET", "/"),
        ("GET", "/_license?human=false"),
        ("GET", "/_xpack"),
        ("GET", "/_ilm/policy/filebeat"),
        ("GET", "/_cat/templates/filebeat-7.14.2"),
        ("GET", "/_alias/filebeat-7.14.2"),
    ]
    assert [d["status"] for _, d in es.docs] == [200, 201]  # the restart resumed after the first line


@pytest.mark.parametrize(
    ("extra", "oss", "expected_calls", "index"),
    [
        (
            ["setup.ilm.enabled=false"],
            False,
            [
                ("GET", "/"),
                ("GET", "/_license?human=false"),
                ("GET", "/_cat/templates/filebeat-7.14.2"),
                ("PUT", "/_template/filebeat-7.14.2"),
            ],
            "filebeat-{day}",
        ),
        (
            ["output.elasticsearch.indices=null"],
            True,
            [
                ("GET", "/"),
                ("GET", "/_license?human=false"),
                ("GET", "/_xpack"),
                ("GET", "/_cat/templates/filebeat-7.14.2"),
                ("PUT", "/_template/filebeat-7.14.2"),
            ],
            "filebeat-7.14.2-{day}",
        ),
        (
            ["output.elasticsearch.indices=null"],
            False,
            None,
            "filebeat-7.14.2",
        ),
    ],
    ids=["ilm-disabled", "oss-default-index", "ilm-alias-default-index"],
)
def test_ilm_modes_and_default_index(es: FakeES, tmp_path: Path, extra: list[str], oss: bool, expected_calls: Any, index: str) -> None:
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    (logs / "front-envoy-access.log").write_text('{"x":1}\n')
    es.oss = oss
    run = Running(accesslog_argv(es, *extra), env)
    try:
        es.wait(lambda: len(es.docs) == 1)
    finally:
        run.stop()
    calls = [(m, p) for m, p, _ in es.requests]
    if expected_calls is not None:
        assert calls[: calls.index(("POST", "/_bulk"))] == expected_calls
    assert es.docs[0][0] == index.format(day=time.strftime("%Y.%m.%d", time.gmtime()))


def test_connect_failures_back_off_and_retry(es: FakeES, tmp_path: Path) -> None:
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    (logs / "front-envoy-access.log").write_text('{"x":1}\n')
    es.license_failures = 2
    run = Running(accesslog_argv(es), env)
    try:
        es.wait(lambda: len(es.docs) == 1)
    finally:
        run.stop()
    failed = [m for m in run.messages() if m.startswith("Failed to connect to backoff(")]
    assert len(failed) == 2
    assert (
        "Connection marked as failed because the onConnect callback failed: could not connect to a compatible version of Elasticsearch"
        in failed[0]
    )
    assert run.logged(f"Attempting to reconnect to backoff(elasticsearch({es.url})) with 2 reconnect attempt(s)")
    assert [p for m, p, _ in es.requests].count("/") == 3  # the whole handshake again each time


def test_connection_refused_reads_like_go(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    (logs / "front-envoy-access.log").write_text("x\n")
    argv = [
        "--strict.perms=false",
        "-E",
        f'output.elasticsearch.hosts=["127.0.0.1:{port}"]',
        *sum((["-E", x] for x in [*FAST, *fast_input()]), []),
    ]
    run = Running(argv, env)
    try:
        run.wait_logged(
            f'Failed to connect to backoff(elasticsearch(http://127.0.0.1:{port})): Get "http://127.0.0.1:{port}": dial tcp 127.0.0.1:{port}: connect: connection refused'
        )
    finally:
        run.stop()
    assert registry_offsets(tmp_path / "root") == {}  # nothing acknowledged, nothing recorded


def test_metrics_log_line(es: FakeES, tmp_path: Path) -> None:
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    (logs / "front-envoy-access.log").write_text('{"x":1}\n')
    log = Log(stream=io.StringIO())
    log.lines = []
    beat, _ = app.build_beat(accesslog_argv(es), environ=env, log=log)
    beat.build()
    loop_done = threading.Event()

    def run() -> None:
        asyncio.run(beat.run(metrics=True, metrics_period=0.05))
        loop_done.set()

    threading.Thread(target=run, daemon=True).start()
    try:
        es.wait(lambda: len(es.docs) == 1)
        wait_for(lambda: any('"acked": 1' in line or '"acked":1' in line for line in list(log.lines or [])), what="a metrics line")
    finally:
        beat.stop()
        assert loop_done.wait(10)
    line = next(json.loads(x) for x in log.lines or [] if "Non-zero metrics" in x and "acked" in x)
    assert line["message"] == "Non-zero metrics in the last 50ms" and line["logger"] == "monitoring"
    assert line["monitoring"]["metrics"]["libbeat"]["output"]["events"]["acked"] == 1


# --- lines: partial, CRLF, rename, truncation -------------------------------------------------------


def test_partial_last_line_waits_for_its_newline(es: FakeES, tmp_path: Path) -> None:
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    log = logs / "front-envoy-access.log"
    log.write_bytes(b"first\npart")
    run = Running(accesslog_argv(es), env)
    try:
        es.wait(lambda: len(es.docs) == 1)
        time.sleep(0.3)  # several read cycles (backoff 10-20ms): the partial line must stay unsent
        assert es.messages() == ["first"]
        assert registry_offsets(tmp_path / "root").get(f"/logs/envoy/{log.name}") == 6
        with log.open("ab") as f:
            f.write(b"ial\r\nnext\n")
        es.wait(lambda: len(es.docs) == 3)
        wait_for(lambda: registry_offsets(tmp_path / "root").get(f"/logs/envoy/{log.name}") == log.stat().st_size, what="the registry")
    finally:
        run.stop()
    assert es.messages() == ["first", "partial", "next"]  # \r\n handled as a line end
    assert [d["log"]["offset"] for _, d in es.docs] == [0, 6, 15]
    assert "status" not in es.docs[0][1]  # not JSON: decode_json_fields left the event as it was


def test_rename_keeps_offset_and_new_lines_follow(es: FakeES, tmp_path: Path) -> None:
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    old, new = logs / "a-access.log", logs / "b-access.log"
    old.write_text("one\ntwo\n")
    run = Running(accesslog_argv(es), env)
    try:
        es.wait(lambda: len(es.docs) == 2)
        old.rename(new)
        with new.open("a") as f:
            f.write("three\n")
        es.wait(lambda: len(es.docs) == 3)
        run.wait_logged("File was removed: /logs/envoy/a-access.log. Closing because close_removed is enabled.")
        with new.open("a") as f:
            f.write("four\n")
        es.wait(lambda: len(es.docs) == 4)
        wait_for(lambda: registry_offsets(tmp_path / "root") == {"/logs/envoy/b-access.log": new.stat().st_size}, what="the renamed state")
    finally:
        run.stop()
    assert es.messages() == ["one", "two", "three", "four"]  # each once: the offset survived the rename
    assert es.docs[3][1]["log"] == {"offset": 14, "file": {"path": "/logs/envoy/b-access.log"}}


def test_truncation_restarts_at_zero(es: FakeES, tmp_path: Path) -> None:
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    log = logs / "front-envoy-access.log"
    log.write_text("alpha\nbeta\n")
    run = Running(accesslog_argv(es), env)
    try:
        es.wait(lambda: len(es.docs) == 2)
        with log.open("w") as f:
            f.write("C\n")
        es.wait(lambda: len(es.docs) == 3)
        wait_for(lambda: registry_offsets(tmp_path / "root").get("/logs/envoy/front-envoy-access.log") == 2, what="the registry")
    finally:
        run.stop()
    assert es.messages() == ["alpha", "beta", "C"]
    assert es.docs[2][1]["log"]["offset"] == 0
    assert run.logged("File was truncated. Begin reading file from offset 0: /logs/envoy/front-envoy-access.log")


def test_clean_removed_drops_the_state_of_a_deleted_file(es: FakeES, tmp_path: Path) -> None:
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    keep, gone = logs / "keep-access.log", logs / "gone-access.log"
    keep.write_text("k\n")
    gone.write_text("g\n")
    run = Running(accesslog_argv(es), env)
    try:
        wait_for(
            lambda: registry_offsets(tmp_path / "root") == {"/logs/envoy/keep-access.log": 2, "/logs/envoy/gone-access.log": 2},
            what="both states",
        )
        gone.unlink()
        wait_for(lambda: registry_offsets(tmp_path / "root") == {"/logs/envoy/keep-access.log": 2}, what="the removed state to go")
    finally:
        run.stop()
    assert sorted(es.messages()) == ["g", "k"]


# --- acknowledgement, restarts, item results ----------------------------------------------------------


def test_offsets_advance_only_on_ack_and_restart_resends_unacked(es: FakeES, tmp_path: Path) -> None:
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    log = logs / "front-envoy-access.log"
    log.write_text("l1\nl2\nl3\n")
    es.bulk_http_status = 503
    run = Running(accesslog_argv(es), env)
    try:
        es.wait(lambda: es.bulk_calls >= 3)  # retried, with the handshake again before each retry
        run.wait_logged("Failed to publish events: failed to perform any bulk index operations: 503 Service Unavailable")
        assert registry_offsets(tmp_path / "root").get("/logs/envoy/front-envoy-access.log", 0) == 0
    finally:
        run.stop()
    assert registry_offsets(tmp_path / "root").get("/logs/envoy/front-envoy-access.log", 0) == 0
    bulks = [i for i, (m, p, _) in enumerate(es.requests) if p == "/_bulk"]
    assert ("GET", "/") in [(m, p) for m, p, _ in es.requests[bulks[0] : bulks[1]]]
    es.bulk_http_status = 200
    run = Running(accesslog_argv(es), env)
    try:
        es.wait(lambda: len(es.docs) == 3)
        wait_for(lambda: registry_offsets(tmp_path / "root").get("/logs/envoy/front-envoy-access.log") == 9, what="the registry")
    finally:
        run.stop()
    with log.open("a") as f:
        f.write("l4\n")
    run = Running(accesslog_argv(es), env)
    try:
        es.wait(lambda: len(es.docs) == 4)
        wait_for(lambda: registry_offsets(tmp_path / "root").get("/logs/envoy/front-envoy-access.log") == 12, what="the registry")
    finally:
        run.stop()
    assert es.messages() == ["l1", "l2", "l3", "l4"]  # nothing lost, nothing acknowledged sent twice


def test_bulk_item_results_429_retried_409_duplicate_400_dropped(es: FakeES, tmp_path: Path) -> None:
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    log = logs / "front-envoy-access.log"
    log.write_text("".join(f"m{i}\n" for i in range(5)))
    es.bulk_plan = lambda call, n: [201, 429, 409, 400, 503] if call == 0 else [201] * n
    run = Running(accesslog_argv(es), env)
    try:
        es.wait(lambda: len(es.docs) == 3)
        wait_for(lambda: registry_offsets(tmp_path / "root").get("/logs/envoy/front-envoy-access.log") == 15, what="the registry")
    finally:
        run.stop()
    assert es.messages() == ["m0", "m1", "m4"]
    bulks = [b for m, p, b in es.requests if p == "/_bulk"]
    assert len(bulks) == 2 and bulks[1].count(b"\n") == 4  # only the 429 and the 503 went again
    assert run.logged("Failed to publish events: temporary bulk send failure")
    assert run.logged('Cannot index event {"@timestamp"') and run.logged("(status=400)")
    assert run.logged("dropping event!")


# --- stopping while the output retries ----------------------------------------------------------------


def test_stop_as_a_bulk_response_arrives_ends_the_beat(es: FakeES, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The beat cancels its output worker in the same loop iteration as the 503 to a _bulk
    # arrives. asyncio.wait_for (Python 3.11) dropped that cancellation, and the worker retried
    # forever: "beat did not stop" under CPU load.
    env, logs = lab_env("accesslog-with-efk", tmp_path)
    (logs / "front-envoy-access.log").write_text("l1\nl2\n")
    es.bulk_http_status = 503
    holder: dict[str, Running] = {}
    triggered = threading.Event()
    exchange = http11.Connection._exchange

    async def exchange_then_stop(conn: http11.Connection, method: str, target: str, headers: Any, body: bytes | None) -> Any:
        resp = await exchange(conn, method, target, headers, body)
        run = holder.get("run")
        if target.startswith("/_bulk") and run is not None and not triggered.is_set():
            triggered.set()
            worker = next(t for t in asyncio.all_tasks() if t.get_name() == "output:0")
            run.beat.stop()
            deadline = time.monotonic() + 10
            while not worker.cancelling() and time.monotonic() < deadline:
                await asyncio.sleep(0)  # hand the response back just as the worker is cancelled
        return resp

    monkeypatch.setattr(http11.Connection, "_exchange", exchange_then_stop)
    run = holder["run"] = Running(accesslog_argv(es), env)
    try:
        assert triggered.wait(10), "no _bulk request"
    finally:
        run.stop()
    assert run.rc == 0 and run.logged("filebeat stopped.")
    assert registry_offsets(tmp_path / "root").get("/logs/envoy/front-envoy-access.log", 0) == 0


def test_http_request_cancelled_as_its_response_arrives_is_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        conn = http11.Connection("127.0.0.1", 9)
        answer: asyncio.Future[http11.Response] = asyncio.get_running_loop().create_future()

        async def connect() -> None:
            pass

        async def exchange(*args: Any) -> http11.Response:
            return await answer

        monkeypatch.setattr(conn, "_connect", connect)
        monkeypatch.setattr(conn, "_exchange", exchange)
        task = spawn(conn.request("POST", "/_bulk", headers={}), name="request")
        for _ in range(3):
            await asyncio.sleep(0)
        answer.set_result(http11.Response(503, "Service Unavailable", {}, b""))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_worker_stops_retrying_once_the_queue_closes() -> None:
    # Even without its cancellation, a worker must not retry past shutdown; what it could not
    # send stays unacknowledged.
    class Failing:
        connected = True
        calls = 0

        async def connect(self) -> None:
            pass

        async def publish(self, events: list[Event]) -> list[Event]:
            self.calls += 1
            raise PublishError("failed to perform any bulk index operations: 503 Service Unavailable", events)

        def close(self) -> None:
            pass

    async def main() -> None:
        client = Failing()
        queue = MemQueue(16, 1, 0.0)
        states: list[StateUpdate] = []
        acker = Acker(states.extend, Stats())
        worker = Worker(cast(Any, client), queue, acker, Log(stream=io.StringIO()), bulk_max_size=50, backoff_init=0.001, backoff_max=0.002)
        queue.put_nowait(Event(0, {"message": "x"}, None, StateUpdate("k", "/f", 2)))
        task = spawn(worker.run(), name="output:0")
        deadline = time.monotonic() + 5
        while client.calls < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        assert client.calls >= 2
        queue.close()
        done, _ = await asyncio.wait({task}, timeout=2)
        task.cancel()
        assert done, "the worker kept retrying after the queue closed"
        assert states == [] and acker.outstanding == 1

    asyncio.run(main())
