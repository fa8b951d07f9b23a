"""sluice.http.grpc: each case is a behaviour read from Envoy 1.40's source (named per test)."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest

from sluice.http import grpc
from sluice.http.grpc import (
    encode_grpc_message,
    encode_grpc_timeout,
    encode_grpc_timeout_ms,
    grpc_route_timeout,
    grpc_status_of,
    grpc_stream_duration,
    grpc_to_http_status,
    has_grpc_content_type,
    http_to_grpc_status,
    is_grpc_request,
    local_reply_headers,
    parse_grpc_timeout,
    parse_grpc_timeout_ms,
)
from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders


def req(*entries: tuple[str, str], method: str = "POST", path: str = "/pkg.Svc/Method") -> RequestHeaders:
    return RequestHeaders(method, path, "host", [[k, v] for k, v in entries])


GRPC = ("content-type", "application/grpc")


# -- Grpc::Common::hasGrpcContentType / isGrpcRequestHeaders ----------------------------------
@pytest.mark.parametrize(
    ("ctype", "expected"),
    [
        ("application/grpc", True),
        ("application/grpc+proto", True),
        ("application/grpc+json", True),
        ("application/grpc-web", False),
        ("application/grpc-web+proto", False),
        ("application/grpcx", False),
        ("application/json", False),
        ("Application/grpc", False),  # Envoy compares bytes: the value is case-sensitive
        ("application/grpc;charset=utf-8", False),
        ("", False),
    ],
)
def test_grpc_content_type(ctype: str, expected: bool) -> None:
    assert is_grpc_request(req(("content-type", ctype))) is expected
    assert has_grpc_content_type(HeaderMap([["content-type", ctype]])) is expected


def test_no_content_type_is_not_grpc() -> None:
    assert not is_grpc_request(req())


def test_a_connect_request_without_a_path_is_not_grpc() -> None:
    assert not is_grpc_request(req(GRPC, method="CONNECT", path=""))


# -- Grpc::Utility::httpToGrpcStatus / grpcToHttpStatus -------------------------------------------
@pytest.mark.parametrize(
    ("http", "code"),
    [(400, 13), (401, 16), (403, 7), (404, 12), (429, 14), (502, 14), (503, 14), (504, 14),
     (200, 2), (409, 2), (500, 2), (501, 2), (418, 2)],
)  # fmt: skip
def test_http_to_grpc_status(http: int, code: int) -> None:
    assert http_to_grpc_status(http) == code


@pytest.mark.parametrize(
    ("code", "http"),
    [(0, 200), (1, 499), (2, 500), (3, 400), (4, 504), (5, 404), (6, 409), (7, 403), (8, 429), (9, 400),
     (10, 409), (11, 400), (12, 501), (13, 500), (14, 503), (15, 500), (16, 401), (17, 500), (-1, 500)],
)  # fmt: skip
def test_grpc_to_http_status(code: int, http: int) -> None:
    assert grpc_to_http_status(code) == http


# -- Grpc::Common::getGrpcStatus ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("0", 0), ("14", 14), ("16", 16), ("17", -1), ("abc", -1), ("-1", -1), ("+4", 4),
     ("1.0", -1)],
)  # fmt: skip
def test_grpc_status_of(value: str | None, expected: int | None) -> None:
    h = ResponseHeaders(200, [] if value is None else [["grpc-status", value]])
    assert grpc_status_of(h) == expected


def test_grpc_status_user_defined_allowed() -> None:
    assert grpc_status_of(ResponseHeaders(200, [["grpc-status", "1000"]]), allow_user_defined=True) == 1000


# -- PercentEncoding::encode --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("plain text, punctuation: !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}", "plain text, punctuation: !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}"),
        ("100%", "100%25"),
        ("a~b", "a%7Eb"),  # Envoy escapes '~' (ch >= '~'), the gRPC spec would not
        ("tab\there", "tab%09here"),
        ("line\nbreak", "line%0Abreak"),
        ("del\x7f", "del%7F"),
        ("caf\u00e9", "caf%C3%A9"),  # each UTF-8 byte, uppercase hex
        ("\u2603", "%E2%98%83"),
        ("", ""),
    ],
)
def test_encode_grpc_message(text: str, encoded: str) -> None:
    assert encode_grpc_message(text) == encoded


# -- Http::Utility::prepareLocalReply for a gRPC request ----------------------------------------
def test_local_reply_is_trailers_only_with_the_mapped_status_and_message() -> None:
    h = local_reply_headers(503, "no healthy upstream", None)
    assert h.status == 200
    assert h.entries == [["content-type", "application/grpc"], ["grpc-status", "14"], ["grpc-message", "no healthy upstream"]]


def test_local_reply_without_body_has_no_message() -> None:
    h = local_reply_headers(404, "", None)
    assert h.entries == [["content-type", "application/grpc"], ["grpc-status", "12"]]


def test_local_reply_grpc_status_given_wins() -> None:
    h = local_reply_headers(503, "fault filter abort", 4)
    assert h.get("grpc-status") == "4"


def test_local_reply_to_head_has_no_message() -> None:
    h = local_reply_headers(503, "no way", None, is_head=True)
    assert h.entries == [["content-type", "application/grpc"], ["grpc-status", "14"]]


def test_local_reply_message_is_percent_encoded() -> None:
    assert local_reply_headers(500, "50% ~", None).get("grpc-message") == "50%25 %7E"


def test_local_reply_over_modified_headers() -> None:
    """modify_headers ran first: content-type is replaced in place, an added grpc-status is
    kept, an added content-length removed, other additions stay in order."""
    base = ResponseHeaders(503, [["x-added", "1"], ["content-type", "text/plain"], ["content-length", "7"]])
    h = local_reply_headers(503, "no way", None, headers=base)
    assert h is base
    assert h.status == 200
    assert h.entries == [["x-added", "1"], ["content-type", "application/grpc"], ["grpc-status", "14"], ["grpc-message", "no way"]]
    kept = local_reply_headers(503, "", None, headers=ResponseHeaders(503, [["grpc-status", "9"]]))
    assert kept.get("grpc-status") == "9"


# -- Grpc::Common::getGrpcTimeout ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("1H", 3_600_000),
        ("2M", 120_000),
        ("3S", 3000),
        ("250m", 250),
        ("1000u", 1),
        ("1001u", 2),  # rounded up to the next millisecond
        ("1u", 1),
        ("0u", 0),
        ("1n", 1),
        ("1000000n", 1),
        ("1000001n", 2),
        ("0S", 0),
        ("99999999S", 99_999_999_000),
        ("100000000S", None),  # above MAX_GRPC_TIMEOUT_VALUE
        ("000000001S", 1000),  # Envoy limits the number, not the digit count
        ("+5S", 5000),  # absl::SimpleAtoi takes a sign...
        (" 5S", 5000),  # ...and surrounding whitespace
        ("-1S", None),
        ("-0S", 0),  # into an int64 "-0" is 0 (checked with Envoy 1.40: the stream ends at once)
        ("-000m", 0),
        ("-+0S", None),  # one sign only
        ("-S", None),
        ("5", None),  # no unit: "5" is the unit, "" the value
        ("S", None),
        ("5s", None),  # units are case-sensitive
        ("5x", None),
        ("1.5S", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_grpc_timeout(value: str | None, ms: int | None) -> None:
    assert parse_grpc_timeout_ms(value) == ms
    assert parse_grpc_timeout(value) == (None if ms is None else ms / 1000)


# -- Grpc::Common::toGrpcTimeout ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("ms", "encoded"),
    [
        (0, "0m"),
        (1, "1m"),
        (99_999_999, "99999999m"),
        (100_000_000, "100000S"),
        (99_999_999_999, "99999999S"),
        (100_000_000_000, "1666666M"),
        (6_000_000_000_000, "1666666H"),
        (360_000_000_000_000_000, "99999999H"),  # clipped: no unit above hours
    ],
)
def test_encode_grpc_timeout(ms: int, encoded: str) -> None:
    assert encode_grpc_timeout_ms(ms) == encoded


def test_encode_grpc_timeout_seconds() -> None:
    assert encode_grpc_timeout(1.5) == "1500m"
    assert encode_grpc_timeout(0.25) == "250m"


# -- FilterUtility::finalTimeout (legacy max_grpc_timeout / grpc_timeout_offset) ------------------
def test_route_timeout_for_a_non_grpc_request_or_without_max() -> None:
    assert grpc_route_timeout(15.0, req(("grpc-timeout", "1S")), 10.0, None) == 15.0
    assert grpc_route_timeout(15.0, req(GRPC, ("grpc-timeout", "1S")), None, None) == 15.0


def test_route_timeout_is_the_header_capped_at_max() -> None:
    assert grpc_route_timeout(15.0, req(GRPC, ("grpc-timeout", "2S")), 10.0, None) == 2.0
    assert grpc_route_timeout(15.0, req(GRPC, ("grpc-timeout", "20S")), 10.0, None) == 10.0


def test_route_timeout_without_header_is_max_or_infinite() -> None:
    assert grpc_route_timeout(15.0, req(GRPC), 10.0, None) == 10.0
    assert grpc_route_timeout(15.0, req(GRPC), 0.0, None) == 0.0  # max 0: infinite
    assert grpc_route_timeout(15.0, req(GRPC, ("grpc-timeout", "bogus")), 10.0, None) == 10.0


def test_route_timeout_max_zero_takes_the_header_as_is() -> None:
    assert grpc_route_timeout(15.0, req(GRPC, ("grpc-timeout", "1H")), 0.0, None) == 3600.0


def test_route_timeout_offset_applies_only_when_it_leaves_time() -> None:
    assert grpc_route_timeout(15.0, req(GRPC, ("grpc-timeout", "2S")), 10.0, 0.5) == 1.5
    assert grpc_route_timeout(15.0, req(GRPC, ("grpc-timeout", "2S")), 10.0, 2.0) == 2.0  # offset == timeout: not applied
    assert grpc_route_timeout(15.0, req(GRPC, ("grpc-timeout", "2S")), 10.0, 3.0) == 2.0
    # The offset comes before the cap: 20 s - 1 s is still capped at 10 s.
    assert grpc_route_timeout(15.0, req(GRPC, ("grpc-timeout", "20S")), 10.0, 1.0) == 10.0


def test_route_timeout_with_max_stream_duration_is_none() -> None:
    assert grpc_route_timeout(15.0, req(GRPC, ("grpc-timeout", "2S")), 10.0, None, using_new_timeouts=True) == 0.0
    assert grpc_route_timeout(15.0, req(), None, None, using_new_timeouts=True) == 0.0


# -- ActiveStream::refreshDurationTimeout (max_stream_duration's gRPC fields) --------------------
def test_stream_duration_from_the_header_capped_and_offset() -> None:
    h = req(GRPC, ("grpc-timeout", "5S"))
    assert grpc_stream_duration(h, 10.0, None, None, None) == 5.0
    assert grpc_stream_duration(h, 2.0, None, None, None) == 2.0
    assert grpc_stream_duration(h, 0.0, None, None, None) == 5.0  # max 0: header as is
    assert grpc_stream_duration(h, 10.0, 1.0, None, None) == 4.0
    assert grpc_stream_duration(h, 10.0, 5.0, None, None) == 0.0  # offset >= timeout: at once
    assert grpc_stream_duration(h, 2.0, 0.5, None, None) == 1.5  # cap first, then the offset


def test_stream_duration_header_read_whatever_the_content_type() -> None:
    assert grpc_stream_duration(req(("grpc-timeout", "3S")), 10.0, None, None, None) == 3.0


def test_stream_duration_without_header_or_max_falls_back() -> None:
    no_header = req(GRPC)
    assert grpc_stream_duration(no_header, 10.0, None, 7.0, 9.0) == 7.0
    assert grpc_stream_duration(no_header, 10.0, None, 0.0, 9.0) is None  # route's 0: none
    assert grpc_stream_duration(no_header, 10.0, None, None, 9.0) == 9.0
    assert grpc_stream_duration(no_header, 10.0, None, None, 0.0) is None
    assert grpc_stream_duration(no_header, 10.0, None, None, None) is None
    # A header but no grpc_timeout_header_max: the header is not used.
    assert grpc_stream_duration(req(GRPC, ("grpc-timeout", "1S")), None, None, 7.0, None) == 7.0


def test_status_constants_match_grpc() -> None:
    assert (grpc.CANCELLED, grpc.DEADLINE_EXCEEDED, grpc.RESOURCE_EXHAUSTED, grpc.INTERNAL, grpc.UNAVAILABLE) == (1, 4, 8, 13, 14)


# -- the route fields, parsed by the route table ------------------------------------------------
def _route(action: dict[str, object]) -> object:
    from envoy.config.route.v3.route_pb2 import RouteConfiguration
    from google.protobuf import json_format

    from sluice.route.table import RouteTable
    from sluice.runtime import Runtime

    rc = {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c", **action}}]}]}
    table = RouteTable(json_format.ParseDict(rc, RouteConfiguration()), "rc", Runtime([]))
    return table.virtual_hosts[0].routes[0]


def test_route_table_parses_the_legacy_grpc_fields() -> None:
    r: Any = _route({"timeout": "20s", "max_grpc_timeout": "10.0005s", "grpc_timeout_offset": "0.1s"})
    assert (r.max_grpc_timeout, r.grpc_timeout_offset, r.using_new_timeouts) == (10.0, 0.1, False)  # whole ms
    assert grpc_route_timeout(r.timeout, req(GRPC, ("grpc-timeout", "2S")), r.max_grpc_timeout, r.grpc_timeout_offset) == 1.9
    assert grpc_route_timeout(r.timeout, req(), r.max_grpc_timeout, r.grpc_timeout_offset) == 20.0


def test_route_table_parses_max_stream_duration() -> None:
    r: Any = _route(
        {"max_stream_duration": {"max_stream_duration": "30s", "grpc_timeout_header_max": "5s", "grpc_timeout_header_offset": "0.01s"}}
    )
    assert (r.max_stream_duration, r.grpc_timeout_header_max, r.grpc_timeout_header_offset, r.using_new_timeouts) == (30.0, 5.0, 0.01, True)
    h = req(GRPC, ("grpc-timeout", "9S"))
    assert grpc_route_timeout(r.timeout, h, r.max_grpc_timeout, r.grpc_timeout_offset, using_new_timeouts=r.using_new_timeouts) == 0.0
    assert grpc_stream_duration(h, r.grpc_timeout_header_max, r.grpc_timeout_header_offset, r.max_stream_duration, None) == 4.99
    empty: Any = _route({"max_stream_duration": {}})
    assert empty.using_new_timeouts and empty.max_stream_duration is None


def test_route_table_defaults_leave_grpc_fields_unset() -> None:
    r: Any = _route({})
    assert (r.max_grpc_timeout, r.grpc_timeout_offset, r.max_stream_duration, r.using_new_timeouts) == (None, None, None, False)


def test_the_grpc_timeout_fields_are_supported() -> None:
    """Applied by the router (legacy) and the connection manager's stream (max_stream_duration)."""
    from envoy.config.route.v3 import route_components_pb2

    from sluice.config.support import SUPPORTED_FIELDS

    names = {"max_grpc_timeout", "grpc_timeout_offset", "max_stream_duration"}
    assert names <= set(route_components_pb2.RouteAction.DESCRIPTOR.fields_by_name)
    assert names <= SUPPORTED_FIELDS["envoy.config.route.v3.RouteAction"]
    msd = set(route_components_pb2.RouteAction.MaxStreamDuration.DESCRIPTOR.fields_by_name)
    assert msd == SUPPORTED_FIELDS["envoy.config.route.v3.RouteAction.MaxStreamDuration"]


def test_the_routers_one_check_covers_every_grpc_field() -> None:
    assert not cast(Any, _route({})).grpc_timeouts
    assert cast(Any, _route({"max_grpc_timeout": "0s"})).grpc_timeouts
    assert cast(Any, _route({"max_stream_duration": {}})).grpc_timeouts
    # grpc_timeout_offset alone changes nothing (Envoy reads it only with max_grpc_timeout).
    assert not cast(Any, _route({"grpc_timeout_offset": "1s"})).grpc_timeouts


def test_the_plain_expected_timeout_header_is_made_once() -> None:
    assert cast(Any, _route({})).expected_timeout_header == "15000"
    assert cast(Any, _route({"timeout": "0.25s"})).expected_timeout_header == "250"
    assert cast(Any, _route({"timeout": "0s"})).expected_timeout_header == ""


@pytest.mark.parametrize(
    ("action", "field"),
    [
        ({"max_grpc_timeout": "-1s"}, "max_grpc_timeout"),
        ({"grpc_timeout_offset": "-0.5s"}, "grpc_timeout_offset"),
        ({"max_stream_duration": {"max_stream_duration": "-1s"}}, "max_stream_duration.max_stream_duration"),
        ({"max_stream_duration": {"grpc_timeout_header_max": "-1s"}}, "max_stream_duration.grpc_timeout_header_max"),
        ({"max_stream_duration": {"grpc_timeout_header_offset": "-0.5s"}}, "max_stream_duration.grpc_timeout_header_offset"),
    ],
)
def test_a_negative_duration_is_refused_by_name(action: dict[str, object], field: str) -> None:
    """As Envoy 1.40's validateDurationFields ("Invalid duration: Expected positive duration")."""
    from sluice.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"\.route\.{re.escape(field)}: Invalid duration: Expected positive duration"):
        _route(action)
