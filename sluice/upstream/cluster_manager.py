"""The cluster manager: name → cluster, built from ``static_resources.clusters``."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from sluice.errors import ConfigError
from sluice.stats.blocks import ClusterManagerStats
from sluice.stats.store import Store
from sluice.upstream.cluster import Cluster


class ClusterManager:
    def __init__(self, clusters: Any, store: Store, rng: random.Random, runtime: Any = None) -> None:
        self.clusters: dict[str, Cluster] = {}
        self.stats = ClusterManagerStats(store, "cluster_manager.")
        for i, c in enumerate(clusters):
            path = f"static_resources.clusters[{i}]"
            if not c.name:
                raise ConfigError(f"{path}.name: must not be empty")
            if c.name in self.clusters:
                raise ConfigError(f"{path}.name: cluster manager: duplicate cluster '{c.name}'")
            self.clusters[c.name] = Cluster(c, path, store, rng, runtime)
            self.stats.cluster_added.inc()
        self.stats.active_clusters.set(len(self.clusters))

    def get(self, name: str) -> Cluster | None:
        return self.clusters.get(name)

    async def initialize(self) -> None:
        await asyncio.gather(*(c.initialize() for c in self.clusters.values()))

    def stop(self) -> None:
        for c in self.clusters.values():
            c.stop()
