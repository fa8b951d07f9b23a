"""The HTTP filter registry: ``@type`` URL and filter name → the factory that builds a
per-stream filter maker from the filter's config (Envoy's ``NamedHttpFilterConfigFactory``).

Adding an extension (fault, cors, ...) is one entry here plus its package under
``sluice/filters/``; the connection manager never changes. A factory receives the unpacked
typed_config (``None`` when the filter was given by name only), its config path, and a
:class:`FilterContext` with what filters may need from the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import random

    from sluice.route.table import RouteTable
    from sluice.runtime import Runtime
    from sluice.stats.store import Store
    from sluice.upstream.cluster_manager import ClusterManager


@dataclass(frozen=True, slots=True)
class FilterContext:
    """What a filter factory may use (Envoy's ``FactoryContext``)."""

    store: Store
    runtime: Runtime
    cluster_manager: ClusterManager
    route_table: RouteTable | None
    stat_prefix: str
    local_ip: str
    rng: random.Random
    filter_name: str = ""
    """The HttpFilter's ``name`` (the key of its ``typed_per_filter_config`` entries)."""


StreamFilterMaker = Callable[[Any], Any]
"""Called once per stream with the ActiveStream; returns the filter instance."""

FilterFactory = Callable[[Any, str, FilterContext], StreamFilterMaker]


@dataclass(frozen=True, slots=True)
class FilterEntry:
    type_url: str
    names: tuple[str, ...]
    factory: FilterFactory
    terminal: bool


def _router(config: Any, path: str, ctx: FilterContext) -> StreamFilterMaker:
    from sluice.router.router_filter import RouterConfig, router_factory
    from sluice.stats.blocks import RouterStats

    stats = RouterStats.declare(ctx.store, f"http.{ctx.stat_prefix}.")  # with the router's config, as Envoy
    rc = RouterConfig(ctx.cluster_manager, ctx.runtime, stats, ctx.route_table, ctx.local_ip, ctx.rng)
    return router_factory(rc)  # type: ignore[no-any-return]


def _fault(config: Any, path: str, ctx: FilterContext) -> StreamFilterMaker:
    # xds-protos ships no stubs or py.typed marker (import-untyped): the message is Any to mypy.
    from envoy.extensions.filters.http.fault.v3.fault_pb2 import HTTPFault

    from sluice.filters.fault.config import FaultFilterConfig
    from sluice.filters.fault.filter import fault_factory

    msg = config if config is not None else HTTPFault()
    return fault_factory(FaultFilterConfig.from_proto(msg, path, ctx.runtime, ctx.store, f"http.{ctx.stat_prefix}."))  # type: ignore[no-any-return]


def _cors(config: Any, path: str, ctx: FilterContext) -> StreamFilterMaker:
    from sluice.filters.cors.config import CorsFilterConfig
    from sluice.filters.cors.filter import cors_factory

    # `Cors` has no fields; the policies are the route's.
    rc = ctx.route_table
    policy = rc.typed_cors.get(ctx.filter_name) if rc is not None else None
    return cors_factory(CorsFilterConfig.build(ctx.store, f"http.{ctx.stat_prefix}.", ctx.runtime, ctx.rng, ctx.filter_name, policy))


ENTRIES: tuple[FilterEntry, ...] = (
    FilterEntry(
        "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors",
        ("envoy.filters.http.cors",),
        _cors,
        terminal=False,
    ),
    FilterEntry(
        "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
        ("envoy.filters.http.fault",),
        _fault,
        terminal=False,
    ),
    FilterEntry(
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        ("envoy.filters.http.router", "envoy.router"),
        _router,
        terminal=True,
    ),
)

_BY_TYPE = {e.type_url: e for e in ENTRIES}
_BY_NAME = {n: e for e in ENTRIES for n in e.names}


def lookup(type_url: str, name: str) -> FilterEntry | None:
    """By ``@type`` when the filter has a typed_config, else by name (the 1.21 form)."""
    if type_url:
        return _BY_TYPE.get(type_url)
    return _BY_NAME.get(name)
