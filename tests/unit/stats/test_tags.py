"""Tag extraction: Envoy's default extractors, stats_tags specifiers, and the names in the golden
dumps (every stat of every ``*.stats.txt`` must give the family and labels of its
``*.prometheus.txt`` line)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from envoy.config.metrics.v3 import stats_pb2
from google.protobuf import json_format

from sluice.config import well_known_names as names
from sluice.errors import ConfigError
from sluice.stats.tags import TagProducer, sanitize

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "envoy-part3-5"
DUMPS = [
    p
    for p in sorted((GOLDEN / "stats").glob("*.stats.txt")) + sorted((GOLDEN / "monitoring").glob("*.stats.txt"))
    if p.with_name(p.name.replace(".stats.txt", ".prometheus.txt")).exists()
]

DEFAULTS = TagProducer.from_config()


def tags_of(name: str, producer: TagProducer = DEFAULTS) -> tuple[str, list[tuple[str, str]]]:
    t = producer.extract(name)
    return t.extracted, list(t.tags)


# (full name, tag-extracted name, tags in Envoy's order): one or more per default extractor.
CASES = [
    # from the golden dumps
    ("cluster.colord.upstream_rq_200", "cluster.upstream_rq", [(names.RESPONSE_CODE, "200"), (names.CLUSTER_NAME, "colord")]),
    ("cluster.colord.upstream_rq_5xx", "cluster.upstream_rq_xx", [(names.RESPONSE_CODE_CLASS, "5"), (names.CLUSTER_NAME, "colord")]),
    ("cluster.colord.retry.upstream_rq_503", "cluster.retry.upstream_rq", [(names.RESPONSE_CODE, "503"), (names.CLUSTER_NAME, "colord")]),
    ("http.ingress_http.downstream_rq_2xx", "http.downstream_rq_xx",
     [(names.RESPONSE_CODE_CLASS, "2"), (names.HTTP_CONN_MANAGER_PREFIX, "ingress_http")]),
    ("http.ingress_http.fault.aborts_injected", "http.fault.aborts_injected", [(names.HTTP_CONN_MANAGER_PREFIX, "ingress_http")]),
    ("listener.127.0.0.20_20080.downstream_cx_total", "listener.downstream_cx_total", [(names.LISTENER_ADDRESS, "127.0.0.20_20080")]),
    ("listener.127.0.0.20_20080.worker_0.downstream_cx_total", "listener.worker_downstream_cx_total",
     [(names.WORKER_ID, "0"), (names.LISTENER_ADDRESS, "127.0.0.20_20080")]),
    ("listener.127.0.0.20_20080.http.ingress_http.downstream_rq_2xx", "listener.http.downstream_rq_xx",
     [(names.RESPONSE_CODE_CLASS, "2"), (names.HTTP_CONN_MANAGER_PREFIX, "ingress_http"), (names.LISTENER_ADDRESS, "127.0.0.20_20080")]),
    ("listener.admin.downstream_cx_total", "listener.admin.downstream_cx_total", []),  # "admin" is no address
    ("listener.admin.http.admin.downstream_rq_2xx", "listener.admin.http.downstream_rq_xx",
     [(names.RESPONSE_CODE_CLASS, "2"), (names.HTTP_CONN_MANAGER_PREFIX, "admin")]),
    ("server.worker_0.watchdog_miss", "server.worker_watchdog_miss", [(names.WORKER_ID, "0")]),
    ("server.live", "server.live", []),
    ("cluster_manager.cluster_added", "cluster_manager.cluster_added", []),
    # the other defaults, on names shaped as their Envoy subsystems make them
    ("listener_manager.worker_3.dispatcher.loop_duration_us", "listener_manager.worker_dispatcher.loop_duration_us", [(names.WORKER_ID, "3")]),
    ("thread_local_cluster_manager.worker_0.clusters_inflated", "thread_local_cluster_manager.worker_clusters_inflated",
     [(names.WORKER_ID, "0")]),
    ("listener.[__1]_8080.downstream_cx_total", "listener.downstream_cx_total", [(names.LISTENER_ADDRESS, "[__1]_8080")]),
    ("listener.my_prefix.downstream_cx_total", "listener.downstream_cx_total", [(names.LISTENER_ADDRESS, "my_prefix")]),
    ("http.p.dynamodb.table.t1.capacity.GetItem.__partition_id=abcdefg", "http.dynamodb.table.capacity",
     [(names.DYNAMO_PARTITION_ID, "abcdefg"), (names.DYNAMO_OPERATION, "GetItem"), (names.DYNAMO_TABLE, "t1"),
      (names.HTTP_CONN_MANAGER_PREFIX, "p")]),
    ("http.p.dynamodb.operation.Query.upstream_rq_time", "http.dynamodb.operation.upstream_rq_time",
     [(names.DYNAMO_OPERATION, "Query"), (names.HTTP_CONN_MANAGER_PREFIX, "p")]),
    ("http.p.dynamodb.error.t1.ResourceNotFound", "http.dynamodb.error.ResourceNotFound",
     [(names.DYNAMO_TABLE, "t1"), (names.HTTP_CONN_MANAGER_PREFIX, "p")]),
    ("mongo.mp.collection.coll.callsite.cs.query.total", "mongo.collection.callsite.query.total",
     [(names.MONGO_CALLSITE, "cs"), (names.MONGO_COLLECTION, "coll"), (names.MONGO_PREFIX, "mp")]),
    ("mongo.mp.cmd.insert.total", "mongo.cmd.total", [(names.MONGO_CMD, "insert"), (names.MONGO_PREFIX, "mp")]),
    ("cluster.c.grpc.svc.Method.success", "cluster.grpc.success",
     [(names.GRPC_BRIDGE_METHOD, "Method"), (names.GRPC_BRIDGE_SERVICE, "svc"), (names.CLUSTER_NAME, "c")]),
    ("http.p.user_agent.ios.downstream_rq_total", "http.user_agent.downstream_rq_total",
     [(names.HTTP_USER_AGENT, "ios"), (names.HTTP_CONN_MANAGER_PREFIX, "p")]),
    ("vhost.vh.vcluster.vc.upstream_rq_200", "vhost.vcluster.upstream_rq",
     [(names.RESPONSE_CODE, "200"), (names.VIRTUAL_CLUSTER, "vc"), (names.VIRTUAL_HOST, "vh")]),
    ("vhost.vh.route.r1.upstream_rq_total", "vhost.route.upstream_rq_total", [(names.VIRTUAL_HOST, "vh"), (names.ROUTE, "r1")]),
    ("http.p.fault.downstream_a.aborts_injected", "http.fault.aborts_injected",
     [(names.FAULT_DOWNSTREAM_CLUSTER, "downstream_a"), (names.HTTP_CONN_MANAGER_PREFIX, "p")]),
    ("listener.127.0.0.1_443.ssl.ciphers.ECDHE-RSA-AES128-GCM-SHA256", "listener.ssl.ciphers",
     [(names.SSL_CIPHER, "ECDHE-RSA-AES128-GCM-SHA256"), (names.LISTENER_ADDRESS, "127.0.0.1_443")]),
    ("listener.127.0.0.1_443.ssl.curves.X25519", "listener.ssl.curves", [(names.SSL_CURVE, "X25519"), (names.LISTENER_ADDRESS, "127.0.0.1_443")]),
    ("cluster.c.ssl.sigalgs.rsa_pss_rsae_sha256", "cluster.ssl.sigalgs", [(names.SSL_SIGALG, "rsa_pss_rsae_sha256"), (names.CLUSTER_NAME, "c")]),
    ("cluster.c.ssl.versions.TLSv1.3", "cluster.ssl.versions", [(names.SSL_VERSION, "TLSv1.3"), (names.CLUSTER_NAME, "c")]),
    ("cluster.c.ssl.ciphers.AES128-SHA", "cluster.ssl.ciphers", [(names.SSL_CIPHER_SUITE, "AES128-SHA"), (names.CLUSTER_NAME, "c")]),
    ("cluster.c.ssl.certificate.cert1.expiration_unix_time_seconds", "cluster.ssl.certificate.expiration_unix_time_seconds",
     [(names.TLS_CERTIFICATE, "cert1"), (names.CLUSTER_NAME, "c")]),
    ("cluster.c.health_check.name.hc1.attempt", "cluster.health_check.attempt", [(names.HEALTH_CHECK_NAME, "hc1"), (names.CLUSTER_NAME, "c")]),
    ("cluster.c.health_check.attempt", "cluster.health_check.attempt", [(names.CLUSTER_NAME, "c")]),
    ("cluster.c.ext_authz.ea.ok", "cluster.ext_authz.ok", [(names.CLUSTER_NAME, "c"), (names.EXT_AUTHZ_PREFIX, "ea")]),
    ("http.p.ext_authz.ea.denied", "http.ext_authz.denied", [(names.EXT_AUTHZ_PREFIX, "ea"), (names.HTTP_CONN_MANAGER_PREFIX, "p")]),
    ("tcp.tp.downstream_cx_total", "tcp.downstream_cx_total", [(names.TCP_PREFIX, "tp")]),
    ("udp.up.downstream_sess_total", "udp.downstream_sess_total", [(names.UDP_PREFIX, "up")]),
    ("auth.clientssl.cs.total", "auth.clientssl.total", [(names.CLIENTSSL_PREFIX, "cs")]),
    ("ratelimit.rl.ok", "ratelimit.ok", [(names.RATELIMIT_PREFIX, "rl")]),
    ("http.p.rds.my.route.config_reload", "http.rds.config_reload", [(names.RDS_ROUTE_CONFIG, "my.route"), (names.HTTP_CONN_MANAGER_PREFIX, "p")]),
    ("http.p.scoped_rds.scopes.config_reload", "http.scoped_rds.config_reload",
     [(names.SCOPED_RDS_CONFIG, "scopes"), (names.HTTP_CONN_MANAGER_PREFIX, "p")]),
    ("http.p.rbac.rp.policy.pol1.allowed", "http.rbac.policy.allowed",
     [(names.RBAC_HTTP_PREFIX, "rp"), (names.RBAC_POLICY_NAME, "pol1"), (names.HTTP_CONN_MANAGER_PREFIX, "p")]),
    ("net.rbac.allowed", "rbac.allowed", [(names.RBAC_PREFIX, "net")]),
    ("connection_limit.cl.limited_connections", "connection_limit.limited_connections", [(names.CONNECTION_LIMIT_PREFIX, "cl")]),
    ("thrift.tp.request", "thrift.request", [(names.THRIFT_PREFIX, "tp")]),
    ("redis.rp.command.get.total", "redis.command.get.total", [(names.REDIS_PREFIX, "rp")]),
    ("lrl.http_local_rate_limit.rate_limited", "http_local_rate_limit.rate_limited", [(names.LOCAL_HTTP_RATELIMIT_PREFIX, "lrl")]),
    ("local_rate_limit.nl.rate_limited", "local_rate_limit.rate_limited", [(names.LOCAL_NETWORK_RATELIMIT_PREFIX, "nl")]),
    ("listener_local_ratelimit.ll.rate_limited", "listener_local_ratelimit.rate_limited", [(names.LOCAL_LISTENER_RATELIMIT_PREFIX, "ll")]),
    ("dns_filter.df.queries", "dns_filter.queries", [(names.DNS_FILTER_PREFIX, "df")]),
    ("proxy_proto.pp.versions.v2.found", "proxy_proto.found", [(names.PROXY_PROTOCOL_VERSION, "2"), (names.PROXY_PROTOCOL_PREFIX, "pp")]),
    ("proxy_proto.pp.not_found_disallowed", "proxy_proto.not_found_disallowed", [(names.PROXY_PROTOCOL_PREFIX, "pp")]),
    ("sds.secret1.update_success", "sds.update_success", [(names.XDS_RESOURCE_NAME, "secret1")]),
    ("grpc.gc.streams_total", "grpc.streams_total", [(names.GOOGLE_GRPC_CLIENT_PREFIX, "gc")]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "extracted", "tags"), CASES, ids=[c[0] for c in CASES])
def test_default_extractors(name: str, extracted: str, tags: list[tuple[str, str]]) -> None:
    assert tags_of(name) == (extracted, tags)


def test_every_default_tag_name_is_exercised() -> None:
    seen = {tag for _, _, tags in CASES for tag, _ in tags}
    assert seen == names.DEFAULT_TAG_NAMES


def test_token_patterns_need_a_token_for_a_final_double_star() -> None:
    # "cluster.$.**" wants at least one token after the value; "http.*.fault.$.**" likewise.
    assert tags_of("cluster.c") == ("cluster.c", [])
    assert tags_of("http.p.fault.aborts_injected")[1] == [(names.HTTP_CONN_MANAGER_PREFIX, "p")]


def test_results_are_kept_per_name() -> None:
    producer = TagProducer.from_config()
    first = producer.extract("cluster.a.upstream_rq_200")
    assert producer.extract("cluster.a.upstream_rq_200") is first


def _golden_ids(prometheus_text: str) -> set[tuple[str, str]]:
    """(family, labels) of every sample line, histogram suffixes and ``le`` dropped."""
    ids = set()
    kind = ""
    for line in prometheus_text.splitlines():
        if line.startswith("# TYPE "):
            kind = line.rsplit(" ", 1)[1]
            continue
        m = re.match(r"^(\S+)\{(.*)\} ", line)
        assert m, line
        family, labels = m.groups()
        if kind == "histogram":
            family = re.sub(r"_(bucket|sum|count)$", "", family)
            labels = re.sub(r'(?:^|,)le="[^"]*"$', "", labels)
        ids.add((family, labels))
    return ids


@pytest.mark.parametrize("dump", DUMPS, ids=[f"{p.parent.name}/{p.name}" for p in DUMPS])
def test_every_golden_stat_gets_envoys_family_and_labels(dump: Path) -> None:
    golden = _golden_ids(dump.with_name(dump.name.replace(".stats.txt", ".prometheus.txt")).read_text())
    producer = TagProducer.from_config()
    ours = set()
    for line in dump.read_text().splitlines():
        name = line.split(":", 1)[0]
        tagged = producer.extract(name)
        ours.add((tagged.prometheus_name, tagged.labels))
    assert ours == golden


def _config(doc: dict[str, object]) -> stats_pb2.StatsConfig:
    return json_format.ParseDict(doc, stats_pb2.StatsConfig())


def test_stats_tags_fixed_and_regex_specifiers() -> None:
    producer = TagProducer.from_config(
        _config(
            {
                "stats_tags": [
                    {"tag_name": "my_tag", "fixed_value": "fv"},
                    {"tag_name": "custom", "regex": r"^cluster\.((.+?)\.)upstream_cx_total"},
                ]
            }
        )
    )
    # Observed on Envoy 1.40: the fixed tag has no prefix token, so it comes before the "cluster"
    # extractors; the custom regex comes after the defaults of its prefix; spans may overlap.
    t = producer.extract("cluster.dead.upstream_cx_total")
    assert (t.extracted, t.tags) == ("cluster.upstream_cx_total", (("my_tag", "fv"), (names.CLUSTER_NAME, "dead"), ("custom", "dead")))
    assert t.labels == 'my_tag="fv",envoy_cluster_name="dead",custom="dead"'
    # A one-group regex: the group is both the removed text and the value.
    one = TagProducer.from_config(_config({"use_all_default_tags": False, "stats_tags": [{"tag_name": "t", "regex": r"(\.v\d)$"}]}))
    assert tags_of("a.b.v2", one) == ("a.b", [("t", ".v2")])


def test_use_all_default_tags_false_keeps_only_named_defaults() -> None:
    none = TagProducer.from_config(_config({"use_all_default_tags": False}))
    assert tags_of("cluster.c.upstream_rq_200", none) == ("cluster.c.upstream_rq_200", [])
    some = TagProducer.from_config(_config({"use_all_default_tags": False, "stats_tags": [{"tag_name": names.CLUSTER_NAME}]}))
    assert tags_of("cluster.c.upstream_rq_200", some) == ("cluster.upstream_rq_200", [(names.CLUSTER_NAME, "c")])
    # Naming a default that is already on adds nothing twice (same-name extractors: first match wins).
    twice = TagProducer.from_config(_config({"stats_tags": [{"tag_name": names.CLUSTER_NAME}]}))
    assert tags_of("cluster.c.upstream_rq_200", twice) == tags_of("cluster.c.upstream_rq_200")


def test_specifier_errors_are_envoys() -> None:
    with pytest.raises(ConfigError, match="^No regex specified for tag specifier and no default regex for name: 'foo'$"):
        TagProducer.from_config(_config({"stats_tags": [{"tag_name": "foo"}]}))
    with pytest.raises(ConfigError, match="^tag_name cannot be empty$"):
        TagProducer.from_config(_config({"stats_tags": [{"tag_name": "", "regex": "x"}]}))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("envoy.cluster_name", "envoy_cluster_name"), ("a-b:c/d", "a_b_c_d"), ("ok_09", "ok_09")],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert sanitize(raw) == clean


def test_stats_made_before_stats_config_have_no_tags() -> None:
    producer = TagProducer.from_config(_config({"stats_tags": [{"tag_name": "lab", "fixed_value": "x"}]}))
    assert tags_of("server.hot_restart_generation", producer) == ("server.hot_restart_generation", [])
    assert tags_of("server.live", producer) == ("server.live", [("lab", "x")])


def test_label_values_are_escaped_as_envoy_prints_them() -> None:
    # Observed on Envoy 1.40 with fixed_value 'a"b\c dé' and 'x<newline>y'.
    for value, printed in (('a"b\\c d\u00e9', 'a\\"b\\\\c d\u00e9'), ("x\ny", "x\\ny")):
        producer = TagProducer.from_config(_config({"stats_tags": [{"tag_name": "my-tag.x", "fixed_value": value}]}))
        assert producer.extract("server.live").labels == f'my_tag_x="{printed}"'
