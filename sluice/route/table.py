"""The route table (Envoy's ``Router::ConfigImpl``): virtual hosts and route entries.

Built once from a ``RouteConfiguration`` message. ``RouteTable.route(headers, random_value)``
selects the virtual host by ``:authority`` and returns the first matching route entry.
The random value is drawn once per stream (Envoy uses the stream id) and is what both
``runtime_fraction`` and ``weighted_clusters`` use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sluice.errors import ConfigError
from sluice.formatter.context import FormatContext
from sluice.paths import host_path
from sluice.route.cors_policy import CorsPolicy, typed_cors_policies
from sluice.route.header_format import HeaderValueFormat
from sluice.route.matching import (
    HeaderMatcher,
    PathMatcher,
    QueryParameterMatcher,
    compile_regex,
    query_params,
)
from sluice.route.retry_policy import RetryPolicy
from sluice.runtime import DENOMINATORS, Runtime
from sluice.tracing.decision import Sampling

if TYPE_CHECKING:
    from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
    from sluice.http.stream_info import StreamInfo

DEFAULT_ROUTE_TIMEOUT = 15.0

# Headers Envoy keeps as "inline" (O(1)) entries: adding one that exists appends to its value
# with a comma instead of adding a second entry (HeaderMapImpl::appendCopy semantics).
INLINE_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "date",
        "server",
        "location",
        "connection",
        "transfer-encoding",
        "upgrade",
        "via",
        "user-agent",
        "cache-control",
        "etag",
        "expect",
        "te",
        "keep-alive",
        "accept-encoding",
        "referer",
        "origin",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
        "x-envoy-upstream-service-time",
        "x-envoy-expected-rq-timeout-ms",
        "x-envoy-original-path",
        "x-envoy-internal",
        "x-envoy-retry-on",
        "x-envoy-max-retries",
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-attempt-count",
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
        "access-control-allow-credentials",
    }
)

APPEND_IF_EXISTS_OR_ADD = 0
ADD_IF_ABSENT = 1
OVERWRITE_IF_EXISTS_OR_ADD = 2
OVERWRITE_IF_EXISTS = 3


@dataclass(frozen=True, slots=True)
class HeaderAdd:
    name: str
    value: HeaderValueFormat
    action: int
    keep_empty: bool


class HeaderMutations:
    """``*_headers_to_add`` / ``*_headers_to_remove`` of one level (Envoy's ``HeaderParser``).

    Order, as Envoy's ``HeaderParser::evaluateHeaders``: remove first; evaluate every value
    against the original headers; then overwrite (remove + append at the end), then add.
    """

    __slots__ = ("adds", "removes", "response")

    def __init__(self, adds: Any, removes: Any, path: str, what: str) -> None:
        self.adds: list[HeaderAdd] = []
        for i, opt in enumerate(adds):
            p = f"{path}.{what}_headers_to_add[{i}]"
            name = opt.header.key.lower()
            if not name:
                raise ConfigError(f"{p}.header.key: must not be empty")
            if name.startswith(":") or name == "host":
                raise ConfigError(f"{p}.header.key: '{name}' cannot be modified")
            value = opt.header.value or opt.header.raw_value.decode("latin-1")
            if opt.HasField("append"):
                action = APPEND_IF_EXISTS_OR_ADD if opt.append.value else OVERWRITE_IF_EXISTS_OR_ADD
            else:
                action = opt.append_action
            self.adds.append(
                HeaderAdd(name, HeaderValueFormat(value, f"{p}.header.value"), action, opt.keep_empty_value)
            )
        self.response = what == "response"
        """Response mutations see the response headers too (``%RESP(...)%``, Envoy's context)."""
        self.removes = [r.lower() for r in removes]
        for i, r in enumerate(self.removes):
            if r.startswith(":") or r == "host":
                raise ConfigError(f"{path}.{what}_headers_to_remove[{i}]: '{r}' cannot be removed")

    def __bool__(self) -> bool:
        return bool(self.adds or self.removes)

    def apply(self, target: HeaderMap, req: RequestHeaders | None, info: StreamInfo) -> None:
        for r in self.removes:
            target.remove(r)
        if not self.adds:
            return
        to_add: list[tuple[str, str]] = []
        to_overwrite: list[tuple[str, str]] = []
        ctx = FormatContext(info, req, cast("ResponseHeaders", target) if self.response else None)
        for a in self.adds:
            value = a.value.format(ctx)
            if not value and not a.keep_empty:
                continue
            if a.action == APPEND_IF_EXISTS_OR_ADD:
                to_add.append((a.name, value))
            elif a.action == ADD_IF_ABSENT:
                if a.name not in target:
                    to_add.append((a.name, value))
            elif a.action == OVERWRITE_IF_EXISTS:
                if a.name in target:
                    to_overwrite.append((a.name, value))
            else:
                to_overwrite.append((a.name, value))
        for name, value in to_overwrite:
            target.remove(name)
            target.add(name, value)
        for name, value in to_add:
            if name in INLINE_HEADERS and name in target:
                target.append_value(name, value)
            else:
                target.add(name, value)


@dataclass(frozen=True, slots=True)
class RuntimeFraction:
    numerator: int
    denominator: int
    runtime_key: str

    @classmethod
    def from_proto(cls, rf: Any) -> RuntimeFraction:
        return cls(rf.default_value.numerator, DENOMINATORS[rf.default_value.denominator], rf.runtime_key)

    def enabled(self, runtime: Runtime, random_value: int) -> bool:
        return runtime.feature_enabled(self.runtime_key, self.numerator, self.denominator, random_value)


@dataclass(frozen=True, slots=True)
class WeightedClusterEntry:
    name: str
    weight: int
    runtime_key: str
    request_mutations: HeaderMutations
    response_mutations: HeaderMutations


@dataclass(frozen=True, slots=True)
class MirrorPolicy:
    cluster: str
    fraction: RuntimeFraction | None


@dataclass(frozen=True, slots=True)
class RedirectAction:
    scheme: str | None
    host: str | None
    port: int | None
    path: str | None
    prefix: str | None
    regex: re.Pattern[str] | None
    regex_sub: str
    status: int
    strip_query: bool


_REDIRECT_CODES = {0: 301, 1: 302, 2: 303, 3: 307, 4: 308}


class RouteEntry:
    """One route: its matcher, its action and its header mutations."""

    __slots__ = (
        "name",
        "path_matcher",
        "header_matchers",
        "query_matchers",
        "runtime_fraction",
        "action",
        "cluster",
        "cluster_header",
        "weighted_clusters",
        "weighted_total",
        "mirror_policies",
        "prefix_rewrite",
        "regex_rewrite",
        "regex_rewrite_sub",
        "host_rewrite_literal",
        "auto_host_rewrite",
        "timeout",
        "idle_timeout",
        "max_grpc_timeout",
        "grpc_timeout_offset",
        "max_stream_duration",
        "grpc_timeout_header_max",
        "grpc_timeout_header_offset",
        "using_new_timeouts",
        "grpc_timeouts",
        "expected_timeout_header",
        "upgrades",
        "direct_status",
        "direct_body",
        "redirect",
        "mutations",
        "vhost",
        "proto",
        "retry_policy",
        "request_chain",
        "response_chain",
        "cors",
        "typed_cors",
        "tracing",
        "decorator",
    )

    def __init__(self, r: Any, path: str, vhost: VirtualHost) -> None:
        self.proto = r
        self.vhost = vhost
        self.name = r.name
        self.path_matcher = PathMatcher(r.match, f"{path}.match")
        self.header_matchers = [
            HeaderMatcher(h, f"{path}.match.headers[{i}]") for i, h in enumerate(r.match.headers)
        ]
        self.query_matchers = [
            QueryParameterMatcher(q, f"{path}.match.query_parameters[{i}]")
            for i, q in enumerate(r.match.query_parameters)
        ]
        self.runtime_fraction = (
            RuntimeFraction.from_proto(r.match.runtime_fraction)
            if r.match.HasField("runtime_fraction")
            else None
        )
        self.tracing = Sampling.from_route(r.tracing) if r.HasField("tracing") else None
        """The route's ``tracing`` sampling (its custom_tags are refused: spans come later)."""
        self.decorator = (
            (r.decorator.operation, r.decorator.propagate.value if r.decorator.HasField("propagate") else True)
            if r.HasField("decorator")
            else None
        )
        """``decorator``: (operation, propagate), for the span's name and x-envoy-decorator-operation."""
        self.mutations = (
            HeaderMutations(r.request_headers_to_add, r.request_headers_to_remove, path, "request"),
            HeaderMutations(r.response_headers_to_add, r.response_headers_to_remove, path, "response"),
        )
        self.cluster = ""
        self.cluster_header = ""
        self.weighted_clusters: list[WeightedClusterEntry] = []
        self.weighted_total = 0
        self.mirror_policies: list[MirrorPolicy] = []
        self.prefix_rewrite: str | None = None
        self.regex_rewrite: re.Pattern[str] | None = None
        self.regex_rewrite_sub = ""
        self.host_rewrite_literal = ""
        self.auto_host_rewrite = False
        self.timeout = DEFAULT_ROUTE_TIMEOUT
        self.idle_timeout: float | None = None
        # gRPC timeouts (pure rules in sluice/http/grpc.py: grpc_route_timeout and
        # grpc_stream_duration): the router applies the legacy ones (router/timeouts.py), the
        # connection manager's stream the max_stream_duration ones (http/active_stream.py).
        self.max_grpc_timeout: float | None = None
        """``route.max_grpc_timeout`` (legacy), whole ms as seconds; None = unset."""
        self.grpc_timeout_offset: float | None = None
        """``route.grpc_timeout_offset`` (legacy)."""
        self.max_stream_duration: float | None = None
        """``route.max_stream_duration.max_stream_duration``; 0 = none for this route."""
        self.grpc_timeout_header_max: float | None = None
        """``route.max_stream_duration.grpc_timeout_header_max``; 0 = the header as is."""
        self.grpc_timeout_header_offset: float | None = None
        """``route.max_stream_duration.grpc_timeout_header_offset``."""
        self.using_new_timeouts = False
        """``route.max_stream_duration`` is set (Envoy's ``usingNewTimeouts``): the route's
        ``timeout`` and the legacy gRPC fields are then not used."""
        self.grpc_timeouts = False
        """``max_grpc_timeout`` or ``max_stream_duration`` is set: the router's one check before
        it takes the plain route timeout (``router/timeouts.py``)."""
        self.expected_timeout_header = ""
        """``x-envoy-expected-rq-timeout-ms`` for a request that only has ``timeout`` (no
        per-try timeout, no header override, no gRPC field): made once, "" for none."""
        self.upgrades: dict[str, bool] | None = None
        """``upgrade_configs``: lower-cased type → enabled (it overrides the HCM's for that type)."""
        self.direct_status = 0
        self.direct_body = ""
        self.redirect: RedirectAction | None = None
        self.retry_policy: RetryPolicy | None = None
        """The route's ``retry_policy``, else its virtual host's (set by the table); None = no retries."""
        self.request_chain: tuple[HeaderMutations, ...] = ()
        """Non-empty request mutations of route, virtual host and route config, in the order
        Envoy applies them (most specific first); set by the table once it is built."""
        self.response_chain: tuple[HeaderMutations, ...] = ()
        self.cors: CorsPolicy | None = None
        """``route.cors`` (a route action only)."""
        self.typed_cors = typed_cors_policies(r.typed_per_filter_config, path)
        """``typed_per_filter_config`` CorsPolicy entries, by filter name."""
        action = r.WhichOneof("action")
        if action is None:
            raise ConfigError(f"{path}: route needs one of route, redirect, direct_response")
        self.action = action
        if action == "route":
            self._init_route(r.route, f"{path}.route")
        elif action == "direct_response":
            self.direct_status = r.direct_response.status
            if not 200 <= self.direct_status <= 599:
                raise ConfigError(f"{path}.direct_response.status: must be in [200, 600)")
            body = r.direct_response.body
            kind = body.WhichOneof("specifier")
            if kind == "inline_string":
                self.direct_body = body.inline_string
            elif kind == "inline_bytes":
                self.direct_body = body.inline_bytes.decode("latin-1")
            elif kind == "filename":
                try:
                    with open(host_path(body.filename), encoding="latin-1") as f:
                        self.direct_body = f.read()
                except OSError as exc:
                    raise ConfigError(f"{path}.direct_response.body.filename: {exc}") from None
        elif action == "redirect":
            self.redirect = self._init_redirect(r.redirect, f"{path}.redirect")
        else:
            raise ConfigError(f"{path}.{action}: route action '{action}' is not implemented")

    def _init_route(self, ra: Any, path: str) -> None:
        spec = ra.WhichOneof("cluster_specifier")
        if spec == "cluster":
            self.cluster = ra.cluster
        elif spec == "cluster_header":
            self.cluster_header = ra.cluster_header.lower()
        elif spec == "weighted_clusters":
            wc = ra.weighted_clusters
            prefix = wc.runtime_key_prefix
            for i, c in enumerate(wc.clusters):
                p = f"{path}.weighted_clusters.clusters[{i}]"
                if not c.name:
                    raise ConfigError(f"{p}.name: must not be empty")
                self.weighted_clusters.append(
                    WeightedClusterEntry(
                        c.name,
                        c.weight.value,
                        f"{prefix}.{c.name}" if prefix else "",
                        HeaderMutations(c.request_headers_to_add, c.request_headers_to_remove, p, "request"),
                        HeaderMutations(c.response_headers_to_add, c.response_headers_to_remove, p, "response"),
                    )
                )
            if not self.weighted_clusters:
                raise ConfigError(f"{path}.weighted_clusters.clusters: must not be empty")
            total = sum(c.weight for c in self.weighted_clusters)
            if total == 0:
                raise ConfigError(f"{path}.weighted_clusters: sum of weights must be greater than 0")
        else:
            raise ConfigError(f"{path}: route needs one of cluster, cluster_header, weighted_clusters")
        for i, m in enumerate(ra.request_mirror_policies):
            p = f"{path}.request_mirror_policies[{i}]"
            if not m.cluster:
                raise ConfigError(f"{p}.cluster: must not be empty")
            self.mirror_policies.append(
                MirrorPolicy(
                    m.cluster,
                    RuntimeFraction.from_proto(m.runtime_fraction) if m.HasField("runtime_fraction") else None,
                )
            )
        if ra.prefix_rewrite:
            self.prefix_rewrite = ra.prefix_rewrite
        if ra.HasField("regex_rewrite"):
            self.regex_rewrite = compile_regex(
                ra.regex_rewrite.pattern.regex, f"{path}.regex_rewrite.pattern.regex"
            )
            # RE2 substitutions use \1; Python's re uses the same syntax.
            self.regex_rewrite_sub = ra.regex_rewrite.substitution
        hr = ra.WhichOneof("host_rewrite_specifier")
        if hr == "host_rewrite_literal":
            self.host_rewrite_literal = ra.host_rewrite_literal
        elif hr == "auto_host_rewrite":
            self.auto_host_rewrite = ra.auto_host_rewrite.value
        elif hr is not None:
            raise ConfigError(f"{path}.{hr}: host rewrite '{hr}' is not implemented")
        if ra.HasField("timeout"):
            self.timeout = ra.timeout.seconds + ra.timeout.nanos / 1e9
        if ra.HasField("idle_timeout"):
            self.idle_timeout = ra.idle_timeout.seconds + ra.idle_timeout.nanos / 1e9
        self._init_grpc_timeouts(ra, path)
        ms = round(self.timeout * 1000)
        self.expected_timeout_header = str(ms) if ms > 0 else ""
        if ra.upgrade_configs:
            self.upgrades = {u.upgrade_type.lower(): u.enabled.value if u.HasField("enabled") else True for u in ra.upgrade_configs}
        if ra.HasField("retry_policy"):
            self.retry_policy = RetryPolicy.from_proto(ra.retry_policy, f"{path}.retry_policy")
        if ra.HasField("cors"):
            self.cors = CorsPolicy.from_proto(ra.cors, f"{path}.cors")

    def _init_grpc_timeouts(self, ra: Any, path: str) -> None:
        """Envoy's ``PROTOBUF_GET_OPTIONAL_MS`` of each field: whole milliseconds. A negative
        duration is refused as Envoy's ``validateDurationFields`` does (checked with Envoy 1.40:
        "Invalid duration: Expected positive duration")."""

        def ms(d: Any, field: str) -> float:
            if d.seconds < 0 or d.nanos < 0:
                raise ConfigError(f"{path}.{field}: Invalid duration: Expected positive duration")
            return float(d.seconds * 1000 + d.nanos // 1_000_000) / 1000

        if ra.HasField("max_grpc_timeout"):
            self.max_grpc_timeout = ms(ra.max_grpc_timeout, "max_grpc_timeout")
        if ra.HasField("grpc_timeout_offset"):
            self.grpc_timeout_offset = ms(ra.grpc_timeout_offset, "grpc_timeout_offset")
        if ra.HasField("max_stream_duration"):
            msd = ra.max_stream_duration
            self.using_new_timeouts = True
            for name in ("max_stream_duration", "grpc_timeout_header_max", "grpc_timeout_header_offset"):
                if msd.HasField(name):
                    setattr(self, name, ms(getattr(msd, name), f"max_stream_duration.{name}"))
        self.grpc_timeouts = self.max_grpc_timeout is not None or self.using_new_timeouts

    @staticmethod
    def _init_redirect(rd: Any, path: str) -> RedirectAction:
        scheme = None
        kind = rd.WhichOneof("scheme_rewrite_specifier")
        if kind == "https_redirect" and rd.https_redirect:
            scheme = "https"
        elif kind == "scheme_redirect":
            scheme = rd.scheme_redirect
        prefix = path_ = None
        regex = None
        sub = ""
        pk = rd.WhichOneof("path_rewrite_specifier")
        if pk == "path_redirect":
            path_ = rd.path_redirect
        elif pk == "prefix_rewrite":
            prefix = rd.prefix_rewrite
        elif pk == "regex_rewrite":
            regex = compile_regex(rd.regex_rewrite.pattern.regex, f"{path}.regex_rewrite.pattern.regex")
            sub = rd.regex_rewrite.substitution
        return RedirectAction(
            scheme,
            rd.host_redirect or None,
            rd.port_redirect or None,
            path_,
            prefix,
            regex,
            sub,
            _REDIRECT_CODES.get(rd.response_code, 301),
            rd.strip_query,
        )

    def matches(self, headers: RequestHeaders, runtime: Runtime, random_value: int, params: dict[str, str] | None) -> bool:
        if self.runtime_fraction is not None and not self.runtime_fraction.enabled(runtime, random_value):
            return False
        if not self.path_matcher.matches(headers.path):
            return False
        for hm in self.header_matchers:
            if not hm.matches(headers):
                return False
        if self.query_matchers:
            qp = params if params is not None else query_params(headers.path)
            for qm in self.query_matchers:
                if not qm.matches(qp):
                    return False
        return True

    def pick_cluster(self, headers: RequestHeaders, runtime: Runtime, random_value: int) -> tuple[str, WeightedClusterEntry | None]:
        """The cluster name for this request ('' when none), and the weighted entry picked."""
        if self.cluster:
            return self.cluster, None
        if self.cluster_header:
            return headers.get(self.cluster_header) or "", None
        # Runtime weights replace configured ones; the actual sum is the total (Envoy ≥1.22
        # ignores total_weight). An invalid runtime value keeps the configured weight.
        weights = [
            runtime.get_integer(c.runtime_key, c.weight) if c.runtime_key else c.weight
            for c in self.weighted_clusters
        ]
        total = sum(weights)
        if total == 0:
            return "", None
        point = random_value % total
        acc = 0
        for c, w in zip(self.weighted_clusters, weights, strict=True):
            acc += w
            if point < acc:
                return c.name, c
        return "", None


class VirtualHost:
    __slots__ = ("name", "domains", "routes", "mutations", "cors", "typed_cors", "retry_policy",
                 "include_request_attempt_count", "include_attempt_count_in_response")

    def __init__(self, vh: Any, path: str) -> None:
        self.name = vh.name
        self.domains = [d.lower() for d in vh.domains]
        if not self.domains:
            raise ConfigError(f"{path}.domains: must have at least one domain")
        self.mutations = (
            HeaderMutations(vh.request_headers_to_add, vh.request_headers_to_remove, path, "request"),
            HeaderMutations(vh.response_headers_to_add, vh.response_headers_to_remove, path, "response"),
        )
        self.cors = CorsPolicy.from_proto(vh.cors, f"{path}.cors") if vh.HasField("cors") else None
        self.typed_cors = typed_cors_policies(vh.typed_per_filter_config, path)
        self.retry_policy = (
            RetryPolicy.from_proto(vh.retry_policy, f"{path}.retry_policy") if vh.HasField("retry_policy") else None
        )
        self.include_request_attempt_count: bool = vh.include_request_attempt_count
        """``include_request_attempt_count``: send ``x-envoy-attempt-count`` upstream."""
        self.include_attempt_count_in_response: bool = vh.include_attempt_count_in_response
        """``include_attempt_count_in_response``: send ``x-envoy-attempt-count`` downstream."""
        self.routes = [RouteEntry(r, f"{path}.routes[{i}]", self) for i, r in enumerate(vh.routes)]
        for r in self.routes:
            if r.action == "route" and r.retry_policy is None:
                # Envoy: the route's policy wins whole; otherwise the virtual host's applies.
                r.retry_policy = self.retry_policy


class RouteTable:
    """A compiled ``RouteConfiguration``."""

    def __init__(self, rc: Any, path: str, runtime: Runtime) -> None:
        self.name = rc.name
        self.runtime = runtime
        self.mutations = (
            HeaderMutations(rc.request_headers_to_add, rc.request_headers_to_remove, path, "request"),
            HeaderMutations(rc.response_headers_to_add, rc.response_headers_to_remove, path, "response"),
        )
        self.typed_cors = typed_cors_policies(rc.typed_per_filter_config, path)
        self.virtual_hosts = [
            VirtualHost(vh, f"{path}.virtual_hosts[{i}]") for i, vh in enumerate(rc.virtual_hosts)
        ]
        self._exact: dict[str, VirtualHost] = {}
        self._suffix: list[tuple[str, VirtualHost]] = []
        self._prefix: list[tuple[str, VirtualHost]] = []
        self._default: VirtualHost | None = None
        for i, vh in enumerate(self.virtual_hosts):
            for j, d in enumerate(vh.domains):
                where = f"{path}.virtual_hosts[{i}].domains[{j}]"
                if d == "*":
                    if self._default is not None:
                        raise ConfigError(f"{where}: only a single wildcard domain is permitted in route {rc.name}")
                    self._default = vh
                elif d.startswith("*"):
                    self._check_dup(d, where, rc.name)
                    self._suffix.append((d[1:], vh))
                elif d.endswith("*"):
                    self._check_dup(d, where, rc.name)
                    self._prefix.append((d[:-1], vh))
                else:
                    if d in self._exact:
                        raise ConfigError(
                            f"{where}: domain '{d}' is already used in route config '{rc.name}'"
                        )
                    self._exact[d] = vh
        for vh in self.virtual_hosts:
            for r in vh.routes:
                r.request_chain = tuple(m for m in (r.mutations[0], vh.mutations[0], self.mutations[0]) if m)
                r.response_chain = tuple(m for m in (r.mutations[1], vh.mutations[1], self.mutations[1]) if m)
        # Longest wildcard first, as Envoy does.
        self._suffix.sort(key=lambda t: -len(t[0]))
        self._prefix.sort(key=lambda t: -len(t[0]))

    def _check_dup(self, d: str, where: str, name: str) -> None:
        for key, _vh in self._suffix if d.startswith("*") else self._prefix:
            if key == (d[1:] if d.startswith("*") else d[:-1]):
                raise ConfigError(f"{where}: domain '{d}' is already used in route config '{name}'")

    def clusters_referenced(self) -> list[tuple[str, str]]:
        """(path, cluster) pairs for the config check that every static cluster exists."""
        out = []
        for i, vh in enumerate(self.virtual_hosts):
            for j, r in enumerate(vh.routes):
                base = f"virtual_hosts[{i}].routes[{j}].route"
                if r.cluster:
                    out.append((f"{base}.cluster", r.cluster))
                for k, c in enumerate(r.weighted_clusters):
                    out.append((f"{base}.weighted_clusters.clusters[{k}].name", c.name))
                for k, m in enumerate(r.mirror_policies):
                    out.append((f"{base}.request_mirror_policies[{k}].cluster", m.cluster))
        return out

    def virtual_host(self, authority: str) -> VirtualHost | None:
        host = authority.lower()
        vh = self._exact.get(host)
        if vh is not None:
            return vh
        for suffix, vh in self._suffix:
            # A wildcard must match at least one character ("*.foo.com" does not match ".foo.com").
            if len(host) > len(suffix) and host.endswith(suffix):
                return vh
        for prefix, vh in self._prefix:
            if len(host) > len(prefix) and host.startswith(prefix):
                return vh
        return self._default

    def route(self, headers: RequestHeaders, random_value: int) -> RouteEntry | None:
        vh = self.virtual_host(headers.authority or "")
        if vh is None:
            return None
        params = None
        runtime = self.runtime
        for r in vh.routes:
            if r.query_matchers and params is None:
                params = query_params(headers.path)
            if r.matches(headers, runtime, random_value, params):
                return r
        return None
