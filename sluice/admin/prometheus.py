"""``/stats/prometheus`` (and ``/stats?format=prometheus``): the stats in Prometheus' text format.

Rules, as Envoy 1.40 prints them (``source/server/admin/prometheus_stats.cc``; checked against
``tests/golden/envoy-part3-5/stats/*.prometheus.txt``):
- Names are tag-extracted (:mod:`sluice.stats.tags`), sanitized (every character outside
  ``[a-zA-Z0-9_]`` becomes ``_``) and prefixed ``envoy_``; the tags become the labels, in
  extraction order; a stat without tags prints empty braces (``envoy_server_live{} 1``).
- Counters, then gauges, then histograms. Within a type, one family per tag-extracted name:
  ``# TYPE <name> <type>`` then one sample per stat; families are sorted by tag-extracted name
  and samples by full stat name, both token by token (Envoy's symbol-table order). No HELP
  lines, no blank lines.
- A histogram is its cumulative state as of the last stats flush: one ``_bucket`` per default
  bound (``le`` printed with up to 32 significant digits) and ``le="+Inf"``, then ``_sum``
  (circllhist's approximate sum, 32 significant digits) and ``_count``. Unused histograms
  are printed too, with zeros. ``histogram_buckets=summary`` prints a ``summary`` of the
  *interval* histogram instead: the ten quantiles, ``_sum`` and ``_count``.
- ``usedonly`` and ``filter`` (matched against the full Envoy name, not the Prometheus one)
  work as on ``/stats``; ``type`` and ``format`` are ignored; text readouts do not exist here.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from sluice.admin.formats import fmt_double
from sluice.stats.store import DEFAULT_BUCKETS, QUANTILES, Counter, Gauge, Histogram
from sluice.stats.tags import TaggedName, TagProducer

if TYPE_CHECKING:
    from sluice.admin.stats_handler import StatsParams
    from sluice.server import Server

BUCKET_MODES = ("cumulative", "summary")
BAD_BUCKET_MODE = "unsupported prometheus histogram bucket mode"
NATIVE_NOT_SUPPORTED = "unsupported prometheusnative histogram type when not using protobuf exposition format"

_PRODUCERS: weakref.WeakKeyDictionary[Server, TagProducer] = weakref.WeakKeyDictionary()


def tag_producer(server: Server) -> TagProducer:
    """The server's tag producer, built from its ``stats_config`` on the first scrape; it keeps
    each stat's extracted name, so a name is extracted once per process."""
    producer = _PRODUCERS.get(server)
    if producer is None:
        boot = server.bootstrap
        config = boot.stats_config if boot.HasField("stats_config") else None
        producer = _PRODUCERS[server] = TagProducer.from_config(config)
    return producer


def bucket_mode_problem(mode: str) -> str | None:
    """The 400 text for a ``histogram_buckets`` value Envoy accepts on /stats but not here."""
    if mode == "prometheusnative":
        return NATIVE_NOT_SUPPORTED
    if mode not in BUCKET_MODES:
        return BAD_BUCKET_MODE
    return None


Stat = TypeVar("Stat", Counter, Gauge, Histogram)


def _families(stats: Iterable[Stat], producer: TagProducer, p: StatsParams) -> list[tuple[str, list[tuple[TaggedName, Stat]]]]:
    """The shown stats grouped by tag-extracted name, families and samples in Envoy's order."""
    groups: dict[str, list[tuple[TaggedName, Stat]]] = {}
    for stat in stats:
        if not p.would_show(stat.name, stat.used):
            continue
        tagged = producer.extract(stat.name)
        groups.setdefault(tagged.extracted, []).append((tagged, stat))
    out: list[tuple[str, list[tuple[TaggedName, Stat]]]] = []
    for extracted in sorted(groups, key=lambda n: tuple(n.split("."))):
        members = groups[extracted]
        members.sort(key=lambda m: m[0].sort_key)
        out.append((members[0][0].prometheus_name, members))
    return out


def _numeric(name: str, members: list[tuple[TaggedName, Counter]] | list[tuple[TaggedName, Gauge]]) -> Iterable[str]:
    for tagged, stat in members:
        yield f"{name}{{{tagged.labels}}} {stat.value}\n"


def _g32(x: float) -> str:
    """``fmt::format("{:.32g}")``: exact decimal digits of the double, at most 32 of them."""
    return f"{x:.32g}"


def _histogram(name: str, members: list[tuple[TaggedName, Histogram]]) -> Iterable[str]:
    for tagged, h in members:
        labels = tagged.labels
        lead = labels + "," if labels else ""
        counts = h.cumulative_buckets()
        for bound, count in zip(DEFAULT_BUCKETS, counts, strict=True):
            yield f'{name}_bucket{{{lead}le="{_g32(bound)}"}} {count}\n'
        total = h.cumulative_sample_count()
        yield f'{name}_bucket{{{lead}le="+Inf"}} {total}\n'
        yield f"{name}_sum{{{labels}}} {_g32(h.cumulative_sample_sum())}\n"
        yield f"{name}_count{{{labels}}} {total}\n"


def _summary(name: str, members: list[tuple[TaggedName, Histogram]]) -> Iterable[str]:
    for tagged, h in members:
        labels = tagged.labels
        lead = labels + "," if labels else ""
        for q, value in zip(QUANTILES, h.interval_quantiles(), strict=True):
            yield f'{name}{{{lead}quantile="{fmt_double(q)}"}} {fmt_double(value)}\n'
        yield f"{name}_sum{{{labels}}} {_g32(h.interval_sample_sum())}\n"
        yield f"{name}_count{{{labels}}} {sum(h.interval.values())}\n"


def render(server: Server, p: StatsParams, bucket_mode: str = "cumulative") -> str:
    """The whole exposition for the request's parameters (``bucket_mode`` already checked)."""
    producer = tag_producer(server)
    store = server.store
    out: list[str] = []

    def emit(families: list[tuple[str, list[tuple[TaggedName, Stat]]]], kind: str, lines: Callable[..., Iterable[str]]) -> None:
        for name, members in families:
            out.append(f"# TYPE {name} {kind}\n")
            out.extend(lines(name, members))

    emit(_families(store.counters.values(), producer, p), "counter", _numeric)
    emit(_families(store.gauges.values(), producer, p), "gauge", _numeric)
    hists = _families(store.histograms.values(), producer, p)
    if bucket_mode == "summary":
        emit(hists, "summary", _summary)
    else:
        emit(hists, "histogram", _histogram)
    return "".join(out)
