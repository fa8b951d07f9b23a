"""CORS policies as the route table holds them (Envoy's ``Router::CorsPolicyImplBase``).

A policy comes from a route's ``route.cors`` or a virtual host's ``cors`` (both deprecated in v3
but still accepted by Envoy 1.40), or from ``typed_per_filter_config`` with an
``envoy.extensions.filters.http.cors.v3.CorsPolicy`` on a route, a virtual host or the route
configuration. Both messages have the same fields, so one parser serves both. The CORS filter
(``sluice/filters/cors/``) reads the policies; it lives above the route table, so the model is
here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.route.matching import StringTest, string_matcher
from sluice.runtime import DENOMINATORS

if TYPE_CHECKING:
    from sluice.runtime import Runtime

CORS_POLICY_TYPE = "envoy.extensions.filters.http.cors.v3.CorsPolicy"
CORS_POLICY_TYPE_URL = f"type.googleapis.com/{CORS_POLICY_TYPE}"


@dataclass(frozen=True, slots=True)
class RuntimeFlag:
    """A ``RuntimeFractionalPercent`` (``filter_enabled`` / ``shadow_enabled``)."""

    runtime_key: str
    numerator: int
    denominator: int

    @classmethod
    def from_proto(cls, rf: Any) -> RuntimeFlag:
        d = rf.default_value
        return cls(rf.runtime_key, d.numerator, DENOMINATORS.get(d.denominator, 100))

    def enabled(self, runtime: Runtime, random_value: int) -> bool:
        """``snapshot().featureEnabled(runtime_key, default_value)``."""
        return runtime.feature_enabled(self.runtime_key, self.numerator, self.denominator, random_value)


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """One CORS policy. Empty strings and None mean "not set here": the filter then looks at the
    next, less specific policy (route → virtual host → route configuration)."""

    allow_origins: tuple[StringTest, ...]
    """``allow_origin_string_match``: an origin is allowed when a matcher accepts it, or accepts ``*``."""
    allow_methods: str
    """``allow_methods``, sent as is (``*`` echoes ``access-control-request-method``)."""
    allow_headers: str
    """``allow_headers``, sent as is (``*`` echoes ``access-control-request-headers``)."""
    expose_headers: str
    """``expose_headers``."""
    max_age: str
    """``max_age``."""
    allow_credentials: bool | None
    """``allow_credentials`` (BoolValue; None when unset)."""
    allow_private_network_access: bool | None
    """``allow_private_network_access`` (BoolValue; None when unset)."""
    forward_not_matching_preflights: bool | None
    """``forward_not_matching_preflights`` (BoolValue; None when unset, which means true)."""
    filter_enabled: RuntimeFlag | None
    """``filter_enabled``; None = always enabled."""
    shadow_enabled: RuntimeFlag | None
    """``shadow_enabled``; None = never in shadow mode."""

    @classmethod
    def from_proto(cls, msg: Any, path: str) -> CorsPolicy:
        def opt_bool(name: str) -> bool | None:
            return bool(getattr(msg, name).value) if msg.HasField(name) else None

        return cls(
            allow_origins=tuple(
                string_matcher(m, f"{path}.allow_origin_string_match[{i}]") for i, m in enumerate(msg.allow_origin_string_match)
            ),
            allow_methods=msg.allow_methods,
            allow_headers=msg.allow_headers,
            expose_headers=msg.expose_headers,
            max_age=msg.max_age,
            allow_credentials=opt_bool("allow_credentials"),
            allow_private_network_access=opt_bool("allow_private_network_access"),
            forward_not_matching_preflights=opt_bool("forward_not_matching_preflights"),
            filter_enabled=RuntimeFlag.from_proto(msg.filter_enabled) if msg.HasField("filter_enabled") else None,
            shadow_enabled=RuntimeFlag.from_proto(msg.shadow_enabled) if msg.HasField("shadow_enabled") else None,
        )

    def enabled(self, runtime: Runtime, random_value: int) -> bool:
        return self.filter_enabled is None or self.filter_enabled.enabled(runtime, random_value)

    def shadow(self, runtime: Runtime, random_value: int) -> bool:
        return self.shadow_enabled is not None and self.shadow_enabled.enabled(runtime, random_value)


def typed_cors_policies(typed_per_filter_config: Any, path: str) -> dict[str, CorsPolicy]:
    """The ``typed_per_filter_config`` entries that hold a ``CorsPolicy``, by filter name.
    Entries of other types are not read here (``config/support.py`` reports them)."""
    out: dict[str, CorsPolicy] = {}
    for name, any_msg in typed_per_filter_config.items():
        if any_msg.type_url != CORS_POLICY_TYPE_URL:
            continue
        # xds-protos ships no stubs or py.typed marker (import-untyped): the message is Any to mypy.
        from envoy.extensions.filters.http.cors.v3.cors_pb2 import CorsPolicy as CorsPolicyProto

        msg = CorsPolicyProto()
        any_msg.Unpack(msg)
        out[name] = CorsPolicy.from_proto(msg, f'{path}.typed_per_filter_config["{name}"]')
    return out
