"""Header values go through the access-log formatter with omit_empty_values, after Envoy's
two legacy translations (header_parser_utils.cc)."""

from __future__ import annotations

import pytest

from sluice.errors import ConfigError
from sluice.formatter.context import FormatContext
from sluice.http.headers import RequestHeaders, ResponseHeaders
from sluice.http.stream_info import StreamInfo
from sluice.route.header_format import HeaderValueFormat, translate_metadata_format, translate_per_request_state


@pytest.mark.parametrize(("given", "expected"), [
    ('%UPSTREAM_METADATA(["ns", "key"])%', "%UPSTREAM_METADATA(ns:key)%"),
    ('x %DYNAMIC_METADATA( ["a","b","c"] )% y', "x %DYNAMIC_METADATA(a:b:c)% y"),
    ('%UPSTREAM_METADATA(["a"])%-%UPSTREAM_METADATA(["b","c"])%', "%UPSTREAM_METADATA(a)%-%UPSTREAM_METADATA(b:c)%"),
    ("%UPSTREAM_METADATA(ns:key)%", "%UPSTREAM_METADATA(ns:key)%"),  # already the colon form
    ('%UPSTREAM_METADATA([])%', '%UPSTREAM_METADATA([])%'),  # empty list: unchanged
    ('%UPSTREAM_METADATA([1, 2])%', '%UPSTREAM_METADATA([1, 2])%'),  # not strings: unchanged
    ('%UPSTREAM_METADATA(["a",])%', '%UPSTREAM_METADATA(["a",])%'),  # not JSON: unchanged
])  # fmt: skip
def test_legacy_metadata_form_is_translated(given: str, expected: str) -> None:
    assert translate_metadata_format(given) == expected


@pytest.mark.parametrize(("given", "expected"), [
    ("%PER_REQUEST_STATE(some-state)%", "%FILTER_STATE(some-state:PLAIN)%"),
    ("%PER_REQUEST_STATE(a:b)%", "%FILTER_STATE(a:b:PLAIN)%"),
    ("%PER_REQUEST_STATE(a)% %PER_REQUEST_STATE(b)%", "%FILTER_STATE(a:PLAIN)% %FILTER_STATE(b:PLAIN)%"),
])  # fmt: skip
def test_per_request_state_becomes_filter_state(given: str, expected: str) -> None:
    assert translate_per_request_state(given) == expected


def _ctx(req: list[list[str]], resp: list[list[str]] | None = None) -> FormatContext:
    info = StreamInfo(("10.0.0.1", 4321), ("10.0.0.2", 80))
    info.protocol = "HTTP/1.1"
    headers = RequestHeaders("GET", "/p", "front", req)
    return FormatContext(info, headers, ResponseHeaders(200, resp) if resp is not None else None)


def test_absent_values_are_empty_not_a_dash() -> None:
    ctx = _ctx([["user-agent", "curl/8"]])
    assert HeaderValueFormat("%REQ(x-missing)%", "v").format(ctx) == ""
    assert HeaderValueFormat("[%REQ(x-missing)%]", "v").format(ctx) == "[]"
    assert HeaderValueFormat("%REQ(x-missing?user-agent)%", "v").format(ctx) == "curl/8"
    assert HeaderValueFormat("%REQ(user-agent):3%", "v").format(ctx) == "cur"
    assert HeaderValueFormat("%RESP(server)%", "v").format(ctx) == ""


def test_any_access_log_operator_works_and_percent_is_escaped() -> None:
    ctx = _ctx([], [["server", "app"]])
    v = HeaderValueFormat("%PROTOCOL% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% 100%% %RESP(server)%", "v")
    assert v.literal is None
    assert v.format(ctx) == "HTTP/1.1 10.0.0.1 100% app"
    literal = HeaderValueFormat("plain 50%%", "v")
    assert literal.literal == "plain 50%"


@pytest.mark.parametrize(("value", "message"), [
    ("%NOPE%", "v.header.value: Not supported field in StreamInfo: NOPE"),
    ("100%", "Couldn't find valid command at position 3"),
    ("%REQ()%", "REQ requires parameters"),
])  # fmt: skip
def test_bad_values_are_config_errors_naming_the_field(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HeaderValueFormat(value, "v.header.value")
