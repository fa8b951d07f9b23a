"""Access loggers from config: the filters as Envoy evaluates them, the file sink's flush
cadence, reopen and write failures, and config errors that name the field."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format as pb_json

from sluice.access_log.config import build_access_logs
from sluice.access_log.file_sink import AccessLogFileManager
from sluice.config.compat import unpack_any  # noqa: F401 (the loggers' typed_config registry)
from sluice.errors import ConfigError, UnsupportedError
from sluice.formatter.context import AccessLogType, FormatContext
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.http.stream_info import ResponseFlag, StreamInfo
from sluice.runtime import Runtime
from sluice.stats.store import Store
from sluice.tracing.request_id import Reason

FILE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
STDOUT = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"


def yaml_runtime() -> Any:
    from envoy.config.bootstrap.v3 import bootstrap_pb2

    msg = bootstrap_pb2.LayeredRuntime()
    pb_json.ParseDict({"layers": [{"name": "admin", "admin_layer": {}}]}, msg)
    return msg


def entries(doc: str) -> list[Any]:
    from envoy.config.accesslog.v3 import accesslog_pb2

    out = []
    for item in yaml.safe_load(doc):
        msg = accesslog_pb2.AccessLog()
        pb_json.ParseDict(item, msg)
        out.append(msg)
    return out


class Env:
    def __init__(self, tmp_path: Path, flush_interval: float = 10.0) -> None:
        self.store = Store()
        self.files = AccessLogFileManager(self.store, flush_interval)
        self.runtime = Runtime.from_config(None)
        self.tmp = tmp_path

    def build(self, doc: str) -> Any:
        return build_access_logs(
            entries(doc), "hcm.access_log", files=self.files, runtime=self.runtime, rng=random.Random(7)
        )

    def close(self) -> None:
        self.files.close()


def stream(
    code: int | None = 200,
    flags: int = 0,
    duration_ms: int = 3,
    headers: list[list[str]] | None = None,
    trailers: HeaderMap | None = None,
    rid: str | None = "3ad12c54-2a3b-4cca-935a-8ee0be78afa1",
) -> FormatContext:
    info = StreamInfo(("127.0.0.1", 1), None)
    info.response_code = code
    if flags:
        info.set_flag(flags)
    info.last_downstream_tx = info.start_time + duration_ms / 1000 + 0.0001
    hs = list(headers or [])
    if rid is not None:
        hs.append(["x-request-id", rid])
    req = RequestHeaders("GET", "/", "h", hs)
    resp = ResponseHeaders(code or 0, []) if code else None
    return FormatContext(info, req, resp, trailers, log_type=AccessLogType.DownstreamEnd)


def logged(env: Env, doc: str, ctxs: list[FormatContext], path: Path) -> list[str]:
    loggers = env.build(doc)
    for c in ctxs:
        for lg in loggers:
            lg.log(c)
    env.close()
    return path.read_text().splitlines()


def logger_doc(path: Path, filt: str) -> str:
    return f"""
- name: envoy.access_loggers.file
  typed_config: {{"@type": {FILE}, path: {path}, log_format: {{text_format: "%RESPONSE_CODE% %RESPONSE_FLAGS%\\n"}}}}
  filter: {filt}
"""


# -- filters ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("filt", "expected"),
    [
        ("{status_code_filter: {comparison: {op: GE, value: {default_value: 500, runtime_key: k.ge}}}}", ["503 -", "504 UT"]),
        ("{status_code_filter: {comparison: {op: EQ, value: {default_value: 404, runtime_key: k.eq}}}}", ["404 NR"]),
        ("{status_code_filter: {comparison: {op: LE, value: {default_value: 0, runtime_key: k.le}}}}", ["0 DC"]),
        ("{duration_filter: {comparison: {op: GE, value: {default_value: 1000, runtime_key: k.d}}}}", ["504 UT"]),
        ("{response_flag_filter: {}}", ["404 NR", "504 UT", "0 DC", "200 DI,FI"]),
        ("{response_flag_filter: {flags: [UF, FI]}}", ["200 DI,FI"]),
        ("{response_flag_filter: {flags: [UAEX]}}", []),
        ("{not_health_check_filter: {}}", ["200 -", "404 NR", "503 -", "504 UT", "0 DC", "200 DI,FI"]),
        ("{traceable_filter: {}}", []),
        ("{header_filter: {header: {name: x-log-me, present_match: true}}}", ["503 -", "504 UT"]),
        ("{header_filter: {header: {name: x-log-me, string_match: {exact: 'yes'}}}}", ["503 -"]),
        ("{and_filter: {filters: [{status_code_filter: {comparison: {op: GE, value: {default_value: 500, runtime_key: a}}}},"
         " {response_flag_filter: {}}]}}", ["504 UT"]),
        ("{or_filter: {filters: [{status_code_filter: {comparison: {op: EQ, value: {default_value: 404, runtime_key: b}}}},"
         " {response_flag_filter: {flags: [DI]}}]}}", ["404 NR", "200 DI,FI"]),
        ("{log_type_filter: {types: [DownstreamEnd]}}", ["200 -", "404 NR", "503 -", "504 UT", "0 DC", "200 DI,FI"]),
        ("{log_type_filter: {types: [DownstreamEnd], exclude: true}}", []),
        ("{metadata_filter: {}}", ["200 -", "404 NR", "503 -", "504 UT", "0 DC", "200 DI,FI"]),
        ("{metadata_filter: {match_if_key_not_found: false}}", []),
    ],
)
def test_filters(tmp_path: Path, filt: str, expected: list[str]) -> None:
    env = Env(tmp_path)
    ctxs = [
        stream(200),
        stream(404, ResponseFlag.NO_ROUTE_FOUND),
        stream(503, headers=[["x-log-me", "yes"]]),
        stream(504, ResponseFlag.UPSTREAM_REQUEST_TIMEOUT, duration_ms=1500, headers=[["x-log-me", "no"]]),
        stream(None, ResponseFlag.DOWNSTREAM_CONNECTION_TERMINATION),
        stream(200, ResponseFlag.DELAY_INJECTED | ResponseFlag.FAULT_INJECTED),
    ]
    out = tmp_path / "f.log"
    assert logged(env, logger_doc(out, filt), ctxs, out) == expected


def test_comparison_filters_follow_their_runtime_key(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.runtime = Runtime.from_config(yaml_runtime())
    env.runtime.merge_admin({"k.ge": "200"})
    out = tmp_path / "f.log"
    doc = logger_doc(out, "{status_code_filter: {comparison: {op: GE, value: {default_value: 500, runtime_key: k.ge}}}}")
    assert logged(env, doc, [stream(200), stream(404)], out) == ["200 -", "404 -"]


def test_runtime_filter_samples_on_the_request_id(tmp_path: Path) -> None:
    """The x-request-id's first 8 hex digits decide (the same id always gives the same answer);
    use_independent_randomness draws a random number instead."""
    env = Env(tmp_path)
    out = tmp_path / "f.log"
    doc = logger_doc(out, "{runtime_filter: {runtime_key: s, percent_sampled: {numerator: 50, denominator: HUNDRED}}}")
    # 0x00000010 % 100 = 16 < 50 → sampled; 0x00000063 % 100 = 99 → not.
    low = stream(200, rid="00000010-0000-4000-8000-000000000000")
    high = stream(201, rid="00000063-0000-4000-8000-000000000000")
    assert logged(env, doc, [low, high, low], out) == ["200 -", "200 -"]


def test_runtime_filter_rate_with_independent_randomness(tmp_path: Path) -> None:
    env = Env(tmp_path)
    out = tmp_path / "f.log"
    doc = logger_doc(out, "{runtime_filter: {runtime_key: s, percent_sampled: {numerator: 25, denominator: HUNDRED},"
                          " use_independent_randomness: true}}")  # fmt: skip
    n = 4000
    lines = logged(env, doc, [stream(200)] * n, out)
    # Binomial(4000, 0.25): mean 1000, sd 27.4 → 6 sd either side never flakes.
    assert 835 < len(lines) < 1165


def test_grpc_status_filter(tmp_path: Path) -> None:
    env = Env(tmp_path)
    out = tmp_path / "f.log"
    doc = logger_doc(out, "{grpc_status_filter: {statuses: [UNAVAILABLE, UNKNOWN]}}")
    ctxs = [stream(200, trailers=HeaderMap([["grpc-status", "14"]])), stream(200, trailers=HeaderMap([["grpc-status", "0"]])),
            stream(503), stream(200)]  # fmt: skip
    # trailers 14 → yes; 0 → no; HTTP 503 → UNAVAILABLE; HTTP 200 with nothing → OK... mapped: 200 → UNKNOWN (2).
    assert logged(env, doc, ctxs, out) == ["200 -", "503 -", "200 -"]


def test_bad_filters_are_config_errors(tmp_path: Path) -> None:
    env = Env(tmp_path)
    out = tmp_path / "f.log"
    with pytest.raises(ConfigError, match=r"hcm.access_log\[0\].filter.and_filter.filters: needs at least 2 filters"):
        env.build(logger_doc(out, "{and_filter: {filters: [{traceable_filter: {}}]}}"))
    with pytest.raises(ConfigError, match=r"response_flag_filter.flags\[0\]: unknown response flag 'XX'"):
        env.build(logger_doc(out, "{response_flag_filter: {flags: [XX]}}"))
    with pytest.raises(UnsupportedError, match="extension_filter.*'my.filter' is not implemented"):
        env.build(logger_doc(out, "{extension_filter: {name: my.filter}}"))
    env.close()


# -- config ----------------------------------------------------------------------------------
def test_unknown_logger_and_unwritable_path_are_refused(tmp_path: Path) -> None:
    from envoy.extensions.access_loggers.grpc.v3 import als_pb2  # noqa: F401 (registers the types)
    from envoy.extensions.formatter.cel.v3 import cel_pb2  # noqa: F401

    env = Env(tmp_path)
    with pytest.raises(UnsupportedError, match=r"hcm.access_log\[0\]: access logger 'envoy.access_loggers.http_grpc' is not implemented"):
        env.build("""
- name: envoy.access_loggers.http_grpc
  typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig}
""")
    with pytest.raises(ConfigError, match=r"hcm.access_log\[0\].typed_config.path: unable to open file '/nonexistent/x/a.log': No such file"):
        env.build(f"- name: f\n  typed_config: {{'@type': {FILE}, path: /nonexistent/x/a.log}}\n")
    with pytest.raises(UnsupportedError, match=r"log_format.formatters: formatter extension 'envoy.formatter.cel' is not implemented"):
        env.build(f"""
- name: f
  typed_config:
    "@type": {FILE}
    path: {tmp_path / 'x.log'}
    log_format:
      text_format: "%REQ(:PATH)%"
      formatters: [{{name: envoy.formatter.cel, typed_config: {{"@type": type.googleapis.com/envoy.extensions.formatter.cel.v3.Cel}}}}]
""")
    env.close()


def test_legacy_format_fields_and_stdout(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    env = Env(tmp_path)
    a, b, c = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "c.log"
    loggers = env.build(f"""
- name: f
  typed_config: {{"@type": {FILE}, path: {a}, format: "legacy %RESPONSE_CODE%\\n"}}
- name: f
  typed_config: {{"@type": {FILE}, path: {b}, json_format: {{code: "%RESPONSE_CODE%", n: "%REQ(X-NONE)%"}}}}
- name: f
  typed_config: {{"@type": {FILE}, path: {c}, log_format: {{text_format_source: {{inline_string: "src %RESPONSE_CODE%\\n"}}}}}}
- name: s
  typed_config: {{"@type": {STDOUT}, log_format: {{json_format: {{code: "%RESPONSE_CODE%"}}}}}}
""")
    for lg in loggers:
        lg.log(stream(201))
    env.close()
    assert a.read_text() == "legacy 201\n"
    assert b.read_text() == '{"code":201,"n":null}\n'
    assert c.read_text() == "src 201\n"
    assert '{"code":201}\n' in capfd.readouterr().out


# -- the file sink ---------------------------------------------------------------------------
def test_first_line_at_once_then_on_the_timer_tick_and_at_close(tmp_path: Path) -> None:
    env = Env(tmp_path, flush_interval=0.5)
    out = tmp_path / "t.log"
    (lg,) = env.build(f"- name: f\n  typed_config: {{'@type': {FILE}, path: {out}, format: \"%RESPONSE_CODE%\\n\"}}\n")
    stats = env.store
    lg.log(stream(201))
    deadline = time.monotonic() + 2
    while out.read_text() != "201\n" and time.monotonic() < deadline:
        time.sleep(0.005)
    assert out.read_text() == "201\n"
    lg.log(stream(202))
    time.sleep(0.1)
    assert out.read_text() == "201\n", "later lines wait for the flush timer"
    assert stats.value("filesystem.write_total_buffered") == 4
    while out.read_text() == "201\n" and time.monotonic() < deadline + 2:
        time.sleep(0.01)
    assert out.read_text() == "201\n202\n"
    assert stats.value("filesystem.flushed_by_timer") >= 1
    lg.log(stream(203))
    env.close()
    assert out.read_text() == "201\n202\n203\n"
    assert stats.value("filesystem.write_buffered") == 3
    assert stats.value("filesystem.write_total_buffered") == 0


def test_reopen_follows_a_rotated_file(tmp_path: Path) -> None:
    env = Env(tmp_path, flush_interval=60)
    out = tmp_path / "r.log"
    (lg,) = env.build(f"- name: f\n  typed_config: {{'@type': {FILE}, path: {out}, format: \"%RESPONSE_CODE%\\n\"}}\n")
    lg.log(stream(201))
    deadline = time.monotonic() + 2
    while not out.read_text() and time.monotonic() < deadline:
        time.sleep(0.005)
    os.rename(out, tmp_path / "r.log.1")
    env.files.reopen()
    lg.log(stream(202))
    env.close()
    assert (tmp_path / "r.log.1").read_text() == "201\n"
    assert out.read_text() == "202\n"


def test_a_failing_write_is_counted_and_traffic_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this machine")
    env = Env(tmp_path, flush_interval=60)
    (lg,) = env.build(f"- name: f\n  typed_config: {{'@type': {FILE}, path: /dev/full, format: \"%RESPONSE_CODE%\\n\"}}\n")
    for code in (201, 202, 203):
        lg.log(stream(code))  # never raises
    env.close()
    assert env.store.value("filesystem.write_failed") >= 1
    assert env.store.value("filesystem.write_total_buffered") == 0
    assert sum("write failed" in r.getMessage() for r in caplog.records) == 1


def test_traceable_filter_logs_what_the_tracing_decision_traced(tmp_path: Path) -> None:
    """``traceable_filter``: sampled or forced requests (the decision, ``sluice.tracing``)."""
    ctxs = [stream(200), stream(201), stream(202), stream(203)]
    for ctx, reason in zip(ctxs, (Reason.Sampling, Reason.ClientForced, Reason.ServiceForced, Reason.NotTraceable), strict=True):
        ctx.stream_info.trace_reason = reason
    out = tmp_path / "f.log"
    assert logged(Env(tmp_path), logger_doc(out, "{traceable_filter: {}}"), ctxs, out) == ["200 -", "201 -", "202 -"]
