"""The CORS filter's configuration (Envoy's ``CorsFilterConfig``).

``envoy.extensions.filters.http.cors.v3.Cors`` has no fields: everything a request needs is in
the route's policies. What one filter instance shares between its streams is its stats block
(``http.<stat_prefix>.cors.origin_valid`` / ``origin_invalid``), the runtime (``filter_enabled``
and ``shadow_enabled`` keys), a random source for those runtime draws, its configured name (the
key of ``typed_per_filter_config``) and the route configuration's own per-filter policies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from sluice.stats.store import Counter, StatsBlock, Store, block

if TYPE_CHECKING:
    from sluice.route.cors_policy import CorsPolicy
    from sluice.runtime import Runtime

FILTER_NAME = "envoy.filters.http.cors"


@block
class CorsStats(StatsBlock):
    """``http.<stat_prefix>.cors.*`` (ALL_CORS_STATS). Requests without an Origin count in neither."""

    TAGS: ClassVar[tuple[str, ...]] = ("envoy.http_conn_manager_prefix",)

    # counters
    origin_invalid: Counter
    origin_valid: Counter


@dataclass(frozen=True, slots=True)
class CorsFilterConfig:
    """One CORS filter of one HCM, shared by all its streams."""

    stats: CorsStats
    """Bound under ``http.<stat_prefix>.cors.``."""
    runtime: Runtime
    rng: random.Random
    """Draws for ``featureEnabled`` (one per call, as Envoy's snapshot draws)."""
    filter_name: str = FILTER_NAME
    """The HttpFilter's ``name``: the ``typed_per_filter_config`` key this filter reads."""
    route_config_policy: CorsPolicy | None = None
    """The route configuration's ``typed_per_filter_config`` policy for this filter, if any."""

    @classmethod
    def build(
        cls,
        store: Store,
        stats_prefix: str,
        runtime: Runtime,
        rng: random.Random,
        filter_name: str = FILTER_NAME,
        route_config_policy: CorsPolicy | None = None,
    ) -> CorsFilterConfig:
        """``stats_prefix`` is the HCM's ``http.<stat_prefix>.``, as Envoy passes it."""
        return cls(CorsStats.declare(store, f"{stats_prefix}cors."), runtime, rng, filter_name or FILTER_NAME, route_config_policy)
