"""The per-stream CORS filter (Envoy 1.40's ``CorsFilter``, ``filters/http/cors/cors_filter.cc``).

Policies, most specific first: when the route, its virtual host or the route configuration has
a ``typed_per_filter_config`` entry for this filter's name, those (route → vhost → route config)
and nothing else; otherwise the route's ``route.cors`` then the virtual host's ``cors``. Each
setting is read from the first policy that sets it; ``filter_enabled`` / ``shadow_enabled``
come from the first policy alone. Only routes with a route action count (a redirect or a
direct response has no route entry in Envoy).

At request headers:

1. No policy enabled nor shadow-enabled, or no (or an empty) ``Origin``: nothing happens.
2. The origin is checked against ``allow_origin_string_match`` (a matcher that accepts ``*``
   allows every origin; comparison is case-sensitive) and counts ``origin_valid`` or
   ``origin_invalid``. In shadow mode (shadow on, filter off) that is all.
3. A request that is not ``OPTIONS`` with a non-empty ``access-control-request-method`` goes on.
   A preflight from a refused origin goes on too (``forward_not_matching_preflights``, default
   true); otherwise the filter answers 200 itself (details ``cors_response``) with
   ``access-control-allow-origin`` (the request's origin, never ``*``), ``-allow-credentials``,
   ``-allow-methods``, ``-allow-headers``, ``-max-age``, ``-allow-private-network``, in that
   order. The requested method and headers are not validated.

At response headers (also for the preflight answer, which runs the whole encoder chain), an
allowed origin sets ``access-control-allow-origin``, ``-allow-credentials`` and
``-expose-headers`` (in place when present, else appended).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sluice.http.filter import CONTINUE, STOP_ITERATION, FilterStatus
from sluice.http.headers import ResponseHeaders

if TYPE_CHECKING:
    from sluice.filters.cors.config import CorsFilterConfig
    from sluice.http.filter_manager import ActiveStreamFilter
    from sluice.http.headers import RequestHeaders
    from sluice.route.cors_policy import CorsPolicy

CORS_RESPONSE_DETAILS = "cors_response"
ALLOW_ORIGIN = "access-control-allow-origin"
ALLOW_CREDENTIALS = "access-control-allow-credentials"
ALLOW_METHODS = "access-control-allow-methods"
ALLOW_HEADERS = "access-control-allow-headers"
MAX_AGE = "access-control-max-age"
EXPOSE_HEADERS = "access-control-expose-headers"
ALLOW_PRIVATE_NETWORK = "access-control-allow-private-network"
REQUEST_METHOD = "access-control-request-method"
REQUEST_HEADERS = "access-control-request-headers"
REQUEST_PRIVATE_NETWORK = "access-control-request-private-network"


def inline_value(headers: RequestHeaders, name: str) -> str:
    """An Envoy inline request header's value ('' when absent); repeats are joined with ``,``."""
    values = headers.get_all(name)
    if not values:
        return ""
    return values[0] if len(values) == 1 else ",".join(values)


def policies_for(stream: ActiveStreamFilter, config: CorsFilterConfig) -> tuple[CorsPolicy, ...]:
    """The policies that apply to the stream's route, most specific first (empty: none)."""
    route = stream.route
    if route is None or route.action != "route":
        return ()
    name = config.filter_name
    typed = tuple(p for p in (route.typed_cors.get(name), route.vhost.typed_cors.get(name), config.route_config_policy) if p is not None)
    if typed:
        return typed
    return tuple(p for p in (route.cors, route.vhost.cors) if p is not None)


class CorsFilter:
    """One stream's CORS handling; built by the factory with its ActiveStreamFilter (its callbacks)."""

    __slots__ = ("config", "cb", "policies", "is_cors_request", "latched_origin")

    def __init__(self, config: CorsFilterConfig, stream: ActiveStreamFilter) -> None:
        self.config = config
        self.cb = stream
        self.policies: tuple[CorsPolicy, ...] = ()
        self.is_cors_request = False
        self.latched_origin = ""

    def __repr__(self) -> str:
        return f"<CorsFilter cors={self.is_cors_request} origin={self.latched_origin!r}>"

    # -- the settings, each from the most specific policy that has it ---------------------
    def _enabled(self) -> bool:
        p = self.policies
        return bool(p) and p[0].enabled(self.config.runtime, self.config.rng.getrandbits(64))

    def _shadow_enabled(self) -> bool:
        p = self.policies
        return bool(p) and p[0].shadow(self.config.runtime, self.config.rng.getrandbits(64))

    def _origin_allowed(self, origin: str) -> bool:
        for p in self.policies:
            if p.allow_origins:
                return any(m("*") or m(origin) for m in p.allow_origins)
        return False

    def _first(self, attr: str) -> str:
        for p in self.policies:
            value: str = getattr(p, attr)
            if value:
                return value
        return ""

    def _flag(self, attr: str, default: bool) -> bool:
        for p in self.policies:
            value: bool | None = getattr(p, attr)
            if value is not None:
                return value
        return default

    # -- decoding ---------------------------------------------------------------------------
    def decode_headers(self, headers: RequestHeaders, end_stream: bool) -> FilterStatus:
        self.policies = policies_for(self.cb, self.config)
        if not self.policies:
            return CONTINUE
        enabled = self._enabled()
        if not enabled and not self._shadow_enabled():
            return CONTINUE
        origin = inline_value(headers, "origin")
        if not origin:
            return CONTINUE
        allowed = self._origin_allowed(origin)
        stats = self.config.stats
        if allowed:
            stats.origin_valid.inc()
            self.latched_origin = origin
        else:
            stats.origin_invalid.inc()
        # Envoy draws both again here: `shadowEnabled() && !enabled()`.
        if self._shadow_enabled() and not self._enabled():
            return CONTINUE
        self.is_cors_request = True
        if headers.method != "OPTIONS":
            return CONTINUE
        request_method = inline_value(headers, REQUEST_METHOD)
        if not request_method:
            return CONTINUE
        if not allowed and self._flag("forward_not_matching_preflights", True):
            return CONTINUE
        self._answer_preflight(headers, origin, allowed, request_method)
        return STOP_ITERATION

    def _answer_preflight(self, headers: RequestHeaders, origin: str, allowed: bool, request_method: str) -> None:
        out = ResponseHeaders(200)
        if allowed:
            out.set(ALLOW_ORIGIN, origin)
        if self._flag("allow_credentials", False):
            out.set(ALLOW_CREDENTIALS, "true")
        methods = self._first("allow_methods")
        if methods:
            out.set(ALLOW_METHODS, request_method if methods == "*" else methods)
        allow_headers = self._first("allow_headers")
        if allow_headers:
            out.set(ALLOW_HEADERS, inline_value(headers, REQUEST_HEADERS) if allow_headers == "*" else allow_headers)
        max_age = self._first("max_age")
        if max_age:
            out.set(MAX_AGE, max_age)
        if self._flag("allow_private_network_access", False) and inline_value(headers, REQUEST_PRIVATE_NETWORK) == "true":
            out.set(ALLOW_PRIVATE_NETWORK, "true")
        self.cb.stream_info.response_code_details = CORS_RESPONSE_DETAILS
        self.cb.encode_headers(out, True)

    def decode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        return CONTINUE

    # -- encoding ---------------------------------------------------------------------------
    def encode_headers(self, headers: ResponseHeaders, end_stream: bool) -> FilterStatus:
        if not self.is_cors_request or not self.latched_origin:
            return CONTINUE
        headers.set(ALLOW_ORIGIN, self.latched_origin)
        if self._flag("allow_credentials", False):
            headers.set(ALLOW_CREDENTIALS, "true")
        expose = self._first("expose_headers")
        if expose:
            headers.set(EXPOSE_HEADERS, expose)
        return CONTINUE

    def encode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        return CONTINUE

    def on_destroy(self) -> None:
        self.policies = ()


def cors_factory(config: CorsFilterConfig) -> Callable[[ActiveStreamFilter], CorsFilter]:
    """The per-stream maker the registry hands to the connection manager."""

    def make(stream: ActiveStreamFilter) -> CorsFilter:
        return CorsFilter(config, stream)

    return make
