"""Access-log filters (``envoy.config.accesslog.v3.AccessLogFilter``), as Envoy's
``source/common/access_log/access_log_impl.cc`` evaluates them on a finished stream.

Each filter is compiled once into an object with ``evaluate(ctx) -> bool``; a logger writes a
line only when its filter (if any) says so.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol

from sluice.errors import ConfigError, UnsupportedError
from sluice.formatter.context import AccessLogType, FormatContext
from sluice.http import grpc
from sluice.http.headers import RequestHeaders
from sluice.http.stream_info import FLAG_CODES
from sluice.route.matching import HeaderMatcher
from sluice.runtime import DENOMINATORS, Runtime
from sluice.tracing.request_id import TRACED


class Filter(Protocol):
    def evaluate(self, ctx: FormatContext) -> bool: ...


_FLAG_BY_CODE = {code: int(flag) for flag, code in FLAG_CODES}
# The response flags Envoy's validation accepts in a response_flag_filter that Sluice never
# sets (the filters or features behind them are not implemented): listed, they never match.
_NEVER_SET = frozenset({"UAEX", "RLSE", "IH", "RFCF", "NFCF", "DT", "OM", "DF", "DO", "DR", "UDO"})

_EMPTY_HEADERS = RequestHeaders("", "", None)
"""What a header filter sees when the stream has no request headers (Envoy's empty map)."""


class _Comparison:
    """``ComparisonFilter``: EQ / GE / LE against a ``RuntimeUInt32`` (the runtime key, when
    set and an integer, overrides ``default_value``)."""

    __slots__ = ("op", "default", "runtime_key", "runtime")

    def __init__(self, msg: Any, runtime: Runtime) -> None:
        self.op: int = msg.op  # 0 EQ, 1 GE, 2 LE
        self.default: int = msg.value.default_value
        self.runtime_key: str = msg.value.runtime_key
        self.runtime = runtime

    def compare(self, lhs: int) -> bool:
        value = self.runtime.get_integer(self.runtime_key, self.default) if self.runtime_key else self.default
        if self.op == 1:
            return lhs >= value
        if self.op == 2:
            return lhs <= value
        return lhs == value


class StatusCodeFilter:
    __slots__ = ("cmp",)

    def __init__(self, msg: Any, runtime: Runtime) -> None:
        self.cmp = _Comparison(msg.comparison, runtime)

    def evaluate(self, ctx: FormatContext) -> bool:
        # (no response code, as for a client that went away first: 0)
        return self.cmp.compare(ctx.stream_info.response_code or 0)


class DurationFilter:
    __slots__ = ("cmp",)

    def __init__(self, msg: Any, runtime: Runtime) -> None:
        self.cmp = _Comparison(msg.comparison, runtime)

    def evaluate(self, ctx: FormatContext) -> bool:
        return self.cmp.compare(ctx.stream_info.duration_ms())


class NotHealthCheckFilter:
    """True unless the health_check HTTP filter marked the request one. Sluice has no
    health_check HTTP filter (a config naming it is refused), so no request is one."""

    __slots__ = ()

    def evaluate(self, ctx: FormatContext) -> bool:
        return True


class TraceableFilter:
    """True when the tracing decision traced the request (``TracerUtility::shouldTraceRequest``):
    sampled or forced. Without ``tracing`` on the HCM nothing is (observed with 1.40)."""

    __slots__ = ()

    def evaluate(self, ctx: FormatContext) -> bool:
        return ctx.stream_info.trace_reason in TRACED


class RuntimeFilter:
    """Samples ``percent_sampled`` (overridden by the runtime key), on the request id's
    first 8 hex digits (Envoy's UUID ``toInteger``) unless ``use_independent_randomness``
    or the request has no usable id."""

    __slots__ = ("key", "numerator", "denominator", "independent", "runtime", "rng")

    def __init__(self, msg: Any, runtime: Runtime, rng: random.Random) -> None:
        self.key: str = msg.runtime_key
        self.numerator: int = msg.percent_sampled.numerator if msg.HasField("percent_sampled") else 0
        self.denominator: int = DENOMINATORS[msg.percent_sampled.denominator] if msg.HasField("percent_sampled") else 100
        self.independent: bool = msg.use_independent_randomness
        self.runtime = runtime
        self.rng = rng

    def evaluate(self, ctx: FormatContext) -> bool:
        value: int | None = None
        if not self.independent and ctx.request_headers is not None:
            rid = ctx.request_headers.get("x-request-id")
            if rid is not None and len(rid) >= 8:
                try:
                    value = int(rid[:8], 16)
                except ValueError:
                    value = None
        if value is None:
            value = self.rng.getrandbits(64)
        return self.runtime.feature_enabled(self.key, self.numerator, self.denominator, value)


class AndFilter:
    __slots__ = ("filters",)

    def __init__(self, filters: Sequence[Filter]) -> None:
        self.filters = tuple(filters)

    def evaluate(self, ctx: FormatContext) -> bool:
        return all(f.evaluate(ctx) for f in self.filters)


class OrFilter:
    __slots__ = ("filters",)

    def __init__(self, filters: Sequence[Filter]) -> None:
        self.filters = tuple(filters)

    def evaluate(self, ctx: FormatContext) -> bool:
        return any(f.evaluate(ctx) for f in self.filters)


class HeaderFilter:
    __slots__ = ("matcher",)

    def __init__(self, msg: Any, path: str) -> None:
        self.matcher = HeaderMatcher(msg.header, f"{path}.header")

    def evaluate(self, ctx: FormatContext) -> bool:
        return self.matcher.matches(ctx.request_headers if ctx.request_headers is not None else _EMPTY_HEADERS)


class ResponseFlagFilter:
    """Any of ``flags`` set (no flags listed: any flag at all)."""

    __slots__ = ("mask", "listed")

    def __init__(self, msg: Any, path: str) -> None:
        mask = 0
        for i, code in enumerate(msg.flags):
            flag = _FLAG_BY_CODE.get(code)
            if flag is None and code not in _NEVER_SET:
                raise ConfigError(f"{path}.flags[{i}]: unknown response flag '{code}'")
            mask |= flag or 0
        self.mask = mask
        self.listed = len(msg.flags) > 0

    def evaluate(self, ctx: FormatContext) -> bool:
        flags = ctx.stream_info.response_flags
        return bool(flags & self.mask) if self.listed else flags != 0


class GrpcStatusFilter:
    """The response's gRPC status: trailers, then headers, then the HTTP code mapped
    (``Grpc::Common::getGrpcStatus``); UNKNOWN when none of them gives one."""

    __slots__ = ("statuses", "exclude")

    def __init__(self, msg: Any) -> None:
        self.statuses = frozenset(int(s) for s in msg.statuses)
        self.exclude: bool = msg.exclude

    def evaluate(self, ctx: FormatContext) -> bool:
        status: int | None = None
        if ctx.response_trailers is not None:
            status = grpc.grpc_status_of(ctx.response_trailers)
        if status is None and ctx.response_headers is not None:
            status = grpc.grpc_status_of(ctx.response_headers)
        if status is None and ctx.stream_info.response_code:
            status = grpc.http_to_grpc_status(ctx.stream_info.response_code)
        if status is None:
            status = 2  # UNKNOWN
        found = status in self.statuses
        return not found if self.exclude else found


class MetadataFilter:
    """Matches dynamic metadata. No filter Sluice implements sets dynamic metadata, so the
    key is never found: the answer is ``match_if_key_not_found`` (default true), as Envoy's."""

    __slots__ = ("result",)

    def __init__(self, msg: Any) -> None:
        self.result: bool = msg.match_if_key_not_found.value if msg.HasField("match_if_key_not_found") else True

    def evaluate(self, ctx: FormatContext) -> bool:
        return self.result


_LOG_TYPES = list(AccessLogType)


class LogTypeFilter:
    __slots__ = ("types", "exclude")

    def __init__(self, msg: Any) -> None:
        self.types = frozenset(_LOG_TYPES[int(t)] for t in msg.types)
        self.exclude: bool = msg.exclude

    def evaluate(self, ctx: FormatContext) -> bool:
        found = ctx.log_type in self.types
        return not found if self.exclude else found


def build_filter(msg: Any, path: str, runtime: Runtime, rng: random.Random) -> Filter:
    """Compile one ``AccessLogFilter``; a filter Sluice does not implement is refused."""
    kind = msg.WhichOneof("filter_specifier")
    sub: Any = getattr(msg, kind) if kind else None
    here = f"{path}.{kind}"
    if kind == "status_code_filter":
        return StatusCodeFilter(sub, runtime)
    if kind == "duration_filter":
        return DurationFilter(sub, runtime)
    if kind == "not_health_check_filter":
        return NotHealthCheckFilter()
    if kind == "traceable_filter":
        return TraceableFilter()
    if kind == "runtime_filter":
        return RuntimeFilter(sub, runtime, rng)
    if kind in ("and_filter", "or_filter"):
        if len(sub.filters) < 2:
            raise ConfigError(f"{here}.filters: needs at least 2 filters, got {len(sub.filters)}")
        parts = [build_filter(f, f"{here}.filters[{i}]", runtime, rng) for i, f in enumerate(sub.filters)]
        return AndFilter(parts) if kind == "and_filter" else OrFilter(parts)
    if kind == "header_filter":
        return HeaderFilter(sub, here)
    if kind == "response_flag_filter":
        return ResponseFlagFilter(sub, here)
    if kind == "grpc_status_filter":
        return GrpcStatusFilter(sub)
    if kind == "metadata_filter":
        return MetadataFilter(sub)
    if kind == "log_type_filter":
        return LogTypeFilter(sub)
    if kind == "extension_filter":
        raise UnsupportedError(f"{here}: access log filter extension '{sub.name}' is not implemented yet")
    raise ConfigError(f"{path}: an access log filter needs one of its filter types set")
