"""``/stats/prometheus``: a store rebuilt from the golden front-envoy dump renders Envoy's text
byte for byte; parameters, errors and the summary form as Envoy 1.40 answers them."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2

from sluice.admin import prometheus, stats_handler
from sluice.admin.server import AdminRequest
from sluice.stats.store import ZERO_BUCKET, BucketKey, Histogram, Store, approx_sum
from sluice.stats.tags import TagProducer

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "envoy-part3-5" / "stats"
TEXT = "text/plain; charset=UTF-8"


class FakeServer:
    """What the renderer reads of a server: its store and bootstrap."""

    def __init__(self, store: Store, bootstrap: Any = None) -> None:
        self.store = store
        self.bootstrap = bootstrap or bootstrap_pb2.Bootstrap()


def _key(lower: float, width: float) -> BucketKey:
    """The circllhist bucket whose ``(lower_bound, width)`` the detailed dump prints."""
    if width == 0:
        return ZERO_BUCKET
    exp = round(math.log10(width)) + 1
    return (exp, round(lower / width))


def _families(text: str) -> dict[str, str]:
    """family → its type, from ``# TYPE`` lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def golden_store() -> tuple[Store, str]:
    """A store holding front-envoy's counters and gauges (values from its Prometheus dump) and
    the two request-time histograms (buckets from the detailed dump); and the golden text
    without the histogram families the dumps do not give samples for."""
    text = (GOLDEN / "front-envoy.prometheus.txt").read_text()
    kinds = _families(text)
    values = {}
    for line in text.splitlines():
        m = re.match(r"^(\S+)\{(.*)\} (\S+)$", line)
        if m:
            values[(m[1], m[2])] = m[3]
    producer = TagProducer.from_config()
    store = Store()
    for line in (GOLDEN / "front-envoy.stats.txt").read_text().splitlines():
        name = line.split(":", 1)[0]
        tagged = producer.extract(name)
        kind = kinds.get(tagged.prometheus_name)
        if kind == "counter":
            store.counter(name).value = int(values[(tagged.prometheus_name, tagged.labels)])
        elif kind == "gauge":
            store.gauge(name).set(int(values[(tagged.prometheus_name, tagged.labels)]))
    detailed = (GOLDEN / "front-envoy.stats_hist_detailed.txt").read_text()
    for name, totals in re.findall(r"^(\S+):\n  totals=(.*)$", detailed, re.M):
        h = store.histogram(name)
        for lower, width, count in re.findall(r"([\d.e+]+),([\d.e+]+):(\d+)", totals):
            h.cumulative[_key(float(lower), float(width))] = int(count)
    kept = {producer.extract(n).prometheus_name for n in store.histograms}
    lines, skip = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("# TYPE "):
            family, kind = line.split()[2:]
            skip = kind == "histogram" and family not in kept
        if not skip:
            lines.append(line)
    return store, "".join(lines)


def call(server: Any, path: str, query: str = "") -> tuple[int, str, str]:
    req = AdminRequest("GET", f"{path}?{query}" if query else path, b"", "")
    status, ctype, body = stats_handler.handle(server, req)[:3]
    return status, ctype, body if isinstance(body, str) else body.decode()


def test_front_envoy_dump_byte_for_byte() -> None:
    store, expected = golden_store()
    assert call(FakeServer(store), "/stats/prometheus") == (200, TEXT, expected)
    assert call(FakeServer(store), "/stats", "format=prometheus") == (200, TEXT, expected)


def test_usedonly_filter_and_invert_use_envoy_names() -> None:
    store, _ = golden_store()
    server = FakeServer(store)
    _, _, used = call(server, "/stats/prometheus", "usedonly")
    # A stat is used once written; the rebuilt store knows only that non-zero ones were.
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="colord"} 30\n' in used
    assert "envoy_cluster_assignment_stale" not in used
    assert set(_families(used)) <= set(_families((GOLDEN / "front-envoy.prometheus.txt").read_text()))
    # The filter sees the Envoy name: "server.live" matches, "server_live" does not.
    assert call(server, "/stats/prometheus", "filter=server.live")[2] == "# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n"
    assert call(server, "/stats/prometheus", "filter=server_live")[2] == ""
    assert call(server, "/stats/prometheus", "filter=.&invert_filter")[2] == ""
    # type= does not apply to the Prometheus format (Envoy prints gauges for type=Counters too).
    assert "envoy_server_live{} 1" in call(server, "/stats/prometheus", "type=Counters&filter=server")[2]


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("filter=(bad", "Invalid re2 regex: missing ): (bad"),
        ("histogram_buckets=detailed", prometheus.BAD_BUCKET_MODE),
        ("histogram_buckets=disjoint", prometheus.BAD_BUCKET_MODE),
        ("histogram_buckets=prometheusnative", prometheus.NATIVE_NOT_SUPPORTED),
        ("histogram_buckets=bogus", stats_handler.BUCKETS_USAGE),
    ],
)
def test_bad_parameters_are_envoys_400s(query: str, body: str) -> None:
    assert call(FakeServer(Store()), "/stats/prometheus", query) == (400, TEXT, body)


def test_summary_is_the_interval_histogram() -> None:
    store = Store()
    h = store.histogram("cluster.c.upstream_rq_time")
    store.histogram("server.initialization_time_ms")
    for v in (1, 2, 2, 40):
        h.record(v)
    h.merge()
    _, _, body = call(FakeServer(store), "/stats/prometheus", "histogram_buckets=summary")
    lines = body.splitlines()
    assert lines[0] == "# TYPE envoy_cluster_upstream_rq_time summary"
    qs = [re.match(r'envoy_cluster_upstream_rq_time\{envoy_cluster_name="c",quantile="([^"]+)"\} (\S+)$', x) for x in lines[1:11]]
    assert [m[1] for m in qs if m] == ["0", "0.25", "0.5", "0.75", "0.9", "0.95", "0.99", "0.995", "0.999", "1"]
    assert lines[11].startswith('envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="c"} 45.')
    assert lines[12] == 'envoy_cluster_upstream_rq_time_count{envoy_cluster_name="c"} 4'
    # Observed on Envoy 1.40: an empty interval prints nan quantiles, sum 0 and count 0.
    assert lines[13:] == [
        "# TYPE envoy_server_initialization_time_ms summary",
        *(
            f'envoy_server_initialization_time_ms{{quantile="{q}"}} nan'
            for q in ("0", "0.25", "0.5", "0.75", "0.9", "0.95", "0.99", "0.995", "0.999", "1")
        ),
        "envoy_server_initialization_time_ms_sum{} 0",
        "envoy_server_initialization_time_ms_count{} 0",
    ]


def test_approx_sum_is_circllhists() -> None:
    # Envoy's _sum values from the golden dump: one sample of 16 ms; three samples of 1.
    assert f"{approx_sum([(16.0, 1.0, 1)]):.32g}" == "16.484848484848484417852887418121"
    assert f"{approx_sum([(1.0, 0.1, 3)]):.32g}" == "3.1428571428571432377907513000537"
    assert approx_sum([(0.0, 0.0, 5)]) == 0.0


def test_extraction_happens_once_per_name() -> None:
    store = Store()
    store.counter("cluster.a.upstream_rq_200").inc()
    server = FakeServer(store)
    call(server, "/stats/prometheus")
    producer = prometheus.tag_producer(server)
    cached = producer.extract("cluster.a.upstream_rq_200")
    call(server, "/stats/prometheus")
    assert prometheus.tag_producer(server) is producer and producer.extract("cluster.a.upstream_rq_200") is cached


def test_histogram_sum_is_the_expositions_sum() -> None:
    # One implementation: Histogram.cumulative_sample_sum is what /stats/prometheus prints.
    h = Histogram("cluster.a.upstream_rq_time")
    for v in (16, 1, 1, 1, 250, 0):
        h.record(v)
    h.merge()
    assert h.cumulative_sample_sum() == approx_sum(h.detailed(True))
    assert f"{h.cumulative_sample_sum():.32g}" != f"{16 + 16.05 + 3 * 1.05 + 252.5:.32g}"  # not the arithmetic midpoint
    assert h.interval_sample_sum() == h.cumulative_sample_sum()
