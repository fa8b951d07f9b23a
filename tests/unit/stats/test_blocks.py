"""The declared stat blocks: typed handles, Envoy's kinds, the tags each prefix carries, and
``mypy --strict`` over sluice/stats (so every handle use stays checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sluice.filters.cors.config import CorsStats
from sluice.filters.fault.config import FaultStats
from sluice.stats.blocks import (
    AdminListenerStats,
    ClusterManagerStats,
    ClusterStats,
    HcmTracingStats,
    Http1CodecStats,
    HttpConnManagerStats,
    ListenerConnections,
    ListenerHttpStats,
    ListenerManagerStats,
    ListenerStats,
    PerHandlerListenerStats,
    RouterStats,
    RuntimeStats,
    ServerStats,
)
from sluice.stats.store import Counter, Gauge, Histogram, StatsBlock, Store, stat_fields
from sluice.stats.tags import TagProducer
from sluice.upstream.health_check import HealthCheckStats
from sluice.upstream.outlier import OutlierStats

ROOT = Path(__file__).resolve().parents[3]

# Each block under a prefix as the subsystem binds it.
BLOCKS: list[tuple[type[StatsBlock], str]] = [
    (ClusterStats, "cluster.app."),
    (OutlierStats, "cluster.app.outlier_detection."),
    (HealthCheckStats, "cluster.app.health_check."),
    (HttpConnManagerStats, "http.ingress_http."),
    (FaultStats, "http.ingress_http.fault."),
    (CorsStats, "http.ingress_http.cors."),
    (ListenerStats, "listener.127.0.0.1_10000."),
    (AdminListenerStats, "listener.admin."),
    (PerHandlerListenerStats, "listener.admin.main_thread."),
    (RouterStats, "http.ingress_http."),
    (RouterStats, "http.async-client."),
    (HcmTracingStats, "http.ingress_http.tracing."),
    (Http1CodecStats, "http1."),
    (ListenerHttpStats, "listener.127.0.0.1_10000.http.ingress_http."),
    (PerHandlerListenerStats, "listener.127.0.0.1_10000.worker_0."),
    (ServerStats, "server."),
    (RuntimeStats, "runtime."),
    (ClusterManagerStats, "cluster_manager."),
    (ListenerManagerStats, "listener_manager."),
]


@pytest.mark.parametrize(("cls", "prefix"), BLOCKS, ids=[f"{c.__name__}:{p}" for c, p in BLOCKS])
def test_each_stat_is_a_typed_handle_with_its_envoy_name(cls: type[StatsBlock], prefix: str) -> None:
    store = Store()
    block = cls.declare(store, prefix)
    fields = stat_fields(cls)
    assert fields
    for attr, kind, name in fields:
        handle = getattr(block, attr)
        assert type(handle) is kind and handle.name == prefix + name, attr
        table: dict[str, Counter] | dict[str, Gauge] | dict[str, Histogram] = (
            store.counters if kind is Counter else store.gauges if kind is Gauge else store.histograms
        )
        assert table[prefix + name] is handle
    assert not hasattr(block, "__dict__"), "blocks are slotted: a misspelt handle is an error"


@pytest.mark.parametrize(("cls", "prefix"), BLOCKS, ids=[f"{c.__name__}:{p}" for c, p in BLOCKS])
def test_declared_tags_are_what_envoys_extractors_find(cls: type[StatsBlock], prefix: str) -> None:
    # The prefix's tags are on every stat of the block; any other tag comes from the stat's own
    # name (``downstream_rq_2xx``: envoy.response_code_class; ``worker_0.``: envoy.worker_id).
    # (``listener.admin.``: the extractors' negative match leaves the admin listener untagged.)
    producer = TagProducer.from_config()
    declared = () if prefix.startswith("listener.admin.") else cls.TAGS
    for _, _, name in stat_fields(cls):
        tags = dict(producer.extract(prefix + name).tags)
        assert set(declared) <= set(tags), name
        assert all(tags[t] in prefix for t in declared), name
        own = {t: v for t, v in tags.items() if t not in declared}
        assert all(v in name for v in own.values()), (name, own)


@pytest.mark.parametrize(("cls", "prefix"), BLOCKS, ids=[f"{c.__name__}:{p}" for c, p in BLOCKS])
def test_used_at_creation_names_stats_of_the_block(cls: type[StatsBlock], prefix: str) -> None:
    names = {name for _, kind, name in stat_fields(cls) if kind is not Histogram}
    assert cls.USED_AT_CREATION <= names


def test_kinds_envoy_140_gives_them() -> None:
    store = Store()
    ClusterStats.declare(store, "cluster.c.")
    HttpConnManagerStats.declare(store, "http.h.")
    ListenerManagerStats.declare(store, "listener_manager.")
    for name in ("cluster.c.upstream_queue_overloaded", "http.h.downstream_cx_http1_soft_drain", "listener_manager.workers_pinned"):
        assert name in store.gauges and name not in store.counters, name


def test_gauges_envoy_sets_at_creation_are_used_from_the_start() -> None:
    store = Store()
    ClusterStats.declare(store, "cluster.c.")
    ServerStats.declare(store, "server.")
    used = {n for n, g in store.gauges.items() if g.used}
    assert "cluster.c.warming_state" in used and "cluster.c.membership_excluded" in used
    assert "cluster.c.circuit_breakers.default.cx_open" not in used  # used once a connection opens
    assert "server.memory_allocated" in used
    assert "cluster.c.upstream_rq_active" not in used
    assert store.counters["server.static_unknown_fields"].used  # Envoy adds 0 at start
    assert not store.counters["cluster.c.upstream_rq_total"].used


def test_a_block_is_declared_only_through_declare() -> None:
    with pytest.raises(TypeError):
        ClusterStats(Store(), "cluster.c.")  # type: ignore[call-arg,misc]


# The modules mypy --strict accepts today (and what they import); a module joins once it passes.
STRICT = [
    "sluice/stats",
    "sluice/upstream/circuit_breaker.py",
    "sluice/upstream/host.py",
    "sluice/upstream/load_balancer.py",
    "sluice/http/headers.py",
    "sluice/http/stream_info.py",
    "sluice/version.py",
]


def test_mypy_strict_accepts_the_stats_package() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir=/dev/null", *STRICT],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def test_lazy_cluster_stats_are_made_on_first_use() -> None:
    store = Store()
    stats = ClusterStats.declare(store, "cluster.c.")
    # Envoy's CodeStats make these with the first response that charges them.
    assert "cluster.c.upstream_rq_time" not in store.histograms and stats.upstream_rq_time is None
    assert stats.rq_time() is stats.upstream_rq_time is store.histograms["cluster.c.upstream_rq_time"]
    assert [c.name for c in stats.retry_code_stats(503)] == [
        "cluster.c.retry.upstream_rq_503", "cluster.c.retry.upstream_rq_5xx", "cluster.c.retry.upstream_rq_completed",
    ]  # fmt: skip
    assert stats.retry_code_stats(503) is stats.retry_code_stats(503)
    assert stats.external_rq_time().name == "cluster.c.external.upstream_rq_time"


def test_listener_connections_move_the_listener_and_its_worker_copy_together() -> None:
    store = Store()
    acct = ListenerConnections(
        ListenerStats.declare(store, "listener.l."), PerHandlerListenerStats.declare(store, "listener.l.worker_0.")
    )
    acct.opened()
    assert store.value("listener.l.downstream_cx_active") == store.value("listener.l.worker_0.downstream_cx_active") == 1
    acct.closed(12.0)
    assert store.value("listener.l.downstream_cx_active") == store.value("listener.l.worker_0.downstream_cx_active") == 0
    assert store.value("listener.l.downstream_cx_total") == store.value("listener.l.worker_0.downstream_cx_total") == 1
    assert store.value("listener.l.downstream_cx_destroy") == 1
    assert store.gauges["listener.l.downstream_pre_cx_active"].used
    for h in ("downstream_cx_length_ms", "connections_accepted_per_socket_event"):
        assert store.histograms[f"listener.l.{h}"].count == 1, h
