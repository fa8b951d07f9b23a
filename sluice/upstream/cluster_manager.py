"""The cluster manager: name → cluster, built from ``static_resources.clusters``."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from sluice.errors import ConfigError
from sluice.stats.blocks import ClusterManagerStats, DnsResolverStats, RouterStats, ThreadLocalClusterManagerStats
from sluice.stats.store import Store
from sluice.upstream.cluster import STATIC, Cluster


class ClusterManager:
    def __init__(self, clusters: Any, store: Store, rng: random.Random, runtime: Any = None) -> None:
        self.clusters: dict[str, Cluster] = {}
        self.dns_stats: DnsResolverStats | None = None
        self.stats = ClusterManagerStats.declare(store, "cluster_manager.")
        self.async_client_stats = RouterStats.declare(store, "http.async-client.")
        """The router stats of Envoy's async client, which the cluster manager owns (Sluice's
        health checks and StatsD TCP sink open their connections without it: they stay 0)."""
        for i, c in enumerate(clusters):
            path = f"static_resources.clusters[{i}]"
            if not c.name:
                raise ConfigError(f"{path}.name: must not be empty")
            if c.name in self.clusters:
                raise ConfigError(f"{path}.name: cluster manager: duplicate cluster '{c.name}'")
            cluster = self.clusters[c.name] = Cluster(c, path, store, rng, runtime)
            if cluster.type != STATIC:
                # Envoy makes its one c-ares resolver (and dns.cares.*) for the first DNS cluster.
                if self.dns_stats is None:
                    self.dns_stats = DnsResolverStats.declare(store, "dns.cares.")
                cluster.dns_stats = self.dns_stats
            self.stats.cluster_added.inc()
        self.stats.active_clusters.set(len(self.clusters))
        # Every thread holds every (static) cluster: Sluice's one loop stands for both threads.
        for thread in ("main_thread", "worker_0"):
            tls = ThreadLocalClusterManagerStats.declare(store, f"thread_local_cluster_manager.{thread}.")
            tls.clusters_inflated.set(len(self.clusters))

    def get(self, name: str) -> Cluster | None:
        return self.clusters.get(name)

    async def initialize(self) -> None:
        await asyncio.gather(*(c.initialize() for c in self.clusters.values()))

    def stop(self) -> None:
        for c in self.clusters.values():
            c.stop()
