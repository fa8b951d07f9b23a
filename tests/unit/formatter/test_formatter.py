"""The substitution formatter: parsing (Envoy's syntax and its errors), the command operators,
START_TIME's strftime extensions, and the text and JSON formats. Facts from Envoy 1.40 (the
golden capture ``accesslog/`` and ``stream_info_formatter.cc``); the live comparison is
``tests/integration/test_access_log_differential.py``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluice.errors import ConfigError, UnsupportedError
from sluice.formatter import DEFAULT_FORMAT, compile_json, compile_text, default_formatter
from sluice.formatter.context import AccessLogType, FormatContext
from sluice.formatter.time_format import compile_time_format, default_time
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
from sluice.http.stream_info import ResponseFlag, StreamInfo, UpstreamTiming

# 2026-11-24T19:57:29.016861Z
WALL = 1795550249.016861


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return WALL + (self.t - 100.0)

    def call_later(self, delay: float, fn: Any) -> Any:
        raise AssertionError("no timers here")

    def call_soon(self, fn: Any) -> None:
        raise AssertionError("no callbacks here")


def ctx(
    *,
    req: RequestHeaders | None = None,
    resp: ResponseHeaders | None = None,
    trailers: HeaderMap | None = None,
    info: StreamInfo | None = None,
) -> FormatContext:
    if info is None:
        info = StreamInfo(("127.0.0.1", 54826), ("127.0.0.30", 20080), Clock(), connection_id=7)
    if req is None:
        req = RequestHeaders("GET", "/service/colors", "front:80", [["user-agent", "curl/7.68.0"], ["x-request-id", "rid-1"]])
    return FormatContext(info, req, resp, trailers, log_type=AccessLogType.DownstreamEnd)


def text(fmt: str, c: FormatContext | None = None, **kw: Any) -> str:
    return compile_text(fmt, "fmt", **kw).format(c or ctx())


def as_json(struct: dict[str, Any], c: FormatContext | None = None, **kw: Any) -> tuple[str, Any]:
    line = compile_json(struct, "fmt", **kw).format(c or ctx())
    assert line.endswith("\n") and "\n" not in line[:-1]
    return line, json.loads(line)


# -- parsing ---------------------------------------------------------------------------------
def test_literals_and_escaped_percent() -> None:
    assert text("plain text") == "plain text"
    assert text("100%% sure %PROTOCOL%") == "100% sure HTTP/1.1"
    assert text("") == ""


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("a %PROTOCOL", "Couldn't find valid command at position 2"),
        ("%protocol%", "Couldn't find valid command at position 0"),
        ("%NO_SUCH_THING%", "Not supported field in StreamInfo: NO_SUCH_THING"),
        ("%PROTOCOL(x)%", "PROTOCOL does not take any parameters or length"),
        ("%PROTOCOL%:", ""),  # (a trailing ':' outside the command is literal)
        ("%DURATION:3%", "DURATION does not take any parameters or length"),
        ("%REQ%", "REQ requires parameters"),
        ("%START_TIME:10%", "START_TIME does not allow length to be specified."),
        ("%REQ(a?b?c)%", "More than 1 alternative header specified in token: a?b?c"),
        ("%START_TIME(%H%n)%", "Format string contains newline"),
        ("%GRPC_STATUS(LOUD)%", "GrpcStatusFormatter only supports CAMEL_STRING, SNAKE_STRING or NUMBER."),
        ("%COMMON_DURATION(DS_RX_BEG)%", "Invalid common duration configuration: DS_RX_BEG."),
        ("%COMMON_DURATION(DS_RX_BEG:DS_TX_END:s)%", "Invalid common duration precision: s."),
        ("%FILTER_STATE(:PLAIN)%", "key cannot be empty"),
    ],
)
def test_bad_commands_are_config_errors_naming_the_path(fmt: str, message: str) -> None:
    if not message:
        assert text(fmt) == "HTTP/1.1:"
        return
    with pytest.raises(ConfigError) as e:
        compile_text(fmt, "access_log[0].typed_config.log_format.text_format")
    assert str(e.value).startswith("access_log[0].typed_config.log_format.text_format: ")
    assert message in str(e.value)


def test_operators_sluice_does_not_record_are_refused_by_name() -> None:
    with pytest.raises(UnsupportedError, match=r"fmt: command operator %DOWNSTREAM_WIRE_BYTES_SENT% .* not implemented"):
        compile_text("%DOWNSTREAM_WIRE_BYTES_SENT%", "fmt")
    with pytest.raises(UnsupportedError, match="US_CX_BEG"):
        compile_text("%COMMON_DURATION(US_CX_BEG:US_CX_END)%", "fmt")


# -- headers ---------------------------------------------------------------------------------
def test_request_headers_fallback_truncation_and_missing() -> None:
    c = ctx(req=RequestHeaders("GET", "/p", "h", [["user-agent", "curl/7.68.0"]]))
    assert text("%REQ(USER-AGENT):5%", c) == "curl/"
    assert text("%REQ(X-MISSING?USER-AGENT):3%", c) == "cur"
    assert text("%REQ(X-MISSING)%|%REQ(X-MISSING):3%", c) == "-|-"
    assert text("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %REQ(:METHOD)% %REQ(:AUTHORITY)% %REQ(HOST)%", c) == "/p GET h h"
    assert text("%REQ(X-MISSING)%", c, omit_empty=True) == ""


def test_connect_has_no_path_and_no_request_headers_print_dashes() -> None:
    connect = ctx(req=RequestHeaders("CONNECT", "", "example.com:443", []))
    assert text('"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"', connect) == '"CONNECT - HTTP/1.1"'
    info = StreamInfo(None, None, Clock())
    none = FormatContext(info, None, None, None)
    assert text('"%REQ(:METHOD)% %REQ(:PATH)%" %RESP(X)% %TRAILER(Y)%', none) == '"- -" - -'


def test_response_headers_and_trailers() -> None:
    resp = ResponseHeaders(200, [["content-type", "text/plain"], ["x-envoy-upstream-service-time", "0"]])
    c = ctx(resp=resp, trailers=HeaderMap([["grpc-status", "0"]]))
    assert text("%RESP(CONTENT-TYPE)% %RESP(:STATUS)% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% %TRAILER(GRPC-STATUS)%", c) == (
        "text/plain 200 0 0"
    )


def test_header_bytes_count_pseudo_headers_as_envoy_does() -> None:
    # Envoy's golden c14 (OPTIONS * refused before :scheme is set): 64 bytes.
    req = RequestHeaders("OPTIONS", "*", "star.example", [["x-case", "c14_options_star"]], scheme="")
    assert text("%REQUEST_HEADERS_BYTES%", ctx(req=req)) == "64"
    resp = ResponseHeaders(404, [["date", "Tue, 24 Nov 2026 19:57:47 GMT"], ["server", "envoy"]])
    assert text("%RESPONSE_HEADERS_BYTES%", ctx(resp=resp)) == str(7 + 3 + 4 + 29 + 6 + 5)
    assert text("%RESPONSE_TRAILERS_BYTES%") == "0"


# -- stream info -----------------------------------------------------------------------------
def test_codes_flags_in_the_order_they_were_set_and_details() -> None:
    info = StreamInfo(("127.0.0.1", 1), None, Clock())
    info.response_code = 503
    info.set_flag(ResponseFlag.UPSTREAM_RETRY_LIMIT_EXCEEDED)
    info.set_flag(ResponseFlag.UPSTREAM_CONNECTION_FAILURE)
    info.set_flag(ResponseFlag.UPSTREAM_RETRY_LIMIT_EXCEEDED)  # (set once)
    info.response_code_details = "upstream_reset_before_response_started{remote connection failure}"
    c = ctx(info=info)
    assert text("%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_FLAGS_LONG%", c) == (
        "503 URX,UF UpstreamRetryLimitExceeded,UpstreamConnectionFailure"
    )
    assert text("%RESPONSE_CODE_DETAILS%", c) == "upstream_reset_before_response_started{remote_connection_failure}"
    assert text("%RESPONSE_CODE_DETAILS(ALLOW_WHITESPACES)%", c) == info.response_code_details
    fresh = ctx()
    assert text("%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_FLAGS_LONG% %RESPONSE_CODE_DETAILS%", fresh) == "0 - - -"


def test_durations_bytes_and_attempts() -> None:
    clock = Clock()
    info = StreamInfo(("127.0.0.1", 1), None, clock)
    info.request_complete = 100.004
    up = UpstreamTiming()
    up.first_tx, up.last_tx, up.first_rx, up.last_rx = 100.005, 100.006, 100.250, 100.300
    info.upstream_timing = up
    info.first_downstream_tx, info.last_downstream_tx = 100.251, 100.3019
    info.bytes_received, info.bytes_sent, info.attempt_count = 11, 96, 2
    c = ctx(info=info)
    fmt = (
        "%DURATION% %REQUEST_DURATION% %REQUEST_TX_DURATION% %RESPONSE_DURATION% %RESPONSE_TX_DURATION% "
        "%BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_REQUEST_ATTEMPT_COUNT%"
    )
    assert text(fmt, c) == "301 4 6 250 51 11 96 2"
    assert text("%COMMON_DURATION(DS_RX_BEG:US_RX_BEG:us)% %COMMON_DURATION(US_TX_END:DS_TX_BEG)%", c) == "250000 245"
    # Reversed points, a custom point no filter sets: missing.
    assert text("%COMMON_DURATION(DS_TX_END:DS_RX_BEG)% %COMMON_DURATION(DS_RX_BEG:MY_POINT)%", c) == "- -"
    # No upstream: the upstream durations are missing, the total runs to now.
    c2 = ctx()
    clock2 = c2.stream_info.clock
    assert isinstance(clock2, Clock)
    clock2.t += 0.0125
    assert text("%DURATION% %RESPONSE_DURATION% %REQUEST_TX_DURATION% %UPSTREAM_PROTOCOL%", c2) == "12 - - -"


def test_addresses() -> None:
    info = StreamInfo(("10.0.0.1", 5555), ("127.0.0.30", 20080), Clock(), connection_id=42)
    info.downstream_remote_address = ("10.4.5.6", 0)  # (from XFF)
    info.upstream_host = "127.0.0.32:28080"
    up = UpstreamTiming()
    up.local_address, up.protocol, up.connection_id = ("127.0.0.1", 46344), "HTTP/1.1", 43
    info.upstream_timing = up
    c = ctx(info=info)
    assert text("%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_REMOTE_PORT%", c) == (
        "10.4.5.6:0 10.4.5.6 0"
    )
    assert text("%DOWNSTREAM_DIRECT_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_PORT%", c) == (
        "10.0.0.1:5555 127.0.0.30:20080 20080"
    )
    assert text("%UPSTREAM_HOST% %UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %UPSTREAM_REMOTE_PORT%", c) == (
        "127.0.0.32:28080 127.0.0.32 28080"
    )
    assert text("%UPSTREAM_LOCAL_ADDRESS% %UPSTREAM_LOCAL_PORT% %UPSTREAM_PROTOCOL% %UPSTREAM_CONNECTION_ID%", c) == (
        "127.0.0.1:46344 46344 HTTP/1.1 43"
    )
    assert text("%CONNECTION_ID% %UPSTREAM_HOST_NAME% %UPSTREAM_HOST_NAME_WITHOUT_PORT%", c) == (
        "42 127.0.0.32:28080 127.0.0.32"
    )
    assert text("%UPSTREAM_HOST% %UPSTREAM_LOCAL_ADDRESS% %UPSTREAM_CONNECTION_ID%") == "- - 0"


def test_plaintext_tls_facts_print_dashes() -> None:
    assert text("%DOWNSTREAM_TLS_VERSION% %REQUESTED_SERVER_NAME% %DOWNSTREAM_PEER_CERT_V_START(%s)% %TRACE_ID%") == "- - - -"


def test_names_ids_environment_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_FMT_TEST", "value-long")
    info = StreamInfo(None, None, Clock())
    info.route_name, info.upstream_cluster, info.request_id = "r1", "mycluster", "rid-9"
    c = FormatContext(info, None, None, None, local_reply_body="no healthy upstream", log_type=AccessLogType.DownstreamEnd)
    assert text("%ROUTE_NAME% %UPSTREAM_CLUSTER% %STREAM_ID% %LOCAL_REPLY_BODY% %ACCESS_LOG_TYPE%", c) == (
        "r1 mycluster rid-9 no healthy upstream DownstreamEnd"
    )
    assert text("%ENVIRONMENT(SLUICE_FMT_TEST):5% %ENVIRONMENT(SLUICE_NOT_SET)%", c) == "value -"
    assert text("%VIRTUAL_CLUSTER_NAME% %UPSTREAM_TRANSPORT_FAILURE_REASON%", c) == "- -"
    ids = {text("%UNIQUE_ID%", c) for _ in range(3)}
    assert len(ids) == 3 and all(len(i) == 36 for i in ids)


def test_grpc_status_reads_trailers_then_headers_then_the_http_code() -> None:
    grpc_req = RequestHeaders("POST", "/pkg.Svc/M", "h", [["content-type", "application/grpc"]])
    trailers = ctx(req=grpc_req, resp=ResponseHeaders(200, []), trailers=HeaderMap([["grpc-status", "4"]]))
    assert text("%GRPC_STATUS% %GRPC_STATUS(SNAKE_STRING)% %GRPC_STATUS(NUMBER)% %GRPC_STATUS_NUMBER%", trailers) == (
        "DeadlineExceeded DEADLINE_EXCEEDED 4 4"
    )
    info = StreamInfo(None, None, Clock())
    info.response_code = 503
    mapped = ctx(req=grpc_req, resp=ResponseHeaders(503, []), info=info)
    assert text("%GRPC_STATUS%", mapped) == "Unavailable"
    assert text("%GRPC_STATUS%", ctx()) == "-"  # not a gRPC request
    user = ctx(req=grpc_req, trailers=HeaderMap([["grpc-status", "42"]]))
    assert text("%GRPC_STATUS% %GRPC_STATUS_NUMBER%", user) == "42 42"


# -- START_TIME ------------------------------------------------------------------------------
def test_start_time_forms_from_the_golden_capture() -> None:
    assert text("%START_TIME%") == "2026-11-24T19:57:29.016Z"
    assert text("%START_TIME(%Y/%m/%dT%H:%M:%S.%3f%z)%") == "2026/11/24T19:57:29.016+0000"
    assert text("%START_TIME(%s)%|%START_TIME(%s.%3f)%|%START_TIME(%6f)%") == "1795550249|1795550249.016|016861"
    assert text("%START_TIME(%f)%") == "016861000"
    assert text("%START_TIME(%%s %1f)%") == "%s 0"
    assert default_time(WALL) == "2026-11-24T19:57:29.016Z"
    assert compile_time_format("%Y")(WALL) == "2026"


# -- the default line ------------------------------------------------------------------------
def test_default_format_is_envoys() -> None:
    info = StreamInfo(("127.0.0.1", 1), None, Clock())
    info.response_code, info.bytes_sent = 200, 96
    info.upstream_host = "127.0.0.32:28080"
    info.last_downstream_tx = 100.0025
    resp = ResponseHeaders(200, [["x-envoy-upstream-service-time", "1"]])
    line = default_formatter().format(ctx(info=info, resp=resp))
    assert line == (
        '[2026-11-24T19:57:29.016Z] "GET /service/colors HTTP/1.1" 200 - 0 96 2 1 "-" "curl/7.68.0" "rid-1" '
        '"front:80" "127.0.0.32:28080"\n'
    )
    assert DEFAULT_FORMAT.endswith('"%UPSTREAM_HOST%"\n')


# -- JSON ------------------------------------------------------------------------------------
SEED_JSON = {
    "start": "[%START_TIME%] ",
    "status": "%RESPONSE_CODE%",
    "status_in_text": "code=%RESPONSE_CODE%",
    "respflags": "%RESPONSE_FLAGS%",
    "bytes-sent": "%BYTES_SENT%",
    "ust": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "missing": "%REQ(X-MISSING)%",
    "missing_in_text": "v=%REQ(X-MISSING)%",
    "literal": "constant",
    "nested": {"m": "%REQ(:METHOD)%", "code": "%RESPONSE_CODE%", "empty": {"x": "%REQ(X-MISSING)%"}},
}


def test_json_is_typed_sorted_and_compact() -> None:
    resp = ResponseHeaders(200, [["x-envoy-upstream-service-time", "0"]])
    line, doc = as_json(SEED_JSON, ctx(resp=resp))
    assert line.startswith('{"bytes-sent":0,"literal":"constant","missing":null,"missing_in_text":"v=-","nested":{')
    assert list(doc) == sorted(doc)
    assert doc["status"] == 0 and doc["status_in_text"] == "code=0" and doc["respflags"] == "-"
    assert doc["ust"] == "0" and doc["start"] == "[2026-11-24T19:57:29.016Z] "
    assert doc["nested"] == {"code": 0, "empty": {"x": None}, "m": "GET"}


def test_json_omit_empty_values_drops_nulls_and_empty_objects() -> None:
    _, doc = as_json(SEED_JSON, omit_empty=True)
    assert "missing" not in doc and "ust" not in doc
    assert doc["missing_in_text"] == "v="
    assert doc["nested"] == {"code": 0, "m": "GET"}
    _, empty = as_json({"a": "%REQ(X-MISSING)%"}, omit_empty=True)
    assert empty == {}


def test_json_constants_lists_and_escaping() -> None:
    # (header values are wire strings: their bytes as latin-1; "\xc3\xa9" is UTF-8 é)
    req = RequestHeaders("GET", "/", "h", [["x-q", 'a"b\\c\td\x01\xc3\xa9'], ["x-bad", "\xff!"]])
    line, doc = as_json(
        {"n": 2.0, "f": 2.5, "b": True, "z": None, "l": ["x", "%REQ(X-Q)%", "%REQ(X-NONE)%"], "k": "%REQ(X-Q)%",
         "bad": "é%REQ(X-BAD)%"},
        ctx(req=req),
    )
    assert doc == {"b": True, "bad": "Ã©ÿ!", "f": 2.5, "k": 'a"b\\c\td\x01é', "l": ["x", 'a"b\\c\td\x01é', None],
                   "n": 2, "z": None}  # fmt: skip
    assert '"n":2,' in line and '\\u0001' in line and '\\t' in line and '\\x01é"' not in line and "é" in line
    # A string with a byte that is not UTF-8 has all its non-ASCII bytes escaped (Envoy's rule).
    assert '"bad":"\\u00c3\\u00a9\\u00ff!"' in line
    _, omitted = as_json({"l": ["%REQ(X-NONE)%"], "z": None}, omit_empty=True)
    assert omitted == {"l": []}


def test_json_format_values_must_be_json_values() -> None:
    with pytest.raises(ConfigError, match="json_format must be an object"):
        compile_json(["not", "an", "object"], "fmt")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"fmt.a: Not supported field in StreamInfo: NOPE"):
        compile_json({"a": "%NOPE%"}, "fmt")


# -- the compiled formats agree with the providers -------------------------------------------
def _rich_ctx() -> FormatContext:
    info = StreamInfo(("10.0.0.1", 5555), ("127.0.0.30", 20080), Clock(), connection_id=42)
    info.response_code, info.bytes_received, info.bytes_sent, info.attempt_count = 503, 11, 96, 3
    info.set_flag(ResponseFlag.UPSTREAM_CONNECTION_FAILURE)
    info.route_name, info.upstream_cluster, info.upstream_host, info.request_id = "r", "c", "127.0.0.2:80", "rid"
    info.response_code_details = "via_upstream"
    info.request_complete, info.last_downstream_tx = 100.001, 100.02
    up = UpstreamTiming()
    up.first_tx, up.last_tx, up.first_rx, up.last_rx = 100.002, 100.003, 100.01, 100.019
    info.upstream_timing = up
    info.upstream_host_metadata = {"ns": {"w": 3.0, "o": {"b": 1.5, "a": [1, 2.0]}}}
    req = RequestHeaders("GET", "/p?q", "h:1", [["user-agent", "ua"], ["x-request-id", "rid"], ["x-dup", "1"], ["x-dup", "2"]])
    resp = ResponseHeaders(503, [["content-type", "text/plain"]])
    return FormatContext(info, req, resp, HeaderMap([["grpc-status", "14"]]), log_type=AccessLogType.DownstreamEnd)


COMMANDS = [
    "%RESPONSE_CODE%", "%BYTES_RECEIVED%", "%BYTES_SENT%", "%DURATION%", "%PROTOCOL%", "%RESPONSE_FLAGS%",
    "%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "%CONNECTION_ID%", "%ROUTE_NAME%", "%UPSTREAM_CLUSTER%", "%UPSTREAM_HOST%",
    "%STREAM_ID%", "%START_TIME%", "%REQ(:METHOD)%", "%REQ(:PATH)%", "%REQ(:AUTHORITY)%", "%REQ(HOST)%",
    "%REQ(:SCHEME)%", "%REQ(USER-AGENT)%", "%REQ(X-DUP)%", "%REQ(X-NONE)%", "%RESP(CONTENT-TYPE)%", "%RESP(:STATUS)%",
    "%RESP(X-NONE)%", "%TRAILER(GRPC-STATUS)%", "%REQUEST_DURATION%", "%RESPONSE_DURATION%", "%DOWNSTREAM_REMOTE_PORT%",
    "%RESPONSE_FLAGS_LONG%", "%DOWNSTREAM_LOCAL_ADDRESS%", "%UPSTREAM_LOCAL_ADDRESS%", "%REQ(X-NONE?USER-AGENT):1%",
    "%REQ(X-NONE?USER-AGENT)%", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "%REQ(:PATH?X-DUP)%", "%REQ(X-DUP?:PATH)%",
    "%REQ(:PROTOCOL?X-DUP)%", "%REQ(HOST?X-NONE)%", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "%UPSTREAM_METADATA(ns:w)%", "%UPSTREAM_METADATA(ns)%",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_compiled_formats_agree_with_the_providers(command: str) -> None:
    from sluice.formatter import to_text
    from sluice.formatter.parser import parse

    c = _rich_ctx()
    (provider,) = parse(command, "fmt")
    assert not isinstance(provider, str)
    value = provider(c)
    assert text(command, c) == ("-" if value is None else to_text(value))
    assert text(command, c, omit_empty=True) == ("" if value is None else to_text(value))
    _, doc = as_json({"v": command}, c)
    assert doc == {"v": value}
    _, doc = as_json({"v": f"<{command}>"}, c)
    assert doc == {"v": "<" + ("-" if value is None else to_text(value)) + ">"}


def test_json_fast_path_is_the_general_path() -> None:
    """For the log file a json_format without omit_empty_values is encoded by orjson in one
    call, to bytes; every value it would write differently (floats, structs, huge integers,
    text that is not UTF-8) falls back to the general path, so the two always agree (and the
    tree walker agrees with both)."""
    struct = {f"k{i:02d}": c for i, c in enumerate(COMMANDS)} | {"n": {"lit": "x", "two": 2, "l": ["%REQ(X-DUP)%", 1.5]}}
    f = compile_json(struct, "fmt")
    fast = f.format_bytes
    assert fast is not None and "dumps" in fast.__code__.co_names  # (the fast path is what is tested)

    def same(c: FormatContext) -> str:
        line = fast(c)
        assert line == f.format(c).encode("utf-8", "surrogateescape")
        assert f.format(c) == f._render_line(c)
        return line.decode("utf-8", "surrogateescape")

    c = _rich_ctx()
    line = same(c)  # ns:w is 3.0 (written 3) and ns a struct: the general path's line
    doc = json.loads(line)
    w, ns = (f"k{COMMANDS.index(m):02d}" for m in ("%UPSTREAM_METADATA(ns:w)%", "%UPSTREAM_METADATA(ns)%"))
    assert f'"{w}":3,' in line and doc[ns] == {"o": {"a": [1, 2.0], "b": 1.5}, "w": 3.0}
    c.stream_info.upstream_host_metadata = None
    line = same(c)  # now every value is plain: orjson's line
    assert f'"{w}":null' in line and '"n":{"l":["1",1.5],"lit":"x","two":2}' in line
    c.stream_info.bytes_sent = 2**70  # beyond orjson's 64 bits
    assert str(2**70) in same(c)
    req = RequestHeaders("GET", "/\xff", "h", [["user-agent", "\xc3\xa9 ok"], ["x-dup", "\xff"], ["x-dup", "2"]])
    bad = FormatContext(c.stream_info, req, None)
    assert "\\u00ff" in same(bad)  # not UTF-8: Envoy's escaping, from the general path
    same(FormatContext(c.stream_info))  # no headers at all
    assert compile_json(struct, "fmt", omit_empty=True).format_bytes is None  # (the tree walker only)


def test_json_header_lookups_take_the_first_value() -> None:
    req = RequestHeaders("GET", "/", "h", [["x-a", "1"], ["x-b", "b"], ["x-a", "2"], ["user-agent", "\xc3\xa9"]])
    f = compile_json({"a": "%REQ(X-A)%", "b": "%REQ(X-B)%", "n": "%REQ(X-NONE)%", "u": "%REQ(USER-AGENT)%"}, "fmt")
    assert f.format_bytes is not None
    for line in (f.format(ctx(req=req)), f.format_bytes(ctx(req=req)).decode()):
        assert json.loads(line) == {"a": "1", "b": "b", "n": None, "u": "é"}


@pytest.mark.parametrize("key", ["ascii", "中文"])
def test_header_bytes_past_ascii_give_the_general_paths_line(key: str) -> None:
    """The fast path reads header values as the parser gave them and, when every constant is
    ASCII, checks the finished line once: a value past ASCII (here in every kind of lookup:
    pseudo-headers, a ``?`` fallback, the per-line dict, a single response lookup) sends the
    line to the general path. With a constant past ASCII (a Chinese key) each value is
    converted instead. Either way the bytes are the general path's."""
    fmt = {key: "%REQ(:AUTHORITY)%", "p": "%REQ(:PATH)%", "o": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "a": "%REQ(X-A)%",
           "b": "%REQ(X-B)%", "r": "%RESP(X-R)%", "t": "[%REQ(X-A)%]"}  # fmt: skip
    f = compile_json(fmt, "fmt")
    assert f.format_bytes is not None
    assert ("wire_text" in f.format_bytes.__code__.co_names) is (not key.isascii())  # (which of the two is tested)
    for value in ("plain", "\xff", "\xc3\xa9", "\xe4\xb8\xad"):
        req = RequestHeaders("GET", "/" + value, value, [["x-a", value], ["x-b", "b" + value]])
        resp = ResponseHeaders(200, [["x-r", value]])
        c = FormatContext(StreamInfo(("127.0.0.1", 1), None, Clock()), req, resp)
        assert f.format_bytes(c) == f.format(c).encode("utf-8", "surrogateescape"), value


def test_a_constant_orjson_cannot_write_keeps_the_general_path() -> None:
    f = compile_json({"inf": float("inf"), "c": "%RESPONSE_CODE%"}, "fmt")
    assert f.format_bytes is None
    line = f.format(ctx())
    assert line == '{"c":0,"inf":inf}\n'  # (as before the fast path: not JSON, but unchanged)


def test_orjson_escapes_every_code_point_as_the_general_path_does() -> None:
    import json.encoder

    import orjson

    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    for i in range(0, len(chars), 4096):
        s = "".join(chars[i : i + 4096])
        assert orjson.dumps(s).decode() == json.encoder.encode_basestring(s), i
